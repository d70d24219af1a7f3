//! How a live run ends. The run's own thread writes `stats.log` rows
//! until SIGINT/SIGTERM (the caller's `stop`), the configured duration,
//! or a worker that ended early (its capture failed, or it panicked);
//! then it tells every worker to stop and waits for each. A worker stops
//! reading its queue, sends its pending handoffs, takes every handoff
//! still coming until all other workers are done, closes its flows and
//! sends every record, waiting for the collector: nothing accepted is
//! lost.

use crate::live::stats_log::StatsLog;
use crate::live::worker::Workers;
use crate::live::{LiveConfig, QueueSummary};
use crate::summary::{add_flow, add_output, EngineError, Summary};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Writes a stats row every `live.stats_interval` until `stop` is set,
/// `live.duration` has passed since `started` or a worker has ended.
pub(super) fn wait_for_stop(
    stop: &AtomicBool,
    live: &LiveConfig,
    started: Instant,
    workers: &Workers,
    stats_log: &mut StatsLog<'_>,
) {
    let mut next_stats = Instant::now() + live.stats_interval;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(d) = live.duration {
            if started.elapsed() >= d {
                break;
            }
        }
        if workers.handles.iter().any(|h| h.is_finished()) {
            tracing::error!("a capture worker stopped early; stopping");
            break;
        }
        if Instant::now() >= next_stats {
            next_stats += live.stats_interval;
            stats_log.write();
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the workers and waits for each. Returns the sum of their counts
/// (the collector's come later), with each queue's summary pushed onto
/// `queues`, and an error if a worker panicked.
pub(super) fn stop_workers(
    workers: Workers,
    queues: &mut Vec<QueueSummary>,
) -> (Summary, Result<(), EngineError>) {
    workers.stop.store(true, Ordering::SeqCst);
    let mut result = Ok(());
    let mut engine = Summary::default();
    for h in workers.handles {
        match h.join() {
            Ok(r) => {
                add_flow(&mut engine.flow, &r.flow);
                add_output(&mut engine.output, &r.output);
                for (k, v) in &r.decode_errors {
                    *engine.decode_errors.entry(k).or_default() += v;
                }
                engine.packets += r.queue.capture.packets;
                engine.bytes += r.queue.capture.bytes;
                engine.tcp_packets += r.tcp;
                engine.non_tcp_packets += r.non_tcp;
                engine.fragments += r.fragments;
                engine.fragments_reassembled += r.fragments_reassembled;
                engine.defrag_dropped += r.defrag_dropped;
                queues.push(r.queue);
            }
            Err(_) => {
                tracing::error!("a capture worker panicked; its connections are lost");
                if result.is_ok() || matches!(result, Err(EngineError::Capture(_))) {
                    result = Err(EngineError::Panic("a capture worker"));
                }
            }
        }
    }
    (engine, result)
}
