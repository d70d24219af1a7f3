//! Imperfect captures: what a sensor really sees. [`generate_imperfect`]
//! runs the ordinary generator and passes its packets through a filter
//! that loses handshake packets, injects stray packets from "earlier
//! connections" before a session's SYN, or cuts the capture's beginning
//! (a sensor started mid-traffic), and reports for every connection what
//! was lost ([`FlowTruth`]).
//!
//! Sessions are chosen per connection by a hash of its 4-tuple and the
//! seed, so the same configuration always damages the same connections.

use crate::session::Span;
use crate::{pcap, GenConfig, GenStats, MessageTruth, Protocol};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::IpAddr;
use std::rc::Rc;

/// What to do to the capture. Percentages are of connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imperfections {
    /// Drop the client's SYN (and its retransmissions); the SYN-ACK and
    /// everything after stay. A sensor (and Zeek) analyse such sessions in
    /// full.
    pub drop_syn_percent: u8,
    /// Drop both the SYN and the SYN-ACK: no handshake at all.
    pub drop_handshake_percent: u8,
    /// Before the SYN, a packet from an earlier connection on the same
    /// 4-tuple: a pure ACK, or (every other chosen session) a 6-byte data
    /// segment, from the client, whose sequence number does not fit the
    /// new connection. The session itself is complete.
    pub stray_before_syn_percent: u8,
    /// Leave out the capture's first this many packets (a sensor started
    /// mid-traffic); see [`count_packets`] to cut at a fraction.
    pub skip_packets: u64,
}

/// What the capture holds of one connection (one per connection, in the
/// order of their first packet in the uncut traffic; a 4-tuple reused by a
/// later session ([`crate::Quirks`]) gives one per session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTruth {
    /// Client (originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server (responder) address and port.
    pub resp: (IpAddr, u16),
    /// The client's SYN is in the capture.
    pub syn_captured: bool,
    /// The server's SYN-ACK is in the capture.
    pub syn_ack_captured: bool,
    /// A stray packet was injected before the SYN.
    pub stray_before_syn: bool,
    /// Packets of the connection in the capture (stray packet excluded).
    pub packets_captured: u64,
    /// Client payload bytes sent before the first client payload byte in
    /// the capture (cut away): the head of the client's stream a sensor
    /// never sees. 0 when nothing was cut. All of it when no client data
    /// is in the capture.
    pub orig_bytes_unseen: u64,
    /// Likewise for the server's stream.
    pub resp_bytes_unseen: u64,
    /// Client payload bytes sent in total.
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    /// Packets of the connection cut away with the capture's beginning.
    pub packets_cut: u64,
}

/// What a sensor can know of one message of an imperfect capture, and so
/// what it should report in the extraction JSON (see
/// [`MessageCapture::expect`]).
///
/// A message's *data start* is the point from which a sensor can attribute
/// every following byte to it: for SMTP `DATA` the server's `354` reply and
/// the first data byte; for `BDAT` the transaction's `MAIL FROM` and the
/// first chunk (a `BDAT n LAST` seen mid-stream may follow chunks that were
/// cut off, so a chunk alone is not a start); for POP3 the `RETR`/`TOP`
/// command, the `+OK` status line and the first data byte. Missing bytes are counted on the wire: the bytes of the
/// message's transfer (dot-stuffed lines before the final `.` line; BDAT
/// chunk payloads) in no captured packet. That is what a sensor can count
/// (TCP sequence numbers); for DATA and POP3 a lost line that began with a
/// `.` had one more byte on the wire than in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The data start and every byte up to the end of the transfer are in
    /// the capture: the message is extracted byte for byte (the `.eml`
    /// equals [`MessageTruth::bytes`]), `complete: true`,
    /// `missing_bytes: 0`. (Its envelope may still be unknown when the
    /// `MAIL FROM` was cut: [`MessageCapture::start_captured`].)
    Exact,
    /// The data start is in the capture, but `missing_bytes` bytes of the
    /// data were in packets left out (content gaps): `complete: false`,
    /// `missing_bytes` equal to this.
    Incomplete { missing_bytes: u64 },
    /// The data start was cut off (before the capture began) but some later
    /// data byte is in the capture: the sensor cannot know where the
    /// message began nor how much of it it missed. If it reports the
    /// message at all, then as a tail: `complete: false`, `partial: true`
    /// (`missing_bytes` unknown, `null` or a lower bound). Never
    /// `complete: true`.
    Tail,
    /// No data byte is in the capture: there is nothing to extract.
    NotCaptured,
}

