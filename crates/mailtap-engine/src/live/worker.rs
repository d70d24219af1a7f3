//! One live worker: a reader and a shard in one thread, pinned to its
//! core. It takes a batch of packets from its queue, processes the ones
//! its shard owns straight from the kernel's memory, hands the others to
//! their owners ([`super::handoff`]), processes what other workers hand
//! it, and sends its records to the collector through its
//! [`RecordOutbox`]. Every [`HOUSEKEEPING`] it advances its flows' timers,
//! sends what records it has and publishes its counters.

use crate::bypass::KernelMaps;
use crate::collector::{Collector, RecordBatch};
use crate::config::EngineConfig;
use crate::factory::MailAnalyzers;
use crate::live::capture::{Source, WorkerPlan};
use crate::live::handoff::{inboxes, Handoff};
use crate::live::{LiveConfig, QueueSummary};
use crate::outbox::{RecordOutbox, RECORD_BATCH};
use crate::shard::{process_packet, process_tcp};
use crate::stats::SharedStats;
use crossbeam_channel::{bounded, Receiver, Sender};
use mailtap_capture::bypass::BypassMap;
use mailtap_capture::{QueueCounters, RxPacket};
use mailtap_core::analyzer::OutputCounters;
use mailtap_core::{Output, Timestamp};
use mailtap_flow::{FlowCounters, FlowTable, UidGenerator};
use mailtap_wire::decode::{decode, flow_hash_keyed, Decoded, FlowHashKey};
use mailtap_wire::defrag::Defragmenter;
use mailtap_wire::source::LinkType;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a worker hands back when it ends.
pub(super) struct WorkerResult {
    pub(super) queue: QueueSummary,
    pub(super) flow: FlowCounters,
    pub(super) output: OutputCounters,
    pub(super) decode_errors: BTreeMap<&'static str, u64>,
    pub(super) tcp: u64,
    pub(super) non_tcp: u64,
    pub(super) fragments: u64,
    pub(super) defrag_dropped: u64,
    pub(super) fragments_reassembled: u64,
}

/// Counters a worker keeps in plain integers and publishes now and then.
#[derive(Default)]
pub(super) struct Local {
    pub(super) tcp: u64,
    pub(super) non_tcp: u64,
    pub(super) fragments: u64,
    pub(super) decode_errors: u64,
    pub(super) handed_off: u64,
    pub(super) handoff_received: u64,
    pub(super) handoff_dropped: u64,
    pub(super) records_dropped: u64,
}

/// One worker: its queue's packets, its shard, its handoffs.
pub(super) struct Worker {
    pub(super) id: usize,
    pub(super) n: usize,
    pub(super) by_queue: bool,
    /// The run's secret shard-selection key.
    pub(super) flow_hash_key: FlowHashKey,
    pub(super) verify: bool,
    pub(super) table: FlowTable<MailAnalyzers>,
    pub(super) out: Output,
    pub(super) defrag: Defragmenter,
    pub(super) frag_buf: Vec<u8>,
    /// The handoff being filled for each other worker.
    pub(super) outbox: Vec<Option<Handoff>>,
    pub(super) to: Vec<Option<Sender<Handoff>>>,
    pub(super) inbox: Receiver<Handoff>,
    /// This worker's free handoff buffers (they come back here).
    pub(super) pool_rx: Receiver<Handoff>,
    pub(super) pool_tx: Sender<Handoff>,
    pub(super) allocated: usize,
    pub(super) max_buffers: usize,
    pub(super) buffer_bytes: usize,
    pub(super) records: Sender<RecordBatch>,
    pub(super) records_out: RecordOutbox,
    /// Records are sent once they hold this many bytes, even within a
    /// receive batch.
    pub(super) batch_bytes: usize,
    pub(super) warned_drop: bool,
    /// When the oldest record not yet sent to the collector was made.
    pub(super) pending_since: Option<Instant>,
    /// Seconds from a record's receive batch to its hand-over (every
    /// worker's, one histogram).
    pub(super) emit_latency: Histogram,
    pub(super) stats: Arc<SharedStats>,
    pub(super) local: Local,
    pub(super) decode_errors: BTreeMap<&'static str, u64>,
    pub(super) last_ts: Timestamp,
}

/// How often a worker publishes counters, advances flow timers and sends
/// records when traffic is slow.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// How often the kernel's socket counters are read (a syscall).
const KERNEL_STATS: Duration = Duration::from_secs(1);
/// How long a worker waits for packets before doing housekeeping.
pub(super) const POLL_TIMEOUT: Duration = Duration::from_millis(20);

impl Worker {
    pub(super) fn run(
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

    pub(super) fn send_records(&mut self) {
        if let Some(t) = self.pending_since.take() {
            self.emit_latency.observe(t.elapsed().as_secs_f64());
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

/// What the workers publish beside the packet path, one entry per worker:
/// their counters (stats.log, metrics) and the latency from a receive
/// batch to the hand-over of its records (metrics).
pub(super) struct Published {
    pub(super) stats: Vec<Arc<SharedStats>>,
    pub(super) emit_latency: Histogram,
}

impl Published {
    pub(super) fn new(n: usize) -> Self {
        Published {
            stats: (0..n).map(|_| Arc::new(SharedStats::default())).collect(),
            emit_latency: crate::metrics::latency_histogram(),
        }
    }
}

/// The running workers.
pub(super) struct Workers {
    pub(super) handles: Vec<JoinHandle<WorkerResult>>,
    /// Set to end the workers' loops.
    pub(super) stop: Arc<AtomicBool>,
}

/// Starts one worker thread per source (`sources[i]` read by worker i on
/// `plans[i].core`), each with its own shard, handoff inbox and buffer
/// pool. When a thread cannot be spawned, the ones already running are
/// told to stop and fewer handles come back.
pub(super) fn spawn(
    cfg: &EngineConfig,
    live: &LiveConfig,
    plans: &[WorkerPlan],
    sources: Vec<Source>,
    collector: &Collector,
    published: &Published,
    bypass_maps: &[BypassMap],
) -> Workers {
    let n = plans.len();
    let by_queue = live.receiver_owns();
    let (inbox_tx, inbox_rx) = inboxes(n, live.handoff_buffers);
    let shard_cfg = cfg.shard_flow_config(n);
    let uids = UidGenerator::new(&cfg.uid_salt);
    let worker_stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(n);
    for (i, (source, rx)) in sources.into_iter().zip(inbox_rx).enumerate() {
        let (mut table, out) = cfg.new_shard(&shard_cfg, &uids);
        if let Some(k) = KernelMaps::new(bypass_maps.to_vec()) {
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
            emit_latency: published.emit_latency.clone(),
            stats: published.stats[i].clone(),
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
    Workers {
        handles,
        stop: worker_stop,
    }
}
