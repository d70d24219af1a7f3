//! Which addresses are "local" (Zeek `Site::local_nets`), for conn.log's
//! `local_orig`/`local_resp` and SMTP's `mail_path_capture`.

use std::net::IpAddr;

/// A set of networks, plus Zeek's `Site::private_address_space_is_local`
/// rule (on by default: private, loopback and link-local ranges are local).
#[derive(Clone, Debug)]
pub struct LocalNets {
    nets: Vec<(IpAddr, u8)>,
    private_is_local: bool,
}

impl Default for LocalNets {
    fn default() -> Self {
        LocalNets {
            nets: Vec::new(),
            private_is_local: true,
        }
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

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

const PRIVATE: &[(&str, u8)] = &[
    ("10.0.0.0", 8),
    ("172.16.0.0", 12),
    ("192.168.0.0", 16),
    ("100.64.0.0", 10),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("::1", 128),
    ("fc00::", 7),
    ("fe80::", 10),
];

impl LocalNets {
    pub fn new(nets: Vec<(IpAddr, u8)>, private_is_local: bool) -> Self {
        LocalNets {
            nets,
            private_is_local,
        }
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
            v.extend(
                PRIVATE
                    .iter()
                    .map(|&(n, l)| (n.parse().expect("constant network"), l)),
            );
        }
        v
    }

    pub fn is_local(&self, ip: IpAddr) -> bool {
        if self.nets.iter().any(|&(n, l)| in_net(ip, n, l)) {
            return true;
        }
        self.private_is_local
            && PRIVATE
                .iter()
                .any(|&(n, l)| in_net(ip, n.parse().expect("constant network"), l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_configured() {
        let l = LocalNets::new(vec![parse_cidr("198.51.100.0/24").unwrap()], true);
        assert!(l.is_local("192.168.0.4".parse().unwrap()));
        assert!(l.is_local("198.51.100.7".parse().unwrap()));
        assert!(!l.is_local("212.227.15.188".parse().unwrap()));
        assert!(l.is_local("::1".parse().unwrap()));
        let none = LocalNets::new(vec![], false);
        assert!(!none.is_local("10.1.1.1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nonsense").is_err());
    }
}