/// Where one message's transfer is in an imperfect capture (delivered with
/// the message by [`generate_imperfect_with_truth`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageCapture {
    /// The command that starts the transaction is in the capture: SMTP
    /// `MAIL FROM`, POP3 `RETR`/`TOP`.
    pub start_captured: bool,
    /// The data start is in the capture (see [`Expect`]).
    pub data_start_captured: bool,
    /// What ends the transfer is in the capture: the server's reply to
    /// the end of data (SMTP), the terminating `.` line (POP3).
    pub end_captured: bool,
    /// The whole transfer, from the starting command to its end, is in the
    /// capture (start, data start, every data byte, end).
    pub fully_captured: bool,
    /// Bytes of the message's transfer on the wire (see [`Expect`]).
    pub data_bytes: u64,
    /// Of those, bytes sent before the capture's first packet of the
    /// connection's carrying direction (cut off).
    pub bytes_cut: u64,
    /// Of those, bytes in packets left out after the capture began
    /// (content gaps, [`GenConfig::gap_percent`]).
    pub bytes_in_gaps: u64,
    /// The capture begins inside this message's session: packets of its
    /// connection were cut away ([`Imperfections::skip_packets`]).
    pub session_cut: bool,
    /// What the sensor should report.
    pub expect: Expect,
}

/// One message of [`generate_imperfect_with_truth`]: what was sent and what
/// the capture holds of it.
#[derive(Debug)]
pub struct ImperfectMessageTruth<'a> {
    pub message: MessageTruth<'a>,
    pub capture: MessageCapture,
}

/// Totals and per-connection truth of [`generate_imperfect`].
#[derive(Clone, Debug, Default)]
pub struct ImperfectStats {
    /// The generator's own totals (of the traffic before the filter).
    pub gen: GenStats,
    pub packets_written: u64,
    pub packets_dropped: u64,
    pub stray_packets: u64,
    pub flows: Vec<FlowTruth>,
}

impl ImperfectStats {
    /// The truth of the connection `orig` → `resp` (the first, when the
    /// 4-tuple was reused).
    pub fn flow(&self, orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Option<&FlowTruth> {
        self.flows.iter().find(|f| f.orig == orig && f.resp == resp)
    }

    /// Whether a message of the connection (`MessageTruth::orig`/`resp`)
    /// can be complete in the capture: the head of the stream that carries
    /// it (the client's for SMTP, the server's for POP3) was not cut.
    pub fn message_fully_captured(&self, m: &MessageTruth<'_>) -> bool {
        self.flow(m.orig, m.resp).is_some_and(|f| match m.protocol {
            crate::Protocol::Smtp => f.orig_bytes_unseen == 0,
            crate::Protocol::Pop3 => f.resp_bytes_unseen == 0,
        })
    }
}

/// Packets [`crate::generate`] writes for `cfg` (to cut a capture at a
/// fraction of its packets).
pub fn count_packets(cfg: &GenConfig) -> io::Result<u64> {
    Ok(crate::generate(cfg, io::sink())?.packets)
}

/// Generates `cfg`'s traffic with `imp` applied, writing a classic pcap to
/// `w`; `on_message` is called for every message as in
/// [`crate::generate_with_truth`] (what was sent; see
/// [`ImperfectStats::message_fully_captured`] for what the capture holds,
/// and [`generate_imperfect_with_truth`] for each message's exact fate).
pub fn generate_imperfect<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
) -> io::Result<ImperfectStats> {
    imperfect(cfg, imp, w, Some(on_message), None)
}

/// Like [`generate_imperfect`] (the same capture), but `on_message` gets
/// each message with what the capture holds of it
/// ([`ImperfectMessageTruth`]). It is called once every packet of the
/// message's connection has passed the filter (at the connection's close,
/// at the next connection on its 4-tuple, or at the end), so in the order
/// the connections end; within a connection in message order. The bytes of
/// the messages of running connections are held until then.
pub fn generate_imperfect_with_truth<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    on_message: &mut dyn FnMut(&ImperfectMessageTruth),
) -> io::Result<ImperfectStats> {
    imperfect(cfg, imp, w, None, Some(on_message))
}

