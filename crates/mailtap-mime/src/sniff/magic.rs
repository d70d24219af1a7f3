//! Binary formats recognised by their magic numbers, written from each
//! format's published layout (the specifications named at every rule) and
//! named as Zeek 8.2.2 names them in files.log.
//!
//! One `match` on the first byte picks the few rules that can apply, so a
//! call reads a handful of bytes; the only scans (zip local headers, the EBML
//! DocType) are bounded by the BOF buffer. Nothing allocates.

/// The type of a binary format starting at `b[0]`, if one is recognised.
pub(super) fn binary(b: &[u8]) -> Option<&'static str> {
    by_first_byte(b)
        .or_else(|| pyc(b))
        .or_else(|| lha(b))
        .or_else(|| tar(b))
}

fn by_first_byte(b: &[u8]) -> Option<&'static str> {
    let &first = b.first()?;
    match first {
        0x00 => zero(b),
        0x1a if b.starts_with(b"\x1a\x45\xdf\xa3") => ebml(b),
        0x1f => match b.get(1)? {
            // RFC 1952 member header: ID1 ID2, CM 8 = deflate.
            0x8b => Some("application/x-gzip"),
            // compress(1) .Z: 1F 9D.
            0x9d => Some("application/x-compress"),
            _ => None,
        },
        0x04 if b.starts_with(b"\x04\x22\x4d\x18") => Some("application/x-lz4"),
        0x2e if b.starts_with(b".snd") => Some("audio/basic"),
        0x30 if b
            .starts_with(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c") =>
        {
            // ASF header object GUID 75B22630-668E-11CF-A6D9-00AA0062CE6C.
            Some("video/x-ms-asf")
        }
        // ASCII cpio headers: "070707" (odc), "070701"/"070702" (newc, crc).
        0x30 if b.starts_with(b"07070")
            && b.get(5).is_some_and(|c| matches!(c, b'1' | b'2' | b'7')) =>
        {
            Some("application/x-cpio")
        }
        0x37 if b.starts_with(b"7z\xbc\xaf\x27\x1c") => Some("application/x-7z-compressed"),
        0x42 => {
            if b.starts_with(b"BZh") && b.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
                Some("application/x-bzip2")
            } else if is_bmp(b) {
                Some("image/x-ms-bmp")
            } else {
                None
            }
        }
        0x46 => {
            if b.starts_with(b"FORM") && (at(b, 8, b"AIFF") || at(b, 8, b"AIFC")) {
                Some("audio/x-aiff")
            } else if b.starts_with(b"FLV\x01") {
                Some("video/x-flv")
            } else if b.starts_with(b"FWS") && b.get(3).is_some_and(|&v| (1..=50).contains(&v)) {
                // Uncompressed SWF: "FWS" + version (CWS/ZWS below).
                Some("application/x-shockwave-flash")
            } else {
                None
            }
        }
        0x43 | 0x5a if at(b, 1, b"WS") && b.get(3).is_some_and(|&v| (1..=50).contains(&v)) => {
            Some("application/x-shockwave-flash")
        }
        0x41 if b.starts_with(b"AT&TFORM") && (at(b, 12, b"DJVU") || at(b, 12, b"DJVM")) => {
            Some("image/vnd.djvu")
        }
        0x47 => {
            if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
                Some("image/gif")
            } else if is_mpeg_ts(b) {
                Some("video/mp2t")
            } else {
                None
            }
        }
        0x49 => {
            if b.starts_with(b"II*\x00") {
                Some("image/tiff")
            } else if b.starts_with(b"ID3") && b.get(3).is_some_and(|v| (2..=4).contains(v)) {
                // ID3v2 tag in front of MPEG audio.
                Some("audio/mpeg")
            } else {
                None
            }
        }
        0x4d => {
            if b.starts_with(b"MM\x00*") {
                Some("image/tiff")
            } else if b.starts_with(b"\x4d\x3c\xb2\xa1") {
                Some("application/vnd.tcpdump.pcap")
            } else if b.starts_with(b"MZ") {
                Some("application/x-dosexec")
            } else if b.starts_with(b"MThd\x00\x00\x00\x06") {
                Some("audio/midi")
            } else if b.starts_with(b"MSCF\x00\x00\x00\x00") {
                Some("application/vnd.ms-cab-compressed")
            } else {
                None
            }
        }
        0x4c => {
            if b.starts_with(b"LZIP") {
                Some("application/x-lzip")
            } else if b.starts_with(b"LRZI") {
                Some("application/x-lrzip")
            } else if b.starts_with(
                // MS-SHLLINK: HeaderSize 0x4C, then LinkCLSID
                // 00021401-0000-0000-C000-000000000046.
                b"\x4c\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46",
            ) {
                Some("application/x-ms-shortcut")
            } else {
                None
            }
        }
        0x4f if b.starts_with(b"OggS\x00") => Some("application/ogg"),
        0x50 if b.starts_with(b"PK") => zip(b),
        0x52 => {
            if b.starts_with(b"RIFF") {
                match b.get(8..12)? {
                    b"WAVE" => Some("audio/x-wav"),
                    b"AVI " => Some("video/x-msvideo"),
                    b"WEBP" => Some("image/webp"),
                    _ => None,
                }
            } else if b.starts_with(b"Rar!\x1a\x07\x00") || b.starts_with(b"Rar!\x1a\x07\x01\x00") {
                Some("application/x-rar")
            } else {
                None
            }
        }
        0x5d if is_lzma_alone(b) => Some("application/x-lzma"),
        0x60 if is_arj(b) => Some("application/x-arj"),
        0x62 if b.starts_with(b"bplist0") => Some("application/bplist"),
        0x66 if b.starts_with(b"fLaC") => Some("audio/x-flac"),
        // Sony Wave64: the "riff" GUID 66666972-912E-11CF-A5D6-28DB04C10000.
        0x72 if b.starts_with(b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00") => {
            Some("audio/x-w64")
        }
        0x74 if b.starts_with(b"true") && sfnt_tables(b) => Some("application/x-font-ttf"),
        0x77 => match b.get(..4)? {
            b"wOFF" => Some("application/font-woff"),
            b"wOF2" => Some("application/font-woff2"),
            _ => None,
        },
        0x21 if b.starts_with(b"!<arch>\n") => {
            // Debian binary packages are ar archives whose first member is
            // `debian-binary` (deb(5)).
            if at(b, 8, b"debian-binary") {
                Some("application/x-debian-package")
            } else {
                Some("application/x-archive")
            }
        }
        0x7f if b.starts_with(b"\x7fELF") => elf(b),
        0x89 if b.starts_with(b"\x89PNG\r\n\x1a\n") => Some("image/png"),
        // OpenPGP (RFC 4880 4.2) old-format packet, tag 6 (public key), one- or
        // two-octet length, then key version 3 or 4: an exported public key.
        0x98 if b.get(2).is_some_and(|v| matches!(v, 3 | 4)) => Some("application/x-gnupg-keyring"),
        0x99 if b.get(3).is_some_and(|v| matches!(v, 3 | 4)) => Some("application/x-gnupg-keyring"),
        0xca if b.starts_with(b"\xca\xfe\xba\xbe") => cafebabe(b),
        0xce => {
            if b.starts_with(b"\xce\xce\xce\xce") {
                Some("application/x-java-jce-keystore")
            } else if b.starts_with(b"\xce\xfa\xed\xfe") {
                Some("application/x-mach-o-executable")
            } else {
                None
            }
        }
        0xcf if b.starts_with(b"\xcf\xfa\xed\xfe") => Some("application/x-mach-o-executable"),
        // Old binary cpio: magic 070707 octal as a 16-bit word, either order.
        0xc7 if b.get(1) == Some(&0x71) => Some("application/x-cpio"),
        0x71 if b.get(1) == Some(&0xc7) => Some("application/x-cpio"),
        0xd0 if b.starts_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") => {
            // OLE2 compound file (MS-CFB): Word, Excel, Outlook .msg alike.
            Some("application/msword")
        }
        // pcap file header, microsecond and nanosecond magics, either order.
        0xd4 if b.starts_with(b"\xd4\xc3\xb2\xa1") => Some("application/vnd.tcpdump.pcap"),
        0xa1 if b.starts_with(b"\xa1\xb2\xc3\xd4") || b.starts_with(b"\xa1\xb2\x3c\x4d") => {
            Some("application/vnd.tcpdump.pcap")
        }
        0xed if b.starts_with(b"\xed\xab\xee\xdb") => Some("application/x-rpm"),
        0xfd if b.starts_with(b"\xfd7zXZ\x00") => Some("application/x-xz"),
        0xfe => {
            if b.starts_with(b"\xfe\xed\xfe\xed") {
                Some("application/x-java-keystore")
            } else if b.starts_with(b"\xfe\xed\xfa\xce") || b.starts_with(b"\xfe\xed\xfa\xcf") {
                Some("application/x-mach-o-executable")
            } else {
                None
            }
        }
        0xff => {
            if b.starts_with(b"\xff\xd8\xff") {
                Some("image/jpeg")
            } else if b.get(1) == Some(&0xfe) {
                // A UTF-16LE byte order mark, not an MPEG-1 layer I frame.
                None
            } else {
                mpeg_audio(b)
            }
        }
        _ => None,
    }
}

