//! The `[kafka]` section: the Kafka sink's settings (`--kafka` or
//! `kafka.brokers`; docs/outputs.md). Only in builds with the `kafka`
//! feature; without it the section is kept as written (see `super::Kafka`).

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The Kafka sink (`--kafka` or `kafka.brokers`; docs/outputs.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// Bootstrap servers; empty: no Kafka sink unless `--kafka` is given.
    pub brokers: String,
    pub topics: mailtap_kafka::Topics,
    /// Spill directory for records the brokers cannot take; empty:
    /// `<out>/kafka-spill`.
    pub spill_dir: String,
    /// Most bytes spilled; beyond, records are dropped and counted.
    pub spill_max_bytes: u64,
    /// Largest message sent inline (base64) on the emails topic.
    pub email_inline_max: usize,
    /// Most email bytes buffered for the emails topic at once.
    pub email_buffer_max_bytes: usize,
    /// Seconds to wait for deliveries at exit before spilling the rest.
    pub flush_timeout: f64,
    /// Also send every event (the events topic). Off by default: SMTP
    /// and POP3 raise one event per message line (smtp_data, pop3_data),
    /// millions on a busy link, while the messages themselves go to the
    /// emails topic whole.
    pub events: bool,
    /// The emails topic: "inline" (message bytes in the value, up to
    /// email_inline_max), "reference" (only `eml_path` into the
    /// `--extract-dir`, which it needs), or "off".
    pub emails: KafkaEmails,
    /// librdkafka properties passed through as they are, e.g.
    /// `[kafka.librdkafka]` `"linger.ms" = 50` or
    /// `--set kafka.librdkafka.linger.ms=50` (nested keys join with dots).
    pub librdkafka: toml::Table,
}

impl Default for Kafka {
    fn default() -> Self {
        let k = mailtap_kafka::KafkaConfig::default();
        Kafka {
            brokers: String::new(),
            topics: mailtap_kafka::Topics::default(),
            spill_dir: String::new(),
            spill_max_bytes: k.spill_max_bytes,
            email_inline_max: k.email_inline_max,
            email_buffer_max_bytes: k.email_buffer_max_bytes,
            flush_timeout: k.flush_timeout.as_secs_f64(),
            events: false,
            emails: KafkaEmails::Inline,
            librdkafka: toml::Table::new(),
        }
    }
}

// Enum-like settings are enums, so that a bad value fails deserialization
// (`mailtap config check` and startup) with serde's "unknown variant `x`,
// expected one of ..." after the key: the accepted values are listed.

/// `kafka.emails`: what the emails topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaEmails {
    /// The message bytes in the value, up to `kafka.email_inline_max`.
    Inline,
    /// Only `eml_path` into the `--extract-dir`, which it needs.
    Reference,
    /// No emails topic.
    Off,
}

/// Flattens `{linger: {ms: 50}}` into `("linger.ms", "50")`.
fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

impl Kafka {
    /// Whether messages go to the emails topic.
    pub fn emails_on(&self) -> bool {
        self.emails != KafkaEmails::Off
    }

    /// The sink's configuration, when Kafka is on (`brokers` from
    /// `--kafka` wins over `kafka.brokers`).
    pub fn sink(
        &self,
        brokers: Option<&str>,
        out_dir: &Path,
        extract_dir: Option<&Path>,
        log_limits: mailtap_logs::LogLimits,
    ) -> Result<Option<mailtap_kafka::KafkaConfig>> {
        let brokers = brokers.unwrap_or(&self.brokers).trim().to_string();
        if brokers.is_empty() {
            return Ok(None);
        }
        if !(self.flush_timeout.is_finite()
            && self.flush_timeout >= 0.0
            && self.flush_timeout <= 3600.0)
        {
            bail!("configuration: kafka.flush_timeout must be between 0 and 3600 seconds");
        }
        let mut librdkafka = Vec::new();
        flatten("", &self.librdkafka, &mut librdkafka);
        let inline_max = match self.emails {
            KafkaEmails::Inline | KafkaEmails::Off => self.email_inline_max,
            KafkaEmails::Reference if extract_dir.is_some() => 0,
            KafkaEmails::Reference => bail!(
                "configuration: kafka.emails = \"reference\" needs --extract-dir (the reference is the .eml path there)"
            ),
        };
        let cfg = mailtap_kafka::KafkaConfig {
            brokers,
            topics: self.topics.clone(),
            librdkafka,
            spill_dir: if self.spill_dir.is_empty() {
                out_dir.join("kafka-spill")
            } else {
                self.spill_dir.clone().into()
            },
            spill_max_bytes: self.spill_max_bytes,
            email_inline_max: inline_max,
            email_buffer_max_bytes: self.email_buffer_max_bytes,
            extract_dir: extract_dir.map(Path::to_path_buf),
            flush_timeout: std::time::Duration::from_secs_f64(self.flush_timeout),
            log_limits,
        };
        cfg.validate().map_err(|e| anyhow!("configuration: {e}"))?;
        Ok(Some(cfg))
    }
}
