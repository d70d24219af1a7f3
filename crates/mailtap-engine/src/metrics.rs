//! `--metrics-listen`: the counters of a run (per live queue, or per shard
//! of `mailtap read`) in Prometheus text format, and `/healthz`, `/readyz`.
//!
//! A scrape reads the same relaxed atomics the stats log reads (workers
//! publish them every 100 ms) and locks each latency histogram briefly;
//! nothing on the packet path knows a scrape happened.
//!
//! The exposition is prometheus-client's OpenMetrics text: its encoder
//! writes the HELP/TYPE lines, the `_total` suffix of counters, the
//! histograms' cumulative buckets, `_sum`, `_count` and the final `# EOF`.
//! Latencies are real histograms (fixed buckets from 10 µs to 60 s), which
//! Prometheus can add up across sensors and queues, unlike quantiles.

use crate::collector::{CollectorStats, RECORD_KINDS};
use crate::stats::SharedStats;
use crate::summary::EngineError;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelValueEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the endpoint reports: per queue (live) or per shard (read, with
/// interface "file"), the collector, the Kafka sink.
pub(crate) struct Metrics {
    pub(crate) started: Instant,
    pub(crate) capture: &'static str,
    /// (interface, queue, the worker's counters), one per worker/shard.
    pub(crate) queues: Vec<(String, u32, Arc<SharedStats>)>,
    /// Seconds from a record's receive batch to its hand-over to the
    /// collector, every worker's (one histogram shared by all).
    pub(crate) emit_latency: Histogram,
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

/// The latency histograms' upper bounds, in seconds: 10 µs to 60 s.
const LATENCY_BUCKETS: [f64; 21] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A latency histogram (seconds, [`LATENCY_BUCKETS`]). Clones share it.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A label value, escaped (backslash, quote, newline) as the text format
/// wants: prometheus-client writes label values as they are.
pub(crate) struct Label<'a>(pub(crate) Cow<'a, str>);

impl<'a> Label<'a> {
    pub(crate) fn new(v: impl Into<Cow<'a, str>>) -> Self {
        Label(v.into())
    }
}

impl EncodeLabelValue for Label<'_> {
    fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => e.write_str("\\\\")?,
                '"' => e.write_str("\\\"")?,
                '\n' => e.write_str("\\n")?,
                c => e.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// One unlabelled counter (`name` without its `_total`, which the encoder
/// adds).
pub(crate) fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// One unlabelled gauge.
pub(crate) fn gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter or gauge family: one series per label set.
pub(crate) fn family<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    series: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in series {
        let f = m.encode_family(&labels)?;
        if matches!(ty, MetricType::Counter) {
            ConstCounter::new(v).encode(f)?;
        } else {
            ConstGauge::new(v).encode(f)?;
        }
    }
    Ok(())
}

/// A histogram.
fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    h.encode(e.encode_descriptor(name, help, None, MetricType::Histogram)?)
}

