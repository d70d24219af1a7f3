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
//! // AF_XDP (engine, live.rs):
//! let scfg = SteeringConfig { ports, all_tcp, max_queues,
//!     bypass_action: BypassAction::Drop, bypass_entries: 65536 };
//! let prog = SteeringProgram::attach(ifname, mode, &scfg)?;
//! let map: Option<BypassMap> = prog.bypass_map(); // clone into each worker
//!
//! // AF_PACKET (engine, live.rs), after opening the rings:
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

use crate::CaptureError;
use std::ffi::{c_void, CStr};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let mono_now = read(libc::CLOCK_MONOTONIC);
    let real_now = read(libc::CLOCK_REALTIME);
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

/// A handle on a `mailtap_bypass` map (of the XDP program or of the socket
/// filter): cheap to clone, shared by the worker threads (`Send + Sync`);
/// the map lives as long as a handle or its program does.
#[derive(Clone)]
pub struct BypassMap {
    fd: Arc<OwnedFd>,
    /// Connections it was sized for (max_entries / 2).
    connections: u32,
    /// Which map, for messages: "the XDP program on eth1", "the AF_PACKET
    /// socket filter".
    owner: Arc<str>,
}

impl fmt::Debug for BypassMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BypassMap")
            .field("owner", &self.owner)
            .field("fd", &self.fd.as_raw_fd())
            .field("connections", &self.connections)
            .finish()
    }
}

impl BypassMap {
    /// A handle on the map `fd` (duplicated: the caller keeps its own).
    pub(crate) fn from_fd(fd: RawFd, connections: u32, owner: String) -> io::Result<BypassMap> {
        Ok(BypassMap {
            fd: Arc::new(dup_fd(fd)?),
            connections,
            owner: owner.into(),
        })
    }

    /// Starts bypassing one direction: inserts it with zero counters
    /// (`BPF_NOEXIST`). From now on its packets without SYN, FIN or RST
    /// are counted in the map instead of reaching user space.
    pub fn insert(&self, key: &BypassKey) -> Result<(), BypassInsertError> {
        let k = key.to_bytes();
        let v = [0u8; VALUE_SIZE];
        // SAFETY: key and value buffers of the map's key and value sizes
        // (checked when the map was loaded); the kernel only reads them.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_ptr().cast::<c_void>(),
                libbpf_sys::BPF_NOEXIST.into(),
            )
        };
        match rc {
            0 => Ok(()),
            rc if rc == -libc::EEXIST => Err(BypassInsertError::Exists),
            rc if rc == -libc::E2BIG || rc == -libc::ENOMEM => Err(BypassInsertError::Full),
            rc => Err(BypassInsertError::Other(io::Error::other(format!(
                "{key} into the bypass map of {}: {}",
                self.owner,
                crate::steering::lib_error(-rc)
            )))),
        }
    }

    /// Reads and removes one direction's counters in one step
    /// (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`; before Linux 5.14 a lookup and
    /// a delete). None when it is not in the map. After this its packets
    /// reach user space again. A packet the kernel is counting at that
    /// very moment on another CPU may be lost from the counts.
    pub fn take(&self, key: &BypassKey) -> Option<BypassCounters> {
        let k = key.to_bytes();
        let mut v = [0u8; VALUE_SIZE];
        // SAFETY: buffers of the map's key and value sizes; the kernel
        // writes at most VALUE_SIZE bytes into v.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_mut_ptr().cast::<c_void>(),
            )
        };
        match rc {
            0 => Some(BypassCounters::from_bytes(&v)),
            rc if rc == -libc::ENOENT => None,
            // Kernels before 5.14: no lookup-and-delete for hash maps.
            rc if rc == -libc::EINVAL || rc == -524 /* ENOTSUPP */ || rc == -libc::EOPNOTSUPP => {
                let c = self.peek(key)?;
                // SAFETY: a key buffer of the map's key size.
                let rc = unsafe {
                    libbpf_sys::bpf_map_delete_elem(
                        self.fd.as_raw_fd(),
                        k.as_ptr().cast::<c_void>(),
                    )
                };
                if rc < 0 && rc != -libc::ENOENT {
                    self.log_failure("delete", key, rc);
                }
                Some(c)
            }
            rc => {
                self.log_failure("lookup and delete", key, rc);
                None
            }
        }
    }

    /// One direction's counters so far, leaving it in the map; None when
    /// it is not there.
    pub fn peek(&self, key: &BypassKey) -> Option<BypassCounters> {
        let k = key.to_bytes();
        let mut v = [0u8; VALUE_SIZE];
        // SAFETY: buffers of the map's key and value sizes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                k.as_ptr().cast::<c_void>(),
                v.as_mut_ptr().cast::<c_void>(),
            )
        };
        match rc {
            0 => Some(BypassCounters::from_bytes(&v)),
            rc if rc == -libc::ENOENT => None,
            rc => {
                self.log_failure("lookup", key, rc);
                None
            }
        }
    }

    /// Connections the map was sized for; it holds twice as many entries
    /// (one per direction).
    pub fn capacity(&self) -> u32 {
        self.connections
    }

    /// The kernel memory the map takes (its `memlock` in
    /// `/proc/self/fdinfo`), None when the kernel does not say.
    pub fn kernel_memory(&self) -> Option<u64> {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd.as_raw_fd())).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
    }

    #[cold]
    fn log_failure(&self, op: &str, key: &BypassKey, rc: i32) {
        tracing::warn!(
            owner = %self.owner,
            "bypass map {op} of {key} failed: {}",
            crate::steering::lib_error(-rc)
        );
    }
}

