//! Live capture: one pinned worker per receive queue, each the owner of
//! one shard.
//!
//! ```text
//! NIC queue 0 -> worker 0 (core c0): AF_XDP/AF_PACKET ring -> decode -> owner?
//!                   own flow: FlowTable 0 -> analyzers -> records ----------> collector
//!                   other shard's flow: copy into a handoff batch --> worker k
//! NIC queue 1 -> worker 1 (core c1): ...
//! ```
//!
//! A packet belongs to the shard that owns its flow. When the capture
//! already keeps both directions of a flow on one queue (AF_PACKET's
//! fanout hash, or a NIC with symmetric RSS), the receiving worker is the
//! owner and nothing moves. Otherwise the owner is chosen by mailtap's
//! symmetric flow hash and the packet is copied into a batch for that
//! worker, which goes over a bounded lock-free channel once per receive
//! batch. Workers never share a flow table.
//!
//! Everything is bounded: receive batches, handoff buffers (a packet that
//! finds none free is dropped and counted), record batches (a slow
//! collector makes workers wait, and the kernel's ring drops are counted).

use crate::budget::QueueBudget;
use crate::bypass::{interface_has_addresses, KernelMaps};
use crate::collector::{latency_histogram, Collector, RecordBatch};
use crate::config::EngineConfig;
use crate::factory::MailAnalyzers;
use crate::metrics::{Metrics, MetricsServer};
use crate::shard::{process_packet, process_tcp};
use crate::summary::{add_flow, add_output, EngineError, Summary};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use mailtap_capture::afpacket::{Fanout, FanoutMode, PacketRing, PacketRingConfig};
use mailtap_capture::afxdp::{XdpQueue, XdpQueueConfig};
use mailtap_capture::bypass::{BypassAction, BypassMap, SocketBypass};
use mailtap_capture::steering::{SteeringConfig, SteeringCounters, SteeringProgram, XdpMode};
use mailtap_capture::{CaptureError, QueueCounters, RxPacket};
use mailtap_core::analyzer::OutputCounters;
use mailtap_core::record::{FieldDef, Value, ZeekRecord};
use mailtap_core::{Output, Record, Timestamp};
use mailtap_flow::{FlowCounters, FlowTable, UidGenerator};
use mailtap_logs::LogFile;
use mailtap_wire::decode::{decode, flow_hash_keyed, Decoded, FlowHashKey};
use mailtap_wire::defrag::Defragmenter;
use mailtap_wire::source::LinkType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

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

/// Everything `mailtap live` needs beyond [`EngineConfig`].
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
    /// Period of the stats log line, `stats.log` row and counter refresh.
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

/// Counters of one worker (its queue and its shard), as of the end.
#[derive(Clone, Debug, Default)]
pub struct QueueSummary {
    pub interface: String,
    pub queue: u32,
    pub core: Option<usize>,
    /// AF_XDP bound in zero-copy mode.
    pub zero_copy: bool,
    pub capture: QueueCounters,
    pub handed_off: u64,
    pub handoff_received: u64,
    pub handoff_dropped: u64,
    /// Records dropped because the collector could not keep up.
    pub records_dropped: u64,
    /// Of those, by class in [`SHED_CLASSES`] order (events, weird,
    /// files/ssl/x509, message bytes, smtp/pop3/conn, message metadata).
    pub records_dropped_by_class: [u64; 6],
    /// Message bytes dropped because the collector could not keep up.
    pub email_bytes_dropped: u64,
    /// Messages marked `complete: false` because their bytes were dropped.
    pub messages_marked_incomplete: u64,
    pub flows_created: u64,
    pub events: u64,
}

/// What `mailtap live` did: the engine summary plus per-queue and XDP
/// counters.
#[derive(Clone, Debug, Default)]
pub struct LiveSummary {
    pub engine: Summary,
    pub queues: Vec<QueueSummary>,
    /// Per interface, when AF_XDP steering was used.
    pub steering: Vec<(String, XdpMode, SteeringCounters)>,
    /// Packets and bytes the AF_PACKET socket filter kept from the rings
    /// (bypassed connections), when it was loaded.
    pub socket_bypass: Option<(u64, u64)>,
}

impl LiveSummary {
    /// Every drop, by cause: the engine's plus the capture's.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let mut d = self.engine.drops();
        let mut add = |k: &str, v: u64| {
            if v > 0 {
                *d.entry(k.to_string()).or_default() += v;
            }
        };
        for q in &self.queues {
            add("capture.kernel_drops", q.capture.kernel_drops);
            add("capture.ring_full", q.capture.ring_full);
            add("capture.invalid_descs", q.capture.invalid_descs);
            add("capture.truncated", q.capture.truncated);
            add("handoff.dropped", q.handoff_dropped);
            add("collector.records_dropped", q.records_dropped);
            for (class, v) in SHED_CLASSES.iter().zip(q.records_dropped_by_class) {
                add(&format!("collector.dropped.{class}"), v);
            }
            add("collector.email_bytes_dropped", q.email_bytes_dropped);
            add(
                "collector.messages_marked_incomplete",
                q.messages_marked_incomplete,
            );
        }
        // Mail the XDP program had to give to the kernel because its
        // queue had no socket: traffic mailtap should have seen.
        for (_, _, c) in &self.steering {
            add("xdp.mail_on_queue_without_socket", c.passed_no_socket);
        }
        d
    }
}

/// Counters a worker publishes for the stats thread and the metrics
/// endpoint (relaxed atomics, each worker writes only its own).
#[derive(Default)]
pub(crate) struct SharedStats {
    /// When the worker last published (ms since the Unix epoch; 0: never,
    /// as in `mailtap read`, whose shards are not watched): `/healthz`.
    pub(crate) heartbeat_ms: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) kernel_drops: AtomicU64,
    pub(crate) ring_full: AtomicU64,
    pub(crate) handed_off: AtomicU64,
    pub(crate) handoff_received: AtomicU64,
    pub(crate) handoff_dropped: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) non_tcp: AtomicU64,
    pub(crate) flows_active: AtomicU64,
    pub(crate) flows_created: AtomicU64,
    pub(crate) reassembly_bytes: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bypassed_flows: AtomicU64,
    pub(crate) bypassed_packets: AtomicU64,
    pub(crate) bypassed_bytes: AtomicU64,
}

/// One receive queue, whichever the mechanism. One per worker, moved
/// once into its thread: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    Xdp(XdpQueue),
    Packet(PacketRing),
}

impl Source {
    #[inline]
    fn poll_batch<F: FnMut(RxPacket<'_>)>(
        &mut self,
        max: usize,
        timeout: Duration,
        f: F,
    ) -> Result<usize, CaptureError> {
        match self {
            Source::Xdp(q) => q.poll_batch(max, timeout, f),
            Source::Packet(r) => r.poll_batch(max, timeout, f),
        }
    }
    fn counters(&mut self) -> QueueCounters {
        match self {
            Source::Xdp(q) => q.counters(),
            Source::Packet(r) => r.counters(),
        }
    }
    fn zero_copy(&self) -> bool {
        matches!(self, Source::Xdp(q) if q.zero_copy())
    }
}

/// Packets for another shard, copied into one buffer.
struct Handoff {
    data: Vec<u8>,
    pkts: Vec<HandoffPacket>,
    /// The pool of the worker that filled it; the receiver sends it back.
    home: Sender<Handoff>,
}

