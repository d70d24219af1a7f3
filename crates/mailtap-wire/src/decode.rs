//! Checked, zero-copy packet decoding: link layer → IPv4/IPv6 → TCP.
//!
//! [`decode`] only slices the input; it never allocates or copies. Every
//! field access is preceded by a length check, so arbitrary bytes produce a
//! [`DecodeError`] rather than a panic.
//!
//! Policy decisions (documented here because the engine depends on them):
//! * The IP total length (IPv4) / payload length (IPv6) is authoritative:
//!   bytes after it (Ethernet padding, trailing FCS) are ignored, and a packet
//!   whose captured bytes are *shorter* than the IP length (snaplen
//!   truncation) is an error ([`DecodeError::TruncatedIpv4Payload`] /
//!   [`DecodeError::TruncatedIpv6Payload`]).
//! * IPv4 fragments (MF set or offset ≠ 0) and IPv6 packets carrying a
//!   non-atomic Fragment header become [`Decoded::Fragment`]. An IPv6 *atomic*
//!   fragment (offset 0, M = 0, RFC 6946) is skipped over and decoded as a
//!   whole packet.
//! * Checksums are verified only when asked; a bad IPv4 header checksum or TCP
//!   checksum is [`DecodeError::BadChecksum`]. Fragments get their IPv4
//!   header checksum checked; the TCP checksum is checked after reassembly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::source::LinkType;

/// Maximum number of stacked 802.1Q / 802.1ad tags accepted.
pub const MAX_VLAN_DEPTH: usize = 8;
/// Maximum number of IPv6 extension headers walked before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 16;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD1: u16 = 0x9100;
const ETHERTYPE_QINQ_OLD2: u16 = 0x9200;

const IPPROTO_TCP: u8 = 6;

/// TCP flag bits (the low byte of the flags field).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The raw bits.
    #[inline]
    pub fn bits(self) -> u8 {
        self.0
    }
    /// True if every bit of `other` is set in `self`.
    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// True if any bit of `other` is set in `self`.
    #[inline]
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Zeek-history-like letters: S, A, F, R, P, U, E, C (e.g. `SA`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, char); 8] = [
            (0x02, 'S'),
            (0x10, 'A'),
            (0x01, 'F'),
            (0x04, 'R'),
            (0x08, 'P'),
            (0x20, 'U'),
            (0x40, 'E'),
            (0x80, 'C'),
        ];
        write!(f, "TcpFlags(")?;
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        write!(f, ")")
    }
}

/// A decoded TCP segment; `payload` borrows from the packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<'a> {
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful only with ACK).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw (unscaled) window.
    pub window: u16,
    /// IP total length including the IP header (IPv6: 40 + payload length).
    pub ip_len: u32,
    /// TCP payload, trimmed to the IP length.
    pub payload: &'a [u8],
    /// `Some(true)` when checksums were verified and are correct; `None` when
    /// not verified. (Bad checksums are reported as [`DecodeError::BadChecksum`].)
    pub checksum_ok: Option<bool>,
}

/// IP version of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// One IP fragment, borrowed from the packet; feed it to
/// [`crate::Defragmenter::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentRef<'a> {
    /// IP version.
    pub version: IpVersion,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Identification (IPv4: 16 bits; IPv6: 32 bits from the Fragment header).
    pub id: u32,
    /// Offset of `payload` in the original datagram's fragmentable part, in bytes.
    pub offset: u32,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// Upper-layer protocol (IPv4 protocol field; IPv6: the Fragment header's
    /// Next Header, i.e. the first header of the fragmentable part).
    pub protocol: u8,
    /// IPv4: the whole IP header including options. IPv6: the fixed header
    /// plus every extension header before the Fragment header (the
    /// unfragmentable part).
    pub header: &'a [u8],
    /// IPv6: index in `header` of the Next Header byte that names the Fragment
    /// header (6 when it directly follows the fixed header). IPv4: 9 (the
    /// protocol field).
    pub next_header_index: usize,
    /// Fragment data (after the Fragment header for IPv6), trimmed to the IP length.
    pub payload: &'a [u8],
}

/// Result of [`decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete TCP segment.
    Tcp(TcpPacket<'a>),
    /// An IP fragment to be reassembled.
    Fragment(FragmentRef<'a>),
    /// Not TCP (UDP, ICMP, ARP, unknown EtherType, ESP, ...).
    Other,
}

/// Why a packet could not be decoded. [`DecodeError::name`] gives a stable
/// snake_case name for counters/weirds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 14-byte Ethernet header.
    TruncatedEthernet,
    /// A VLAN tag is cut off.
    TruncatedVlan,
    /// More than [`MAX_VLAN_DEPTH`] stacked VLAN tags.
    TooManyVlanTags,
    /// Shorter than the 16-byte Linux cooked (SLL) header.
    TruncatedSll,
    /// Shorter than the 20-byte Linux cooked v2 (SLL2) header.
    TruncatedSll2,
    /// Shorter than the 4-byte BSD loopback header.
    TruncatedNull,
    /// Raw IP whose first nibble is neither 4 nor 6 (or empty raw packet).
    UnknownIpVersion,
    /// Shorter than the IPv4 header (20 bytes or IHL).
    TruncatedIpv4Header,
    /// EtherType said IPv4 but the version nibble is not 4.
    BadIpv4Version,
    /// IHL below 5.
    BadIhl,
    /// IPv4 total length smaller than the header.
    TotalLengthTooShort,
    /// Fewer bytes captured than the IPv4 total length.
    TruncatedIpv4Payload,
    /// Shorter than the 40-byte IPv6 header.
    TruncatedIpv6,
    /// EtherType said IPv6 but the version nibble is not 6.
    BadIpv6Version,
    /// Fewer bytes captured than 40 + the IPv6 payload length.
    TruncatedIpv6Payload,
    /// An IPv6 extension header runs past the payload.
    ExtensionHeaderTruncated,
    /// More than [`MAX_IPV6_EXT_HEADERS`] extension headers.
    TooManyExtensionHeaders,
    /// TCP segment shorter than 20 bytes.
    TruncatedTcpHeader,
    /// TCP data offset below 5 or beyond the segment.
    BadTcpDataOffset,
    /// IPv4 header or TCP checksum wrong (only when verifying).
    BadChecksum,
}

