//! mailtap's Kafka sink: its one job is to get every record the collector
//! hands it onto a Kafka topic, and to keep records on local disk rather
//! than lose them while the brokers cannot take them.
//!
//! # Messages
//!
//! One topic per record type ([`Topics`], default `mailtap.<type>`):
//!
//! | record | topic | value |
//! |---|---|---|
//! | `Conn`, `Smtp`, `Pop3`, `Imap`, `File`, `Weird` | `conn`, `smtp`, `pop3`, `imap`, `files`, `weird` | the `--log-format json` row ([`mailtap_logs::format_json_row`] with [`KafkaConfig::log_limits`]) |
//! | `Event` | `events` | the `--events` line ([`mailtap_logs::format_event`]) |
//! | `EmailData` + `EmailMeta` | `emails` | the `--extract-dir` `<uid>-<n>.json` document ([`mailtap_extract::json::message_json`]) plus the message bytes, see below |
//!
//! Values carry no trailing newline (a Kafka message is one record, not a
//! line); otherwise log rows and events are byte for byte what the file
//! sinks write. An `emails` value is the `.json` document's members, in its
//! order, as compact JSON on one line (the file is pretty-printed).
//! The key is the record's connection uid, so librdkafka's default
//! (key-hash) partitioner keeps a connection in one partition and in order;
//! records without a uid (some weirds, files not tied to a connection) have
//! no key.
//!
//! ## `emails`
//!
//! The bytes of a message arrive as `EmailData` chunks before the
//! `EmailMeta` that ends it; the sink buffers them per `(uid, n)` and sends
//! one message at the meta. To the metadata JSON it adds, as last members:
//!
//! * `"data_base64": "<RFC 4648 base64 of the message>"` when the whole
//!   message is at most [`KafkaConfig::email_inline_max`] bytes (default
//!   1 MiB), or
//! * `"data_truncated": true`, and `"eml_path": "<extract_dir>/<uid>-<n>.eml"`
//!   when [`KafkaConfig::extract_dir`] is set (the file `--extract-dir`
//!   writes), when the message is bigger. Buffering of such a message stops
//!   at the cap and what it held is freed. Buffers of all messages in
//!   progress together are also capped ([`KafkaConfig::email_buffer_max_bytes`]);
//!   a message that would exceed that is treated as over the cap.
//!
//! The bytes received are checked against the message's `size`: when they
//! differ (chunks lost between shard and sink), the JSON describes what
//! was received (`size`, `sha256` when buffered whole, else empty) with
//! `complete: false` and the shortfall added to `missing_bytes`, as the
//! extraction sink does.
//!
//! Messages still open at [`KafkaSink::finish`] are sent the way the
//! extraction sink finishes them: `complete: false`, `ts` and
//! `missing_bytes` null.
//!
//! # Delivery guarantees
//!
//! The producer runs with `acks=all` and `enable.idempotence=true`:
//! librdkafka's own retries (a broker bounced, a leader moved) neither lose
//! nor duplicate nor reorder a record. When librdkafka gives up on a record
//! (`message.timeout.ms`, default 30 s, passed) or its queue is full, the
//! record goes to the **spill**, a bounded disk queue in
//! [`KafkaConfig::spill_dir`]; from then on new records are appended behind
//! it too, so they stay in order. [`KafkaSink::poll`] replays the spill from
//! its head, first one record as a probe and then a window of records, and
//! returns to producing directly once it is empty. Spilled records are kept
//! across runs: [`KafkaSink::finish`] spills what was not delivered within
//! [`KafkaConfig::flush_timeout`], and the next [`KafkaSink::new`] on the
//! same directory replays it before anything new.
//!
//! Across a spill delivery is **at least once**: a record librdkafka gave up
//! on may still have reached the broker (it was sent, but the
//! acknowledgement did not come back in time); it is spilled and replayed
//! and then appears twice. A record that timed out while its broker was
//! unreachable was never sent and appears once (both are tested; the
//! first with the mock broker answering later than `socket.timeout.ms`). A record
//! that was in flight when a broker failed and fails only after later
//! records were spilled lands behind them. A record is lost only when the
//! spill is full ([`KafkaConfig::spill_max_bytes`]; counted in
//! [`KafkaCounters::spill_dropped`] and logged as an error) or when Kafka
//! refuses it for good (too large, not authorised: retrying cannot help;
//! [`KafkaCounters::failed_permanent`], logged).