#[derive(Clone, Copy)]
struct HandoffPacket {
    ts: Timestamp,
    link: LinkType,
    off: u32,
    len: u32,
}

/// Where a worker's packets come from and which core it runs on.
struct WorkerPlan {
    interface: String,
    queue: u32,
    core: Option<core_affinity::CoreId>,
}

struct WorkerResult {
    queue: QueueSummary,
    flow: FlowCounters,
    output: OutputCounters,
    decode_errors: BTreeMap<&'static str, u64>,
    tcp: u64,
    non_tcp: u64,
    fragments: u64,
    defrag_dropped: u64,
    fragments_reassembled: u64,
}

/// Captures on the configured interfaces until `stop` is set or the
/// duration ends, then flushes every log and returns the summary.
/// `on_stats` is called every stats interval with the summary so far
/// (cheap counters only).
pub fn run_live(
    cfg: &EngineConfig,
    live: &LiveConfig,
    stop: &AtomicBool,
) -> (LiveSummary, Result<(), EngineError>) {
    let started = Instant::now();
    let mut summary = LiveSummary::default();

    // Workers: one per (interface, queue).
    let mut plans = Vec::new();
    for ifname in &live.interfaces {
        if let Err(e) = mailtap_capture::ifindex(ifname) {
            return (summary, Err(EngineError::Capture(e)));
        }
        let queues: Vec<u32> = match &live.queues {
            Some(q) => q.clone(),
            None => (0..mailtap_capture::rx_queue_count(ifname) as u32).collect(),
        };
        for q in queues {
            plans.push(WorkerPlan {
                interface: ifname.clone(),
                queue: q,
                core: None,
            });
        }
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    for (i, p) in plans.iter_mut().enumerate() {
        p.core = match &live.cores {
            Some(c) if !c.is_empty() => Some(core_affinity::CoreId { id: c[i % c.len()] }),
            _ if !available.is_empty() => Some(available[i % available.len()]),
            _ => None,
        };
    }
    let n = plans.len();
    if n == 0 {
        return (
            summary,
            Err(EngineError::Capture(CaptureError::new(
                "live capture",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no queues to capture on"),
            ))),
        );
    }
    let by_queue = match live.shard_by {
        ShardBy::Queue => true,
        ShardBy::FlowHash => false,
        ShardBy::Auto => {
            live.capture == CaptureKind::AfPacket
                && live.interfaces.len() == 1
                && live.fanout_mode == FanoutMode::Hash
        }
    };

    // Steering programs and sockets are set up before any thread starts,
    // so a set-up error ends the run cleanly with nothing half-running.
    let mut steering: Vec<SteeringProgram> = Vec::new();
    let mut sources = Vec::with_capacity(n);
    let kernel_bypass = live.bypass != LiveBypass::Off && cfg.flow.bypass;
    let mut bypass_maps: Vec<BypassMap> = Vec::new();
    let mut socket_bypass: Option<SocketBypass> = None;
    match live.capture {
        CaptureKind::AfXdp => {
            let a = &cfg.analyzers;
            let mut ports: Vec<u16> = a.smtp.ports.iter().chain(&a.pop3.ports).copied().collect();
            if let Some(ace) = &cfg.ace {
                ports.extend(&ace.ports);
            }
            ports.sort_unstable();
            ports.dedup();
            let max_queue = plans.iter().map(|p| p.queue).max().unwrap_or(0);
            let scfg = SteeringConfig {
                ports,
                all_tcp: live.xdp_all_tcp,
                max_queues: live
                    .interfaces
                    .iter()
                    .map(|i| mailtap_capture::rx_queue_count(i) as u32)
                    .fold(max_queue + 1, u32::max),
                bypass_action: BypassAction::Pass,
                bypass_entries: if kernel_bypass {
                    live.bypass_connections
                } else {
                    0
                },
            };
            for ifname in &live.interfaces {
                let scfg = SteeringConfig {
                    bypass_action: bypass_action(live.bypass, ifname),
                    ..scfg.clone()
                };
                match SteeringProgram::attach(ifname, live.xdp_mode, &scfg) {
                    Ok(s) => {
                        tracing::info!(
                            %ifname,
                            mode = ?s.mode(),
                            bypass = if kernel_bypass { scfg.bypass_action.to_string() } else { "off".into() },
                            "XDP steering program attached"
                        );
                        bypass_maps.extend(s.bypass_map());
                        steering.push(s);
                    }
                    Err(e) => return (summary, Err(EngineError::Capture(e))),
                }
            }
            for p in &plans {
                let prog = steering
                    .iter()
                    .find(|s| s.ifname() == p.interface)
                    .expect("one program per interface");
                match XdpQueue::open(&p.interface, p.queue, &live.xdp, Some(prog), prog.mode()) {
                    Ok(q) => sources.push(Source::Xdp(q)),
                    Err(e) => return (summary, Err(EngineError::Capture(e))),
                }
            }
        }
        CaptureKind::AfPacket => {
            // The socket filter that skips bypassed packets; without it
            // (no CAP_BPF) the shard skips their payload itself.
            if kernel_bypass {
                match SocketBypass::load(live.ring.effective_snaplen(), live.bypass_connections) {
                    Ok(b) => {
                        bypass_maps.push(b.map());
                        socket_bypass = Some(b);
                    }
                    Err(e) => tracing::warn!(
                        "kernel bypass off (the shards skip bypassed payload themselves): {e}"
                    ),
                }
            }
            // One fanout group per interface; the id mixes in the pid so
            // two sensors on one host do not join each other's group.
            let pid = std::process::id() as u16;
            for p in &plans {
                let group = pid
                    ^ (live
                        .interfaces
                        .iter()
                        .position(|i| *i == p.interface)
                        .unwrap_or(0) as u16)
                        .wrapping_mul(0x9e37);
                let mut rc = live.ring.clone();
                rc.fanout = Some(Fanout {
                    group_id: group,
                    mode: live.fanout_mode,
                    defrag: true,
                });
                match PacketRing::open(&p.interface, &rc) {
                    Ok(r) => {
                        if let Some(b) = &socket_bypass {
                            if let Err(e) = r.attach_bypass(b) {
                                // Its packets still come; the shard skips
                                // their payload.
                                tracing::warn!(interface = %p.interface, queue = p.queue, "kernel bypass off on this ring: {e}");
                            }
                        }
                        sources.push(Source::Packet(r))
                    }
                    Err(e) => return (summary, Err(EngineError::Capture(e))),
                }
            }
        }
    }

    let collector = match Collector::start(cfg, n * 16, n, false) {
        Ok(c) => c,
        Err(e) => return (summary, Err(e)),
    };

    // Handoff channels: worker i receives on inbox[i]; every other worker
    // holds a sender to it.
    let mut inbox_tx = Vec::with_capacity(n);
    let mut inbox_rx = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = bounded::<Handoff>(live.handoff_buffers.max(1) * n);
        inbox_tx.push(tx);
        inbox_rx.push(rx);
    }

    let shard_cfg = cfg.shard_flow_config(n);
    let uids = UidGenerator::new(&cfg.uid_salt);
    let stats: Vec<Arc<SharedStats>> = (0..n).map(|_| Arc::new(SharedStats::default())).collect();
    let emit_latency: Vec<_> = (0..n)
        .map(|_| Arc::new(std::sync::Mutex::new(latency_histogram())))
        .collect();
    // `/readyz`: set once every worker runs on its capture queue.
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = match &cfg.metrics_listen {
        Some(addr) => {
            let m = Arc::new(Metrics {
                started,
                capture: live.capture.name(),
                queues: plans
                    .iter()
                    .zip(&stats)
                    .map(|(p, s)| (p.interface.clone(), p.queue, s.clone()))
                    .collect(),
                emit_latency_us: emit_latency.clone(),
                collector: collector.stats.clone(),
                ready: ready.clone(),
            });
            match MetricsServer::start(addr, m) {
                Ok(s) => Some(s),
                Err(e) => return (summary, Err(e)),
            }
        }
        None => None,
    };
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(n);
    for (i, (source, rx)) in sources.into_iter().zip(inbox_rx).enumerate() {
        let (mut table, out) = cfg.new_shard(&shard_cfg, &uids);
        if let Some(k) = KernelMaps::new(bypass_maps.clone()) {
            table.set_kernel_bypass(Box::new(k));
        }
        let (pool_tx, pool_rx) = bounded::<Handoff>(live.handoff_buffers.max(1));
        let to: Vec<Option<Sender<Handoff>>> = (0..n)
            .map(|j| (j != i).then(|| inbox_tx[j].clone()))
            .collect();
        let w = Worker {
            id: i,
            n,
            by_queue,
            flow_hash_key: cfg.flow_hash_key,
            verify: cfg.verify_checksums,
            table,
            out,
            defrag: Defragmenter::new(cfg.defrag),
            frag_buf: Vec::new(),
            outbox: (0..n).map(|_| None).collect(),
            to,
            inbox: rx,
            pool_rx,
            pool_tx,
            allocated: 0,
            max_buffers: live.handoff_buffers.max(1),
            buffer_bytes: live.handoff_buffer_bytes.max(65_536 + 64),
            records: collector.tx.clone(),
            records_out: RecordOutbox::new(
                live.record_backlog,
                live.block_on_collector,
                collector.budget.clone(),
                cfg.collector_queue_bytes / n as u64,
                cfg.record_batch_bytes(),
            ),
            batch_bytes: cfg.record_batch_bytes(),
            warned_drop: false,
            pending_since: None,
            emit_latency_us: emit_latency[i].clone(),
            stats: stats[i].clone(),
            local: Local::default(),
            decode_errors: BTreeMap::new(),
            last_ts: Timestamp::ZERO,
        };
        let plan = &plans[i];
        let core = plan.core;
        let stop = worker_stop.clone();
        let batch = live.batch_packets.max(1);
        let qs = QueueSummary {
            interface: plan.interface.clone(),
            queue: plan.queue,
            core: core.map(|c| c.id),
            zero_copy: source.zero_copy(),
            ..Default::default()
        };
        let spawned = thread::Builder::new()
            .name(format!("mailtap-w{i}"))
            .spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(c) {
                        tracing::warn!(worker = i, core = c.id, "could not pin worker to core");
                    }
                }
                w.run(source, batch, &stop, qs)
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                tracing::error!("spawning worker {i}: {e}");
                worker_stop.store(true, Ordering::SeqCst);
                break;
            }
        }
    }
    drop(inbox_tx);
    // Every queue has its socket and its worker: capturing.
    ready.store(handles.len() == n, Ordering::SeqCst);

    // The caller's thread: stats every interval until stopped.
    let mut stats_log = LogFile::new(&cfg.out_dir, "stats", cfg.log_format, cfg.log_limits);
    let mut last: Vec<StatsSnapshot> = vec![StatsSnapshot::default(); n];
    let mut next_stats = Instant::now() + live.stats_interval;
    let mut result = Ok(());
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(d) = live.duration {
            if started.elapsed() >= d {
                break;
            }
        }
        if handles.iter().any(|h| h.is_finished()) {
            tracing::error!("a capture worker stopped early; stopping");
            break;
        }
        if Instant::now() >= next_stats {
            next_stats += live.stats_interval;
            if let Err(e) = write_stats(&mut stats_log, &plans, live, &stats, &mut last) {
                tracing::error!("writing stats.log: {e}");
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    worker_stop.store(true, Ordering::SeqCst);
    let mut engine = Summary::default();
    for h in handles {
        match h.join() {
            Ok(r) => {
                add_flow(&mut engine.flow, &r.flow);
                add_output(&mut engine.output, &r.output);
                for (k, v) in &r.decode_errors {
                    *engine.decode_errors.entry(k).or_default() += v;
                }
                engine.packets += r.queue.capture.packets;
                engine.bytes += r.queue.capture.bytes;
                engine.tcp_packets += r.tcp;
                engine.non_tcp_packets += r.non_tcp;
                engine.fragments += r.fragments;
                engine.fragments_reassembled += r.fragments_reassembled;
                engine.defrag_dropped += r.defrag_dropped;
                summary.queues.push(r.queue);
            }
            Err(_) => {
                tracing::error!("a capture worker panicked; its connections are lost");
                if result.is_ok() || matches!(result, Err(EngineError::Capture(_))) {
                    result = Err(EngineError::Panic("a capture worker"));
                }
            }
        }
    }
    // One last stats row, so stats.log adds up to the summary.
    if let Err(e) = write_stats(&mut stats_log, &plans, live, &stats, &mut last) {
        tracing::error!("writing stats.log: {e}");
    }
    if let Err(e) = stats_log.finish() {
        tracing::error!("writing stats.log: {e}");
    }
    summary.socket_bypass = socket_bypass.as_ref().map(|b| b.counters());
    drop(socket_bypass);
    for s in steering {
        summary
            .steering
            .push((s.ifname().to_string(), s.mode(), s.counters()));
        if let Err(e) = s.detach() {
            tracing::error!("detaching the XDP program: {e}");
        }
    }
    if let Some(m) = metrics {
        m.stop();
    }
    collector.finish(&mut engine, &mut result);
    engine.elapsed = started.elapsed();
    summary.engine = engine;
    (summary, result)
}

/// The XDP action for bypassed packets on `ifname`.
fn bypass_action(mode: LiveBypass, ifname: &str) -> BypassAction {
    match mode {
        LiveBypass::Drop => BypassAction::Drop,
        LiveBypass::Pass | LiveBypass::Off => BypassAction::Pass,
        LiveBypass::Auto if interface_has_addresses(ifname) => BypassAction::Pass,
        LiveBypass::Auto => BypassAction::Drop,
    }
}

/// What a worker's counters were at the last stats row.
#[derive(Clone, Copy, Default)]
struct StatsSnapshot {
    packets: u64,
    bytes: u64,
    kernel_drops: u64,
    ring_full: u64,
    handed_off: u64,
    handoff_received: u64,
    handoff_dropped: u64,
    decode_errors: u64,
    non_tcp: u64,
    flows_created: u64,
    events: u64,
    records: u64,
    bypassed_flows: u64,
    bypassed_packets: u64,
    bypassed_bytes: u64,
}

fn write_stats(
    log: &mut LogFile,
    plans: &[WorkerPlan],
    live: &LiveConfig,
    stats: &[Arc<SharedStats>],
    last: &mut [StatsSnapshot],
) -> std::io::Result<()> {
    let ts = mailtap_capture::now();
    let mut total = StatsSnapshot::default();
    let mut total_drops = 0;
    for (i, s) in stats.iter().enumerate() {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = StatsSnapshot {
            packets: l(&s.packets),
            bytes: l(&s.bytes),
            kernel_drops: l(&s.kernel_drops),
            ring_full: l(&s.ring_full),
            handed_off: l(&s.handed_off),
            handoff_received: l(&s.handoff_received),
            handoff_dropped: l(&s.handoff_dropped),
            decode_errors: l(&s.decode_errors),
            non_tcp: l(&s.non_tcp),
            flows_created: l(&s.flows_created),
            events: l(&s.events),
            records: l(&s.records),
            bypassed_flows: l(&s.bypassed_flows),
            bypassed_packets: l(&s.bypassed_packets),
            bypassed_bytes: l(&s.bypassed_bytes),
        };
        let p = last[i];
        let row = StatsRow {
            ts,
            interface: &plans[i].interface,
            queue: plans[i].queue,
            capture: live.capture.name(),
            pkts: now.packets - p.packets,
            bytes: now.bytes - p.bytes,
            kernel_drops: now.kernel_drops.saturating_sub(p.kernel_drops),
            ring_full: now.ring_full.saturating_sub(p.ring_full),
            handed_off: now.handed_off - p.handed_off,
            handoff_received: now.handoff_received - p.handoff_received,
            handoff_dropped: now.handoff_dropped - p.handoff_dropped,
            decode_errors: now.decode_errors - p.decode_errors,
            non_tcp: now.non_tcp - p.non_tcp,
            flows_created: now.flows_created - p.flows_created,
            active_flows: l(&s.flows_active),
            reassembly_bytes: l(&s.reassembly_bytes),
            events: now.events - p.events,
            records: now.records - p.records,
            bypassed_flows: now.bypassed_flows - p.bypassed_flows,
            bypassed_pkts: now.bypassed_packets - p.bypassed_packets,
            bypassed_bytes: now.bypassed_bytes - p.bypassed_bytes,
        };
        total_drops += row.kernel_drops + row.handoff_dropped;
        tracing::info!(
            interface = row.interface,
            queue = row.queue,
            packets = row.pkts,
            bytes = row.bytes,
            kernel_drops = row.kernel_drops,
            ring_full = row.ring_full,
            handed_off = row.handed_off,
            handoff_received = row.handoff_received,
            handoff_dropped = row.handoff_dropped,
            active_flows = row.active_flows,
            reassembly_bytes = row.reassembly_bytes,
            events = row.events,
            "queue stats"
        );
        total.packets += row.pkts;
        total.bytes += row.bytes;
        total.handed_off += row.handed_off;
        log.write(&row)?;
        last[i] = now;
    }
    log.flush()?;
    let secs = live.stats_interval.as_secs_f64().max(1e-3);
    tracing::info!(
        packets = total.packets,
        mbit_per_s = format!("{:.1}", total.bytes as f64 * 8.0 / secs / 1e6),
        handed_off = total.handed_off,
        drops = total_drops,
        "capture stats"
    );
    Ok(())
}

/// One row of stats.log: one queue over one stats interval.
struct StatsRow<'a> {
    ts: Timestamp,
    interface: &'a str,
    queue: u32,
    capture: &'static str,
    pkts: u64,
    bytes: u64,
    kernel_drops: u64,
    ring_full: u64,
    handed_off: u64,
    handoff_received: u64,
    handoff_dropped: u64,
    decode_errors: u64,
    non_tcp: u64,
    flows_created: u64,
    active_flows: u64,
    reassembly_bytes: u64,
    events: u64,
    records: u64,
    bypassed_flows: u64,
    bypassed_pkts: u64,
    bypassed_bytes: u64,
}

