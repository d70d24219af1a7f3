//! The shard's flow table: finds or creates the connection for each TCP
//! segment, updates its state, reassembles both directions, hands bytes to
//! the application analyzer (by port, or after dynamic protocol detection
//! over a bounded buffer of the first bytes), expires idle and closed
//! connections, evicts the oldest when full, and emits conn.log records.

use crate::conn::{conn_state, flags, update_states, Endpoint, History};
use crate::reassembly::{Chunk, MemBudget, Stream};
use crate::{FlowKey, LocalNets, UidGenerator};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, ConnRecord, Output, Record, TcpAnalyzer, Timestamp};
use serde::Deserialize;
use std::collections::VecDeque;
use std::net::IpAddr;

/// Flow-layer tunables (`[flow]` in the configuration). Limits given here
/// are per shard; the engine divides the user's totals among shards.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Most connections tracked at once; the least recently created idle
    /// one is evicted (and logged) to make room.
    pub max_flows: usize,
    /// Seconds without packets before a TCP connection is expired (Zeek's
    /// `tcp_inactivity_timeout`).
    pub tcp_inactivity_timeout: f64,
    /// Seconds a closed or reset connection is kept to absorb its last
    /// packets (Zeek's `tcp_close_delay`).
    pub tcp_close_delay: f64,
    /// Out-of-order bytes buffered per direction of one connection.
    pub reassembly_stream_limit: usize,
    /// Out-of-order bytes buffered in all connections of the shard.
    pub reassembly_memory: usize,
    /// Bytes of the first payload kept for dynamic protocol detection
    /// (Zeek's `dpd_buffer_size`).
    pub dpd_buffer_size: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_inactivity_timeout: 300.0,
            tcp_close_delay: 5.0,
            reassembly_stream_limit: 1 << 20,
            reassembly_memory: 512 << 20,
            dpd_buffer_size: 1024,
        }
    }
}

impl FlowConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_flows == 0 {
            return Err("flow.max_flows must be at least 1".into());
        }
        for (k, v) in [
            ("flow.tcp_inactivity_timeout", self.tcp_inactivity_timeout),
            ("flow.tcp_close_delay", self.tcp_close_delay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{k} must be a non-negative number of seconds"));
            }
        }
        Ok(())
    }
}

/// Result of dynamic protocol detection on the buffered first bytes.
pub enum Detect<A> {
    Attach(A),
    NeedMore,
    GiveUp,
}

/// Chooses the application analyzer of a connection.
pub trait AnalyzerFactory {
    type Analyzer: TcpAnalyzer;
    /// An analyzer for a connection by its ports; `None` to try detection.
    fn by_port(&self, id: &ConnId) -> Option<Self::Analyzer>;
    /// Detection over the first bytes of each side seen so far.
    fn detect(&self, id: &ConnId, orig: &[u8], resp: &[u8]) -> Detect<Self::Analyzer>;
}

/// One decoded TCP segment, as the flow table needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub ts: Timestamp,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// TCP flag bits as on the wire (see [`crate::conn::flags`]).
    pub flags: u8,
    pub window: u16,
    /// IP total length, for conn.log `*_ip_bytes`.
    pub ip_len: u32,
    pub payload: &'a [u8],
    /// Checksum verification result, when verification is on.
    pub bad_checksum: bool,
}

/// What the table did, for the summary line, stats and metrics.
#[derive(Clone, Debug, Default)]
pub struct FlowCounters {
    pub packets: u64,
    pub payload_bytes: u64,
    pub flows_created: u64,
    pub flows_partial: u64,
    pub flows_closed: u64,
    pub flows_timed_out: u64,
    pub flows_evicted: u64,
    pub flows_flushed_at_end: u64,
    pub analyzers_by_port: u64,
    pub analyzers_by_detection: u64,
    pub gap_bytes: u64,
    pub forced_gaps: u64,
    pub inconsistent_overlaps: u64,
    pub reassembly_peak_bytes: u64,
    pub bad_checksums: u64,
}

enum App<A> {
    Detecting { buf: Vec<u8>, order: Vec<(bool, u32)> },
    Attached(A),
    Off,
}

struct Flow<A> {
    serial: u64,
    id: ConnId,
    uid: String,
    /// Whether the canonical key's `a` side is the originator.
    orig_is_a: bool,
    first_ts: Timestamp,
    last_ts: Timestamp,
    ep: [Endpoint; 2],
    streams: [Stream; 2],
    history: History,
    ann: ConnAnnotations,
    app: App<A>,
    closing: bool,
}