/// `b[off..]` starts with `p`.
fn at(b: &[u8], off: usize, p: &[u8]) -> bool {
    b.get(off..off + p.len()) == Some(p)
}

fn u16le(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u16be(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32le(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u32be(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Formats whose first byte is 0: ISO base media (`ftyp` box at 4), JPEG
/// 2000, Windows icon and cursor directories, TrueType, MPEG-1/2 program
/// streams and video, H.264 Annex B.
fn zero(b: &[u8]) -> Option<&'static str> {
    if at(b, 4, b"ftyp") {
        return ftyp(b.get(8..12)?);
    }
    // ISO/IEC 15444-1 JP2 signature box.
    if b.starts_with(b"\x00\x00\x00\x0cjP  \r\n\x87\n") {
        return Some("image/jp2");
    }
    match b.get(1..4)? {
        // ICONDIR: reserved 0, type 1 (icon) or 2 (cursor). Only these four
        // bytes identify the format (a TGA with no ID field and no colour map,
        // type 2, starts the same way, and is typed a cursor too).
        [0x00, 0x01, 0x00] => Some("image/x-icon"),
        [0x00, 0x02, 0x00] => Some("image/x-cursor"),
        // sfnt version 1.0 (TrueType outlines).
        [0x01, 0x00, 0x00] if sfnt_tables(b) => Some("application/x-font-ttf"),
        // MPEG start codes: pack header (program stream), sequence header.
        [0x00, 0x01, 0xba] | [0x00, 0x01, 0xb3] => Some("video/mpeg"),
        // H.264 Annex B start code, then a sequence parameter set or an
        // access unit delimiter NAL unit (forbidden bit clear).
        [0x00, 0x00, 0x01] => {
            let nal = *b.get(4)?;
            (nal & 0x80 == 0 && matches!(nal & 0x1f, 7 | 9)).then_some("video/h264")
        }
        _ => None,
    }
}

/// sfnt `numTables` is plausible (1..=64).
fn sfnt_tables(b: &[u8]) -> bool {
    u16be(b, 4).is_some_and(|n| (1..=64).contains(&n))
}

/// ISO/IEC 14496-12 `ftyp` major brand.
fn ftyp(brand: &[u8]) -> Option<&'static str> {
    match brand {
        b"M4A " | b"M4B " | b"M4P " => Some("audio/mp4"),
        b"qt  " => Some("video/quicktime"),
        b"isom" | b"iso2" | b"iso3" | b"iso4" | b"iso5" | b"iso6" | b"mp41" | b"mp42" | b"avc1"
        | b"M4V " | b"M4VH" | b"M4VP" | b"dash" | b"mmp4" | b"MSNV" | b"NDAS" | b"F4V " => {
            Some("video/mp4")
        }
        [b'3', b'g', b'p', _] => Some("video/3gpp"),
        [b'3', b'g', b'2', _] => Some("video/3gpp2"),
        _ => None,
    }
}

/// Matroska/WebM: the EBML header's DocType (element 0x4282).
fn ebml(b: &[u8]) -> Option<&'static str> {
    let head = &b[..b.len().min(64)];
    let p = memchr::memmem::find(head, b"\x42\x82")?;
    let size = *head.get(p + 2)?;
    // One-octet EBML variable-size integer: 1xxxxxxx.
    if size & 0x80 == 0 {
        return None;
    }
    let n = usize::from(size & 0x7f);
    match head.get(p + 3..p + 3 + n)? {
        b"webm" => Some("video/webm"),
        b"matroska" => Some("video/x-matroska"),
        _ => None,
    }
}

/// BMP file header: "BM", then a known DIB header size at offset 14
/// (BITMAPCOREHEADER 12, OS/2 16/64, BITMAPINFOHEADER 40, V2 52, V3 56,
/// V4 108, V5 124).
fn is_bmp(b: &[u8]) -> bool {
    b.starts_with(b"BM")
        && u32le(b, 14).is_some_and(|h| matches!(h, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// MPEG transport stream (ISO/IEC 13818-1): sync byte 0x47 at the start of
/// every 188-byte packet the buffer holds, at least three of them.
fn is_mpeg_ts(b: &[u8]) -> bool {
    b.len() > 2 * 188 && b.iter().step_by(188).all(|&c| c == 0x47)
}

/// `.lzma` (LZMA-alone): properties byte 0x5D (lc=3 lp=0 pb=2), a dictionary
/// size that is a multiple of 64 KiB, then the uncompressed size, all ones
/// when unknown or below 2^40.
fn is_lzma_alone(b: &[u8]) -> bool {
    let Some(h) = b.get(..13) else { return false };
    h[0] == 0x5d
        && h[1] == 0
        && h[2] == 0
        && (h[5..13].iter().all(|&c| c == 0xff) || h[10..13] == [0, 0, 0])
}

/// ARJ main header: 0x60 0xEA, basic header size at most 2600.
fn is_arj(b: &[u8]) -> bool {
    b.get(1) == Some(&0xea) && u16le(b, 2).is_some_and(|n| n > 0 && n <= 2600)
}

/// LHA/LZH level 0-2 headers: method `-lh?-` / `-lz?-` at offset 2.
fn lha(b: &[u8]) -> Option<&'static str> {
    let m = b.get(2..7)?;
    (m[0] == b'-'
        && m[1] == b'l'
        && matches!(m[2], b'h' | b'z')
        && m[4] == b'-'
        && m[3].is_ascii_alphanumeric())
    .then_some("application/x-lzh")
}

/// POSIX ustar / GNU tar: "ustar" at offset 257.
fn tar(b: &[u8]) -> Option<&'static str> {
    at(b, 257, b"ustar").then_some("application/x-tar")
}

/// CPython bytecode: a 16-bit little-endian magic number of a released
/// version followed by "\r\n" (Python 2.x 62xxx, 3.x 3000-3999).
fn pyc(b: &[u8]) -> Option<&'static str> {
    if b.get(2..4)? != b"\r\n" {
        return None;
    }
    let m = u16le(b, 0)?;
    (matches!(m, 3000..=3999) || matches!(m, 62000..=62299))
        .then_some("application/x-python-bytecode")
}

/// ELF by `e_type` (in the file's byte order).
fn elf(b: &[u8]) -> Option<&'static str> {
    let t = match b.get(5)? {
        1 => u16le(b, 16)?,
        2 => u16be(b, 16)?,
        _ => return None,
    };
    match t {
        1 => Some("application/x-object"),
        2 => Some("application/x-executable"),
        3 => Some("application/x-sharedlib"),
        4 => Some("application/x-coredump"),
        _ => None,
    }
}

