//! `stats.log`: one row per queue every `--stats-interval` (and one last
//! row at the end, so the rows add up to the summary), with the counts of
//! that interval, named as in Zeek's stats.log where Zeek has the column;
//! and a "queue stats" and a "capture stats" log line each time.

use crate::config::EngineConfig;
use crate::live::capture::WorkerPlan;
use crate::live::LiveConfig;
use crate::stats::SharedStats;
use mailtap_core::record::Value;
use mailtap_core::zeek_record;
use mailtap_core::Timestamp;
use mailtap_logs::LogFile;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The stats log of a run and where its rows come from.
pub(super) struct StatsLog<'a> {
    log: LogFile,
    plans: &'a [WorkerPlan],
    live: &'a LiveConfig,
    stats: &'a [Arc<SharedStats>],
    /// Each worker's counters at its last row.
    last: Vec<StatsSnapshot>,
}

impl<'a> StatsLog<'a> {
    pub(super) fn new(
        cfg: &EngineConfig,
        live: &'a LiveConfig,
        plans: &'a [WorkerPlan],
        stats: &'a [Arc<SharedStats>],
    ) -> Self {
        StatsLog {
            log: LogFile::new(&cfg.out_dir, "stats", cfg.log_format, cfg.log_limits),
            plans,
            live,
            stats,
            last: vec![StatsSnapshot::default(); stats.len()],
        }
    }

    /// One row per queue: what its worker counted since the last row.
    pub(super) fn write(&mut self) {
        if let Err(e) = write_stats(
            &mut self.log,
            self.plans,
            self.live,
            self.stats,
            &mut self.last,
        ) {
            tracing::error!("writing stats.log: {e}");
        }
    }

    /// One last row, so stats.log adds up to the summary; then the file
    /// is closed.
    pub(super) fn finish(mut self) {
        self.write();
        if let Err(e) = self.log.finish() {
            tracing::error!("writing stats.log: {e}");
        }
    }
}

/// What a worker's counters were at the last stats row.
#[derive(Clone, Copy, Default)]
struct StatsSnapshot {
    packets: u64,
    bytes: u64,
    kernel_drops: u64,
    ring_full: u64,
    handed_off: u64,
    handoff_received: u64,
    handoff_dropped: u64,
    decode_errors: u64,
    non_tcp: u64,
    flows_created: u64,
    events: u64,
    records: u64,
    bypassed_flows: u64,
    bypassed_packets: u64,
    bypassed_bytes: u64,
}

fn write_stats(
    log: &mut LogFile,
    plans: &[WorkerPlan],
    live: &LiveConfig,
    stats: &[Arc<SharedStats>],
    last: &mut [StatsSnapshot],
) -> std::io::Result<()> {
    let ts = mailtap_capture::now();
    let mut total = StatsSnapshot::default();
    let mut total_drops = 0;
    for (i, s) in stats.iter().enumerate() {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = StatsSnapshot {
            packets: l(&s.packets),
            bytes: l(&s.bytes),
            kernel_drops: l(&s.kernel_drops),
            ring_full: l(&s.ring_full),
            handed_off: l(&s.handed_off),
            handoff_received: l(&s.handoff_received),
            handoff_dropped: l(&s.handoff_dropped),
            decode_errors: l(&s.decode_errors),
            non_tcp: l(&s.non_tcp),
            flows_created: l(&s.flows_created),
            events: l(&s.events),
            records: l(&s.records),
            bypassed_flows: l(&s.bypassed_flows),
            bypassed_packets: l(&s.bypassed_packets),
            bypassed_bytes: l(&s.bypassed_bytes),
        };
        let p = last[i];
        let row = StatsRow {
            ts,
            interface: &plans[i].interface,
            queue: plans[i].queue,
            capture: live.capture.name(),
            pkts: now.packets - p.packets,
            bytes: now.bytes - p.bytes,
            kernel_drops: now.kernel_drops.saturating_sub(p.kernel_drops),
            ring_full: now.ring_full.saturating_sub(p.ring_full),
            handed_off: now.handed_off - p.handed_off,
            handoff_received: now.handoff_received - p.handoff_received,
            handoff_dropped: now.handoff_dropped - p.handoff_dropped,
            decode_errors: now.decode_errors - p.decode_errors,
            non_tcp: now.non_tcp - p.non_tcp,
            flows_created: now.flows_created - p.flows_created,
            active_flows: l(&s.flows_active),
            reassembly_bytes: l(&s.reassembly_bytes),
            events: now.events - p.events,
            records: now.records - p.records,
            bypassed_flows: now.bypassed_flows - p.bypassed_flows,
            bypassed_pkts: now.bypassed_packets - p.bypassed_packets,
            bypassed_bytes: now.bypassed_bytes - p.bypassed_bytes,
        };
        total_drops += row.kernel_drops + row.handoff_dropped;
        tracing::info!(
            interface = row.interface,
            queue = row.queue,
            packets = row.pkts,
            bytes = row.bytes,
            kernel_drops = row.kernel_drops,
            ring_full = row.ring_full,
            handed_off = row.handed_off,
            handoff_received = row.handoff_received,
            handoff_dropped = row.handoff_dropped,
            active_flows = row.active_flows,
            reassembly_bytes = row.reassembly_bytes,
            events = row.events,
            "queue stats"
        );
        total.packets += row.pkts;
        total.bytes += row.bytes;
        total.handed_off += row.handed_off;
        log.write(&row)?;
        last[i] = now;
    }
    log.flush()?;
    let secs = live.stats_interval.as_secs_f64().max(1e-3);
    tracing::info!(
        packets = total.packets,
        mbit_per_s = format!("{:.1}", total.bytes as f64 * 8.0 / secs / 1e6),
        handed_off = total.handed_off,
        drops = total_drops,
        "capture stats"
    );
    Ok(())
}

