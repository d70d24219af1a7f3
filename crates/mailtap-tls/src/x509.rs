//! x509.log rows from DER certificates, formatted as Zeek 8 (OpenSSL)
//! prints them: RFC 2253 names with OpenSSL's escaping, upper-case hex
//! serials, OpenSSL's long names for algorithms.

use mailtap_core::record::X509Record;
use mailtap_core::Timestamp;
use sha2::{Digest, Sha256};
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey;

/// Lower-case hex SHA-256 of the DER, the key Zeek uses for certificates.
pub fn fingerprint(der: &[u8]) -> Vec<u8> {
    hex_lower(&Sha256::digest(der))
}

pub(crate) fn hex_lower(b: &[u8]) -> Vec<u8> {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(b.len() * 2);
    for &x in b {
        out.push(H[usize::from(x >> 4)]);
        out.push(H[usize::from(x & 15)]);
    }
    out
}

/// The certificate's serial as OpenSSL's `i2a_ASN1_INTEGER` prints it:
/// the magnitude in upper-case hex pairs without leading zero bytes
/// (`00` for zero), `-` before negative values.
pub fn serial_hex(raw: &[u8]) -> Vec<u8> {
    let negative = raw.first().is_some_and(|b| b & 0x80 != 0);
    let mag: Vec<u8> = if negative {
        // two's complement magnitude
        let mut v: Vec<u8> = raw.iter().map(|b| !b).collect();
        for b in v.iter_mut().rev() {
            let (n, carry) = b.overflowing_add(1);
            *b = n;
            if !carry {
                break;
            }
        }
        v
    } else {
        raw.to_vec()
    };
    let start = mag.iter().position(|&b| b != 0).unwrap_or(mag.len());
    let mag = &mag[start..];
    let mut out = Vec::new();
    if negative {
        out.push(b'-');
    }
    if mag.is_empty() {
        out.extend_from_slice(b"00");
    }
    for b in mag {
        out.extend_from_slice(format!("{b:02X}").as_bytes());
    }
    out
}

/// OpenSSL's short name for a name attribute, None for unknown ones.
fn attr_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.16" => "postalAddress",
        "2.5.4.17" => "postalCode",
        "2.5.4.18" => "postOfficeBox",
        "2.5.4.20" => "telephoneNumber",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.2.840.113549.1.9.2" => "unstructuredName",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// Appends one byte of an attribute value with RFC 2253 escaping as
/// OpenSSL does it (ESC_2253 | ESC_CTRL | ESC_MSB).
fn esc_byte(out: &mut Vec<u8>, b: u8, first: bool, last: bool) {
    match b {
        b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
            out.push(b'\\');
            out.push(b);
        }
        b'#' if first => out.extend_from_slice(b"\\#"),
        b' ' if first || last => out.extend_from_slice(b"\\ "),
        0..=0x1f | 0x7f..=0xff => out.extend_from_slice(format!("\\{b:02X}").as_bytes()),
        _ => out.push(b),
    }
}

/// Decodes a directory string to characters as OpenSSL's UTF8_CONVERT
/// sees them; None when the type is not a string (then it is dumped).
fn string_chars(tag: Tag, data: &[u8]) -> Option<Vec<u32>> {
    match tag {
        Tag::Utf8String => Some(
            String::from_utf8_lossy(data)
                .chars()
                .map(u32::from)
                .collect(),
        ),
        Tag::BmpString => Some(
            data.chunks(2)
                .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
                .collect(),
        ),
        Tag::UniversalString => Some(
            data.chunks(4)
                .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
                .collect(),
        ),
        Tag::PrintableString
        | Tag::Ia5String
        | Tag::T61String
        | Tag::VisibleString
        | Tag::NumericString
        | Tag::GeneralString
        | Tag::VideotexString
        | Tag::GraphicString => Some(data.iter().map(|&b| u32::from(b)).collect()),
        _ => None,
    }
}

fn format_value(out: &mut Vec<u8>, any: &Any<'_>) {
    let Some(chars) = string_chars(any.tag(), any.data) else {
        // DUMP_UNKNOWN | DUMP_DER: '#' and the hex of the whole TLV.
        out.push(b'#');
        let mut der = Vec::new();
        let class = any.header.class() as u8;
        let constructed = u8::from(any.header.is_constructed());
        der.push(class << 6 | constructed << 5 | (any.tag().0 as u8 & 0x1f));
        let n = any.data.len();
        if n < 0x80 {
            der.push(n as u8);
        } else {
            let be = (n as u64).to_be_bytes();
            let skip = be.iter().take_while(|&&b| b == 0).count();
            der.push(0x80 | (8 - skip) as u8);
            der.extend_from_slice(&be[skip..]);
        }
        der.extend_from_slice(any.data);
        out.extend_from_slice(&hex_upper(&der));
        return;
    };
    let mut bytes = Vec::with_capacity(chars.len());
    for c in &chars {
        match char::from_u32(*c) {
            Some(ch) if *c > 0x7f => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => bytes.push(*c as u8),
        }
    }
    let n = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        esc_byte(out, b, i == 0, i + 1 == n);
    }
}

