//! The collector thread: every record the shards produce goes through it
//! to the logs, the event stream, the extraction sink and the ACE sink.

use crate::config::EngineConfig;
use crate::summary::{EngineError, Summary};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use hdrhistogram::Histogram;
use mailtap_core::Record;
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
}

impl RecordBatch {
    pub(crate) fn now(records: Vec<Record>) -> Self {
        RecordBatch {
            emitted: Instant::now(),
            records,
        }
    }
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
    join: JoinHandle<Collected>,
}

impl Collector {
    /// Opens every sink (an unusable output directory is an error now, not
    /// later) and starts the thread. `capacity` bounds the record batches
    /// in flight; a full channel makes shards wait (back-pressure).
    pub(crate) fn start(cfg: &EngineConfig, capacity: usize) -> Result<Collector, EngineError> {
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
        let stats = Arc::new(CollectorStats {
            records: Default::default(),
            batches: AtomicU64::new(0),
            extract_size_mismatch: AtomicU64::new(0),
            extract_bytes_lost: AtomicU64::new(0),
            write_latency_us: Mutex::new(latency_histogram()),
            kafka: Mutex::new(None),
            kafka_delivery_latency_us: Mutex::new(latency_histogram()),
            queue: rx.clone(),
            capacity: capacity.max(1),
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
                )
            })
            .map_err(EngineError::Sink)?;
        Ok(Collector { tx, stats, join })
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
                match c.logs {
                    Ok(rows) => summary.log_rows = rows,
                    Err(e) => {
                        if result.is_ok() {
                            *result = Err(EngineError::Logs(e));
                        }
                    }
                }
            }
            Err(_) => tracing::error!("the collector thread panicked"),
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

/// The collector: routes every record to the logs (events to the event
/// stream when there is one), the extraction sink and the ACE sink. A
/// failing sink stops on its own; the channel is always drained so that
/// shards never block on a dead sink.
/// Certificates remembered for x509.log deduplication.
const X509_DEDUP_CAPACITY: usize = 100_000;

fn collect(
    mut sinks: Sinks,
    rx: Receiver<RecordBatch>,
    stats: &CollectorStats,
    reopen: &AtomicBool,
    rotating: bool,
    (kafka_events, kafka_emails): (bool, bool),
) -> Collected {
    let mut log_error: Option<std::io::Error> = None;
    let mut last_flush = Instant::now();
    // x509.log rows are deduplicated here, across shards, as Zeek logs a
    // certificate once a day (bounded; see mailtap_tls::X509Dedup).
    let mut x509_dedup = mailtap_tls::X509Dedup::new(X509_DEDUP_CAPACITY);
    loop {
        let batch = match rx.recv_timeout(FLUSH_INTERVAL) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if log_error.is_none() && reopen.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reopening the logs");
            if let Err(e) = sinks.logs.reopen() {
                tracing::error!("reopening logs failed: {e}");
                log_error = Some(e);
            }
        }
        if rotating && log_error.is_none() {
            if let Err(e) = sinks.logs.tick(SystemTime::now()) {
                tracing::error!("rotating logs failed: {e}");
                log_error = Some(e);
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
                    log_error = Some(e);
                }
            }
        }
        let Some(batch) = batch else {
            if let Some(k) = sinks.kafka.as_mut() {
                poll_kafka(&mut k.sink, stats);
            }
            continue;
        };
        let mut kinds = [0u64; RECORD_KINDS.len()];
        for r in &batch.records {
            if let Record::X509(x) = r {
                if !x509_dedup.admit(x) {
                    continue;
                }
            }
            kinds[kind_index(r)] += 1;
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
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let us = batch.emitted.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
        if let Ok(mut h) = stats.write_latency_us.lock() {
            let _ = h.record(us);
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
    }
}
