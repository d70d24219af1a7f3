//! Live capture: one pinned worker per receive queue, each the owner of
//! one shard.
//!
//! ```text
//! NIC queue 0 -> worker 0 (core c0): AF_XDP/AF_PACKET ring -> decode -> owner?
//!                   own flow: FlowTable 0 -> analyzers -> records ----------> collector
//!                   other shard's flow: copy into a handoff batch --> worker k
//! NIC queue 1 -> worker 1 (core c1): ...
//! ```
//!
//! A packet belongs to the shard that owns its flow. When the capture
//! already keeps both directions of a flow on one queue (AF_PACKET's
//! fanout hash, or a NIC with symmetric RSS), the receiving worker is the
//! owner and nothing moves. Otherwise the owner is chosen by mailtap's
//! symmetric flow hash and the packet is copied into a batch for that
//! worker, which goes over a bounded channel when it is full or the
//! receive batch ends. Workers never share a flow table.
//!
//! Everything is bounded: receive batches; handoff buffers (a worker
//! whose buffers are all in flight waits briefly for one, then drops the
//! packet and counts it); the records on their way to the collector (a
//! worker does not wait for a slow collector: it keeps a bounded backlog
//! and sheds records by class past it, counted, unless
//! `live.collector_overflow = "block"`); and the kernel's rings, whose
//! drops are counted.
//!
//! Modules: [`config`] (what the run is told), [`capture`] (queues,
//! steering programs, sockets), [`worker`] (the worker loop),
//! [`handoff`] (packets to another shard), [`stats_log`] (stats.log),
//! [`shutdown`] (how the run ends), [`summary`] (what it reports).
//! The record outbox is [`crate::outbox`], shared with `mailtap read`.

mod capture;
mod config;
mod handoff;
mod shutdown;
mod stats_log;
mod summary;
mod worker;

pub use config::{CaptureKind, LiveBypass, LiveConfig, ShardBy};
pub use summary::{LiveSummary, QueueSummary};

use crate::collector::Collector;
use crate::config::EngineConfig;
use crate::metrics::{Metrics, MetricsServer};
use crate::summary::EngineError;
use capture::{Capture, WorkerPlan};
use stats_log::StatsLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use worker::Published;

/// Captures on the configured interfaces until `stop` is set or the
/// duration ends, then flushes every log and returns the summary. Every
/// stats interval it writes a `stats.log` row per queue.
pub fn run_live(
    cfg: &EngineConfig,
    live: &LiveConfig,
    stop: &AtomicBool,
) -> (LiveSummary, Result<(), EngineError>) {
    let started = Instant::now();
    let mut summary = LiveSummary::default();
    let plans = match capture::plan_workers(live) {
        Ok(p) => p,
        Err(e) => return (summary, Err(e)),
    };
    let n = plans.len();
    // Steering programs and sockets are set up before any thread starts,
    // so a set-up error ends the run cleanly with nothing half-running.
    let (capture, sources) = match Capture::open(cfg, live, &plans) {
        Ok(c) => c,
        Err(e) => return (summary, Err(e)),
    };
    let collector = match Collector::start(cfg, n * 16, n, false) {
        Ok(c) => c,
        Err(e) => return (summary, Err(e)),
    };
    let published = Published::new(n);
    // `/readyz`: set once every worker runs on its capture queue.
    let ready = Arc::new(AtomicBool::new(false));
    let metrics = match start_metrics(cfg, live, started, &plans, &published, &collector, &ready) {
        Ok(m) => m,
        Err(e) => return (summary, Err(e)),
    };
    let workers = worker::spawn(
        cfg,
        live,
        &plans,
        sources,
        &collector,
        &published,
        &capture.bypass_maps,
    );
    // Every queue has its socket and its worker: capturing.
    ready.store(workers.handles.len() == n, Ordering::SeqCst);

    let mut stats_log = StatsLog::new(cfg, live, &plans, &published.stats);
    shutdown::wait_for_stop(stop, live, started, &workers, &mut stats_log);
    let (mut engine, mut result) = shutdown::stop_workers(workers, &mut summary.queues);
    stats_log.finish();
    capture.close(&mut summary);
    if let Some(m) = metrics {
        m.stop();
    }
    collector.finish(&mut engine, &mut result);
    engine.elapsed = started.elapsed();
    summary.engine = engine;
    (summary, result)
}

/// The `--metrics-listen` endpoint, when configured: per queue, the
/// workers' counters and latencies, and the collector's.
fn start_metrics(
    cfg: &EngineConfig,
    live: &LiveConfig,
    started: Instant,
    plans: &[WorkerPlan],
    published: &Published,
    collector: &Collector,
    ready: &Arc<AtomicBool>,
) -> Result<Option<MetricsServer>, EngineError> {
    let Some(addr) = &cfg.metrics_listen else {
        return Ok(None);
    };
    let m = Arc::new(Metrics {
        started,
        capture: live.capture.name(),
        queues: plans
            .iter()
            .zip(&published.stats)
            .map(|(p, s)| (p.interface.clone(), p.queue, s.clone()))
            .collect(),
        emit_latency: published.emit_latency.clone(),
        collector: collector.stats.clone(),
        ready: ready.clone(),
    });
    MetricsServer::start(addr, m).map(Some)
}