fn hex_upper(b: &[u8]) -> Vec<u8> {
    hex_lower(b).to_ascii_uppercase()
}

/// A name as `X509_NAME_print_ex(.., XN_FLAG_RFC2253)` prints it: RDNs in
/// reverse order separated by `,`, multi-valued RDNs joined by `+`.
pub fn format_name(name: &X509Name<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push(b'+');
            }
            let oid = atv.attr_type().to_id_string();
            match attr_short_name(&oid) {
                Some(s) => out.extend_from_slice(s.as_bytes()),
                None => out.extend_from_slice(oid.as_bytes()),
            }
            out.push(b'=');
            format_value(&mut out, atv.attr_value());
        }
    }
    out
}

/// OpenSSL's long name for an algorithm OID.
fn alg_long_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.1.1.1" => "rsaEncryption",
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.113549.1.1.3" => "md4WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption",
        "1.3.14.3.2.29" => "sha1WithRSA",
        "1.2.840.10045.2.1" => "id-ecPublicKey",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.10040.4.1" => "dsaEncryption",
        "1.2.840.10040.4.3" => "dsaWithSHA1",
        "2.16.840.1.101.3.4.3.1" => "dsa_with_SHA224",
        "2.16.840.1.101.3.4.3.2" => "dsa_with_SHA256",
        "1.2.840.113549.1.3.1" => "dhKeyAgreement",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.3.101.112" => "ED25519",
        "1.3.101.113" => "ED448",
        _ => return None,
    })
}

/// OpenSSL's short name of a named curve, and its size in bits.
fn curve_info(oid: &str) -> Option<(&'static str, u64)> {
    Some(match oid {
        "1.2.840.10045.3.1.1" => ("prime192v1", 192),
        "1.3.132.0.33" => ("secp224r1", 224),
        "1.2.840.10045.3.1.7" => ("prime256v1", 256),
        "1.3.132.0.10" => ("secp256k1", 256),
        "1.3.132.0.34" => ("secp384r1", 384),
        "1.3.132.0.35" => ("secp521r1", 521),
        "1.3.36.3.3.2.8.1.1.7" => ("brainpoolP256r1", 256),
        "1.3.36.3.3.2.8.1.1.11" => ("brainpoolP384r1", 384),
        "1.3.36.3.3.2.8.1.1.13" => ("brainpoolP512r1", 512),
        _ => return None,
    })
}

/// Unsigned big-endian integer bytes as a decimal string.
fn decimal(mut b: &[u8]) -> Vec<u8> {
    while b.first() == Some(&0) {
        b = &b[1..];
    }
    if b.len() <= 8 {
        let v = b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
        return v.to_string().into_bytes();
    }
    // Long exponents are practically absent; print hex like BN_bn2dec
    // would not, but never panic.
    hex_lower(b)
}

fn bit_len(mut b: &[u8]) -> u64 {
    while b.first() == Some(&0) {
        b = &b[1..];
    }
    match b.first() {
        None => 0,
        Some(&f) => (b.len() as u64 - 1) * 8 + u64::from(8 - f.leading_zeros() as u8),
    }
}

