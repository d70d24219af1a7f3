//! Zeek's names for numeric TLS values (its `SSL::version_strings`,
//! `cipher_desc`, `ec_curves`, `alert_descriptions`): ssl.log prints these
//! strings, and `unknown-N` for values Zeek has no name for.

use tls_parser::TlsCipherSuite;

/// `unknown-N`, as Zeek's tables print a missing value.
fn unknown(v: u32) -> Vec<u8> {
    format!("unknown-{v}").into_bytes()
}

/// ssl.log `version`.
pub fn version_name(v: u16) -> Vec<u8> {
    let s: &str = match v {
        0x0002 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv10",
        0x0302 => "TLSv11",
        0x0303 => "TLSv12",
        0x0304 => "TLSv13",
        0xfeff => "DTLSv10",
        0xfefd => "DTLSv12",
        0xfefc => "DTLSv13",
        0x7f01..=0x7f1c => return format!("TLSv13-draft{}", v & 0xff).into_bytes(),
        _ => return unknown(u32::from(v)),
    };
    s.as_bytes().to_vec()
}

/// True for the record/hello versions Zeek's client hello accepts (it
/// confirms the protocol on these and raises a violation otherwise).
pub fn version_ok(v: u16) -> bool {
    matches!(v, 0x0002 | 0x0300..=0x0304 | 0xfeff | 0xfefd | 0xfefc)
        || v >> 8 == 0x7f
        || v >> 8 == 0x7e
        || v >> 8 == 0xfb
}

/// True for the pre-1.3 versions: every other negotiated version gets
/// Zeek's TLS 1.3 treatment (application data starts encryption, CCS is
/// ignored).
pub fn is_pre13(v: u16) -> bool {
    matches!(v, 0x0002 | 0x0300..=0x0303)
}

/// SSLv2 cipher kinds (24 bit), as Zeek names them.
fn sslv2_cipher(c: u32) -> Option<&'static str> {
    Some(match c {
        0x010080 => "SSLv20_CK_RC4_128_WITH_MD5",
        0x020080 => "SSLv20_CK_RC4_128_EXPORT40_WITH_MD5",
        0x030080 => "SSLv20_CK_RC2_128_CBC_WITH_MD5",
        0x040080 => "SSLv20_CK_RC2_128_CBC_EXPORT40_WITH_MD5",
        0x050080 => "SSLv20_CK_IDEA_128_CBC_WITH_MD5",
        0x060040 => "SSLv20_CK_DES_64_CBC_WITH_MD5",
        0x0700c0 => "SSLv20_CK_DES_192_EDE3_CBC_WITH_MD5",
        _ => return None,
    })
}

/// ssl.log `cipher`: IANA names from tls-parser's registry, SSLv2 kinds
/// from Zeek's table.
pub fn cipher_name(c: u32) -> Vec<u8> {
    if let Some(n) = sslv2_cipher(c) {
        return n.as_bytes().to_vec();
    }
    if let Ok(id) = u16::try_from(c) {
        if let Some(cs) = TlsCipherSuite::from_id(id) {
            return cs.name.as_bytes().to_vec();
        }
        let extra = match id {
            0x00ff => Some("TLS_EMPTY_RENEGOTIATION_INFO_SCSV"),
            0x5600 => Some("TLS_FALLBACK_SCSV"),
            0xcc13 => Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
            0xcc14 => Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
            0xcc15 => Some("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"),
            _ => None,
        };
        if let Some(n) = extra {
            return n.as_bytes().to_vec();
        }
    }
    unknown(c)
}

/// True for suites whose ServerKeyExchange carries ECDH parameters (the
/// ECDHE and anonymous ECDH suites); others never set the curve from it.
pub fn cipher_is_ecdhe(c: u16) -> bool {
    if matches!(c, 0xcc13 | 0xcc14) {
        return true;
    }
    TlsCipherSuite::from_id(c).is_some_and(|cs| {
        cs.name.starts_with("TLS_ECDHE_") || cs.name.starts_with("TLS_ECDH_anon_")
    })
}

/// ssl.log `curve` (named groups).
pub fn curve_name(g: u16) -> Vec<u8> {
    let s = match g {
        1 => "sect163k1",
        2 => "sect163r1",
        3 => "sect163r2",
        4 => "sect193r1",
        5 => "sect193r2",
        6 => "sect233k1",
        7 => "sect233r1",
        8 => "sect239k1",
        9 => "sect283k1",
        10 => "sect283r1",
        11 => "sect409k1",
        12 => "sect409r1",
        13 => "sect571k1",
        14 => "sect571r1",
        15 => "secp160k1",
        16 => "secp160r1",
        17 => "secp160r2",
        18 => "secp192k1",
        19 => "secp192r1",
        20 => "secp224k1",
        21 => "secp224r1",
        22 => "secp256k1",
        23 => "secp256r1",
        24 => "secp384r1",
        25 => "secp521r1",
        26 => "brainpoolP256r1",
        27 => "brainpoolP384r1",
        28 => "brainpoolP512r1",
        29 => "x25519",
        30 => "x448",
        31 => "brainpoolP256r1tls13",
        32 => "brainpoolP384r1tls13",
        33 => "brainpoolP512r1tls13",
        34 => "GC256A",
        35 => "GC256B",
        36 => "GC256C",
        37 => "GC256D",
        38 => "GC512A",
        39 => "GC512B",
        40 => "GC512C",
        41 => "curveSM2",
        256 => "ffdhe2048",
        257 => "ffdhe3072",
        258 => "ffdhe4096",
        259 => "ffdhe6144",
        260 => "ffdhe8192",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        0x639a => "SecP256r1Kyber768Draft00",
        0xff01 => "arbitrary_explicit_prime_curves",
        0xff02 => "arbitrary_explicit_char2_curves",
        _ => return unknown(u32::from(g)),
    };
    s.as_bytes().to_vec()
}

/// ssl.log `last_alert`.
pub fn alert_name(d: u8) -> Vec<u8> {
    let s = match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return unknown(u32::from(d)),
    };
    s.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(version_name(0x0303), b"TLSv12");
        assert_eq!(version_name(0x7f10), b"TLSv13-draft16");
        assert_eq!(version_name(0x7e01), b"unknown-32257");
        assert_eq!(version_name(2), b"SSLv2");
    }

    #[test]
    fn ciphers_curves_alerts() {
        assert_eq!(
            cipher_name(0xc02f),
            b"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(cipher_name(0x1301), b"TLS_AES_128_GCM_SHA256");
        assert_eq!(
            cipher_name(0x0700c0),
            b"SSLv20_CK_DES_192_EDE3_CBC_WITH_MD5"
        );
        assert_eq!(cipher_name(0xfefe), b"unknown-65278");
        assert!(cipher_is_ecdhe(0xc02f));
        assert!(!cipher_is_ecdhe(0x0039));
        assert_eq!(curve_name(29), b"x25519");
        assert_eq!(curve_name(0x6399), b"X25519Kyber768Draft00");
        assert_eq!(alert_name(40), b"handshake_failure");
        assert_eq!(alert_name(200), b"unknown-200");
    }
}
