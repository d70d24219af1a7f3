//! The producer, its delivery reports, and the spill/replay state machine.

use crate::encode::{Encoder, Outgoing};
use crate::spill::{Pos, Spill};
use crate::{KafkaConfig, KafkaCounters, KafkaError, LIBRDKAFKA_DEFAULTS};
use mailtap_core::Record;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Spill segment size: small enough that consumed space is returned soon.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Replay window: spilled records handed to librdkafka and not yet acked.
const REPLAY_WINDOW_RECORDS: usize = 10_000;
const REPLAY_WINDOW_BYTES: usize = 32 << 20;
/// After a failed replay, wait this long before probing again (failures
/// from a broker that is down usually take `message.timeout.ms` anyway;
/// this only stops a tight loop on errors that come back at once).
const REPLAY_BACKOFF: Duration = Duration::from_millis(250);
/// The head file is rewritten at most this often while replaying.
const HEAD_PERSIST_EVERY: Duration = Duration::from_millis(200);

/// What a delivery report refers to.
enum Tag {
    /// Produced directly by `write`, with its write order.
    Direct(u64),
    /// Replayed from the spill; the position its read started at.
    Replay(Pos),
}

/// A directly produced record librdkafka gave up on.
struct Failed {
    seq: u64,
    topic: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

#[derive(Default)]
struct Reports {
    callbacks: u64,
    direct_ok: u64,
    direct_failed: Vec<Failed>,
    replay_ok: Vec<Pos>,
    replay_failed: Vec<Pos>,
    replay_dropped: Vec<Pos>,
    permanent: u64,
    failed: u64,
    last_error: Option<RdError>,
    /// Microseconds from a message's hand-over to librdkafka to its
    /// acknowledgement, for the collector's latency metric; bounded.
    delivery_us: Vec<u64>,
}

/// Most delivery latencies kept between two drains (the rest are not
/// sampled; the counters stay exact).
const MAX_LATENCY_SAMPLES: usize = 65_536;

/// Collects delivery reports. With a `BaseProducer` they run inside our
/// own `poll` calls on the collector thread; the mutex is never contended
/// and only there because librdkafka contexts must be `Sync`.
struct Ctx {
    reports: Mutex<Reports>,
}

impl ClientContext for Ctx {}

/// Errors retrying cannot fix: the record is dropped (and counted), since
/// spilling it would block the spill's head forever.
fn permanent(e: &RdError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidArgument
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

impl ProducerContext for Ctx {
    /// The tag, and when the message was handed to librdkafka.
    type DeliveryOpaque = Box<(Tag, Instant)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(Tag, Instant)>) {
        let (tag, sent) = *opaque;
        let mut r = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        r.callbacks += 1;
        if result.is_ok() && r.delivery_us.len() < MAX_LATENCY_SAMPLES {
            r.delivery_us
                .push(sent.elapsed().as_micros().min(u64::MAX as u128) as u64);
        }
        match (result, tag) {
            (Ok(_), Tag::Direct(_)) => r.direct_ok += 1,
            (Ok(_), Tag::Replay(p)) => r.replay_ok.push(p),
            (Err((e, _)), tag) if permanent(e) => {
                r.permanent += 1;
                tracing::error!(error = %e, "kafka: record refused for good, dropped");
                if let Tag::Replay(p) = tag {
                    // Consumed from the spill all the same.
                    r.replay_dropped.push(p);
                }
            }
            (Err((e, m)), Tag::Direct(seq)) => {
                r.failed += 1;
                r.last_error = Some(e.clone());
                r.direct_failed.push(Failed {
                    seq,
                    topic: m.topic().to_string(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                });
            }
            (Err((e, _)), Tag::Replay(p)) => {
                r.failed += 1;
                r.last_error = Some(e.clone());
                r.replay_failed.push(p);
            }
        }
    }
}

/// State of a record read from the spill and not yet committed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    InFlight { end: Pos, bytes: usize },
    Acked { end: Pos },
}

/// The Kafka sink. See the crate documentation.
///
/// It uses a `BaseProducer` rather than a `ThreadedProducer`: delivery
/// reports then run in [`KafkaSink::poll`], on the collector thread that
/// owns the spill, so moving failed records into the spill and deciding
/// when to replay need no shared state or locking, and the collector
/// already has a natural place to poll (every batch and idle tick).
pub struct KafkaSink {
    cfg: KafkaConfig,
    producer: BaseProducer<Ctx>,
    enc: Encoder,
    spill: Spill,
    /// New records go to the spill's tail (it is non-empty, or a failure
    /// was seen and it is being filled).
    spilling: bool,
    /// Records read from the spill since the last commit, by read start.
    replay: BTreeMap<Pos, Replay>,
    replay_bytes: usize,
    /// A replayed record failed: rewind once nothing replayed is in flight.
    need_rewind: bool,
    /// Until a replayed record is delivered, replay one at a time.
    probing: bool,
    replay_not_before: Instant,
    head_persisted: Instant,
    /// Spill records handed to librdkafka and not yet reported on.
    replay_inflight: usize,
    seq: u64,
    c: KafkaCounters,
    /// An error `poll` met, for the next `write`.
    pending_err: Option<KafkaError>,
}

impl KafkaSink {
    /// Validates `cfg`, opens the spill (validating it and cutting torn
    /// tails) and creates the producer. A spill left by an earlier run is
    /// replayed by [`KafkaSink::poll`] before any new record, once the
    /// brokers are reachable. Does not wait for the brokers.
    pub fn new(cfg: KafkaConfig) -> Result<Self, KafkaError> {
        cfg.validate().map_err(KafkaError::Config)?;
        let producer = make_producer(&cfg)?;
        let (spill, rep) = Spill::open(&cfg.spill_dir, cfg.spill_max_bytes, SEGMENT_BYTES)?;
        if rep.records > 0 {
            tracing::warn!(
                records = rep.records,
                bytes = spill.bytes(),
                dir = %cfg.spill_dir.display(),
                "kafka: spill from an earlier run; replaying it before new records"
            );
        }
        let c = KafkaCounters {
            spill_recovered: rep.records,
            spill_torn_bytes: rep.torn_bytes,
            ..KafkaCounters::default()
        };
        let now = Instant::now();
        Ok(KafkaSink {
            enc: Encoder::new(&cfg),
            spilling: !spill.is_empty(),
            cfg,
            producer,
            spill,
            replay: BTreeMap::new(),
            replay_bytes: 0,
            need_rewind: false,
            probing: true,
            replay_not_before: now,
            head_persisted: now,
            replay_inflight: 0,
            seq: 0,
            c,
            pending_err: None,
        })
    }

