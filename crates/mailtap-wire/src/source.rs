//! Capture-file reading: classic pcap and pcapng, optionally gzip-compressed,
//! from a file or stdin (`-`).
//!
//! The reader keeps one 1 MiB read buffer and copies each packet exactly once,
//! from that buffer into the caller's [`Block`]; there is no per-packet
//! allocation. Byte offsets in error messages are offsets in the
//! (decompressed) capture stream.
//!
//! Supported:
//! * pcap: both byte orders, microsecond (`a1b2c3d4`) and nanosecond
//!   (`a1b23c4d`) magics, and the "modified" pcap (`a1b2cd34`, 24-byte
//!   records); the link type comes from the file header.
//! * pcapng: SHB in either byte order, several sections (each resets the
//!   interface list), IDB (link type, `if_tsresol` incl. power-of-two
//!   resolutions, `if_tsoffset`), EPB, SPB (timestamp = previous packet's,
//!   interface 0), the obsolete OPB; other block types are skipped.
//!
//! Sanity limits: a packet longer than [`MAX_PACKET_LEN`] or a pcapng block
//! longer than [`MAX_BLOCK_LEN`] is treated as corruption.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use mailtap_core::Timestamp;

/// Largest accepted captured packet length (libpcap's maximum snaplen).
pub const MAX_PACKET_LEN: u32 = 262_144;
/// Largest accepted pcapng block (a maximal packet plus headers and options).
pub const MAX_BLOCK_LEN: u32 = MAX_PACKET_LEN + 4096;
/// Size of the internal read buffer.
pub const READ_BUFFER_LEN: usize = 1 << 20;

/// Link-layer type of a captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// Raw IP: LINKTYPE_RAW (101; also DLT_RAW 12/14 found in old files),
    /// LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229). Version from the first nibble.
    Raw,
    /// LINKTYPE_LINUX_SLL (113), 16-byte cooked header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), 20-byte cooked header.
    LinuxSll2,
    /// BSD loopback: LINKTYPE_NULL (0, host byte order) and LINKTYPE_LOOP (108).
    Null,
}

impl LinkType {
    /// Maps a pcap/pcapng LINKTYPE_ value to a supported link type.
    pub fn from_linktype(v: u32) -> Option<LinkType> {
        Some(match v {
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 | 108 => LinkType::Null,
            _ => return None,
        })
    }
}

/// The conventional name of a LINKTYPE_ value, for error messages.
pub fn linktype_name(v: u32) -> &'static str {
    match v {
        0 => "NULL",
        1 => "ETHERNET",
        6 => "IEEE802_5",
        9 => "PPP",
        10 => "FDDI",
        12 | 14 | 101 => "RAW",
        50 => "PPP_HDLC",
        51 => "PPP_ETHER",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        108 => "LOOP",
        113 => "LINUX_SLL",
        119 => "IEEE802_11_PRISM",
        127 => "IEEE802_11_RADIOTAP",
        143 => "DOCSIS",
        163 => "IEEE802_11_AVS",
        187 => "BLUETOOTH_HCI_H4",
        189 => "USB_LINUX",
        192 => "PPI",
        195 => "IEEE802_15_4_WITHFCS",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        220 => "USB_LINUX_MMAPPED",
        228 => "IPV4",
        229 => "IPV6",
        249 => "USBPCAP",
        252 => "WIRESHARK_UPPER_PDU",
        253 => "NETLINK",
        263 => "NFLOG",
        274 => "NETANALYZER_TRANSPARENT",
        276 => "LINUX_SLL2",
        _ => "unknown",
    }
}

/// One packet stored in a [`Block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRef {
    /// Start of the packet in [`Block::data`].
    pub offset: u32,
    /// Captured length.
    pub len: u32,
    /// Original length on the wire.
    pub orig_len: u32,
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Link-layer type.
    pub link: LinkType,
}

/// A reusable buffer holding whole packets read from a file:
/// `data[p.offset..p.offset + p.len]`.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Packet bytes, back to back.
    pub data: Vec<u8>,
    /// Where each packet is.
    pub packets: Vec<PacketRef>,
}