static STATS_FIELDS: [FieldDef; 23] = [
    FieldDef {
        name: "ts",
        ty: "time",
    },
    FieldDef {
        name: "peer",
        ty: "string",
    },
    FieldDef {
        name: "interface",
        ty: "string",
    },
    FieldDef {
        name: "queue",
        ty: "count",
    },
    FieldDef {
        name: "capture",
        ty: "string",
    },
    FieldDef {
        name: "pkts_proc",
        ty: "count",
    },
    FieldDef {
        name: "bytes_recv",
        ty: "count",
    },
    FieldDef {
        name: "pkts_dropped",
        ty: "count",
    },
    FieldDef {
        name: "ring_full",
        ty: "count",
    },
    FieldDef {
        name: "handed_off",
        ty: "count",
    },
    FieldDef {
        name: "handoff_received",
        ty: "count",
    },
    FieldDef {
        name: "handoff_dropped",
        ty: "count",
    },
    FieldDef {
        name: "decode_errors",
        ty: "count",
    },
    FieldDef {
        name: "non_tcp",
        ty: "count",
    },
    FieldDef {
        name: "tcp_conns",
        ty: "count",
    },
    FieldDef {
        name: "active_tcp_conns",
        ty: "count",
    },
    FieldDef {
        name: "reassem_tcp_size",
        ty: "count",
    },
    FieldDef {
        name: "events_proc",
        ty: "count",
    },
    FieldDef {
        name: "records",
        ty: "count",
    },
    FieldDef {
        name: "pkts_link",
        ty: "count",
    },
    FieldDef {
        name: "bypassed_conns",
        ty: "count",
    },
    FieldDef {
        name: "bypassed_pkts",
        ty: "count",
    },
    FieldDef {
        name: "bypassed_bytes",
        ty: "count",
    },
];