/// 0xCAFEBABE is both a Java class file (minor, major version follow) and a
/// Mach-O universal binary (architecture count follows). Class files of
/// Java 1.1 to Java 8 (major 45-52) are applets; a small count is a
/// universal binary.
fn cafebabe(b: &[u8]) -> Option<&'static str> {
    let n = u32be(b, 4)?;
    match n {
        1..=20 => Some("application/x-mach-o-executable"),
        _ => matches!(u16be(b, 6)?, 45..=52).then_some("application/x-java-applet"),
    }
}

/// MPEG audio frame header (11-bit sync, valid bitrate and sampling rate
/// indices) or an ADTS header (12-bit sync, layer 0).
fn mpeg_audio(b: &[u8]) -> Option<&'static str> {
    let (h1, h2) = (*b.get(1)?, *b.get(2)?);
    if h1 & 0xf6 == 0xf0 {
        // ADTS: sampling frequency index 0-12.
        return ((h2 >> 2) & 0x0f <= 12).then_some("audio/x-hx-aac-adts");
    }
    let ok = h1 & 0xe0 == 0xe0
        && (h1 >> 3) & 3 != 1 // version: 1 is reserved
        && (h1 >> 1) & 3 != 0 // layer: 0 is reserved
        && h2 >> 4 != 0x0f
        && (h2 >> 2) & 3 != 3;
    ok.then_some("audio/mpeg")
}