/// Builds the x509.log row of one certificate; None when the DER does not
/// parse (Zeek logs nothing for such a certificate either).
pub fn x509_record(
    der: &[u8],
    ts: Timestamp,
    host_cert: bool,
    client_cert: bool,
) -> Option<X509Record> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let tbs = &cert.tbs_certificate;
    let spki = tbs.public_key();
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let key_alg = alg_long_name(&key_oid)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_else(|| key_oid.clone().into_bytes());
    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    let sig_alg = alg_long_name(&sig_oid)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default();
    let mut rec = X509Record {
        ts,
        fingerprint: fingerprint(der),
        version: u64::from(tbs.version.0) + 1,
        serial: serial_hex(tbs.raw_serial()),
        subject: format_name(&tbs.subject),
        issuer: format_name(&tbs.issuer),
        not_valid_before: tbs.validity.not_before.timestamp(),
        not_valid_after: tbs.validity.not_after.timestamp(),
        key_alg,
        sig_alg,
        host_cert,
        client_cert,
        ..X509Record::default()
    };
    match key_oid.as_str() {
        "1.2.840.113549.1.1.1" => {
            rec.key_type = Some(b"rsa".to_vec());
            if let Ok(PublicKey::RSA(k)) = spki.parsed() {
                rec.key_length = Some(bit_len(k.modulus));
                rec.exponent = Some(decimal(k.exponent));
            }
        }
        "1.2.840.10040.4.1" => {
            rec.key_type = Some(b"dsa".to_vec());
            if let Some(p) = dsa_p(&spki.algorithm) {
                rec.key_length = Some(bit_len(p));
            }
        }
        "1.2.840.10045.2.1" => {
            rec.key_type = Some(b"ecdsa".to_vec());
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o: Oid| o.to_id_string());
            if let Some((name, bits)) = curve.as_deref().and_then(curve_info) {
                rec.curve = Some(name.as_bytes().to_vec());
                rec.key_length = Some(bits);
            }
        }
        _ => {}
    }
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for gn in &san.general_names {
                    match gn {
                        GeneralName::DNSName(s) => rec
                            .san_dns
                            .get_or_insert_with(Vec::new)
                            .push(s.as_bytes().to_vec()),
                        GeneralName::URI(s) => rec
                            .san_uri
                            .get_or_insert_with(Vec::new)
                            .push(s.as_bytes().to_vec()),
                        GeneralName::RFC822Name(s) => rec
                            .san_email
                            .get_or_insert_with(Vec::new)
                            .push(s.as_bytes().to_vec()),
                        GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => Some(std::net::IpAddr::from(
                                    <[u8; 4]>::try_from(*b).unwrap_or_default(),
                                )),
                                16 => Some(std::net::IpAddr::from(
                                    <[u8; 16]>::try_from(*b).unwrap_or_default(),
                                )),
                                _ => None,
                            };
                            if let Some(ip) = ip {
                                rec.san_ip.get_or_insert_with(Vec::new).push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => {
                rec.basic_constraints_ca = Some(bc.ca);
                rec.basic_constraints_path_len = bc.path_len_constraint.map(u64::from);
            }
            _ => {}
        }
    }
    Some(rec)
}

/// The DSA prime p from the algorithm parameters (its size is the key
/// length OpenSSL reports).
fn dsa_p<'a>(alg: &'a x509_parser::x509::AlgorithmIdentifier<'a>) -> Option<&'a [u8]> {
    let params = alg.parameters.as_ref()?;
    let (_, p) = Any::from_der(params.data).ok()?;
    Some(p.data)
}

/// The leaf's names for `sni_matches_cert`: SAN DNS names, else the CN.
pub fn cert_hostnames(der: &[u8]) -> Option<(Vec<String>, Option<String>)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    // The CN in any string type (as_str() only takes UTF8-like types).
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| string_chars(a.attr_value().tag(), a.attr_value().data))
        .map(|cs| {
            cs.into_iter()
                .filter_map(char::from_u32)
                .collect::<String>()
        });
    let mut dns = Vec::new();
    // Walk the extensions directly: a certificate with an unusual or
    // repeated extension must not hide its names.
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for gn in &san.general_names {
                if let GeneralName::DNSName(s) = gn {
                    dns.push(s.to_string());
                }
            }
        }
    }
    Some((dns, cn))
}

/// Host name matching as OpenSSL's X509_check_host does it for a server
/// name: case-insensitive, a `*` only as the whole left-most label.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let h = host.to_ascii_lowercase();
    if let Some(rest) = p.strip_prefix("*.") {
        if rest.contains('*') || !rest.contains('.') {
            return false;
        }
        return match h.split_once('.') {
            Some((label, hrest)) => !label.is_empty() && hrest == rest,
            None => false,
        };
    }
    p == h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert_eq!(serial_hex(&[0x00]), b"00");
        assert_eq!(serial_hex(&[0x01]), b"01");
        assert_eq!(serial_hex(&[0x00, 0x9a, 0xfa]), b"9AFA");
        assert_eq!(serial_hex(&[0x01, 0x0d]), b"010D");
        assert_eq!(serial_hex(&[0xff]), b"-01");
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        let v = b"#Go, Inc.+a\x01 ";
        for (i, b) in v.iter().enumerate() {
            esc_byte(&mut out, *b, i == 0, i + 1 == v.len());
        }
        assert_eq!(out, b"\\#Go\\, Inc.\\+a\\01\\ ".to_vec());
        let mut out = Vec::new();
        for (i, b) in "é".as_bytes().iter().enumerate() {
            esc_byte(&mut out, *b, i == 0, false);
        }
        assert_eq!(out, b"\\C3\\A9");
    }

    #[test]
    fn hostnames() {
        assert!(hostname_matches("*.google.com", "www.google.com"));
        assert!(!hostname_matches("*.google.com", "a.b.google.com"));
        assert!(!hostname_matches("*.google.com", "google.com"));
        assert!(hostname_matches("Ritter.VG", "ritter.vg"));
        assert!(!hostname_matches("*", "x"));
    }

    #[test]
    fn bits() {
        assert_eq!(bit_len(&[0x00, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01]), 1);
        assert_eq!(decimal(&[0x01, 0x00, 0x01]), b"65537");
    }
}
