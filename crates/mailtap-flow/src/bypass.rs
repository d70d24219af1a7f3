//! Bypass: once a connection's analyzer has learned all it can (a TLS
//! handshake is over), the rest of its payload is not analysed.
//!
//! The flow table then stops delivering the connection's payload and
//! tracks only what conn.log needs: packet and byte counts, the streams'
//! extent and the SYN/FIN/RST that drive its state. In live capture it also
//! asks a [`KernelBypass`] (the capture's BPF map, wired by the engine) to
//! stop handing the connection's ordinary packets to user space at all; the
//! kernel counts them instead and the flow table adds its counts when the
//! connection ends. `mailtap read` bypasses in user space only, with the
//! same conn.log result: packets of a bypassed connection add no history
//! letters other than those of SYN, FIN and RST (the kernel passes those
//! on), and the payload they carry is neither reassembled nor copied.

use mailtap_core::{ConnId, Timestamp};

/// What the kernel counted for one direction of a bypassed connection
/// (only packets without SYN, FIN or RST: those reach the shard).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    pub packets: u64,
    /// IP bytes (the IP header's total length), as conn.log `*_ip_bytes`.
    pub ip_bytes: u64,
    /// Time of the latest packet counted.
    pub last_seen: Option<Timestamp>,
    /// End (sequence number) of the furthest payload counted.
    pub seq_end: Option<u32>,
    /// Of `packets`, for conn.log history: those with payload, pure ACKs,
    /// those advertising a zero window, and retransmissions (payload that
    /// starts before `seq_end`).
    pub payload_packets: u64,
    pub pure_acks: u64,
    pub zero_windows: u64,
    pub retransmissions: u64,
}

/// A kernel table of bypassed connections (AF_XDP's steering program or
/// AF_PACKET's socket filter). Each call is one system call or two and is
/// made per connection (and per SYN, FIN or RST of a bypassed one), never
/// per ordinary packet.
pub trait KernelBypass: Send {
    /// Asks the kernel to keep the connection's ordinary packets (those
    /// without SYN, FIN or RST) from user space. False when it cannot (its
    /// table is full, or an error): the connection is then bypassed in
    /// user space only.
    fn start(&mut self, id: &ConnId) -> bool;
    /// What the kernel counted so far: `[orig -> resp, resp -> orig]`.
    fn peek(&mut self, id: &ConnId) -> Option<[KernelCounts; 2]>;
    /// Reads and forgets what the kernel counted.
    fn finish(&mut self, id: &ConnId) -> [KernelCounts; 2];
}

/// How a connection's payload is handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum BypassState {
    /// Analysed.
    #[default]
    No,
    /// Bypassed by the flow table only.
    User,
    /// Bypassed in the kernel too. `applied` holds, per direction, the
    /// kernel's zero-window and retransmission counts already turned into
    /// history letters (those letters repeat at 1, 10, 100, ...).
    Kernel { applied: [[u64; 2]; 2] },
}

impl BypassState {
    pub(crate) fn is_kernel(&self) -> bool {
        matches!(self, BypassState::Kernel { .. })
    }
}
