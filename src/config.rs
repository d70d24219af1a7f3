//! The configuration file (TOML) and `--set KEY=VALUE` overrides.
//!
//! Every key lives in a section (`smtp.max_invalid_mail_transactions`);
//! Zeek's tunables keep Zeek's names. Unknown keys and bad values are
//! errors that name the key. docs/configuration.md lists every key.

use anyhow::{anyhow, bail, Context, Result};
use mailtap_flow::FlowConfig;
use mailtap_mime::FilesConfig;
use mailtap_pop3::Pop3Config;
use mailtap_smtp::SmtpConfig;
use mailtap_tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    pub ssl: TlsConfig,
    pub files: FilesConfig,
    pub log: Log,
    pub extract: Extract,
    pub ace: Ace,
    pub live: Live,
    pub kafka: Kafka,
}

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
    pub emails: String,
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
            emails: "inline".into(),
            librdkafka: toml::Table::new(),
        }
    }
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
        self.emails != "off"
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
        let inline_max = match self.emails.as_str() {
            "inline" | "off" => self.email_inline_max,
            "reference" if extract_dir.is_some() => 0,
            "reference" => bail!(
                "configuration: kafka.emails = \"reference\" needs --extract-dir (the reference is the .eml path there)"
            ),
            o => bail!("configuration: kafka.emails = {o:?}: must be inline, reference or off"),
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

/// `mailtap live` rings, buffers and batching (docs/operations.md).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Live {
    /// AF_XDP: UMEM frames per queue.
    pub xdp_frame_count: u32,
    /// AF_XDP: bytes per UMEM frame (2048 or 4096).
    pub xdp_frame_size: u32,
    /// AF_XDP: RX ring entries per socket (power of two).
    pub xdp_rx_ring: u32,
    /// AF_XDP: fill ring entries per UMEM (power of two).
    pub xdp_fill_ring: u32,
    /// AF_XDP: back the UMEM with huge pages.
    pub xdp_huge_pages: bool,
    /// AF_XDP busy polling: off, auto (when the kernel allows it), on
    /// (fail when it does not).
    pub xdp_busy_poll: String,
    /// AF_XDP: SO_BUSY_POLL microseconds.
    pub xdp_busy_poll_usecs: u32,
    /// AF_XDP: SO_BUSY_POLL_BUDGET packets.
    pub xdp_busy_poll_budget: u32,
    /// AF_PACKET: bytes per TPACKET_V3 block (multiple of the page size, power of two).
    pub afpacket_block_size: u32,
    /// AF_PACKET: blocks per ring.
    pub afpacket_block_count: u32,
    /// AF_PACKET: frame size hint.
    pub afpacket_frame_size: u32,
    /// AF_PACKET: milliseconds before a partly filled block is handed over.
    pub afpacket_block_timeout_ms: u32,
    /// AF_PACKET: bytes kept of each packet.
    pub afpacket_snaplen: u32,
    /// AF_PACKET: fanout mode: hash (kernel's symmetric flow hash), qm (NIC queue), cpu.
    pub afpacket_fanout: String,
    /// AF_PACKET: put the interface in promiscuous mode.
    pub afpacket_promiscuous: bool,
    /// Which TCP the XDP program sends to mailtap: auto (all TCP when
    /// dpd.enabled, else mail ports), mail-ports (the smtp/pop3/ace
    /// ports; everything else stays with the host), all-tcp.
    pub xdp_steer: String,
    /// AF_XDP on an interface where the host itself listens on a steered
    /// port (its mail services would receive nothing): refuse (default,
    /// an error naming the listeners) or allow (a warning).
    pub xdp_host_services: String,
    /// Which shard owns a packet: auto, queue (trust the capture to keep
    /// flows together), flow-hash (mailtap's symmetric hash; always right).
    pub shard_by: String,
    /// Packets taken from a ring per batch.
    pub batch_packets: usize,
    /// Bytes per handoff buffer (packets moved to another shard).
    pub handoff_buffer_bytes: usize,
    /// Handoff buffers per worker; a packet that finds none is dropped and counted.
    pub handoff_buffers: usize,
    /// Record batches a worker keeps while the collector is behind.
    pub record_backlog: usize,
    /// What a worker does when its backlog is full: "drop" (count the
    /// oldest batch and go on reading packets) or "block" (wait; the
    /// kernel's ring then fills and drops packets).
    pub collector_overflow: String,
    /// Kernel bypass of connections whose TLS handshake is over: auto
    /// (drop on an interface without addresses, i.e. a mirror or tap port;
    /// pass to the host on one with addresses), drop, pass, off.
    pub bypass: String,
    /// Connections the kernel's bypass map holds (about 304 bytes of
    /// kernel memory each); when it is full, connections are bypassed in
    /// user space only.
    pub bypass_connections: u32,
}

