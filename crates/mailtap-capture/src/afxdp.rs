//! AF_XDP receive queues: one socket and one UMEM per NIC queue (xsk-rs).
//!
//! The worker reads each packet straight from its UMEM frame. After the
//! batch's callback returns, the frames go back to the fill ring, which is
//! kept as full as the free frames allow so the driver never starves
//! (`rx_fill_ring_empty_descs` counts the times it did). Sockets are bound
//! with `XDP_USE_NEED_WAKEUP`: the kernel is only woken (a `poll`) when it
//! asks for it or when the ring is empty and the worker would wait anyway.
//!
//! The steering program ([`crate::steering`]) decides which packets come
//! here; the socket is created with libxdp's program loading inhibited and
//! registered in the program's `xsks_map` under its queue index.

use crate::steering::{SteeringProgram, XdpMode};
use crate::{now, CaptureError, QueueCounters, RxPacket};
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::time::Duration;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Whether to ask the driver for zero-copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it, copy mode otherwise.
    Auto,
    /// Zero-copy or fail.
    On,
    /// Always copy mode.
    Off,
}

impl FromStr for ZeroCopy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ZeroCopy::Auto),
            "on" => Ok(ZeroCopy::On),
            "off" => Ok(ZeroCopy::Off),
            _ => Err(format!("{s:?} is not a zero-copy setting (auto, on, off)")),
        }
    }
}

/// Whether to busy-poll the queue's NAPI context from the worker
/// (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPoll {
    /// Never.
    Off,
    /// Ask for it; when the kernel refuses (no `CONFIG_NET_RX_BUSY_POLL`,
    /// no `CAP_NET_ADMIN`), log once and capture without it.
    Auto,
    /// Ask for it and fail when the kernel refuses.
    On,
}

impl FromStr for BusyPoll {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "false" => Ok(BusyPoll::Off),
            "auto" => Ok(BusyPoll::Auto),
            "on" | "true" => Ok(BusyPoll::On),
            _ => Err(format!("{s:?} is not a busy-poll setting (off, auto, on)")),
        }
    }
}

/// Sizes of one queue's UMEM and rings.
///
/// The defaults absorb a stall of the worker of at least 50 ms at 1 Gbit/s
/// of small frames, without a drop: 1 Gbit/s of 143-byte frames (the
/// average of plaintext mail sessions cut into small segments) plus 20
/// bytes of preamble and inter-frame gap on the wire is 10^9 / (163 * 8) =
/// 767 k frames/s, so 50 ms is 38.3 k frames. While the worker does not
/// read, the kernel takes one frame from the fill ring per packet and puts
/// it on the RX ring, so what a stall absorbs is the smallest of the RX
/// ring, the fill ring and the frames in the fill ring when the stall
/// starts (the UMEM minus the frames of the batch being processed, and in
/// zero-copy mode minus those the driver has posted to the NIC). Rings of
/// 65536 entries (the power of two above 38.3 k) and 65536 frames absorb
/// 65536 - 256 packets: 85 ms at 767 k frames/s. Frames beyond the RX ring
/// add nothing: with the RX ring full the kernel drops whatever the fill
/// ring holds. 2048-byte frames (packets up to 1792 bytes: the kernel
/// keeps 256 bytes of headroom) make that 128 MiB of locked memory per
/// queue.
#[derive(Clone, Debug)]
pub struct XdpQueueConfig {
    /// UMEM frames (default 65536: fills the fill ring, which then covers
    /// the RX ring).
    pub frame_count: u32,
    /// Bytes per frame, 2048 or 4096 (default 2048: packets up to 1792
    /// bytes, enough for a 1500-byte MTU; 4096 for up to 3840).
    pub frame_size: u32,
    /// RX ring entries, a power of two (default 65536).
    pub rx_ring: u32,
    /// Fill ring entries, a power of two (default 65536).
    pub fill_ring: u32,
    pub zero_copy: ZeroCopy,
    /// Back the UMEM with huge pages (needs `vm.nr_hugepages`).
    pub huge_pages: bool,
    /// Busy polling (default off: see docs/operations.md).
    pub busy_poll: BusyPoll,
    /// `SO_BUSY_POLL`: microseconds one busy poll may spin (default 20).
    pub busy_poll_usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy poll (default 64).
    pub busy_poll_budget: u32,
}