fn imperfect<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    raw: Option<&mut dyn FnMut(&MessageTruth)>,
    rich: Option<&mut dyn FnMut(&ImperfectMessageTruth)>,
) -> io::Result<ImperfectStats> {
    let shared = Rc::new(RefCell::new(Shared::default()));
    let want = rich.is_some();
    let mut f = Filter {
        w,
        imp: imp.clone(),
        seed: cfg.seed,
        pending: Vec::new(),
        header_done: false,
        seen: 0,
        flows: Vec::new(),
        current: HashMap::new(),
        stats: ImperfectStats::default(),
        shared: shared.clone(),
        on_truth: rich,
    };
    let gen = if want {
        let (s1, s2) = (shared.clone(), shared.clone());
        let mut keep = move |t: &MessageTruth| {
            let k = (t.orig.0, t.orig.1, t.resp.0, t.resp.1);
            s1.borrow_mut()
                .waiting
                .insert((k, t.index_in_session), OwnedMsg::of(t));
        };
        let mut span = move |sp: &Span| {
            let mut sh = s2.borrow_mut();
            let k = (sp.orig.0, sp.orig.1, sp.resp.0, sp.resp.1);
            let m = sh.waiting.remove(&(k, sp.index));
            debug_assert!(m.is_some(), "a span without its message");
            if let Some(m) = m {
                sh.ready
                    .entry((k, sp.isn))
                    .or_default()
                    .push_back((sp.clone(), m));
            }
        };
        crate::run(cfg, &mut f, Some(&mut keep), None, Some(&mut span))?
    } else {
        let mut none = |_: &MessageTruth| {};
        let cb = raw.unwrap_or(&mut none);
        crate::generate_with_truth(cfg, &mut f, cb)?
    };
    f.flush()?;
    for i in 0..f.flows.len() {
        f.deliver(i);
    }
    debug_assert!(shared.borrow().ready.values().all(VecDeque::is_empty));
    let mut stats = std::mem::take(&mut f.stats);
    stats.gen = gen;
    stats.flows = std::mem::take(&mut f.flows)
        .into_iter()
        .map(|s| s.truth)
        .collect();
    Ok(stats)
}

type Key = (IpAddr, u16, IpAddr, u16);

/// A message as sent, kept until its connection has passed the filter.
struct OwnedMsg {
    protocol: Protocol,
    orig: (IpAddr, u16),
    resp: (IpAddr, u16),
    index: u32,
    mailfrom: String,
    rcptto: Vec<String>,
    rejected: Vec<String>,
    subject: String,
    subject_decoded: String,
    bytes: Vec<u8>,
    via_bdat: bool,
    status_code: Option<u16>,
    user: Option<String>,
    partial: bool,
    complete: bool,
}

impl OwnedMsg {
    fn of(t: &MessageTruth) -> Self {
        OwnedMsg {
            protocol: t.protocol,
            orig: t.orig,
            resp: t.resp,
            index: t.index_in_session,
            mailfrom: t.mailfrom.to_string(),
            rcptto: t.rcptto.to_vec(),
            rejected: t.rcptto_rejected.to_vec(),
            subject: t.subject.to_string(),
            subject_decoded: t.subject_decoded.to_string(),
            bytes: t.bytes.to_vec(),
            via_bdat: t.via_bdat,
            status_code: t.status_code,
            user: t.user.map(str::to_string),
            partial: t.partial,
            complete: t.complete,
        }
    }

    fn truth(&self) -> MessageTruth<'_> {
        MessageTruth {
            protocol: self.protocol,
            orig: self.orig,
            resp: self.resp,
            index_in_session: self.index,
            mailfrom: &self.mailfrom,
            rcptto: &self.rcptto,
            rcptto_rejected: &self.rejected,
            subject: &self.subject,
            subject_decoded: &self.subject_decoded,
            bytes: &self.bytes,
            via_bdat: self.via_bdat,
            status_code: self.status_code,
            user: self.user.as_deref(),
            partial: self.partial,
            complete: self.complete,
        }
    }
}

/// Messages between the generator (which reports them as it queues their
/// transfer) and the filter (which sees their packets later).
#[derive(Default)]
struct Shared {
    /// Reported, transfer not yet queued: by 4-tuple and index.
    waiting: HashMap<(Key, u32), OwnedMsg>,
    /// Queued: by 4-tuple and the client's initial sequence number.
    ready: HashMap<(Key, u32), VecDeque<(Span, OwnedMsg)>>,
}