impl Default for Live {
    fn default() -> Self {
        let x = mailtap_capture::afxdp::XdpQueueConfig::default();
        let p = mailtap_capture::afpacket::PacketRingConfig::default();
        Live {
            xdp_frame_count: x.frame_count,
            xdp_frame_size: x.frame_size,
            xdp_rx_ring: x.rx_ring,
            xdp_fill_ring: x.fill_ring,
            xdp_huge_pages: x.huge_pages,
            xdp_busy_poll: match x.busy_poll {
                mailtap_capture::afxdp::BusyPoll::Off => "off",
                mailtap_capture::afxdp::BusyPoll::Auto => "auto",
                mailtap_capture::afxdp::BusyPoll::On => "on",
            }
            .into(),
            xdp_busy_poll_usecs: x.busy_poll_usecs,
            xdp_busy_poll_budget: x.busy_poll_budget,
            afpacket_block_size: p.block_size,
            afpacket_block_count: p.block_count,
            afpacket_frame_size: p.frame_size,
            afpacket_block_timeout_ms: p.block_timeout_ms,
            afpacket_snaplen: p.snaplen,
            afpacket_fanout: "hash".into(),
            afpacket_promiscuous: p.promiscuous,
            xdp_steer: "auto".into(),
            xdp_host_services: "refuse".into(),
            shard_by: "auto".into(),
            batch_packets: 256,
            handoff_buffer_bytes: 256 << 10,
            handoff_buffers: 32,
            record_backlog: 256,
            collector_overflow: "drop".into(),
            bypass: "auto".into(),
            bypass_connections: 65_536,
        }
    }
}

impl Live {
    /// The AF_XDP queue settings (zero-copy comes from the command line).
    pub fn xdp(
        &self,
        zero_copy: mailtap_capture::afxdp::ZeroCopy,
    ) -> mailtap_capture::afxdp::XdpQueueConfig {
        mailtap_capture::afxdp::XdpQueueConfig {
            frame_count: self.xdp_frame_count,
            frame_size: self.xdp_frame_size,
            rx_ring: self.xdp_rx_ring,
            fill_ring: self.xdp_fill_ring,
            zero_copy,
            huge_pages: self.xdp_huge_pages,
            // Validated by Config::load.
            busy_poll: self
                .xdp_busy_poll()
                .unwrap_or(mailtap_capture::afxdp::BusyPoll::Off),
            busy_poll_usecs: self.xdp_busy_poll_usecs,
            busy_poll_budget: self.xdp_busy_poll_budget,
        }
    }

    pub fn xdp_busy_poll(&self) -> Result<mailtap_capture::afxdp::BusyPoll> {
        self.xdp_busy_poll
            .parse()
            .map_err(|e| anyhow!("configuration: live.xdp_busy_poll: {e}"))
    }

