//! Reading capture files through the shard pipeline.

use crate::factory::MailAnalyzers;
use crossbeam_channel::{bounded, Receiver, Sender};
use mailtap_core::analyzer::OutputCounters;
use mailtap_core::{Output, Record, Timestamp};
use mailtap_extract::{
    AceConfig, AceCounters, AceSink, ExtractConfig, ExtractCounters, ExtractSink,
};
use mailtap_flow::{FlowConfig, FlowCounters, FlowTable, LocalNets, Segment, UidGenerator};
use mailtap_logs::{LogFormat, LogLimits, LogSet};
use mailtap_wire::decode::{decode, flow_hash, Decoded};
use mailtap_wire::defrag::{DefragConfig, Defragmenter};
use mailtap_wire::source::{Block, CaptureReader, LinkType, SourceError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Everything `mailtap read` needs, already validated.
#[derive(Clone)]
pub struct EngineConfig {
    /// Shard worker threads (at least 1).
    pub workers: usize,
    /// Flow limits for the whole process; divided among shards.
    pub flow: FlowConfig,
    pub analyzers: MailAnalyzers,
    pub local: LocalNets,
    pub uid_salt: String,
    pub verify_checksums: bool,
    /// Bytes of capture data per block handed to the shards.
    pub block_bytes: usize,
    /// Blocks in flight per worker (bounds memory; the reader waits when
    /// all are in use, which is the offline back-pressure).
    pub blocks_per_worker: usize,
    pub defrag: DefragConfig,
    pub out_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_limits: LogLimits,
    pub events: Option<PathBuf>,
    /// `--extract-dir`: every message as a `.eml`/`.json` pair.
    pub extract: Option<ExtractConfig>,
    /// `--ace-dir`: ACE session transcripts.
    pub ace: Option<AceConfig>,
}

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

/// What a run did; printed as the one-line summary and in stats.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_packets: u64,
    pub non_tcp_packets: u64,
    pub fragments: u64,
    pub fragments_reassembled: u64,
    pub defrag_dropped: u64,
    /// Undecodable packets by cause.
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub flow: FlowCounters,
    pub output: OutputCounters,
    /// Rows written per log path.
    pub log_rows: BTreeMap<String, u64>,
    /// The extraction sink's counters, when `--extract-dir` was given.
    pub extract: Option<ExtractCounters>,
    /// The ACE sink's counters, when `--ace-dir` was given.
    pub ace: Option<AceCounters>,
    /// Sinks that stopped on an I/O error (name, error); the run goes on
    /// without them.
    pub sink_errors: Vec<(&'static str, String)>,
    pub elapsed: Duration,
}

impl Summary {
    /// Everything that was dropped or lost, by cause.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let mut d: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in &self.decode_errors {
            d.insert(format!("decode.{k}"), *v);
        }
        let f = &self.flow;
        for (k, v) in [
            ("defrag.dropped", self.defrag_dropped),
            ("flow.evicted", f.flows_evicted),
            ("reassembly.forced_gaps", f.forced_gaps),
            ("tcp.bad_checksum", f.bad_checksums),
        ] {
            if v > 0 {
                d.insert(k.to_string(), v);
            }
        }
        d
    }
}

/// Errors that end a run early (after everything read so far is written).
#[derive(Debug)]
pub enum EngineError {
    Source(SourceError),
    Logs(std::io::Error),
    /// An output directory could not be used (the message names it).
    Sink(std::io::Error),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Source(e) => write!(f, "{e}"),
            EngineError::Logs(e) => write!(f, "writing logs: {e}"),
            EngineError::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EngineError {}

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
}

const EXTRA_BIT: u32 = 1 << 31;

struct ShardResult {
    flow: FlowCounters,
    output: OutputCounters,
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

    let logs = match LogSet::new(
        &cfg.out_dir,
        cfg.log_format,
        cfg.log_limits,
        cfg.events.as_deref(),
    ) {
        Ok(l) => l,
        Err(e) => return (summary, Err(EngineError::Logs(e))),
    };
    let extract = match cfg.extract.as_ref().map(ExtractSink::new).transpose() {
        Ok(s) => s,
        Err(e) => return (summary, Err(EngineError::Sink(e))),
    };
    let ace = match cfg.ace.as_ref().map(AceSink::new).transpose() {
        Ok(s) => s,
        Err(e) => return (summary, Err(EngineError::Sink(e))),
    };
    let sinks = Sinks {
        logs,
        extract: extract.map(Slot::new),
        ace: ace.map(Slot::new),
    };
    let (rec_tx, rec_rx) = bounded::<Vec<Record>>(workers * 16);
    let collector = thread::Builder::new()
        .name("mailtap-collector".into())
        .spawn(move || collect(sinks, rec_rx))
        .expect("spawn collector thread");