struct FlowState {
    key: Key,
    truth: FlowTruth,
    /// A payload byte of each direction has been captured.
    kept_data: [bool; 2],
    /// Initial sequence numbers (client, server) as the SYN and SYN-ACK
    /// carried them (whether captured or not).
    isn: [Option<u32>; 2],
    /// Captured stream ranges per direction, in order.
    ranges: [Vec<(u64, u64)>; 2],
    /// FINs seen: bit 0 client, bit 1 server.
    fins: u8,
    delivered: bool,
}

struct Filter<'a, W: Write> {
    w: W,
    imp: Imperfections,
    seed: u64,
    pending: Vec<u8>,
    header_done: bool,
    seen: u64,
    /// Every connection, in the order of its first packet.
    flows: Vec<FlowState>,
    /// The connection each 4-tuple has now.
    current: HashMap<Key, usize>,
    stats: ImperfectStats,
    shared: Rc<RefCell<Shared>>,
    on_truth: Option<&'a mut dyn FnMut(&ImperfectMessageTruth)>,
}

/// Bytes of [a, b) inside `ranges` (sorted, disjoint).
fn covered(ranges: &[(u64, u64)], a: u64, b: u64) -> u64 {
    ranges
        .iter()
        .map(|&(x, y)| y.min(b).saturating_sub(x.max(a)))
        .sum()
}

fn has(ranges: &[(u64, u64)], off: u64) -> bool {
    covered(ranges, off, off + 1) == 1
}

impl FlowState {
    /// What the capture holds of the message whose transfer is `sp`.
    fn capture(&self, sp: &Span) -> MessageCapture {
        let r = |d: usize| &self.ranges[d][..];
        let d = sp.data_dir;
        let first = r(d).first().map_or(u64::MAX, |x| x.0);
        let mut data_bytes = 0;
        let mut captured = 0;
        let mut bytes_cut = 0;
        for &(a, b) in &sp.data {
            data_bytes += b - a;
            captured += covered(r(d), a, b);
            bytes_cut += b.min(first).saturating_sub(a);
        }
        let lost = data_bytes - captured;
        let start_captured = has(r(0), sp.start);
        // (POP3: the command too, which alone says a multi-line response
        // is a message)
        let data_start_captured = has(r(sp.data_mark.0), sp.data_mark.1)
            && sp.data.first().is_some_and(|&(a, _)| has(r(d), a))
            && (d == 0 || start_captured);
        let end_captured = has(r(sp.end.0), sp.end.1);
        let expect = if captured == 0 {
            Expect::NotCaptured
        } else if !data_start_captured {
            Expect::Tail
        } else if lost == 0 {
            Expect::Exact
        } else {
            Expect::Incomplete {
                missing_bytes: lost,
            }
        };
        MessageCapture {
            start_captured,
            data_start_captured,
            end_captured,
            fully_captured: start_captured && data_start_captured && lost == 0 && end_captured,
            data_bytes,
            bytes_cut,
            bytes_in_gaps: lost - bytes_cut,
            session_cut: self.truth.packets_cut > 0 && self.truth.packets_captured > 0,
            expect,
        }
    }
}

/// The parts of one generated packet the filter needs.
struct Pkt {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    payload: usize,
    /// Offsets in the record: IP header, TCP header, payload.
    ip: usize,
    tcp: usize,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn parse(rec: &[u8]) -> Option<Pkt> {
    let eth = 16;
    let ip = eth + 14;
    let ethertype = u16::from_be_bytes([rec[eth + 12], rec[eth + 13]]);
    let (src, dst, tcp, end) = match ethertype {
        0x0800 => {
            let ihl = usize::from(rec[ip] & 0x0f) * 4;
            if rec[ip + 9] != 6 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([rec[ip + 2], rec[ip + 3]]));
            let a: [u8; 4] = rec[ip + 12..ip + 16].try_into().ok()?;
            let b: [u8; 4] = rec[ip + 16..ip + 20].try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), ip + ihl, ip + total)
        }
        0x86dd => {
            if rec[ip + 6] != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([rec[ip + 4], rec[ip + 5]]));
            let a: [u8; 16] = rec[ip + 8..ip + 24].try_into().ok()?;
            let b: [u8; 16] = rec[ip + 24..ip + 40].try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), ip + 40, ip + 40 + plen)
        }
        _ => return None,
    };
    let off = usize::from(rec[tcp + 12] >> 4) * 4;
    Some(Pkt {
        src,
        dst,
        sport: u16::from_be_bytes([rec[tcp], rec[tcp + 1]]),
        dport: u16::from_be_bytes([rec[tcp + 2], rec[tcp + 3]]),
        flags: rec[tcp + 13],
        seq: u32::from_be_bytes([rec[tcp + 4], rec[tcp + 5], rec[tcp + 6], rec[tcp + 7]]),
        payload: end.saturating_sub(tcp + off),
        ip,
        tcp,
    })
}