/// `fcntl(F_DUPFD_CLOEXEC)`.
fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on an fd the caller holds open; the result is checked.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: d is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// The map `max_entries` for `connections` (two directions each; at least
/// 1, since a hash map cannot be empty), or an error over the limit.
pub(crate) fn map_entries(connections: u32) -> Result<u32, String> {
    if connections > MAX_BYPASS_CONNECTIONS {
        return Err(format!(
            "bypass_entries {connections} is more than the limit of {MAX_BYPASS_CONNECTIONS} connections"
        ));
    }
    Ok((connections * 2).max(1))
}

/// Sums the `N` u64 counters of entry 0 of a per-CPU array over the
/// possible CPUs.
pub(crate) fn percpu_sum<const N: usize>(fd: RawFd) -> io::Result<[u64; N]> {
    // SAFETY: a plain query of the possible-CPU mask.
    let ncpu = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if ncpu <= 0 {
        return Err(crate::steering::lib_error(-ncpu));
    }
    // A per-CPU lookup returns one value (its size rounded up to 8, which
    // N u64 are) per possible CPU.
    let mut vals = vec![[0u64; N]; ncpu as usize];
    let key = 0u32;
    // SAFETY: vals has room for ncpu values of N u64 (the caller checked
    // the map's value size).
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd,
            (&key as *const u32).cast::<c_void>(),
            vals.as_mut_ptr().cast::<c_void>(),
        )
    };
    if rc < 0 {
        return Err(crate::steering::lib_error(-rc));
    }
    Ok(vals.iter().fold([0u64; N], |mut acc, v| {
        for (a, x) in acc.iter_mut().zip(v) {
            *a += x;
        }
        acc
    }))
}

/// The socket filter, built by `bpf/build.sh` and committed with its
/// source.
static SOCKFILTER_OBJECT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/mailtap_sockfilter.o"
));

/// The eBPF socket filter for AF_PACKET rings (`bpf/mailtap_sockfilter.c`),
/// loaded once and attached to any number of rings
/// ([`PacketRing::attach_bypass`](crate::afpacket::PacketRing::attach_bypass)),
/// all sharing its bypass map and counters. It returns the snap length
/// it was loaded with for every packet (as the classic filter does),
/// except for bypassed ones, for which it returns 0: the kernel does not
/// copy them into the ring, and does not count them as drops.
#[derive(Debug)]
pub struct SocketBypass {
    prog: OwnedFd,
    stats: OwnedFd,
    map: BypassMap,
    snaplen: u32,
}