impl ZeekRecord for StatsRow<'_> {
    fn path(&self) -> &'static str {
        "stats"
    }
    fn fields(&self) -> &'static [FieldDef] {
        &STATS_FIELDS
    }
    fn values(&self, out: &mut dyn FnMut(Value<'_>)) {
        out(Value::Time(self.ts));
        out(Value::Str(b"mailtap"));
        out(Value::Str(self.interface.as_bytes()));
        out(Value::Count(u64::from(self.queue)));
        out(Value::Str(self.capture.as_bytes()));
        out(Value::Count(self.pkts));
        out(Value::Count(self.bytes));
        out(Value::Count(self.kernel_drops));
        out(Value::Count(self.ring_full));
        out(Value::Count(self.handed_off));
        out(Value::Count(self.handoff_received));
        out(Value::Count(self.handoff_dropped));
        out(Value::Count(self.decode_errors));
        out(Value::Count(self.non_tcp));
        out(Value::Count(self.flows_created));
        out(Value::Count(self.active_flows));
        out(Value::Count(self.reassembly_bytes));
        out(Value::Count(self.events));
        out(Value::Count(self.records));
        // Packets the link delivered to us plus the ones the kernel
        // dropped for us: what Zeek calls pkts_link.
        out(Value::Count(self.pkts + self.kernel_drops));
        out(Value::Count(self.bypassed_flows));
        out(Value::Count(self.bypassed_pkts));
        out(Value::Count(self.bypassed_bytes));
    }
}

/// Counters a worker keeps in plain integers and publishes now and then.
#[derive(Default)]
struct Local {
    tcp: u64,
    non_tcp: u64,
    fragments: u64,
    decode_errors: u64,
    handed_off: u64,
    handoff_received: u64,
    handoff_dropped: u64,
    records_dropped: u64,
}