    let mut shard_cfg = cfg.flow.clone();
    shard_cfg.max_flows = (cfg.flow.max_flows / workers).max(1);
    shard_cfg.reassembly_memory = (cfg.flow.reassembly_memory / workers).max(1);
    let uids = UidGenerator::new(&cfg.uid_salt);
    let flows_seen = Arc::new(AtomicU64::new(0));
    let mut shard_tx = Vec::with_capacity(workers);
    let mut shards = Vec::with_capacity(workers);
    for i in 0..workers {
        let (tx, rx) = bounded::<ShardBatch>(cfg.blocks_per_worker.max(1) * 2);
        shard_tx.push(tx);
        let table = FlowTable::new(
            shard_cfg.clone(),
            cfg.analyzers.clone(),
            uids.clone(),
            cfg.local.clone(),
        );
        // Events are built when someone reads them: the event stream or
        // the ACE transcripts.
        let mut out = Output::new(cfg.events.is_some() || cfg.ace.is_some());
        out.extract_enabled = cfg.extract.is_some();
        let rec_tx = rec_tx.clone();
        let verify = cfg.verify_checksums;
        let flows_seen = flows_seen.clone();
        shards.push(
            thread::Builder::new()
                .name(format!("mailtap-shard-{i}"))
                .spawn(move || shard(table, out, rx, rec_tx, verify, &flows_seen))
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
                block,
                &pool_tx,
                &shard_tx,
                &mut defrag,
                &mut frag_buf,
                &mut summary,
            );
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
                let o = &mut summary.output;
                o.records += r.output.records;
                o.events += r.output.events;
                o.weirds += r.output.weirds;
                o.weirds_suppressed += r.output.weirds_suppressed;
            }
            Err(_) => tracing::error!("a shard thread panicked; its connections are lost"),
        }
    }
    match collector.join() {
        Ok(c) => {
            summary.extract = c.extract;
            summary.ace = c.ace;
            summary.sink_errors = c.sink_errors;
            match c.logs {
                Ok(rows) => summary.log_rows = rows,
                Err(e) => {
                    if result.is_ok() {
                        result = Err(EngineError::Logs(e));
                    }
                }
            }
        }
        Err(_) => tracing::error!("the collector thread panicked"),
    }
    summary.elapsed = started.elapsed();
    tracing::debug!(?summary, "run finished");
    (summary, result)
}

/// Splits one block's packets among the shards by symmetric flow hash.
fn dispatch(
    block: Block,
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
                let s = (flow_hash(t.src, t.src_port, t.dst, t.dst_port) % n as u64) as usize;
                slots[s].push(i as u32);
            }
            Ok(Decoded::Fragment(f)) => {
                summary.fragments += 1;
                if defrag.push(p.ts, &f, frag_buf) {
                    if let Ok(Decoded::Tcp(t)) = decode(LinkType::Raw, frag_buf, false) {
                        let s =
                            (flow_hash(t.src, t.src_port, t.dst, t.dst_port) % n as u64) as usize;
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
        };
        // A shard only disconnects if it panicked; its packets are lost
        // then, which the join reports.
        let _ = tx.send(batch);
    }
}

/// One shard worker: owns its flow table and analyzers.
fn shard(
    mut table: FlowTable<MailAnalyzers>,
    mut out: Output,
    rx: Receiver<ShardBatch>,
    records: Sender<Vec<Record>>,
    verify: bool,
    flows_seen: &AtomicU64,
) -> ShardResult {
    let mut flows_reported = 0u64;
    for batch in rx {
        let block = batch.block.get();
        for &slot in &batch.slots {
            let (ts, link, data) = if slot & EXTRA_BIT != 0 {
                let (ts, ref d) = batch.extra[(slot & !EXTRA_BIT) as usize];
                (ts, LinkType::Raw, d.as_slice())
            } else {
                let p = &block.packets[slot as usize];
                (p.ts, p.link, block.packet(slot as usize))
            };
            let (t, bad) = match decode(link, data, verify) {
                Ok(Decoded::Tcp(t)) => {
                    let bad = t.checksum_ok == Some(false);
                    (t, bad)
                }
                // A bad checksum found by verification, or (impossible
                // here) a packet the reader decoded differently.
                _ => match decode(link, data, false) {
                    Ok(Decoded::Tcp(t)) => (t, true),
                    _ => continue,
                },
            };
            let seg = Segment {
                ts,
                src: t.src,
                dst: t.dst,
                src_port: t.src_port,
                dst_port: t.dst_port,
                seq: t.seq,
                ack: t.ack,
                flags: t.flags.bits(),
                window: t.window,
                ip_len: t.ip_len,
                payload: t.payload,
                bad_checksum: bad,
            };
            table.process(&seg, &mut out);
        }
        table.advance(batch.now, &mut out);
        drop(batch);
        let created = table.flows_created();
        flows_seen.fetch_add(created - flows_reported, Ordering::Relaxed);
        flows_reported = created;
        if !out.records.is_empty() && records.send(out.take()).is_err() {
            break;
        }
    }
    table.finish(&mut out);
    if !out.records.is_empty() {
        let _ = records.send(out.take());
    }
    ShardResult {
        flow: table.counters(),
        output: out.counters.clone(),
    }
}

