//! The collector thread: every record the shards produce goes through it
//! to the logs, the event stream, the extraction sink and the ACE sink.

mod order;

pub(crate) use order::*;

use crate::budget::QueueBudget;
use crate::config::EngineConfig;
use crate::metrics::latency_histogram;
use crate::summary::{EngineError, Summary};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use mailtap_core::output::{OutputNotice, OutputReport};
use mailtap_core::{Record, Timestamp};
use mailtap_extract::{AceCounters, AceSink, ExtractCounters, ExtractSink};
use mailtap_logs::LogSet;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

/// How often buffered log rows reach their files when records arrive
/// slowly (a live sensor at night): `tail -f` sees rows within this.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What the collector has written so far, for metrics (relaxed atomics;
/// only the collector writes them).
pub(crate) struct CollectorStats {
    /// Records by kind, in [`RECORD_KINDS`] order.
    pub(crate) records: [AtomicU64; RECORD_KINDS.len()],
    pub(crate) batches: AtomicU64,
    /// The extraction sink's `size_mismatch` and `bytes_lost` so far.
    pub(crate) extract_size_mismatch: AtomicU64,
    pub(crate) extract_bytes_lost: AtomicU64,
    /// Seconds from a shard sending a batch to the collector having
    /// written it to every sink.
    pub(crate) write_latency: Histogram,
    /// Seconds from a Kafka message's hand-over to librdkafka to its
    /// acknowledgement by the brokers.
    pub(crate) kafka_delivery_latency: Histogram,
    /// What every file output (each log, the event stream, extraction,
    /// ACE) wrote and lost to write errors, as of the last flush interval.
    pub(crate) outputs: Mutex<Vec<OutputReport>>,
    /// The Kafka sink's counters after its last poll, when there is one.
    #[cfg(feature = "kafka")]
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
pub(crate) const RECORD_KINDS: [&str; 11] = [
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
    "imap",
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
        Record::Imap(_) => 10,
    }
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
        #[cfg(feature = "kafka")]
        let kafka = match &cfg.kafka {
            Some(k) => Some(Slot::new(
                mailtap_kafka::KafkaSink::new(k.clone())
                    .map_err(|e| EngineError::Sink(std::io::Error::other(format!("Kafka: {e}"))))?,
            )),
            None => None,
        };
        let sinks = Sinks {
            #[cfg(feature = "kafka")]
            kafka,
            logs,
            extract,
            ace,
        };
        let (tx, rx) = bounded::<RecordBatch>(capacity.max(1));
        let budget = Arc::new(QueueBudget::new(cfg.collector_queue_bytes));
        let stats = Arc::new(CollectorStats {
            budget: budget.clone(),
            records: Default::default(),
            batches: AtomicU64::new(0),
            extract_size_mismatch: AtomicU64::new(0),
            extract_bytes_lost: AtomicU64::new(0),
            write_latency: latency_histogram(),
            #[cfg(feature = "kafka")]
            kafka: Mutex::new(None),
            kafka_delivery_latency: latency_histogram(),
            outputs: Mutex::new(Vec::new()),
            queue: rx.clone(),
            capacity: capacity.max(1),
            heartbeat_ms: AtomicU64::new(crate::metrics::now_ms()),
        });
        let st = stats.clone();
        let reopen = cfg.reopen_logs.clone();
        let rotating = cfg.rotation.enabled();
        let (kafka_events, kafka_emails) = cfg.kafka_wants();
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
    /// and records what it wrote in `summary`. Write errors of the file
    /// outputs are in `summary.outputs` (they do not stop the run).
    pub(crate) fn finish(self, summary: &mut Summary, result: &mut Result<(), EngineError>) {
        drop(self.tx);
        match self.join.join() {
            Ok(c) => {
                summary.extract = c.extract;
                summary.ace = c.ace;
                summary.sink_errors = c.sink_errors;
                summary.log_rotation = c.rotation;
                #[cfg(feature = "kafka")]
                {
                    summary.kafka = c.kafka;
                }
                summary.outputs = c.outputs;
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
    x509_dedup: mailtap_tls::X509Dedup,
    /// Whether the Kafka sink takes events, and messages.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    kafka_events: bool,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    kafka_emails: bool,
}

fn record_latency(stats: &CollectorStats, emitted: Instant) {
    stats.write_latency.observe(emitted.elapsed().as_secs_f64());
}

/// Writes records, in order, to every sink that takes them.
fn write_batch(w: &mut Writer, records: &[Record], stats: &CollectorStats) {
    let Writer {
        sinks, x509_dedup, ..
    } = w;
    let mut kinds = [0u64; RECORD_KINDS.len()];
    for r in records {
        if let Record::X509(x) = r {
            if !x509_dedup.admit(x) {
                continue;
            }
        }
        kinds[kind_index(r)] += 1;
        // Write errors stop only the output they hit, which counts what it
        // loses and tries again by itself; the error is reported through
        // the output's notices (see `report_notices`), not from here.
        let _ = sinks.logs.write(r);
        if let Some(x) = sinks.extract.as_mut() {
            if matches!(r, Record::EmailData(_) | Record::EmailMeta(_)) {
                let _ = x.write(r);
            }
        }
        if let Some(a) = sinks.ace.as_mut() {
            if matches!(r, Record::Event(_) | Record::Conn(_)) {
                let _ = a.write(r);
            }
        }
        #[cfg(feature = "kafka")]
        {
            let to_kafka = match r {
                Record::Event(_) => w.kafka_events,
                Record::EmailData(_) | Record::EmailMeta(_) => w.kafka_emails,
                _ => true,
            };
            if let Some(k) = sinks.kafka.as_mut().filter(|_| to_kafka) {
                k.write("Kafka (--kafka)", |s| {
                    s.write(r).map_err(|e| std::io::Error::other(e.to_string()))
                });
            }
        }
    }
    #[cfg(feature = "kafka")]
    if let Some(k) = sinks.kafka.as_mut() {
        poll_kafka(&mut k.sink, stats);
    }
    if let Some(x) = sinks.extract.as_ref() {
        let c = x.lost();
        stats.extract_size_mismatch.store(c.0, Ordering::Relaxed);
        stats.extract_bytes_lost.store(c.1, Ordering::Relaxed);
    }
    for (a, n) in stats.records.iter().zip(kinds) {
        if n > 0 {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }
    report_notices(sinks);
}

/// Logs an output's change of state once: it started failing (the error
/// names the file), or it writes again (with the records lost meanwhile).
fn log_notice(n: &OutputNotice) {
    match n {
        OutputNotice::Failed { .. } => tracing::error!("{n}"),
        OutputNotice::Resumed { .. } => tracing::warn!("{n}"),
    }
}

/// Logs the file outputs' write-error notices (cheap when there are none).
fn report_notices(sinks: &mut Sinks) {
    if sinks.logs.has_notices() {
        sinks.logs.take_notices().iter().for_each(log_notice);
    }
    if let Some(x) = sinks.extract.as_mut().filter(|x| x.has_notices()) {
        x.take_notices().iter().for_each(log_notice);
    }
    if let Some(a) = sinks.ace.as_mut().filter(|a| a.has_notices()) {
        a.take_notices().iter().for_each(log_notice);
    }
}

/// What every file output wrote and lost so far.
fn output_reports(sinks: &Sinks) -> Vec<OutputReport> {
    let mut v = sinks.logs.outputs();
    v.extend(sinks.extract.as_ref().map(ExtractSink::report));
    v.extend(sinks.ace.as_ref().map(AceSink::report));
    v
}

/// The file outputs' counters for `--metrics-listen` (called by
/// `metrics.rs`): records written and lost per output, outages, and
/// whether the output is failing now. `output` is `smtp.log`, `conn.log`,
/// ..., `events`, `extract` or `ace`; records are log rows, events,
/// extracted messages and ACE sessions.
pub(crate) fn encode_output_metrics(
    e: &mut prometheus_client::encoding::DescriptorEncoder,
    stats: &CollectorStats,
) -> std::fmt::Result {
    use crate::metrics::{family, Label};
    use prometheus_client::metrics::MetricType;
    let outputs = match stats.outputs.lock() {
        Ok(o) => o.clone(),
        Err(_) => return Ok(()),
    };
    type Get = fn(&OutputReport) -> u64;
    let families: [(&str, MetricType, &str, Get); 4] = [
        (
            "mailtap_output_records_written",
            MetricType::Counter,
            "Records written per file output (log rows, events, extracted messages, ACE sessions), as of the last flush interval.",
            |o| o.written,
        ),
        (
            "mailtap_output_records_lost",
            MetricType::Counter,
            "Records a file output could not write (a full disk or another write error) and dropped.",
            |o| o.lost,
        ),
        (
            "mailtap_output_failures",
            MetricType::Counter,
            "Times a file output started failing to write.",
            |o| o.failures,
        ),
        (
            "mailtap_output_failing",
            MetricType::Gauge,
            "1 while a file output cannot write (it is retried every second).",
            |o| u64::from(o.failing),
        ),
    ];
    for (name, ty, help, get) in families {
        family(
            e,
            name,
            help,
            ty,
            outputs
                .iter()
                .map(|o| ([("output", Label::new(o.output.as_str()))], get(o))),
        )?;
    }
    Ok(())
}

/// A sink that stops on its first I/O error (reported at the end) while
/// the others go on (Kafka, which spills to disk on its own).
#[cfg(feature = "kafka")]
struct Slot<S> {
    sink: S,
    error: Option<std::io::Error>,
}

#[cfg(feature = "kafka")]
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
    #[cfg(feature = "kafka")]
    kafka: Option<Slot<mailtap_kafka::KafkaSink>>,
    extract: Option<ExtractSink>,
    ace: Option<AceSink>,
}

/// What the collector reports when the records stop.
struct Collected {
    logs: std::io::Result<BTreeMap<String, u64>>,
    rotation: mailtap_logs::RotationStats,
    #[cfg(feature = "kafka")]
    kafka: Option<mailtap_kafka::KafkaCounters>,
    extract: Option<ExtractCounters>,
    ace: Option<AceCounters>,
    sink_errors: Vec<(&'static str, String)>,
    /// What every file output wrote and lost.
    outputs: Vec<OutputReport>,
    /// The collector panicked while writing (what it wrote before is kept).
    panicked: bool,
}

/// Serves the Kafka sink (delivery reports, failed deliveries to the
/// spill, replay) and publishes its counters and delivery latencies.
#[cfg(feature = "kafka")]
fn poll_kafka(sink: &mut mailtap_kafka::KafkaSink, stats: &CollectorStats) {
    sink.poll();
    if let Ok(mut c) = stats.kafka.lock() {
        *c = Some(sink.counters());
    }
    sink.drain_delivery_latencies(|us| stats.kafka_delivery_latency.observe(us as f64 / 1e6));
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
            let Writer { sinks, .. } = &mut w;
            // Also while an output fails: reopening is how an operator
            // gets a fresh file once space is back.
            if reopen.swap(false, Ordering::Relaxed) {
                tracing::info!("SIGHUP: reopening the logs");
                if let Err(e) = sinks.logs.reopen() {
                    tracing::error!("reopening logs failed: {e}");
                }
            }
            if rotating {
                if let Err(e) = sinks.logs.tick(SystemTime::now()) {
                    tracing::error!("rotating logs failed: {e}");
                }
                for e in sinks.logs.take_rotation_errors() {
                    tracing::error!("log rotation: {e}");
                }
            }
            if last_flush.elapsed() >= FLUSH_INTERVAL {
                last_flush = Instant::now();
                // A failing file is tried again here when its back-off has
                // passed, even when no records come.
                let _ = sinks.logs.flush();
                report_notices(sinks);
                if let Ok(mut o) = stats.outputs.lock() {
                    *o = output_reports(sinks);
                }
            }
            let Some(batch) = batch else {
                #[cfg(feature = "kafka")]
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
    let Writer { mut sinks, .. } = w;
    let sink_errors = Vec::new();
    // Write errors at the end were reported as notices; what each output
    // lost is in its report.
    let mut outputs = Vec::new();
    let extract = sinks.extract.take().map(|x| {
        let (c, report, notices) = x.finish_reporting();
        notices.iter().for_each(log_notice);
        outputs.push(report);
        c
    });
    let ace = sinks.ace.take().map(|a| {
        let (c, report, notices) = a.finish_reporting();
        notices.iter().for_each(log_notice);
        outputs.push(report);
        c
    });
    let mut rotation = mailtap_logs::RotationStats::default();
    let logs = sinks.logs.finish().map(|stats| {
        rotation = stats.rotation;
        for e in &stats.rotation_errors {
            tracing::error!("log rotation: {e}");
        }
        stats.notices.iter().for_each(log_notice);
        let mut o = stats.outputs;
        o.append(&mut outputs);
        outputs = o;
        stats
            .rows
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    });
    // Kafka last: its flush may wait for the brokers (kafka.flush_timeout),
    // and the files must be complete whatever happens then.
    #[cfg_attr(not(feature = "kafka"), allow(unused_mut))]
    let mut sink_errors = sink_errors;
    #[cfg(feature = "kafka")]
    let kafka = sinks.kafka.map(|slot| {
        let (c, r) = slot.sink.finish();
        if let Some(e) = slot.error {
            sink_errors.push(("kafka", e.to_string()));
        } else if let Err(e) = r {
            sink_errors.push(("kafka", e.to_string()));
        }
        c
    });
    if let Ok(mut o) = stats.outputs.lock() {
        o.clone_from(&outputs);
    }
    Collected {
        logs,
        rotation,
        #[cfg(feature = "kafka")]
        kafka,
        extract,
        ace,
        sink_errors,
        outputs,
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
