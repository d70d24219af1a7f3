//! Reading capture files through the shard pipeline.

use crate::budget::QueueBudget;
use crate::collector::{Collector, RecordBatch, FINAL};
use crate::config::EngineConfig;
use crate::factory::MailAnalyzers;
use crate::metrics::{Metrics, MetricsServer};
use crate::outbox::RecordOutbox;
use crate::shard::process_packet;
use crate::stats::SharedStats;
use crate::summary::{add_flow, add_output, EngineError, Summary};
use crossbeam_channel::{bounded, Receiver, Sender};
use mailtap_core::analyzer::OutputCounters;
use mailtap_core::{Output, Record, Timestamp};
use mailtap_flow::{FlowCounters, FlowTable, UidGenerator};
use mailtap_wire::decode::{decode, flow_hash_keyed, Decoded, FlowHashKey};
use mailtap_wire::defrag::Defragmenter;
use mailtap_wire::source::{Block, CaptureReader, LinkType};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// Reader progress, reported once per block.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub file_index: usize,
    pub file_bytes_read: u64,
    pub file_size: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
    /// Connections seen so far (updated by the shards once per batch).
    pub flows: u64,
}

/// A block that goes back to the reader's pool when the last shard is done
/// with it.
struct PooledBlock {
    block: Option<Block>,
    home: Sender<Block>,
}

impl Drop for PooledBlock {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            let _ = self.home.send(b);
        }
    }
}

impl PooledBlock {
    fn get(&self) -> &Block {
        self.block.as_ref().expect("block present until drop")
    }
}

/// The packets of one block that belong to one shard.
struct ShardBatch {
    block: Arc<PooledBlock>,
    /// Indices into the block; values with the top bit set index `extra`.
    slots: Vec<u32>,
    /// Reassembled fragments (rare): time and raw IP packet.
    extra: Vec<(Timestamp, Vec<u8>)>,
    /// Packet time at the end of the block, so idle shards still expire.
    now: Timestamp,
    /// The block's number in the run (for the collector's stable order).
    seq: u64,
}

const EXTRA_BIT: u32 = 1 << 31;

struct ShardResult {
    flow: FlowCounters,
    output: OutputCounters,
    /// What the test-only overflow mode dropped.
    overflow: Option<RecordOutbox>,
}

/// Test-only hooks (environment variables, documented in
/// docs/operations.md as not for production): which thread panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TestPanic {
    Reader,
    Shard,
    Collector,
}

/// `MAILTAP_TEST_PANIC=reader|shard|collector` (tests only): that thread
/// panics after its second block or batch.
pub(crate) fn test_panic() -> Option<TestPanic> {
    match std::env::var("MAILTAP_TEST_PANIC").ok()?.as_str() {
        "reader" => Some(TestPanic::Reader),
        "shard" => Some(TestPanic::Shard),
        "collector" => Some(TestPanic::Collector),
        _ => None,
    }
}

/// `MAILTAP_TEST_READ_OVERFLOW=N` (tests only): shards hand records to
/// the collector the way live workers do under `live.collector_overflow =
/// "drop"` with a backlog of N batches, instead of waiting for it (and
/// without the stable order), so that a slow collector
/// (`MAILTAP_TEST_COLLECTOR_DELAY_MS`) overloads a read deterministically.
fn test_read_overflow() -> Option<usize> {
    std::env::var("MAILTAP_TEST_READ_OVERFLOW")
        .ok()?
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// How a shard hands its records over.
enum Send {
    /// One batch per block, in the stable order, waiting for the collector.
    Ordered(FinalGuard),
    /// Test only: the live overflow policy.
    Overflow(RecordOutbox),
}

/// Sends the shard's batches in the stable order, within the byte budget,
/// and its [`FINAL`] batch (empty) if the shard did not, e.g. because it
/// panicked, so the collector does not wait for it.
struct FinalGuard {
    shard: usize,
    tx: Sender<RecordBatch>,
    budget: Arc<QueueBudget>,
    sent: bool,
}

impl FinalGuard {
    /// Sends the records of block `seq` (`bytes`: their approximate size;
    /// `part`: more of the block follow), waiting while the byte budget is
    /// spent. False when the collector is gone.
    fn send(&mut self, seq: u64, records: Vec<Record>, bytes: usize, part: bool) -> bool {
        if seq == FINAL && !part {
            self.sent = true;
        }
        let b = RecordBatch::ordered(self.shard, seq, records, bytes, part);
        let bytes = b.bytes;
        self.budget.wait_ordered(bytes, seq);
        self.budget.add(bytes);
        match self.tx.send(b) {
            Ok(()) => true,
            Err(_) => {
                self.budget.undo(bytes);
                false
            }
        }
    }
}

impl Drop for FinalGuard {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.tx.send(RecordBatch::ordered(
                self.shard,
                FINAL,
                Vec::new(),
                0,
                false,
            ));
        }
    }
}

