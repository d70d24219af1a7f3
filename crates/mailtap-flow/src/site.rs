//! Which addresses are "local" (Zeek `Site::local_nets`), for conn.log's
//! `local_orig`/`local_resp` and SMTP's `mail_path_capture`.
//!
//! With `site.private_address_space_is_local` (the default, as in Zeek),
//! the private address space counts as local. As in Zeek 8.2.2's
//! `Site::private_address_space`, that is every block of the IANA IPv4
//! and IPv6 Special-Purpose Address Registries marked as not globally
//! reachable, and each such IPv4 block in its 6to4 form
//! (`2002:AABB:CCDD::/(16 + len)`, RFC 3056). Blocks whose reachability
//! the registry leaves open are not included; neither is `::ffff:0:0/96`
//! (IPv4-mapped addresses are judged as the IPv4 address they carry).
//!
//! Every network is parsed and masked once, when the set is built: a
//! lookup is a scan of a few dozen integer comparisons.

use std::net::IpAddr;

/// IPv4 special-purpose blocks that are not globally reachable (IANA
/// IPv4 Special-Purpose Address Registry), as (first octets, prefix).
const PRIVATE_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),          // "this network", RFC 791
    ([10, 0, 0, 0], 8),         // private use, RFC 1918
    ([100, 64, 0, 0], 10),      // shared address space, RFC 6598
    ([127, 0, 0, 0], 8),        // loopback, RFC 1122
    ([169, 254, 0, 0], 16),     // link local, RFC 3927
    ([172, 16, 0, 0], 12),      // private use, RFC 1918
    ([192, 0, 0, 0], 24),       // IETF protocol assignments, RFC 6890
    ([192, 0, 2, 0], 24),       // documentation (TEST-NET-1), RFC 5737
    ([192, 168, 0, 0], 16),     // private use, RFC 1918
    ([198, 18, 0, 0], 15),      // benchmarking, RFC 2544
    ([198, 51, 100, 0], 24),    // documentation (TEST-NET-2), RFC 5737
    ([203, 0, 113, 0], 24),     // documentation (TEST-NET-3), RFC 5737
    ([240, 0, 0, 0], 4),        // reserved, RFC 1112
    ([255, 255, 255, 255], 32), // limited broadcast, RFC 919
];

/// IPv6 special-purpose blocks that are not globally reachable (IANA IPv6
/// Special-Purpose Address Registry), as (address, prefix).
const PRIVATE_V6: &[(u128, u8)] = &[
    (0, 128),                               // unspecified, RFC 4291
    (1, 128),                               // loopback, RFC 4291
    (0x0064_ff9b_0001 << 80, 48),           // local-use translation, RFC 8215
    (0x0100 << 112, 64),                    // discard-only, RFC 6666
    (0x2001 << 112, 23),                    // IETF protocol assignments, RFC 2928
    ((0x2001 << 112) | (0x0002 << 96), 48), // benchmarking, RFC 5180
    ((0x2001 << 112) | (0x0db8 << 96), 32), // documentation, RFC 3849
    (0xfc00 << 112, 7),                     // unique local, RFC 4193
    (0xfe80 << 112, 10),                    // link-local unicast, RFC 4291
];

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// An IPv4 block's 6to4 form (RFC 3056: `2002:` followed by the IPv4
/// address): the block shifted under `2002::/16`, prefix 16 longer.
fn six_to_four(net: u32, len: u8) -> (u128, u8) {
    ((0x2002u128 << 112) | (u128::from(net) << 80), 16 + len)
}

/// A set of networks, plus Zeek's `Site::private_address_space_is_local`
/// rule (on by default: the private address space is local).
#[derive(Clone, Debug)]
pub struct LocalNets {
    nets: Vec<(IpAddr, u8)>,
    private_is_local: bool,
    /// Every network that counts, masked: (network, mask).
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Default for LocalNets {
    fn default() -> Self {
        LocalNets::new(Vec::new(), true)
    }
}

/// Parses `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP network"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("`{s}` has a bad prefix length"))?,
        None => max,
    };
    Ok((ip, len))
}

