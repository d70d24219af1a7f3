//! The collector thread: every record the shards produce goes through it
//! to the logs, the event stream, the extraction sink and the ACE sink.

use crate::budget::QueueBudget;
use crate::config::EngineConfig;
use crate::summary::{EngineError, Summary};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use hdrhistogram::Histogram;
use mailtap_core::{Record, Timestamp};
use mailtap_extract::{AceCounters, AceSink, ExtractCounters, ExtractSink};
use mailtap_logs::LogSet;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// How often buffered log rows reach their files when records arrive
/// slowly (a live sensor at night): `tail -f` sees rows within this.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Records on their way to the collector, with the time the shard sent
/// them (for the emitted-to-written latency).
pub(crate) struct RecordBatch {
    pub(crate) emitted: Instant,
    pub(crate) records: Vec<Record>,
    /// Approximate bytes the batch holds (the records'
    /// [`Record::approx_bytes`], summed as they were made, and the order
    /// keys): what it counts against the [`QueueBudget`].
    pub(crate) bytes: u64,
    /// `mailtap read`: where the batch belongs in the run's stable order
    /// (see [`Merger`]); `None` (live) writes it as it comes.
    pub(crate) order: Option<BatchOrder>,
}

impl RecordBatch {
    /// `bytes`: the records' approximate size ([`mailtap_core::Output::bytes`]).
    pub(crate) fn now(records: Vec<Record>, bytes: usize) -> Self {
        RecordBatch {
            emitted: Instant::now(),
            records,
            bytes: bytes as u64,
            order: None,
        }
    }

    /// The records `shard` produced for capture block `seq` ([`FINAL`]
    /// for the end of its input), put in their stable order; `bytes` is
    /// their approximate size. `part`: only a part of the block's records,
    /// sent early because they grew large; more follow.
    pub(crate) fn ordered(
        shard: usize,
        seq: u64,
        records: Vec<Record>,
        bytes: usize,
        part: bool,
    ) -> Self {
        let (records, keys) = order_records(records);
        let bytes = (bytes + keys.capacity() * std::mem::size_of::<OrderKey>()) as u64;
        RecordBatch {
            emitted: Instant::now(),
            records,
            bytes,
            order: Some(BatchOrder {
                shard,
                seq,
                keys,
                part,
            }),
        }
    }

    fn part(&self) -> bool {
        self.order.as_ref().is_some_and(|o| o.part)
    }
}

/// The block sequence number of a shard's last batch: what it flushed at
/// the end of input (or nothing, if it panicked).
pub(crate) const FINAL: u64 = u64::MAX;

/// A batch's place in the stable order of a `mailtap read`.
pub(crate) struct BatchOrder {
    pub(crate) shard: usize,
    /// The capture block the records came from (every shard sends one
    /// batch per block, empty or not, then one [`FINAL`] batch).
    pub(crate) seq: u64,
    /// One key per record, ascending.
    pub(crate) keys: Vec<OrderKey>,
    /// A part of the block's records sent early (they grew past the batch
    /// size in bytes); the shard's last batch for the block has `false`.
    pub(crate) part: bool,
}

/// A record's sort key within one block: its connection's earliest
/// record time in the block and a hash of the connection's uid (of the
/// record's content when it has no uid). Every record of a connection is
/// made by one shard, in an order that does not depend on the shard count,
/// so the key does not either.
pub(crate) type OrderKey = (Timestamp, u64);

fn record_uid(r: &Record) -> Option<&str> {
    match r {
        Record::Conn(c) => Some(&c.uid),
        Record::Smtp(c) => Some(&c.uid),
        Record::Weird(c) => c.uid.as_deref(),
        Record::Event(c) => Some(&c.uid),
        Record::Pop3(c) => Some(&c.uid),
        Record::File(c) => c.uid.as_deref(),
        Record::Ssl(c) => Some(&c.uid),
        Record::X509(_) => None,
        Record::EmailData(c) => Some(&c.uid),
        Record::EmailMeta(c) => Some(&c.uid),
    }
}