/// One worker: its queue's packets, its shard, its handoffs.
struct Worker {
    id: usize,
    n: usize,
    by_queue: bool,
    /// The run's secret shard-selection key.
    flow_hash_key: FlowHashKey,
    verify: bool,
    table: FlowTable<MailAnalyzers>,
    out: Output,
    defrag: Defragmenter,
    frag_buf: Vec<u8>,
    /// The handoff being filled for each other worker.
    outbox: Vec<Option<Handoff>>,
    to: Vec<Option<Sender<Handoff>>>,
    inbox: Receiver<Handoff>,
    /// This worker's free handoff buffers (they come back here).
    pool_rx: Receiver<Handoff>,
    pool_tx: Sender<Handoff>,
    allocated: usize,
    max_buffers: usize,
    buffer_bytes: usize,
    records: Sender<RecordBatch>,
    records_out: RecordOutbox,
    /// Records are sent once they hold this many bytes, even within a
    /// receive batch.
    batch_bytes: usize,
    warned_drop: bool,
    /// When the oldest record not yet sent to the collector was made.
    pending_since: Option<Instant>,
    /// Microseconds from a record's receive batch to its hand-over.
    emit_latency_us: Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
    stats: Arc<SharedStats>,
    local: Local,
    decode_errors: BTreeMap<&'static str, u64>,
    last_ts: Timestamp,
}

/// How often a worker publishes counters, advances flow timers and sends
/// records when traffic is slow.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How often the kernel's socket counters are read (a syscall).
const KERNEL_STATS: Duration = Duration::from_secs(1);
/// Records sent to the collector at once when traffic is fast.
const RECORD_BATCH: usize = 512;
/// How long a worker waits for packets before doing housekeeping.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);
/// How long a worker waits for a handoff buffer to come back before it
/// drops the packet (`handoff_dropped`): longer than an owner's poll.
const HANDOFF_WAIT: Duration = Duration::from_millis(30);

impl Worker {
    fn run(
        mut self,
        mut source: Source,
        batch: usize,
        stop: &AtomicBool,
        mut qs: QueueSummary,
    ) -> WorkerResult {
        let mut next_house = Instant::now();
        let mut next_kernel = Instant::now() + KERNEL_STATS;
        let mut failed = false;
        while !stop.load(Ordering::Relaxed) {
            let got = source.poll_batch(batch, POLL_TIMEOUT, |p| self.on_packet(p));
            if let Err(e) = got {
                tracing::error!(worker = self.id, "capture failed, worker stops: {e}");
                failed = true;
                break;
            }
            self.send_outboxes();
            self.drain_inbox();
            if self.pending_since.is_none() && !self.out.records.is_empty() {
                self.pending_since = Some(Instant::now());
            }
            if self.out.records.len() >= RECORD_BATCH || self.out.bytes >= self.batch_bytes {
                self.send_records();
            }
            let now = Instant::now();
            if now >= next_house {
                next_house = now + HOUSEKEEPING;
                let wall = mailtap_capture::now();
                self.last_ts = self.last_ts.max(wall);
                self.table.advance(self.last_ts, &mut self.out);
                self.defrag.expire(self.last_ts);
                self.send_records();
                if now >= next_kernel {
                    next_kernel = now + KERNEL_STATS;
                    qs.capture = source.counters();
                }
                self.publish(&qs.capture);
            }
        }
        // Shutdown: hand over what is pending, stop sending, then take
        // every handoff the others still send until they are all done.
        self.send_outboxes();
        self.to.clear();
        while let Ok(h) = self.inbox.recv() {
            self.take_handoff(h);
        }
        self.table.finish(&mut self.out);
        self.flush_records();
        qs.capture = source.counters();
        self.publish(&qs.capture);
        drop(source);
        if failed {
            tracing::warn!(worker = self.id, "worker ended after a capture error");
        }
        let dc = self.defrag.counters();
        qs.handed_off = self.local.handed_off;
        qs.handoff_received = self.local.handoff_received;
        qs.handoff_dropped = self.local.handoff_dropped;
        qs.records_dropped = self.local.records_dropped;
        qs.records_dropped_by_class = self.records_out.dropped_by_class;
        qs.email_bytes_dropped = self.records_out.email_bytes_dropped;
        qs.messages_marked_incomplete = self.records_out.messages_marked;
        qs.flows_created = self.table.flows_created();
        qs.events = self.out.counters.events;
        WorkerResult {
            queue: qs,
            flow: self.table.counters(),
            output: self.out.counters.clone(),
            decode_errors: self.decode_errors,
            tcp: self.local.tcp,
            non_tcp: self.local.non_tcp,
            fragments: self.local.fragments,
            fragments_reassembled: dc.reassembled,
            defrag_dropped: dc.timed_out
                + dc.evicted_table_full
                + dc.dropped_over_memory
                + dc.malformed,
        }
    }

    fn publish(&self, c: &QueueCounters) {
        let s = &self.stats;
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        st(&s.heartbeat_ms, crate::metrics::now_ms());
        st(&s.packets, c.packets);
        st(&s.bytes, c.bytes);
        st(&s.kernel_drops, c.kernel_drops);
        st(&s.ring_full, c.ring_full);
        st(&s.handed_off, self.local.handed_off);
        st(&s.handoff_received, self.local.handoff_received);
        st(&s.handoff_dropped, self.local.handoff_dropped);
        st(&s.decode_errors, self.local.decode_errors);
        st(&s.non_tcp, self.local.non_tcp);
        st(&s.flows_active, self.table.len() as u64);
        st(&s.flows_created, self.table.flows_created());
        st(&s.reassembly_bytes, self.table.reassembly_bytes() as u64);
        st(&s.events, self.out.counters.events);
        st(&s.records, self.out.counters.records);
        let f = self.table.counters();
        st(&s.bypassed_flows, f.bypassed_flows);
        st(&s.bypassed_packets, f.bypassed_packets);
        st(&s.bypassed_bytes, f.bypassed_bytes);
    }

    /// One packet off the ring, borrowed until the batch ends.
    #[inline]
    fn on_packet(&mut self, p: RxPacket<'_>) {
        self.last_ts = self.last_ts.max(p.ts);
        match decode(LinkType::Ethernet, p.data, false) {
            Ok(Decoded::Tcp(t)) => {
                self.local.tcp += 1;
                let owner = self.owner(&t);
                if owner == self.id {
                    if self.verify {
                        process_packet(
                            &mut self.table,
                            &mut self.out,
                            p.ts,
                            LinkType::Ethernet,
                            p.data,
                            true,
                        );
                    } else {
                        process_tcp(&mut self.table, &mut self.out, p.ts, &t, false);
                    }
                    if self.out.bytes >= self.batch_bytes {
                        // A flood of records within one receive batch.
                        self.send_records();
                    }
                } else {
                    self.hand_off(owner, p.ts, LinkType::Ethernet, p.data);
                }
            }
            Ok(Decoded::Fragment(f)) => {
                self.local.fragments += 1;
                let mut buf = std::mem::take(&mut self.frag_buf);
                if self.defrag.push(p.ts, &f, &mut buf) {
                    match decode(LinkType::Raw, &buf, false) {
                        Ok(Decoded::Tcp(t)) => {
                            let owner = self.owner(&t);
                            if owner == self.id {
                                process_packet(
                                    &mut self.table,
                                    &mut self.out,
                                    p.ts,
                                    LinkType::Raw,
                                    &buf,
                                    self.verify,
                                );
                            } else {
                                self.hand_off(owner, p.ts, LinkType::Raw, &buf);
                            }
                        }
                        _ => self.local.non_tcp += 1,
                    }
                }
                self.frag_buf = buf;
            }
            Ok(Decoded::Other) => self.local.non_tcp += 1,
            Err(e) => {
                self.local.decode_errors += 1;
                *self.decode_errors.entry(e.name()).or_default() += 1;
            }
        }
    }