fn hash(seed: u64, salt: u64, k: &Key) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, salt, k).hash(&mut h);
    h.finish()
}

fn chosen(seed: u64, salt: u64, k: &Key, pct: u8) -> bool {
    pct > 0 && hash(seed, salt, k) % 100 < u64::from(pct)
}

impl<W: Write> Filter<'_, W> {
    fn record(&mut self, rec: &[u8]) -> io::Result<()> {
        self.seen += 1;
        let Some(p) = parse(rec) else {
            return self.w.write_all(rec);
        };
        // The client is the sender of the SYN; the generator's servers use
        // the lower port.
        let from_client = if p.flags & (SYN | ACK) == SYN {
            true
        } else if p.flags & (SYN | ACK) == SYN | ACK {
            false
        } else {
            p.sport > p.dport
        };
        let key: Key = if from_client {
            (p.src, p.sport, p.dst, p.dport)
        } else {
            (p.dst, p.dport, p.src, p.sport)
        };
        let is_syn = p.flags & (SYN | ACK) == SYN;
        let is_syn_ack = p.flags & (SYN | ACK) == SYN | ACK;
        let reused = is_syn
            && self
                .current
                .get(&key)
                .is_some_and(|&i| self.flows[i].isn[0].is_some_and(|isn| isn != p.seq));
        if reused {
            // a new session on the 4-tuple: the old connection is over
            let old = self.current[&key];
            self.deliver(old);
        }
        if reused || !self.current.contains_key(&key) {
            self.current.insert(key, self.flows.len());
            self.flows.push(FlowState {
                key,
                truth: FlowTruth {
                    orig: (key.0, key.1),
                    resp: (key.2, key.3),
                    syn_captured: false,
                    syn_ack_captured: false,
                    stray_before_syn: false,
                    packets_captured: 0,
                    orig_bytes_unseen: 0,
                    resp_bytes_unseen: 0,
                    orig_bytes: 0,
                    resp_bytes: 0,
                    packets_cut: 0,
                },
                kept_data: [false; 2],
                isn: [None; 2],
                ranges: [Vec::new(), Vec::new()],
                fins: 0,
                delivered: false,
            });
        }
        let idx = self.current[&key];
        let (seed, imp) = (self.seed, &self.imp);
        let no_handshake = chosen(seed, 2, &key, imp.drop_handshake_percent);
        let no_syn = no_handshake || chosen(seed, 1, &key, imp.drop_syn_percent);
        let stray = chosen(seed, 3, &key, imp.stray_before_syn_percent);
        let cut = self.seen <= imp.skip_packets;
        let drop = cut || (is_syn && no_syn) || (is_syn_ack && no_handshake);
        let st = &mut self.flows[idx];
        let d = usize::from(!from_client);
        if is_syn || is_syn_ack {
            st.isn[d].get_or_insert(p.seq);
        }
        if p.flags & FIN != 0 {
            st.fins |= 1 << d;
        }
        if from_client {
            st.truth.orig_bytes += p.payload as u64;
        } else {
            st.truth.resp_bytes += p.payload as u64;
        }
        let closed = st.fins == 3;
        if drop {
            self.stats.packets_dropped += 1;
            st.truth.packets_cut += u64::from(cut);
            if p.payload > 0 && !st.kept_data[d] {
                if from_client {
                    st.truth.orig_bytes_unseen += p.payload as u64;
                } else {
                    st.truth.resp_bytes_unseen += p.payload as u64;
                }
            }
            if closed {
                self.deliver(idx);
            }
            return Ok(());
        }
        if is_syn && stray && !st.truth.stray_before_syn && !st.truth.syn_captured {
            st.truth.stray_before_syn = true;
            let data = hash(seed, 4, &key) & 1 == 1;
            let s = stray_packet(rec, &p, data);
            self.stats.stray_packets += 1;
            self.stats.packets_written += 1;
            self.w.write_all(&s)?;
        }
        let st = &mut self.flows[idx];
        st.truth.syn_captured |= is_syn;
        st.truth.syn_ack_captured |= is_syn_ack;
        st.truth.packets_captured += 1;
        if p.payload > 0 {
            st.kept_data[d] = true;
            if let Some(isn) = st.isn[d] {
                let a = u64::from(p.seq.wrapping_sub(isn.wrapping_add(1)));
                let b = a + p.payload as u64;
                match st.ranges[d].last_mut() {
                    Some(r) if r.1 == a => r.1 = b,
                    _ => st.ranges[d].push((a, b)),
                }
            }
        }
        self.stats.packets_written += 1;
        self.w.write_all(rec)?;
        if closed {
            self.deliver(idx);
        }
        Ok(())
    }

    /// Hands the messages of connection `i` (all its packets have passed)
    /// to the truth callback, once.
    fn deliver(&mut self, i: usize) {
        let f = &mut self.flows[i];
        if f.delivered {
            return;
        }
        f.delivered = true;
        let (Some(cb), Some(isn)) = (self.on_truth.as_mut(), f.isn[0]) else {
            return;
        };
        let items = self.shared.borrow_mut().ready.remove(&(f.key, isn));
        for (sp, m) in items.into_iter().flatten() {
            cb(&ImperfectMessageTruth {
                message: m.truth(),
                capture: f.capture(&sp),
            });
        }
    }
}