impl DecodeError {
    /// Stable snake_case name, usable as a counter or weird name.
    pub fn name(&self) -> &'static str {
        match self {
            DecodeError::TruncatedEthernet => "truncated_ethernet",
            DecodeError::TruncatedVlan => "truncated_vlan",
            DecodeError::TooManyVlanTags => "too_many_vlan_tags",
            DecodeError::TruncatedSll => "truncated_sll",
            DecodeError::TruncatedSll2 => "truncated_sll2",
            DecodeError::TruncatedNull => "truncated_null",
            DecodeError::UnknownIpVersion => "unknown_ip_version",
            DecodeError::TruncatedIpv4Header => "truncated_ipv4_header",
            DecodeError::BadIpv4Version => "bad_ipv4_version",
            DecodeError::BadIhl => "bad_ihl",
            DecodeError::TotalLengthTooShort => "total_length_too_short",
            DecodeError::TruncatedIpv4Payload => "truncated_ipv4_payload",
            DecodeError::TruncatedIpv6 => "truncated_ipv6",
            DecodeError::BadIpv6Version => "bad_ipv6_version",
            DecodeError::TruncatedIpv6Payload => "truncated_ipv6_payload",
            DecodeError::ExtensionHeaderTruncated => "extension_header_truncated",
            DecodeError::TooManyExtensionHeaders => "too_many_extension_headers",
            DecodeError::TruncatedTcpHeader => "truncated_tcp_header",
            DecodeError::BadTcpDataOffset => "bad_tcp_data_offset",
            DecodeError::BadChecksum => "bad_checksum",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            DecodeError::TruncatedEthernet => "truncated Ethernet header",
            DecodeError::TruncatedVlan => "truncated VLAN tag",
            DecodeError::TooManyVlanTags => "too many stacked VLAN tags",
            DecodeError::TruncatedSll => "truncated Linux cooked (SLL) header",
            DecodeError::TruncatedSll2 => "truncated Linux cooked v2 (SLL2) header",
            DecodeError::TruncatedNull => "truncated BSD loopback header",
            DecodeError::UnknownIpVersion => "raw packet is neither IPv4 nor IPv6",
            DecodeError::TruncatedIpv4Header => "truncated IPv4 header",
            DecodeError::BadIpv4Version => "IPv4 EtherType but IP version is not 4",
            DecodeError::BadIhl => "IPv4 header length below 20 bytes",
            DecodeError::TotalLengthTooShort => "IPv4 total length shorter than its header",
            DecodeError::TruncatedIpv4Payload => "IPv4 packet shorter than its total length",
            DecodeError::TruncatedIpv6 => "truncated IPv6 header",
            DecodeError::BadIpv6Version => "IPv6 EtherType but IP version is not 6",
            DecodeError::TruncatedIpv6Payload => "IPv6 packet shorter than its payload length",
            DecodeError::ExtensionHeaderTruncated => "truncated IPv6 extension header",
            DecodeError::TooManyExtensionHeaders => "too many IPv6 extension headers",
            DecodeError::TruncatedTcpHeader => "truncated TCP header",
            DecodeError::BadTcpDataOffset => "bad TCP data offset",
            DecodeError::BadChecksum => "bad checksum",
        };
        f.write_str(msg)
    }
}

impl std::error::Error for DecodeError {}

#[inline(always)]
fn be16(d: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([d[i], d[i + 1]])
}

#[inline(always)]
fn be32(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Decodes one captured packet of the given link type.
///
/// With `verify_checksums`, the IPv4 header checksum and the TCP checksum are
/// checked and a mismatch is [`DecodeError::BadChecksum`].
pub fn decode(
    link: LinkType,
    data: &[u8],
    verify_checksums: bool,
) -> Result<Decoded<'_>, DecodeError> {
    match link {
        LinkType::Ethernet => {
            if data.len() < 14 {
                return Err(DecodeError::TruncatedEthernet);
            }
            ethertype(be16(data, 12), &data[14..], verify_checksums)
        }
        LinkType::LinuxSll => {
            if data.len() < 16 {
                return Err(DecodeError::TruncatedSll);
            }
            ethertype(be16(data, 14), &data[16..], verify_checksums)
        }
        LinkType::LinuxSll2 => {
            if data.len() < 20 {
                return Err(DecodeError::TruncatedSll2);
            }
            ethertype(be16(data, 0), &data[20..], verify_checksums)
        }
        LinkType::Null => {
            if data.len() < 4 {
                return Err(DecodeError::TruncatedNull);
            }
            let b = [data[0], data[1], data[2], data[3]];
            let (le, be) = (u32::from_le_bytes(b), u32::from_be_bytes(b));
            let is = |af: u32| le == af || be == af;
            if is(2) {
                ipv4(&data[4..], verify_checksums)
            } else if is(24) || is(28) || is(30) {
                ipv6(&data[4..], verify_checksums)
            } else {
                Ok(Decoded::Other)
            }
        }
        LinkType::Raw => match data.first().map(|b| b >> 4) {
            Some(4) => ipv4(data, verify_checksums),
            Some(6) => ipv6(data, verify_checksums),
            _ => Err(DecodeError::UnknownIpVersion),
        },
    }
}