    /// The AF_PACKET ring settings (the fanout group is the engine's).
    pub fn ring(&self) -> mailtap_capture::afpacket::PacketRingConfig {
        mailtap_capture::afpacket::PacketRingConfig {
            block_size: self.afpacket_block_size,
            block_count: self.afpacket_block_count,
            frame_size: self.afpacket_frame_size,
            block_timeout_ms: self.afpacket_block_timeout_ms,
            snaplen: self.afpacket_snaplen,
            fanout: None,
            promiscuous: self.afpacket_promiscuous,
        }
    }

    pub fn fanout(&self) -> Result<mailtap_capture::afpacket::FanoutMode> {
        self.afpacket_fanout
            .parse()
            .map_err(|e| anyhow!("configuration: live.afpacket_fanout: {e}"))
    }

    pub fn shard_by(&self) -> Result<mailtap_engine::ShardBy> {
        use mailtap_engine::ShardBy;
        match self.shard_by.as_str() {
            "auto" => Ok(ShardBy::Auto),
            "queue" => Ok(ShardBy::Queue),
            "flow-hash" | "flow_hash" => Ok(ShardBy::FlowHash),
            o => bail!("configuration: live.shard_by = {o:?}: must be auto, queue or flow-hash"),
        }
    }

    /// Whether the XDP program steers all TCP (None: follow dpd.enabled).
    pub fn xdp_all_tcp(&self) -> Result<Option<bool>> {
        match self.xdp_steer.as_str() {
            "auto" => Ok(None),
            "mail-ports" | "mail_ports" => Ok(Some(false)),
            "all-tcp" | "all_tcp" => Ok(Some(true)),
            o => {
                bail!("configuration: live.xdp_steer = {o:?}: must be auto, mail-ports or all-tcp")
            }
        }
    }

    /// Whether AF_XDP may take steered ports from the host's own services.
    pub fn xdp_host_services_allowed(&self) -> Result<bool> {
        match self.xdp_host_services.as_str() {
            "refuse" => Ok(false),
            "allow" => Ok(true),
            o => bail!("configuration: live.xdp_host_services = {o:?}: must be refuse or allow"),
        }
    }

    /// True when workers wait for the collector instead of dropping.
    pub fn block_on_collector(&self) -> Result<bool> {
        match self.collector_overflow.as_str() {
            "drop" => Ok(false),
            "block" => Ok(true),
            o => bail!("configuration: live.collector_overflow = {o:?}: must be drop or block"),
        }
    }

    /// The kernel bypass mode.
    pub fn bypass(&self) -> Result<mailtap_engine::LiveBypass> {
        use mailtap_engine::LiveBypass;
        match self.bypass.as_str() {
            "auto" => Ok(LiveBypass::Auto),
            "drop" => Ok(LiveBypass::Drop),
            "pass" => Ok(LiveBypass::Pass),
            "off" => Ok(LiveBypass::Off),
            o => bail!("configuration: live.bypass = {o:?}: must be auto, drop, pass or off"),
        }
    }

    fn validate(&self) -> Result<()> {
        self.xdp_all_tcp()?;
        self.xdp_host_services_allowed()?;
        self.bypass()?;
        let max = mailtap_capture::bypass::MAX_BYPASS_CONNECTIONS;
        if self.bypass_connections == 0 || self.bypass_connections > max {
            bail!("configuration: live.bypass_connections must be between 1 and {max}");
        }
        self.xdp_busy_poll()?;
        self.block_on_collector()?;
        if self.record_backlog == 0 || self.record_backlog > 1 << 20 {
            bail!("configuration: live.record_backlog must be between 1 and 1048576");
        }
        self.xdp(mailtap_capture::afxdp::ZeroCopy::Auto)
            .validate()
            .map_err(|e| anyhow!("configuration: {}", e.replace("capture.xdp_", "live.xdp_")))?;
        self.ring()
            .validate()
            .map_err(|e| anyhow!("configuration: live.afpacket_{e}"))?;
        self.fanout()?;
        self.shard_by()?;
        if self.batch_packets == 0 || self.batch_packets > 65536 {
            bail!("configuration: live.batch_packets must be between 1 and 65536");
        }
        if self.handoff_buffer_bytes < 65_600 || self.handoff_buffer_bytes > 64 << 20 {
            bail!("configuration: live.handoff_buffer_bytes must be between 65600 and 67108864");
        }
        if self.handoff_buffers == 0 || self.handoff_buffers > 4096 {
            bail!("configuration: live.handoff_buffers must be between 1 and 4096");
        }
        Ok(())
    }
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