/// A copy of the SYN `rec` turned into a packet of an earlier connection:
/// an ACK (with `data`, 6 payload bytes) whose sequence number is far from
/// the SYN's, with valid checksums.
fn stray_packet(rec: &[u8], p: &Pkt, data: bool) -> Vec<u8> {
    let tcp_len = 20usize;
    let payload: &[u8] = if data { b"QUIT\r\n" } else { b"" };
    let mut out = rec[..p.tcp].to_vec();
    let ip = p.ip;
    let mut t = rec[p.tcp..p.tcp + tcp_len].to_vec();
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]).wrapping_add(0x4000_0000);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = ACK | if data { PSH } else { 0 };
    t[16] = 0;
    t[17] = 0;
    t.extend_from_slice(payload);
    let seg_len = t.len();
    // Pseudo-header checksum.
    let mut acc = 0u64;
    match (p.src, p.dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            acc = pcap::sum_be(&a.octets(), acc);
            acc = pcap::sum_be(&b.octets(), acc);
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            acc = pcap::sum_be(&a.octets(), acc);
            acc = pcap::sum_be(&b.octets(), acc);
        }
        _ => {}
    }
    acc = pcap::add16(acc, 6);
    acc = pcap::add16(acc, seg_len as u64);
    acc = pcap::sum_be(&t, acc);
    let c = pcap::finish(acc);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    if p.src.is_ipv4() {
        let total = (p.tcp - ip + seg_len) as u16;
        out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
        out[ip + 10] = 0;
        out[ip + 11] = 0;
        let c = pcap::finish(pcap::sum_be(&out[ip..p.tcp], 0));
        out[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        out[ip + 4..ip + 6].copy_from_slice(&(seg_len as u16).to_be_bytes());
    }
    out.extend_from_slice(&t);
    let len = (out.len() - 16) as u32;
    out[8..12].copy_from_slice(&len.to_le_bytes());
    out[12..16].copy_from_slice(&len.to_le_bytes());
    out
}

impl<W: Write> Write for Filter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut pos = 0;
        if !self.header_done {
            if self.pending.len() < 24 {
                return Ok(buf.len());
            }
            self.w.write_all(&self.pending[..24])?;
            self.header_done = true;
            pos = 24;
        }
        let pending = std::mem::take(&mut self.pending);
        while pending.len() - pos >= 16 {
            let incl = u32::from_le_bytes(pending[pos + 8..pos + 12].try_into().unwrap()) as usize;
            if pending.len() - pos < 16 + incl {
                break;
            }
            self.record(&pending[pos..pos + 16 + incl])?;
            pos += 16 + incl;
        }
        self.pending = pending[pos..].to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}
