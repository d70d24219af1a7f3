//! Kernel bypass of connections whose payload the sensor no longer needs
//! (after a TLS handshake): a BPF hash map of connection directions that
//! the capture's kernel program consults for every wanted TCP packet.
//!
//! For a packet of a direction in the map that carries none of SYN, FIN or
//! RST, the program counts it in the map (packets, IP bytes, time of the
//! last one, end of the furthest payload) instead of handing it to user
//! space. SYN, FIN and RST still reach the sensor (connection state), and
//! are not counted in the map. Semantics and layouts: `bpf/README.md` and
//! `bpf/mailtap_bypass.h`.
//!
//! - AF_XDP: the steering program's `mailtap_bypass` map. Set
//!   [`SteeringConfig::bypass_entries`](crate::steering::SteeringConfig)
//!   (connections; 0 = no bypass) and
//!   [`SteeringConfig::bypass_action`](crate::steering::SteeringConfig):
//!   [`BypassAction::Drop`] on a capture-only interface (mirror/tap port),
//!   [`BypassAction::Pass`] on one that carries the host's own traffic.
//!   Then [`SteeringProgram::bypass_map`](crate::steering::SteeringProgram::bypass_map)
//!   gives the map; [`SteeringCounters`](crate::steering::SteeringCounters)
//!   has `bypassed_packets` and `bypassed_bytes`.
//! - AF_PACKET: [`SocketBypass::load`] loads the eBPF socket filter
//!   (`bpf/mailtap_sockfilter.c`) once, for all rings of all interfaces;
//!   [`PacketRing::attach_bypass`](crate::afpacket::PacketRing::attach_bypass)
//!   puts it on a ring in place of the classic snap-length filter. Loading
//!   needs CAP_BPF (or root); when it fails, or an attach fails, the rings
//!   keep their classic filter and work exactly as without bypass: warn
//!   and go on without kernel bypass.
//!
//! ```ignore
//! // AF_XDP (engine, live/capture.rs):
//! let scfg = SteeringConfig { ports, all_tcp, max_queues,
//!     bypass_action: BypassAction::Drop, bypass_entries: 65536 };
//! let prog = SteeringProgram::attach(ifname, mode, &scfg)?;
//! let map: Option<BypassMap> = prog.bypass_map(); // clone into each worker
//!
//! // AF_PACKET (engine, live/capture.rs), after opening the rings:
//! let bypass = match SocketBypass::load(live.ring.effective_snaplen(), 65536) {
//!     Ok(b) => Some(b),
//!     Err(e) => { tracing::warn!("kernel bypass off: {e}"); None }
//! };
//! for ring in &rings {
//!     if let Some(b) = &bypass {
//!         if let Err(e) = ring.attach_bypass(b) { /* warn; that ring keeps its classic filter */ }
//!     }
//! }
//! let map: Option<BypassMap> = bypass.as_ref().map(|b| b.map());
//!
//! // Either: per connection, in the worker that owns it.
//! let fwd = BypassKey { src, src_port, dst, dst_port };
//! map.insert(&fwd)?; map.insert(&fwd.reversed())?;     // handshake done
//! let c: Option<BypassCounters> = map.take(&fwd);      // connection ended
//! let ts = monotonic_to_unix_ns(c.last_seen_ns);
//! ```
//!
//! Every [`BypassMap`] call is one `bpf(2)` system call, meant per
//! connection, never per packet. Counting is per direction: a connection
//! takes two map entries; a value is 48 bytes and a key 40, and the
//! kernel's preallocated hash map costs about 150 bytes per entry in all
//! (see [`BYTES_PER_CONNECTION`]).

mod map;
mod sockfilter;

pub use map::BypassMap;
pub(crate) use map::{map_entries, percpu_sum};
pub use sockfilter::SocketBypass;

use crate::steering::{bpf_error, os_code};
use crate::CaptureError;
use libbpf_rs::{Map, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, ProgramMut};
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::str::FromStr;
use std::sync::Arc;