    #[inline]
    fn owner(&self, t: &mailtap_wire::decode::TcpPacket<'_>) -> usize {
        if self.by_queue || self.n == 1 {
            self.id
        } else {
            (flow_hash_keyed(&self.flow_hash_key, t.src, t.src_port, t.dst, t.dst_port)
                % self.n as u64) as usize
        }
    }

    /// Copies a packet into the handoff batch for `owner`.
    fn hand_off(&mut self, owner: usize, ts: Timestamp, link: LinkType, data: &[u8]) {
        if self.to[owner].is_none() {
            self.local.handoff_dropped += 1;
            return;
        }
        let full = self.outbox[owner]
            .as_ref()
            .is_some_and(|h| h.data.len() + data.len() > h.data.capacity());
        if full {
            self.send_outbox(owner);
        }
        if self.outbox[owner].is_none() {
            match self.take_buffer() {
                Some(h) => self.outbox[owner] = Some(h),
                None => {
                    self.local.handoff_dropped += 1;
                    return;
                }
            }
        }
        let h = self.outbox[owner].as_mut().expect("outbox filled above");
        if h.data.len() + data.len() > h.data.capacity() {
            // Larger than a whole buffer (jumbo beyond the buffer size).
            self.local.handoff_dropped += 1;
            return;
        }
        let off = h.data.len() as u32;
        h.data.extend_from_slice(data);
        h.pkts.push(HandoffPacket {
            ts,
            link,
            off,
            len: data.len() as u32,
        });
        self.local.handed_off += 1;
    }

    /// A free handoff buffer: a returned one, or a new one while under the
    /// limit. When every buffer is in flight, waits up to [`HANDOFF_WAIT`]
    /// for an owner to return one (working through our own inbox
    /// meanwhile, so two workers waiting on each other both progress)
    /// rather than drop the packet: an owner returns buffers only after
    /// its capture poll, which may wait [`POLL_TIMEOUT`] on a quiet queue.
    fn take_buffer(&mut self) -> Option<Handoff> {
        if let Some(h) = self.free_buffer() {
            return Some(h);
        }
        let deadline = Instant::now() + HANDOFF_WAIT;
        loop {
            self.drain_inbox();
            match self.pool_rx.recv_timeout(Duration::from_micros(500)) {
                Ok(mut h) => {
                    h.data.clear();
                    h.pkts.clear();
                    return Some(h);
                }
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => {}
            }
        }
    }

    /// A returned buffer, or a new one while under the limit.
    fn free_buffer(&mut self) -> Option<Handoff> {
        if let Ok(mut h) = self.pool_rx.try_recv() {
            h.data.clear();
            h.pkts.clear();
            return Some(h);
        }
        if self.allocated < self.max_buffers {
            self.allocated += 1;
            return Some(Handoff {
                data: Vec::with_capacity(self.buffer_bytes),
                pkts: Vec::with_capacity(self.buffer_bytes / 64),
                home: self.pool_tx.clone(),
            });
        }
        None
    }

    fn send_outboxes(&mut self) {
        for owner in 0..self.n {
            if self.outbox[owner].is_some() {
                self.send_outbox(owner);
            }
        }
    }

    /// Sends one outbox. When the owner's inbox is full, works through our
    /// own inbox while waiting, so two workers sending to each other can
    /// never wait on each other.
    fn send_outbox(&mut self, owner: usize) {
        let Some(mut h) = self.outbox[owner].take() else {
            return;
        };
        loop {
            let Some(tx) = self.to[owner].as_ref() else {
                self.local.handoff_dropped += h.pkts.len() as u64;
                return;
            };
            match tx.try_send(h) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    h = back;
                    if !self.drain_inbox() {
                        thread::yield_now();
                    }
                }
                Err(TrySendError::Disconnected(back)) => {
                    // The owner's thread is gone (it panicked).
                    self.local.handoff_dropped += back.pkts.len() as u64;
                    self.to[owner] = None;
                    return;
                }
            }
        }
    }

    /// Processes every handoff waiting in our inbox; true if there was one.
    fn drain_inbox(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.inbox.try_recv() {
                Ok(h) => {
                    any = true;
                    self.take_handoff(h);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return any,
            }
        }
    }

    fn take_handoff(&mut self, h: Handoff) {
        for p in &h.pkts {
            let data = &h.data[p.off as usize..(p.off + p.len) as usize];
            self.last_ts = self.last_ts.max(p.ts);
            process_packet(
                &mut self.table,
                &mut self.out,
                p.ts,
                p.link,
                data,
                self.verify,
            );
            if self.out.bytes >= self.batch_bytes {
                self.send_records();
            }
        }
        self.local.handoff_received += h.pkts.len() as u64;
        let home = h.home.clone();
        // The sender may have finished already; then the buffer is freed.
        let _ = home.try_send(h);
        if self.out.records.len() >= RECORD_BATCH || self.out.bytes >= self.batch_bytes {
            self.send_records();
        }
    }

    fn send_records(&mut self) {
        if let Some(t) = self.pending_since.take() {
            let us = t.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
            if let Ok(mut h) = self.emit_latency_us.lock() {
                let _ = h.record(us);
            }
        }
        let bytes = self.out.bytes;
        let batch = self.out.take();
        if self.records_out.send(batch, bytes, &self.records) > 0 && !self.warned_drop {
            self.warned_drop = true;
            tracing::error!(
                worker = self.id,
                "the collector cannot keep up: dropping records, events first (counted in collector.records_dropped and collector.dropped.*)"
            );
        }
        self.local.records_dropped = self.records_out.dropped;
    }

    /// At shutdown every record waits for the collector: nothing accepted
    /// is dropped then.
    fn flush_records(&mut self) {
        let bytes = self.out.bytes;
        let batch = self.out.take();
        self.records_out.flush(batch, bytes, &self.records);
        self.local.records_dropped = self.records_out.dropped;
    }
}

/// Record classes in the order a full backlog sheds them (see
/// [`RecordOutbox`] and docs/outputs.md): the first class goes first.
pub(crate) const SHED_CLASSES: [&str; 6] = [
    "event",
    "weird",
    "files_ssl_x509",
    "email_data",
    "smtp_pop3_conn",
    "email_meta",
];

/// The class of `r` in [`SHED_CLASSES`].
fn shed_class(r: &Record) -> usize {
    match r {
        Record::Event(_) => 0,
        Record::Weird(_) => 1,
        Record::File(_) | Record::Ssl(_) | Record::X509(_) => 2,
        Record::EmailData(_) => 3,
        Record::Smtp(_) | Record::Pop3(_) | Record::Conn(_) => 4,
        Record::EmailMeta(_) => 5,
    }
}

