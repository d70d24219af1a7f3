//! The shard's flow table: finds or creates the connection for each TCP
//! segment, updates its state, reassembles both directions, hands bytes to
//! the application analyzer (by port, or after dynamic protocol detection
//! over a bounded buffer of the first bytes), expires idle and closed
//! connections, evicts the oldest when full, and emits conn.log records.
//!
//! This file holds the per-packet path (lookup, creation, state,
//! reassembly); beside it: `config` (`[flow]`), `app` (the analyzer
//! factory, detection and the hand-over of bytes), `reuse` (whether a SYN
//! starts a new connection), `expiry` (timeouts, eviction, the flush at
//! the end, conn.log records) and the tests.

mod app;
mod config;
mod expiry;
mod reuse;
#[cfg(test)]
mod tests;

pub use app::{AnalyzerFactory, Detect};
pub use config::{FlowConfig, ZEEK_LIKELY_SERVER_PORTS};

use app::{to_app, App};
use expiry::apply_kernel_history;
use reuse::{reuse_of, Reuse};

use crate::bypass::{BypassState, KernelBypass, KernelCounts};
use crate::conn::{conn_state, flags, update_states, Endpoint, History};
use crate::reassembly::{Chunk, MemBudget, Stream};
use crate::{FlowKey, LocalNets, UidGenerator};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{
    BufferBudget, ConnCtx, ConnId, ConnRecord, Output, Record, TcpAnalyzer, Timestamp, Weird,
};
use std::collections::VecDeque;
use std::net::IpAddr;

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
    /// Connections whose first packet was not a bare SYN.
    pub flows_partial: u64,
    /// Of those, connections with no handshake at all whose analyzer was
    /// started mid-stream (`flow.analyze_partial`).
    pub flows_midstream: u64,
    /// Connections ended by a SYN that started a new connection on their
    /// 4-tuple while they were not closed (Zeek's connection reuse).
    pub flows_reused: u64,
    pub flows_closed: u64,
    pub flows_timed_out: u64,
    /// Connection attempts never answered, expired after
    /// `flow.tcp_attempt_delay`.
    pub flows_attempts_expired: u64,
    pub flows_evicted: u64,
    /// Of the evicted connections, those whose analyzer still had state
    /// (weird `active_connection_evicted`; their message, if any, is
    /// extracted incomplete).
    pub flows_evicted_active: u64,
    pub flows_flushed_at_end: u64,
    pub analyzers_by_port: u64,
    pub analyzers_by_detection: u64,
    pub gap_bytes: u64,
    pub forced_gaps: u64,
    pub inconsistent_overlaps: u64,
    pub reassembly_peak_bytes: u64,
    /// The most input the shard buffered at once (reassembly, partial
    /// lines, MIME headers: `flow.buffer_memory`).
    pub buffer_peak_bytes: u64,
    /// Times a buffer could not grow because `flow.buffer_memory` was
    /// spent (a line handed out cut, a header cut, a reassembly hole
    /// given up).
    pub buffer_refusals: u64,
    pub bad_checksums: u64,
    /// Connections whose payload was bypassed after their analyzer was
    /// done with it.
    pub bypassed_flows: u64,
    /// Of those, connections the kernel took over.
    pub bypassed_kernel_flows: u64,
    /// Connections the kernel could not take (its table was full).
    pub bypass_kernel_refused: u64,
    /// Packets without SYN/FIN/RST of bypassed connections (counted by the
    /// kernel or skipped by the shard), and their IP bytes.
    pub bypassed_packets: u64,
    pub bypassed_bytes: u64,
    /// Packets of connections the kernel had taken over that still reached
    /// the shard (sent before the kernel table was updated).
    pub bypass_leaked_packets: u64,
}

struct Flow<A> {
    serial: u64,
    /// The flow's key in the table's index (to remove it by slot).
    key: FlowKey,
    id: ConnId,
    uid: String,
    /// Whether the canonical key's `a` side is the originator.
    orig_is_a: bool,
    first_ts: Timestamp,
    /// Time of the latest packet (drives the inactivity timeout).
    last_ts: Timestamp,
    /// End of the connection for conn.log `duration`: like Zeek, packets
    /// that arrive once both sides have closed (the last ACK, a late RST)
    /// do not extend it.
    dur_end: Timestamp,
    ep: [Endpoint; 2],
    streams: [Stream; 2],
    history: History,
    ann: ConnAnnotations,
    app: App<A>,
    closing: bool,
    bypass: BypassState,
    /// Payload is not reassembled (a connection picked up with no
    /// handshake and not analysed, as in Zeek, which then enables no
    /// reassembly and so reports no content gaps): only its extent is
    /// tracked.
    unreassembled: bool,
}