impl Block {
    /// A block that [`CaptureReader::fill`] fills up to about `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Block {
            data: Vec::with_capacity(bytes),
            packets: Vec::with_capacity(bytes / 256 + 1),
        }
    }

    /// Removes all packets, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.packets.clear();
    }

    /// Bytes of packet `i`. Panics if `i >= self.packets.len()` (like slice
    /// indexing); packets written by [`CaptureReader::fill`] are always in range.
    pub fn packet(&self, i: usize) -> &[u8] {
        let p = &self.packets[i];
        &self.data[p.offset as usize..p.offset as usize + p.len as usize]
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True if the block holds no packets.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Iterates over `(metadata, bytes)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&PacketRef, &[u8])> + '_ {
        self.packets.iter().map(move |p| {
            let s = p.offset as usize;
            (p, self.data.get(s..s + p.len as usize).unwrap_or(&[]))
        })
    }
}

/// A capture-file reading error. `Display` names the file and the problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// The file could not be opened.
    Open {
        /// File name as given.
        file: String,
        /// Cause.
        source: io::Error,
    },
    /// A read failed.
    Io {
        /// File name as given.
        file: String,
        /// Cause.
        source: io::Error,
    },
    /// The gzip stream is corrupt.
    Gzip {
        /// File name as given.
        file: String,
        /// Cause (from the decompressor).
        source: io::Error,
    },
    /// The file starts with neither a pcap nor a pcapng magic.
    NotCapture {
        /// File name as given.
        file: String,
        /// The first four bytes (big-endian), or `None` if the file is shorter.
        magic: Option<u32>,
    },
    /// The file ends inside a header, record or block.
    Truncated {
        /// File name as given.
        file: String,
        /// "file header", "packet record" or "block".
        what: &'static str,
        /// Stream offset where the incomplete item starts.
        offset: u64,
    },
    /// A header, record or block is inconsistent.
    Corrupt {
        /// File name as given.
        file: String,
        /// Stream offset of the record or block.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A packet (or a pcap file) uses a link type we cannot decode.
    UnsupportedLinkType {
        /// File name as given.
        file: String,
        /// The LINKTYPE_ value.
        link_type: u32,
    },
}

impl SourceError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            SourceError::Open { file, .. }
            | SourceError::Io { file, .. }
            | SourceError::Gzip { file, .. }
            | SourceError::NotCapture { file, .. }
            | SourceError::Truncated { file, .. }
            | SourceError::Corrupt { file, .. }
            | SourceError::UnsupportedLinkType { file, .. } => file,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Open { file, source } => write!(f, "{file}: cannot open: {source}"),
            SourceError::Io { file, source } => write!(f, "{file}: read error: {source}"),
            SourceError::Gzip { file, source } => write!(f, "{file}: corrupt gzip data: {source}"),
            SourceError::NotCapture {
                file,
                magic: Some(m),
            } => {
                write!(f, "{file}: not a pcap or pcapng file (magic 0x{m:08x})")
            }
            SourceError::NotCapture { file, magic: None } => {
                write!(
                    f,
                    "{file}: not a pcap or pcapng file (shorter than 4 bytes)"
                )
            }
            SourceError::Truncated { file, what, offset } => {
                write!(f, "{file}: truncated {what} at byte {offset}")
            }
            SourceError::Corrupt {
                file,
                offset,
                detail,
            } => {
                write!(f, "{file}: corrupt capture at byte {offset}: {detail}")
            }
            SourceError::UnsupportedLinkType { file, link_type } => write!(
                f,
                "{file}: unsupported link type {link_type} ({})",
                linktype_name(*link_type)
            ),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Open { source, .. }
            | SourceError::Io { source, .. }
            | SourceError::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Counts raw (compressed) bytes read, for progress reporting.
struct Counting {
    inner: Box<dyn Read + Send>,
    n: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

enum Input {
    Plain(Counting),
    Gzip(Box<MultiGzDecoder<io::Chain<io::Cursor<Vec<u8>>, Counting>>>),
}

/// Timestamp resolution of a pcapng interface.
#[derive(Clone, Copy, Debug)]
enum TsRes {
    /// Units of 10^-k s with k ≤ 9: multiply to get nanoseconds.
    Mul(u64),
    /// Units of 10^-k s with k > 9: divide.
    Div(u128),
    /// Units of 2^-k s.
    Pow2(u32),
}

impl TsRes {
    fn from_option(v: u8) -> TsRes {
        if v & 0x80 == 0 {
            let k = u32::from(v);
            if k <= 9 {
                TsRes::Mul(10u64.pow(9 - k))
            } else if k - 9 <= 38 {
                TsRes::Div(10u128.pow(k - 9))
            } else {
                TsRes::Div(u128::MAX)
            }
        } else {
            TsRes::Pow2(u32::from(v & 0x7f))
        }
    }

    fn to_nanos(self, ts: u64) -> i128 {
        match self {
            TsRes::Mul(m) => i128::from(ts) * i128::from(m),
            TsRes::Div(d) => (u128::from(ts) / d) as i128,
            TsRes::Pow2(k) => ((u128::from(ts) * 1_000_000_000) >> k) as i128,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Iface {
    link: u32,
    res: TsRes,
    offset_secs: i64,
    snaplen: u32,
}

#[derive(Debug)]
enum Format {
    Pcap {
        be: bool,
        nanos: bool,
        rec_len: usize,
        link: LinkType,
    },
    PcapNg {
        be: bool,
        ifaces: Vec<Iface>,
    },
}

/// Outcome of reading one record/block.
enum Step {
    Packet,
    Skipped,
    /// The next packet does not fit in the block; it was left unread.
    Full,
    Eof,
}

/// Reads packets from a pcap/pcapng file (optionally gzipped) or stdin.
pub struct CaptureReader {
    name: String,
    input: Input,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[pos]`.
    stream_off: u64,
    eof: bool,
    done: bool,
    format: Format,
    file_size: Option<u64>,
    last_ts: Timestamp,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("stream_off", &self.stream_off)
            .finish_non_exhaustive()
    }
}

