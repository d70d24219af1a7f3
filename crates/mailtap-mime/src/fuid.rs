//! Zeek's file ids: a keyed HighwayHash-128 of the protocol's file handle
//! string, reduced to 96 bits and rendered in base 62 (`F…`).

use highway::{HighwayHash, HighwayHasher, Key};
use mailtap_core::Timestamp;
use sha2::{Digest, Sha256};
use std::fmt::Write;

const B62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The HighwayHash key: SHA-256 of `digest_salt`, read as four
/// little-endian 64-bit words.
#[derive(Clone, Debug)]
pub struct FuidKey([u64; 4]);

impl FuidKey {
    pub fn new(digest_salt: &str) -> Self {
        let d = Sha256::digest(digest_salt.as_bytes());
        let mut k = [0u64; 4];
        for (w, c) in k.iter_mut().zip(d.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        FuidKey(k)
    }

    /// The FUID of a handle string.
    pub fn fuid(&self, handle: &[u8]) -> String {
        let mut h = HighwayHasher::new(Key(self.0));
        h.append(handle);
        let r = h.finalize128();
        let mut s = String::with_capacity(20);
        s.push('F');
        base62(r[0] >> 32, &mut s);
        base62(r[1], &mut s);
        s
    }
}

/// Least significant digit first, no padding (Zeek's `uitoa_n`).
fn base62(mut v: u64, out: &mut String) {
    loop {
        out.push(char::from(B62[(v % 62) as usize]));
        v /= 62;
        if v == 0 {
            break;
        }
    }
}

/// A `time` as Zeek's `cat()` renders it: six decimals with trailing
/// zeros dropped (`1254722767.529046`, `1.5`, `7.0`).
pub fn write_zeek_time(out: &mut String, t: Timestamp) {
    let neg = t.0 < 0;
    let abs = t.0.unsigned_abs();
    let micros = (abs + 500) / 1000;
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    if neg && micros != 0 {
        out.push('-');
    }
    let _ = write!(out, "{s}.");
    let mut frac = format!("{us:06}");
    while frac.len() > 1 && frac.ends_with('0') {
        frac.pop();
    }
    out.push_str(&frac);
}

/// Zeek's SMTP/POP3 file handle: analyzer tag, connection start time,
/// transaction depth, whole-message file id (empty here) and the
/// connection's MIME entity counter, concatenated.
pub fn file_handle(tag: &str, conn_start: Timestamp, trans_depth: u64, mime_depth: u64) -> String {
    let mut h = String::with_capacity(64);
    h.push_str(tag);
    write_zeek_time(&mut h, conn_start);
    let _ = write!(h, "{trans_depth}{mime_depth}");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeek_smtp_basic_fuids() {
        // smtp.pcap, first connection (conn start 1254722767.529046):
        // files at mime_depth 3, 4, 5 of transaction 1 (files.log baseline).
        let k = FuidKey::new("Please change this value.");
        let t = Timestamp::from_secs_micros(1254722767, 529046);
        let f = |d| k.fuid(file_handle("Analyzer::ANALYZER_SMTP", t, 1, d).as_bytes());
        assert_eq!(f(3), "FmFp351N5nhsMmAfQg");
        assert_eq!(f(4), "Fqrb1K5DWEfgy4WU2");
        assert_eq!(f(5), "FEFYSd1s8Onn9LynKj");
    }

    #[test]
    fn time_rendering() {
        let mut s = String::new();
        write_zeek_time(&mut s, Timestamp::from_secs_micros(7, 0));
        assert_eq!(s, "7.0");
        s.clear();
        write_zeek_time(&mut s, Timestamp::from_secs_micros(1, 500_000));
        assert_eq!(s, "1.5");
    }
}
