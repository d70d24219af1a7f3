//! The configuration file (TOML) and `--set KEY=VALUE` overrides.
//!
//! Every key lives in a section (`smtp.max_invalid_mail_transactions`);
//! Zeek's tunables keep Zeek's names. Unknown keys and bad values are
//! errors that name the key. docs/configuration.md lists every key.
//!
//! Sections with more than a few keys have their own file (`live`,
//! `kafka`); `engine` maps the whole configuration to the engine's
//! settings (the one place that does), `salt` keeps the installation's uid
//! salt.

use anyhow::{anyhow, bail, Context, Result};
use mailtap_flow::FlowConfig;
use mailtap_imap::ImapConfig;
use mailtap_mime::FilesConfig;
use mailtap_pop3::Pop3Config;
use mailtap_smtp::SmtpConfig;
use mailtap_tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod engine;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "live")]
mod live;
mod salt;

pub use engine::engine_config;
#[cfg(feature = "live")]
pub use engine::live_config;

#[cfg(feature = "kafka")]
pub use kafka::Kafka;
#[cfg(feature = "live")]
pub use live::Live;

/// Without the `kafka` feature the `[kafka]` section is accepted and kept
/// as written, unchecked (a configuration works with either build); using
/// it (`kafka.brokers`, `--kafka`) is an error naming the feature.
#[cfg(not(feature = "kafka"))]
pub type Kafka = toml::Table;
/// Without the `live` feature the `[live]` section is accepted and kept as
/// written, unchecked; `mailtap live` says this build cannot capture.
#[cfg(not(feature = "live"))]
pub type Live = toml::Table;

/// The error for Kafka output asked for (`--kafka`, or `kafka.brokers`
/// set) in a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub fn no_kafka(section: &Kafka, cli_brokers: Option<&str>) -> Result<()> {
    let configured = section
        .get("brokers")
        .and_then(toml::Value::as_str)
        .is_some_and(|b| !b.trim().is_empty());
    let what = match (cli_brokers, configured) {
        (Some(_), _) => "--kafka",
        (None, true) => "kafka.brokers",
        (None, false) => return Ok(()),
    };
    bail!("{what}: this mailtap was built without Kafka output (the `kafka` feature); a build with default features has it (README.md, \"Building without live capture or Kafka\")")
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub general: General,
    pub capture: Capture,
    pub flow: FlowConfig,
    pub defrag: Defrag,
    pub dpd: Dpd,
    pub site: Site,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Config,
    pub imap: ImapConfig,
    pub ssl: TlsConfig,
    pub files: FilesConfig,
    pub log: Log,
    pub extract: Extract,
    pub ace: Ace,
    pub live: Live,
    pub kafka: Kafka,
}

/// `--extract-dir` tuning (docs/outputs.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Extract {
    /// Temporary message files kept open at once.
    pub max_open_files: usize,
}

impl Default for Extract {
    fn default() -> Self {
        Extract { max_open_files: 64 }
    }
}

/// `--ace-dir` transcripts (docs/outputs.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ace {
    /// Connections with either port in this list are recorded (ACE's
    /// `record_smtp_stream` records 25 only).
    pub ports: Vec<u16>,
    /// Session files kept open at once.
    pub max_open_files: usize,
}