#[inline(always)]
fn rd32(b: &[u8], i: usize, be: bool) -> u32 {
    let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

#[inline(always)]
fn rd16(b: &[u8], i: usize, be: bool) -> u16 {
    let a = [b[i], b[i + 1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn clamp_ts(ns: i128) -> Timestamp {
    Timestamp(ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

const SHB: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

impl CaptureReader {
    /// Opens a pcap or pcapng file, transparently gunzipping (detected by the
    /// magic `1f 8b`, not by name); `"-"` reads stdin. The file header (pcap)
    /// or first section header (pcapng) is read and checked here.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let name = path.display().to_string();
        let (inner, file_size): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
            (Box::new(io::stdin()), None)
        } else {
            let f = File::open(path).map_err(|e| SourceError::Open {
                file: name.clone(),
                source: e,
            })?;
            let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            (Box::new(f), size)
        };
        Self::from_reader(name, inner, file_size)
    }

    /// Reads a capture from any byte stream; `name` is used in error messages.
    pub fn from_reader(
        name: String,
        inner: Box<dyn Read + Send>,
        file_size: Option<u64>,
    ) -> Result<Self, SourceError> {
        let mut raw = Counting { inner, n: 0 };
        // Peek two bytes for the gzip magic.
        let mut peek = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match raw.read(&mut peek[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(SourceError::Io {
                        file: name,
                        source: e,
                    })
                }
            }
        }
        let mut buf = vec![0u8; READ_BUFFER_LEN].into_boxed_slice();
        let (input, end) = if got == 2 && peek == [0x1f, 0x8b] {
            let chained = io::Cursor::new(peek.to_vec()).chain(raw);
            (Input::Gzip(Box::new(MultiGzDecoder::new(chained))), 0)
        } else {
            buf[..got].copy_from_slice(&peek[..got]);
            (Input::Plain(raw), got)
        };
        let mut r = CaptureReader {
            name,
            input,
            buf,
            pos: 0,
            end,
            stream_off: 0,
            eof: false,
            done: false,
            // Placeholder until the header is parsed.
            format: Format::PcapNg {
                be: false,
                ifaces: Vec::new(),
            },
            file_size,
            last_ts: Timestamp::ZERO,
        };
        r.read_file_header()?;
        Ok(r)
    }

    /// Compressed/raw file bytes consumed so far (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        match &self.input {
            Input::Plain(c) => c.n,
            Input::Gzip(g) => g.get_ref().get_ref().1.n,
        }
    }

    /// Size of the (possibly compressed) file, if it is a regular file.
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    /// The file name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends whole packets to `block` until it holds about
    /// `block.data.capacity()` bytes — at least one packet per call if any
    /// remain (a packet larger than the free space is appended only when this
    /// call has appended nothing yet, growing the block).
    ///
    /// Returns `Ok(true)` if at least one packet was appended, `Ok(false)` at
    /// clean end of file with nothing appended. On error, the packets read
    /// before the problem are already in `block`; every later call returns
    /// `Ok(false)`.
    pub fn fill(&mut self, block: &mut Block) -> Result<bool, SourceError> {
        if self.done {
            return Ok(false);
        }
        let mut appended = 0usize;
        loop {
            match self.next_record(block, appended == 0) {
                Ok(Step::Packet) => appended += 1,
                Ok(Step::Skipped) => {}
                Ok(Step::Full) => return Ok(true),
                Ok(Step::Eof) => {
                    self.done = true;
                    return Ok(appended > 0);
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    fn read_err(&self, e: io::Error) -> SourceError {
        let file = self.name.clone();
        match (&self.input, e.kind()) {
            (
                Input::Gzip(_),
                io::ErrorKind::InvalidInput
                | io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof,
            ) => SourceError::Gzip { file, source: e },
            _ => SourceError::Io { file, source: e },
        }
    }

    /// Makes at least `n` (≤ buffer size) unread bytes available. Returns
    /// false if the stream ends first.
    fn ensure(&mut self, n: usize) -> Result<bool, SourceError> {
        debug_assert!(n <= self.buf.len());
        if self.end - self.pos >= n {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end - self.pos < n {
            let dst = &mut self.buf[self.end..];
            let r = match &mut self.input {
                Input::Plain(c) => c.read(dst),
                Input::Gzip(g) => g.read(dst),
            };
            match r {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.stream_off += n as u64;
    }

    fn truncated(&self, what: &'static str) -> SourceError {
        SourceError::Truncated {
            file: self.name.clone(),
            what,
            offset: self.stream_off,
        }
    }

    fn corrupt(&self, detail: String) -> SourceError {
        SourceError::Corrupt {
            file: self.name.clone(),
            offset: self.stream_off,
            detail,
        }
    }

    fn read_file_header(&mut self) -> Result<(), SourceError> {
        if !self.ensure(4)? {
            return Err(SourceError::NotCapture {
                file: self.name.clone(),
                magic: None,
            });
        }
        let b = &self.buf[self.pos..self.pos + 4];
        let magic_be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let magic_le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if magic_be == SHB {
            // pcapng: the SHB is handled as an ordinary block by next_record.
            if !self.ensure(12)? {
                return Err(self.truncated("section header block"));
            }
            return match self.read_pcapng_block(&mut Block::default(), true)? {
                Step::Skipped => Ok(()),
                _ => Err(self.truncated("section header block")),
            };
        }
        let pcap = |m: u32| match m {
            0xa1b2_c3d4 => Some((false, 16)),
            0xa1b2_3c4d => Some((true, 16)),
            0xa1b2_cd34 => Some((false, 24)),
            _ => None,
        };
        let (be, (nanos, rec_len)) = match (pcap(magic_le), pcap(magic_be)) {
            (Some(x), _) => (false, x),
            (None, Some(x)) => (true, x),
            (None, None) => {
                return Err(SourceError::NotCapture {
                    file: self.name.clone(),
                    magic: Some(magic_be),
                })
            }
        };
        if !self.ensure(24)? {
            return Err(self.truncated("file header"));
        }
        let h = &self.buf[self.pos..self.pos + 24];
        let major = rd16(h, 4, be);
        let lt = rd32(h, 20, be) & 0xffff; // upper bits: FCS length / flags
        if major != 2 {
            return Err(self.corrupt(format!("unsupported pcap version {major}")));
        }
        let link = LinkType::from_linktype(lt).ok_or_else(|| SourceError::UnsupportedLinkType {
            file: self.name.clone(),
            link_type: lt,
        })?;
        self.format = Format::Pcap {
            be,
            nanos,
            rec_len,
            link,
        };
        self.advance(24);
        Ok(())
    }

    fn next_record(&mut self, block: &mut Block, first: bool) -> Result<Step, SourceError> {
        match self.format {
            Format::Pcap {
                be,
                nanos,
                rec_len,
                link,
            } => self.read_pcap_record(block, first, be, nanos, rec_len, link),
            Format::PcapNg { .. } => self.read_pcapng_block(block, first),
        }
    }

    fn read_pcap_record(
        &mut self,
        block: &mut Block,
        first: bool,
        be: bool,
        nanos: bool,
        rec_len: usize,
        link: LinkType,
    ) -> Result<Step, SourceError> {
        if !self.ensure(rec_len)? {
            return if self.pos == self.end {
                Ok(Step::Eof)
            } else {
                Err(self.truncated("packet record"))
            };
        }
        let h = &self.buf[self.pos..self.pos + rec_len];
        let sec = rd32(h, 0, be);
        let frac = rd32(h, 4, be);
        let caplen = rd32(h, 8, be);
        let orig_len = rd32(h, 12, be);
        if caplen > MAX_PACKET_LEN {
            return Err(self.corrupt(format!(
                "packet record length {caplen} exceeds {MAX_PACKET_LEN}"
            )));
        }
        let total = rec_len + caplen as usize;
        if !self.fits(block, caplen, first) {
            return Ok(Step::Full);
        }
        if !self.ensure(total)? {
            return Err(self.truncated("packet record"));
        }
        let ns = if nanos {
            i64::from(frac)
        } else {
            i64::from(frac) * 1000
        };
        let ts = Timestamp(i64::from(sec) * 1_000_000_000 + ns);
        self.push_packet(block, rec_len, caplen, orig_len, ts, link);
        self.advance(total);
        Ok(Step::Packet)
    }

    #[inline]
    fn fits(&self, block: &Block, caplen: u32, first: bool) -> bool {
        first || block.data.len() + caplen as usize <= block.data.capacity()
    }

    /// Copies `caplen` bytes starting `start` bytes into the unread buffer.
    #[inline]
    fn push_packet(
        &mut self,
        block: &mut Block,
        start: usize,
        caplen: u32,
        orig_len: u32,
        ts: Timestamp,
        link: LinkType,
    ) {
        let s = self.pos + start;
        let offset = block.data.len() as u32;
        block
            .data
            .extend_from_slice(&self.buf[s..s + caplen as usize]);
        block.packets.push(PacketRef {
            offset,
            len: caplen,
            orig_len,
            ts,
            link,
        });
        self.last_ts = ts;
    }

    fn read_pcapng_block(&mut self, block: &mut Block, first: bool) -> Result<Step, SourceError> {
        if !self.ensure(8)? {
            return if self.pos == self.end {
                Ok(Step::Eof)
            } else {
                Err(self.truncated("block"))
            };
        }
        let mut be = match &self.format {
            Format::PcapNg { be, .. } => *be,
            Format::Pcap { .. } => return Ok(Step::Eof),
        };
        let h = &self.buf[self.pos..self.pos + 8];
        let btype_be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if btype_be == SHB {
            // The byte order magic decides how to read this and later blocks.
            if !self.ensure(12)? {
                return Err(self.truncated("block"));
            }
            let m = &self.buf[self.pos + 8..self.pos + 12];
            be = match (
                u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
            ) {
                (BYTE_ORDER_MAGIC, _) => false,
                (_, BYTE_ORDER_MAGIC) => true,
                _ => return Err(self.corrupt("section header has no byte-order magic".into())),
            };
        }
        let h = &self.buf[self.pos..self.pos + 8];
        let btype = rd32(h, 0, be);
        let blen = rd32(h, 4, be);
        if blen < 12 || blen & 3 != 0 || blen > MAX_BLOCK_LEN {
            return Err(self.corrupt(format!(
                "pcapng block type 0x{btype:x} has bad length {blen}"
            )));
        }
        let blen = blen as usize;
        // Packet blocks larger than the free space are left unread.
        if !first && matches!(btype, 2 | 3 | 6) && block.data.len() + blen > block.data.capacity() {
            return Ok(Step::Full);
        }
        if !self.ensure(blen)? {
            return Err(self.truncated("block"));
        }
        let b = &self.buf[self.pos..self.pos + blen];
        if rd32(b, blen - 4, be) as usize != blen {
            return Err(self.corrupt("pcapng block trailing length does not match".into()));
        }
        let body = &b[8..blen - 4];
        let step = match btype {
            SHB => {
                if body.len() < 16 {
                    return Err(self.corrupt("section header block too short".into()));
                }
                let major = rd16(body, 4, be);
                if major != 1 {
                    return Err(self.corrupt(format!("unsupported pcapng version {major}")));
                }
                self.format = Format::PcapNg {
                    be,
                    ifaces: Vec::new(),
                };
                Step::Skipped
            }
            1 => {
                if body.len() < 8 {
                    return Err(self.corrupt("interface description block too short".into()));
                }
                let iface = parse_idb(body, be);
                if let Format::PcapNg { ifaces, .. } = &mut self.format {
                    if ifaces.len() >= 65536 {
                        return Err(self.corrupt("too many interfaces".into()));
                    }
                    ifaces.push(iface);
                }
                Step::Skipped
            }
            6 | 2 => {
                // EPB: iface u32; OPB: iface u16 + drops u16. Then ts hi/lo, caplen, len.
                if body.len() < 20 {
                    return Err(self.corrupt("packet block too short".into()));
                }
                let if_id = if btype == 6 {
                    rd32(body, 0, be)
                } else {
                    u32::from(rd16(body, 0, be))
                };
                let ts = (u64::from(rd32(body, 4, be)) << 32) | u64::from(rd32(body, 8, be));
                let caplen = rd32(body, 12, be);
                let orig_len = rd32(body, 16, be);
                if caplen > MAX_PACKET_LEN || 20 + caplen as usize > body.len() {
                    return Err(self.corrupt(format!(
                        "packet block captured length {caplen} exceeds the block"
                    )));
                }
                let (link, iface) = self.iface(if_id)?;
                let ns = iface.res.to_nanos(ts) + i128::from(iface.offset_secs) * 1_000_000_000;
                self.push_packet(block, 8 + 20, caplen, orig_len, clamp_ts(ns), link);
                Step::Packet
            }
            3 => {
                if body.len() < 4 {
                    return Err(self.corrupt("simple packet block too short".into()));
                }
                let orig_len = rd32(body, 0, be);
                let (link, iface) = self.iface(0)?;
                let mut caplen = orig_len.min((body.len() - 4) as u32);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen);
                }
                self.push_packet(block, 8 + 4, caplen, orig_len, self.last_ts, link);
                Step::Packet
            }
            _ => Step::Skipped,
        };
        self.advance(blen);
        Ok(step)
    }

    fn iface(&self, id: u32) -> Result<(LinkType, Iface), SourceError> {
        let iface = match &self.format {
            Format::PcapNg { ifaces, .. } => ifaces.get(id as usize).copied(),
            Format::Pcap { .. } => None,
        };
        let iface =
            iface.ok_or_else(|| self.corrupt(format!("packet for undefined interface {id}")))?;
        let link = LinkType::from_linktype(iface.link).ok_or_else(|| {
            SourceError::UnsupportedLinkType {
                file: self.name.clone(),
                link_type: iface.link,
            }
        })?;
        Ok((link, iface))
    }
}

/// Parses an IDB body (after type and length). Malformed options end option
/// parsing; they are not fatal.
fn parse_idb(body: &[u8], be: bool) -> Iface {
    let mut iface = Iface {
        link: u32::from(rd16(body, 0, be)),
        res: TsRes::Mul(1000),
        offset_secs: 0,
        snaplen: rd32(body, 4, be),
    };
    let mut o = 8;
    while o + 4 <= body.len() {
        let code = rd16(body, o, be);
        let len = usize::from(rd16(body, o + 2, be));
        let v = o + 4;
        if code == 0 || v + len > body.len() {
            break;
        }
        match (code, len) {
            (9, 1) => iface.res = TsRes::from_option(body[v]),
            (14, 8) => {
                let hi = u64::from(rd32(body, v, be));
                let lo = u64::from(rd32(body, v + 4, be));
                iface.offset_secs = ((hi << 32) | lo) as i64;
            }
            _ => {}
        }
        o = v + len.div_ceil(4) * 4;
    }
    iface
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pcap_file, Ng};
    use proptest::prelude::*;
    use std::io::Write;

    fn reader(bytes: Vec<u8>) -> Result<CaptureReader, SourceError> {
        CaptureReader::from_reader("test.pcap".into(), Box::new(io::Cursor::new(bytes)), None)
    }

    fn read_all(
        r: &mut CaptureReader,
        cap: usize,
    ) -> (Vec<(PacketRef, Vec<u8>)>, Option<SourceError>) {
        let mut out = Vec::new();
        let mut block = Block::with_capacity(cap);
        loop {
            block.clear();
            let res = r.fill(&mut block);
            for (p, d) in block.iter() {
                out.push((*p, d.to_vec()));
            }
            match res {
                Ok(true) => {}
                Ok(false) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn pkts() -> Vec<Vec<u8>> {
        (0..20u8)
            .map(|i| vec![i; 40 + usize::from(i) * 7])
            .collect()
    }

    #[test]
    fn pcap_micro_and_nano_both_endians() {
        let data = pkts();
        let recs: Vec<(u32, u32, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (1_700_000_000 + i as u32, 123_456, d.as_slice()))
            .collect();
        for be in [false, true] {
            for nanos in [false, true] {
                let mut r = reader(pcap_file(be, nanos, 1, &recs)).unwrap();
                let (got, err) = read_all(&mut r, 256);
                assert!(err.is_none(), "{err:?}");
                assert_eq!(got.len(), data.len());
                for (i, (p, d)) in got.iter().enumerate() {
                    assert_eq!(d, &data[i]);
                    assert_eq!(p.len as usize, data[i].len());
                    assert_eq!(p.orig_len as usize, data[i].len() + 4);
                    assert_eq!(p.link, LinkType::Ethernet);
                    let frac = if nanos { 123_456 } else { 123_456_000 };
                    assert_eq!(
                        p.ts,
                        Timestamp::from_secs_nanos(1_700_000_000 + i as i64, frac)
                    );
                }
            }
        }
    }

    #[test]
    fn block_capacity_is_respected() {
        let data = pkts();
        let recs: Vec<(u32, u32, &[u8])> = data.iter().map(|d| (1, 0, d.as_slice())).collect();
        let mut r = reader(pcap_file(false, false, 101, &recs)).unwrap();
        let mut block = Block::with_capacity(500);
        let cap = block.data.capacity();
        let mut total = 0;
        while r.fill(&mut block).unwrap() {
            assert!(!block.is_empty());
            assert!(
                block.data.len() <= cap.max(block.packet(0).len()),
                "{}",
                block.data.len()
            );
            for i in 0..block.len() {
                assert_eq!(block.packet(i), data[total + i].as_slice());
            }
            total += block.len();
            block.clear();
        }
        assert_eq!(total, data.len());
        assert!(!r.fill(&mut block).unwrap());
        // A zero-capacity block still receives one packet per call.
        let mut r = reader(pcap_file(false, false, 101, &recs)).unwrap();
        let mut block = Block::default();
        assert!(r.fill(&mut block).unwrap());
        assert_eq!(block.len(), 1);
    }

    #[test]
    fn pcapng_two_interfaces_and_tsresol() {
        for be in [false, true] {
            let mut ng = Ng::new(be);
            ng.idb(1, None); // Ethernet, µs
            ng.idb(101, Some(9)); // raw IP, ns
            ng.block(0x0000_0bad, &[1, 2, 3, 4]); // unknown block: skipped
            ng.epb(0, 1_700_000_000_123_456, b"ethernet-frame");
            ng.epb(1, 1_700_000_000_123_456_789, b"raw-ip");
            ng.idb(113, Some(0x80 | 20)); // SLL, 2^-20 s
            ng.epb(2, 3 << 20 | 1 << 19, b"sll");
            ng.spb(b"simple!"); // interface 0, previous timestamp
            let mut r = reader(ng.out).unwrap();
            let (got, err) = read_all(&mut r, 1 << 20);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(got.len(), 4);
            assert_eq!(
                (got[0].0.link, got[0].1.as_slice()),
                (LinkType::Ethernet, &b"ethernet-frame"[..])
            );
            assert_eq!(
                got[0].0.ts,
                Timestamp::from_secs_micros(1_700_000_000, 123_456)
            );
            assert_eq!(
                (got[1].0.link, got[1].1.as_slice()),
                (LinkType::Raw, &b"raw-ip"[..])
            );
            assert_eq!(got[1].0.ts, Timestamp(1_700_000_000_123_456_789));
            assert_eq!(got[2].0.link, LinkType::LinuxSll);
            assert_eq!(got[2].0.ts, Timestamp(3_500_000_000));
            assert_eq!(
                (got[3].0.link, got[3].1.as_slice()),
                (LinkType::Ethernet, &b"simple!"[..])
            );
            assert_eq!(got[3].0.ts, got[2].0.ts);
        }
    }

    #[test]
    fn pcapng_multiple_sections_change_byte_order() {
        let mut a = Ng::new(false);
        a.idb(1, None);
        a.epb(0, 1_000_000, b"first");
        let mut b = Ng::new(true);
        b.idb(101, Some(3));
        b.epb(0, 2_000, b"second");
        let mut bytes = a.out;
        bytes.extend_from_slice(&b.out);
        let mut r = reader(bytes).unwrap();
        let (got, err) = read_all(&mut r, 4096);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.link, got[0].0.ts),
            (LinkType::Ethernet, Timestamp(1_000_000_000))
        );
        assert_eq!(
            (got[1].0.link, got[1].0.ts),
            (LinkType::Raw, Timestamp(2_000_000_000))
        );
        assert_eq!(got[1].1, b"second");
    }

    #[test]
    fn pcapng_unsupported_link_type_names_it() {
        let mut ng = Ng::new(false);
        ng.idb(1, None);
        ng.idb(105, None);
        ng.epb(0, 1, b"ok");
        ng.epb(1, 2, b"wifi");
        let mut r = reader(ng.out).unwrap();
        let (got, err) = read_all(&mut r, 4096);
        assert_eq!(got.len(), 1);
        let msg = err.unwrap().to_string();
        assert_eq!(msg, "test.pcap: unsupported link type 105 (IEEE802_11)");
        // pcap: detected at open.
        let e = reader(pcap_file(false, false, 127, &[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.pcap: unsupported link type 127 (IEEE802_11_RADIOTAP)"
        );
    }

    #[test]
    fn pcapng_undefined_interface_is_error() {
        let mut ng = Ng::new(false);
        ng.idb(1, None);
        ng.epb(3, 1, b"x");
        let mut r = reader(ng.out).unwrap();
        let (_, err) = read_all(&mut r, 4096);
        assert!(err.unwrap().to_string().contains("undefined interface 3"));
    }

    #[test]
    fn truncated_file_yields_complete_packets_then_error() {
        let data = pkts();
        let recs: Vec<(u32, u32, &[u8])> = data.iter().map(|d| (1, 0, d.as_slice())).collect();
        let full = pcap_file(false, false, 1, &recs);
        // Cut in the middle of the 6th packet's data.
        let start6: usize = 24 + data[..5].iter().map(|d| 16 + d.len()).sum::<usize>();
        let mut r = reader(full[..start6 + 20].to_vec()).unwrap();
        let (got, err) = read_all(&mut r, 1 << 20);
        assert_eq!(got.len(), 5);
        assert_eq!(
            err.unwrap().to_string(),
            format!("test.pcap: truncated packet record at byte {start6}")
        );
        // Cut in a record header.
        let mut r = reader(full[..start6 + 3].to_vec()).unwrap();
        let (got, err) = read_all(&mut r, 64);
        assert_eq!(got.len(), 5);
        assert!(
            matches!(err, Some(SourceError::Truncated { offset, .. }) if offset == start6 as u64)
        );
        // pcapng cut inside a block.
        let mut ng = Ng::new(false);
        ng.idb(1, None);
        ng.epb(0, 1, b"aaaa");
        ng.epb(0, 2, b"bbbb");
        let n = ng.out.len();
        let mut r = reader(ng.out[..n - 5].to_vec()).unwrap();
        let (got, err) = read_all(&mut r, 4096);
        assert_eq!(got.len(), 1);
        assert!(err
            .unwrap()
            .to_string()
            .starts_with("test.pcap: truncated block at byte "));
    }

    #[test]
    fn corrupt_lengths_are_errors() {
        let mut f = pcap_file(false, false, 1, &[(1, 0, b"abc")]);
        f[24 + 8..24 + 12].copy_from_slice(&(MAX_PACKET_LEN + 1).to_le_bytes());
        let mut r = reader(f).unwrap();
        let (got, err) = read_all(&mut r, 4096);
        assert!(got.is_empty());
        assert!(err.unwrap().to_string().contains("exceeds 262144"));

        let mut ng = Ng::new(false);
        ng.idb(1, None);
        ng.epb(0, 1, b"abcd");
        let mut bad = ng.out.clone();
        let n = bad.len();
        bad[n - 4] ^= 0x40; // trailing length
        let (_, err) = read_all(&mut reader(bad).unwrap(), 4096);
        assert!(matches!(err, Some(SourceError::Corrupt { .. })));
    }

    #[test]
    fn not_a_capture() {
        let e = reader(b"hello world, this is text".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.pcap: not a pcap or pcapng file (magic 0x68656c6c)"
        );
        let e = reader(Vec::new()).unwrap_err();
        assert!(matches!(e, SourceError::NotCapture { magic: None, .. }));
        let e = reader(vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap_err();
        assert_eq!(e.to_string(), "test.pcap: truncated file header at byte 0");
    }

    #[test]
    fn empty_pcap_is_clean_eof() {
        let mut r = reader(pcap_file(true, true, 1, &[])).unwrap();
        let mut b = Block::with_capacity(1024);
        assert!(!r.fill(&mut b).unwrap());
        assert!(b.is_empty());
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_files_and_progress() {
        let data: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().repeat(100)).collect();
        let recs: Vec<(u32, u32, &[u8])> = data.iter().map(|d| (1, 0, d.as_slice())).collect();
        let plain = pcap_file(false, false, 1, &recs);
        let gz = gzip(&plain);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.bin"); // no .gz suffix: detected by magic
        std::fs::write(&path, &gz).unwrap();
        let mut r = CaptureReader::open(&path).unwrap();
        assert_eq!(r.file_size(), Some(gz.len() as u64));
        let (got, err) = read_all(&mut r, 1 << 20);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), data.len());
        assert!(got.iter().zip(&data).all(|((_, a), b)| a == b));
        assert_eq!(r.bytes_read(), gz.len() as u64);

        // Plain file progress.
        let path2 = dir.path().join("plain.pcap");
        std::fs::write(&path2, &plain).unwrap();
        let mut r = CaptureReader::open(&path2).unwrap();
        let _ = read_all(&mut r, 1 << 16);
        assert_eq!(r.bytes_read(), plain.len() as u64);

        // Concatenated gzip members (e.g. `cat a.gz b.gz`) read as one stream.
        let half = plain.len() / 2;
        let mut two = gzip(&plain[..half]);
        two.extend_from_slice(&gzip(&plain[half..]));
        let (got, err) = read_all(&mut reader(two).unwrap(), 1 << 20);
        assert!(err.is_none());
        assert_eq!(got.len(), data.len());
    }

    #[test]
    fn gzip_corruption_is_reported() {
        let data: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| (i * 7919).to_le_bytes().repeat(50))
            .collect();
        let recs: Vec<(u32, u32, &[u8])> = data.iter().map(|d| (1, 0, d.as_slice())).collect();
        let gz = gzip(&pcap_file(false, false, 1, &recs));
        // Truncated gzip stream.
        let (got, err) = read_all(&mut reader(gz[..gz.len() / 2].to_vec()).unwrap(), 1 << 16);
        assert!(got.len() < data.len());
        let err = err.expect("truncated gzip must be an error");
        assert!(err.to_string().starts_with("test.pcap: "), "{err}");
        // Garbage in the middle of the deflate stream.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let (got, err) = read_all(&mut reader(bad).unwrap(), 1 << 16);
        assert!(got.len() < data.len());
        assert!(err.is_some());
    }

    #[test]
    fn open_missing_file() {
        let e = CaptureReader::open(Path::new("/nonexistent/x.pcap")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/x.pcap: cannot open: "),
            "{e}"
        );
    }

    #[test]
    fn tsresol_conversions() {
        assert_eq!(TsRes::from_option(6).to_nanos(1_500_000), 1_500_000_000);
        assert_eq!(TsRes::from_option(9).to_nanos(7), 7);
        assert_eq!(TsRes::from_option(12).to_nanos(7_000), 7);
        assert_eq!(TsRes::from_option(0x80 | 10).to_nanos(1024), 1_000_000_000);
        assert_eq!(TsRes::from_option(0x80).to_nanos(2), 2_000_000_000);
        assert_eq!(TsRes::from_option(127).to_nanos(u64::MAX), 0);
        assert_eq!(TsRes::from_option(0xff).to_nanos(u64::MAX), 0);
    }

    proptest! {
        #[test]
        fn random_bytes_error_not_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(mut r) = reader(data) {
                let _ = read_all(&mut r, 128);
            }
        }

        #[test]
        fn random_bytes_after_valid_headers(tail in proptest::collection::vec(any::<u8>(), 0..600), ng: bool, be: bool) {
            let mut bytes = if ng {
                let mut n = Ng::new(be);
                n.idb(1, Some(0x85));
                n.out
            } else {
                pcap_file(be, false, 1, &[])
            };
            bytes.extend_from_slice(&tail);
            let mut r = reader(bytes).unwrap();
            let (got, _) = read_all(&mut r, 64);
            for (p, d) in got {
                prop_assert_eq!(p.len as usize, d.len());
            }
        }

        #[test]
        fn random_bytes_inside_gzip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(mut r) = reader(gzip(&data)) {
                let _ = read_all(&mut r, 128);
            }
        }
    }
}
