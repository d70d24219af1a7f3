//! What a run did, and the errors that end one early.

use mailtap_core::analyzer::OutputCounters;
use mailtap_extract::{AceCounters, ExtractCounters};
use mailtap_flow::FlowCounters;
use mailtap_wire::source::SourceError;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// The Kafka sink's counters, when `--kafka` was given.
    pub kafka: Option<mailtap_kafka::KafkaCounters>,
    /// Log rotations and post-rotation commands.
    pub log_rotation: mailtap_logs::RotationStats,
    /// Records dropped because the collector could not keep up (live
    /// overload; `mailtap read` only in its test-only overflow mode),
    /// total and by class (events, weird, files/ssl/x509, message bytes,
    /// smtp/pop3/conn, message metadata).
    pub records_dropped: u64,
    pub records_dropped_by_class: [u64; 6],
    /// Message bytes dropped that way, and the messages marked incomplete
    /// because of it.
    pub email_bytes_dropped: u64,
    pub messages_marked_incomplete: u64,
    pub elapsed: Duration,
    /// `mailtap read` stopped (SIGINT/SIGTERM) before the end of its input.
    pub interrupted: bool,
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
        if self.records_dropped > 0 {
            d.insert("collector.records_dropped".into(), self.records_dropped);
            for (class, v) in crate::live::SHED_CLASSES
                .iter()
                .zip(self.records_dropped_by_class)
            {
                if v > 0 {
                    d.insert(format!("collector.dropped.{class}"), v);
                }
            }
            for (name, v) in [
                ("collector.email_bytes_dropped", self.email_bytes_dropped),
                (
                    "collector.messages_marked_incomplete",
                    self.messages_marked_incomplete,
                ),
            ] {
                if v > 0 {
                    d.insert(name.into(), v);
                }
            }
        }
        if let Some(x) = &self.extract {
            for (name, v) in [
                ("extract.size_mismatch", x.size_mismatch),
                ("extract.bytes_lost", x.bytes_lost),
                ("extract.finished_without_meta", x.finished_without_meta),
            ] {
                if v > 0 {
                    d.insert(name.to_string(), v);
                }
            }
        }
        if let Some(k) = &self.kafka {
            for (name, v) in [
                ("kafka.spill_dropped", k.spill_dropped),
                ("kafka.failed_permanent", k.failed_permanent),
                ("kafka.emails_size_mismatch", k.emails_size_mismatch),
                ("kafka.email_bytes_lost", k.email_bytes_lost),
            ] {
                if v > 0 {
                    d.insert(name.to_string(), v);
                }
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
    /// Live capture could not be set up or failed (names the interface).
    Capture(mailtap_capture::CaptureError),
    /// A thread panicked (names it): a bug. Everything the other threads
    /// had is still written.
    Panic(&'static str),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Source(e) => write!(f, "{e}"),
            EngineError::Logs(e) => write!(f, "writing logs: {e}"),
            EngineError::Sink(e) => write!(f, "{e}"),
            EngineError::Capture(e) => write!(f, "{e}"),
            EngineError::Panic(t) => write!(
                f,
                "internal error: {t} thread panicked (a bug; the logs hold what the other threads wrote)"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

/// Adds one shard's flow counters to the run's.
pub(crate) fn add_flow(a: &mut FlowCounters, b: &FlowCounters) {
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
    a.bypassed_flows += b.bypassed_flows;
    a.bypassed_kernel_flows += b.bypassed_kernel_flows;
    a.bypass_kernel_refused += b.bypass_kernel_refused;
    a.bypassed_packets += b.bypassed_packets;
    a.bypassed_bytes += b.bypassed_bytes;
    a.bypass_leaked_packets += b.bypass_leaked_packets;
}

/// Adds one shard's output counters to the run's.
pub(crate) fn add_output(a: &mut OutputCounters, b: &OutputCounters) {
    a.records += b.records;
    a.events += b.events;
    a.weirds += b.weirds;
    a.weirds_suppressed += b.weirds_suppressed;
}