/// Bytes of a `struct bypass_key` (`bpf/mailtap_bypass.h`).
pub const KEY_SIZE: usize = 40;
/// Bytes of a `struct bypass_value`.
pub const VALUE_SIZE: usize = 48;

/// Upper bound on the connections a bypass map may be sized for (two
/// entries each): 16 Mi connections, about 5 GiB of kernel memory.
pub const MAX_BYPASS_CONNECTIONS: u32 = 1 << 24;

/// Kernel memory of one bypassed connection in the map (two entries),
/// approximately: a preallocated hash-map element is the kernel's 48-byte
/// `htab_elem` header plus the 40-byte key and the 48-byte value (136
/// bytes), plus its share of the bucket array (16 bytes per bucket, the
/// bucket count being `max_entries` rounded up to a power of two). The
/// map's `memlock` in `/proc/PID/fdinfo` says exactly; the test
/// `bypass_map_memory_per_entry` prints it.
pub const BYTES_PER_CONNECTION: u64 = 2 * (136 + 16);

/// What the XDP program does with a bypassed packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BypassAction {
    /// `XDP_DROP`: for an interface that only carries captured traffic (a
    /// mirror or tap port): nobody else needs the packet.
    Drop,
    /// `XDP_PASS`: for an interface that carries the host's own traffic:
    /// the host's stack still gets it.
    #[default]
    Pass,
}

impl BypassAction {
    /// The `mailtap_cfg.bypass_action` value: the XDP action.
    pub(crate) fn xdp_action(self) -> u32 {
        match self {
            BypassAction::Drop => 1, // XDP_DROP
            BypassAction::Pass => 2, // XDP_PASS
        }
    }
}

impl FromStr for BypassAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(BypassAction::Drop),
            "pass" => Ok(BypassAction::Pass),
            _ => Err(format!("{s:?} is not a bypass action (drop, pass)")),
        }
    }
}

impl fmt::Display for BypassAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BypassAction::Drop => "drop",
            BypassAction::Pass => "pass",
        })
    }
}

/// One direction of a connection, as its packets travel: source and
/// destination as in their IP and TCP headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BypassKey {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

impl BypassKey {
    /// The other direction of the same connection.
    pub fn reversed(&self) -> BypassKey {
        BypassKey {
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
        }
    }

    /// The map key, `struct bypass_key`: family (4 or 6), three zero
    /// bytes, the ports in network byte order, then the source and the
    /// destination address as 16 bytes each, in network byte order (IPv4
    /// in the first 4, the rest zero). Two IPv4 addresses make an IPv4
    /// key; any IPv6 address makes an IPv6 key with an IPv4 one mapped
    /// (`::ffff:a.b.c.d`), which no packet matches.
    pub fn to_bytes(&self) -> [u8; KEY_SIZE] {
        let mut k = [0u8; KEY_SIZE];
        k[4..6].copy_from_slice(&self.src_port.to_be_bytes());
        k[6..8].copy_from_slice(&self.dst_port.to_be_bytes());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                k[0] = 4;
                k[8..12].copy_from_slice(&s.octets());
                k[24..28].copy_from_slice(&d.octets());
            }
            (s, d) => {
                let v6 = |a: IpAddr| -> Ipv6Addr {
                    match a {
                        IpAddr::V4(a) => a.to_ipv6_mapped(),
                        IpAddr::V6(a) => a,
                    }
                };
                k[0] = 6;
                k[8..24].copy_from_slice(&v6(s).octets());
                k[24..40].copy_from_slice(&v6(d).octets());
            }
        }
        k
    }
}

impl fmt::Display for BypassKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sa = std::net::SocketAddr::new(self.src, self.src_port);
        let da = std::net::SocketAddr::new(self.dst, self.dst_port);
        write!(f, "{sa} -> {da}")
    }
}