/// Zip (APPNOTE.TXT): the first local file header says which zip-based
/// format it is: OpenDocument and EPUB store their MIME type as a first
/// entry named `mimetype` (ODF 1.2 part 3 3.3, OCF 3.3), Office Open XML
/// starts with `[Content_Types].xml` (ECMA-376 part 2) and its main part's
/// folder says which application, a JAR with `META-INF/`, a KMZ with
/// `doc.kml`.
fn zip(b: &[u8]) -> Option<&'static str> {
    if at(b, 2, b"\x05\x06") || at(b, 2, b"\x07\x08") {
        return Some("application/zip");
    }
    if !at(b, 2, b"\x03\x04") {
        return None;
    }
    let zip = Some("application/zip");
    let Some(name) = entry_name(b, 0) else {
        return zip;
    };
    if name == b"mimetype" {
        let csize = usize::try_from(u32le(b, 18)?).ok()?;
        let start = 30 + name.len() + usize::from(u16le(b, 28)?);
        let Some(content) = b.get(start..start + csize) else {
            return zip;
        };
        if u16le(b, 8) == Some(0) {
            return Some(stored_mimetype(content).unwrap_or("application/zip"));
        }
        return zip;
    }
    if name == b"[Content_Types].xml" || name == b"_rels/.rels" {
        return Some(ooxml(b).unwrap_or("application/zip"));
    }
    if name.starts_with(b"META-INF/") {
        return Some("application/java-archive");
    }
    if name == b"doc.kml" {
        return Some("application/vnd.google-earth.kmz");
    }
    zip
}

