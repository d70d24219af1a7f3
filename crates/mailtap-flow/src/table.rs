//! The shard's flow table: finds or creates the connection for each TCP
//! segment, updates its state, reassembles both directions, hands bytes to
//! the application analyzer (by port, or after dynamic protocol detection
//! over a bounded buffer of the first bytes), expires idle and closed
//! connections, evicts the oldest when full, and emits conn.log records.

use crate::bypass::{BypassState, KernelBypass, KernelCounts};
use crate::conn::{conn_state, flags, update_states, Endpoint, History};
use crate::reassembly::{Chunk, MemBudget, Stream};
use crate::{FlowKey, LocalNets, UidGenerator};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, ConnRecord, Output, Record, TcpAnalyzer, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;

/// Flow-layer tunables (`[flow]` in the configuration). Limits given here
/// are per shard; the engine divides the user's totals among shards.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Seconds a connection attempt (a SYN its responder never answered)
    /// is kept (Zeek's `tcp_attempt_delay`): a SYN flood's half-open
    /// connections go after this, not after the inactivity timeout.
    pub tcp_attempt_delay: f64,
    /// Out-of-order bytes buffered per direction of one connection.
    pub reassembly_stream_limit: usize,
    /// Out-of-order bytes buffered in all connections of the shard.
    pub reassembly_memory: usize,
    /// Bytes of the first payload kept for dynamic protocol detection
    /// (Zeek's `dpd_buffer_size`).
    pub dpd_buffer_size: usize,
    /// Stop analysing a connection's payload once its analyzer has learned
    /// all it can (a TLS handshake is over, or STARTTLS with
    /// `ssl.analyze = false`): the payload is then neither reassembled nor
    /// delivered, and live capture asks the kernel to count the
    /// connection's packets instead of handing them over (see
    /// [`crate::bypass`]).
    pub bypass: bool,
    /// Analyse connections picked up with no handshake at all (the
    /// capture began mid-connection): the analyzer is attached by port or
    /// detection and told to resynchronise ([`TcpAnalyzer::start_midstream`]).
    /// A deliberate difference from Zeek, which skips such connections
    /// (`false` gives Zeek's behaviour). Connections whose SYN was lost but
    /// whose SYN-ACK was seen are always analysed in full, as in Zeek.
    pub analyze_partial: bool,
    /// Ports that are probably a server's (Zeek's `likely_server_ports`):
    /// a connection picked up without its SYN is oriented with the side
    /// using such a port as the responder. Default: the TCP ports the
    /// analyzers of Zeek 8.2.2's default scripts register (POP3 registers
    /// none).
    pub likely_server_ports: Vec<u16>,
}

/// The TCP ports the protocol analyzers loaded by Zeek 8.2.2's default
/// scripts register, which make up its `likely_server_ports` (SMTP 25 and
/// 587, the TLS ports, IMAP 143, ...; POP3 registers no port).
pub const ZEEK_LIKELY_SERVER_PORTS: &[u16] = &[
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587, 614, 631,
    636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222, 5223, 5269,
    5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
];

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_inactivity_timeout: 300.0,
            tcp_close_delay: 5.0,
            tcp_attempt_delay: 5.0,
            reassembly_stream_limit: 1 << 20,
            reassembly_memory: 512 << 20,
            dpd_buffer_size: 1024,
            bypass: true,
            analyze_partial: true,
            likely_server_ports: ZEEK_LIKELY_SERVER_PORTS.to_vec(),
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
            ("flow.tcp_attempt_delay", self.tcp_attempt_delay),
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
    /// For a connection picked up mid-stream that [`Self::by_port`] left
    /// without an analyzer: one by the originator's port, when the flow was
    /// oriented with the server first (its port is not one of
    /// `likely_server_ports`, as POP3's 110 is not in Zeek's). The
    /// analyzer must see the roles swapped back. `None` (the default) to
    /// try detection.
    fn by_server_port(&self, id: &ConnId) -> Option<Self::Analyzer> {
        let _ = id;
        None
    }
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