/// Dispatches on an EtherType, first peeling 802.1Q/802.1ad tags.
fn ethertype(mut et: u16, mut d: &[u8], verify: bool) -> Result<Decoded<'_>, DecodeError> {
    let mut depth = 0;
    while matches!(
        et,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD1 | ETHERTYPE_QINQ_OLD2
    ) {
        if depth == MAX_VLAN_DEPTH {
            return Err(DecodeError::TooManyVlanTags);
        }
        if d.len() < 4 {
            return Err(DecodeError::TruncatedVlan);
        }
        et = be16(d, 2);
        d = &d[4..];
        depth += 1;
    }
    match et {
        ETHERTYPE_IPV4 => ipv4(d, verify),
        ETHERTYPE_IPV6 => ipv6(d, verify),
        _ => Ok(Decoded::Other),
    }
}

fn ipv4(d: &[u8], verify: bool) -> Result<Decoded<'_>, DecodeError> {
    if d.len() < 20 {
        return Err(DecodeError::TruncatedIpv4Header);
    }
    if d[0] >> 4 != 4 {
        return Err(DecodeError::BadIpv4Version);
    }
    let ihl = usize::from(d[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(DecodeError::BadIhl);
    }
    if d.len() < ihl {
        return Err(DecodeError::TruncatedIpv4Header);
    }
    let total = usize::from(be16(d, 2));
    if total < ihl {
        return Err(DecodeError::TotalLengthTooShort);
    }
    if total > d.len() {
        return Err(DecodeError::TruncatedIpv4Payload);
    }
    let d = &d[..total]; // drops Ethernet padding / FCS
    if verify && checksum_fold(checksum_sum(&d[..ihl], 0)) != 0xffff {
        return Err(DecodeError::BadChecksum);
    }
    let src = Ipv4Addr::new(d[12], d[13], d[14], d[15]);
    let dst = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    let proto = d[9];
    let ff = be16(d, 6);
    let more = ff & 0x2000 != 0;
    let offset = u32::from(ff & 0x1fff) * 8;
    if more || offset != 0 {
        return Ok(Decoded::Fragment(FragmentRef {
            version: IpVersion::V4,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            id: u32::from(be16(d, 4)),
            offset,
            more_fragments: more,
            protocol: proto,
            header: &d[..ihl],
            next_header_index: 9,
            payload: &d[ihl..],
        }));
    }
    if proto != IPPROTO_TCP {
        return Ok(Decoded::Other);
    }
    let pseudo = if verify {
        // src + dst + zero/protocol + TCP length
        checksum_sum(&d[12..20], u64::from(IPPROTO_TCP) + (total - ihl) as u64)
    } else {
        0
    };
    tcp(
        IpAddr::V4(src),
        IpAddr::V4(dst),
        &d[ihl..],
        total as u32,
        verify.then_some(pseudo),
    )
}

fn ipv6(d: &[u8], verify: bool) -> Result<Decoded<'_>, DecodeError> {
    if d.len() < 40 {
        return Err(DecodeError::TruncatedIpv6);
    }
    if d[0] >> 4 != 6 {
        return Err(DecodeError::BadIpv6Version);
    }
    let plen = usize::from(be16(d, 4));
    let total = 40 + plen;
    if total > d.len() {
        return Err(DecodeError::TruncatedIpv6Payload);
    }
    let d = &d[..total];
    let mut src_b = [0u8; 16];
    src_b.copy_from_slice(&d[8..24]);
    let mut dst_b = [0u8; 16];
    dst_b.copy_from_slice(&d[24..40]);
    let src = IpAddr::V6(Ipv6Addr::from(src_b));
    let dst = IpAddr::V6(Ipv6Addr::from(dst_b));

    let mut nh = d[6];
    let mut nh_index = 6usize; // where `nh` was read from
    let mut off = 40usize;
    let mut count = 0usize;
    loop {
        match nh {
            IPPROTO_TCP => break,
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
            // generic (len + 1) * 8 format.
            0 | 43 | 60 | 135 | 139 | 140 | 51 | 44 => {
                if count == MAX_IPV6_EXT_HEADERS {
                    return Err(DecodeError::TooManyExtensionHeaders);
                }
                count += 1;
                let rest = &d[off..];
                if nh == 44 {
                    // Fragment header: fixed 8 bytes.
                    if rest.len() < 8 {
                        return Err(DecodeError::ExtensionHeaderTruncated);
                    }
                    let fo = be16(rest, 2);
                    let offset = u32::from(fo & 0xfff8);
                    let more = fo & 1 != 0;
                    if offset == 0 && !more {
                        // Atomic fragment (RFC 6946): process as unfragmented.
                        nh = rest[0];
                        nh_index = off;
                        off += 8;
                        continue;
                    }
                    return Ok(Decoded::Fragment(FragmentRef {
                        version: IpVersion::V6,
                        src,
                        dst,
                        id: be32(rest, 4),
                        offset,
                        more_fragments: more,
                        protocol: rest[0],
                        header: &d[..off],
                        next_header_index: nh_index,
                        payload: &rest[8..],
                    }));
                }
                if rest.len() < 2 {
                    return Err(DecodeError::ExtensionHeaderTruncated);
                }
                let len = if nh == 51 {
                    (usize::from(rest[1]) + 2) * 4 // AH: 32-bit words minus 2
                } else {
                    (usize::from(rest[1]) + 1) * 8
                };
                if rest.len() < len {
                    return Err(DecodeError::ExtensionHeaderTruncated);
                }
                nh = rest[0];
                nh_index = off;
                off += len;
            }
            // ESP (50), no next header (59), UDP, ICMPv6, anything else.
            _ => return Ok(Decoded::Other),
        }
    }
    let seg_len = total - off;
    let pseudo = if verify {
        checksum_sum(&d[8..40], u64::from(IPPROTO_TCP) + seg_len as u64)
    } else {
        0
    };
    tcp(src, dst, &d[off..], total as u32, verify.then_some(pseudo))
}

