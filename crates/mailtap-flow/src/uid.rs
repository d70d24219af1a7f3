//! Zeek-style connection uids: `C` followed by two base-62 renderings
//! (least significant digit first, no padding) of a 96-bit value.
//!
//! Zeek draws the 96 bits from a per-process counter, so its uids depend on
//! processing order. mailtap shards process flows in parallel, so the value
//! is instead a keyed SipHash of the connection's 4-tuple and first-packet
//! time: the same capture gives the same uids whatever the worker count,
//! and distinct connections get distinct uids. The key comes from
//! `general.uid_salt` (a string) so that two sensors can be made to differ.

use mailtap_core::{ConnId, Timestamp};
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;

const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Clone, Debug)]
pub struct UidGenerator {
    k0: u64,
    k1: u64,
}

impl UidGenerator {
    pub fn new(salt: &str) -> Self {
        let mut h = SipHasher24::new_with_keys(0x6d61_696c_7461_7031, 0x7569_645f_7361_6c74);
        h.write(salt.as_bytes());
        let k0 = h.finish();
        h.write_u8(0xff);
        let k1 = h.finish();
        UidGenerator { k0, k1 }
    }

    /// The uid of a connection, as a `C...` string.
    pub fn conn_uid(&self, id: &ConnId, first_ts: Timestamp) -> String {
        let word = |n: u8| {
            let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
            h.write_u8(n);
            write_addr(&mut h, id.orig_h);
            h.write_u16(id.orig_p);
            write_addr(&mut h, id.resp_h);
            h.write_u16(id.resp_p);
            h.write_i64(first_ts.0);
            h.finish()
        };
        let mut s = String::with_capacity(20);
        s.push('C');
        push_base62(&mut s, word(0) >> 32);
        push_base62(&mut s, word(1));
        s
    }
}

fn write_addr(h: &mut SipHasher24, a: IpAddr) {
    match a {
        IpAddr::V4(v) => h.write(&v.octets()),
        IpAddr::V6(v) => h.write(&v.octets()),
    }
}

/// Base 62, least significant digit first, as Zeek renders uids.
fn push_base62(s: &mut String, mut v: u64) {
    loop {
        s.push(ALPHABET[(v % 62) as usize] as char);
        v /= 62;
        if v == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: u16) -> ConnId {
        ConnId {
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: p,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 25,
        }
    }

    #[test]
    fn base62_lsd_first() {
        let mut s = String::new();
        push_base62(&mut s, 62 * 3 + 1);
        assert_eq!(s, "13");
        let mut z = String::new();
        push_base62(&mut z, 0);
        assert_eq!(z, "0");
    }

    #[test]
    fn stable_and_distinct() {
        let g = UidGenerator::new("");
        let a = g.conn_uid(&id(1000), Timestamp(5));
        assert_eq!(a, UidGenerator::new("").conn_uid(&id(1000), Timestamp(5)));
        assert!(a.starts_with('C') && a.len() >= 8 && a.len() <= 19, "{a}");
        assert_ne!(a, g.conn_uid(&id(1001), Timestamp(5)));
        assert_ne!(a, g.conn_uid(&id(1000), Timestamp(6)));
        assert_ne!(
            a,
            UidGenerator::new("other").conn_uid(&id(1000), Timestamp(5))
        );
        assert!(a[1..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