enum App<A> {
    /// Analysable, but no analyzer yet: it is chosen (by port, else by
    /// detection) at the first payload byte, so a half-open connection of
    /// a SYN flood costs no analyzer state.
    Pending {
        midstream: bool,
    },
    Detecting {
        buf: Vec<u8>,
        order: Vec<(bool, u32)>,
        /// The connection was picked up mid-stream: the analyzer, once
        /// detected, is told so before it sees any byte.
        midstream: bool,
    },
    Attached(A),
    Off,
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

/// Zeek's `tcp_connection_linger`: a SYN that reuses a closed connection's
/// 4-tuple sooner than this after its last packet is a premature reuse.
const CONNECTION_LINGER: i64 = 5_000_000_000;

/// Whether a SYN (or SYN-ACK) on an existing connection starts a new one
/// (Zeek's `IsReuse`), and the weird to log on the old one.
#[derive(Debug, PartialEq, Eq)]
enum Reuse {
    No,
    Yes(Option<&'static str>),
}

fn reuse_of<A>(flow: &Flow<A>, seg: &Segment<'_>) -> Reuse {
    use crate::conn::EndpointState as St;
    let fl = seg.flags;
    if fl & flags::SYN == 0 {
        return Reuse::No;
    }
    let [orig, resp] = &flow.ep;
    // Only an initial SYN reuses a connection, or a SYN-ACK when the
    // originator never sent (a half connection): it is then compared with
    // the responder.
    let first = if fl & flags::ACK != 0 {
        if orig.state != St::Inactive {
            return Reuse::No;
        }
        resp
    } else {
        orig
    };
    let closed = orig.did_close() || resp.did_close();
    let reset = orig.state == St::Reset || resp.state == St::Reset;
    if !closed {
        if first.start_seq == Some(seg.seq) {
            // A retransmission.
            return Reuse::No;
        }
        if fl & flags::ACK == 0
            && first.state == St::SynAckSent
            && resp.state == St::Inactive
            && resp.start_seq == Some(seg.seq)
        {
            // SYN and SYN-ACK seen in reverse order.
            return Reuse::No;
        }
        Reuse::Yes(Some(if first.state == St::SynSent {
            "SYN_seq_jump"
        } else {
            "active_connection_reuse"
        }))
    } else if (orig.is_active() || resp.is_active()) && !reset {
        Reuse::Yes(Some("active_connection_reuse"))
    } else if seg.ts.0.saturating_sub(flow.last_ts.0) < CONNECTION_LINGER && !reset {
        Reuse::Yes(Some("premature_connection_reuse"))
    } else {
        Reuse::Yes(None)
    }
}

fn secs_to_nanos(s: f64) -> i64 {
    (s * 1e9).min(i64::MAX as f64) as i64
}

impl<F: AnalyzerFactory> FlowTable<F> {
    pub fn new(cfg: FlowConfig, factory: F, uids: UidGenerator, local: LocalNets) -> Self {
        let budget = MemBudget::new(cfg.reassembly_memory);
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
                cx.weird("rexmit_inconsistency", None, "TCP");
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

    /// Expires connections whose time has come, by packet time `now`.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        if now > self.now {
            self.now = now;
        }
        while let Some(&(t, serial, slot)) = self.closed_q.front() {
            if t.0.saturating_add(self.close_delay) > self.now.0 {
                break;
            }
            self.closed_q.pop_front();
            if self.live(slot, serial).is_some() {
                self.counters.flows_closed += 1;
                self.remove(slot, out);
            }
        }
        // Connection attempts nobody answered (Zeek's tcp_attempt_delay).
        while let Some(&(t, serial, slot)) = self.attempt_q.front() {
            if t.0.saturating_add(self.attempt_delay) > self.now.0 {
                break;
            }
            self.attempt_q.pop_front();
            if self.live(slot, serial).is_some_and(|f| f.unanswered()) {
                self.counters.flows_attempts_expired += 1;
                self.remove(slot, out);
            }
        }
        while let Some(&(t, serial, slot)) = self.idle_q.front() {
            if t.0.saturating_add(self.inactivity) > self.now.0 {
                break;
            }
            self.idle_q.pop_front();
            if self.live(slot, serial).is_none() {
                continue;
            }
            let f = &mut self.flows[slot as usize];
            // The kernel may have counted packets of a bypassed connection
            // that the shard never saw.
            if f.bypass.is_kernel() {
                if let Some(c) = self.kernel.as_mut().and_then(|k| k.peek(&f.id)) {
                    for t in c.iter().filter_map(|d| d.last_seen) {
                        f.last_ts = f.last_ts.max(t);
                    }
                }
            }
            let last = f.last_ts;
            if last.0.saturating_add(self.inactivity) <= self.now.0 {
                self.counters.flows_timed_out += 1;
                self.remove(slot, out);
            } else {
                self.idle_q.push_back((last, serial, slot));
            }
        }
    }

    /// Ends every connection (end of input or shutdown), as Zeek does at
    /// termination.
    pub fn finish(&mut self, out: &mut Output) {
        // In creation order, not hash order: the same capture gives its
        // rows in the same order run after run.
        let mut slots: Vec<(u64, Slot)> = self
            .map
            .values()
            .map(|&s| (self.flows[s as usize].serial, s))
            .collect();
        slots.sort_unstable();
        for (_, slot) in slots {
            self.counters.flows_flushed_at_end += 1;
            self.remove(slot, out);
        }
        self.idle_q.clear();
        self.closed_q.clear();
        self.attempt_q.clear();
    }

    /// Makes room for one connection: the oldest unanswered connection
    /// attempt if there is one (a SYN flood evicts itself), else the least
    /// recently active connection, preferring one without analyzer state
    /// among the `EVICT_SCAN` least recently active. Evicting a connection
    /// whose analyzer has state is logged (weird and counter): its message,
    /// if one was in transfer, is flushed incomplete.
    fn evict_one(&mut self, out: &mut Output) {
        while let Some((_, serial, slot)) = self.attempt_q.pop_front() {
            if self.live(slot, serial).is_some_and(|f| f.unanswered()) {
                self.counters.flows_evicted += 1;
                self.remove(slot, out);
                return;
            }
        }
        const EVICT_SCAN: usize = 64;
        let mut looked: Vec<(Timestamp, u64, Slot)> = Vec::new();
        let mut pick = None;
        while looked.len() < EVICT_SCAN {
            let Some((t, serial, slot)) = self.idle_q.pop_front() else {
                break;
            };
            let Some(f) = self.live(slot, serial) else {
                continue;
            };
            if f.last_ts > t {
                // Active since it was queued: to the back, by its latest
                // packet (as the inactivity check does).
                self.idle_q.push_back((f.last_ts, serial, slot));
                continue;
            }
            if !f.has_analyzer_state() {
                pick = Some(slot);
                break;
            }
            looked.push((t, serial, slot));
        }
        let pick = match pick {
            Some(p) => Some(p),
            None if !looked.is_empty() => Some(looked.remove(0).2),
            None => None,
        };
        // The others keep their place at the front, in order.
        for e in looked.into_iter().rev() {
            self.idle_q.push_front(e);
        }
        let Some(slot) = pick else {
            return;
        };
        self.counters.flows_evicted += 1;
        let f = &mut self.flows[slot as usize];
        if f.has_analyzer_state() {
            self.counters.flows_evicted_active += 1;
            let mut cx = ConnCtx {
                ts: self.now,
                uid: &f.uid,
                id: &f.id,
                out,
                conn: &mut f.ann,
            };
            cx.weird("active_connection_evicted", None, "TCP");
        }
        self.remove(slot, out);
    }

