//! JA4 (client) and JA4S (server) fingerprints per FoxIO's JA4
//! specification: `t13d1516h2_8daaf6152771_e5627efa2ab1`,
//! `t130200_1301_234ea6891581`. Values of the GREASE family (0x?a?a) are
//! left out everywhere.

use sha2::{Digest, Sha256};

/// What JA4 needs of a ClientHello.
#[derive(Clone, Debug, Default)]
pub struct ClientHelloInfo {
    pub version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in wire order.
    pub extensions: Vec<u16>,
    pub sni: bool,
    pub alpn_first: Option<Vec<u8>>,
    pub supported_versions: Vec<u16>,
    pub sig_algs: Vec<u16>,
}

/// What JA4S needs of a ServerHello.
#[derive(Clone, Debug, Default)]
pub struct ServerHelloInfo {
    pub version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    pub alpn: Option<Vec<u8>>,
    pub supported_version: Option<u16>,
}

pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last character of the ALPN value; the first and last hex
/// digit of the value when either is not alphanumeric; `00` without ALPN.
fn alpn_code(alpn: Option<&[u8]>) -> String {
    match alpn {
        Some(a) if !a.is_empty() => {
            let (f, l) = (a[0], a[a.len() - 1]);
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{}{}", f as char, l as char)
            } else {
                let h = crate::x509::hex_lower(a);
                format!("{}{}", h[0] as char, h[h.len() - 1] as char)
            }
        }
        _ => "00".to_string(),
    }
}

/// First 12 hex digits of the SHA-256 of `s`, or twelve zeros for an
/// empty list.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    let d = Sha256::digest(s.as_bytes());
    String::from_utf8(crate::x509::hex_lower(&d[..6])).unwrap_or_default()
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// JA4 of a ClientHello seen over TCP.
pub fn ja4(ch: &ClientHelloInfo) -> String {
    let version = ch
        .supported_versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .max()
        .unwrap_or(ch.version);
    let mut ciphers: Vec<u16> = ch
        .ciphers
        .iter()
        .copied()
        .filter(|c| !is_grease(*c))
        .collect();
    let exts: Vec<u16> = ch
        .extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let a = format!(
        "t{}{}{:02}{:02}{}",
        version_code(version),
        if ch.sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        exts.len().min(99),
        alpn_code(ch.alpn_first.as_deref())
    );
    ciphers.sort_unstable();
    let b = hash12(&hex_list(&ciphers));
    let mut sorted: Vec<u16> = exts
        .into_iter()
        .filter(|e| *e != 0x0000 && *e != 0x0010)
        .collect();
    sorted.sort_unstable();
    let c = if sorted.is_empty() {
        "000000000000".to_string()
    } else {
        let sigs: Vec<u16> = ch
            .sig_algs
            .iter()
            .copied()
            .filter(|s| !is_grease(*s))
            .collect();
        let mut s = hex_list(&sorted);
        if !sigs.is_empty() {
            s.push('_');
            s.push_str(&hex_list(&sigs));
        }
        hash12(&s)
    };
    format!("{a}_{b}_{c}")
}

/// JA4S of a ServerHello seen over TCP.
pub fn ja4s(sh: &ServerHelloInfo) -> String {
    let version = sh.supported_version.unwrap_or(sh.version);
    format!(
        "t{}{:02}{}_{:04x}_{}",
        version_code(version),
        sh.extensions.len().min(99),
        alpn_code(sh.alpn.as_deref()),
        sh.cipher,
        hash12(&hex_list(&sh.extensions))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the JA4 specification (Chrome).
    #[test]
    fn spec_example_ja4() {
        let ch = ClientHelloInfo {
            version: 0x0303,
            ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            sni: true,
            alpn_first: Some(b"h2".to_vec()),
            supported_versions: vec![0x1a1a, 0x0304, 0x0303],
            sig_algs: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
        };
        assert_eq!(ja4(&ch), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn grease_and_empty() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a));
        let ch = ClientHelloInfo {
            version: 0x0301,
            ciphers: vec![0x2a2a],
            ..Default::default()
        };
        assert_eq!(ja4(&ch), "t10i000000_000000000000_000000000000");
    }

    #[test]
    fn ja4s_shape_and_hash() {
        let sh = ServerHelloInfo {
            version: 0x0303,
            cipher: 0x1301,
            extensions: vec![0x0033, 0x002b],
            alpn: None,
            supported_version: Some(0x0304),
        };
        // Extensions keep their wire order: key_share, supported_versions.
        assert_eq!(ja4s(&sh), format!("t130200_1301_{}", hash12("0033,002b")));
        assert_eq!(ja4s(&sh), "t130200_1301_234ea6891581");
    }

    #[test]
    fn alpn_non_alnum() {
        assert_eq!(alpn_code(Some(b"\xab\xcd")), "ad");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
    }
}