impl Default for XdpQueueConfig {
    fn default() -> Self {
        XdpQueueConfig {
            frame_count: 65536,
            frame_size: 2048,
            rx_ring: 65536,
            fill_ring: 65536,
            zero_copy: ZeroCopy::Auto,
            huge_pages: false,
            busy_poll: BusyPoll::Off,
            busy_poll_usecs: 20,
            busy_poll_budget: 64,
        }
    }
}

/// Largest ring accepted (entries).
pub const MAX_RING: u32 = 1 << 22;

impl XdpQueueConfig {
    /// Checks the sizes; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("rx_ring", self.rx_ring), ("fill_ring", self.fill_ring)] {
            if !v.is_power_of_two() || !(64..=MAX_RING).contains(&v) {
                return Err(format!(
                    "capture.xdp_{name} = {v}: must be a power of two between 64 and {MAX_RING}"
                ));
            }
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(format!(
                "capture.xdp_frame_size = {}: must be 2048 or 4096",
                self.frame_size
            ));
        }
        if self.frame_count < self.fill_ring {
            return Err(format!(
                "capture.xdp_frame_count = {}: must be at least capture.xdp_fill_ring ({})",
                self.frame_count, self.fill_ring
            ));
        }
        if self.umem_bytes() > 1 << 40 {
            return Err(format!(
                "capture.xdp_frame_count = {}: times capture.xdp_frame_size ({}) is more than 1 TiB",
                self.frame_count, self.frame_size
            ));
        }
        if self.busy_poll_usecs == 0 || self.busy_poll_usecs > 1_000_000 {
            return Err(format!(
                "capture.xdp_busy_poll_usecs = {}: must be between 1 and 1000000",
                self.busy_poll_usecs
            ));
        }
        if self.busy_poll_budget == 0 || self.busy_poll_budget > u32::from(u16::MAX) {
            return Err(format!(
                "capture.xdp_busy_poll_budget = {}: must be between 1 and 65535",
                self.busy_poll_budget
            ));
        }
        Ok(())
    }

    /// Bytes of UMEM one queue maps (and locks).
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frame_count) * u64::from(self.frame_size)
    }

    /// Packets a queue holds while its worker reads nothing: what a stall
    /// absorbs (see the type's documentation), less one batch in flight.
    pub fn burst_packets(&self, batch: u32) -> u32 {
        self.rx_ring
            .min(self.fill_ring)
            .min(self.frame_count.saturating_sub(batch))
    }
}

/// `RLIMIT_MEMLOCK`'s soft limit in bytes (None: unlimited).
pub fn memlock_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}

/// Whether this process has `CAP_IPC_LOCK` in its effective set (then
/// locked memory is not charged to `RLIMIT_MEMLOCK`).
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// The hint for a UMEM that could not be locked.
fn memlock_hint(cfg: &XdpQueueConfig, limit: Option<u64>) -> String {
    let limit = match limit {
        Some(l) => format!("RLIMIT_MEMLOCK is {}", mib(l)),
        None => "RLIMIT_MEMLOCK is unlimited".into(),
    };
    format!(
        "locked memory: each AF_XDP queue locks its UMEM, live.xdp_frame_count ({}) x \
         live.xdp_frame_size ({}) = {}, charged to the user's RLIMIT_MEMLOCK (all its AF_XDP \
         sockets together) unless the process has CAP_IPC_LOCK; {limit}. Raise it \
         (`ulimit -l unlimited`, systemd LimitMEMLOCK=infinity), grant CAP_IPC_LOCK, or lower \
         live.xdp_frame_count with live.xdp_fill_ring and live.xdp_rx_ring \
         (see docs/operations.md)",
        cfg.frame_count,
        cfg.frame_size,
        mib(cfg.umem_bytes())
    )
}