    fn remove(&mut self, slot: Slot, out: &mut Output) {
        let Some(mut flow) = self.flows.try_remove(slot as usize) else {
            return;
        };
        self.map.remove(&flow.key);
        let ts = flow.last_ts.max(self.now);
        let Flow {
            streams,
            app,
            ann,
            uid,
            id,
            history,
            ..
        } = &mut flow;
        let mut cx = ConnCtx {
            ts,
            uid,
            id,
            out,
            conn: ann,
        };
        for (d, s) in streams.iter_mut().enumerate() {
            let is_orig = d == 0;
            let before = s.gap_bytes;
            s.flush(&mut self.budget, &mut |c| {
                to_app(
                    &self.factory,
                    &self.cfg,
                    &mut self.counters,
                    app,
                    &mut cx,
                    is_orig,
                    c,
                )
            });
            if s.gap_bytes > before {
                self.counters.gap_bytes += s.gap_bytes - before;
                history.add(b'g', is_orig);
            }
        }
        if let App::Attached(a) = app {
            a.done(&mut cx);
        }
        if flow.bypass.is_kernel() {
            if let Some(k) = self.kernel.as_mut() {
                let counts = k.finish(&flow.id);
                apply_kernel_history(&mut flow, &counts);
                let both_closed = flow
                    .ep
                    .iter()
                    .all(|e| e.state == crate::conn::EndpointState::Closed);
                for (d, c) in counts.iter().enumerate() {
                    flow.ep[d].pkts += c.packets;
                    flow.ep[d].ip_bytes += c.ip_bytes;
                    self.counters.bypassed_packets += c.packets;
                    self.counters.bypassed_bytes += c.ip_bytes;
                    if let Some(e) = c.seq_end {
                        flow.streams[d].extend_to(e);
                    }
                    // As for packets seen here: those after both FINs do
                    // not extend the duration.
                    if let Some(t) = c.last_seen.filter(|_| !both_closed) {
                        flow.dur_end = flow.dur_end.max(t);
                    }
                }
            }
        }
        if flow.ann.limit_reached {
            flow.history.mark('X');
        }
        let rec = self.conn_record(&flow);
        out.push(Record::Conn(Box::new(rec)));
    }

    fn conn_record(&self, f: &Flow<F::Analyzer>) -> ConnRecord {
        let dur = f.dur_end.since(f.first_ts);
        let has_dur = dur.0 > 0;
        ConnRecord {
            ts: f.first_ts,
            uid: f.uid.clone(),
            id: f.id,
            service: f.ann.service.clone(),
            duration: has_dur.then_some(dur),
            orig_bytes: has_dur.then(|| f.streams[0].size()),
            resp_bytes: has_dur.then(|| f.streams[1].size()),
            conn_state: conn_state(
                f.ep[0].state,
                f.ep[1].state,
                f.streams[0].size(),
                f.streams[1].size(),
            ),
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

/// Adds the history letters of the packets the kernel counted for a
/// bypassed connection since the last time (letters `d`, `a` once per
/// direction; `w` and `t` counted, as for packets seen here).
fn apply_kernel_history<A>(flow: &mut Flow<A>, counts: &[KernelCounts; 2]) {
    let BypassState::Kernel { applied } = &mut flow.bypass else {
        return;
    };
    for (d, c) in counts.iter().enumerate() {
        let is_orig = d == 0;
        if c.payload_packets > 0 {
            flow.history.add(b'd', is_orig);
        }
        if c.pure_acks > 0 {
            flow.history.add(b'a', is_orig);
        }
        let [zw, rx] = &mut applied[d];
        flow.history
            .add_n(b'w', is_orig, c.zero_windows.saturating_sub(*zw));
        flow.history
            .add_n(b't', is_orig, c.retransmissions.saturating_sub(*rx));
        *zw = (*zw).max(c.zero_windows);
        *rx = (*rx).max(c.retransmissions);
    }
}

/// Hands one chunk of one direction to the connection's application layer.
fn to_app<F: AnalyzerFactory>(
    factory: &F,
    cfg: &FlowConfig,
    counters: &mut FlowCounters,
    app: &mut App<F::Analyzer>,
    cx: &mut ConnCtx<'_>,
    is_orig: bool,
    chunk: Chunk<'_>,
) {
    if let App::Pending { midstream } = *app {
        if matches!(chunk, Chunk::Eof) {
            // Nothing to analyse before the first payload byte (or gap).
            return;
        }
        let by_port = factory
            .by_port(cx.id)
            .or_else(|| midstream.then(|| factory.by_server_port(cx.id)).flatten());
        *app = match by_port {
            Some(mut a) => {
                counters.analyzers_by_port += 1;
                if midstream {
                    a.start_midstream();
                }
                App::Attached(a)
            }
            None => App::Detecting {
                buf: Vec::new(),
                order: Vec::new(),
                midstream,
            },
        };
    }
    match app {
        App::Off | App::Pending { .. } => {}
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
        App::Detecting {
            buf,
            order,
            midstream,
        } => {
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
                    if *midstream {
                        a.start_midstream();
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelCounts;
    use mailtap_core::Record;
    use std::sync::{Arc, Mutex};

    /// Records what the flow layer hands to an analyzer.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl TcpAnalyzer for Recorder {
        fn deliver(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
            self.0.lock().unwrap().push(format!(
                "{}:{}",
                if is_orig { "o" } else { "r" },
                String::from_utf8_lossy(data)
            ));
        }
        fn gap(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}:gap{len}", if is_orig { "o" } else { "r" }));
        }
        fn eof(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}:eof", if is_orig { "o" } else { "r" }));
        }
        fn done(&mut self, cx: &mut ConnCtx<'_>) {
            cx.confirm("test");
            self.0.lock().unwrap().push("done".into());
        }
        fn start_midstream(&mut self) {
            self.0.lock().unwrap().push("midstream".into());
        }
        /// Done with the payload once it saw a line `BYPASS`.
        fn bypass_ready(&self) -> bool {
            self.0.lock().unwrap().iter().any(|c| c.contains("BYPASS"))
        }
    }

    struct Factory {
        rec: Recorder,
        port: u16,
    }

    impl AnalyzerFactory for Factory {
        type Analyzer = Recorder;
        fn by_port(&self, id: &ConnId) -> Option<Recorder> {
            (id.resp_p == self.port).then(|| self.rec.clone())
        }
        fn detect(&self, _id: &ConnId, o: &[u8], r: &[u8]) -> Detect<Recorder> {
            if o.starts_with(b"EHLO") && r.starts_with(b"220") {
                Detect::Attach(self.rec.clone())
            } else if !o.is_empty() && !o.starts_with(b"EHLO") {
                Detect::GiveUp
            } else {
                Detect::NeedMore
            }
        }
    }

    const C: &str = "10.0.0.1";
    const S: &str = "192.0.2.25";

    fn seg(
        ts: i64,
        from_client: bool,
        sport: u16,
        fl: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> Segment<'_> {
        let (c, s): (IpAddr, IpAddr) = (C.parse().unwrap(), S.parse().unwrap());
        let (src, dst, sp, dp) = if from_client {
            (c, s, 40000, sport)
        } else {
            (s, c, sport, 40000)
        };
        Segment {
            ts: Timestamp(ts * 1_000_000_000),
            src,
            dst,
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: fl,
            window: 1000,
            ip_len: 40 + payload.len() as u32,
            payload,
            bad_checksum: false,
        }
    }

    fn table(port: u16, cfg: FlowConfig) -> (FlowTable<Factory>, Recorder) {
        let rec = Recorder::default();
        let t = FlowTable::new(
            cfg,
            Factory {
                rec: rec.clone(),
                port,
            },
            UidGenerator::new(""),
            LocalNets::default(),
        );
        (t, rec)
    }

    fn conns(out: &Output) -> Vec<&ConnRecord> {
        out.records
            .iter()
            .filter_map(|r| {
                if let Record::Conn(c) = r {
                    Some(&**c)
                } else {
                    None
                }
            })
            .collect()
    }

    use flags::{ACK, FIN, PSH, SYN};

    fn session(t: &mut FlowTable<Factory>, out: &mut Output, port: u16) {
        t.process(&seg(1, true, port, SYN, 100, 0, b""), out);
        t.process(&seg(2, false, port, SYN | ACK, 500, 101, b""), out);
        t.process(&seg(3, true, port, ACK, 101, 501, b""), out);
        t.process(
            &seg(4, false, port, ACK | PSH, 501, 101, b"220 hi\r\n"),
            out,
        );
        t.process(&seg(5, true, port, ACK | PSH, 101, 509, b"EHLO x\r\n"), out);
        t.process(&seg(6, true, port, FIN | ACK, 109, 509, b""), out);
        t.process(&seg(7, false, port, FIN | ACK, 509, 110, b""), out);
        t.process(&seg(8, true, port, ACK, 110, 510, b""), out);
    }

    #[test]
    fn full_connection_by_port() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 25);
        assert_eq!(t.len(), 1, "kept during the close delay");
        t.advance(Timestamp(20_000_000_000), &mut out);
        assert_eq!(t.len(), 0);
        let c = conns(&out);
        assert_eq!(c.len(), 1);
        let c = c[0];
        assert_eq!(c.conn_state, "SF");
        assert_eq!(c.history, "ShAdDFf");
        assert_eq!((c.orig_bytes, c.resp_bytes), (Some(8), Some(8)));
        assert_eq!((c.orig_pkts, c.resp_pkts), (5, 3));
        assert_eq!(c.service, vec!["test"]);
        assert_eq!(c.id.resp_p, 25);
        // The last ACK comes after both FINs: not part of the duration (Zeek).
        assert_eq!(c.duration, Some(mailtap_core::Interval(6_000_000_000)));
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["r:220 hi\r\n", "o:EHLO x\r\n", "o:eof", "r:eof", "done"]
        );
    }