impl<A> Flow<A> {
    /// A connection attempt nobody answered: the responder never sent and
    /// the originator sent no payload (Zeek's attempt state: SYN sent,
    /// responder inactive).
    fn unanswered(&self) -> bool {
        self.ep[1].pkts == 0 && self.streams[0].size() == 0
    }

    /// Whether an analyzer (or detection) holds state for it.
    fn has_analyzer_state(&self) -> bool {
        match &self.app {
            App::Attached(_) => true,
            App::Detecting { buf, .. } => !buf.is_empty(),
            App::Pending { .. } | App::Off => false,
        }
    }
}

/// A flow's slot in [`FlowTable::flows`].
type Slot = u32;

/// The flow table of one shard.
///
/// Flows live in a slab and the hash map holds only their slot numbers:
/// a flow is about 600 bytes, and a map holding flows inline moved all of
/// them on every rehash and kept twice their size of buckets at its load
/// factor. The expiry queues hold slots too, so expiring a flow costs no
/// hash lookup.
pub struct FlowTable<F: AnalyzerFactory> {
    map: ahash::HashMap<FlowKey, Slot>,
    flows: slab::Slab<Flow<F::Analyzer>>,
    factory: F,
    cfg: FlowConfig,
    uids: UidGenerator,
    local: LocalNets,
    budget: MemBudget,
    counters: FlowCounters,
    idle_q: VecDeque<(Timestamp, u64, Slot)>,
    closed_q: VecDeque<(Timestamp, u64, Slot)>,
    /// Connections created by a bare SYN, oldest first: expired after
    /// `tcp_attempt_delay` and evicted first while still unanswered.
    attempt_q: VecDeque<(Timestamp, u64, Slot)>,
    attempt_delay: i64,
    serial: u64,
    now: Timestamp,
    inactivity: i64,
    close_delay: i64,
    /// The capture's kernel bypass table, in live capture.
    kernel: Option<Box<dyn KernelBypass>>,
    /// `cfg.likely_server_ports` as a bit set.
    server_ports: Box<[u64; 1024]>,
}

fn secs_to_nanos(s: f64) -> i64 {
    (s * 1e9).min(i64::MAX as f64) as i64
}