/// What the kernel counted for one direction since it was inserted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BypassCounters {
    /// Packets kept from user space (none of them SYN, FIN or RST).
    pub packets: u64,
    /// Their IP bytes: IPv4 total length, IPv6 payload length + 40.
    pub ip_bytes: u64,
    /// `CLOCK_MONOTONIC` time (ns) of the latest one; 0 when `packets` is
    /// 0. [`monotonic_to_unix_ns`] converts it.
    pub last_seen_ns: u64,
    /// The furthest `seq + payload length` of a counted packet with
    /// payload (wrap-aware, see [`seq_after`]); None when none had any.
    pub seq_end: Option<u32>,
    /// Of `packets`, for conn.log history: with payload, pure ACKs (no
    /// payload, ACK set), advertising a zero window, and retransmissions
    /// (payload starting before `seq_end`).
    pub payload_packets: u32,
    pub pure_acks: u32,
    pub zero_windows: u32,
    pub retransmissions: u32,
}

impl BypassCounters {
    /// Decodes a `struct bypass_value` (native byte order).
    pub fn from_bytes(v: &[u8; VALUE_SIZE]) -> BypassCounters {
        let u64_at = |i: usize| u64::from_ne_bytes(v[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_ne_bytes(v[i..i + 4].try_into().expect("4 bytes"));
        BypassCounters {
            packets: u64_at(0),
            ip_bytes: u64_at(8),
            last_seen_ns: u64_at(16),
            seq_end: (u32_at(28) != 0).then(|| u32_at(24)),
            payload_packets: u32_at(32),
            pure_acks: u32_at(36),
            zero_windows: u32_at(40),
            retransmissions: u32_at(44),
        }
    }
}

/// Whether sequence number `a` is after `b` in TCP's wrapping space: the
/// kernel programs' comparison, `(s32)(a - b) > 0`.
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A `CLOCK_MONOTONIC` time (as `bpf_ktime_get_ns` gives) as Unix time in
/// ns, by the offset between `CLOCK_REALTIME` and `CLOCK_MONOTONIC` read
/// now (two vDSO calls, no system call). Wall-clock steps since the
/// packet shift the result by the step.
pub fn monotonic_to_unix_ns(mono_ns: u64) -> i64 {
    let read = |clock| {
        let ts = rustix::time::clock_gettime(clock);
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let mono_now = read(rustix::time::ClockId::Monotonic);
    let real_now = read(rustix::time::ClockId::Realtime);
    (real_now - mono_now + i128::from(mono_ns)) as i64
}

/// Why [`BypassMap::insert`] failed.
#[derive(Debug)]
pub enum BypassInsertError {
    /// The map holds as many entries as it was sized for (E2BIG, or
    /// ENOMEM): the connection is not bypassed in the kernel.
    Full,
    /// The direction is in the map already (never taken since it was
    /// inserted); its counters are left as they are.
    Exists,
    /// Any other failure of the system call.
    Other(io::Error),
}

impl fmt::Display for BypassInsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BypassInsertError::Full => f.write_str("bypass map full"),
            BypassInsertError::Exists => f.write_str("connection already in the bypass map"),
            BypassInsertError::Other(e) => write!(f, "bypass map insert: {e}"),
        }
    }
}

