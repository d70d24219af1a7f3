//! The configuration mapped to the engine's settings, in one place:
//! [`engine_config`] for `read` and `live`, [`live_config`] for what only
//! `live` needs.

use super::Config;
use crate::cli::output::{FormatArg, OutputArgs};
use anyhow::{anyhow, Result};
use mailtap_engine::{EngineConfig, MailAnalyzers};
use mailtap_flow::LocalNets;
use mailtap_logs::LogFormat;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The shard-selection key: `general.flow_hash_key` when set, else random.
fn flow_hash_key(cfg: &Config) -> mailtap_wire::decode::FlowHashKey {
    if cfg.general.flow_hash_key.is_empty() {
        mailtap_wire::decode::FlowHashKey::random()
    } else {
        mailtap_wire::decode::FlowHashKey::from_str_key(&cfg.general.flow_hash_key)
    }
}

/// The engine settings for `read` and `live` from the configuration and
/// the output options. The caller checks the outputs first
/// ([`crate::cli::output::check_outputs`]).
pub fn engine_config(
    cfg: &Config,
    o: &OutputArgs,
    workers: usize,
    reopen_logs: Arc<AtomicBool>,
) -> Result<EngineConfig> {
    #[cfg(not(feature = "kafka"))]
    super::no_kafka(&cfg.kafka, o.kafka.as_deref())?;
    let local = LocalNets::new(
        cfg.site
            .local_nets
            .iter()
            .map(|n| mailtap_flow::site::parse_cidr(n).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?,
        cfg.site.private_address_space_is_local,
    );
    let mut smtp = cfg.smtp.clone();
    smtp.local_nets = local.effective_nets();
    smtp.files = Arc::new(cfg.files.clone());
    let mut pop3 = cfg.pop3.clone();
    pop3.local_nets = local.effective_nets();
    pop3.files = Arc::new(cfg.files.clone());
    let mut imap = cfg.imap.clone();
    imap.local_nets = local.effective_nets();
    imap.files = Arc::new(cfg.files.clone());
    Ok(EngineConfig {
        rotation: cfg.log.rotation()?,
        reopen_logs,
        workers,
        flow: cfg.flow.clone(),
        analyzers: MailAnalyzers {
            smtp: Arc::new(smtp),
            pop3: Arc::new(pop3),
            imap: Arc::new(imap),
            tls: Arc::new(cfg.ssl.clone()),
            dpd: cfg.dpd.enabled,
        },
        local,
        uid_salt: super::salt::uid_salt(cfg),
        flow_hash_key: flow_hash_key(cfg),
        verify_checksums: cfg.capture.verify_checksums,
        block_bytes: cfg.capture.block_bytes,
        blocks_per_worker: cfg.capture.blocks_per_worker,
        collector_queue_bytes: cfg.general.collector_queue_bytes,
        defrag: mailtap_wire::defrag::DefragConfig {
            max_datagrams: cfg.defrag.max_datagrams,
            max_bytes: cfg.defrag.max_bytes,
            timeout: mailtap_core::Interval((cfg.defrag.timeout * 1e9) as i64),
        },
        out_dir: o.out.clone(),
        log_format: match o.log_format {
            FormatArg::Zeek => LogFormat::Zeek,
            FormatArg::Json => LogFormat::Json,
        },
        log_limits: cfg.log.limits(),
        events: o.events.clone(),
        extract: o
            .extract_dir
            .clone()
            .map(|dir| mailtap_extract::ExtractConfig {
                dir,
                max_open_files: cfg.extract.max_open_files,
            }),
        metrics_listen: o.metrics_listen.clone(),
        #[cfg(feature = "kafka")]
        kafka_events: cfg.kafka.events,
        #[cfg(feature = "kafka")]
        kafka_emails: cfg.kafka.emails_on(),
        #[cfg(feature = "kafka")]
        kafka: cfg.kafka.sink(
            o.kafka.as_deref(),
            &o.out,
            o.extract_dir.as_deref(),
            cfg.log.limits(),
        )?,
        ace: o.ace_dir.clone().map(|dir| mailtap_extract::AceConfig {
            dir,
            ports: cfg.ace.ports.clone(),
            max_open_files: cfg.ace.max_open_files,
        }),
    })
}

/// The live-capture settings from the configuration; the command line's
/// (queues, cores, XDP mode, duration, stats interval) are the caller's.
#[cfg(feature = "live")]
pub fn live_config(
    cfg: &Config,
    interfaces: Vec<String>,
    capture: mailtap_engine::CaptureKind,
    zero_copy: mailtap_capture::afxdp::ZeroCopy,
) -> mailtap_engine::LiveConfig {
    let mut live = mailtap_engine::LiveConfig::new(interfaces, capture);
    live.xdp = cfg.live.xdp(zero_copy);
    live.ring = cfg.live.ring();
    live.fanout_mode = cfg.live.fanout();
    live.shard_by = cfg.live.shard_by();
    live.xdp_all_tcp = cfg.live.xdp_all_tcp().unwrap_or(cfg.dpd.enabled);
    if cfg.live.xdp_host_services_allowed() {
        mailtap_capture::steering::allow_host_services(true);
    }
    live.batch_packets = cfg.live.batch_packets;
    live.handoff_buffer_bytes = cfg.live.handoff_buffer_bytes;
    live.handoff_buffers = cfg.live.handoff_buffers;
    live.record_backlog = cfg.live.record_backlog;
    live.block_on_collector = cfg.live.block_on_collector();
    live.bypass = cfg.live.bypass();
    live.bypass_connections = cfg.live.bypass_connections;
    live
}
