//! `--metrics-listen`: the live counters in Prometheus text format.
//!
//! A scrape reads the same relaxed atomics the stats log reads (workers
//! publish them every 100 ms) and locks each latency histogram briefly;
//! nothing on the packet path knows a scrape happened.

use crate::collector::{CollectorStats, RECORD_KINDS};
use crate::live::SharedStats;
use crate::summary::EngineError;
use hdrhistogram::Histogram;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the endpoint reports: per queue (live) or per shard (read, with
/// interface "file"), the collector, the Kafka sink.
pub(crate) struct Metrics {
    pub(crate) started: Instant,
    pub(crate) capture: &'static str,
    /// (interface, queue, the worker's counters), one per worker/shard.
    pub(crate) queues: Vec<(String, u32, Arc<SharedStats>)>,
    /// Per worker: microseconds from a record's receive batch to its
    /// hand-over to the collector.
    pub(crate) emit_latency_us: Vec<Arc<Mutex<Histogram<u64>>>>,
    pub(crate) collector: Arc<CollectorStats>,
    /// Capturing: every queue has its socket and its worker (`/readyz`).
    pub(crate) ready: Arc<AtomicBool>,
}

/// Milliseconds since the Unix epoch (the heartbeats' clock).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A worker or the collector that has not come round its loop for this
/// long is reported dead by `/healthz`. Workers publish every 100 ms, the
/// collector comes round at least every flush interval (1 s), so this
/// leaves room for a loaded machine without hiding a hung thread for long.
pub(crate) const HEARTBEAT_STALE_MS: u64 = 10_000;

/// `/healthz`: `Ok` when every watched worker and the collector have shown
/// a heartbeat within [`HEARTBEAT_STALE_MS`] of `now`, else what is stale.
/// A heartbeat of 0 is not watched (shards of `mailtap read`).
pub(crate) fn health(now: u64, workers: &[(String, u64)], collector: u64) -> Result<(), String> {
    let mut stale = Vec::new();
    for (name, hb) in workers {
        if *hb != 0 && now.saturating_sub(*hb) > HEARTBEAT_STALE_MS {
            stale.push(format!(
                "worker {name}: no heartbeat for {:.1} s",
                now.saturating_sub(*hb) as f64 / 1e3
            ));
        }
    }
    if now.saturating_sub(collector) > HEARTBEAT_STALE_MS {
        stale.push(format!(
            "collector: no heartbeat for {:.1} s",
            now.saturating_sub(collector) as f64 / 1e3
        ));
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(stale.join("\n"))
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// `/healthz`, see [`health`].
    fn health(&self) -> Result<(), String> {
        let workers: Vec<(String, u64)> = self
            .queues
            .iter()
            .map(|(i, q, s)| (format!("{i}/{q}"), s.heartbeat_ms.load(Ordering::Relaxed)))
            .collect();
        health(
            now_ms(),
            &workers,
            self.collector.heartbeat_ms.load(Ordering::Relaxed),
        )
    }

    /// The answer to one request: `/healthz` (every worker and the
    /// collector alive), `/readyz` (capturing), anything else the metrics.
    fn respond(&self, path: &str) -> (u16, String, &'static str) {
        const TEXT: &str = "text/plain; charset=utf-8";
        match path.split('?').next().unwrap_or("") {
            "/healthz" => match self.health() {
                Ok(()) => (200, "ok\n".into(), TEXT),
                Err(e) => (503, format!("{e}\n"), TEXT),
            },
            "/readyz" => {
                if self.ready.load(Ordering::SeqCst) {
                    (200, "ready\n".into(), TEXT)
                } else {
                    (503, "not capturing yet\n".into(), TEXT)
                }
            }
            _ => (200, self.render(), "text/plain; version=0.0.4"),
        }
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        let _ = self.render_into(&mut s);
        s
    }

    fn render_into(&self, s: &mut String) -> std::fmt::Result {
        writeln!(
            s,
            "# HELP mailtap_uptime_seconds Seconds since the run started.\n# TYPE mailtap_uptime_seconds gauge\nmailtap_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        )?;
        type Get = fn(&SharedStats) -> u64;
        let per_queue: [(&str, &str, &str, Get); 17] = [
            (
                "packets_total",
                "counter",
                "Packets taken from the capture queue.",
                |q| q.packets.load(Ordering::Relaxed),
            ),
            (
                "bytes_total",
                "counter",
                "Bytes taken from the capture queue.",
                |q| q.bytes.load(Ordering::Relaxed),
            ),
            (
                "kernel_drops_total",
                "counter",
                "Packets the kernel dropped for this queue's socket (ring full).",
                |q| q.kernel_drops.load(Ordering::Relaxed),
            ),
            (
                "ring_full_total",
                "counter",
                "Times the ring was full or the fill ring empty.",
                |q| q.ring_full.load(Ordering::Relaxed),
            ),
            (
                "handed_off_total",
                "counter",
                "Packets moved to the shard that owns their flow.",
                |q| q.handed_off.load(Ordering::Relaxed),
            ),
            (
                "handoff_received_total",
                "counter",
                "Packets received from other workers.",
                |q| q.handoff_received.load(Ordering::Relaxed),
            ),
            (
                "handoff_dropped_total",
                "counter",
                "Packets lost for lack of a free handoff buffer.",
                |q| q.handoff_dropped.load(Ordering::Relaxed),
            ),
            (
                "decode_errors_total",
                "counter",
                "Packets that could not be decoded.",
                |q| q.decode_errors.load(Ordering::Relaxed),
            ),
            (
                "non_tcp_total",
                "counter",
                "Packets that are not TCP.",
                |q| q.non_tcp.load(Ordering::Relaxed),
            ),
            (
                "flows_total",
                "counter",
                "TCP connections the shard created.",
                |q| q.flows_created.load(Ordering::Relaxed),
            ),
            (
                "active_flows",
                "gauge",
                "TCP connections in the shard now.",
                |q| q.flows_active.load(Ordering::Relaxed),
            ),
            (
                "reassembly_bytes",
                "gauge",
                "Bytes held for TCP reassembly in the shard now.",
                |q| q.reassembly_bytes.load(Ordering::Relaxed),
            ),
            ("events_total", "counter", "Events the shard raised.", |q| {
                q.events.load(Ordering::Relaxed)
            }),
            (
                "records_total",
                "counter",
                "Records the shard produced.",
                |q| q.records.load(Ordering::Relaxed),
            ),
            (
                "bypassed_connections_total",
                "counter",
                "Connections whose payload was bypassed once their TLS handshake was analysed.",
                |q| q.bypassed_flows.load(Ordering::Relaxed),
            ),
            (
                "bypassed_packets_total",
                "counter",
                "Packets of bypassed connections (kernel-counted ones are added when the connection ends).",
                |q| q.bypassed_packets.load(Ordering::Relaxed),
            ),
            (
                "bypassed_bytes_total",
                "counter",
                "IP bytes of bypassed packets.",
                |q| q.bypassed_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, ty, help, get) in per_queue {
            writeln!(
                s,
                "# HELP mailtap_queue_{name} {help}\n# TYPE mailtap_queue_{name} {ty}"
            )?;
            for (iface, queue, q) in &self.queues {
                writeln!(
                    s,
                    "mailtap_queue_{name}{{interface=\"{}\",queue=\"{queue}\",capture=\"{}\"}} {}",
                    label(iface),
                    self.capture,
                    get(q)
                )?;
            }
        }
        writeln!(
            s,
            "# HELP mailtap_collector_records_total Records the collector wrote, by type.\n# TYPE mailtap_collector_records_total counter"
        )?;
        for (kind, a) in RECORD_KINDS.iter().zip(&self.collector.records) {
            writeln!(
                s,
                "mailtap_collector_records_total{{type=\"{kind}\"}} {}",
                a.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            s,
            "# HELP mailtap_collector_batches_total Record batches the collector wrote.\n# TYPE mailtap_collector_batches_total counter\nmailtap_collector_batches_total {}",
            self.collector.batches.load(Ordering::Relaxed)
        )?;
        writeln!(
            s,
            "# HELP mailtap_collector_queue_batches Record batches waiting for the collector.\n# TYPE mailtap_collector_queue_batches gauge\nmailtap_collector_queue_batches {}",
            self.collector.queue.len()
        )?;
        writeln!(
            s,
            "# HELP mailtap_collector_queue_capacity_batches Capacity of the collector's queue.\n# TYPE mailtap_collector_queue_capacity_batches gauge\nmailtap_collector_queue_capacity_batches {}",
            self.collector.capacity
        )?;
        let b = &self.collector.budget;
        writeln!(
            s,
            "# HELP mailtap_collector_queue_bytes Approximate bytes of records sent to the collector and not yet written.\n# TYPE mailtap_collector_queue_bytes gauge\nmailtap_collector_queue_bytes {}",
            b.inflight()
        )?;
        writeln!(
            s,
            "# HELP mailtap_collector_queue_peak_bytes The most bytes of records that were on their way to the collector at once.\n# TYPE mailtap_collector_queue_peak_bytes gauge\nmailtap_collector_queue_peak_bytes {}",
            b.peak()
        )?;
        writeln!(
            s,
            "# HELP mailtap_collector_queue_capacity_bytes The bound of those bytes (general.collector_queue_bytes).\n# TYPE mailtap_collector_queue_capacity_bytes gauge\nmailtap_collector_queue_capacity_bytes {}",
            b.limit
        )?;
        for (name, help, a) in [
            (
                "extract_size_mismatch_total",
                "Messages whose bytes reaching the extraction sink differed from their size (written complete: false).",
                &self.collector.extract_size_mismatch,
            ),
            (
                "extract_bytes_lost_total",
                "Message bytes that never reached the extraction sink.",
                &self.collector.extract_bytes_lost,
            ),
        ] {
            writeln!(
                s,
                "# HELP mailtap_{name} {help}\n# TYPE mailtap_{name} counter\nmailtap_{name} {}",
                a.load(Ordering::Relaxed)
            )?;
        }
        let kafka = self.collector.kafka.lock().ok().and_then(|k| k.clone());
        let kafka_on = kafka.is_some();
        if let Some(k) = kafka {
            let rows: [(&str, &str, &str, u64); 13] = [
                (
                    "emails_size_mismatch_total",
                    "counter",
                    "Messages whose bytes reaching the Kafka sink differed from their size (sent complete: false).",
                    k.emails_size_mismatch,
                ),
                (
                    "email_bytes_lost_total",
                    "counter",
                    "Message bytes that never reached the Kafka sink.",
                    k.email_bytes_lost,
                ),
                (
                    "records_total",
                    "counter",
                    "Records handed to the Kafka sink.",
                    k.records,
                ),
                (
                    "produced_total",
                    "counter",
                    "Kafka messages produced (first attempts and replays).",
                    k.produced,
                ),
                (
                    "delivered_total",
                    "counter",
                    "Kafka messages the brokers acknowledged.",
                    k.delivered,
                ),
                (
                    "failed_total",
                    "counter",
                    "Deliveries that failed and went to the spill.",
                    k.failed,
                ),
                (
                    "failed_permanent_total",
                    "counter",
                    "Messages the brokers refused for good (dropped).",
                    k.failed_permanent,
                ),
                (
                    "spilled_total",
                    "counter",
                    "Records written to the disk spill.",
                    k.spilled,
                ),
                (
                    "replayed_total",
                    "counter",
                    "Records replayed from the spill.",
                    k.replayed,
                ),
                (
                    "spill_dropped_total",
                    "counter",
                    "Records dropped because the spill was full.",
                    k.spill_dropped,
                ),
                (
                    "spill_bytes",
                    "gauge",
                    "Bytes waiting in the spill.",
                    k.spill_bytes,
                ),
                (
                    "spill_records",
                    "gauge",
                    "Records waiting in the spill.",
                    k.spill_records,
                ),
                (
                    "queue_depth",
                    "gauge",
                    "Messages in librdkafka's queue, not yet acknowledged.",
                    k.queue_depth,
                ),
            ];
            for (name, ty, help, v) in rows {
                writeln!(
                    s,
                    "# HELP mailtap_kafka_{name} {help}\n# TYPE mailtap_kafka_{name} {ty}\nmailtap_kafka_{name} {v}"
                )?;
            }
        }
        let mut emit = crate::collector::latency_histogram();
        for h in &self.emit_latency_us {
            if let Ok(h) = h.lock() {
                let _ = emit.add(&*h);
            }
        }
        summary(
            s,
            "mailtap_record_emit_latency_seconds",
            "From the end of the receive batch that produced a record to its hand-over to the collector.",
            &emit,
        )?;
        if kafka_on {
            if let Ok(h) = self.collector.kafka_delivery_latency_us.lock() {
                summary(
                    s,
                    "mailtap_kafka_delivery_latency_seconds",
                    "From a Kafka message's hand-over to librdkafka to the brokers' acknowledgement (linger, batching, round trip).",
                    &h,
                )?;
            }
        }
        if let Ok(h) = self.collector.write_latency_us.lock() {
            summary(
                s,
                "mailtap_record_write_latency_seconds",
                "From a shard handing a record batch over to the collector having written it to every sink.",
                &h,
            )?;
        }
        Ok(())
    }
}

/// A Prometheus summary from a histogram of microseconds.
fn summary(s: &mut String, name: &str, help: &str, h: &Histogram<u64>) -> std::fmt::Result {
    writeln!(s, "# HELP {name} {help}\n# TYPE {name} summary")?;
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        let v = if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1e6
        };
        writeln!(s, "{name}{{quantile=\"{q}\"}} {v}")?;
    }
    let sum: f64 = h
        .iter_recorded()
        .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
        .sum::<f64>()
        / 1e6;
    writeln!(s, "{name}_sum {sum}\n{name}_count {}", h.len())
}

/// The HTTP endpoint's thread: `GET /healthz` and `GET /readyz` get the
/// probes' answers, any other path the exposition text.
pub(crate) struct MetricsServer {
    stop: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` now, so a bad or busy address is an error before
    /// capture starts.
    pub(crate) fn start(addr: &str, m: Arc<Metrics>) -> Result<MetricsServer, EngineError> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            EngineError::Sink(std::io::Error::other(format!(
                "--metrics-listen {addr}: {e}"
            )))
        })?;
        tracing::info!(addr = %server.server_addr(), "serving Prometheus metrics on /metrics");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let join = std::thread::Builder::new()
            .name("mailtap-metrics".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(req)) => {
                            let (code, body, ctype) = m.respond(req.url());
                            let resp = tiny_http::Response::from_string(body)
                                .with_status_code(code)
                                .with_header(
                                    tiny_http::Header::from_bytes(
                                        &b"Content-Type"[..],
                                        ctype.as_bytes(),
                                    )
                                    .expect("valid header"),
                                );
                            let _ = req.respond(resp);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!("metrics endpoint: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .map_err(EngineError::Sink)?;
        Ok(MetricsServer { stop, join })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_what_has_stopped() {
        let now = 1_000_000;
        let fresh = now - 100;
        let old = now - HEARTBEAT_STALE_MS - 1;
        let w = |hb: u64| vec![("eth1/0".to_string(), fresh), ("eth1/1".to_string(), hb)];
        assert_eq!(health(now, &w(fresh), fresh), Ok(()));
        // Shards of `mailtap read` publish no heartbeat: not watched.
        assert_eq!(health(now, &w(0), fresh), Ok(()));
        let e = health(now, &w(old), fresh).unwrap_err();
        assert!(e.contains("worker eth1/1") && !e.contains("eth1/0"), "{e}");
        let e = health(now, &w(fresh), old).unwrap_err();
        assert!(e.starts_with("collector"), "{e}");
    }
}