    fn err(sets: &[&str]) -> String {
        format!("{:#}", load(sets).unwrap_err())
    }

    #[test]
    fn live_defaults_are_the_capture_crates() {
        let c = load(&[]).unwrap();
        let x = c.live.xdp(mailtap_capture::afxdp::ZeroCopy::Auto);
        let d = mailtap_capture::afxdp::XdpQueueConfig::default();
        assert_eq!(
            (x.frame_count, x.frame_size, x.rx_ring, x.fill_ring),
            (d.frame_count, d.frame_size, d.rx_ring, d.fill_ring)
        );
        assert_eq!(
            (x.rx_ring, x.fill_ring, x.frame_count),
            (65536, 65536, 65536)
        );
        assert_eq!(x.busy_poll, mailtap_capture::afxdp::BusyPoll::Off);
        assert_eq!(c.live.xdp_busy_poll, "off");
        assert_eq!((x.busy_poll_usecs, x.busy_poll_budget), (20, 64));
        let r = c.live.ring();
        assert_eq!((r.block_size, r.block_count), (1 << 20, 64));
    }

    #[test]
    fn live_xdp_keys_are_validated_by_name() {
        for (set, key) in [
            ("live.xdp_busy_poll=sometimes", "live.xdp_busy_poll"),
            ("live.xdp_busy_poll_usecs=0", "live.xdp_busy_poll_usecs"),
            (
                "live.xdp_busy_poll_budget=100000",
                "live.xdp_busy_poll_budget",
            ),
            ("live.xdp_rx_ring=50000", "live.xdp_rx_ring"),
            ("live.xdp_fill_ring=3", "live.xdp_fill_ring"),
            ("live.xdp_frame_count=1024", "live.xdp_frame_count"),
            ("live.xdp_frame_size=3000", "live.xdp_frame_size"),
            ("live.xdp_host_services=yes", "live.xdp_host_services"),
        ] {
            let e = err(&[set]);
            assert!(e.contains(key), "--set {set}: {e}");
            assert!(!e.contains("capture.xdp_"), "--set {set}: {e}");
        }
        // A smaller fill ring needs fewer frames.
        load(&[
            "live.xdp_fill_ring=2048",
            "live.xdp_rx_ring=2048",
            "live.xdp_frame_count=4096",
        ])
        .unwrap();
        // But the default fill ring needs the default frames.
        assert!(err(&["live.xdp_frame_count=4096"]).contains("live.xdp_fill_ring"));
    }

    #[test]
    fn flow_hash_key_and_uid_salt_are_general_keys() {
        let c = load(&["general.flow_hash_key=abc", "general.uid_salt=s1"]).unwrap();
        assert_eq!(c.general.flow_hash_key, "abc");
        assert_eq!(c.general.uid_salt, "s1");
        let d = load(&[]).unwrap();
        assert!(d.general.flow_hash_key.is_empty() && d.general.uid_salt.is_empty());
    }

    #[test]
    fn live_busy_poll_values() {
        use mailtap_capture::afxdp::{BusyPoll, ZeroCopy};
        for (v, want) in [
            ("off", BusyPoll::Off),
            ("auto", BusyPoll::Auto),
            ("on", BusyPoll::On),
        ] {
            let c = load(&[
                &format!("live.xdp_busy_poll={v}"),
                "live.xdp_busy_poll_usecs=50",
            ])
            .unwrap();
            let x = c.live.xdp(ZeroCopy::Off);
            assert_eq!((x.busy_poll, x.busy_poll_usecs), (want, 50), "{v}");
        }
    }
}