impl std::error::Error for BypassInsertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BypassInsertError::Other(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn bypass_key_ipv4_layout() {
        let k = BypassKey {
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            src_port: 40000,
            dst: Ipv4Addr::new(192, 168, 1, 2).into(),
            dst_port: 25,
        };
        let b = k.to_bytes();
        let mut want = [0u8; KEY_SIZE];
        want[0] = 4;
        want[4..6].copy_from_slice(&[0x9c, 0x40]);
        want[6..8].copy_from_slice(&[0, 25]);
        want[8..12].copy_from_slice(&[10, 0, 0, 1]);
        want[24..28].copy_from_slice(&[192, 168, 1, 2]);
        assert_eq!(b, want);
        let r = k.reversed();
        assert_eq!(r.reversed(), k);
        let rb = r.to_bytes();
        assert_eq!(&rb[4..8], &[0, 25, 0x9c, 0x40]);
        assert_eq!(&rb[8..12], &[192, 168, 1, 2]);
        assert_eq!(&rb[24..28], &[10, 0, 0, 1]);
        assert_eq!(k.to_string(), "10.0.0.1:40000 -> 192.168.1.2:25");
    }

    #[test]
    fn bypass_key_ipv6_layout() {
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "fe80::abcd:2".parse().unwrap();
        let k = BypassKey {
            src: s.into(),
            src_port: 587,
            dst: d.into(),
            dst_port: 51000,
        };
        let b = k.to_bytes();
        assert_eq!(&b[0..4], &[6, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0x02, 0x4b, 0xc7, 0x38]);
        assert_eq!(&b[8..24], &s.octets());
        assert_eq!(&b[24..40], &d.octets());
        // Mixed families: an IPv6 key with the IPv4 address mapped.
        let m = BypassKey {
            src: Ipv4Addr::new(1, 2, 3, 4).into(),
            ..k
        };
        let mb = m.to_bytes();
        assert_eq!(mb[0], 6);
        assert_eq!(
            &mb[8..24],
            &Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn bypass_value_decodes() {
        let mut v = [0u8; VALUE_SIZE];
        v[0..8].copy_from_slice(&7u64.to_ne_bytes());
        v[8..16].copy_from_slice(&1234u64.to_ne_bytes());
        v[16..24].copy_from_slice(&99u64.to_ne_bytes());
        v[24..28].copy_from_slice(&0xffff_fff0u32.to_ne_bytes());
        for (i, n) in [5u32, 2, 1, 3].iter().enumerate() {
            v[32 + 4 * i..36 + 4 * i].copy_from_slice(&n.to_ne_bytes());
        }
        assert_eq!(
            BypassCounters::from_bytes(&v),
            BypassCounters {
                packets: 7,
                ip_bytes: 1234,
                last_seen_ns: 99,
                seq_end: None,
                payload_packets: 5,
                pure_acks: 2,
                zero_windows: 1,
                retransmissions: 3,
            }
        );
        v[28..32].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(BypassCounters::from_bytes(&v).seq_end, Some(0xffff_fff0));
    }

    #[test]
    fn bypass_seq_compare_wraps() {
        assert!(seq_after(2, 1));
        assert!(!seq_after(1, 2));
        assert!(!seq_after(5, 5));
        assert!(seq_after(10, 0xffff_fff0), "across the wrap");
        assert!(!seq_after(0xffff_fff0, 10));
        assert!(seq_after(0x8000_0000, 1));
        assert!(!seq_after(0x8000_0001, 1), "more than half the space back");
    }

    #[test]
    fn bypass_action_parses() {
        assert_eq!("drop".parse::<BypassAction>(), Ok(BypassAction::Drop));
        assert_eq!("pass".parse::<BypassAction>(), Ok(BypassAction::Pass));
        assert!("auto".parse::<BypassAction>().is_err());
        assert_eq!(BypassAction::default(), BypassAction::Pass);
        assert_eq!(BypassAction::Drop.to_string(), "drop");
    }

    #[test]
    fn bypass_map_entries_limits() {
        assert_eq!(map_entries(0), Ok(1));
        assert_eq!(map_entries(10), Ok(20));
        assert_eq!(map_entries(MAX_BYPASS_CONNECTIONS), Ok(1 << 25));
        assert!(map_entries(MAX_BYPASS_CONNECTIONS + 1)
            .unwrap_err()
            .contains("bypass_entries"));
    }

    #[test]
    fn bypass_monotonic_to_unix() {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let unix = monotonic_to_unix_ns(mono);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert!((now - unix).abs() < 50_000_000, "{now} vs {unix}");
        let later = monotonic_to_unix_ns(mono + 1_000_000_000) - unix;
        assert!((later - 1_000_000_000).abs() < 1_000_000, "{later}");
    }
}