/// Reads `inputs` in order as one stream and writes the logs. Stops early,
/// cleanly, when `stop` is set. Returns the summary and, if a file could
/// not be read to the end, the error (the logs of everything before it are
/// complete).
pub fn run_offline(
    cfg: &EngineConfig,
    inputs: &[PathBuf],
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> (Summary, Result<(), EngineError>) {
    let started = Instant::now();
    let workers = cfg.workers.max(1);
    let mut summary = Summary::default();

    // The test-only overflow mode overloads a one-batch channel.
    let capacity = if test_read_overflow().is_some() {
        1
    } else {
        workers * 16
    };
    let collector = match Collector::start(
        cfg,
        capacity,
        workers,
        test_panic() == Some(TestPanic::Collector),
    ) {
        Ok(c) => c,
        Err(e) => return (summary, Err(e)),
    };
    let rec_tx = collector.tx.clone();

    let shard_cfg = cfg.shard_flow_config(workers);
    let uids = UidGenerator::new(&cfg.uid_salt);
    let flows_seen = Arc::new(AtomicU64::new(0));
    let stats: Vec<Arc<SharedStats>> = (0..workers)
        .map(|_| Arc::new(SharedStats::default()))
        .collect();
    let emit_latency = crate::metrics::latency_histogram();
    let metrics = match &cfg.metrics_listen {
        Some(addr) => {
            let m = Arc::new(Metrics {
                started,
                capture: "file",
                queues: stats
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ("file".to_string(), i as u32, s.clone()))
                    .collect(),
                emit_latency: emit_latency.clone(),
                collector: collector.stats.clone(),
                // Reading files: ready from the start.
                ready: Arc::new(AtomicBool::new(true)),
            });
            match MetricsServer::start(addr, m) {
                Ok(s) => Some(s),
                Err(e) => {
                    drop(rec_tx);
                    collector.finish(&mut summary, &mut Ok(()));
                    return (summary, Err(e));
                }
            }
        }
        None => None,
    };
    let test_overflow = test_read_overflow();
    let test_panic = test_panic();
    let batch_bytes = cfg.record_batch_bytes();
    let mut shard_tx = Vec::with_capacity(workers);
    let mut shards = Vec::with_capacity(workers);
    for (i, st) in stats.iter().enumerate() {
        let (tx, rx) = bounded::<ShardBatch>(cfg.blocks_per_worker.max(1) * 2);
        shard_tx.push(tx);
        let (table, out) = cfg.new_shard(&shard_cfg, &uids);
        let rec_tx = rec_tx.clone();
        let verify = cfg.verify_checksums;
        let flows_seen = flows_seen.clone();
        let st = ShardMetrics {
            stats: st.clone(),
            emit_latency: emit_latency.clone(),
        };
        let send = match test_overflow {
            Some(n) => Send::Overflow(RecordOutbox::new(
                n,
                false,
                collector.budget.clone(),
                cfg.collector_queue_bytes / workers as u64,
                batch_bytes,
            )),
            None => Send::Ordered(FinalGuard {
                shard: i,
                tx: rec_tx.clone(),
                budget: collector.budget.clone(),
                sent: false,
            }),
        };
        shards.push(
            thread::Builder::new()
                .name(format!("mailtap-shard-{i}"))
                .spawn(move || {
                    shard(
                        table,
                        out,
                        rx,
                        rec_tx,
                        send,
                        batch_bytes,
                        verify,
                        &flows_seen,
                        &st,
                        test_panic == Some(TestPanic::Shard) && i == 0,
                    )
                })
                .expect("spawn shard thread"),
        );
    }
    drop(rec_tx);

    let pool_size = workers * cfg.blocks_per_worker.max(1) + 1;
    let (pool_tx, pool_rx) = bounded::<Block>(pool_size);
    for _ in 0..pool_size {
        let _ = pool_tx.send(Block::with_capacity(cfg.block_bytes));
    }
    let mut defrag = Defragmenter::new(cfg.defrag);
    let mut result = Ok(());
    let mut prog = Progress::default();
    let mut frag_buf = Vec::new();

    let mut seq = 0u64;
    // A panic in the reader (this thread) must not lose what the shards
    // hold: it ends the reading, and the run shuts down as after an error.
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        'files: for (fi, path) in inputs.iter().enumerate() {
            let mut reader = match CaptureReader::open(path) {
                Ok(r) => r,
                Err(e) => {
                    result = Err(EngineError::Source(e));
                    break;
                }
            };
            prog.file_index = fi;
            prog.file_size = reader.file_size();
            tracing::info!(file = %path.display(), size = ?reader.file_size(), "reading capture");
            loop {
                if stop.load(Ordering::Relaxed) {
                    summary.interrupted = true;
                    break 'files;
                }
                let Ok(mut block) = pool_rx.recv() else {
                    break 'files;
                };
                block.clear();
                let filled = reader.fill(&mut block);
                prog.file_bytes_read = reader.bytes_read();
                let more = match filled {
                    Ok(m) => m,
                    Err(e) => {
                        result = Err(EngineError::Source(e));
                        false
                    }
                };
                dispatch(
                    &cfg.flow_hash_key,
                    block,
                    seq,
                    &pool_tx,
                    &shard_tx,
                    &mut defrag,
                    &mut frag_buf,
                    &mut summary,
                );
                seq += 1;
                if test_panic == Some(TestPanic::Reader) && seq == 2 {
                    panic!("test-only panic in the reader (MAILTAP_TEST_PANIC=reader)");
                }
                prog.packets = summary.packets;
                prog.bytes = summary.bytes;
                prog.flows = flows_seen.load(Ordering::Relaxed);
                progress(&prog);
                if result.is_err() {
                    break 'files;
                }
                if !more {
                    break;
                }
            }
        }
    }));
    if read.is_err() {
        result = Err(EngineError::Panic("the reader"));
    }
    tracing::info!(
        packets = summary.packets,
        bytes = summary.bytes,
        "reader done; draining shards"
    );
    let dc = defrag.counters();
    summary.fragments_reassembled = dc.reassembled;
    summary.defrag_dropped =
        dc.timed_out + dc.evicted_table_full + dc.dropped_over_memory + dc.malformed;

    drop(shard_tx);
    for h in shards {
        match h.join() {
            Ok(r) => {
                add_flow(&mut summary.flow, &r.flow);
                add_output(&mut summary.output, &r.output);
                if let Some(o) = r.overflow {
                    summary.records_dropped += o.dropped;
                    for (a, b) in summary
                        .records_dropped_by_class
                        .iter_mut()
                        .zip(o.dropped_by_class)
                    {
                        *a += b;
                    }
                    summary.email_bytes_dropped += o.email_bytes_dropped;
                    summary.messages_marked_incomplete += o.messages_marked;
                }
            }
            Err(_) => {
                tracing::error!("a shard thread panicked; its connections are lost");
                if result.is_ok() {
                    result = Err(EngineError::Panic("a shard"));
                }
            }
        }
    }
    if let Some(m) = metrics {
        m.stop();
    }
    collector.finish(&mut summary, &mut result);
    summary.elapsed = started.elapsed();
    tracing::debug!(?summary, "run finished");
    (summary, result)
}