    /// Hands one record to Kafka. Never waits for the brokers: the record
    /// is queued in librdkafka, or appended to the spill while the spill is
    /// in use or librdkafka's queue is full. Errors are spill I/O errors
    /// (the record is then lost; the sink stays usable).
    pub fn write(&mut self, r: &Record) -> Result<(), KafkaError> {
        if let Some(e) = self.pending_err.take() {
            return Err(e);
        }
        let Some(out) = self.enc.encode(r) else {
            return Ok(());
        };
        self.send(out)
    }

    fn send(&mut self, out: Outgoing) -> Result<(), KafkaError> {
        self.c.records += 1;
        let topic = out.kind.topic(&self.cfg.topics).to_string();
        let key = out.key.as_deref().map(str::as_bytes);
        if self.spilling {
            return self.spill_record(&topic, key, &out.value);
        }
        let seq = self.seq;
        self.seq += 1;
        match self.produce(&topic, key, &out.value, Tag::Direct(seq)) {
            Ok(()) => Ok(()),
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                // Serve delivery reports once (frees queue space) and retry.
                self.producer.poll(Duration::ZERO);
                match self.produce(&topic, key, &out.value, Tag::Direct(seq)) {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        tracing::warn!(
                            "kafka: librdkafka queue full (brokers too slow or unreachable); spilling to {}",
                            self.cfg.spill_dir.display()
                        );
                        self.start_spilling()?;
                        self.spill_record(&topic, key, &out.value)
                    }
                }
            }
            Err(e) if permanent(&e) || !matches!(e, RdError::MessageProduction(_)) => {
                self.c.failed_permanent += 1;
                tracing::error!(error = %e, topic, "kafka: record refused, dropped");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka: produce failed; spilling");
                self.start_spilling()?;
                self.spill_record(&topic, key, &out.value)
            }
        }
    }

    fn produce(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        tag: Tag,
    ) -> Result<(), RdError> {
        let mut rec =
            BaseRecord::with_opaque_to(topic, Box::new((tag, Instant::now()))).payload(value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        match self.producer.send(rec) {
            Ok(()) => {
                self.c.produced += 1;
                Ok(())
            }
            Err((e, _)) => Err(e),
        }
    }

    fn spill_record(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(), KafkaError> {
        if self.spill.append(topic, key, value)? {
            self.c.spilled += 1;
        } else {
            self.c.spill_dropped += 1;
            // Loud, but not once per record: first drop, then every 1000th.
            if self.c.spill_dropped % 1000 == 1 {
                tracing::error!(
                    dropped = self.c.spill_dropped,
                    spill_bytes = self.spill.bytes(),
                    limit = self.cfg.spill_max_bytes,
                    "kafka: spill full (kafka.spill_max_bytes); records are being LOST"
                );
            }
        }
        Ok(())
    }

    /// Switches to spilling: purges what librdkafka still queues (it would
    /// most likely fail too, and must not end up behind newer spilled
    /// records) and spills it in write order.
    fn start_spilling(&mut self) -> Result<(), KafkaError> {
        if !self.spilling {
            self.spilling = true;
            self.probing = true;
            self.replay_not_before = Instant::now() + REPLAY_BACKOFF;
        }
        self.producer.purge(PurgeConfig::default().queue());
        self.serve();
        self.take_reports()
    }

    /// Serves every delivery report librdkafka has ready, without waiting.
    fn serve(&mut self) {
        for _ in 0..1000 {
            let before = self.reports().callbacks;
            self.producer.poll(Duration::ZERO);
            if self.reports().callbacks == before {
                break;
            }
        }
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.producer
            .context()
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Applies collected delivery reports.
    fn take_reports(&mut self) -> Result<(), KafkaError> {
        let r = {
            // The latency samples stay until drain_delivery_latencies.
            let mut g = self.reports();
            let samples = std::mem::take(&mut g.delivery_us);
            let r = std::mem::take(&mut *g);
            g.delivery_us = samples;
            r
        };
        self.c.delivered += r.direct_ok + r.replay_ok.len() as u64;
        self.c.failed += r.failed;
        self.c.failed_permanent += r.permanent;
        for (p, ok) in r
            .replay_ok
            .into_iter()
            .map(|p| (p, true))
            .chain(r.replay_dropped.into_iter().map(|p| (p, false)))
        {
            if let Some(Replay::InFlight { end, bytes }) = self.replay.get(&p).copied() {
                self.replay_bytes -= bytes;
                self.replay_inflight -= 1;
                self.replay.insert(p, Replay::Acked { end });
                if ok {
                    self.c.replayed += 1;
                    self.probing = false;
                }
            }
        }
        if !r.replay_failed.is_empty() {
            for p in r.replay_failed {
                if let Some(Replay::InFlight { bytes, .. }) = self.replay.remove(&p) {
                    self.replay_bytes -= bytes;
                    self.replay_inflight -= 1;
                }
            }
            if !self.need_rewind {
                tracing::warn!(
                    error = %r.last_error.as_ref().map(ToString::to_string).unwrap_or_default(),
                    spill_records = self.spill.records(),
                    "kafka: replay from spill failed; brokers still unreachable, will retry"
                );
            }
            self.need_rewind = true;
            self.probing = true;
            self.replay_not_before = Instant::now() + REPLAY_BACKOFF;
            // The rest of the window would fail the same way: fail it now.
            self.producer.purge(PurgeConfig::default().queue());
        }
        if !r.direct_failed.is_empty() {
            let mut failed = r.direct_failed;
            if !self.spilling {
                tracing::warn!(
                    error = %r.last_error.as_ref().map(ToString::to_string).unwrap_or_default(),
                    dir = %self.cfg.spill_dir.display(),
                    "kafka: deliveries failing (brokers unreachable?); spilling to disk until they return"
                );
                self.spilling = true;
                self.probing = true;
                self.replay_not_before = Instant::now() + REPLAY_BACKOFF;
                // Records still queued behind the failed ones go first,
                // in write order, before anything newer.
                self.producer.purge(PurgeConfig::default().queue());
                self.serve();
                let more = std::mem::take(&mut *self.reports());
                self.c.delivered += more.direct_ok;
                self.c.failed += more.failed;
                self.c.failed_permanent += more.permanent;
                failed.extend(more.direct_failed);
            }
            failed.sort_by_key(|f| f.seq);
            for f in failed {
                self.spill_record(&f.topic, f.key.as_deref(), &f.value)?;
            }
        }
        // Commit the acked prefix.
        while let Some((&from, &Replay::Acked { end })) = self.replay.first_key_value() {
            if from != self.spill.head() {
                // A record before it is not acked yet (it failed; a rewind
                // is pending).
                break;
            }
            self.replay.remove(&from);
            self.spill.commit(end);
        }
        Ok(())
    }

    /// Serves delivery reports, spills failed deliveries, replays the
    /// spill while the brokers take it, and returns to direct producing
    /// once it is empty. Call it often (every batch, idle ticks); it does
    /// not wait. A spill I/O error is logged and returned by the next
    /// [`KafkaSink::write`] (or [`KafkaSink::finish`]).
    /// Hands every delivery latency (microseconds from a message's
    /// hand-over to librdkafka to the brokers' acknowledgement) sampled
    /// since the last call to `f`, for a latency histogram.
    pub fn drain_delivery_latencies(&mut self, mut f: impl FnMut(u64)) {
        let mut r = self.reports();
        for us in r.delivery_us.drain(..) {
            f(us);
        }
    }

    pub fn poll(&mut self) {
        if let Err(e) = self.poll_inner() {
            tracing::error!(error = %e, "kafka: poll failed");
            self.pending_err.get_or_insert(e);
        }
    }

    fn poll_inner(&mut self) -> Result<(), KafkaError> {
        self.serve();
        self.take_reports()?;
        self.check_fatal()?;
        if self.spilling {
            self.replay_some()?;
            if self.spill.is_empty() && self.replay.is_empty() {
                self.spilling = false;
                self.spill.persist_head()?;
                tracing::info!(
                    replayed = self.c.replayed,
                    "kafka: spill drained; producing directly again"
                );
            } else if self.head_persisted.elapsed() >= HEAD_PERSIST_EVERY {
                self.spill.persist_head()?;
                self.head_persisted = Instant::now();
            }
        }
        Ok(())
    }

    fn replay_some(&mut self) -> Result<(), KafkaError> {
        if self.need_rewind {
            if self.replay_inflight > 0 {
                return Ok(());
            }
            self.spill.rewind();
            self.need_rewind = false;
        }
        if Instant::now() < self.replay_not_before {
            return Ok(());
        }
        let window = if self.probing {
            1
        } else {
            REPLAY_WINDOW_RECORDS
        };
        loop {
            if self.replay_inflight >= window || self.replay_bytes >= REPLAY_WINDOW_BYTES {
                return Ok(());
            }
            let Some((from, end, rec)) = self.spill.read_next()? else {
                return Ok(());
            };
            if let Some(Replay::Acked { .. }) = self.replay.get(&from) {
                // Delivered before a rewind: do not send it twice.
                continue;
            }
            let bytes = rec.value.len() + rec.key.as_ref().map_or(0, Vec::len);
            match self.produce(
                &rec.topic,
                rec.key.as_deref(),
                &rec.value,
                Tag::Replay(from),
            ) {
                Ok(()) => {
                    self.replay.insert(from, Replay::InFlight { end, bytes });
                    self.replay_bytes += bytes;
                    self.replay_inflight += 1;
                }
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.spill.set_cursor(from);
                    return Ok(());
                }
                Err(e) => {
                    // Refused for good: consumed, counted, dropped.
                    tracing::error!(error = %e, topic = rec.topic, "kafka: spilled record refused, dropped");
                    self.c.failed_permanent += 1;
                    self.replay.insert(from, Replay::Acked { end });
                }
            }
        }
    }

    /// An idempotent producer can hit a fatal error (librdkafka then
    /// refuses everything); spill what it holds and start a new one.
    fn check_fatal(&mut self) -> Result<(), KafkaError> {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return Ok(());
        };
        tracing::error!(
            ?code,
            reason,
            "kafka: fatal producer error; recreating the producer"
        );
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.serve();
        self.spilling = true;
        self.take_reports()?;
        self.producer = make_producer(&self.cfg)?;
        // Whatever the old producer had in flight from the spill is gone.
        self.replay.retain(|_, r| matches!(r, Replay::Acked { .. }));
        self.replay_bytes = 0;
        self.replay_inflight = 0;
        self.need_rewind = true;
        Ok(())
    }

    /// The counters, with the gauges as of now.
    pub fn counters(&self) -> KafkaCounters {
        KafkaCounters {
            spill_bytes: self.spill.bytes(),
            spill_records: self.spill.records(),
            queue_depth: self.producer.in_flight_count().max(0) as u64,
            emails_inline: self.enc.emails_inline,
            emails_truncated: self.enc.emails_truncated,
            emails_size_mismatch: self.enc.emails_size_mismatch,
            email_bytes_lost: self.enc.email_bytes_lost,
            ..self.c.clone()
        }
    }

    /// Sends messages still open, waits up to `flush_timeout` for
    /// deliveries (replaying the spill meanwhile), then spills whatever is
    /// undelivered and syncs the spill so the next run replays it.
    pub fn finish(mut self) -> (KafkaCounters, Result<(), KafkaError>) {
        let res = self.finish_inner();
        (self.counters(), res)
    }

    fn finish_inner(&mut self) -> Result<(), KafkaError> {
        let mut res = match self.pending_err.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        for out in self.enc.orphans() {
            if let Err(e) = self.send(out) {
                res = Err(e);
            }
        }
        let deadline = Instant::now() + self.cfg.flush_timeout;
        loop {
            self.poll_inner()?;
            let idle = self.producer.in_flight_count() == 0;
            if idle && (!self.spilling || self.spill.is_empty()) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Wait for a delivery report (this is the one place we block).
            self.producer.poll(left.min(Duration::from_millis(20)));
        }
        // Give up on what is left: direct records go to the spill, replayed
        // ones are still in it.
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        self.serve();
        self.take_reports()?;
        self.replay.clear();
        self.replay_bytes = 0;
        self.replay_inflight = 0;
        if !self.spill.is_empty() {
            tracing::warn!(
                records = self.spill.records(),
                bytes = self.spill.bytes(),
                dir = %self.cfg.spill_dir.display(),
                "kafka: undelivered records left in the spill; the next run replays them"
            );
        }
        self.spill.sync()?;
        res
    }
}

fn make_producer(cfg: &KafkaConfig) -> Result<BaseProducer<Ctx>, KafkaError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in LIBRDKAFKA_DEFAULTS {
        cc.set(*k, *v);
    }
    for (k, v) in &cfg.librdkafka {
        cc.set(k, v);
    }
    let ctx = Ctx {
        reports: Mutex::new(Reports::default()),
    };
    Ok(cc.create_with_context(ctx)?)
}