    /// A session whose analyzer is done after the client's `BYPASS` line;
    /// then 6 bytes from the server, 2 from the client after a hole, and
    /// the close.
    fn bypassed_session(t: &mut FlowTable<Factory>, out: &mut Output) {
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), out);
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), out);
        t.process(&seg(3, true, 25, ACK, 101, 501, b""), out);
        t.process(&seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"), out);
        t.process(&seg(5, true, 25, ACK | PSH, 101, 509, b"BYPASS\r\n"), out);
        t.process(&seg(6, false, 25, ACK | PSH, 509, 109, b"secret"), out);
        t.process(&seg(7, true, 25, ACK | PSH, 120, 515, b"zz"), out);
        t.process(&seg(8, true, 25, FIN | ACK, 122, 515, b""), out);
        t.process(&seg(9, false, 25, FIN | ACK, 515, 123, b""), out);
        t.process(&seg(10, true, 25, ACK, 123, 516, b""), out);
    }

    #[test]
    fn bypassed_payload_is_not_delivered_but_counted() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        bypassed_session(&mut t, &mut out);
        assert_eq!(t.reassembly_bytes(), 0, "nothing buffered after the hole");
        t.advance(Timestamp(20_000_000_000), &mut out);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["r:220 hi\r\n", "o:BYPASS\r\n", "done"]
        );
        let c = conns(&out)[0];
        assert_eq!(c.history, "ShAdDFf");
        assert_eq!(c.conn_state, "SF");
        assert_eq!((c.orig_bytes, c.resp_bytes), (Some(21), Some(14)));
        assert_eq!(c.missed_bytes, 0);
        assert_eq!((c.orig_pkts, c.resp_pkts), (6, 4));
        assert_eq!(c.orig_ip_bytes, 40 * 6 + 8 + 2);
        let k = t.counters();
        assert_eq!(k.bypassed_flows, 1);
        assert_eq!(k.bypassed_kernel_flows, 0);
        assert_eq!(k.bypassed_packets, 3);
        assert_eq!(k.bypassed_bytes, 46 + 42 + 40);
    }

    #[test]
    fn bypass_off_analyses_everything() {
        let cfg = FlowConfig {
            bypass: false,
            ..FlowConfig::default()
        };
        let (mut t, rec) = table(25, cfg);
        let mut out = Output::new(false);
        bypassed_session(&mut t, &mut out);
        t.advance(Timestamp(20_000_000_000), &mut out);
        assert!(rec.0.lock().unwrap().contains(&"r:secret".to_string()));
        assert_eq!(t.counters().bypassed_flows, 0);
        assert_eq!(conns(&out)[0].missed_bytes, 11);
    }

    /// Stands in for the capture's BPF map: what the kernel would have
    /// counted is given by the test.
    struct FakeKernel {
        started: Arc<Mutex<Vec<ConnId>>>,
        counts: [KernelCounts; 2],
        accept: bool,
    }

    impl KernelBypass for FakeKernel {
        fn start(&mut self, id: &ConnId) -> bool {
            self.started.lock().unwrap().push(*id);
            self.accept
        }
        fn peek(&mut self, _id: &ConnId) -> Option<[KernelCounts; 2]> {
            Some(self.counts)
        }
        fn finish(&mut self, _id: &ConnId) -> [KernelCounts; 2] {
            self.counts
        }
    }

    #[test]
    fn kernel_counts_are_added_to_conn_log() {
        let (mut t, _rec) = table(25, FlowConfig::default());
        let started = Arc::new(Mutex::new(Vec::new()));
        t.set_kernel_bypass(Box::new(FakeKernel {
            started: started.clone(),
            counts: [
                KernelCounts {
                    packets: 10,
                    ip_bytes: 5000,
                    last_seen: Some(Timestamp(7_000_000_000)),
                    seq_end: Some(2109),
                    payload_packets: 9,
                    pure_acks: 1,
                    zero_windows: 0,
                    retransmissions: 2,
                },
                KernelCounts {
                    packets: 5,
                    ip_bytes: 200,
                    last_seen: Some(Timestamp(7_000_000_000)),
                    seq_end: None,
                    pure_acks: 5,
                    ..KernelCounts::default()
                },
            ],
            accept: true,
        }));
        let mut out = Output::new(false);
        // The kernel takes the data; only the close reaches the shard.
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        t.process(&seg(3, true, 25, ACK, 101, 501, b""), &mut out);
        t.process(
            &seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
            &mut out,
        );
        t.process(
            &seg(5, true, 25, ACK | PSH, 101, 509, b"BYPASS\r\n"),
            &mut out,
        );
        assert_eq!(started.lock().unwrap().len(), 1);
        assert_eq!(started.lock().unwrap()[0].resp_p, 25);
        t.process(&seg(8, true, 25, FIN | ACK, 2109, 509, b""), &mut out);
        t.process(&seg(9, false, 25, FIN | ACK, 509, 2110, b""), &mut out);
        t.advance(Timestamp(20_000_000_000), &mut out);
        let c = conns(&out)[0];
        assert_eq!((c.orig_pkts, c.resp_pkts), (4 + 10, 3 + 5));
        assert_eq!(c.orig_ip_bytes, 40 * 4 + 8 + 5000);
        assert_eq!(c.resp_ip_bytes, 40 * 3 + 8 + 200);
        assert_eq!((c.orig_bytes, c.resp_bytes), (Some(2008), Some(8)));
        assert_eq!(c.missed_bytes, 0);
        // The kernel's retransmissions and the server's pure ACKs come
        // before the FIN that made the shard look.
        assert_eq!(c.history, "ShAdDTaFf");
        let k = t.counters();
        assert_eq!((k.bypassed_kernel_flows, k.bypassed_packets), (1, 15));
        assert_eq!(k.bypass_leaked_packets, 0);
    }

    #[test]
    fn kernel_activity_keeps_a_bypassed_connection_alive() {
        let cfg = FlowConfig {
            tcp_inactivity_timeout: 10.0,
            ..FlowConfig::default()
        };
        let (mut t, _rec) = table(25, cfg);
        t.set_kernel_bypass(Box::new(FakeKernel {
            started: Default::default(),
            counts: [
                KernelCounts {
                    packets: 1,
                    ip_bytes: 100,
                    last_seen: Some(Timestamp(15_000_000_000)),
                    pure_acks: 1,
                    ..KernelCounts::default()
                },
                KernelCounts::default(),
            ],
            accept: true,
        }));
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        t.process(
            &seg(3, true, 25, ACK | PSH, 101, 501, b"BYPASS\r\n"),
            &mut out,
        );
        // Idle for the shard since t=3, but the kernel saw a packet at 15.
        t.advance(Timestamp(20_000_000_000), &mut out);
        assert_eq!(t.len(), 1);
        t.advance(Timestamp(26_000_000_000), &mut out);
        assert_eq!(t.len(), 0);
        assert_eq!(
            conns(&out)[0].duration,
            Some(mailtap_core::Interval(14_000_000_000))
        );
    }

    #[test]
    fn a_full_kernel_table_leaves_the_bypass_to_the_shard() {
        let (mut t, _rec) = table(25, FlowConfig::default());
        t.set_kernel_bypass(Box::new(FakeKernel {
            started: Default::default(),
            counts: Default::default(),
            accept: false,
        }));
        let mut out = Output::new(false);
        bypassed_session(&mut t, &mut out);
        t.advance(Timestamp(20_000_000_000), &mut out);
        let k = t.counters();
        assert_eq!((k.bypassed_flows, k.bypass_kernel_refused), (1, 1));
        assert_eq!(k.bypassed_packets, 3);
        assert_eq!(conns(&out)[0].orig_pkts, 6);
    }

    #[test]
    fn analyzer_finishes_when_both_directions_end_in_order() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 25);
        // Before the close delay is over: the analyzer is done and freed,
        // the connection itself is still kept for its conn.log fields.
        assert_eq!(t.len(), 1);
        assert_eq!(
            rec.0.lock().unwrap().last().map(String::as_str),
            Some("done")
        );
        assert!(conns(&out).is_empty());
        t.advance(Timestamp(20_000_000_000), &mut out);
        assert_eq!(conns(&out).len(), 1);
        assert_eq!(conns(&out)[0].service, vec!["test"]);
        let calls = rec.0.lock().unwrap();
        assert_eq!(calls.iter().filter(|c| *c == "done").count(), 1);
    }

    #[test]
    fn analyzer_waits_for_a_hole_before_the_fin() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        let p = 25;
        t.process(&seg(1, true, p, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, p, SYN | ACK, 500, 101, b""), &mut out);
        t.process(
            &seg(3, false, p, ACK | PSH, 501, 101, b"220 hi\r\n"),
            &mut out,
        );
        // The client's data segment is late: its FIN arrives first (the
        // server has not acknowledged the data either, so it is a hole
        // still to be filled, not a gap).
        t.process(&seg(4, true, p, FIN | ACK, 109, 509, b""), &mut out);
        t.process(&seg(5, false, p, FIN | ACK, 509, 101, b""), &mut out);
        assert!(!rec.0.lock().unwrap().contains(&"done".to_string()));
        // The retransmission fills the hole within the close delay.
        t.process(
            &seg(6, true, p, ACK | PSH, 101, 510, b"EHLO x\r\n"),
            &mut out,
        );
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["r:220 hi\r\n", "r:eof", "o:EHLO x\r\n", "o:eof", "done"]
        );
    }

    #[test]
    fn detection_replays_in_arrival_order() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 2525);
        t.finish(&mut out);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["r:220 hi\r\n", "o:EHLO x\r\n", "o:eof", "r:eof", "done"]
        );
        assert_eq!(t.counters().flows_flushed_at_end, 1);
    }

    #[test]
    fn detection_gives_up_on_other_protocols() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 80, SYN, 1, 0, b""), &mut out);
        t.process(
            &seg(2, true, 80, ACK, 2, 0, b"GET / HTTP/1.1\r\n"),
            &mut out,
        );
        t.finish(&mut out);
        assert!(rec.0.lock().unwrap().is_empty());
        assert_eq!(conns(&out)[0].service, Vec::<&str>::new());
    }

    #[test]
    fn partial_connection_not_analyzed() {
        let cfg = FlowConfig {
            analyze_partial: false,
            ..FlowConfig::default()
        };
        let (mut t, rec) = table(25, cfg);
        let mut out = Output::new(false);
        t.process(
            &seg(1, true, 25, ACK, 1000, 1, b"MAIL FROM:<a@b>\r\n"),
            &mut out,
        );
        t.finish(&mut out);
        assert!(rec.0.lock().unwrap().is_empty());
        let c = conns(&out);
        assert_eq!(c[0].conn_state, "OTH");
        assert_eq!(
            c[0].id.orig_p, 40000,
            "sender of the first packet is the originator"
        );
        assert_eq!(t.counters().flows_partial, 1);
    }

    #[test]
    fn partial_connection_analyzed_midstream() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, false, 25, ACK, 7000, 1000, b"354 go\r\n"), &mut out);
        t.process(&seg(2, true, 25, ACK, 1000, 7008, b"data\r\n"), &mut out);
        t.process(&seg(3, true, 25, ACK, 1006, 7008, b".\r\n"), &mut out);
        t.finish(&mut out);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["midstream", "r:354 go\r\n", "o:data\r\n", "o:.\r\n", "done"]
        );
        let c = conns(&out);
        assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (40000, 25));
        assert_eq!(
            c[0].missed_bytes, 0,
            "bytes before the first seen are no gap"
        );
        assert_eq!((c[0].orig_bytes, c[0].resp_bytes), (Some(9), Some(8)));
        let k = t.counters();
        assert_eq!((k.flows_partial, k.flows_midstream), (1, 1));
    }

    #[test]
    fn midstream_detection_tells_the_analyzer() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        // Neither port is a likely server port: the first sender is the
        // originator.
        t.process(&seg(1, true, 2525, ACK, 100, 500, b"EHLO x\r\n"), &mut out);
        t.process(&seg(2, false, 2525, ACK, 500, 108, b"220 hi\r\n"), &mut out);
        t.finish(&mut out);
        assert_eq!(
            rec.0.lock().unwrap()[..2],
            ["midstream".to_string(), "o:EHLO x\r\n".to_string()]
        );
    }

    #[test]
    fn lost_syn_analysed_from_the_syn_ack() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        // The SYN (seq 100) was not captured. The client's first data
        // segment is late: its stream still starts at the ISN the SYN-ACK
        // acknowledges, so nothing is lost or skipped.
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        t.process(&seg(3, true, 25, ACK, 101, 501, b""), &mut out);
        t.process(
            &seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
            &mut out,
        );
        t.process(
            &seg(5, true, 25, ACK | PSH, 109, 509, b"MAIL\r\n"),
            &mut out,
        );
        t.process(
            &seg(6, true, 25, ACK | PSH, 101, 509, b"EHLO x\r\n"),
            &mut out,
        );
        t.process(&seg(7, true, 25, FIN | ACK, 115, 509, b""), &mut out);
        t.process(&seg(8, false, 25, FIN | ACK, 509, 116, b""), &mut out);
        t.process(&seg(9, true, 25, ACK, 116, 510, b""), &mut out);
        t.finish(&mut out);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![
                "r:220 hi\r\n",
                "o:EHLO x\r\n",
                "o:MAIL\r\n",
                "o:eof",
                "r:eof",
                "done"
            ]
        );
        let c = conns(&out)[0];
        assert_eq!((c.id.orig_p, c.id.resp_p), (40000, 25));
        assert_eq!(c.history, "^hAdDFf");
        assert_eq!(c.conn_state, "SF");
        assert_eq!((c.orig_bytes, c.resp_bytes), (Some(14), Some(8)));
        assert_eq!(c.missed_bytes, 0);
        assert_eq!(t.counters().flows_midstream, 0);
    }

    #[test]
    fn likely_server_ports_orient_midstream_connections() {
        let cfg = FlowConfig {
            analyze_partial: false,
            ..FlowConfig::default()
        };
        let (mut t, _) = table(25, cfg);
        let mut out = Output::new(false);
        // From a likely server port (587) to an ephemeral one: swapped.
        t.process(&seg(1, false, 587, ACK, 1, 1, b"250 ok\r\n"), &mut out);
        // From POP3's 110 (not a likely server port in Zeek): as seen.
        t.process(&seg(2, false, 110, ACK, 1, 1, b"+OK\r\n"), &mut out);
        // A SYN-ACK from 110: as seen too.
        t.process(&seg(3, false, 995, SYN | ACK, 1, 1, b""), &mut out);
        t.process(&seg(3, false, 1110, SYN | ACK, 1, 1, b""), &mut out);
        t.finish(&mut out);
        let c = conns(&out);
        let ids: Vec<(u16, u16, bool)> = c
            .iter()
            .map(|c| (c.id.orig_p, c.id.resp_p, c.history.starts_with('^')))
            .collect();
        assert_eq!(
            ids,
            vec![
                (40000, 587, true),
                (110, 40000, false),
                (40000, 995, true),
                (40000, 1110, true)
            ]
        );
        // Both ports likely: swapped only towards the higher port.
        let mut out = Output::new(false);
        let mut s = seg(1, true, 25, ACK, 1, 1, b"x");
        s.src_port = 443;
        t.process(&s, &mut out);
        let mut s = seg(2, true, 443, ACK, 1, 1, b"x");
        s.src_port = 25;
        t.process(&s, &mut out);
        t.finish(&mut out);
        let c = conns(&out);
        assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (443, 25));
        assert_eq!((c[1].id.orig_p, c[1].id.resp_p), (443, 25));
    }

    fn weirds(out: &Output) -> Vec<(String, &'static str)> {
        out.records
            .iter()
            .filter_map(|r| match r {
                Record::Weird(w) => Some((w.uid.clone().unwrap_or_default(), w.name)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn stray_packet_before_syn_does_not_hide_the_session() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        // A retransmission from an earlier connection on the 4-tuple.
        t.process(
            &seg(0, true, 25, ACK | PSH, 9000, 3000, b"QUIT\r\n"),
            &mut out,
        );
        session(&mut t, &mut out, 25);
        t.finish(&mut out);
        let c = conns(&out);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].history, "D");
        assert_eq!(c[1].history, "ShAdDFf");
        assert_eq!(c[1].service, vec!["test"]);
        assert_eq!(
            weirds(&out),
            vec![(c[0].uid.clone(), "active_connection_reuse")]
        );
        let calls = rec.0.lock().unwrap();
        assert!(calls.ends_with(&[
            "r:220 hi\r\n".to_string(),
            "o:EHLO x\r\n".to_string(),
            "o:eof".to_string(),
            "r:eof".to_string(),
            "done".to_string()
        ]));
        assert_eq!(t.counters().flows_reused, 1);
    }

    #[test]
    fn reuse_rules() {
        // A retransmitted SYN is not a reuse; one with another sequence
        // number while the first is unanswered is (SYN_seq_jump).
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, true, 25, SYN, 100, 0, b""), &mut out);
        assert_eq!(t.len(), 1);
        assert!(conns(&out).is_empty());
        t.process(&seg(3, true, 25, SYN, 900, 0, b""), &mut out);
        let first = conns(&out)[0].uid.clone();
        assert_eq!(weirds(&out), vec![(first, "SYN_seq_jump")]);

        // A new SYN soon after both sides closed: premature reuse.
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 25);
        t.process(&seg(10, true, 25, SYN, 7000, 0, b""), &mut out);
        let c = conns(&out);
        assert_eq!((c.len(), c[0].conn_state), (1, "SF"));
        assert_eq!(
            weirds(&out),
            vec![(c[0].uid.clone(), "premature_connection_reuse")]
        );
        assert_eq!(t.counters().flows_closed, 1);

        // Later than the linger time, or after a reset: no weird.
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, 25, flags::RST | ACK, 0, 101, b""), &mut out);
        t.process(&seg(3, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(4, true, 25, flags::RST, 101, 0, b""), &mut out);
        t.process(&seg(5, true, 25, SYN, 200, 0, b""), &mut out);
        assert_eq!(conns(&out).len(), 2);
        assert!(weirds(&out).is_empty());

        // One side closed, the other still sending: active reuse.
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        t.process(&seg(3, true, 25, FIN | ACK, 101, 501, b""), &mut out);
        t.process(&seg(4, true, 25, SYN, 100, 0, b""), &mut out);
        assert_eq!(weirds(&out)[0].1, "active_connection_reuse");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn data_after_both_fins_outside_the_streams_is_a_new_connection() {
        // A retransmission after the close belongs to the old connection.
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 25);
        t.process(
            &seg(9, true, 25, ACK | PSH, 101, 510, b"EHLO x\r\n"),
            &mut out,
        );
        assert!(conns(&out).is_empty());
        assert_eq!(t.len(), 1);

        // Server data far from the old stream, 4-tuple reused without a
        // captured handshake: the old connection ends, a new one begins
        // (oriented by the server port, as any partial connection).
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        session(&mut t, &mut out, 25);
        t.process(
            &seg(10, false, 25, ACK | PSH, 90_000, 7_000, b"220 again\r\n"),
            &mut out,
        );
        let c = conns(&out);
        assert_eq!((c.len(), c[0].conn_state), (1, "SF"));
        assert!(weirds(&out).is_empty());
        assert_eq!(t.counters().flows_closed, 1);
        assert_eq!(t.counters().flows_partial, 1);
        t.finish(&mut out);
        let c = conns(&out);
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].id.resp_p, c[1].history.as_str()), (25, "^d"));

        // Only one side closed: not yet.
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        t.process(&seg(3, true, 25, FIN | ACK, 101, 501, b""), &mut out);
        t.process(&seg(4, true, 25, ACK | PSH, 9_000, 501, b"x"), &mut out);
        assert_eq!(t.len(), 1);
        assert!(conns(&out).is_empty());
    }

    #[test]
    fn finish_flushes_in_creation_order() {
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        let ports: Vec<u16> = (0..200u16)
            .map(|i| 1000 + i.wrapping_mul(7919) % 5000)
            .collect();
        for (i, p) in ports.iter().enumerate() {
            t.process(&seg(i as i64, true, *p, SYN, 1, 0, b""), &mut out);
        }
        t.finish(&mut out);
        let got: Vec<u16> = conns(&out).iter().map(|c| c.id.resp_p).collect();
        assert_eq!(got, ports);
    }

    #[test]
    fn responder_first_packet_flips() {
        let (mut t, _) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, false, 25, ACK, 1000, 1, b"250 ok\r\n"), &mut out);
        t.finish(&mut out);
        let c = conns(&out);
        assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (40000, 25));
        assert!(c[0].history.starts_with('^'));
    }

    #[test]
    fn syn_after_reset_is_a_new_connection() {
        let (mut t, _) = table(110, FlowConfig::default());
        let mut out = Output::new(false);
        for i in 0..3 {
            t.process(&seg(i * 2, true, 110, SYN, 7, 0, b""), &mut out);
            t.process(
                &seg(i * 2 + 1, false, 110, flags::RST | ACK, 0, 8, b""),
                &mut out,
            );
        }
        t.finish(&mut out);
        let c = conns(&out);
        assert_eq!(c.len(), 3);
        assert!(c
            .iter()
            .all(|c| c.conn_state == "REJ" && c.history == "Sr" && c.orig_pkts == 1));
    }

    #[test]
    fn table_limit_evicts_oldest_and_logs_it() {
        let cfg = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let (mut t, _) = table(25, cfg);
        let mut out = Output::new(false);
        for (i, p) in [25u16, 26, 27].iter().enumerate() {
            t.process(&seg(i as i64, true, *p, SYN, 1, 0, b""), &mut out);
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.counters().flows_evicted, 1);
        assert_eq!(conns(&out)[0].id.resp_p, 25);
    }

    #[test]
    fn inactivity_timeout_expires() {
        let cfg = FlowConfig {
            tcp_inactivity_timeout: 10.0,
            ..FlowConfig::default()
        };
        let (mut t, rec) = table(25, cfg);
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 1, 0, b""), &mut out);
        t.process(&seg(8, true, 25, ACK, 2, 0, b"x"), &mut out);
        t.advance(Timestamp(15_000_000_000), &mut out);
        assert_eq!(t.len(), 1, "last packet at 8 s: not idle for 10 s yet");
        t.advance(Timestamp(19_000_000_000), &mut out);
        assert_eq!(t.len(), 0);
        assert_eq!(t.counters().flows_timed_out, 1);
        assert_eq!(rec.0.lock().unwrap().last().unwrap(), "done");
        assert_eq!(conns(&out)[0].conn_state, "S0");
    }

    #[test]
    fn syn_flood_stays_bounded() {
        let cfg = FlowConfig {
            max_flows: 1000,
            ..FlowConfig::default()
        };
        let (mut t, _) = table(25, cfg);
        let mut out = Output::new(false);
        for i in 0..20_000u32 {
            let mut s = seg(1, true, 25, SYN, i, 0, b"");
            s.src_port = (i % 60000) as u16;
            s.src = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
            t.process(&s, &mut out);
            assert!(t.len() <= 1000);
            if out.records.len() > 1000 {
                out.take();
            }
        }
        assert_eq!(t.counters().flows_evicted, 19_000);
    }

    /// A SYN from a flood: client 10.9.x.y.
    fn flood_syn(i: u32, ts: i64) -> Segment<'static> {
        let mut s = seg(ts, true, 25, SYN, i, 0, b"");
        s.src_port = 1024 + (i % 60000) as u16;
        s.src = IpAddr::from([10, 9, (i >> 8) as u8, i as u8]);
        s
    }

    /// An established session with a transaction in progress: client
    /// 10.0.0.1:40000.
    fn active_session(t: &mut FlowTable<Factory>, out: &mut Output, ts: i64) {
        t.process(&seg(ts, true, 25, SYN, 100, 0, b""), out);
        t.process(&seg(ts, false, 25, SYN | ACK, 500, 101, b""), out);
        t.process(&seg(ts, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"), out);
        t.process(&seg(ts, true, 25, ACK | PSH, 101, 509, b"EHLO x\r\n"), out);
    }

    #[test]
    fn half_open_connection_has_no_analyzer_until_payload() {
        let (mut t, rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
        t.process(&seg(1, false, 25, SYN | ACK, 500, 101, b""), &mut out);
        assert_eq!(t.counters().analyzers_by_port, 0);
        t.process(
            &seg(2, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
            &mut out,
        );
        assert_eq!(t.counters().analyzers_by_port, 1);
        assert_eq!(*rec.0.lock().unwrap(), vec!["r:220 hi\r\n"]);
    }

    #[test]
    fn unanswered_attempts_expire_after_the_attempt_delay() {
        let (mut t, _rec) = table(25, FlowConfig::default());
        let mut out = Output::new(false);
        active_session(&mut t, &mut out, 0);
        for i in 0..10 {
            t.process(&flood_syn(i, 1), &mut out);
        }
        assert_eq!(t.len(), 11);
        t.advance(Timestamp(5_500_000_000), &mut out);
        assert_eq!(t.len(), 11, "not before tcp_attempt_delay (5 s)");
        t.advance(Timestamp(6_000_000_000), &mut out);
        assert_eq!(t.len(), 1, "the session stays");
        let k = t.counters();
        assert_eq!((k.flows_attempts_expired, k.flows_timed_out), (10, 0));
        assert!(conns(&out).iter().all(|c| c.conn_state == "S0"));
    }

    #[test]
    fn syn_flood_evicts_itself_not_the_active_session() {
        let cfg = FlowConfig {
            max_flows: 100,
            ..FlowConfig::default()
        };
        let (mut t, rec) = table(25, cfg);
        let mut out = Output::new(false);
        for i in 0..50 {
            t.process(&flood_syn(i, 1), &mut out);
        }
        active_session(&mut t, &mut out, 1);
        for i in 50..10_000 {
            t.process(&flood_syn(i, 2), &mut out);
            assert!(t.len() <= 100);
        }
        // The session goes on and ends normally.
        t.process(
            &seg(3, true, 25, ACK | PSH, 109, 509, b"QUIT\r\n"),
            &mut out,
        );
        let k = t.counters();
        assert_eq!((k.flows_evicted, k.flows_evicted_active), (10_001 - 100, 0));
        assert!(weirds(&out).is_empty());
        assert!(rec.0.lock().unwrap().contains(&"o:QUIT\r\n".to_string()));
    }

    #[test]
    fn eviction_takes_the_least_recently_active_and_says_so() {
        let cfg = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let (mut t, _rec) = table(25, cfg);
        let mut out = Output::new(false);
        // A (client port 40000) then B (client port 40001), both with
        // analyzer state; A is active again after B.
        active_session(&mut t, &mut out, 1);
        let b = |s: Segment<'static>| {
            let mut s = s;
            if s.src_port == 40000 {
                s.src_port = 40001;
            } else {
                s.dst_port = 40001;
            }
            s
        };
        t.process(&b(seg(2, true, 25, SYN, 100, 0, b"")), &mut out);
        t.process(&b(seg(2, false, 25, SYN | ACK, 500, 101, b"")), &mut out);
        t.process(
            &b(seg(2, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n")),
            &mut out,
        );
        t.process(
            &seg(3, true, 25, ACK | PSH, 109, 509, b"MAIL\r\n"),
            &mut out,
        );
        // C needs room: B is the least recently active.
        let mut c = seg(4, true, 25, SYN, 1, 0, b"");
        c.src_port = 40002;
        t.process(&c, &mut out);
        let evicted: Vec<u16> = conns(&out).iter().map(|c| c.id.orig_p).collect();
        assert_eq!(evicted, vec![40001]);
        assert_eq!(t.counters().flows_evicted_active, 1);
        assert!(weirds(&out)
            .iter()
            .any(|(_, n)| *n == "active_connection_evicted"));
    }
}