/// The flow table of one shard.
pub struct FlowTable<F: AnalyzerFactory> {
    map: ahash::HashMap<FlowKey, Flow<F::Analyzer>>,
    factory: F,
    cfg: FlowConfig,
    uids: UidGenerator,
    local: LocalNets,
    budget: MemBudget,
    counters: FlowCounters,
    idle_q: VecDeque<(Timestamp, u64, FlowKey)>,
    closed_q: VecDeque<(Timestamp, u64, FlowKey)>,
    serial: u64,
    now: Timestamp,
    inactivity: i64,
    close_delay: i64,
}

fn secs_to_nanos(s: f64) -> i64 {
    (s * 1e9).min(i64::MAX as f64) as i64
}

impl<F: AnalyzerFactory> FlowTable<F> {
    pub fn new(cfg: FlowConfig, factory: F, uids: UidGenerator, local: LocalNets) -> Self {
        let budget = MemBudget::new(cfg.reassembly_memory);
        FlowTable {
            map: ahash::HashMap::default(),
            inactivity: secs_to_nanos(cfg.tcp_inactivity_timeout),
            close_delay: secs_to_nanos(cfg.tcp_close_delay),
            factory,
            cfg,
            uids,
            local,
            budget,
            counters: FlowCounters::default(),
            idle_q: VecDeque::new(),
            closed_q: VecDeque::new(),
            serial: 0,
            now: Timestamp::ZERO,
        }
    }

    pub fn counters(&self) -> FlowCounters {
        let mut c = self.counters.clone();
        c.reassembly_peak_bytes = self.budget.peak as u64;
        c
    }

    /// Connections tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held in reassembly buffers now.
    pub fn reassembly_bytes(&self) -> usize {
        self.budget.used
    }

