//! The engine's settings, shared by `mailtap read` and `mailtap live`.

use crate::factory::MailAnalyzers;
use mailtap_extract::{AceConfig, ExtractConfig};
use mailtap_flow::{FlowConfig, LocalNets};
use mailtap_logs::{LogFormat, LogLimits};
use mailtap_wire::defrag::DefragConfig;
use std::path::PathBuf;

/// Everything a run needs, already validated.
#[derive(Clone)]
pub struct EngineConfig {
    /// Log rotation (`log.rotate_*`); default: none.
    pub rotation: mailtap_logs::RotationConfig,
    /// Set (by SIGHUP) to close and reopen every log at its name, as
    /// logrotate expects; the collector clears it.
    pub reopen_logs: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Shard worker threads (at least 1).
    pub workers: usize,
    /// Flow limits for the whole process; divided among shards.
    pub flow: FlowConfig,
    pub analyzers: MailAnalyzers,
    pub local: LocalNets,
    pub uid_salt: String,
    /// Secret key of the symmetric flow hash that picks a packet's shard
    /// (`mailtap read`, and `mailtap live` with `live.shard_by` flow-hash):
    /// random per run unless `general.flow_hash_key` is set, so nobody can
    /// aim every flow at one shard. Outputs do not depend on it.
    pub flow_hash_key: mailtap_wire::decode::FlowHashKey,
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
    /// `--metrics-listen`: serve Prometheus metrics on this address.
    pub metrics_listen: Option<String>,
    /// `--kafka`: records to Kafka topics.
    #[cfg(feature = "kafka")]
    pub kafka: Option<mailtap_kafka::KafkaConfig>,
    /// Events go to Kafka too (`kafka.events`).
    #[cfg(feature = "kafka")]
    pub kafka_events: bool,
    /// Messages go to Kafka's emails topic (`kafka.emails` not "off").
    #[cfg(feature = "kafka")]
    pub kafka_emails: bool,
    /// `--ace-dir`: ACE session transcripts.
    pub ace: Option<AceConfig>,
    /// Bytes of records on their way to the collector, at most
    /// (`general.collector_queue_bytes`; see [`crate::budget`]).
    pub collector_queue_bytes: u64,
}

/// `general.collector_queue_bytes` by default.
pub const DEFAULT_COLLECTOR_QUEUE_BYTES: u64 = 256 << 20;

/// Record batches a shard hands over at once, in bytes, at most and at
/// least: a batch is sent early once it holds a 64th of the queue's byte
/// budget (within these), so that no batch holds much of it.
const MAX_BATCH_BYTES: u64 = 4 << 20;
const MIN_BATCH_BYTES: u64 = 64 << 10;

impl EngineConfig {
    /// A new shard: its flow table (with `flow`, one shard's share of the
    /// limits) and its output, which builds events only when someone reads
    /// them (the event stream, ACE transcripts, Kafka's events topic when
    /// `kafka.events` is on)
    /// and message bytes only for extraction or Kafka's emails topic.
    pub(crate) fn new_shard(
        &self,
        flow: &FlowConfig,
        uids: &mailtap_flow::UidGenerator,
    ) -> (mailtap_flow::FlowTable<MailAnalyzers>, mailtap_core::Output) {
        let table = mailtap_flow::FlowTable::new(
            flow.clone(),
            self.analyzers.clone(),
            uids.clone(),
            self.local.clone(),
        );
        let (kafka_events, kafka_emails) = self.kafka_wants();
        let mut out =
            mailtap_core::Output::new(self.events.is_some() || self.ace.is_some() || kafka_events);
        out.extract_enabled = self.extract.is_some() || kafka_emails;
        // One budget for everything the shard buffers: reassembly in the
        // table, partial lines and MIME headers in the analyzers.
        out.buffers = table.buffer_budget().clone();
        (table, out)
    }

    /// Whether the Kafka sink takes (events, messages).
    #[cfg(feature = "kafka")]
    pub(crate) fn kafka_wants(&self) -> (bool, bool) {
        let on = self.kafka.is_some();
        (on && self.kafka_events, on && self.kafka_emails)
    }

    /// Without the `kafka` feature there is no Kafka sink.
    #[cfg(not(feature = "kafka"))]
    pub(crate) fn kafka_wants(&self) -> (bool, bool) {
        (false, false)
    }

    /// The bytes of records after which a shard (or live worker) hands
    /// its batch to the collector without waiting for the end of its
    /// capture block (or receive batch).
    pub(crate) fn record_batch_bytes(&self) -> usize {
        (self.collector_queue_bytes / 64).clamp(MIN_BATCH_BYTES, MAX_BATCH_BYTES) as usize
    }

    /// The flow limits of one of `shards` shards: the process-wide limits
    /// divided among them.
    pub(crate) fn shard_flow_config(&self, shards: usize) -> FlowConfig {
        let mut c = self.flow.clone();
        c.max_flows = (self.flow.max_flows / shards).max(1);
        c.reassembly_memory = (self.flow.reassembly_memory / shards).max(1);
        c.buffer_memory = (self.flow.buffer_memory / shards).max(1);
        c
    }
}