/// Splits one block's packets among the shards by symmetric flow hash,
/// keyed by the run's secret `key`.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    key: &FlowHashKey,
    block: Block,
    seq: u64,
    pool: &Sender<Block>,
    shards: &[Sender<ShardBatch>],
    defrag: &mut Defragmenter,
    frag_buf: &mut Vec<u8>,
    summary: &mut Summary,
) {
    let n = shards.len();
    let mut slots: Vec<Vec<u32>> = (0..n)
        .map(|_| Vec::with_capacity(block.packets.len() / n + 16))
        .collect();
    let mut extra: Vec<Vec<(Timestamp, Vec<u8>)>> = (0..n).map(|_| Vec::new()).collect();
    let mut now = Timestamp::ZERO;
    for (i, p) in block.packets.iter().enumerate() {
        summary.packets += 1;
        summary.bytes += u64::from(p.len);
        now = now.max(p.ts);
        let data = block.packet(i);
        match decode(p.link, data, false) {
            Ok(Decoded::Tcp(t)) => {
                summary.tcp_packets += 1;
                let s = (flow_hash_keyed(key, t.src, t.src_port, t.dst, t.dst_port) % n as u64)
                    as usize;
                slots[s].push(i as u32);
            }
            Ok(Decoded::Fragment(f)) => {
                summary.fragments += 1;
                if defrag.push(p.ts, &f, frag_buf) {
                    if let Ok(Decoded::Tcp(t)) = decode(LinkType::Raw, frag_buf, false) {
                        let s = (flow_hash_keyed(key, t.src, t.src_port, t.dst, t.dst_port)
                            % n as u64) as usize;
                        slots[s].push(EXTRA_BIT | extra[s].len() as u32);
                        extra[s].push((p.ts, frag_buf.clone()));
                    } else {
                        summary.non_tcp_packets += 1;
                    }
                }
            }
            Ok(Decoded::Other) => summary.non_tcp_packets += 1,
            Err(e) => *summary.decode_errors.entry(e.name()).or_default() += 1,
        }
    }
    defrag.expire(now);
    let shared = Arc::new(PooledBlock {
        block: Some(block),
        home: pool.clone(),
    });
    for (s, tx) in shards.iter().enumerate() {
        let batch = ShardBatch {
            block: shared.clone(),
            slots: std::mem::take(&mut slots[s]),
            extra: std::mem::take(&mut extra[s]),
            now,
            seq,
        };
        // A shard only disconnects if it panicked; its packets are lost
        // then, which the join reports.
        let _ = tx.send(batch);
    }
}