impl SocketBypass {
    /// Loads the filter with `snaplen` (use the rings'
    /// [`PacketRingConfig::effective_snaplen`](crate::afpacket::PacketRingConfig::effective_snaplen))
    /// and a bypass map for `connections` connections (two entries each).
    /// Needs CAP_BPF (or root); errors name the step.
    pub fn load(snaplen: u32, connections: u32) -> Result<SocketBypass, CaptureError> {
        crate::steering::route_library_logs();
        let logs = crate::steering::HeldLibLogs::start();
        let r = Self::load_inner(snaplen, connections);
        if r.is_ok() {
            logs.succeeded();
        }
        r
    }

    fn load_inner(snaplen: u32, connections: u32) -> Result<SocketBypass, CaptureError> {
        let what = |s: &str| format!("AF_PACKET bypass socket filter: {s}");
        let invalid = |s: String| {
            CaptureError::new(
                what("configuration"),
                io::Error::new(io::ErrorKind::InvalidInput, s),
            )
        };
        if snaplen == 0 {
            return Err(invalid("snaplen 0".into()));
        }
        let entries = map_entries(connections).map_err(invalid)?;
        let obj = Object::open(SOCKFILTER_OBJECT, c"mailtap_sockfilter")
            .map_err(|e| CaptureError::new(what("opening the embedded BPF object"), e))?;
        obj.set_max_entries(c"mailtap_bypass", entries)
            .map_err(|e| CaptureError::new(what("sizing map mailtap_bypass"), e))?;
        obj.load().map_err(|e| {
            let c = CaptureError::new(what("loading (bpf(BPF_PROG_LOAD))"), e);
            match c.source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => c.with_hint(
                    "loading a socket filter with a hash map needs CAP_BPF or root; AF_PACKET capture works without it, with no kernel bypass",
                ),
                _ => c,
            }
        })?;
        let map = |name: &CStr, key: usize, value: usize| {
            obj.map_fd(name, key, value)
                .map_err(|e| CaptureError::new(what(&format!("map {name:?}")), e))
        };
        let bypass_fd = map(c"mailtap_bypass", KEY_SIZE, VALUE_SIZE)?;
        let cfg_fd = map(c"mailtap_sfcfg", 4, 4)?;
        let stats_fd = map(c"mailtap_sfstats", 4, 16)?;
        let key = 0u32;
        // SAFETY: a 4-byte key and a 4-byte value, the map's sizes
        // (checked above).
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                cfg_fd,
                (&key as *const u32).cast::<c_void>(),
                (&snaplen as *const u32).cast::<c_void>(),
                libbpf_sys::BPF_ANY.into(),
            )
        };
        if rc < 0 {
            return Err(CaptureError::new(
                what("writing the snap length"),
                crate::steering::lib_error(-rc),
            ));
        }
        let prog_fd = obj
            .prog_fd(c"mailtap_sockflt")
            .map_err(|e| CaptureError::new(what("program mailtap_sockflt"), e))?;
        let dup = |fd: RawFd, s: &str| dup_fd(fd).map_err(|e| CaptureError::new(what(s), e));
        let sb = SocketBypass {
            prog: dup(prog_fd, "duplicating the program fd")?,
            stats: dup(stats_fd, "duplicating the stats map fd")?,
            map: BypassMap::from_fd(bypass_fd, connections, "the AF_PACKET socket filter".into())
                .map_err(|e| CaptureError::new(what("duplicating the bypass map fd"), e))?,
            snaplen,
        };
        // The duplicates keep program and maps alive; the object goes.
        drop(obj);
        tracing::debug!(
            snaplen,
            connections,
            "AF_PACKET bypass socket filter loaded"
        );
        Ok(sb)
    }

    /// The bypass map the filter consults.
    pub fn map(&self) -> BypassMap {
        self.map.clone()
    }

    /// The snap length it returns for packets it lets through.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Attaches the filter to an AF_PACKET socket (`SO_ATTACH_BPF`),
    /// replacing its filter atomically. On failure the socket keeps the
    /// filter it had.
    pub fn attach(&self, fd: BorrowedFd<'_>) -> Result<(), CaptureError> {
        let prog: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: SO_ATTACH_BPF reads an int (the program fd) of the size
        // we pass.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_BPF,
                (&prog as *const libc::c_int).cast::<c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(CaptureError::last_os(format!(
                "SO_ATTACH_BPF of the bypass socket filter on socket {}",
                fd.as_raw_fd()
            )));
        }
        Ok(())
    }

    /// Packets and IP bytes kept out of the rings, summed over CPUs
    /// (zeros, logged, if the counters cannot be read).
    pub fn counters(&self) -> (u64, u64) {
        match percpu_sum::<2>(self.stats.as_raw_fd()) {
            Ok([p, b]) => (p, b),
            Err(e) => {
                tracing::debug!("reading the AF_PACKET bypass counters: {e}");
                (0, 0)
            }
        }
    }

    /// The program's descriptor (for tests and diagnostics).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }
}