fn tcp<'a>(
    src: IpAddr,
    dst: IpAddr,
    seg: &'a [u8],
    ip_len: u32,
    pseudo_sum: Option<u64>,
) -> Result<Decoded<'a>, DecodeError> {
    if seg.len() < 20 {
        return Err(DecodeError::TruncatedTcpHeader);
    }
    let doff = usize::from(seg[12] >> 4) * 4;
    if doff < 20 || doff > seg.len() {
        return Err(DecodeError::BadTcpDataOffset);
    }
    let checksum_ok = match pseudo_sum {
        Some(p) => {
            if checksum_fold(checksum_sum(seg, p)) != 0xffff {
                return Err(DecodeError::BadChecksum);
            }
            Some(true)
        }
        None => None,
    };
    Ok(Decoded::Tcp(TcpPacket {
        src,
        dst,
        src_port: be16(seg, 0),
        dst_port: be16(seg, 2),
        seq: be32(seg, 4),
        ack: be32(seg, 8),
        flags: TcpFlags(seg[13]),
        window: be16(seg, 14),
        ip_len,
        payload: &seg[doff..],
        checksum_ok,
    }))
}

/// Adds `data` as big-endian 16-bit words (odd trailing byte padded) to `acc`.
/// Summing 32-bit words and folding later is equivalent because 2^16 ≡ 1
/// modulo 2^16 − 1.
#[inline]
pub(crate) fn checksum_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let r = chunks.remainder();
    match r.len() {
        1 => acc += u64::from(r[0]) << 8,
        2 => acc += u64::from(u16::from_be_bytes([r[0], r[1]])),
        3 => acc += u64::from(u16::from_be_bytes([r[0], r[1]])) + (u64::from(r[2]) << 8),
        _ => {}
    }
    acc
}

/// Folds a checksum accumulator to 16 bits (one's-complement sum, not inverted).
#[inline]
pub(crate) fn checksum_fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

const K0: u64 = 0x243f_6a88_85a3_08d3; // digits of pi, nothing up the sleeve
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;
const K3: u64 = 0x082e_fa98_ec4e_6c89;

#[inline(always)]
fn folded_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The secret key of [`flow_hash_keyed`]. Without it an attacker could
/// compute which shard a 4-tuple lands on and aim every flow at one shard;
/// a run takes a random key ([`FlowHashKey::random`]) unless one is
/// configured ([`FlowHashKey::from_str_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHashKey(pub [u64; 4]);

impl FlowHashKey {
    /// The published fixed key of [`flow_hash`] (digits of pi): stable
    /// across runs, and so predictable; for tests and benchmarks.
    pub const FIXED: FlowHashKey = FlowHashKey([K0, K1, K2, K3]);

    /// A key from the operating system's randomness (through std's
    /// randomly seeded SipHash keys, plus the time and a counter).
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let state = std::collections::hash_map::RandomState::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut k = [0u64; 4];
        for (i, w) in k.iter_mut().enumerate() {
            let mut h = state.build_hasher();
            h.write_u64(c);
            h.write_u128(now);
            h.write_usize(i);
            *w = h.finish();
        }
        Self::from_words(k)
    }

    /// A key derived from a configured string (the same string gives the
    /// same shards on every run and sensor).
    pub fn from_str_key(s: &str) -> Self {
        // FNV-1a then four folded multiplies: deterministic, no dependency.
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in s.as_bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut k = [0u64; 4];
        let mut acc = x;
        for (i, w) in k.iter_mut().enumerate() {
            acc = folded_mul(acc ^ [K0, K1, K2, K3][i], K3 ^ (i as u64 + 1) ^ x);
            *w = acc;
        }
        Self::from_words(k)
    }

    /// Words with no all-zero multiplier (a zero would make the folded
    /// multiply constant).
    fn from_words(mut k: [u64; 4]) -> Self {
        for w in &mut k {
            if *w == 0 {
                *w = K1;
            }
        }
        FlowHashKey(k)
    }
}

impl Default for FlowHashKey {
    fn default() -> Self {
        Self::FIXED
    }
}

