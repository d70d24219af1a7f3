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

/// Sizes of one queue's UMEM and rings.
#[derive(Clone, Debug)]
pub struct XdpQueueConfig {
    /// UMEM frames (default 4096: a full fill ring plus a full RX ring).
    pub frame_count: u32,
    /// Bytes per frame, a power of two, 2048 or 4096 (default 4096, the
    /// libxdp default; 2048 halves the memory for MTU-sized traffic).
    pub frame_size: u32,
    /// RX ring entries, a power of two (default 2048).
    pub rx_ring: u32,
    /// Fill ring entries, a power of two (default 2048).
    pub fill_ring: u32,
    pub zero_copy: ZeroCopy,
    /// Back the UMEM with huge pages (needs `vm.nr_hugepages`).
    pub huge_pages: bool,
}

impl Default for XdpQueueConfig {
    fn default() -> Self {
        XdpQueueConfig {
            frame_count: 4096,
            frame_size: 4096,
            rx_ring: 2048,
            fill_ring: 2048,
            zero_copy: ZeroCopy::Auto,
            huge_pages: false,
        }
    }
}

impl XdpQueueConfig {
    /// Checks the sizes; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("rx_ring", self.rx_ring), ("fill_ring", self.fill_ring)] {
            if !v.is_power_of_two() || v < 64 {
                return Err(format!(
                    "capture.xdp_{name} = {v}: must be a power of two and at least 64"
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
        Ok(())
    }

    /// Bytes of UMEM one queue maps (and locks).
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frame_count) * u64::from(self.frame_size)
    }
}

/// One AF_XDP socket bound to one NIC queue, with its own UMEM.
pub struct XdpQueue {
    ifname: String,
    queue: u32,
    zero_copy: bool,
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
        let (umem, descs) = Umem::new(umem_cfg, frames, cfg.huge_pages).map_err(|e| {
            let src = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .and_then(|s| s.raw_os_error())
                .map(io::Error::from_raw_os_error)
                .unwrap_or_else(|| io::Error::other(e.to_string()));
            CaptureError::new(
                format!("{what}: creating the UMEM ({} bytes)", cfg.umem_bytes()),
                src,
            )
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
        if let Some(s) = steering {
            s.register_socket(queue, rx.fd().as_raw_fd())?;
        }
        let mut q = XdpQueue {
            ifname: ifname.to_string(),
            queue,
            zero_copy,
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
        if n == k {
            self.free.truncate(start);
        }
    }

    /// Waits at most `timeout` for packets, hands up to `max_packets` of
    /// them to `f`, then returns their frames to the fill ring. Returns
    /// the number handed over.
    pub fn poll_batch<F: FnMut(RxPacket<'_>)>(
        &mut self,
        max_packets: usize,
        timeout: Duration,
        mut f: F,
    ) -> Result<usize, CaptureError> {
        self.refill();
        let want = max_packets.clamp(1, self.batch.capacity().max(1));
        self.batch.clear();
        // SAFETY (both consume calls): the descriptors written are frames
        // of this UMEM that the kernel filled; we read them below and give
        // them back to the fill ring only after that.
        self.batch.resize(want, FrameDesc::default());
        let mut n = unsafe { self.rx.consume(&mut self.batch[..want]) };
        if n == 0 {
            // The driver may need a kick to process the fill ring; poll
            // both kicks it and waits for packets.
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            match self.rx.poll(ms) {
                Ok(true) => n = unsafe { self.rx.consume(&mut self.batch[..want]) },
                Ok(false) => {}
                Err(e) => {
                    return Err(CaptureError::new(
                        format!("AF_XDP poll on {} queue {}", self.ifname, self.queue),
                        e,
                    ))
                }
            }
        } else if self.fill.needs_wakeup() {
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
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

    /// Cumulative counters; reads the socket's XDP_STATISTICS (one
    /// syscall: call it per stats interval, not per batch).
    pub fn counters(&mut self) -> QueueCounters {
        if let Ok(s) = self.rx.fd().xdp_statistics() {
            self.counters.kernel_drops = s.rx_dropped();
            self.counters.ring_full = s.rx_ring_full() + s.rx_fill_ring_empty_descs();
            self.counters.invalid_descs = s.rx_invalid_descs();
        }
        self.counters
    }
}