/// The private address space (see the module's documentation), every
/// network once.
pub fn private_address_space() -> Vec<(IpAddr, u8)> {
    let mut v: Vec<(IpAddr, u8)> = PRIVATE_V4
        .iter()
        .map(|&(o, l)| (IpAddr::from(o), l))
        .collect();
    v.extend(PRIVATE_V4.iter().map(|&(o, l)| {
        let (n, l) = six_to_four(u32::from_be_bytes(o), l);
        (IpAddr::from(n.to_be_bytes()), l)
    }));
    v.extend(
        PRIVATE_V6
            .iter()
            .map(|&(n, l)| (IpAddr::from(n.to_be_bytes()), l)),
    );
    v
}

impl LocalNets {
    pub fn new(nets: Vec<(IpAddr, u8)>, private_is_local: bool) -> Self {
        let mut l = LocalNets {
            nets,
            private_is_local,
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for (n, len) in l.effective_nets() {
            match n {
                IpAddr::V4(a) => l.v4.push((u32::from(a) & mask4(len), mask4(len))),
                IpAddr::V6(a) => l.v6.push((u128::from(a) & mask6(len), mask6(len))),
            }
        }
        l
    }
    pub fn nets(&self) -> &[(IpAddr, u8)] {
        &self.nets
    }
    /// The configured networks plus, when private address space counts as
    /// local, the private ranges: the list Zeek's `Site::local_nets`
    /// effectively holds.
    pub fn effective_nets(&self) -> Vec<(IpAddr, u8)> {
        let mut v = self.nets.clone();
        if self.private_is_local {
            v.extend(private_address_space());
        }
        v
    }

    pub fn is_local(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(n, m)| a & m == n)
            }
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.is_local(IpAddr::V4(v4)),
                None => {
                    let a = u128::from(a);
                    self.v6.iter().any(|&(n, m)| a & m == n)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_configured() {
        let l = LocalNets::new(vec![parse_cidr("198.51.100.0/24").unwrap()], true);
        assert!(l.is_local(ip("192.168.0.4")));
        assert!(l.is_local(ip("198.51.100.7")));
        assert!(!l.is_local(ip("212.227.15.188")));
        assert!(l.is_local(ip("::1")));
        let none = LocalNets::new(vec![], false);
        assert!(!none.is_local(ip("10.1.1.1")));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nonsense").is_err());
    }

    #[test]
    fn special_purpose_registry() {
        let l = LocalNets::default();
        for a in [
            "0.1.2.3",
            "100.127.255.255",
            "169.254.9.9",
            "192.0.0.170",
            "192.0.2.44",
            "198.18.3.17",
            "198.19.255.1",
            "198.51.100.9",
            "203.0.113.250",
            "241.0.0.1",
            "255.255.255.255",
            "2001:db8:25::aa",
            "2001:2::1",
            "2001:1ff::1",
            "fd42:496a::1",
            "fe80::1",
            "::",
            "64:ff9b:1::1",
            "100::5",
            // 6to4 forms of 10/8, 192.168/16, 198.18/15.
            "2002:a01:203::1",
            "2002:c0a8:101::1",
            "2002:c613:1::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(l.is_local(ip(a)), "{a}");
        }
        for a in [
            "198.20.0.1",
            "192.0.3.1",
            "100.128.0.1",
            "8.8.8.8",
            "224.0.0.1",
            "2001:db9::1",
            "2001:200::1",
            "2002:808:808::1",
            "2002:c614::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!l.is_local(ip(a)), "{a}");
        }
    }

    #[test]
    fn six_to_four_forms() {
        assert_eq!(
            six_to_four(u32::from_be_bytes([10, 0, 0, 0]), 8),
            (
                "2002:a00::".parse::<std::net::Ipv6Addr>().unwrap().into(),
                24
            )
        );
        assert_eq!(
            six_to_four(u32::from_be_bytes([198, 18, 0, 0]), 15),
            (
                "2002:c612::".parse::<std::net::Ipv6Addr>().unwrap().into(),
                31
            )
        );
        assert_eq!(
            private_address_space().len(),
            2 * PRIVATE_V4.len() + PRIVATE_V6.len()
        );
    }
}