/// Symmetric flow hash for sharding with the fixed published key: the same
/// value for both directions of a TCP 4-tuple, stable across runs and
/// processes. Shard selection uses [`flow_hash_keyed`] with a per-run key.
#[inline]
pub fn flow_hash(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> u64 {
    flow_hash_keyed(&FlowHashKey::FIXED, src, src_port, dst, dst_port)
}

/// Symmetric keyed flow hash: the two endpoints are put in a canonical
/// order, then mixed with a folded-multiply hash (wyhash/ahash style)
/// keyed by `key`, so `hash(a, b) == hash(b, a)` for every key and, the
/// key being secret, nobody outside can choose 4-tuples that share a shard.
#[inline]
pub fn flow_hash_keyed(
    key: &FlowHashKey,
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
) -> u64 {
    let [k0, k1, k2, k3] = key.0;
    let (a, pa, b, pb) = if (src, src_port) <= (dst, dst_port) {
        (src, src_port, dst, dst_port)
    } else {
        (dst, dst_port, src, src_port)
    };
    let ports = (u64::from(pa) << 16) | u64::from(pb);
    let h = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let ab = (u64::from(u32::from(a)) << 32) | u64::from(u32::from(b));
            folded_mul(ab ^ k0, ports ^ k1)
        }
        _ => {
            let a = ip_bits(a);
            let b = ip_bits(b);
            let h = folded_mul((a >> 64) as u64 ^ k0, a as u64 ^ k1);
            let h = folded_mul(h ^ (b >> 64) as u64, (b as u64) ^ k2);
            folded_mul(h ^ ports, k3 ^ 1)
        }
    };
    folded_mul(h ^ k2, k3)
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)) | (0xffff << 32),
        IpAddr::V6(v) => u128::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use proptest::prelude::*;

    fn tcp_of(d: Result<Decoded<'_>, DecodeError>) -> TcpPacket<'_> {
        match d {
            Ok(Decoded::Tcp(t)) => t,
            other => panic!("expected TCP, got {other:?}"),
        }
    }

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 25)),
        )
    }

    fn v6() -> (IpAddr, IpAddr) {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        )
    }

    #[test]
    fn ethernet_ipv4_tcp_fields() {
        let (s, d) = v4();
        let seg = TcpSpec {
            flags: 0x18,
            payload: b"EHLO x\r\n".to_vec(),
            ..TcpSpec::default()
        };
        let ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        let pkt = ethernet(&[], 0x0800, &ip);
        for verify in [false, true] {
            let t = tcp_of(decode(LinkType::Ethernet, &pkt, verify));
            assert_eq!(t.src, s);
            assert_eq!(t.dst, d);
            assert_eq!(t.src_port, 40000);
            assert_eq!(t.dst_port, 25);
            assert_eq!(t.seq, 1000);
            assert_eq!(t.ack, 2000);
            assert_eq!(t.flags, TcpFlags::PSH | TcpFlags::ACK);
            assert!(t.flags.contains(TcpFlags::ACK) && !t.flags.intersects(TcpFlags::SYN));
            assert_eq!(t.window, 65535);
            assert_eq!(t.payload, b"EHLO x\r\n");
            assert_eq!(t.ip_len, 20 + 20 + 8);
            assert_eq!(t.checksum_ok, if verify { Some(true) } else { None });
        }
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let (s, d) = v4();
        let seg = TcpSpec {
            flags: 0x10,
            ..TcpSpec::default()
        };
        let ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        let mut pkt = ethernet(&[], 0x0800, &ip);
        pkt.extend_from_slice(&[0u8; 6]); // pad to 60 bytes
        pkt.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // FCS
        let t = tcp_of(decode(LinkType::Ethernet, &pkt, true));
        assert!(t.payload.is_empty());
        assert_eq!(t.ip_len, 40);
    }

    #[test]
    fn vlan_and_qinq() {
        let (s, d) = v4();
        let seg = TcpSpec {
            payload: b"hi".to_vec(),
            ..TcpSpec::default()
        };
        let ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        for tags in [
            vec![(0x8100, 10)],
            vec![(0x88a8, 100), (0x8100, 10)],
            vec![(0x9100, 1), (0x9100, 2), (0x8100, 3)],
        ] {
            let pkt = ethernet(&tags, 0x0800, &ip);
            let t = tcp_of(decode(LinkType::Ethernet, &pkt, true));
            assert_eq!(t.payload, b"hi", "tags {tags:?}");
        }
        let deep: Vec<(u16, u16)> = (0..MAX_VLAN_DEPTH as u16 + 1)
            .map(|i| (0x8100, i))
            .collect();
        let pkt = ethernet(&deep, 0x0800, &ip);
        assert_eq!(
            decode(LinkType::Ethernet, &pkt, false),
            Err(DecodeError::TooManyVlanTags)
        );
        let ok: Vec<(u16, u16)> = (0..MAX_VLAN_DEPTH as u16).map(|i| (0x8100, i)).collect();
        assert!(matches!(
            decode(LinkType::Ethernet, &ethernet(&ok, 0x0800, &ip), false),
            Ok(Decoded::Tcp(_))
        ));
    }

    #[test]
    fn non_ip_and_non_tcp_are_other() {
        let (s, d) = v4();
        let arp = ethernet(&[], 0x0806, &[0u8; 28]);
        assert_eq!(decode(LinkType::Ethernet, &arp, true), Ok(Decoded::Other));
        let udp = ipv4_packet(s, d, &[], 17, &[0u8; 8]);
        assert_eq!(decode(LinkType::Raw, &udp, true), Ok(Decoded::Other));
        let (s6, d6) = v6();
        let esp = ipv6_packet(s6, d6, &[], 50, &[0u8; 16]);
        assert_eq!(decode(LinkType::Raw, &esp, false), Ok(Decoded::Other));
        let none = ipv6_packet(s6, d6, &[(0, vec![0; 6])], 59, &[]);
        assert_eq!(decode(LinkType::Raw, &none, false), Ok(Decoded::Other));
    }

    #[test]
    fn all_link_types() {
        let (s, d) = v4();
        let (s6, d6) = v6();
        let seg = TcpSpec {
            payload: b"DATA".to_vec(),
            ..TcpSpec::default()
        };
        let ip4 = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        let ip6 = ipv6_packet(s6, d6, &[], 6, &tcp_segment(s6, d6, &seg));
        for (ip, et, af) in [(&ip4, 0x0800u16, 2u32), (&ip6, 0x86dd, 30)] {
            // Linux SLL: packet type, ARPHRD, addr len, addr[8], protocol.
            let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
            sll.extend_from_slice(&et.to_be_bytes());
            sll.extend_from_slice(ip);
            // SLL2: protocol, reserved, ifindex, ARPHRD, pkttype, addrlen, addr[8].
            let mut sll2 = et.to_be_bytes().to_vec();
            sll2.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
            sll2.extend_from_slice(ip);
            let mut null_le = af.to_le_bytes().to_vec();
            null_le.extend_from_slice(ip);
            let mut null_be = af.to_be_bytes().to_vec();
            null_be.extend_from_slice(ip);
            let eth = ethernet(&[], et, ip);
            for (link, pkt) in [
                (LinkType::Ethernet, &eth),
                (LinkType::LinuxSll, &sll),
                (LinkType::LinuxSll2, &sll2),
                (LinkType::Null, &null_le),
                (LinkType::Null, &null_be),
                (LinkType::Raw, ip),
            ] {
                let t = tcp_of(decode(link, pkt, true));
                assert_eq!(t.payload, b"DATA", "{link:?}");
            }
        }
        for af in [24u32, 28] {
            let mut p = af.to_le_bytes().to_vec();
            p.extend_from_slice(&ip6);
            assert_eq!(tcp_of(decode(LinkType::Null, &p, true)).src, s6);
        }
        let mut p = 7u32.to_le_bytes().to_vec();
        p.extend_from_slice(&ip4);
        assert_eq!(decode(LinkType::Null, &p, true), Ok(Decoded::Other));
        assert_eq!(
            decode(LinkType::Raw, &[0x50; 40], true),
            Err(DecodeError::UnknownIpVersion)
        );
        assert_eq!(
            decode(LinkType::Raw, &[], true),
            Err(DecodeError::UnknownIpVersion)
        );
    }

    #[test]
    fn ipv4_options_and_tcp_options() {
        let (s, d) = v4();
        // Record-route-ish option padded to 12 bytes → IHL 8.
        let opts = [7u8, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let tcp_opts = [2u8, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]; // MSS, NOP, NOP, SACKOK, NOP, WS
        let seg = TcpSpec {
            flags: 0x02,
            options: tcp_opts.to_vec(),
            payload: b"xyz".to_vec(),
            ..TcpSpec::default()
        };
        let ip = ipv4_packet(s, d, &opts, 6, &tcp_segment(s, d, &seg));
        assert_eq!(ip[0], 0x48);
        let t = tcp_of(decode(LinkType::Raw, &ip, true));
        assert_eq!(t.payload, b"xyz");
        assert_eq!(t.flags, TcpFlags::SYN);
        assert_eq!(t.ip_len as usize, ip.len());
    }

    #[test]
    fn ipv6_extension_headers() {
        let (s, d) = v6();
        let seg = TcpSpec {
            payload: b"MAIL FROM:<a@b>\r\n".to_vec(),
            ..TcpSpec::default()
        };
        let tcp = tcp_segment(s, d, &seg);
        let exts = vec![
            (0u8, vec![1, 4, 0, 0, 0, 0]), // hop-by-hop, PadN → 8 bytes
            (43, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // routing, 16 bytes
            (60, vec![1, 4, 0, 0, 0, 0]),  // destination options
            (51, vec![0; 14]),             // AH: (len+2)*4 = 16 bytes
            (44, vec![0, 0, 0, 0, 0, 0]),  // atomic fragment
        ];
        let ip = ipv6_packet(s, d, &exts, 6, &tcp);
        let t = tcp_of(decode(LinkType::Raw, &ip, true));
        assert_eq!(t.payload, b"MAIL FROM:<a@b>\r\n");
        assert_eq!(t.ip_len as usize, ip.len());
        assert_eq!(t.src, s);

        let many: Vec<(u8, Vec<u8>)> = (0..=MAX_IPV6_EXT_HEADERS)
            .map(|_| (60, vec![1, 4, 0, 0, 0, 0]))
            .collect();
        let ip = ipv6_packet(s, d, &many, 6, &tcp);
        assert_eq!(
            decode(LinkType::Raw, &ip, false),
            Err(DecodeError::TooManyExtensionHeaders)
        );

        // An extension header whose length runs past the payload.
        let mut ip = ipv6_packet(s, d, &[(60, vec![1, 4, 0, 0, 0, 0])], 6, &[]);
        ip[41] = 5;
        assert_eq!(
            decode(LinkType::Raw, &ip, false),
            Err(DecodeError::ExtensionHeaderTruncated)
        );
    }

    #[test]
    fn ipv4_fragment_ref() {
        let (s, d) = v4();
        let mut ip = ipv4_packet(s, d, &[], 6, &[0xaa; 16]);
        ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        ip[6..8].copy_from_slice(&(0x2000u16 | 3).to_be_bytes()); // MF, offset 24
        fix_ipv4_checksum(&mut ip);
        match decode(LinkType::Raw, &ip, true) {
            Ok(Decoded::Fragment(f)) => {
                assert_eq!(f.version, IpVersion::V4);
                assert_eq!(
                    (f.id, f.offset, f.more_fragments, f.protocol),
                    (0x1234, 24, true, 6)
                );
                assert_eq!(f.header.len(), 20);
                assert_eq!(f.payload, &[0xaa; 16]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv6_fragment_ref() {
        let (s, d) = v6();
        let fh = vec![0u8, 0x01, 0x11, 0x22, 0x33, 0x44]; // offset 0, M=1, id
        let ip = ipv6_packet(
            s,
            d,
            &[(0, vec![1, 4, 0, 0, 0, 0]), (44, fh)],
            6,
            &[0xbb; 24],
        );
        match decode(LinkType::Raw, &ip, true) {
            Ok(Decoded::Fragment(f)) => {
                assert_eq!(f.version, IpVersion::V6);
                assert_eq!(
                    (f.id, f.offset, f.more_fragments, f.protocol),
                    (0x1122_3344, 0, true, 6)
                );
                assert_eq!(f.header.len(), 48);
                assert_eq!(f.next_header_index, 40);
                assert_eq!(f.header[f.next_header_index], 44);
                assert_eq!(f.payload, &[0xbb; 24]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checksum_verification_on_and_off() {
        let (s, d) = v4();
        let seg = TcpSpec {
            payload: b"hello".to_vec(),
            ..TcpSpec::default()
        };
        let ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        // Corrupt the payload: TCP checksum now wrong.
        let mut bad_tcp = ip.clone();
        *bad_tcp.last_mut().unwrap() ^= 0x20;
        assert_eq!(
            decode(LinkType::Raw, &bad_tcp, true),
            Err(DecodeError::BadChecksum)
        );
        assert_eq!(
            tcp_of(decode(LinkType::Raw, &bad_tcp, false)).payload,
            b"hellO"
        );
        // Corrupt the IP header checksum.
        let mut bad_ip = ip.clone();
        bad_ip[10] ^= 1;
        assert_eq!(
            decode(LinkType::Raw, &bad_ip, true),
            Err(DecodeError::BadChecksum)
        );
        assert!(decode(LinkType::Raw, &bad_ip, false).is_ok());
        // IPv6 TCP checksum, odd payload length.
        let (s6, d6) = v6();
        let seg = TcpSpec {
            payload: b"odd".to_vec(),
            ..TcpSpec::default()
        };
        let mut ip6 = ipv6_packet(
            s6,
            d6,
            &[(60, vec![1, 4, 0, 0, 0, 0])],
            6,
            &tcp_segment(s6, d6, &seg),
        );
        assert_eq!(
            tcp_of(decode(LinkType::Raw, &ip6, true)).checksum_ok,
            Some(true)
        );
        ip6[50] ^= 0x80;
        assert_eq!(
            decode(LinkType::Raw, &ip6, true),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn every_prefix_is_an_error() {
        let (s, d) = v4();
        let (s6, d6) = v6();
        let seg = TcpSpec {
            options: vec![1, 1, 1, 0],
            payload: b"QUIT\r\n".to_vec(),
            ..TcpSpec::default()
        };
        let ip4 = ipv4_packet(s, d, &[1, 1, 1, 0], 6, &tcp_segment(s, d, &seg));
        let ip6 = ipv6_packet(
            s6,
            d6,
            &[(0, vec![1, 4, 0, 0, 0, 0])],
            6,
            &tcp_segment(s6, d6, &seg),
        );
        let cases: Vec<(LinkType, Vec<u8>)> = vec![
            (
                LinkType::Ethernet,
                ethernet(&[(0x88a8, 1), (0x8100, 2)], 0x0800, &ip4),
            ),
            (LinkType::Ethernet, ethernet(&[(0x8100, 2)], 0x86dd, &ip6)),
            (LinkType::Raw, ip4.clone()),
            (LinkType::Raw, ip6.clone()),
            (
                LinkType::Null,
                [2u8, 0, 0, 0].iter().chain(&ip4).copied().collect(),
            ),
            (
                LinkType::LinuxSll,
                [0u8; 14]
                    .iter()
                    .chain(&[0x86, 0xdd])
                    .chain(&ip6)
                    .copied()
                    .collect(),
            ),
            (
                LinkType::LinuxSll2,
                [0x08u8, 0]
                    .iter()
                    .chain(&[0; 18])
                    .chain(&ip4)
                    .copied()
                    .collect(),
            ),
        ];
        for (link, pkt) in cases {
            assert!(
                matches!(decode(link, &pkt, true), Ok(Decoded::Tcp(_))),
                "{link:?}"
            );
            for n in 0..pkt.len() {
                for verify in [false, true] {
                    assert!(
                        decode(link, &pkt[..n], verify).is_err(),
                        "{link:?} prefix {n} decoded"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_ip_and_tcp_headers() {
        let (s, d) = v4();
        let seg = TcpSpec::default();
        let ip = ipv4_packet(s, d, &[], 6, &tcp_segment(s, d, &seg));
        let mut p = ip.clone();
        p[0] = 0x44;
        assert_eq!(decode(LinkType::Raw, &p, false), Err(DecodeError::BadIhl));
        assert_eq!(
            decode(
                LinkType::Ethernet,
                &ethernet(&[], 0x0800, &[0x60; 40]),
                false
            ),
            Err(DecodeError::BadIpv4Version)
        );
        assert_eq!(
            decode(
                LinkType::Ethernet,
                &ethernet(&[], 0x86dd, &[0x45; 40]),
                false
            ),
            Err(DecodeError::BadIpv6Version)
        );
        let mut p = ip.clone();
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::Raw, &p, false),
            Err(DecodeError::TotalLengthTooShort)
        );
        let mut p = ip.clone();
        p[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(
            decode(LinkType::Raw, &p, false),
            Err(DecodeError::TruncatedTcpHeader)
        );
        let mut p = ip.clone();
        p[32] = 0x40;
        assert_eq!(
            decode(LinkType::Raw, &p, false),
            Err(DecodeError::BadTcpDataOffset)
        );
        let mut p = ip.clone();
        p[32] = 0x60;
        assert_eq!(
            decode(LinkType::Raw, &p, false),
            Err(DecodeError::BadTcpDataOffset)
        );
        for e in [DecodeError::BadChecksum, DecodeError::TruncatedEthernet] {
            assert!(!e.name().is_empty() && !e.to_string().is_empty());
        }
    }

    #[test]
    fn flow_hash_examples() {
        let (a, b) = v4();
        let h = flow_hash(a, 1234, b, 25);
        assert_eq!(h, flow_hash(b, 25, a, 1234));
        assert_ne!(h, flow_hash(a, 1235, b, 25));
        assert_ne!(h, flow_hash(a, 25, b, 1234));
        let (c, d) = v6();
        assert_eq!(flow_hash(c, 1, d, 2), flow_hash(d, 2, c, 1));
        assert_ne!(flow_hash(c, 1, d, 2), flow_hash(c, 1, d, 3));
        // Spread over shards: 4096 flows from one client to one server.
        let mut buckets = [0u32; 8];
        for p in 0..4096u16 {
            buckets[(flow_hash(a, 10_000 + p, b, 25) % 8) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (400..=620).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn keyed_flow_hash_depends_on_the_key_and_stays_symmetric() {
        let (a, b) = v4();
        let (c, d) = v6();
        // The fixed key is the old function's: stable.
        assert_eq!(
            flow_hash_keyed(&FlowHashKey::FIXED, a, 1234, b, 25),
            flow_hash(a, 1234, b, 25)
        );
        let k1 = FlowHashKey::random();
        let k2 = FlowHashKey::random();
        assert_ne!(k1, k2);
        assert_eq!(
            FlowHashKey::from_str_key("x"),
            FlowHashKey::from_str_key("x")
        );
        assert_ne!(
            FlowHashKey::from_str_key("x"),
            FlowHashKey::from_str_key("y")
        );
        // Flows an attacker picked to share shard 0 of 8 under the
        // published key spread out under a secret one.
        let aimed: Vec<u16> = (1024..u16::MAX)
            .filter(|&p| flow_hash(a, p, b, 25) & 7 == 0)
            .take(2000)
            .collect();
        assert_eq!(aimed.len(), 2000);
        for k in [k1, k2, FlowHashKey::from_str_key("sensor-1")] {
            let mut buckets = [0u32; 8];
            for &p in &aimed {
                let h = flow_hash_keyed(&k, a, p, b, 25);
                assert_eq!(h, flow_hash_keyed(&k, b, 25, a, p));
                buckets[(h % 8) as usize] += 1;
            }
            assert!(
                buckets.iter().all(|&n| (150..=350).contains(&n)),
                "{buckets:?}"
            );
            assert_eq!(
                flow_hash_keyed(&k, c, 1, d, 2),
                flow_hash_keyed(&k, d, 2, c, 1)
            );
        }
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        ]
    }

    proptest! {
        #[test]
        fn flow_hash_is_symmetric(a in arb_ip(), pa: u16, b in arb_ip(), pb: u16) {
            prop_assert_eq!(flow_hash(a, pa, b, pb), flow_hash(b, pb, a, pa));
        }

        #[test]
        fn keyed_flow_hash_is_symmetric(k: [u64; 4], a in arb_ip(), pa: u16, b in arb_ip(), pb: u16) {
            let k = FlowHashKey(k);
            prop_assert_eq!(flow_hash_keyed(&k, a, pa, b, pb), flow_hash_keyed(&k, b, pb, a, pa));
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), verify: bool) {
            for link in [LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Null] {
                let _ = decode(link, &data, verify);
            }
        }

        #[test]
        fn mutated_valid_packet_never_panics(idx in 0usize..200, val: u8, cut in 0usize..200) {
            let (s, d) = v6();
            let seg = TcpSpec { payload: b"x".to_vec(), ..TcpSpec::default() };
            let ip6 = ipv6_packet(s, d, &[(0, vec![1, 4, 0, 0, 0, 0]), (44, vec![0, 1, 0, 0, 0, 1])], 6, &tcp_segment(s, d, &seg));
            let mut pkt = ethernet(&[(0x8100, 5)], 0x86dd, &ip6);
            let i = idx % pkt.len();
            pkt[i] = val;
            pkt.truncate(cut.max(1));
            let _ = decode(LinkType::Ethernet, &pkt, true);
        }
    }
}