/// A worker's way to the collector. It never waits on the collector
/// (unless told to block): batches the collector cannot take yet (its
/// channel is full, or the bytes in flight to it are at the
/// [`QueueBudget`]'s bound) wait in a bounded backlog (`max_backlog`
/// batches and `max_backlog_bytes`). When the backlog is over either
/// bound, records are shed from all of it, class by class in
/// [`SHED_CLASSES`] order (events first, message metadata last), until the
/// remaining records fit again; record order is kept. A message whose bytes (`EmailData`) are shed has its
/// `EmailMeta` marked `complete: false` (the sinks then count the missing
/// bytes). A worker that waited would stop reading its ring, and the
/// kernel would drop packets instead, which costs more and says less.
pub(crate) struct RecordOutbox {
    backlog: std::collections::VecDeque<RecordBatch>,
    max_backlog: usize,
    /// Approximate bytes of the backlog's records, and their bound.
    backlog_bytes: u64,
    max_backlog_bytes: u64,
    /// Coalesced batches stay within this many bytes.
    batch_bytes: u64,
    /// The bytes in flight to the collector.
    budget: Arc<QueueBudget>,
    block: bool,
    /// Records dropped so far.
    pub(crate) dropped: u64,
    /// Records dropped so far, by [`SHED_CLASSES`] class.
    pub(crate) dropped_by_class: [u64; SHED_CLASSES.len()],
    /// Message bytes shed so far.
    pub(crate) email_bytes_dropped: u64,
    /// Messages marked incomplete because their bytes were shed.
    pub(crate) messages_marked: u64,
    /// Messages that lost bytes here and whose metadata has not been
    /// marked yet (it is still to come from the shard).
    lost: std::collections::HashSet<(String, u32)>,
}

impl RecordOutbox {
    pub(crate) fn new(
        max_backlog: usize,
        block: bool,
        budget: Arc<QueueBudget>,
        max_backlog_bytes: u64,
        batch_bytes: usize,
    ) -> Self {
        RecordOutbox {
            backlog: std::collections::VecDeque::with_capacity(max_backlog.min(4096)),
            max_backlog: max_backlog.max(1),
            backlog_bytes: 0,
            max_backlog_bytes: max_backlog_bytes.max(1),
            batch_bytes: batch_bytes as u64,
            budget,
            block,
            dropped: 0,
            dropped_by_class: [0; SHED_CLASSES.len()],
            email_bytes_dropped: 0,
            messages_marked: 0,
            lost: std::collections::HashSet::new(),
        }
    }

    /// Marks the metadata of messages that lost bytes here.
    fn mark(&mut self, records: &mut [Record]) {
        if self.lost.is_empty() {
            return;
        }
        for r in records {
            if let Record::EmailMeta(m) = r {
                // Rare (only after a shed), so the key copy does not matter.
                if self.lost.remove(&(m.uid.clone(), m.n)) {
                    self.messages_marked += 1;
                    m.complete = false;
                }
            }
        }
    }

    fn queue(&mut self, mut batch: Vec<Record>, bytes: usize) {
        if !batch.is_empty() {
            self.mark(&mut batch);
            self.backlog_bytes += bytes as u64;
            self.backlog.push_back(RecordBatch::now(batch, bytes));
        }
    }

    fn over_bound(&self) -> bool {
        self.backlog.len() > self.max_backlog || self.backlog_bytes > self.max_backlog_bytes
    }

    /// Sends `b` within the byte budget (waiting for it only when
    /// `wait`); gives it back when it must wait in the backlog.
    fn try_deliver(
        &mut self,
        b: RecordBatch,
        to: &Sender<RecordBatch>,
        wait: bool,
    ) -> Option<RecordBatch> {
        let bytes = b.bytes;
        if self.budget.over(bytes) {
            if !wait {
                return Some(b);
            }
            self.budget.wait(bytes);
        }
        self.budget.add(bytes);
        let r = if wait {
            to.send(b).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            to.try_send(b)
        };
        match r {
            Ok(()) => None,
            Err(TrySendError::Full(b)) => {
                self.budget.undo(bytes);
                Some(b)
            }
            // The collector is gone (it panicked); the run reports it.
            Err(TrySendError::Disconnected(b)) => {
                self.budget.undo(bytes);
                self.lose(&b);
                None
            }
        }
    }

    /// Counts a whole batch that could not be delivered.
    fn lose(&mut self, b: &RecordBatch) {
        for r in &b.records {
            self.dropped += 1;
            self.dropped_by_class[shed_class(r)] += 1;
        }
    }

    /// Sheds records class by class until the backlog fits its bounds.
    fn shed(&mut self) {
        for class in 0..SHED_CLASSES.len() {
            if !self.over_bound() {
                return;
            }
            let mut backlog = std::mem::take(&mut self.backlog);
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut newly_lost = Vec::new();
            let lost = &mut self.lost;
            let mut freed = 0u64;
            for b in backlog.iter_mut() {
                let mut shed_bytes = 0u64;
                b.records.retain(|r| {
                    if shed_class(r) != class {
                        return true;
                    }
                    shed_bytes += r.approx_bytes() as u64;
                    match r {
                        Record::EmailData(c) => {
                            bytes += c.data.len() as u64;
                            newly_lost.push((c.uid.clone(), c.n));
                        }
                        Record::EmailMeta(m) => {
                            lost.remove(&(m.uid.clone(), m.n));
                        }
                        _ => {}
                    }
                    n += 1;
                    false
                });
                let shed_bytes = shed_bytes.min(b.bytes);
                b.bytes -= shed_bytes;
                freed += shed_bytes;
            }
            self.backlog_bytes -= freed.min(self.backlog_bytes);
            self.dropped += n;
            self.dropped_by_class[class] += n;
            self.email_bytes_dropped += bytes;
            if !newly_lost.is_empty() {
                self.lost.extend(newly_lost);
                // Metadata already waiting behind the lost bytes.
                for b in backlog.iter_mut() {
                    self.mark(&mut b.records);
                }
            }
            self.backlog = backlog;
            self.coalesce();
        }
    }

    /// Joins neighbouring batches while they fit in [`RECORD_BATCH`]
    /// records and the batch size in bytes (order kept; the older batch's
    /// send time stays).
    fn coalesce(&mut self) {
        let mut out: std::collections::VecDeque<RecordBatch> =
            std::collections::VecDeque::with_capacity(self.backlog.len());
        for b in self.backlog.drain(..) {
            if b.records.is_empty() {
                self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
                continue;
            }
            match out.back_mut() {
                Some(last)
                    if last.records.len() + b.records.len() <= RECORD_BATCH
                        && last.bytes + b.bytes <= self.batch_bytes =>
                {
                    last.records.extend(b.records);
                    last.bytes += b.bytes;
                }
                _ => out.push_back(b),
            }
        }
        self.backlog = out;
    }

    /// Queues `batch` (if not empty) and sends what the collector takes.
    /// Returns the records dropped by this call.
    /// `bytes`: the batch's approximate size ([`Output::bytes`]).
    pub(crate) fn send(
        &mut self,
        batch: Vec<Record>,
        bytes: usize,
        to: &Sender<RecordBatch>,
    ) -> u64 {
        let before = self.dropped;
        self.queue(batch, bytes);
        while let Some(b) = self.backlog.pop_front() {
            self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
            if let Some(b) = self.try_deliver(b, to, self.block) {
                self.backlog_bytes += b.bytes;
                self.backlog.push_front(b);
                break;
            }
        }
        if self.over_bound() {
            self.shed();
        }
        self.dropped - before
    }

