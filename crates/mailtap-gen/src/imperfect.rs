//! Imperfect captures: what a sensor really sees. [`generate_imperfect`]
//! runs the ordinary generator and passes its packets through a filter
//! that loses handshake packets, injects stray packets from "earlier
//! connections" before a session's SYN, or cuts the capture's beginning
//! (a sensor started mid-traffic), and reports for every connection what
//! was lost ([`FlowTruth`]).
//!
//! Sessions are chosen per connection by a hash of its 4-tuple and the
//! seed, so the same configuration always damages the same connections.

use crate::{pcap, GenConfig, GenStats, MessageTruth};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;

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
/// order of their first packet in the uncut traffic).
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
    /// The truth of the connection `orig` → `resp`.
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
/// [`ImperfectStats::message_fully_captured`] for what the capture holds).
pub fn generate_imperfect<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
) -> io::Result<ImperfectStats> {
    let mut f = Filter {
        w,
        imp: imp.clone(),
        seed: cfg.seed,
        pending: Vec::new(),
        header_done: false,
        seen: 0,
        flows: HashMap::new(),
        order: Vec::new(),
        stats: ImperfectStats::default(),
    };
    let gen = crate::generate_with_truth(cfg, &mut f, on_message)?;
    f.flush()?;
    let mut stats = std::mem::take(&mut f.stats);
    stats.gen = gen;
    let mut flows = std::mem::take(&mut f.flows);
    stats.flows = f
        .order
        .iter()
        .filter_map(|k| flows.remove(k))
        .map(|s| s.truth)
        .collect();
    Ok(stats)
}

type Key = (IpAddr, u16, IpAddr, u16);

struct FlowState {
    truth: FlowTruth,
    /// A payload byte of each direction has been captured.
    kept_data: [bool; 2],
}

struct Filter<W: Write> {
    w: W,
    imp: Imperfections,
    seed: u64,
    pending: Vec<u8>,
    header_done: bool,
    seen: u64,
    flows: HashMap<Key, FlowState>,
    order: Vec<Key>,
    stats: ImperfectStats,
}

/// The parts of one generated packet the filter needs.
struct Pkt {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: usize,
    /// Offsets in the record: IP header, TCP header, payload.
    ip: usize,
    tcp: usize,
}

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

impl<W: Write> Filter<W> {
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
        if !self.flows.contains_key(&key) {
            self.order.push(key);
            self.flows.insert(
                key,
                FlowState {
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
                    },
                    kept_data: [false; 2],
                },
            );
        }
        let (seed, imp) = (self.seed, &self.imp);
        let no_handshake = chosen(seed, 2, &key, imp.drop_handshake_percent);
        let no_syn = no_handshake || chosen(seed, 1, &key, imp.drop_syn_percent);
        let stray = chosen(seed, 3, &key, imp.stray_before_syn_percent);
        let cut = self.seen <= imp.skip_packets;
        let is_syn = p.flags & (SYN | ACK) == SYN;
        let is_syn_ack = p.flags & (SYN | ACK) == SYN | ACK;
        let drop = cut || (is_syn && no_syn) || (is_syn_ack && no_handshake);
        let st = self.flows.get_mut(&key).expect("flow");
        let d = usize::from(!from_client);
        if from_client {
            st.truth.orig_bytes += p.payload as u64;
        } else {
            st.truth.resp_bytes += p.payload as u64;
        }
        if drop {
            self.stats.packets_dropped += 1;
            if p.payload > 0 && !st.kept_data[d] {
                if from_client {
                    st.truth.orig_bytes_unseen += p.payload as u64;
                } else {
                    st.truth.resp_bytes_unseen += p.payload as u64;
                }
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
        let st = self.flows.get_mut(&key).expect("flow");
        st.truth.syn_captured |= is_syn;
        st.truth.syn_ack_captured |= is_syn_ack;
        st.truth.packets_captured += 1;
        if p.payload > 0 {
            st.kept_data[d] = true;
        }
        self.stats.packets_written += 1;
        self.w.write_all(rec)
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

impl<W: Write> Write for Filter<W> {
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
