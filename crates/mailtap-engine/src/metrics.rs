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
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
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

/// The HTTP endpoint's thread: `GET /metrics` (any path, in fact) gets
/// the exposition text.
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
                            let body = m.render();
                            let resp = tiny_http::Response::from_string(body).with_header(
                                tiny_http::Header::from_bytes(
                                    &b"Content-Type"[..],
                                    &b"text/plain; version=0.0.4"[..],
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