/// The file name of the local file header at `off`.
fn entry_name(b: &[u8], off: usize) -> Option<&[u8]> {
    let n = usize::from(u16le(b, off + 26)?);
    b.get(off + 30..off + 30 + n)
}

fn stored_mimetype(content: &[u8]) -> Option<&'static str> {
    const TYPES: &[&str] = &[
        "application/epub+zip",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.text-template",
        "application/vnd.oasis.opendocument.text-master",
        "application/vnd.oasis.opendocument.text-web",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.spreadsheet-template",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.presentation-template",
        "application/vnd.oasis.opendocument.graphics",
        "application/vnd.oasis.opendocument.graphics-template",
        "application/vnd.oasis.opendocument.chart",
        "application/vnd.oasis.opendocument.formula",
        "application/vnd.oasis.opendocument.image",
        "application/vnd.oasis.opendocument.database",
    ];
    TYPES.iter().copied().find(|t| t.as_bytes() == content)
}

/// The first later entry in an OOXML package under `word/`, `ppt/` or `xl/`.
fn ooxml(b: &[u8]) -> Option<&'static str> {
    let mut from = 1;
    while let Some(p) = memchr::memmem::find(&b[from..], b"PK\x03\x04") {
        let off = from + p;
        if let Some(name) = entry_name(b, off) {
            if name.starts_with(b"word/") {
                return Some(
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                );
            }
            if name.starts_with(b"ppt/") {
                return Some(
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                );
            }
            if name.starts_with(b"xl/") {
                return Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
            }
        }
        from = off + 4;
    }
    None
}