/// A libbpf object opened from an embedded ELF image; closed on drop
/// (program and map fds with it, unless duplicated).
pub(crate) struct Object(*mut libbpf_sys::bpf_object);

impl Object {
    pub(crate) fn open(image: &'static [u8], name: &CStr) -> io::Result<Object> {
        // SAFETY: all-zero is the documented "no options" value (sz set
        // below).
        let mut opts: libbpf_sys::bpf_object_open_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as _;
        opts.object_name = name.as_ptr();
        // SAFETY: image is 'static and never written; libbpf reads the ELF
        // from it; name outlives the call (libbpf copies it).
        let obj = unsafe {
            libbpf_sys::bpf_object__open_mem(
                image.as_ptr().cast::<c_void>(),
                image.len() as _,
                &opts,
            )
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Object(obj))
    }

    fn map(&self, name: &CStr) -> io::Result<*mut libbpf_sys::bpf_map> {
        // SAFETY: self.0 is a valid object.
        let m = unsafe { libbpf_sys::bpf_object__find_map_by_name(self.0, name.as_ptr()) };
        if m.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the embedded object",
            ));
        }
        Ok(m)
    }

    pub(crate) fn set_max_entries(&self, name: &CStr, n: u32) -> io::Result<()> {
        let m = self.map(name)?;
        // SAFETY: m belongs to the unloaded object; allowed before load.
        let rc = unsafe { libbpf_sys::bpf_map__set_max_entries(m, n) };
        if rc < 0 {
            return Err(crate::steering::lib_error(-rc));
        }
        Ok(())
    }

    pub(crate) fn load(&self) -> io::Result<()> {
        // SAFETY: a valid, not yet loaded object.
        let rc = unsafe { libbpf_sys::bpf_object__load(self.0) };
        if rc < 0 {
            return Err(crate::steering::lib_error(-rc));
        }
        Ok(())
    }

    /// The fd of a loaded map, after checking its key and value sizes
    /// against the layouts here.
    pub(crate) fn map_fd(&self, name: &CStr, key: usize, value: usize) -> io::Result<RawFd> {
        let m = self.map(name)?;
        // SAFETY: m is a map of the loaded object.
        let (fd, ks, vs) = unsafe {
            (
                libbpf_sys::bpf_map__fd(m),
                libbpf_sys::bpf_map__key_size(m),
                libbpf_sys::bpf_map__value_size(m),
            )
        };
        if ks as usize != key || vs as usize != value {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "key/value size {ks}/{vs} differs from the Rust side's {key}/{value} (rebuild bpf/)"
                ),
            ));
        }
        if fd < 0 {
            return Err(crate::steering::lib_error(-fd));
        }
        Ok(fd)
    }

    fn prog_fd(&self, name: &CStr) -> io::Result<RawFd> {
        // SAFETY: self.0 is a valid, loaded object.
        let p = unsafe { libbpf_sys::bpf_object__find_program_by_name(self.0, name.as_ptr()) };
        if p.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in the embedded object",
            ));
        }
        // SAFETY: p is a program of the loaded object.
        let fd = unsafe { libbpf_sys::bpf_program__fd(p) };
        if fd < 0 {
            return Err(crate::steering::lib_error(-fd));
        }
        Ok(fd)
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: a valid object from bpf_object__open_mem, closed once.
        unsafe { libbpf_sys::bpf_object__close(self.0) }
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
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes into ts.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
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