fn record_ts(r: &Record) -> Option<Timestamp> {
    Some(match r {
        Record::Conn(c) => c.ts,
        Record::Smtp(c) => c.ts,
        Record::Weird(c) => c.ts,
        Record::Event(c) => c.ts,
        Record::Pop3(c) => c.ts,
        Record::File(c) => c.ts,
        Record::Ssl(c) => c.ts,
        Record::X509(c) => c.ts,
        Record::EmailMeta(c) => c.ts,
        Record::EmailData(_) => return None,
    })
}

fn hash_of(f: impl FnOnce(&mut std::hash::DefaultHasher)) -> u64 {
    use std::hash::Hasher;
    // DefaultHasher::new() has fixed keys: the same in every run.
    let mut h = std::hash::DefaultHasher::new();
    f(&mut h);
    h.finish()
}

/// Sorts one shard's records of one block by [`OrderKey`], keeping the
/// production order of each connection's records (a stable sort on a key
/// shared by the whole connection), and returns the keys.
pub(crate) fn order_records(records: Vec<Record>) -> (Vec<Record>, Vec<OrderKey>) {
    use std::hash::Hash;
    if records.is_empty() {
        return (records, Vec::new());
    }
    let mut groups: Vec<OrderKey> = Vec::new();
    let mut group_of: Vec<u32> = Vec::with_capacity(records.len());
    {
        let mut index: ahash::AHashMap<&str, u32> = ahash::AHashMap::default();
        let mut prev: Option<(&str, u32)> = None;
        for r in &records {
            let g = match record_uid(r) {
                Some(u) => match prev {
                    Some((p, g)) if p == u => g,
                    _ => {
                        let g = *index.entry(u).or_insert_with(|| {
                            groups.push((Timestamp(i64::MAX), hash_of(|h| u.hash(h))));
                            groups.len() as u32 - 1
                        });
                        prev = Some((u, g));
                        g
                    }
                },
                None => {
                    let h = hash_of(|h| match r {
                        Record::X509(x) => x.fingerprint.hash(h),
                        Record::Weird(w) => (w.name, &w.addl, w.id).hash(h),
                        Record::File(f) => f.fuid.hash(h),
                        _ => {}
                    });
                    groups.push((Timestamp(i64::MAX), h));
                    groups.len() as u32 - 1
                }
            };
            if let Some(ts) = record_ts(r) {
                let k = &mut groups[g as usize].0;
                *k = (*k).min(ts);
            }
            group_of.push(g);
        }
    }
    // Groups in key order (few per block), then every record placed at
    // its group's next slot: linear in the records, no comparison sort.
    let mut order: Vec<u32> = (0..groups.len() as u32).collect();
    order.sort_unstable_by_key(|&g| (groups[g as usize], g));
    if order.iter().enumerate().all(|(i, &g)| i as u32 == g)
        && group_of.windows(2).all(|w| w[0] <= w[1])
    {
        let keys = group_of.iter().map(|&g| groups[g as usize]).collect();
        return (records, keys);
    }
    let mut count = vec![0u32; groups.len()];
    for &g in &group_of {
        count[g as usize] += 1;
    }
    let mut start = vec![0u32; groups.len()];
    let mut at = 0u32;
    for &g in &order {
        start[g as usize] = at;
        at += count[g as usize];
    }
    let mut slots: Vec<Option<Record>> = (0..records.len()).map(|_| None).collect();
    for (r, &g) in records.into_iter().zip(&group_of) {
        let s = &mut start[g as usize];
        slots[*s as usize] = Some(r);
        *s += 1;
    }
    let records = slots
        .into_iter()
        .map(|r| r.expect("every slot filled once"))
        .collect();
    let keys = order
        .iter()
        .flat_map(|&g| std::iter::repeat_n(groups[g as usize], count[g as usize] as usize))
        .collect();
    (records, keys)
}

