//! What `mailtap live` is told: the interfaces, the capture mechanism,
//! how packets find their shard, and the bounds of every queue.

use mailtap_capture::afpacket::{FanoutMode, PacketRingConfig};
use mailtap_capture::afxdp::XdpQueueConfig;
use mailtap_capture::steering::XdpMode;
use std::time::Duration;

/// Which capture mechanism feeds the workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    AfXdp,
    AfPacket,
}

impl CaptureKind {
    pub fn name(self) -> &'static str {
        match self {
            CaptureKind::AfXdp => "af_xdp",
            CaptureKind::AfPacket => "af_packet",
        }
    }
}

/// How a packet's owning shard is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardBy {
    /// The queue is the owner when the capture is known to keep flows
    /// together (AF_PACKET fanout hash on one interface); the flow hash
    /// otherwise.
    Auto,
    /// The receiving worker owns the packet: only correct when the NIC
    /// hashes symmetrically (see docs/operations.md).
    Queue,
    /// mailtap's symmetric flow hash picks the owner; packets of other
    /// shards' flows are handed over. Always correct.
    FlowHash,
}

/// Everything `mailtap live` needs beyond [`EngineConfig`](crate::EngineConfig).
#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub interfaces: Vec<String>,
    pub capture: CaptureKind,
    /// NIC queues to capture on each interface (AF_XDP: one socket per
    /// queue; AF_PACKET: one ring per entry, in one fanout group). None:
    /// every RX queue of the interface.
    pub queues: Option<Vec<u32>>,
    /// Cores to pin workers to: worker i runs on `cores[i % len]`. None:
    /// worker i on the i-th available core.
    pub cores: Option<Vec<usize>>,
    pub xdp_mode: XdpMode,
    /// The XDP program sends all TCP to mailtap (needed for dynamic
    /// protocol detection), not only the analyzers' ports.
    pub xdp_all_tcp: bool,
    pub xdp: XdpQueueConfig,
    pub ring: PacketRingConfig,
    pub fanout_mode: FanoutMode,
    pub shard_by: ShardBy,
    /// Stop after this long (None: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
    /// Period of the `stats.log` rows and the "queue stats" log lines
    /// (workers publish their counters every 100 ms regardless).
    pub stats_interval: Duration,
    /// Packets taken from a ring per batch.
    pub batch_packets: usize,
    /// Bytes per handoff buffer (packets for another shard).
    pub handoff_buffer_bytes: usize,
    /// Handoff buffers each worker may have in flight.
    pub handoff_buffers: usize,
    /// Record batches a worker keeps when the collector is behind.
    pub record_backlog: usize,
    /// Wait for the collector instead of dropping past the backlog.
    pub block_on_collector: bool,
    /// Kernel bypass of connections whose TLS handshake is over (see
    /// [`mailtap_flow::bypass`]; only when the flow table bypasses at all,
    /// `flow.bypass`).
    pub bypass: LiveBypass,
    /// Connections the kernel's bypass map holds (`live.bypass_connections`).
    pub bypass_connections: u32,
}

/// What the kernel does with the packets of a bypassed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveBypass {
    /// No kernel bypass: the shard skips the payload itself.
    Off,
    /// `Drop` on an interface without addresses (a mirror or tap port),
    /// `Pass` on one with an IPv4 or a global IPv6 address.
    Auto,
    /// AF_XDP: XDP_DROP (AF_PACKET: the socket filter skips the packet).
    Drop,
    /// AF_XDP: XDP_PASS to the host (AF_PACKET: the same as Drop; the host
    /// always gets its packets).
    Pass,
}

impl LiveConfig {
    pub fn new(interfaces: Vec<String>, capture: CaptureKind) -> Self {
        LiveConfig {
            interfaces,
            capture,
            queues: None,
            cores: None,
            xdp_mode: XdpMode::Auto,
            xdp_all_tcp: false,
            xdp: XdpQueueConfig::default(),
            ring: PacketRingConfig::default(),
            fanout_mode: FanoutMode::Hash,
            shard_by: ShardBy::Auto,
            duration: None,
            stats_interval: Duration::from_secs(10),
            batch_packets: 256,
            handoff_buffer_bytes: 256 << 10,
            handoff_buffers: 32,
            record_backlog: 256,
            block_on_collector: false,
            bypass: LiveBypass::Auto,
            bypass_connections: 65_536,
        }
    }
}

impl LiveConfig {
    /// Whether the worker that receives a packet owns it (see [`ShardBy`]):
    /// then no packet is handed to another worker.
    pub(crate) fn receiver_owns(&self) -> bool {
        match self.shard_by {
            ShardBy::Queue => true,
            ShardBy::FlowHash => false,
            ShardBy::Auto => {
                self.capture == CaptureKind::AfPacket
                    && self.interfaces.len() == 1
                    && self.fanout_mode == FanoutMode::Hash
            }
        }
    }
}