    /// Sends everything, waiting as long as the collector needs.
    pub(crate) fn flush(&mut self, batch: Vec<Record>, bytes: usize, to: &Sender<RecordBatch>) {
        self.queue(batch, bytes);
        while let Some(b) = self.backlog.pop_front() {
            self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
            if let Some(b) = self.try_deliver(b, to, true) {
                // Only a full channel gives it back after waiting.
                self.backlog_bytes += b.bytes;
                self.backlog.push_front(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_core::record::WeirdRecord;

    /// An outbox whose byte bounds are out of reach (the tests of the
    /// byte bounds set their own).
    fn outbox(max_backlog: usize, block: bool) -> RecordOutbox {
        RecordOutbox::new(
            max_backlog,
            block,
            Arc::new(QueueBudget::new(u64::MAX / 4)),
            u64::MAX / 4,
            1 << 30,
        )
    }

    fn batch(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Weird(Box::new(WeirdRecord {
                    ts: Timestamp::from_secs_nanos(i as i64, 0),
                    uid: None,
                    id: None,
                    name: "test",
                    addl: None,
                    source: None,
                }))
            })
            .collect()
    }

    fn event(i: u32) -> Record {
        Record::Event(Box::new(mailtap_core::EventRecord {
            ts: Timestamp::from_secs_nanos(i64::from(i), 0),
            uid: "Cev".into(),
            id: mailtap_core::ConnId {
                orig_h: "192.0.2.1".parse().unwrap(),
                orig_p: 1,
                resp_h: "192.0.2.2".parse().unwrap(),
                resp_p: 25,
            },
            event: mailtap_core::Event::SmtpData {
                is_orig: true,
                data: Vec::new(),
            },
        }))
    }

    fn data(uid: &str, n: u32, len: usize) -> Record {
        Record::EmailData(Box::new(mailtap_core::mail::EmailChunk {
            uid: uid.into(),
            n,
            data: vec![b'x'; len],
        }))
    }

    fn meta(uid: &str, n: u32, size: u64) -> Record {
        Record::EmailMeta(Box::new(mailtap_core::mail::EmailMeta {
            uid: uid.into(),
            n,
            size,
            complete: true,
            ..Default::default()
        }))
    }

    #[test]
    fn outbox_keeps_a_bounded_backlog_then_sheds_by_class() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(2, false);
        assert_eq!(o.send(batch(3), 0, &tx), 0); // into the channel
        assert_eq!(o.send(batch(500), 0, &tx), 0); // backlog 1
        assert_eq!(o.send(batch(500), 0, &tx), 0); // backlog 2
                                                   // Small batches over the bound are joined first: nothing lost.
        assert_eq!(o.send(batch(6), 0, &tx), 0);
        // Over the bound: there are no events to shed, so the weird rows
        // (the only class there) go and the backlog is empty again.
        assert_eq!(o.send(batch(500), 0, &tx), 1506);
        assert_eq!(o.dropped_by_class[1], 1506);
        assert_eq!(rx.recv().unwrap().records.len(), 3);
        drop(rx);
        // Shutdown after the collector is gone counts what could not go.
        o.flush(batch(1), 0, &tx);
        assert_eq!(o.dropped, 1506 + 1);
    }

    #[test]
    fn outbox_sheds_events_first_and_marks_messages_that_lose_bytes() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, false);
        assert_eq!(o.send(batch(1), 0, &tx), 0); // the channel is full now
                                                 // Events and weirds with a message's first chunk.
        let mut b1: Vec<Record> = (0..300).map(event).collect();
        b1.push(data("Cm", 1, 100));
        b1.extend(batch(300));
        o.send(b1, 0, &tx);
        // Its second chunk, another message whole, its end.
        let mut b2: Vec<Record> = (300..600).map(event).collect();
        b2.extend([data("Cm", 1, 50), data("Ck", 1, 10), meta("Ck", 1, 10)]);
        let shed = o.send(b2, 0, &tx);
        // Events alone were enough: 600 gone, everything else kept.
        assert_eq!(shed, 600);
        assert_eq!(o.dropped_by_class[0], 600);
        assert_eq!(o.email_bytes_dropped, 0);
        // More pressure: the weirds go, then message bytes.
        for _ in 0..3 {
            o.send(batch(500), 0, &tx);
        }
        assert!(o.dropped_by_class[1] > 0);
        // A big batch of chunks and rows over the bound forces the message
        // bytes out; the message ends later.
        let mut b3: Vec<Record> = (0..600).map(|_| data("Cm", 1, 1)).collect();
        b3.extend((0..600).map(|_| data("Ck", 2, 1)));
        o.send(b3, 0, &tx);
        assert!(o.email_bytes_dropped > 0);
        o.send(vec![meta("Cm", 1, 750), meta("Ck", 2, 600)], 0, &tx);
        // Ck-1's chunk was still waiting too: its metadata (already
        // queued) is marked as well.
        assert_eq!(o.messages_marked, 3);
        let mut seen = Vec::new();
        let reader = std::thread::spawn(move || {
            rx.iter()
                .flat_map(|b| b.records)
                .filter_map(|r| match r {
                    Record::EmailMeta(m) => Some((m.uid.clone(), m.n, m.complete)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        o.flush(Vec::new(), 0, &tx);
        drop(tx);
        seen.extend(reader.join().unwrap());
        // Every message lost bytes and says so.
        assert_eq!(
            seen,
            vec![
                ("Ck".to_string(), 1, false),
                ("Cm".to_string(), 1, false),
                ("Ck".to_string(), 2, false)
            ]
        );
        assert_eq!(o.dropped_by_class[5], 0, "metadata is shed last");
    }

    #[test]
    fn outbox_flush_waits_and_loses_nothing() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, false);
        o.send(batch(2), 0, &tx);
        o.send(batch(3), 0, &tx);
        let reader =
            std::thread::spawn(move || rx.iter().map(|b| b.records.len()).collect::<Vec<_>>());
        o.flush(batch(4), 0, &tx);
        drop(tx);
        assert_eq!(reader.join().unwrap(), vec![2, 3, 4]);
        assert_eq!(o.dropped, 0);
    }

    #[test]
    fn outbox_bounds_its_backlog_and_the_queue_in_bytes() {
        // The budget takes one batch of 1000 bytes; the backlog 2500.
        let (tx, rx) = bounded::<RecordBatch>(64);
        let budget = Arc::new(QueueBudget::new(1000));
        let mut o = RecordOutbox::new(1000, false, budget.clone(), 2500, 1 << 20);
        assert_eq!(o.send(batch(3), 1000, &tx), 0);
        assert_eq!(budget.inflight(), 1000);
        // The channel has room, the budget has not: into the backlog.
        assert_eq!(o.send(batch(4), 1000, &tx), 0);
        assert_eq!(o.send(batch(5), 1000, &tx), 0);
        assert_eq!(rx.len(), 1);
        // Past 2500 bytes the backlog sheds, class by class.
        let shed = o.send(batch(6), 1000, &tx);
        assert!(shed > 0, "shed by bytes although far below 1000 batches");
        assert_eq!(o.dropped_by_class[1], shed, "weird rows (no events here)");
        // The collector writes the first batch: the next one goes.
        let b = rx.recv().unwrap();
        budget.release(b.bytes);
        assert_eq!(budget.inflight(), 0);
        assert_eq!(o.send(batch(1), 10, &tx), 0);
        assert_eq!(rx.len(), 1, "sent once the budget had room");
    }

    #[test]
    fn outbox_block_policy_waits_instead_of_dropping() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, true);
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            rx.iter().map(|b| b.records.len()).sum::<usize>()
        });
        for n in 1..=5 {
            assert_eq!(o.send(batch(n), 0, &tx), 0);
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 15);
        assert_eq!(o.dropped, 0);
    }
}