/// Puts the shards' batches of a `mailtap read` into one stable order:
/// block by block (every shard sends one batch per capture block, in
/// order), and within a block by [`OrderKey`], the shards' sorted runs
/// merged. A block is written once every shard has sent its batch for it.
///
/// A block whose records grew large in bytes comes in parts (batches
/// with `part` set, then the shard's last batch for the block): the parts
/// of the block being written (the lowest block some shard has not sent
/// whole) are written as they arrive, so a shard's huge block streams
/// through instead of piling up here; that block's rows are then in
/// arrival order (each connection's own records still in the order they
/// were made), the only departure from the stable order.
///
/// Memory: a shard can be ahead of the slowest by at most the capture
/// blocks in flight (`capture.blocks_per_worker` × workers + 1; the reader
/// waits for a block to come back before reading on), and what it sends
/// counts against the [`QueueBudget`], which makes it wait once the
/// budget is spent (the shard the order waits for never waits while
/// records are held back for it, and its parts are written as they come).
/// A shard that panics sends its [`FINAL`] batch as it unwinds, so it
/// holds nothing back.
pub(crate) struct Merger {
    queues: Vec<std::collections::VecDeque<RecordBatch>>,
    /// Per shard: the block after the last one it sent whole ([`FINAL`]
    /// once it sent its last batch).
    next: Vec<u64>,
    /// Batches held now (for metrics and tests).
    held: usize,
    /// Their bytes.
    held_bytes: u64,
}

impl Merger {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1);
        Merger {
            queues: (0..n).map(|_| Default::default()).collect(),
            next: vec![0; n],
            held: 0,
            held_bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, b: RecordBatch) {
        let (shard, seq) = b.order.as_ref().map_or((0, FINAL), |o| (o.shard, o.seq));
        let last = self.queues.len() - 1;
        let shard = shard.min(last);
        if !b.part() {
            self.next[shard] = seq.saturating_add(1);
        }
        self.held += 1;
        self.held_bytes += b.bytes;
        self.queues[shard].push_back(b);
    }

    /// The lowest block not written yet: every shard has sent every block
    /// before it whole, and they are written (`pop` is called until it
    /// returns `None` after every `push`).
    pub(crate) fn current(&self) -> u64 {
        self.next.iter().copied().min().unwrap_or(FINAL)
    }

    /// Bytes of the batches held now.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// The next records to write: a part of the block being written, or
    /// the next block's records in order once every shard has sent its
    /// batch for it (`drain`: take what there is, the shards are gone).
    /// Also the batches' send times and bytes.
    pub(crate) fn pop(&mut self, drain: bool) -> Option<(Vec<Record>, Vec<Instant>, u64)> {
        let seq_of = |b: &RecordBatch| b.order.as_ref().map_or(FINAL, |o| o.seq);
        let lowest = self
            .queues
            .iter()
            .filter_map(|q| q.front())
            .map(seq_of)
            .min()?;
        let writable = if drain { lowest } else { self.current() };
        for q in &mut self.queues {
            if q.front().is_some_and(|b| b.part() && seq_of(b) <= writable) {
                let b = q.pop_front().expect("front checked");
                self.held -= 1;
                self.held_bytes -= b.bytes;
                return Some((b.records, vec![b.emitted], b.bytes));
            }
        }
        if !drain && self.queues.iter().any(|q| q.is_empty()) {
            return None;
        }
        let seq = lowest;
        let mut runs: Vec<RecordBatch> = Vec::with_capacity(self.queues.len());
        for q in &mut self.queues {
            if q.front().is_some_and(|b| seq_of(b) == seq && !b.part()) {
                runs.push(q.pop_front().expect("front checked"));
            }
        }
        if runs.is_empty() {
            // Only parts of a later block at the fronts (drain only).
            return None;
        }
        self.held -= runs.len();
        let bytes: u64 = runs.iter().map(|b| b.bytes).sum();
        self.held_bytes -= bytes;
        let emitted = runs.iter().map(|b| b.emitted).collect();
        Some((merge_runs(runs), emitted, bytes))
    }
}