mod encode;
mod sink;
mod spill;

pub use sink::KafkaSink;

/// The librdkafka binding this crate links, for tests of the crates above
/// (librdkafka's mock cluster) without a second dependency on it.
#[doc(hidden)]
pub use rdkafka;

use mailtap_logs::LogLimits;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Topic names per record type (`[kafka.topics]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub smtp: String,
    pub pop3: String,
    pub imap: String,
    pub conn: String,
    pub files: String,
    pub weird: String,
    pub events: String,
    pub emails: String,
    pub ssl: String,
    pub x509: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            smtp: "mailtap.smtp".into(),
            pop3: "mailtap.pop3".into(),
            imap: "mailtap.imap".into(),
            conn: "mailtap.conn".into(),
            files: "mailtap.files".into(),
            weird: "mailtap.weird".into(),
            events: "mailtap.events".into(),
            emails: "mailtap.emails".into(),
            ssl: "mailtap.ssl".into(),
            x509: "mailtap.x509".into(),
        }
    }
}

impl Topics {
    /// `(config key suffix, name)` of every topic.
    pub fn all(&self) -> [(&'static str, &str); 10] {
        [
            ("smtp", &self.smtp),
            ("pop3", &self.pop3),
            ("imap", &self.imap),
            ("conn", &self.conn),
            ("files", &self.files),
            ("weird", &self.weird),
            ("events", &self.events),
            ("emails", &self.emails),
            ("ssl", &self.ssl),
            ("x509", &self.x509),
        ]
    }
}

/// The librdkafka settings the sink starts from; [`KafkaConfig::librdkafka`]
/// entries are applied after them and win.
pub const LIBRDKAFKA_DEFAULTS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("compression.type", "lz4"),
    ("linger.ms", "20"),
    ("batch.num.messages", "10000"),
    ("message.timeout.ms", "30000"),
    // Bounds librdkafka's own buffer (its default is 1 GiB); past it
    // records go to the spill instead of growing memory.
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "262144"),
];

/// Everything the sink needs. `Default` has every default but `brokers`.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `kafka1:9092,kafka2:9092` (`--kafka`,
    /// `kafka.brokers`).
    pub brokers: String,
    pub topics: Topics,
    /// librdkafka properties (`kafka.*` keys other than ours), applied
    /// with `ClientConfig::set` after [`LIBRDKAFKA_DEFAULTS`].
    pub librdkafka: Vec<(String, String)>,
    /// The spill directory (created if missing).
    pub spill_dir: PathBuf,
    /// Most bytes the spill holds; records beyond are dropped and counted
    /// (default 1 GiB; 0 drops whatever cannot be delivered).
    pub spill_max_bytes: u64,
    /// Largest message sent inline as `data_base64` (default 1 MiB).
    pub email_inline_max: usize,
    /// Most email bytes buffered over all messages in progress (default
    /// 64 MiB).
    pub email_buffer_max_bytes: usize,
    /// `--extract-dir`, for `eml_path` of messages over the cap.
    pub extract_dir: Option<PathBuf>,
    /// At [`KafkaSink::finish`]: how long to wait for deliveries (and to
    /// drain the spill) before spilling what is left (default 10 s).
    pub flush_timeout: Duration,
    /// Zeek log writer limits for the JSON rows (use the log sink's).
    pub log_limits: LogLimits,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topics: Topics::default(),
            librdkafka: Vec::new(),
            spill_dir: PathBuf::from("kafka-spill"),
            spill_max_bytes: 1 << 30,
            email_inline_max: 1 << 20,
            email_buffer_max_bytes: 64 << 20,
            extract_dir: None,
            flush_timeout: Duration::from_secs(10),
            log_limits: LogLimits::default(),
        }
    }
}

impl KafkaConfig {
    /// Checks what librdkafka would not; errors name the config key.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers: no bootstrap servers given".into());
        }
        for (k, name) in self.topics.all() {
            if name.is_empty() || name.len() > 249 {
                return Err(format!("kafka.topics.{k}: must be 1 to 249 characters"));
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                || name == "."
                || name == ".."
            {
                return Err(format!(
                    "kafka.topics.{k}: {name:?} is not a valid Kafka topic name (ASCII letters, digits, '.', '_', '-')"
                ));
            }
        }
        if self.spill_dir.as_os_str().is_empty() {
            return Err("kafka.spill_dir: empty path".into());
        }
        if self.email_buffer_max_bytes < self.email_inline_max {
            return Err(format!(
                "kafka.email_buffer_max_bytes: {} is below kafka.email_inline_max ({})",
                self.email_buffer_max_bytes, self.email_inline_max
            ));
        }
        for (k, _) in &self.librdkafka {
            if k.is_empty() {
                return Err("kafka.*: empty librdkafka property name".into());
            }
        }
        Ok(())
    }
}

/// What the sink did (cumulative, except the gauges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaCounters {
    /// Kafka messages made from records (chunks of an email count once, in
    /// its message).
    pub records: u64,
    /// Hand-overs to librdkafka, replays included.
    pub produced: u64,
    /// Acknowledged by the brokers, replays included.
    pub delivered: u64,
    /// Delivery failures librdkafka gave up on (then spilled, or left in
    /// the spill when a replay failed).
    pub failed: u64,
    /// Refused for good (too large, not authorised...): dropped.
    pub failed_permanent: u64,
    /// Records appended to the spill.
    pub spilled: u64,
    /// Spilled records delivered.
    pub replayed: u64,
    /// Records dropped because the spill was full.
    pub spill_dropped: u64,
    /// Spilled records found at start (from an earlier run).
    pub spill_recovered: u64,
    /// Bytes of torn or corrupt spill records discarded at start.
    pub spill_torn_bytes: u64,
    /// Gauge: bytes in the spill now.
    pub spill_bytes: u64,
    /// Gauge: records in the spill now.
    pub spill_records: u64,
    /// Gauge: messages in librdkafka (queued or in flight).
    pub queue_depth: u64,
    /// `emails` messages with `data_base64`.
    pub emails_inline: u64,
    /// `emails` messages with `data_truncated`.
    pub emails_truncated: u64,
    /// `emails` messages whose received bytes differed from the size the
    /// analyzer reported (sent `complete: false`, shortfall in
    /// `missing_bytes`).
    pub emails_size_mismatch: u64,
    /// Message bytes that never reached the sink.
    pub email_bytes_lost: u64,
}

/// Errors of the sink.
#[derive(Debug)]
pub enum KafkaError {
    /// Bad configuration (the message names the key).
    Config(String),
    /// librdkafka refused to create the producer.
    Kafka(rdkafka::error::KafkaError),
    /// The spill directory failed.
    Io(std::io::Error),
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaError::Config(s) => write!(f, "kafka: {s}"),
            KafkaError::Kafka(e) => write!(f, "kafka: {e}"),
            KafkaError::Io(e) => write!(f, "kafka spill: {e}"),
        }
    }
}

impl std::error::Error for KafkaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KafkaError::Config(_) => None,
            KafkaError::Kafka(e) => Some(e),
            KafkaError::Io(e) => Some(e),
        }
    }
}

impl From<std::io::Error> for KafkaError {
    fn from(e: std::io::Error) -> Self {
        KafkaError::Io(e)
    }
}

impl From<rdkafka::error::KafkaError> for KafkaError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        KafkaError::Kafka(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_key() {
        assert!(KafkaConfig::default()
            .validate()
            .unwrap_err()
            .starts_with("kafka.brokers"));
        let ok = KafkaConfig {
            brokers: "localhost:9092".into(),
            ..KafkaConfig::default()
        };
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.topics.weird = "no spaces".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .starts_with("kafka.topics.weird"));
        let mut bad = ok.clone();
        bad.email_buffer_max_bytes = 10;
        assert!(bad
            .validate()
            .unwrap_err()
            .starts_with("kafka.email_buffer_max_bytes"));
        let mut bad = ok;
        bad.spill_dir = PathBuf::new();
        assert!(bad.validate().unwrap_err().starts_with("kafka.spill_dir"));
    }

    #[test]
    fn bad_librdkafka_property_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let cfg = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            spill_dir: d.path().to_path_buf(),
            librdkafka: vec![("no.such.property".into(), "1".into())],
            ..KafkaConfig::default()
        };
        let e = KafkaSink::new(cfg).err().expect("refused");
        assert!(e.to_string().contains("no.such.property"), "{e}");
    }
}