/// Logged once per process when busy polling is refused in `auto` mode.
static BUSY_POLL_REFUSED_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Sets the three busy-poll options on `fd`; the error names the first
/// option the kernel refused.
fn set_busy_poll(fd: libc::c_int, usecs: u32, budget: u32) -> Result<(), (String, io::Error)> {
    for (name, opt, val) in [
        ("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL, 1),
        ("SO_BUSY_POLL", libc::SO_BUSY_POLL, usecs as libc::c_int),
        (
            "SO_BUSY_POLL_BUDGET",
            SO_BUSY_POLL_BUDGET,
            budget as libc::c_int,
        ),
    ] {
        // SAFETY: val is a live c_int and we pass its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err((name.to_string(), io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// One AF_XDP socket bound to one NIC queue, with its own UMEM.
pub struct XdpQueue {
    ifname: String,
    queue: u32,
    zero_copy: bool,
    /// Busy-poll options set: an empty ring is kicked with a non-blocking
    /// recvfrom (which busy-polls) before sleeping in poll.
    busy_poll: bool,
    /// A failed XDP_STATISTICS read was logged.
    stats_failed_logged: bool,
    // Field order is drop order: the rings before the UMEM they map.
    rx: RxQueue,
    _tx: TxQueue,
    fill: FillQueue,
    _comp: CompQueue,
    umem: Umem,
    /// Receive buffer for descriptors taken off the RX ring.
    batch: Vec<FrameDesc>,
    /// Frames owned by us, not in the fill ring: returned by the last
    /// batch, or left over because the fill ring was full.
    free: Vec<FrameDesc>,
    counters: QueueCounters,
}

// SAFETY: xsk-rs's queues hold raw ring pointers into memory mapped for
// this socket; the XdpQueue owns all of them and is used by one thread at
// a time (moved into its worker). Nothing else aliases the rings: the
// steering program only holds the socket's fd in its map.
unsafe impl Send for XdpQueue {}

impl XdpQueue {
    /// Creates the UMEM and socket for `ifname` queue `queue`, fills the
    /// fill ring and registers the socket with the steering program (or,
    /// with `steering` = None, lets libxdp load its default program in
    /// `mode`, which redirects everything on the queue: tests only).
    pub fn open(
        ifname: &str,
        queue: u32,
        cfg: &XdpQueueConfig,
        steering: Option<&SteeringProgram>,
        mode: XdpMode,
    ) -> Result<Self, CaptureError> {
        let what = format!("AF_XDP socket on {ifname} queue {queue}");
        cfg.validate().map_err(|e| {
            CaptureError::new(&what, io::Error::new(io::ErrorKind::InvalidInput, e))
        })?;
        let invalid =
            |e: String| CaptureError::new(&what, io::Error::new(io::ErrorKind::InvalidInput, e));
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(cfg.frame_size).map_err(|e| invalid(e.to_string()))?)
            .fill_queue_size(QueueSize::new(cfg.fill_ring).map_err(|e| invalid(e.to_string()))?)
            .comp_queue_size(QueueSize::new(64).map_err(|e| invalid(e.to_string()))?)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let frames = NonZeroU32::new(cfg.frame_count).ok_or_else(|| invalid("no frames".into()))?;
        // The kernel charges the UMEM to RLIMIT_MEMLOCK when registering
        // it (ENOBUFS); say so before mapping and populating it.
        let limit = memlock_limit();
        let umem_what = format!("{what}: creating the UMEM ({})", mib(cfg.umem_bytes()));
        if let Some(l) = limit {
            if l < cfg.umem_bytes() && !has_cap_ipc_lock() {
                return Err(CaptureError::new(
                    umem_what,
                    io::Error::from_raw_os_error(libc::ENOBUFS),
                )
                .with_hint(memlock_hint(cfg, limit)));
            }
        }
        let (umem, descs) = Umem::new(umem_cfg, frames, cfg.huge_pages).map_err(|e| {
            let src = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(|s| s.raw_os_error())
                .map(io::Error::from_raw_os_error)
                .unwrap_or_else(|| io::Error::other(e.to_string()));
            let errno = src.raw_os_error();
            let err = CaptureError::new(&umem_what, src);
            match errno {
                Some(libc::ENOBUFS) => err.with_hint(memlock_hint(cfg, limit)),
                Some(libc::ENOMEM) if cfg.huge_pages => err.with_hint(
                    "no huge pages free for the UMEM: raise vm.nr_hugepages or set \
                     live.xdp_huge_pages = false",
                ),
                Some(libc::ENOMEM) => err.with_hint(memlock_hint(cfg, limit)),
                _ => err,
            }
        })?;
        let iface = Interface::from_str(ifname)
            .map_err(|_| invalid(format!("bad interface name {ifname:?}")))?;

        let xdp_flags = match mode {
            XdpMode::Skb => XdpFlags::XDP_FLAGS_SKB_MODE,
            XdpMode::Native => XdpFlags::XDP_FLAGS_DRV_MODE,
            XdpMode::Auto => XdpFlags::empty(),
        };
        let libxdp_flags = if steering.is_some() {
            LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD
        } else {
            LibxdpFlags::empty()
        };
        // Generic (SKB) mode has no zero-copy; don't ask for it there.
        let skb = matches!(steering.map(|s| s.mode()).unwrap_or(mode), XdpMode::Skb);
        let attempts: &[BindFlags] = match (cfg.zero_copy, skb) {
            (ZeroCopy::On, _) => &[BindFlags::XDP_ZEROCOPY],
            (ZeroCopy::Off, _) | (ZeroCopy::Auto, true) => &[BindFlags::XDP_COPY],
            (ZeroCopy::Auto, false) => &[BindFlags::XDP_ZEROCOPY, BindFlags::XDP_COPY],
        };
        let mut last_err = None;
        let mut made = None;
        for bind in attempts {
            let sock_cfg = SocketConfig::builder()
                .rx_queue_size(QueueSize::new(cfg.rx_ring).map_err(|e| invalid(e.to_string()))?)
                .tx_queue_size(QueueSize::new(64).map_err(|e| invalid(e.to_string()))?)
                .libxdp_flags(libxdp_flags)
                .xdp_flags(xdp_flags)
                .bind_flags(*bind | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: the UMEM is not shared: this socket is the only one
            // created from it, so the shared-UMEM double-free hazard of
            // Socket::new does not apply.
            match unsafe { Socket::new(sock_cfg, &umem, &iface, queue) } {
                Ok(s) => {
                    made = Some((s, bind.contains(BindFlags::XDP_ZEROCOPY)));
                    break;
                }
                Err(e) => {
                    tracing::debug!(%ifname, queue, ?bind, "AF_XDP bind failed: {e}");
                    last_err = Some(e);
                }
            }
        }
        let ((tx, rx, fq_cq), zero_copy) = match made {
            Some(m) => m,
            None => {
                let e = last_err.expect("at least one bind attempt");
                let src = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .and_then(|s| s.raw_os_error())
                    .map(io::Error::from_raw_os_error)
                    .unwrap_or_else(|| io::Error::other(e.to_string()));
                return Err(CaptureError::new(what, src));
            }
        };
        let (fill, comp) = fq_cq.ok_or_else(|| {
            CaptureError::new(
                &what,
                io::Error::other("no fill/completion ring returned (UMEM unexpectedly shared)"),
            )
        })?;
        let busy_poll = match cfg.busy_poll {
            BusyPoll::Off => false,
            mode => match set_busy_poll(
                rx.fd().as_raw_fd(),
                cfg.busy_poll_usecs,
                cfg.busy_poll_budget,
            ) {
                Ok(()) => true,
                Err((opt, e)) if mode == BusyPoll::On => {
                    return Err(CaptureError::new(format!("{what}: {opt}"), e).with_hint(
                        "the kernel refused busy polling (it needs CONFIG_NET_RX_BUSY_POLL, \
                         and CAP_NET_ADMIN for SO_PREFER_BUSY_POLL); set \
                         live.xdp_busy_poll = \"auto\" or \"off\"",
                    ));
                }
                Err((opt, e)) => {
                    if !BUSY_POLL_REFUSED_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::info!(
                            %ifname,
                            queue,
                            "AF_XDP busy polling not available ({opt}: {e}); capturing without it"
                        );
                    }
                    false
                }
            },
        };
        if let Some(s) = steering {
            s.register_socket(queue, rx.fd().as_raw_fd())?;
        }
        let mut q = XdpQueue {
            ifname: ifname.to_string(),
            queue,
            zero_copy,
            busy_poll,
            stats_failed_logged: false,
            rx,
            _tx: tx,
            fill,
            _comp: comp,
            umem,
            batch: Vec::new(),
            free: descs,
            counters: QueueCounters::default(),
        };
        q.batch = q.free[..0].to_vec();
        q.batch.reserve(q.free.len());
        q.refill();
        tracing::info!(
            %ifname,
            queue,
            zero_copy,
            frames = cfg.frame_count,
            frame_size = cfg.frame_size,
            rx_ring = cfg.rx_ring,
            fill_ring = cfg.fill_ring,
            busy_poll,
            "AF_XDP socket ready"
        );
        Ok(q)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the socket is bound in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Puts as many free frames into the fill ring as it has room for.
    /// Never offers more than the free slots: xsk-rs submits nothing at
    /// all when asked to produce more than fit.
    #[inline]
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let room = self.fill.nb_free(self.free.len() as u32) as usize;
        let k = room.min(self.free.len());
        if k == 0 {
            return;
        }
        let start = self.free.len() - k;
        // SAFETY: every descriptor in `free` belongs to this UMEM and is
        // owned by us: it came from Umem::new or from our RX ring, and its
        // packet's data is no longer borrowed (the batch callback ended).
        let n = unsafe { self.fill.produce(&self.free[start..]) };
        // produce submits the first n of the slice (libxdp reserves all or
        // nothing, so n is 0 or k): forget exactly those.
        self.free.drain(start..start + n.min(k));
    }

    /// A non-blocking recvfrom on the socket: the kernel busy-polls the
    /// queue's NAPI context (busy polling on) and, in zero-copy mode, wakes
    /// the driver when it asked for it (`XDP_USE_NEED_WAKEUP`).
    #[inline]
    fn kick(&mut self) {
        // SAFETY: a zero-length recvfrom with null buffers; AF_XDP ignores
        // them and only uses the call as a wake-up.
        unsafe {
            libc::recvfrom(
                self.rx.fd().as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits at most `timeout` for packets, hands up to `max_packets` of
    /// them to `f`, then returns their frames to the fill ring. Returns
    /// the number handed over.
    ///
    /// No system call while packets flow (copy mode): the RX ring is read
    /// and the fill ring written in shared memory, one batch at a time, and
    /// the frames of a batch go back to the fill ring as soon as the batch
    /// is done. The kernel is entered only when the RX ring is empty (to
    /// busy-poll, then to sleep in `poll`), or when a zero-copy driver
    /// asks for a wake-up.
    /// Takes up to `want` received descriptors from the RX ring into
    /// `batch`.
    fn consume_rx(&mut self, want: usize) -> usize {
        // SAFETY: the descriptors written are frames of this socket's UMEM
        // that the kernel filled; poll_batch reads them and gives them back
        // to the fill ring only after that.
        unsafe { self.rx.consume(&mut self.batch[..want]) }
    }

    pub fn poll_batch<F: FnMut(RxPacket<'_>)>(
        &mut self,
        max_packets: usize,
        timeout: Duration,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        self.refill();
        let want = max_packets.clamp(1, self.batch.capacity().max(1));
        self.batch.clear();
        self.batch.resize(want, FrameDesc::default());
        let mut n = self.consume_rx(want);
        if n == 0 && self.busy_poll {
            self.kick();
            n = self.consume_rx(want);
        }
        if n == 0 {
            // The driver may need a kick to process the fill ring; poll
            // both kicks it and waits for packets.
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            match self.rx.poll(ms) {
                Ok(true) => n = self.consume_rx(want),
                Ok(false) => {}
                Err(e) => {
                    return Err(CaptureError::new(
                        format!("AF_XDP poll on {} queue {}", self.ifname, self.queue),
                        e,
                    ))
                }
            }
        } else if self.fill.needs_wakeup() {
            self.kick();
        }
        self.batch.truncate(n);
        if n == 0 {
            return Ok(0);
        }
        let ts = now();
        for d in &self.batch {
            // SAFETY: the descriptor came off this UMEM's RX ring and is
            // not in the fill ring until after this loop.
            let data = unsafe { self.umem.data(d) };
            let bytes = data.contents();
            self.counters.packets += 1;
            self.counters.bytes += bytes.len() as u64;
            f(RxPacket {
                ts,
                data: bytes,
                wire_len: bytes.len() as u32,
            });
        }
        self.free.extend_from_slice(&self.batch);
        self.refill();
        Ok(n)
    }

    /// Cumulative counters; reads the socket's `XDP_STATISTICS` (one
    /// syscall: call it per stats interval, not per batch).
    ///
    /// `kernel_drops` counts packets the socket lost: `rx_dropped` (no
    /// frame in the fill ring, or longer than a frame) plus `rx_ring_full`
    /// (the RX ring was full). `ring_full` counts the times a ring was in
    /// the way: `rx_ring_full` plus `rx_fill_ring_empty_descs` (in copy
    /// mode each of these also dropped a packet, counted in `rx_dropped`;
    /// in zero-copy mode the driver found no frame to post and the NIC
    /// drops, counted by the NIC). Kernels before 5.9 report only the
    /// first three fields; the others then stay 0.
    pub fn counters(&mut self) -> QueueCounters {
        match xdp_statistics(self.rx.fd().as_raw_fd()) {
            Ok(s) => {
                self.counters.kernel_drops = s.rx_dropped + s.rx_ring_full;
                self.counters.ring_full = s.rx_ring_full + s.rx_fill_ring_empty_descs;
                self.counters.invalid_descs = s.rx_invalid_descs;
            }
            Err(e) => {
                if !self.stats_failed_logged {
                    self.stats_failed_logged = true;
                    tracing::warn!(
                        interface = %self.ifname,
                        queue = self.queue,
                        "XDP_STATISTICS failed ({e}); kernel drop counters not updated"
                    );
                }
            }
        }
        self.counters
    }
}

/// `struct xdp_statistics` (linux/if_xdp.h); the last three fields since
/// Linux 5.9.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

/// Reads `XDP_STATISTICS`, accepting the short (pre-5.9) form.
fn xdp_statistics(fd: libc::c_int) -> io::Result<XdpStatistics> {
    const SOL_XDP: libc::c_int = 283;
    const XDP_STATISTICS: libc::c_int = 7;
    let mut st = XdpStatistics::default();
    let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: st and len are valid for writes of their sizes; the kernel
    // writes at most len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut st as *mut XdpStatistics).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < 3 * std::mem::size_of::<u64>() {
        return Err(io::Error::other(format!(
            "XDP_STATISTICS returned {len} bytes"
        )));
    }
    Ok(st)
}

#[cfg(test)]
mod tests;