impl Default for Ace {
    fn default() -> Self {
        Ace {
            ports: vec![25],
            max_open_files: 64,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct General {
    /// Mixed into connection uids; give each sensor its own to make uids
    /// differ between sensors that see the same traffic. Empty (the
    /// default): a random salt made once per installation and kept in
    /// `<state dir>/uid_salt` (see docs/configuration.md), so uids (and the
    /// names of extracted files) cannot be predicted from the traffic.
    pub uid_salt: String,
    /// Key of the symmetric flow hash that picks a packet's shard. Empty
    /// (the default): a random key per run, so nobody can aim every flow
    /// at one shard. Outputs are the same whatever the key.
    pub flow_hash_key: String,
    /// Bytes of records on their way from the shards (live workers) to
    /// the collector, at most: a read waits, a live worker keeps them in
    /// its backlog (bounded by this divided among the workers) and sheds
    /// by class past it (`live.collector_overflow`).
    pub collector_queue_bytes: u64,
}

impl Default for General {
    fn default() -> Self {
        General {
            uid_salt: String::new(),
            flow_hash_key: String::new(),
            collector_queue_bytes: mailtap_engine::DEFAULT_COLLECTOR_QUEUE_BYTES,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capture {
    /// Verify IPv4 and TCP checksums (off: offloading makes captures
    /// full of bad checksums).
    pub verify_checksums: bool,
    /// Bytes of capture data per block handed to the shards.
    pub block_bytes: usize,
    /// Blocks in flight per worker: bounds reader memory.
    pub blocks_per_worker: usize,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            verify_checksums: false,
            block_bytes: 2 << 20,
            blocks_per_worker: 4,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defrag {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    /// Seconds an incomplete datagram is kept.
    pub timeout: f64,
}

impl Default for Defrag {
    fn default() -> Self {
        Defrag {
            max_datagrams: 4096,
            max_bytes: 16 << 20,
            timeout: 30.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dpd {
    /// Detect SMTP on any port (HELO/EHLO answered by 220).
    pub enabled: bool,
}

impl Default for Dpd {
    fn default() -> Self {
        Dpd { enabled: true }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Site {
    /// Networks considered local (Zeek `Site::local_nets`), CIDR strings.
    pub local_nets: Vec<String>,
    /// Private, loopback and link-local ranges count as local (Zeek's
    /// `Site::private_address_space_is_local`).
    pub private_address_space_is_local: bool,
}

impl Default for Site {
    fn default() -> Self {
        Site {
            local_nets: Vec::new(),
            private_address_space_is_local: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// Zeek's `Log::max_field_string_bytes`.
    pub max_field_string_bytes: usize,
    /// Zeek's `Log::max_field_container_elements`.
    pub max_field_container_elements: usize,
    /// Zeek's `Log::max_total_container_elements`.
    pub max_total_container_elements: usize,
    /// Zeek's `Log::max_total_string_bytes`.
    pub max_total_string_bytes: usize,
    /// Seconds between rotations, aligned to the clock (Zeek's
    /// `Log::default_rotation_interval`); 0: no interval rotation.
    pub rotate_interval: f64,
    /// Rotate a log once it passes this many bytes; 0: no size rotation.
    pub rotate_max_bytes: u64,
    /// Command run (`sh -c`) after each rotation, the rotated file as `$1`.
    pub post_rotate: String,
}

impl Log {
    /// Zeek's field and container limits for every log row (files, events
    /// and Kafka values alike).
    pub fn limits(&self) -> mailtap_logs::LogLimits {
        mailtap_logs::LogLimits {
            max_string_bytes: self.max_field_string_bytes,
            max_container_elements: self.max_field_container_elements,
            max_total_container_elements: self.max_total_container_elements,
            max_total_string_bytes: self.max_total_string_bytes,
        }
    }

    pub fn rotation(&self) -> Result<mailtap_logs::RotationConfig> {
        if !(self.rotate_interval.is_finite() && self.rotate_interval >= 0.0) {
            bail!("configuration: log.rotate_interval must be a non-negative number of seconds");
        }
        let r = mailtap_logs::RotationConfig {
            interval: (self.rotate_interval > 0.0)
                .then(|| std::time::Duration::from_secs_f64(self.rotate_interval)),
            max_bytes: (self.rotate_max_bytes > 0).then_some(self.rotate_max_bytes),
            post_rotate: (!self.post_rotate.is_empty()).then(|| self.post_rotate.clone()),
        };
        r.validate().map_err(|e| anyhow!("configuration: {e}"))?;
        Ok(r)
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            max_field_string_bytes: 4096,
            max_field_container_elements: 100,
            max_total_container_elements: 500,
            max_total_string_bytes: 256000,
            rotate_interval: 0.0,
            rotate_max_bytes: 0,
            post_rotate: String::new(),
        }
    }
}

impl Config {
    /// Loads the optional file, applies the `--set` overrides in order and
    /// validates the result.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Config> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("config file {}", p.display()))?
            }
            None => toml::Table::new(),
        };
        for s in sets {
            apply_set(&mut table, s)?;
        }
        let cfg = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow!("configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The sections this configuration sets that this build keeps without
    /// checking, because the feature that reads them is not in it:
    /// `(section, feature)`.
    pub fn unchecked_sections(&self) -> Vec<(&'static str, &'static str)> {
        #[allow(unused_mut)]
        let mut v = Vec::new();
        #[cfg(not(feature = "live"))]
        if !self.live.is_empty() {
            v.push(("live", "live"));
        }
        #[cfg(not(feature = "kafka"))]
        if !self.kafka.is_empty() {
            v.push(("kafka", "kafka"));
        }
        v
    }

    pub fn validate(&self) -> Result<()> {
        self.flow
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        self.smtp
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        self.pop3
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        self.imap
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        self.files
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        self.ssl
            .validate()
            .map_err(|e| anyhow!("configuration: {e}"))?;
        for n in &self.site.local_nets {
            mailtap_flow::site::parse_cidr(n)
                .map_err(|e| anyhow!("configuration: site.local_nets: {e}"))?;
        }
        if self.general.collector_queue_bytes < 1 << 20 {
            bail!("configuration: general.collector_queue_bytes must be at least 1048576");
        }
        if self.capture.block_bytes < 64 << 10 || self.capture.block_bytes > 256 << 20 {
            bail!("configuration: capture.block_bytes must be between 65536 and 268435456");
        }
        if self.extract.max_open_files == 0 || self.ace.max_open_files == 0 {
            bail!(
                "configuration: extract.max_open_files and ace.max_open_files must be at least 1"
            );
        }
        #[cfg(feature = "live")]
        self.live.validate()?;
        self.log.rotation()?;
        if !(self.defrag.timeout.is_finite() && self.defrag.timeout >= 0.0) {
            bail!("configuration: defrag.timeout must be a non-negative number of seconds");
        }
        Ok(())
    }
}

/// Applies one `section.key=value`. The value is read as a TOML value
/// (`true`, `3`, `[25, 587]`, `"x"`); anything that is not valid TOML is
/// taken as a plain string.
fn apply_set(table: &mut toml::Table, s: &str) -> Result<()> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {s}: expected KEY=VALUE"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("--set {s}: the key must be SECTION.NAME, e.g. smtp.max_invalid_mail_transactions");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| anyhow!("--set {s}: `{p}` is not a section"))?;
    }
    // Check this key alone, so that an error names exactly this --set.
    let mut alone = toml::Table::new();
    let mut inner = toml::Table::new();
    inner.insert(parts[parts.len() - 1].to_string(), value.clone());
    for p in parts[..parts.len() - 1].iter().rev() {
        let mut t = toml::Table::new();
        t.insert(p.to_string(), toml::Value::Table(inner));
        inner = t;
    }
    alone.extend(inner);
    Config::deserialize(toml::Value::Table(alone)).map_err(|e| anyhow!("--set {s}: {e}"))?;
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(None, &sets)
    }

    #[test]
    fn flow_hash_key_and_uid_salt_are_general_keys() {
        let c = load(&["general.flow_hash_key=abc", "general.uid_salt=s1"]).unwrap();
        assert_eq!(c.general.flow_hash_key, "abc");
        assert_eq!(c.general.uid_salt, "s1");
        let d = load(&[]).unwrap();
        assert!(d.general.flow_hash_key.is_empty() && d.general.uid_salt.is_empty());
    }
}