/// What a scrape encodes: the whole exposition, read when it is asked for.
struct Scrape(Arc<Metrics>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        self.0.encode(&mut e)
    }
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
    fn respond(self: &Arc<Self>, path: &str) -> (u16, String, &'static str) {
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
            _ => (
                200,
                self.render(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        }
    }

    /// The exposition text (OpenMetrics 1.0, which Prometheus reads).
    pub(crate) fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self.clone())));
        let mut s = String::with_capacity(16384);
        let _ = prometheus_client::encoding::text::encode(&mut s, &registry);
        s
    }

    fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        gauge(
            e,
            "mailtap_uptime_seconds",
            "Seconds since the run started.",
            (self.started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
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
            let name = format!(
                "mailtap_queue_{}",
                name.strip_suffix("_total").unwrap_or(name)
            );
            let ty = if ty == "counter" {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            family(
                e,
                &name,
                help,
                ty,
                self.queues.iter().map(|(iface, queue, q)| {
                    (
                        [
                            ("interface", Label::new(iface.as_str())),
                            ("queue", Label::new(queue.to_string())),
                            ("capture", Label::new(self.capture)),
                        ],
                        get(q),
                    )
                }),
            )?;
        }
        family(
            e,
            "mailtap_collector_records",
            "Records the collector wrote, by type.",
            MetricType::Counter,
            RECORD_KINDS
                .iter()
                .zip(&self.collector.records)
                .map(|(kind, a)| ([("type", Label::new(*kind))], a.load(Ordering::Relaxed))),
        )?;
        counter(
            e,
            "mailtap_collector_batches",
            "Record batches the collector wrote.",
            self.collector.batches.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "mailtap_collector_queue_batches",
            "Record batches waiting for the collector.",
            self.collector.queue.len() as u64,
        )?;
        gauge(
            e,
            "mailtap_collector_queue_capacity_batches",
            "Capacity of the collector's queue.",
            self.collector.capacity as u64,
        )?;
        let b = &self.collector.budget;
        gauge(
            e,
            "mailtap_collector_queue_bytes",
            "Approximate bytes of records sent to the collector and not yet written.",
            b.inflight(),
        )?;
        gauge(
            e,
            "mailtap_collector_queue_peak_bytes",
            "The most bytes of records that were on their way to the collector at once.",
            b.peak(),
        )?;
        gauge(
            e,
            "mailtap_collector_queue_capacity_bytes",
            "The bound of those bytes (general.collector_queue_bytes).",
            b.limit,
        )?;
        counter(
            e,
            "mailtap_extract_size_mismatch",
            "Messages whose bytes reaching the extraction sink differed from their size (written complete: false).",
            self.collector.extract_size_mismatch.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "mailtap_extract_bytes_lost",
            "Message bytes that never reached the extraction sink.",
            self.collector.extract_bytes_lost.load(Ordering::Relaxed),
        )?;
        crate::collector::encode_output_metrics(e, &self.collector)?;
        #[cfg(feature = "kafka")]
        let kafka = self.collector.kafka.lock().ok().and_then(|k| k.clone());
        #[cfg(feature = "kafka")]
        let kafka_on = kafka.is_some();
        #[cfg(not(feature = "kafka"))]
        let kafka_on = false;
        #[cfg(feature = "kafka")]
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
                let name = format!(
                    "mailtap_kafka_{}",
                    name.strip_suffix("_total").unwrap_or(name)
                );
                if ty == "counter" {
                    counter(e, &name, help, v)?;
                } else {
                    gauge(e, &name, help, v)?;
                }
            }
        }
        histogram(
            e,
            "mailtap_record_emit_latency_seconds",
            "From the end of the receive batch that produced a record to its hand-over to the collector.",
            &self.emit_latency,
        )?;
        if kafka_on {
            histogram(
                e,
                "mailtap_kafka_delivery_latency_seconds",
                "From a Kafka message's hand-over to librdkafka to the brokers' acknowledgement (linger, batching, round trip).",
                &self.collector.kafka_delivery_latency,
            )?;
        }
        histogram(
            e,
            "mailtap_record_write_latency_seconds",
            "From a shard handing a record batch over to the collector having written it to every sink.",
            &self.collector.write_latency,
        )
    }
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
    #[derive(Debug)]
    struct Sample(Histogram);

    impl prometheus_client::collector::Collector for Sample {
        fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
            family(
                &mut e,
                "t_packets",
                "Packets.",
                MetricType::Counter,
                [([("interface", Label::new("a\"b\\c\nd"))], 7)],
            )?;
            gauge(&mut e, "t_depth", "Depth.", 3u64)?;
            histogram(&mut e, "t_latency_seconds", "Latency.", &self.0)
        }
    }

    #[test]
    fn exposition_is_openmetrics_with_histograms() {
        let h = latency_histogram();
        h.observe(0.000_03);
        h.observe(0.2);
        h.observe(1e6);
        let mut r = Registry::default();
        r.register_collector(Box::new(Sample(h)));
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        for want in [
            "# TYPE t_packets counter\n",
            "t_packets_total{interface=\"a\\\"b\\\\c\\nd\"} 7\n",
            "t_depth 3\n",
            "# TYPE t_latency_seconds histogram\n",
            "t_latency_seconds_count 3\n",
            "t_latency_seconds_bucket{le=\"0.000025\"} 0\n",
            "t_latency_seconds_bucket{le=\"0.00005\"} 1\n",
            "t_latency_seconds_bucket{le=\"0.25\"} 2\n",
            "t_latency_seconds_bucket{le=\"60.0\"} 2\n",
            "t_latency_seconds_bucket{le=\"+Inf\"} 3\n",
        ] {
            assert!(s.contains(want), "{want:?} not in\n{s}");
        }
        assert!(s.ends_with("# EOF\n"), "{s}");
    }
}