/// Merges sorted runs by key (ties: the lower shard first).
fn merge_runs(mut runs: Vec<RecordBatch>) -> Vec<Record> {
    runs.retain(|b| !b.records.is_empty());
    match runs.len() {
        0 => return Vec::new(),
        1 => return runs.pop().expect("one run").records,
        _ => {}
    }
    let total = runs.iter().map(|b| b.records.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<_> = runs
        .into_iter()
        .map(|b| {
            let keys = b.order.map(|o| o.keys).unwrap_or_default();
            keys.into_iter().zip(b.records).peekable()
        })
        .collect();
    loop {
        // The smallest (key, run) head; runs are in shard order, so a tie
        // goes to the lower shard.
        let mut heads = iters
            .iter_mut()
            .enumerate()
            .filter_map(|(j, it)| it.peek().map(|&(k, _)| (k, j)));
        let Some(mut best) = heads.next() else { break };
        let mut second: Option<(OrderKey, usize)> = None;
        for h in heads {
            if h < best {
                second = Some(best);
                best = h;
            } else if second.is_none_or(|s| h < s) {
                second = Some(h);
            }
        }
        // Take the stretch of the best run that stays before the next
        // run's head (one comparison per record).
        let i = best.1;
        let it = &mut iters[i];
        while let Some(&(k, _)) = it.peek() {
            if second.is_some_and(|s| (k, i) > s) {
                break;
            }
            out.push(it.next().expect("peeked").1);
        }
    }
    out
}

/// What the collector has written so far, for metrics (relaxed atomics;
/// only the collector writes them).
pub(crate) struct CollectorStats {
    /// Records by kind, in [`RECORD_KINDS`] order.
    pub(crate) records: [AtomicU64; RECORD_KINDS.len()],
    pub(crate) batches: AtomicU64,
    /// The extraction sink's `size_mismatch` and `bytes_lost` so far.
    pub(crate) extract_size_mismatch: AtomicU64,
    pub(crate) extract_bytes_lost: AtomicU64,
    /// Microseconds from a shard sending a batch to the collector having
    /// written it to every sink.
    pub(crate) write_latency_us: Mutex<Histogram<u64>>,
    /// Microseconds from a Kafka message's hand-over to librdkafka to its
    /// acknowledgement by the brokers.
    pub(crate) kafka_delivery_latency_us: Mutex<Histogram<u64>>,
    /// The Kafka sink's counters after its last poll, when there is one.
    pub(crate) kafka: Mutex<Option<mailtap_kafka::KafkaCounters>>,
    /// The channel, to report its depth.
    pub(crate) queue: Receiver<RecordBatch>,
    pub(crate) capacity: usize,
    /// The bytes in flight to the collector and their bound.
    pub(crate) budget: Arc<QueueBudget>,
    /// When the collector last came round its loop (ms since the Unix
    /// epoch; at least every flush interval while it is not stuck in a
    /// sink): `/healthz`.
    pub(crate) heartbeat_ms: AtomicU64,
}

/// Record kinds as metrics label them.
pub(crate) const RECORD_KINDS: [&str; 10] = [
    "conn",
    "smtp",
    "weird",
    "event",
    "pop3",
    "files",
    "email_data",
    "email_meta",
    "ssl",
    "x509",
];

fn kind_index(r: &Record) -> usize {
    match r {
        Record::Conn(_) => 0,
        Record::Smtp(_) => 1,
        Record::Weird(_) => 2,
        Record::Event(_) => 3,
        Record::Pop3(_) => 4,
        Record::File(_) => 5,
        Record::EmailData(_) => 6,
        Record::EmailMeta(_) => 7,
        Record::Ssl(_) => 8,
        Record::X509(_) => 9,
    }
}

/// A latency histogram in microseconds, 1 µs to 1 hour, 3 digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The running collector: send record batches to `tx`; drop every sender
/// and `finish` to get what it wrote.
pub(crate) struct Collector {
    pub(crate) tx: Sender<RecordBatch>,
    pub(crate) stats: Arc<CollectorStats>,
    /// Bytes in flight; every sender counts what it sends.
    pub(crate) budget: Arc<QueueBudget>,
    join: JoinHandle<Collected>,
}

impl Collector {
    /// Opens every sink (an unusable output directory is an error now, not
    /// later) and starts the thread. `capacity` bounds the record batches
    /// in flight, and `cfg.collector_queue_bytes` their bytes (see
    /// [`QueueBudget`]); a full channel makes shards wait (back-pressure).
    pub(crate) fn start(
        cfg: &EngineConfig,
        capacity: usize,
        shards: usize,
        test_panic: bool,
    ) -> Result<Collector, EngineError> {
        let logs = LogSet::with_rotation(
            &cfg.out_dir,
            cfg.log_format,
            cfg.log_limits,
            cfg.events.as_deref(),
            cfg.rotation.clone(),
        )
        .map_err(EngineError::Logs)?;
        let extract = cfg
            .extract
            .as_ref()
            .map(ExtractSink::new)
            .transpose()
            .map_err(EngineError::Sink)?;
        let ace = cfg
            .ace
            .as_ref()
            .map(AceSink::new)
            .transpose()
            .map_err(EngineError::Sink)?;
        let kafka = match &cfg.kafka {
            Some(k) => Some(Slot::new(
                mailtap_kafka::KafkaSink::new(k.clone())
                    .map_err(|e| EngineError::Sink(std::io::Error::other(format!("Kafka: {e}"))))?,
            )),
            None => None,
        };
        let sinks = Sinks {
            kafka,
            logs,
            extract: extract.map(Slot::new),
            ace: ace.map(Slot::new),
        };
        let (tx, rx) = bounded::<RecordBatch>(capacity.max(1));
        let budget = Arc::new(QueueBudget::new(cfg.collector_queue_bytes));
        let stats = Arc::new(CollectorStats {
            budget: budget.clone(),
            records: Default::default(),
            batches: AtomicU64::new(0),
            extract_size_mismatch: AtomicU64::new(0),
            extract_bytes_lost: AtomicU64::new(0),
            write_latency_us: Mutex::new(latency_histogram()),
            kafka: Mutex::new(None),
            kafka_delivery_latency_us: Mutex::new(latency_histogram()),
            queue: rx.clone(),
            capacity: capacity.max(1),
            heartbeat_ms: AtomicU64::new(crate::metrics::now_ms()),
        });
        let st = stats.clone();
        let reopen = cfg.reopen_logs.clone();
        let rotating = cfg.rotation.enabled();
        let kafka_events = cfg.kafka_events;
        let kafka_emails = cfg.kafka_emails;
        let join = thread::Builder::new()
            .name("mailtap-collector".into())
            .spawn(move || {
                collect(
                    sinks,
                    rx,
                    &st,
                    &reopen,
                    rotating,
                    (kafka_events, kafka_emails),
                    shards,
                    test_panic,
                )
            })
            .map_err(EngineError::Sink)?;
        Ok(Collector {
            tx,
            stats,
            budget,
            join,
        })
    }

    /// Waits for the collector to drain (every other sender must be gone)
    /// and records what it wrote in `summary`; a log write error becomes
    /// the run's error unless it already has one.
    pub(crate) fn finish(self, summary: &mut Summary, result: &mut Result<(), EngineError>) {
        drop(self.tx);
        match self.join.join() {
            Ok(c) => {
                summary.extract = c.extract;
                summary.ace = c.ace;
                summary.sink_errors = c.sink_errors;
                summary.log_rotation = c.rotation;
                summary.kafka = c.kafka;
                if c.panicked && result.is_ok() {
                    *result = Err(EngineError::Panic("the collector"));
                }
                match c.logs {
                    Ok(rows) => summary.log_rows = rows,
                    Err(e) => {
                        if result.is_ok() {
                            *result = Err(EngineError::Logs(e));
                        }
                    }
                }
            }
            Err(_) => {
                tracing::error!("the collector thread panicked");
                if result.is_ok() {
                    *result = Err(EngineError::Panic("the collector"));
                }
            }
        }
    }
}

/// The collector's state while it writes.
struct Writer {
    sinks: Sinks,
    log_error: Option<std::io::Error>,
    x509_dedup: mailtap_tls::X509Dedup,
    kafka_events: bool,
    kafka_emails: bool,
}

fn record_latency(stats: &CollectorStats, emitted: Instant) {
    let us = emitted.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
    if let Ok(mut h) = stats.write_latency_us.lock() {
        let _ = h.record(us);
    }
}

/// Writes records, in order, to every sink that takes them.
fn write_batch(w: &mut Writer, records: &[Record], stats: &CollectorStats) {
    let Writer {
        sinks,
        log_error,
        x509_dedup,
        kafka_events,
        kafka_emails,
    } = w;
    let (kafka_events, kafka_emails) = (*kafka_events, *kafka_emails);
    let mut kinds = [0u64; RECORD_KINDS.len()];
    for r in records {
        if let Record::X509(x) = r {
            if !x509_dedup.admit(x) {
                continue;
            }
        }
        kinds[kind_index(r)] += 1;
        if log_error.is_none() {
            if let Err(e) = sinks.logs.write(r) {
                tracing::error!("writing logs failed: {e}");
                *log_error = Some(e);
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
        let to_kafka = match r {
            Record::Event(_) => kafka_events,
            Record::EmailData(_) | Record::EmailMeta(_) => kafka_emails,
            _ => true,
        };
        if let Some(k) = sinks.kafka.as_mut().filter(|_| to_kafka) {
            k.write("Kafka (--kafka)", |s| {
                s.write(r).map_err(|e| std::io::Error::other(e.to_string()))
            });
        }
    }
    if let Some(k) = sinks.kafka.as_mut() {
        poll_kafka(&mut k.sink, stats);
    }
    if let Some(x) = sinks.extract.as_ref() {
        let c = x.sink.lost();
        stats.extract_size_mismatch.store(c.0, Ordering::Relaxed);
        stats.extract_bytes_lost.store(c.1, Ordering::Relaxed);
    }
    for (a, n) in stats.records.iter().zip(kinds) {
        if n > 0 {
            a.fetch_add(n, Ordering::Relaxed);
        }
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
    kafka: Option<Slot<mailtap_kafka::KafkaSink>>,
    extract: Option<Slot<ExtractSink>>,
    ace: Option<Slot<AceSink>>,
}

/// What the collector reports when the records stop.
struct Collected {
    logs: std::io::Result<BTreeMap<String, u64>>,
    rotation: mailtap_logs::RotationStats,
    kafka: Option<mailtap_kafka::KafkaCounters>,
    extract: Option<ExtractCounters>,
    ace: Option<AceCounters>,
    sink_errors: Vec<(&'static str, String)>,
    /// The collector panicked while writing (what it wrote before is kept).
    panicked: bool,
}

/// Serves the Kafka sink (delivery reports, failed deliveries to the
/// spill, replay) and publishes its counters and delivery latencies.
fn poll_kafka(sink: &mut mailtap_kafka::KafkaSink, stats: &CollectorStats) {
    sink.poll();
    if let Ok(mut c) = stats.kafka.lock() {
        *c = Some(sink.counters());
    }
    if let Ok(mut h) = stats.kafka_delivery_latency_us.lock() {
        sink.drain_delivery_latencies(|us| {
            let _ = h.record(us.clamp(1, 3_600_000_000));
        });
    }
}

/// `MAILTAP_TEST_COLLECTOR_DELAY_MS` (tests only, see
/// docs/operations.md): the collector sleeps this long per batch, to force
/// overload deterministically.
fn test_collector_delay() -> Option<Duration> {
    std::env::var("MAILTAP_TEST_COLLECTOR_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

/// The collector: routes every record to the logs (events to the event
/// stream when there is one), the extraction sink and the ACE sink. A
/// failing sink stops on its own; the channel is always drained so that
/// shards never block on a dead sink.
/// Certificates remembered for x509.log deduplication.
const X509_DEDUP_CAPACITY: usize = 100_000;

#[allow(clippy::too_many_arguments)]
fn collect(
    sinks: Sinks,
    rx: Receiver<RecordBatch>,
    stats: &CollectorStats,
    reopen: &AtomicBool,
    rotating: bool,
    (kafka_events, kafka_emails): (bool, bool),
    shards: usize,
    test_panic: bool,
) -> Collected {
    let mut last_flush = Instant::now();
    // x509.log rows are deduplicated here, across shards, as Zeek logs a
    // certificate once a day (bounded; see mailtap_tls::X509Dedup).
    let mut w = Writer {
        sinks,
        log_error: None,
        x509_dedup: mailtap_tls::X509Dedup::new(X509_DEDUP_CAPACITY),
        kafka_events,
        kafka_emails,
    };
    let mut merger = Merger::new(shards);
    let budget = &*stats.budget;
    // Senders stop waiting for a collector that is gone.
    struct Close<'a>(&'a QueueBudget);
    impl Drop for Close<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = Close(budget);
    let test_delay = test_collector_delay();
    // A panic while writing must not lose the logs: it is caught, the
    // collector goes on with the next batch, closes the sinks as usual and
    // the run reports it (exit status 4).
    let mut panicked = false;
    while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        loop {
            stats
                .heartbeat_ms
                .store(crate::metrics::now_ms(), Ordering::Relaxed);
            let batch = match rx.recv_timeout(FLUSH_INTERVAL) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let Writer {
                sinks, log_error, ..
            } = &mut w;
            if log_error.is_none() && reopen.swap(false, Ordering::Relaxed) {
                tracing::info!("SIGHUP: reopening the logs");
                if let Err(e) = sinks.logs.reopen() {
                    tracing::error!("reopening logs failed: {e}");
                    *log_error = Some(e);
                }
            }
            if rotating && log_error.is_none() {
                if let Err(e) = sinks.logs.tick(SystemTime::now()) {
                    tracing::error!("rotating logs failed: {e}");
                    *log_error = Some(e);
                }
                for e in sinks.logs.take_rotation_errors() {
                    tracing::error!("log rotation: {e}");
                }
            }
            if last_flush.elapsed() >= FLUSH_INTERVAL {
                last_flush = Instant::now();
                if log_error.is_none() {
                    if let Err(e) = sinks.logs.flush() {
                        tracing::error!("writing logs failed: {e}");
                        *log_error = Some(e);
                    }
                }
            }
            let Some(batch) = batch else {
                if let Some(k) = sinks.kafka.as_mut() {
                    poll_kafka(&mut k.sink, stats);
                }
                continue;
            };
            if let Some(d) = test_delay {
                std::thread::sleep(d);
            }
            let n = stats.batches.fetch_add(1, Ordering::Relaxed);
            if test_panic && n == 1 {
                panic!("test-only panic in the collector (MAILTAP_TEST_PANIC=collector)");
            }
            if batch.order.is_none() {
                write_batch(&mut w, &batch.records, stats);
                record_latency(stats, batch.emitted);
                let bytes = batch.bytes;
                // Freed before the senders hear that the bytes are gone.
                drop(batch);
                budget.release(bytes);
                continue;
            }
            merger.push(batch);
            while let Some((records, emitted, bytes)) = merger.pop(false) {
                write_batch(&mut w, &records, stats);
                drop(records);
                budget.release(bytes);
                for e in emitted {
                    record_latency(stats, e);
                }
            }
            budget.set_order(merger.current(), merger.held_bytes());
        }
        // The shards are gone: whatever a shard that died left incomplete.
        while let Some((records, _, bytes)) = merger.pop(true) {
            write_batch(&mut w, &records, stats);
            budget.release(bytes);
        }
    }))
    .is_err()
    {
        // Go on with the next batch: what the panic interrupted is lost,
        // everything else is still written.
        panicked = true;
    }
    let Writer {
        sinks, log_error, ..
    } = w;
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
    let mut rotation = mailtap_logs::RotationStats::default();
    let logs = match log_error {
        Some(e) => Err(e),
        None => sinks.logs.finish().map(|stats| {
            rotation = stats.rotation;
            for e in &stats.rotation_errors {
                tracing::error!("log rotation: {e}");
            }
            stats
                .rows
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        }),
    };
    // Kafka last: its flush may wait for the brokers (kafka.flush_timeout),
    // and the files must be complete whatever happens then.
    let kafka = sinks.kafka.map(|slot| {
        let (c, r) = slot.sink.finish();
        if let Some(e) = slot.error {
            sink_errors.push(("kafka", e.to_string()));
        } else if let Err(e) = r {
            sink_errors.push(("kafka", e.to_string()));
        }
        c
    });
    Collected {
        logs,
        rotation,
        kafka,
        extract,
        ace,
        sink_errors,
        panicked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_core::record::WeirdRecord;

    fn weird(uid: &str, secs: i64, name: &'static str) -> Record {
        Record::Weird(Box::new(WeirdRecord {
            ts: Timestamp::from_secs_nanos(secs, 0),
            uid: Some(uid.into()),
            id: None,
            name,
            addl: None,
            source: None,
        }))
    }

    fn names(r: &[Record]) -> Vec<&'static str> {
        r.iter()
            .map(|r| match r {
                Record::Weird(w) => w.name,
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn records_group_by_connection_in_production_order() {
        // B's earliest record is older than A's: B's group first, each
        // connection's own records in the order they were made.
        let recs = vec![
            weird("CA", 5, "a1"),
            weird("CB", 3, "b1"),
            weird("CA", 1, "a2"),
            weird("CB", 9, "b2"),
            weird("CA", 7, "a3"),
        ];
        let (r, k) = order_records(recs);
        assert_eq!(names(&r), ["a1", "a2", "a3", "b1", "b2"]);
        assert!(k.windows(2).all(|w| w[0] <= w[1]));
        let recs = vec![weird("CB", 3, "b1"), weird("CA", 1, "a1")];
        let (r, _) = order_records(recs);
        assert_eq!(names(&r), ["a1", "b1"]);
    }

    #[test]
    fn merged_blocks_do_not_depend_on_how_connections_are_split() {
        let all = vec![
            weird("C1", 1, "1a"),
            weird("C2", 2, "2a"),
            weird("C3", 3, "3a"),
            weird("C1", 4, "1b"),
            weird("C2", 5, "2b"),
        ];
        let one = {
            let mut m = Merger::new(1);
            m.push(RecordBatch::ordered(0, 0, all.clone(), 0, false));
            m.push(RecordBatch::ordered(0, FINAL, Vec::new(), 0, false));
            m.pop(false).unwrap().0
        };
        let two = {
            let mut m = Merger::new(2);
            let (s0, s1): (Vec<_>, Vec<_>) = all
                .into_iter()
                .partition(|r| matches!(r, Record::Weird(w) if w.uid.as_deref() != Some("C2")));
            m.push(RecordBatch::ordered(1, 0, s1, 0, false));
            assert!(m.pop(false).is_none(), "waits for every shard's block 0");
            m.push(RecordBatch::ordered(0, 0, s0, 0, false));
            m.pop(false).unwrap().0
        };
        assert_eq!(names(&one), names(&two));
        assert_eq!(names(&one), ["1a", "1b", "2a", "2b", "3a"]);
    }

    #[test]
    fn parts_of_the_block_being_written_go_out_as_they_come() {
        let mut m = Merger::new(2);
        // Shard 1 is a block ahead: its parts of block 1 wait.
        m.push(RecordBatch::ordered(
            1,
            0,
            vec![weird("C2", 1, "2a")],
            10,
            false,
        ));
        m.push(RecordBatch::ordered(
            1,
            1,
            vec![weird("C2", 2, "2b")],
            20,
            true,
        ));
        assert!(m.pop(false).is_none());
        assert_eq!(m.current(), 0);
        // Each batch's bytes include its order keys (16 bytes a record).
        assert_eq!(m.held_bytes(), 10 + 20 + 2 * 16);
        // Shard 0's parts of block 0, the one being written, go at once.
        m.push(RecordBatch::ordered(
            0,
            0,
            vec![weird("C1", 1, "1a")],
            40,
            true,
        ));
        let (r, _, bytes) = m.pop(false).unwrap();
        assert_eq!((names(&r), bytes), (vec!["1a"], 40 + 16));
        assert!(m.pop(false).is_none());
        // Block 0 is complete: its rest, merged, then shard 1's part of
        // block 1 (now the block being written).
        m.push(RecordBatch::ordered(
            0,
            0,
            vec![weird("C1", 3, "1b")],
            5,
            false,
        ));
        let (r, _, _) = m.pop(false).unwrap();
        assert_eq!(names(&r), ["2a", "1b"]);
        assert_eq!(m.current(), 1);
        let (r, _, bytes) = m.pop(false).unwrap();
        assert_eq!((names(&r), bytes), (vec!["2b"], 20 + 16));
        assert!(m.pop(false).is_none());
        assert_eq!(m.held_bytes(), 0);
        m.push(RecordBatch::ordered(0, FINAL, Vec::new(), 0, false));
        m.push(RecordBatch::ordered(
            1,
            1,
            vec![weird("C2", 4, "2c")],
            1,
            false,
        ));
        // Shard 0 is done (as after a panic): block 1 is shard 1's alone.
        let (r, _, _) = m.pop(false).unwrap();
        assert_eq!(names(&r), ["2c"]);
        assert_eq!(m.held_bytes(), 0);
    }
}
