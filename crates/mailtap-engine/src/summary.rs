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
    /// Rows written per log path (not the rows lost to write errors).
    pub log_rows: BTreeMap<String, u64>,
    /// What every file output (each log, the event stream, extraction,
    /// ACE) wrote and lost to write errors (a full disk).
    pub outputs: Vec<mailtap_core::output::OutputReport>,
    /// The extraction sink's counters, when `--extract-dir` was given.
    pub extract: Option<ExtractCounters>,
    /// The ACE sink's counters, when `--ace-dir` was given.
    pub ace: Option<AceCounters>,
    /// Sinks that stopped on an I/O error (name, error); the run goes on
    /// without them (Kafka; the file outputs survive write errors, see
    /// `outputs`).
    pub sink_errors: Vec<(&'static str, String)>,
    /// The Kafka sink's counters, when `--kafka` was given.
    #[cfg(feature = "kafka")]
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
    /// How the run's connections began and ended, for the final summary
    /// (`flows: ...`): only the counts that are not zero, after the total.
    pub fn flow_line(&self) -> String {
        let f = &self.flow;
        let mut parts = vec![format!("{} created", f.flows_created)];
        for (name, v) in [
            ("not begun by a SYN", f.flows_partial),
            ("analysed from mid-stream", f.flows_midstream),
            ("ended by a reused 4-tuple", f.flows_reused),
            ("closed", f.flows_closed),
            ("timed out", f.flows_timed_out),
            ("unanswered attempts expired", f.flows_attempts_expired),
            ("evicted", f.flows_evicted),
            (
                "of them active, with analyzer state",
                f.flows_evicted_active,
            ),
            ("flushed at the end", f.flows_flushed_at_end),
        ] {
            if v > 0 {
                parts.push(format!("{v} {name}"));
            }
        }
        if f.buffer_refusals > 0 {
            // The input-buffer budget was spent at some point: say how
            // much was held at most (per shard, summed).
            parts.push(format!(
                "input buffers peaked at {:.1} MiB (flow.buffer_memory spent {} times: lines and headers cut, chunks handed over early, holes given up, IMAP COMPRESS sessions left unanalysed)",
                f.buffer_peak_bytes as f64 / (1 << 20) as f64,
                f.buffer_refusals
            ));
        }
        format!("flows: {}", parts.join(", "))
    }

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
            ("flow.evicted_active", f.flows_evicted_active),
            ("reassembly.forced_gaps", f.forced_gaps),
            ("tcp.bad_checksum", f.bad_checksums),
        ] {
            if v > 0 {
                d.insert(k.to_string(), v);
            }
        }
        if self.records_dropped > 0 {
            d.insert("collector.records_dropped".into(), self.records_dropped);
            for (class, v) in crate::outbox::SHED_CLASSES
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
        for o in &self.outputs {
            if o.lost > 0 {
                d.insert(format!("output.{}", o.output), o.lost);
            }
        }
        #[cfg(feature = "kafka")]
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

impl Summary {
    /// The file outputs that met write errors during the run.
    pub fn failed_outputs(&self) -> impl Iterator<Item = &mailtap_core::output::OutputReport> {
        self.outputs.iter().filter(|o| o.failures > 0)
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
    #[cfg(feature = "live")]
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
            #[cfg(feature = "live")]
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
    // Destructured so that a counter added to FlowCounters and not
    // summed here does not compile.
    let FlowCounters {
        packets,
        payload_bytes,
        flows_created,
        flows_partial,
        flows_midstream,
        flows_reused,
        flows_closed,
        flows_timed_out,
        flows_attempts_expired,
        flows_evicted,
        flows_evicted_active,
        flows_flushed_at_end,
        analyzers_by_port,
        analyzers_by_detection,
        gap_bytes,
        forced_gaps,
        inconsistent_overlaps,
        reassembly_peak_bytes,
        buffer_peak_bytes,
        buffer_refusals,
        bad_checksums,
        bypassed_flows,
        bypassed_kernel_flows,
        bypass_kernel_refused,
        bypassed_packets,
        bypassed_bytes,
        bypass_leaked_packets,
    } = b;
    a.packets += packets;
    a.payload_bytes += payload_bytes;
    a.flows_created += flows_created;
    a.flows_partial += flows_partial;
    a.flows_midstream += flows_midstream;
    a.flows_reused += flows_reused;
    a.flows_closed += flows_closed;
    a.flows_timed_out += flows_timed_out;
    a.flows_attempts_expired += flows_attempts_expired;
    a.flows_evicted += flows_evicted;
    a.flows_evicted_active += flows_evicted_active;
    a.flows_flushed_at_end += flows_flushed_at_end;
    a.analyzers_by_port += analyzers_by_port;
    a.analyzers_by_detection += analyzers_by_detection;
    a.gap_bytes += gap_bytes;
    a.forced_gaps += forced_gaps;
    a.inconsistent_overlaps += inconsistent_overlaps;
    a.reassembly_peak_bytes += reassembly_peak_bytes;
    a.buffer_peak_bytes += buffer_peak_bytes;
    a.buffer_refusals += buffer_refusals;
    a.bad_checksums += bad_checksums;
    a.bypassed_flows += bypassed_flows;
    a.bypassed_kernel_flows += bypassed_kernel_flows;
    a.bypass_kernel_refused += bypass_kernel_refused;
    a.bypassed_packets += bypassed_packets;
    a.bypassed_bytes += bypassed_bytes;
    a.bypass_leaked_packets += bypass_leaked_packets;
}

/// Adds one shard's output counters to the run's.
pub(crate) fn add_output(a: &mut OutputCounters, b: &OutputCounters) {
    a.records += b.records;
    a.events += b.events;
    a.weirds += b.weirds;
    a.weirds_suppressed += b.weirds_suppressed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_flow_counters_add_up_and_show_in_the_flow_line() {
        let shard = FlowCounters {
            flows_created: 5,
            flows_partial: 2,
            flows_midstream: 1,
            flows_reused: 1,
            flows_attempts_expired: 3,
            flows_evicted: 2,
            flows_evicted_active: 1,
            ..FlowCounters::default()
        };
        let mut s = Summary::default();
        add_flow(&mut s.flow, &shard);
        add_flow(&mut s.flow, &shard);
        assert_eq!(
            s.flow_line(),
            "flows: 10 created, 4 not begun by a SYN, 2 analysed from mid-stream, \
             2 ended by a reused 4-tuple, 6 unanswered attempts expired, 4 evicted, \
             2 of them active, with analyzer state"
        );
        assert_eq!(s.drops().get("flow.evicted_active"), Some(&2));
        assert_eq!(
            Summary::default().flow_line(),
            "flows: 0 created",
            "zero counts are left out"
        );
    }
}