    /// Processes one TCP segment.
    pub fn process(&mut self, seg: &Segment<'_>, out: &mut Output) {
        self.counters.packets += 1;
        self.counters.payload_bytes += seg.payload.len() as u64;
        if seg.ts > self.now {
            self.now = seg.ts;
        }
        let (key, src_is_a) = FlowKey::new(seg.src, seg.src_port, seg.dst, seg.dst_port);
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cfg.max_flows {
                self.evict_one(out);
            }
            let flow = self.new_flow(seg, src_is_a);
            self.idle_q.push_back((seg.ts, flow.serial, key));
            self.map.insert(key, flow);
        }
        let Some(flow) = self.map.get_mut(&key) else { return };
        let is_orig = flow.orig_is_a == src_is_a;
        let closing_before = flow.closing;
        Self::packet(&self.factory, &self.cfg, &mut self.budget, &mut self.counters, flow, seg, is_orig, out);
        if flow.closing && !closing_before {
            self.closed_q.push_back((seg.ts, flow.serial, key));
        }
    }

    fn new_flow(&mut self, seg: &Segment<'_>, src_is_a: bool) -> Flow<F::Analyzer> {
        let syn = seg.flags & flags::SYN != 0;
        let ack = seg.flags & flags::ACK != 0;
        // Originator: the sender of the first SYN. Without one (the capture
        // started mid-connection), the receiver of a SYN-ACK, else the
        // sender of the first packet unless only its source port looks
        // like a service port (< 1024 towards an ephemeral port).
        let flipped = if syn {
            ack
        } else {
            seg.src_port < 1024 && seg.dst_port >= 1024
        };
        let (oh, op, rh, rp) = if flipped {
            (seg.dst, seg.dst_port, seg.src, seg.src_port)
        } else {
            (seg.src, seg.src_port, seg.dst, seg.dst_port)
        };
        let id = ConnId { orig_h: oh, orig_p: op, resp_h: rh, resp_p: rp };
        let partial = !(syn && !ack);
        self.serial += 1;
        self.counters.flows_created += 1;
        let app = if partial {
            // Zeek's SMTP/POP3 skip connections whose start was not seen.
            self.counters.flows_partial += 1;
            App::Off
        } else if let Some(a) = self.factory.by_port(&id) {
            self.counters.analyzers_by_port += 1;
            App::Attached(a)
        } else {
            App::Detecting { buf: Vec::new(), order: Vec::new() }
        };
        let mut history = History::default();
        if flipped {
            history.mark('^');
        }
        Flow {
            serial: self.serial,
            uid: self.uids.conn_uid(&id, seg.ts),
            id,
            orig_is_a: src_is_a != flipped,
            first_ts: seg.ts,
            last_ts: seg.ts,
            ep: Default::default(),
            streams: Default::default(),
            history,
            ann: ConnAnnotations::default(),
            app,
            closing: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn packet(
        factory: &F,
        cfg: &FlowConfig,
        budget: &mut MemBudget,
        counters: &mut FlowCounters,
        flow: &mut Flow<F::Analyzer>,
        seg: &Segment<'_>,
        is_orig: bool,
        out: &mut Output,
    ) {
        let fl = seg.flags;
        flow.last_ts = flow.last_ts.max(seg.ts);
        {
            let (a, b) = flow.ep.split_at_mut(1);
            let (sender, peer) = if is_orig { (&mut a[0], &mut b[0]) } else { (&mut b[0], &mut a[0]) };
            sender.pkts += 1;
            sender.ip_bytes += u64::from(seg.ip_len);
            update_states(sender, peer, fl, seg.payload.len());
        }
        let h = &mut flow.history;
        let syn = fl & flags::SYN != 0;
        if seg.bad_checksum {
            counters.bad_checksums += 1;
            h.add(b'c', is_orig);
        }
        if syn && fl & flags::FIN != 0 {
            h.add(b'q', is_orig);
        } else if syn {
            h.add(if fl & flags::ACK != 0 { b'h' } else { b's' }, is_orig);
        }
        if fl & flags::FIN != 0 {
            h.add(b'f', is_orig);
        }
        if fl & flags::RST != 0 {
            h.add(b'r', is_orig);
        }
        if !seg.payload.is_empty() {
            h.add(b'd', is_orig);
        } else if fl & flags::ACK != 0 && fl & (flags::SYN | flags::FIN | flags::RST) == 0 {
            h.add(b'a', is_orig);
        }
        if seg.window == 0 && !syn && fl & flags::RST == 0 {
            h.add(b'w', is_orig);
        }

        let Flow { streams, app, ann, uid, id, history, .. } = flow;
        let (s0, s1) = streams.split_at_mut(1);
        let (mine, theirs) = if is_orig { (&mut s0[0], &mut s1[0]) } else { (&mut s1[0], &mut s0[0]) };
        let gaps_before = mine.gap_bytes + theirs.gap_bytes;
        let mut cx = ConnCtx { ts: seg.ts, uid, id, out, conn: ann };
        if seg.bad_checksum {
            // Zeek does not analyse segments with bad checksums.
        } else {
            let outcome = mine.segment(
                seg.seq,
                syn,
                fl & flags::FIN != 0,
                seg.payload,
                cfg.reassembly_stream_limit,
                budget,
                &mut |c| to_app(factory, cfg, app, &mut cx, is_orig, c),
            );
            if outcome.retransmission {
                history.add(b't', is_orig);
            }
            if outcome.inconsistent {
                history.add(b'i', is_orig);
                counters.inconsistent_overlaps += 1;
                cx.weird("rexmit_inconsistency", None, "TCP");
            }
            if outcome.forced_gap {
                counters.forced_gaps += 1;
            }
            if fl & flags::ACK != 0 {
                theirs.ack(seg.ack, budget, &mut |c| to_app(factory, cfg, app, &mut cx, !is_orig, c));
            }
        }
        let gaps_after = mine.gap_bytes + theirs.gap_bytes;
        if gaps_after > gaps_before {
            counters.gap_bytes += gaps_after - gaps_before;
            // Zeek marks a content gap in the direction that missed data.
            history.add(b'g', if mine.gap_bytes > 0 { is_orig } else { !is_orig });
        }
        if ann.limit_reached {
            history.mark('X');
        }
        if fl & flags::RST != 0
            || (flow.ep[0].state == crate::conn::EndpointState::Closed
                && flow.ep[1].state == crate::conn::EndpointState::Closed)
        {
            flow.closing = true;
        }
    }

    /// Expires connections whose time has come, by packet time `now`.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        if now > self.now {
            self.now = now;
        }
        while let Some(&(t, serial, key)) = self.closed_q.front() {
            if t.0.saturating_add(self.close_delay) > self.now.0 {
                break;
            }
            self.closed_q.pop_front();
            if self.map.get(&key).is_some_and(|f| f.serial == serial) {
                self.counters.flows_closed += 1;
                self.remove(key, out);
            }
        }
        while let Some(&(t, serial, key)) = self.idle_q.front() {
            if t.0.saturating_add(self.inactivity) > self.now.0 {
                break;
            }
            self.idle_q.pop_front();
            match self.map.get(&key) {
                Some(f) if f.serial == serial => {
                    if f.last_ts.0.saturating_add(self.inactivity) <= self.now.0 {
                        self.counters.flows_timed_out += 1;
                        self.remove(key, out);
                    } else {
                        self.idle_q.push_back((f.last_ts, serial, key));
                    }
                }
                _ => {}
            }
        }
    }

    /// Ends every connection (end of input or shutdown), as Zeek does at
    /// termination.
    pub fn finish(&mut self, out: &mut Output) {
        let keys: Vec<FlowKey> = self.map.keys().copied().collect();
        for k in keys {
            self.counters.flows_flushed_at_end += 1;
            self.remove(k, out);
        }
        self.idle_q.clear();
        self.closed_q.clear();
    }

    fn evict_one(&mut self, out: &mut Output) {
        while let Some((_, serial, key)) = self.idle_q.pop_front() {
            if self.map.get(&key).is_some_and(|f| f.serial == serial) {
                self.counters.flows_evicted += 1;
                self.remove(key, out);
                return;
            }
        }
    }

    fn remove(&mut self, key: FlowKey, out: &mut Output) {
        let Some(mut flow) = self.map.remove(&key) else { return };
        let ts = flow.last_ts.max(self.now);
        let Flow { streams, app, ann, uid, id, history, .. } = &mut flow;
        let mut cx = ConnCtx { ts, uid, id, out, conn: ann };
        for (d, s) in streams.iter_mut().enumerate() {
            let is_orig = d == 0;
            let before = s.gap_bytes;
            s.flush(&mut self.budget, &mut |c| to_app(&self.factory, &self.cfg, app, &mut cx, is_orig, c));
            if s.gap_bytes > before {
                self.counters.gap_bytes += s.gap_bytes - before;
                history.add(b'g', is_orig);
            }
        }
        if let App::Attached(a) = app {
            a.done(&mut cx);
        }
        if flow.ann.limit_reached {
            flow.history.mark('X');
        }
        let rec = self.conn_record(&flow);
        out.push(Record::Conn(Box::new(rec)));
    }

    fn conn_record(&self, f: &Flow<F::Analyzer>) -> ConnRecord {
        let dur = f.last_ts.since(f.first_ts);
        let has_dur = dur.0 > 0;
        ConnRecord {
            ts: f.first_ts,
            uid: f.uid.clone(),
            id: f.id,
            service: f.ann.service.clone(),
            duration: has_dur.then_some(dur),
            orig_bytes: has_dur.then(|| f.streams[0].size()),
            resp_bytes: has_dur.then(|| f.streams[1].size()),
            conn_state: conn_state(f.ep[0].state, f.ep[1].state, f.streams[0].size(), f.streams[1].size()),
            local_orig: Some(self.local.is_local(f.id.orig_h)),
            local_resp: Some(self.local.is_local(f.id.resp_h)),
            missed_bytes: f.streams[0].gap_bytes + f.streams[1].gap_bytes,
            history: f.history.s.clone(),
            orig_pkts: f.ep[0].pkts,
            orig_ip_bytes: f.ep[0].ip_bytes,
            resp_pkts: f.ep[1].pkts,
            resp_ip_bytes: f.ep[1].ip_bytes,
        }
    }
}