/// One row of stats.log: one queue over one stats interval.
struct StatsRow<'a> {
    ts: Timestamp,
    interface: &'a str,
    queue: u32,
    capture: &'static str,
    pkts: u64,
    bytes: u64,
    kernel_drops: u64,
    ring_full: u64,
    handed_off: u64,
    handoff_received: u64,
    handoff_dropped: u64,
    decode_errors: u64,
    non_tcp: u64,
    flows_created: u64,
    active_flows: u64,
    reassembly_bytes: u64,
    events: u64,
    records: u64,
    bypassed_flows: u64,
    bypassed_pkts: u64,
    bypassed_bytes: u64,
}

zeek_record! {
    impl ZeekRecord for StatsRow<'_> as r {
        path: "stats";
        "ts": "time" => Value::Time(r.ts),
        "peer": "string" => Value::Str(b"mailtap"),
        "interface": "string" => Value::Str(r.interface.as_bytes()),
        "queue": "count" => Value::Count(u64::from(r.queue)),
        "capture": "string" => Value::Str(r.capture.as_bytes()),
        "pkts_proc": "count" => Value::Count(r.pkts),
        "bytes_recv": "count" => Value::Count(r.bytes),
        "pkts_dropped": "count" => Value::Count(r.kernel_drops),
        "ring_full": "count" => Value::Count(r.ring_full),
        "handed_off": "count" => Value::Count(r.handed_off),
        "handoff_received": "count" => Value::Count(r.handoff_received),
        "handoff_dropped": "count" => Value::Count(r.handoff_dropped),
        "decode_errors": "count" => Value::Count(r.decode_errors),
        "non_tcp": "count" => Value::Count(r.non_tcp),
        "tcp_conns": "count" => Value::Count(r.flows_created),
        "active_tcp_conns": "count" => Value::Count(r.active_flows),
        "reassem_tcp_size": "count" => Value::Count(r.reassembly_bytes),
        "events_proc": "count" => Value::Count(r.events),
        "records": "count" => Value::Count(r.records),
        // Packets the link delivered to us plus the ones the kernel
        // dropped for us: what Zeek calls pkts_link.
        "pkts_link": "count" => Value::Count(r.pkts + r.kernel_drops),
        "bypassed_conns": "count" => Value::Count(r.bypassed_flows),
        "bypassed_pkts": "count" => Value::Count(r.bypassed_pkts),
        "bypassed_bytes": "count" => Value::Count(r.bypassed_bytes),
    }
}
