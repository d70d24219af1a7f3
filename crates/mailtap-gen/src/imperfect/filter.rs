//! The packet filter between the generator and the capture file: per
//! connection, drops what the imperfections ask for, injects stray packets
//! and records what each connection lost.

use super::*;

/// Runs the generator through the filter.
pub(super) fn imperfect<W: Write>(
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
    imap: Option<crate::ImapTruth>,
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
            imap: t.imap,
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
            imap: self.imap,
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