/// Hands one chunk of one direction to the connection's application layer.
fn to_app<F: AnalyzerFactory>(
    factory: &F,
    cfg: &FlowConfig,
    app: &mut App<F::Analyzer>,
    cx: &mut ConnCtx<'_>,
    is_orig: bool,
    chunk: Chunk<'_>,
) {
    match app {
        App::Off => {}
        App::Attached(a) => {
            if a.disabled() {
                return;
            }
            match chunk {
                Chunk::Data(d) => a.deliver(cx, is_orig, d),
                Chunk::Gap(n) => a.gap(cx, is_orig, n),
                Chunk::Eof => a.eof(cx, is_orig),
            }
        }
        App::Detecting { buf, order } => {
            let data = match chunk {
                Chunk::Data(d) => d,
                // Detection only looks at the beginning of a stream.
                Chunk::Gap(_) => {
                    *app = App::Off;
                    return;
                }
                Chunk::Eof => return,
            };
            let room = cfg.dpd_buffer_size.saturating_sub(buf.len());
            let take = data.len().min(room);
            buf.extend_from_slice(&data[..take]);
            if take > 0 {
                order.push((is_orig, take as u32));
            }
            let (mut o, mut r) = (Vec::new(), Vec::new());
            let mut pos = 0usize;
            for &(io, n) in order.iter() {
                let part = &buf[pos..pos + n as usize];
                if io {
                    o.extend_from_slice(part);
                } else {
                    r.extend_from_slice(part);
                }
                pos += n as usize;
            }
            match factory.detect(cx.id, &o, &r) {
                Detect::Attach(mut a) => {
                    // Replay what was buffered, in arrival order, then the
                    // rest of this chunk.
                    let mut pos = 0usize;
                    for &(io, n) in order.iter() {
                        if a.disabled() {
                            break;
                        }
                        a.deliver(cx, io, &buf[pos..pos + n as usize]);
                        pos += n as usize;
                    }
                    if take < data.len() && !a.disabled() {
                        a.deliver(cx, is_orig, &data[take..]);
                    }
                    *app = App::Attached(a);
                }
                Detect::NeedMore if take == data.len() && buf.len() < cfg.dpd_buffer_size => {}
                _ => *app = App::Off,
            }
        }
    }
}
