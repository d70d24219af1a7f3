//! The flow table's [`KernelBypass`] over the capture's BPF bypass maps.
//!
//! A worker inserts both directions of a connection whose TLS handshake is
//! over into every map of the run (one per AF_XDP interface, or the one of
//! the AF_PACKET socket filter): a tap that sends each direction on its own
//! port then has the connection on both. Counts are summed over the maps.

use mailtap_capture::bypass::{
    monotonic_to_unix_ns, seq_after, BypassCounters, BypassInsertError, BypassKey, BypassMap,
};
use mailtap_core::{ConnId, Timestamp};
use mailtap_flow::{KernelBypass, KernelCounts};

/// The run's bypass maps, as one worker uses them.
pub(crate) struct KernelMaps {
    maps: Vec<BypassMap>,
    /// Insert errors other than a full map, logged once per worker.
    warned: bool,
}

impl KernelMaps {
    /// None when there is no map (no kernel bypass in this run).
    pub(crate) fn new(maps: Vec<BypassMap>) -> Option<Self> {
        (!maps.is_empty()).then_some(KernelMaps {
            maps,
            warned: false,
        })
    }

    fn keys(id: &ConnId) -> [BypassKey; 2] {
        let fwd = BypassKey {
            src: id.orig_h,
            src_port: id.orig_p,
            dst: id.resp_h,
            dst_port: id.resp_p,
        };
        [fwd, fwd.reversed()]
    }

    fn sum(counts: &mut KernelCounts, c: &BypassCounters) {
        counts.packets += c.packets;
        counts.ip_bytes += c.ip_bytes;
        if c.packets > 0 {
            let t = Timestamp(monotonic_to_unix_ns(c.last_seen_ns));
            counts.last_seen = Some(counts.last_seen.map_or(t, |s| s.max(t)));
        }
        if let Some(e) = c.seq_end {
            counts.seq_end = Some(match counts.seq_end {
                Some(s) if !seq_after(e, s) => s,
                _ => e,
            });
        }
        counts.payload_packets += u64::from(c.payload_packets);
        counts.pure_acks += u64::from(c.pure_acks);
        counts.zero_windows += u64::from(c.zero_windows);
        counts.retransmissions += u64::from(c.retransmissions);
    }

    fn collect(
        &self,
        id: &ConnId,
        mut read: impl FnMut(&BypassMap, &BypassKey) -> Option<BypassCounters>,
    ) -> Option<[KernelCounts; 2]> {
        let keys = Self::keys(id);
        let mut out = [KernelCounts::default(); 2];
        let mut found = false;
        for m in &self.maps {
            for (d, k) in keys.iter().enumerate() {
                if let Some(c) = read(m, k) {
                    found = true;
                    Self::sum(&mut out[d], &c);
                }
            }
        }
        found.then_some(out)
    }
}

impl KernelBypass for KernelMaps {
    fn start(&mut self, id: &ConnId) -> bool {
        let keys = Self::keys(id);
        let mut done = 0;
        let total = self.maps.len() * 2;
        while done < total {
            let (m, k) = (&self.maps[done / 2], &keys[done % 2]);
            let mut r = m.insert(k);
            if matches!(r, Err(BypassInsertError::Exists)) {
                // Left by an earlier connection on the same addresses and
                // ports that was never taken: its counts are not ours.
                m.take(k);
                r = m.insert(k);
            }
            match r {
                Ok(()) => done += 1,
                Err(e) => {
                    if !matches!(e, BypassInsertError::Full) && !self.warned {
                        tracing::warn!(conn = %k, "kernel bypass: {e}; connections stay in user space");
                        self.warned = true;
                    }
                    // All or nothing: undo what this connection got.
                    for j in 0..done {
                        self.maps[j / 2].take(&keys[j % 2]);
                    }
                    return false;
                }
            }
        }
        true
    }

    fn peek(&mut self, id: &ConnId) -> Option<[KernelCounts; 2]> {
        self.collect(id, |m, k| m.peek(k))
    }

    fn finish(&mut self, id: &ConnId) -> [KernelCounts; 2] {
        self.collect(id, |m, k| m.take(k)).unwrap_or_default()
    }
}

/// Whether `ifname` has an IPv4 address or an IPv6 address other than a
/// link-local one: then it carries the host's own traffic and bypassed
/// packets must be passed on to the host (`live.bypass = auto`). A mirror
/// or tap port has none (at most the link-local address the kernel gives
/// every interface that is up).
pub(crate) fn interface_has_addresses(ifname: &str) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        // Cannot tell: passing is the safe choice.
        return true;
    };
    addrs
        .filter(|a| a.interface_name == ifname)
        .filter_map(|a| a.address)
        .any(|a| {
            if a.as_sockaddr_in().is_some() {
                return true;
            }
            a.as_sockaddr_in6().is_some_and(|s| {
                let o = s.ip().octets();
                // fe80::/10 is link-local.
                !(o[0] == 0xfe && o[1] & 0xc0 == 0x80)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_addresses_and_unknown_has_none() {
        assert!(interface_has_addresses("lo"));
        assert!(!interface_has_addresses("no-such-if0"));
    }
}