/// A sink that stops on its first I/O error (reported at the end) while
/// the others go on.
struct Slot<S> {
    sink: S,
    error: Option<std::io::Error>,
}

impl<S> Slot<S> {
    fn new(sink: S) -> Self {
        Slot { sink, error: None }
    }
    fn write(&mut self, name: &str, f: impl FnOnce(&mut S) -> std::io::Result<()>) {
        if self.error.is_none() {
            if let Err(e) = f(&mut self.sink) {
                tracing::error!("{name} failed, it stops here (the run goes on): {e}");
                self.error = Some(e);
            }
        }
    }
}

/// Everything the collector writes to.
struct Sinks {
    logs: LogSet,
    extract: Option<Slot<ExtractSink>>,
    ace: Option<Slot<AceSink>>,
}

/// What the collector reports when the records stop.
struct Collected {
    logs: std::io::Result<BTreeMap<String, u64>>,
    extract: Option<ExtractCounters>,
    ace: Option<AceCounters>,
    sink_errors: Vec<(&'static str, String)>,
}

/// The collector: routes every record to the logs (events to the event
/// stream when there is one), the extraction sink and the ACE sink. A
/// failing sink stops on its own; the channel is always drained so that
/// shards never block on a dead sink.
fn collect(mut sinks: Sinks, rx: Receiver<Vec<Record>>) -> Collected {
    let mut log_error: Option<std::io::Error> = None;
    for batch in rx {
        for r in &batch {
            if log_error.is_none() {
                if let Err(e) = sinks.logs.write(r) {
                    tracing::error!("writing logs failed: {e}");
                    log_error = Some(e);
                }
            }
            if let Some(x) = sinks.extract.as_mut() {
                if matches!(r, Record::EmailData(_) | Record::EmailMeta(_)) {
                    x.write("extraction (--extract-dir)", |s| s.write(r));
                }
            }
            if let Some(a) = sinks.ace.as_mut() {
                if matches!(r, Record::Event(_) | Record::Conn(_)) {
                    a.write("ACE transcripts (--ace-dir)", |s| s.write(r));
                }
            }
        }
    }
    let mut sink_errors = Vec::new();
    let extract = sinks.extract.map(|slot| {
        let (c, r) = slot.sink.finish();
        if let Some(e) = slot.error.or(r.err()) {
            sink_errors.push(("extract", e.to_string()));
        }
        c
    });
    let ace = sinks.ace.map(|slot| {
        let (c, r) = slot.sink.finish();
        if let Some(e) = slot.error.or(r.err()) {
            sink_errors.push(("ace", e.to_string()));
        }
        c
    });
    let logs = match log_error {
        Some(e) => Err(e),
        None => sinks.logs.finish().map(|stats| {
            stats
                .rows
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        }),
    };
    Collected {
        logs,
        extract,
        ace,
        sink_errors,
    }
}

fn add_flow(a: &mut FlowCounters, b: &FlowCounters) {
    a.packets += b.packets;
    a.payload_bytes += b.payload_bytes;
    a.flows_created += b.flows_created;
    a.flows_partial += b.flows_partial;
    a.flows_closed += b.flows_closed;
    a.flows_timed_out += b.flows_timed_out;
    a.flows_evicted += b.flows_evicted;
    a.flows_flushed_at_end += b.flows_flushed_at_end;
    a.analyzers_by_port += b.analyzers_by_port;
    a.analyzers_by_detection += b.analyzers_by_detection;
    a.gap_bytes += b.gap_bytes;
    a.forced_gaps += b.forced_gaps;
    a.inconsistent_overlaps += b.inconsistent_overlaps;
    a.reassembly_peak_bytes += b.reassembly_peak_bytes;
    a.bad_checksums += b.bad_checksums;
}