impl<F: AnalyzerFactory> FlowTable<F> {
    pub fn new(cfg: FlowConfig, factory: F, uids: UidGenerator, local: LocalNets) -> Self {
        let mut budget = MemBudget::new(cfg.reassembly_memory);
        budget.shared = BufferBudget::new(cfg.buffer_memory);
        let mut server_ports = Box::new([0u64; 1024]);
        for &p in &cfg.likely_server_ports {
            server_ports[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        FlowTable {
            map: ahash::HashMap::default(),
            // Reserved (address space only: pages are touched as slots are
            // first used) so the slab never grows by copying every flow
            // into fresh, page-faulting memory while traffic ramps up.
            flows: slab::Slab::with_capacity(cfg.max_flows),
            inactivity: secs_to_nanos(cfg.tcp_inactivity_timeout),
            close_delay: secs_to_nanos(cfg.tcp_close_delay),
            attempt_delay: secs_to_nanos(cfg.tcp_attempt_delay),
            factory,
            cfg,
            uids,
            local,
            budget,
            counters: FlowCounters::default(),
            idle_q: VecDeque::new(),
            closed_q: VecDeque::new(),
            attempt_q: VecDeque::new(),
            serial: 0,
            now: Timestamp::ZERO,
            kernel: None,
            server_ports,
        }
    }

    /// Zeek's `likely_server_ports` test.
    fn likely_server_port(&self, port: u16) -> bool {
        self.server_ports[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Lets bypassed connections be taken over by the kernel (live
    /// capture with a BPF bypass map).
    pub fn set_kernel_bypass(&mut self, kernel: Box<dyn KernelBypass>) {
        self.kernel = Some(kernel);
    }

    pub fn counters(&self) -> FlowCounters {
        let mut c = self.counters.clone();
        c.reassembly_peak_bytes = self.budget.peak as u64;
        c.buffer_peak_bytes = self.budget.shared.peak() as u64;
        c.buffer_refusals = self.budget.shared.refused();
        c
    }

    /// Connections created so far (cheap, for progress reports).
    pub fn flows_created(&self) -> u64 {
        self.counters.flows_created
    }

    /// Connections tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The shard's input-buffer budget, for its analyzers' output
    /// ([`mailtap_core::Output::buffers`]).
    pub fn buffer_budget(&self) -> &BufferBudget {
        &self.budget.shared
    }

    /// Bytes held in reassembly buffers now.
    pub fn reassembly_bytes(&self) -> usize {
        self.budget.used
    }

    /// Processes one TCP segment: one hash lookup for a packet of a known
    /// connection.
    pub fn process(&mut self, seg: &Segment<'_>, out: &mut Output) {
        self.counters.packets += 1;
        self.counters.payload_bytes += seg.payload.len() as u64;
        if seg.ts > self.now {
            self.now = seg.ts;
        }
        let (key, src_is_a) = FlowKey::new(seg.src, seg.src_port, seg.dst, seg.dst_port);
        let slot = match self.map.get(&key).copied() {
            // A SYN that does not fit the connection on its 4-tuple starts
            // a new one (Zeek's connection reuse): end the old one first.
            Some(slot) if seg.flags & flags::SYN != 0 => {
                let old = &mut self.flows[slot as usize];
                match reuse_of(old, seg) {
                    Reuse::No => slot,
                    Reuse::Yes(weird) => {
                        if let Some(name) = weird {
                            let mut cx = ConnCtx {
                                ts: seg.ts,
                                uid: &old.uid,
                                id: &old.id,
                                out,
                                conn: &mut old.ann,
                            };
                            cx.weird(name, None, "TCP");
                        }
                        if old.closing {
                            self.counters.flows_closed += 1;
                        } else {
                            self.counters.flows_reused += 1;
                        }
                        self.remove(slot, out);
                        self.insert_flow(key, seg, src_is_a, out)
                    }
                }
            }
            // Data on a connection both sides have closed, outside what
            // either side sent: a new connection on the same 4-tuple whose
            // handshake was not captured (Zeek cannot tell and folds it
            // into the old one as retransmissions).
            Some(slot) if !seg.payload.is_empty() && self.ended_before(slot, seg, src_is_a) => {
                self.counters.flows_closed += 1;
                self.remove(slot, out);
                self.insert_flow(key, seg, src_is_a, out)
            }
            Some(slot) => slot,
            None => self.insert_flow(key, seg, src_is_a, out),
        };
        let flow = &mut self.flows[slot as usize];
        let is_orig = flow.orig_is_a == src_is_a;
        let closing_before = flow.closing;
        // What the kernel counted of a bypassed connection goes into its
        // history before the SYN, FIN or RST that reached us, so letters
        // keep their order.
        if flow.bypass.is_kernel() && seg.flags & (flags::SYN | flags::FIN | flags::RST) != 0 {
            if let Some(c) = self.kernel.as_mut().and_then(|k| k.peek(&flow.id)) {
                apply_kernel_history(flow, &c);
            }
        }
        let start_bypass = Self::packet(
            &self.factory,
            &self.cfg,
            &mut self.budget,
            &mut self.counters,
            flow,
            seg,
            is_orig,
            out,
        );
        if start_bypass {
            self.counters.bypassed_flows += 1;
            for s in &mut flow.streams {
                s.discard(&mut self.budget);
            }
            flow.bypass = match self.kernel.as_mut().map(|k| k.start(&flow.id)) {
                Some(true) => {
                    self.counters.bypassed_kernel_flows += 1;
                    BypassState::Kernel {
                        applied: [[0; 2]; 2],
                    }
                }
                Some(false) => {
                    self.counters.bypass_kernel_refused += 1;
                    BypassState::User
                }
                None => BypassState::User,
            };
        }
        if flow.closing && !closing_before {
            self.closed_q.push_back((seg.ts, flow.serial, slot));
        }
    }

    /// Whether `seg` (with payload) comes after the connection in `slot`
    /// ended: both sides closed with a FIN (not reset), every byte up to
    /// each FIN delivered, and `seg` outside its sender's stream.
    fn ended_before(&self, slot: u32, seg: &Segment<'_>, src_is_a: bool) -> bool {
        use crate::conn::EndpointState as St;
        let flow = &self.flows[slot as usize];
        let d = usize::from(flow.orig_is_a != src_is_a);
        flow.ep.iter().all(|e| e.state == St::Closed)
            && flow.streams.iter().all(Stream::finished)
            && flow.streams[d].after_end(seg.seq)
    }

    /// Creates the connection of `seg` under `key`, evicting the oldest
    /// when the table is full.
    fn insert_flow(
        &mut self,
        key: FlowKey,
        seg: &Segment<'_>,
        src_is_a: bool,
        out: &mut Output,
    ) -> Slot {
        if self.map.len() >= self.cfg.max_flows {
            self.evict_one(out);
        }
        let flow = self.new_flow(key, seg, src_is_a);
        let serial = flow.serial;
        let slot = self.flows.insert(flow) as Slot;
        self.idle_q.push_back((seg.ts, serial, slot));
        if seg.flags & (flags::SYN | flags::ACK) == flags::SYN {
            self.attempt_q.push_back((seg.ts, serial, slot));
        }
        self.map.insert(key, slot);
        slot
    }

    /// The flow in `slot` if it is still the one with `serial`.
    fn live(&self, slot: Slot, serial: u64) -> Option<&Flow<F::Analyzer>> {
        self.flows.get(slot as usize).filter(|f| f.serial == serial)
    }

    fn new_flow(&mut self, key: FlowKey, seg: &Segment<'_>, src_is_a: bool) -> Flow<F::Analyzer> {
        let syn = seg.flags & flags::SYN != 0;
        let ack = seg.flags & flags::ACK != 0;
        // Originator: the sender of the first SYN. Without one (a SYN-ACK
        // first, or no handshake at all), Zeek's likely-server-port rule:
        // the roles are swapped when the source port is a likely server
        // port and the destination port is not, or when both are, the
        // packet is not a SYN-ACK and the source port is the lower.
        let flipped = if syn {
            // A SYN-ACK first: its receiver sent the (lost) SYN.
            ack
        } else {
            self.likely_server_port(seg.src_port)
                && (!self.likely_server_port(seg.dst_port) || seg.src_port < seg.dst_port)
        };
        let (oh, op, rh, rp) = if flipped {
            (seg.dst, seg.dst_port, seg.src, seg.src_port)
        } else {
            (seg.src, seg.src_port, seg.dst, seg.dst_port)
        };
        let id = ConnId {
            orig_h: oh,
            orig_p: op,
            resp_h: rh,
            resp_p: rp,
        };
        self.serial += 1;
        self.counters.flows_created += 1;
        if !syn || ack {
            self.counters.flows_partial += 1;
        }
        // A SYN-ACK gives both initial sequence numbers: the connection is
        // analysed from its first byte as if the SYN had been seen (as in
        // Zeek). With no handshake at all, the analyzer starts mid-stream
        // (`flow.analyze_partial`) or not at all (Zeek).
        let midstream = !syn;
        let app = if midstream && !self.cfg.analyze_partial {
            App::Off
        } else {
            if midstream {
                self.counters.flows_midstream += 1;
            }
            App::Pending { midstream }
        };
        let mut history = History::default();
        if flipped {
            history.mark('^');
        }
        Flow {
            serial: self.serial,
            key,
            uid: self.uids.conn_uid(&id, seg.ts),
            id,
            orig_is_a: src_is_a != flipped,
            first_ts: seg.ts,
            last_ts: seg.ts,
            dur_end: seg.ts,
            ep: Default::default(),
            streams: Default::default(),
            history,
            ann: ConnAnnotations {
                start_time: seg.ts,
                ..ConnAnnotations::default()
            },
            app,
            closing: false,
            bypass: BypassState::No,
            unreassembled: midstream && !self.cfg.analyze_partial,
        }
    }

    /// Handles one packet of `flow`; true when the connection's payload
    /// is to be bypassed from now on.
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
    ) -> bool {
        let fl = seg.flags;
        let bypassed = flow.bypass != BypassState::No;
        flow.last_ts = flow.last_ts.max(seg.ts);
        let both_closed = |f: &Flow<F::Analyzer>| {
            f.ep.iter()
                .all(|e| e.state == crate::conn::EndpointState::Closed)
        };
        if !both_closed(flow) {
            flow.dur_end = flow.dur_end.max(seg.ts);
        }
        {
            let (a, b) = flow.ep.split_at_mut(1);
            let (sender, peer) = if is_orig {
                (&mut a[0], &mut b[0])
            } else {
                (&mut b[0], &mut a[0])
            };
            sender.pkts += 1;
            sender.ip_bytes += u64::from(seg.ip_len);
            if sender.start_seq.is_none() {
                sender.start_seq = Some(if fl & flags::SYN != 0 {
                    seg.seq
                } else {
                    seg.seq.wrapping_sub(1)
                });
            }
            update_states(sender, peer, fl, seg.payload.len());
        }
        let h = &mut flow.history;
        let syn = fl & flags::SYN != 0;
        // The kernel cannot verify checksums of the packets it counts.
        if seg.bad_checksum && !bypassed {
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
        let control = fl & (flags::SYN | flags::FIN | flags::RST) != 0;
        if bypassed && !control {
            counters.bypassed_packets += 1;
            counters.bypassed_bytes += u64::from(seg.ip_len);
            if flow.bypass.is_kernel() {
                counters.bypass_leaked_packets += 1;
            }
        }
        if !seg.payload.is_empty() {
            h.add(b'd', is_orig);
        } else if fl & flags::ACK != 0 && !control {
            h.add(b'a', is_orig);
        }
        if seg.window == 0 && !syn && fl & flags::RST == 0 {
            h.add(b'w', is_orig);
        }

        let Flow {
            streams,
            app,
            ann,
            uid,
            id,
            history,
            unreassembled,
            ..
        } = flow;
        let (s0, s1) = streams.split_at_mut(1);
        let (mine, theirs) = if is_orig {
            (&mut s0[0], &mut s1[0])
        } else {
            (&mut s1[0], &mut s0[0])
        };
        let gaps_before = mine.gap_bytes + theirs.gap_bytes;
        let mut cx = ConnCtx {
            ts: seg.ts,
            uid,
            id,
            out,
            conn: ann,
        };
        if bypassed || *unreassembled {
            if mine.bypassed(seg.seq, syn, fl & flags::FIN != 0, seg.payload.len()) {
                history.add(b't', is_orig);
            }
        } else if seg.bad_checksum {
            // Zeek does not analyse segments with bad checksums.
        } else {
            // A SYN-ACK to a side whose SYN was not seen: its stream starts
            // at the acknowledged initial sequence number.
            if syn && fl & flags::ACK != 0 && !theirs.started() {
                theirs.start_at(seg.ack.wrapping_sub(1), true);
            }
            let outcome = mine.segment(
                seg.seq,
                syn,
                fl & flags::FIN != 0,
                seg.payload,
                cfg.reassembly_stream_limit,
                budget,
                &mut |c| to_app(factory, cfg, counters, app, &mut cx, is_orig, c),
            );
            if outcome.retransmission {
                history.add(b't', is_orig);
            }
            if outcome.inconsistent {
                history.add(b'i', is_orig);
                counters.inconsistent_overlaps += 1;
                cx.weird(Weird::RexmitInconsistency, None, "TCP");
            }
            if outcome.forced_gap {
                counters.forced_gaps += 1;
            }
            if fl & flags::ACK != 0 {
                theirs.ack(seg.ack, budget, &mut |c| {
                    to_app(factory, cfg, counters, app, &mut cx, !is_orig, c)
                });
            }
        }
        // Both directions ended in order: nothing that arrives during the
        // close delay can reach the analyzer, so it finishes now (its last
        // records go out) and its state is freed. At 10 Gbit/s of short
        // sessions, tcp_close_delay (5 s) keeps over a million closed
        // connections; only their conn.log fields need to stay.
        if mine.finished() && theirs.finished() && !matches!(app, App::Off) {
            if let App::Attached(a) = app {
                a.done(&mut cx);
            }
            *app = App::Off;
        }
        let gaps_after = mine.gap_bytes + theirs.gap_bytes;
        if gaps_after > gaps_before {
            counters.gap_bytes += gaps_after - gaps_before;
            // Zeek marks a content gap in the direction that missed data.
            history.add(
                b'g',
                if mine.gap_bytes > 0 {
                    is_orig
                } else {
                    !is_orig
                },
            );
        }
        if ann.limit_reached {
            history.mark('X');
        }
        let start_bypass =
            !bypassed && cfg.bypass && matches!(app, App::Attached(a) if a.bypass_ready());
        if fl & flags::RST != 0
            || (flow.ep[0].state == crate::conn::EndpointState::Closed
                && flow.ep[1].state == crate::conn::EndpointState::Closed)
        {
            flow.closing = true;
        }
        start_bypass
    }
}
