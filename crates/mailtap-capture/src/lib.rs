//! Live packet capture: receive queues that hand borrowed packets to a
//! worker thread, batch by batch, with the kernel's drop counters.
//!
//! Two kinds of queue, one per worker thread:
//! - [`afxdp::XdpQueue`]: an AF_XDP socket and its own UMEM bound to one
//!   NIC queue (xsk-rs). Packets are read straight from the UMEM frame; a
//!   frame goes back to the fill ring when the batch is done with it.
//! - [`afpacket::PacketRing`]: an AF_PACKET TPACKET_V3 mmap ring in a
//!   fanout group whose kernel hash keeps both directions of a flow on one
//!   socket.
//!
//! [`steering::SteeringProgram`] is the XDP program (source in `bpf/`) that
//! redirects to the AF_XDP sockets only the traffic mailtap wants and
//! passes everything else to the kernel.
//!
//! [`bypass`] is the kernel bypass of connections whose payload the sensor
//! no longer needs (after a TLS handshake): the steering program's map, or
//! an eBPF socket filter on the AF_PACKET rings, counts their packets
//! instead of handing them over.
//!
//! Nothing here allocates, locks or copies per packet.

pub mod afpacket;
pub mod afxdp;
pub mod bypass;
pub mod steering;

use mailtap_core::Timestamp;
use std::fmt;
use std::io;

/// A capture set-up or receive failure, naming the interface and queue.
#[derive(Debug)]
pub struct CaptureError {
    /// What was being done, e.g. "AF_XDP socket on eth1 queue 2".
    pub what: String,
    pub source: io::Error,
    /// The likely cause and what to change, shown instead of the generic
    /// hint derived from the error number.
    pub hint: Option<String>,
}

impl CaptureError {
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        CaptureError {
            what: what.into(),
            source,
            hint: None,
        }
    }
    /// Replaces the generic hint with a specific one.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The last OS error, for a failed libc call.
    pub fn last_os(what: impl Into<String>) -> Self {
        Self::new(what, io::Error::last_os_error())
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)?;
        if let Some(h) = &self.hint {
            return write!(f, " ({h})");
        }
        match self.source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => write!(
                f,
                " (live capture needs root or CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF/CAP_SYS_ADMIN and CAP_IPC_LOCK; see docs/operations.md)"
            ),
            Some(libc::ENOBUFS) | Some(libc::ENOMEM) => write!(
                f,
                " (locked memory: raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK, or use smaller rings; see docs/operations.md)"
            ),
            Some(libc::ENODEV) => write!(f, " (no such interface)"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Cumulative counters of one receive queue since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Packets handed to the worker.
    pub packets: u64,
    /// Their captured bytes.
    pub bytes: u64,
    /// Packets the kernel had for this socket and lost: AF_PACKET
    /// `tp_drops`; AF_XDP `rx_dropped` (no frame in the fill ring, or a
    /// packet longer than a frame) plus `rx_ring_full` (RX ring full).
    pub kernel_drops: u64,
    /// Times the ring was full or starved: AF_XDP `rx_ring_full` plus
    /// `rx_fill_ring_empty_descs`; AF_PACKET `tp_freeze_q_cnt`.
    pub ring_full: u64,
    /// AF_XDP `rx_invalid_descs` (should stay 0).
    pub invalid_descs: u64,
    /// Packets longer than the ring's frame that were truncated.
    pub truncated: u64,
}

/// One received packet, borrowed from the ring until its batch ends.
#[derive(Clone, Copy, Debug)]
pub struct RxPacket<'a> {
    /// Kernel receive time (AF_PACKET), or the batch's receive time
    /// (AF_XDP has no per-packet timestamp).
    pub ts: Timestamp,
    /// The captured bytes, starting at the Ethernet header.
    pub data: &'a [u8],
    /// The packet's length on the wire (>= `data.len()`).
    pub wire_len: u32,
}

/// The wall clock as a packet timestamp (vDSO, no syscall).
pub fn now() -> Timestamp {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    Timestamp::from_secs_nanos(ts.tv_sec, ts.tv_nsec)
}

/// The index of a network interface, or an error naming it.
pub fn ifindex(name: &str) -> Result<u32, CaptureError> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        CaptureError::new(
            format!("interface {name:?}"),
            io::ErrorKind::InvalidInput.into(),
        )
    })?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(CaptureError::last_os(format!("interface {name}")));
    }
    Ok(idx)
}

/// How many receive queues (channels) the interface has, from sysfs.
pub fn rx_queue_count(name: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}