/// What a shard publishes for `--metrics-listen`.
struct ShardMetrics {
    stats: Arc<SharedStats>,
    /// Seconds from taking a block to handing its records over (every
    /// shard's, one histogram).
    emit_latency: prometheus_client::metrics::histogram::Histogram,
}

/// One shard worker: owns its flow table and analyzers.
#[allow(clippy::too_many_arguments)]
fn shard(
    mut table: FlowTable<MailAnalyzers>,
    mut out: Output,
    rx: Receiver<ShardBatch>,
    records: Sender<RecordBatch>,
    mut send: Send,
    batch_bytes: usize,
    verify: bool,
    flows_seen: &AtomicU64,
    metrics: &ShardMetrics,
    test_panic: bool,
) -> ShardResult {
    let stats = &*metrics.stats;
    let mut flows_reported = 0u64;
    let mut blocks = 0u64;
    for batch in rx {
        let started = Instant::now();
        let block = batch.block.get();
        let r = Ordering::Relaxed;
        stats.packets.fetch_add(batch.slots.len() as u64, r);
        for &slot in &batch.slots {
            let (ts, link, data) = if slot & EXTRA_BIT != 0 {
                let (ts, ref d) = batch.extra[(slot & !EXTRA_BIT) as usize];
                (ts, LinkType::Raw, d.as_slice())
            } else {
                let p = &block.packets[slot as usize];
                (p.ts, p.link, block.packet(slot as usize))
            };
            process_packet(&mut table, &mut out, ts, link, data, verify);
            if out.bytes >= batch_bytes {
                // Records pile up (a flood of events): hand them over now
                // rather than at the end of the block.
                let bytes = out.bytes;
                match &mut send {
                    Send::Ordered(g) => {
                        if !g.send(batch.seq, out.take(), bytes, true) {
                            break;
                        }
                    }
                    Send::Overflow(o) => {
                        o.send(out.take(), bytes, &records);
                    }
                }
            }
        }
        table.advance(batch.now, &mut out);
        let seq = batch.seq;
        drop(batch);
        blocks += 1;
        if test_panic && blocks == 2 {
            panic!("test-only panic in a shard (MAILTAP_TEST_PANIC=shard)");
        }
        let created = table.flows_created();
        flows_seen.fetch_add(created - flows_reported, Ordering::Relaxed);
        flows_reported = created;
        stats.flows_created.store(created, r);
        stats.flows_active.store(table.len() as u64, r);
        stats
            .reassembly_bytes
            .store(table.reassembly_bytes() as u64, r);
        stats.events.store(out.counters.events, r);
        stats.records.store(out.counters.records, r);
        if !out.records.is_empty() {
            // From the shard taking the block to its records' hand-over.
            metrics
                .emit_latency
                .observe(started.elapsed().as_secs_f64());
        }
        let alive = match &mut send {
            // Every block, even without records: the collector writes a
            // block once every shard has sent it.
            Send::Ordered(g) => {
                let bytes = out.bytes;
                let recs = if out.records.is_empty() {
                    Vec::new()
                } else {
                    out.take()
                };
                g.send(seq, recs, bytes, false)
            }
            Send::Overflow(o) => {
                if !out.records.is_empty() {
                    let bytes = out.bytes;
                    o.send(out.take(), bytes, &records);
                }
                true
            }
        };
        if !alive {
            break;
        }
    }
    table.finish(&mut out);
    let overflow = match send {
        Send::Ordered(mut g) => {
            let bytes = out.bytes;
            g.send(FINAL, out.take(), bytes, false);
            None
        }
        Send::Overflow(mut o) => {
            let bytes = out.bytes;
            o.flush(out.take(), bytes, &records);
            Some(o)
        }
    };
    ShardResult {
        flow: table.counters(),
        output: out.counters.clone(),
        overflow,
    }
}
