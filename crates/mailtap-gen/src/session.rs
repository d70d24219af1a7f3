//! One SMTP session: a script of client/server exchanges turned lazily into
//! TCP packets, one packet per call, so many sessions can interleave.
//!
//! The script (`advance`) appends the bytes of the next exchange to the
//! per-direction send queues (`flights`) and a small packet plan (`plan`);
//! `emit` turns the first plan item into one packet. Bytes are never
//! formatted into the packet directly: commands, replies and headers live in
//! the session's `local` buffer, message bodies are slices of the shared
//! pools.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::pcap::{add16, finish, sum_be};
use crate::pool::{
    pick_lines, Pools, Seg, SRC_B64, SRC_LOCAL, SRC_OPAQUE, SRC_QP, SRC_TEXT, SRC_TEXT_LF,
    SRC_TEXT_STUFFED,
};
use crate::rng::{perm32, Rng};
use crate::text::{
    base64_into, hex_into, rfc5322_date, DOMAINS, FIRST, LAST, MAILERS, SUBJECTS_LATIN1,
    SUBJECTS_UTF8, WORDS,
};
use crate::{BodySizes, GenConfig, MessageTruth, Protocol, TlsStyle};

mod pop3;
mod tls;
use pop3::Pop3;
use tls::Tls;
pub(crate) use tls::{fixture_bytes, tls_fixture_truths};

const C: usize = 0; // client -> server
const S: usize = 1; // server -> client

/// Salt of the random stream the [`crate::Quirks`] decisions use.
const QUIRK_STREAM: u64 = 0x7175_6972_6b73_0001;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Pipelined,
    Bdat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    None,
    Plain,
    Login,
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    TlsHandshake,
    TlsData(u32),
    TlsClose,
    /// Realistic TLS (see `tls.rs`): handshake, encrypted dialogue, close.
    Tls,
    Auth,
    AuthLogin(u8),
    Mail,
    Quit,
    Done,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Syn,
    SynAck,
    Ack,
    Fin,
    Data {
        remaining: u32,
        bulk: bool,
        since_ack: u8,
    },
}

/// One planned packet (or run of data packets) and the delay in
/// microseconds between the previous packet of the session and it.
#[derive(Clone, Copy, Debug)]
struct Item {
    dir: u8,
    kind: Kind,
    delay: u32,
}

struct Msg {
    segs: Vec<Seg>,
    len: u64,
    mailfrom: String,
    rcpts: Vec<String>,
    rejected: Option<usize>,
    step: u32,
    /// BDAT chunk boundaries: 0 = b0 < b1 < ... < bn = len.
    chunks: Vec<u64>,
    zero_last: bool,
    qid: u64,
    /// The server's reply code to the end of data (250, or 5xx).
    status: u16,
    subject: String,
    subject_decoded: String,
    /// Length of the header block including the empty line.
    hdr_end: u64,
    /// Whether `segs[1]` is the first run of plain body text (not MIME).
    plain_body: bool,
    /// Where the server stops the transaction.
    fate: Fate,
}

/// How an SMTP transaction ends (see [`crate::Mix::mail_reject`] and
/// [`crate::Mix::rcpt_reject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The message is transferred (and then accepted or rejected with
    /// `status`).
    Data,
    /// `MAIL FROM` is rejected.
    MailRejected,
    /// Every `RCPT TO` is rejected.
    RcptRejected,
}

/// Everything the script needs from the generator while advancing.
pub(crate) struct Ctx<'a> {
    pub pools: &'a Pools,
    pub cfg: &'a GenConfig,
    pub now_us: u64,
    pub truth_buf: &'a mut Vec<u8>,
    pub on_message: Option<&'a mut dyn FnMut(&MessageTruth)>,
    pub on_tls: Option<&'a mut dyn FnMut(&crate::TlsTruth)>,
    pub messages: &'a mut u64,
    pub dropped: &'a mut u64,
    /// Where each reported message's transfer lies in the streams (for
    /// the imperfect-capture truth); called once the transfer is queued.
    pub on_span: Option<&'a mut dyn FnMut(&Span)>,
}

/// Where one reported message's transfer lies in its connection's two
/// byte streams (offsets from the first payload byte of each direction).
#[derive(Clone, Debug)]
pub(crate) struct Span {
    /// The client's initial sequence number (tells apart sessions that
    /// reuse a 4-tuple).
    pub isn: u32,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    /// `MessageTruth::index_in_session`.
    pub index: u32,
    /// The stream that carries the message (0: client, 1: server).
    pub data_dir: usize,
    /// Client stream offset of the command that starts the transaction
    /// (`MAIL FROM`, `RETR`, `TOP`).
    pub start: u64,
    /// From where a sensor can attribute the data: (direction, offset) of
    /// the `354` reply (DATA), the `MAIL FROM` (BDAT: a chunk alone does
    /// not tell whether chunks went before it), the `+OK` line of the
    /// `RETR`/`TOP` response.
    pub data_mark: (usize, u64),
    /// The message's bytes on the wire in `data_dir`'s stream: the
    /// dot-stuffed data (DATA, POP3; the final `.` line excluded) or each
    /// BDAT chunk's payload.
    pub data: Vec<(u64, u64)>,
    /// (direction, offset) of what ends the transfer: the server's reply to
    /// the end of data (SMTP), the terminating `.` line (POP3).
    pub end: (usize, u64),
}

pub(crate) struct Session {
    /// The launch number.
    id: u64,
    rng: Rng,
    v6: bool,
    ip: [IpAddr; 2],
    ipb: [[u8; 16]; 2],
    port: [u16; 2],
    mac: [[u8; 6]; 2],
    seq: [u32; 2],
    /// Initial sequence numbers.
    isn: [u32; 2],
    ip_id: [u16; 2],
    ttl: [u8; 2],
    win: [u16; 2],
    mss: u32,
    /// Pseudo-header address sum (identical for both directions).
    addr_sum: u64,
    flights: [VecDeque<Seg>; 2],
    plan: VecDeque<Item>,
    local: Vec<u8>,
    stage: Stage,
    mode: Mode,
    auth: Auth,
    starttls: bool,
    n_msgs: u32,
    msgs_done: u32,
    rset_done: bool,
    msg: Option<Msg>,
    rtt: u32,
    helo: String,
    server: String,
    sender: String,
    sender_name: String,
    /// POP3 session state (`None`: SMTP).
    pop3: Option<Box<Pop3>>,
    /// Messages reported to the truth callback so far.
    reported: u32,
    /// One client data segment of this session's message is left out.
    gap: bool,
    drop_pending: bool,
    /// Percent of server replies the client acknowledges at once.
    reply_ack: u8,
    /// Percent of bulk data segments the receiver acknowledges at once.
    ack_each: u8,
    /// The client's message data write sizes (see `Shape::data_write`).
    data_write: Option<(u32, u32)>,
    /// Bytes left in the client's current write.
    write_left: u32,
    /// Realistic TLS state (`None`: plaintext or the opaque TLS style).
    tls: Option<Box<Tls>>,
    /// The payload is TLS records from now on.
    pub tls_on: bool,
    /// Pcap bytes of this session's packets that carry TLS records.
    pub tls_bytes: u64,
    /// Messages transferred inside TLS.
    pub tls_messages: u64,
    /// Estimated total pcap bytes of this session (for `target_bytes`).
    pub est_bytes: u64,
    pub written: u64,
    /// The transfer of the message in progress (when spans are wanted).
    span: Option<Span>,
    /// Leave without QUIT and FIN (`Quirks::reuse_open_percent`).
    abandon: bool,
    /// The session ended without closing its connection.
    pub unclosed: bool,
    /// Length of the long AUTH line (`Quirks::long_auth_percent`); 0: none.
    long_auth: usize,
}

const CLIENT_NETS: [[u8; 2]; 4] = [[10, 11], [10, 12], [172, 16], [192, 168]];
const SERVER_NETS: [[u8; 2]; 3] = [[10, 200], [172, 31], [198, 18]];

fn pick_weighted(rng: &mut Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut r = rng.below(total as u64) as u32;
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    0
}

fn address(rng: &mut Rng) -> String {
    let f = rng.pick(FIRST);
    let l = rng.pick(LAST);
    let d = rng.pick(DOMAINS);
    match rng.below(3) {
        0 => format!("{f}.{l}@{d}"),
        1 => format!("{f}@{d}"),
        _ => format!("{}{l}@{d}", &f[..1]),
    }
}

fn display_name(addr: &str) -> String {
    let local = addr.split('@').next().unwrap_or("");
    let mut out = String::new();
    for (i, part) in local.split('.').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let mut cs = part.chars();
        if let Some(c) = cs.next() {
            out.extend(c.to_uppercase());
            out.push_str(cs.as_str());
        }
    }
    out
}

impl Session {
    pub(crate) fn new(id: u64, cfg: &GenConfig) -> Self {
        let mut rng = Rng::derive(cfg.seed, id.wrapping_add(1));
        // Unique client endpoint per session index: a bijection of the index
        // gives 2 bits of client /16, 16 bits of host, 14 bits of port.
        let p = perm32((id as u32).wrapping_add((cfg.seed ^ (cfg.seed >> 32)) as u32));
        let sub = (p >> 30) as usize;
        let host = p as u16;
        let cport = 49152 + ((p >> 16) & 0x3fff) as u16;
        let v6 = rng.pct(cfg.ipv6_percent as u32);
        let snet = rng.below(3) as usize;
        let shost = [rng.below(4) as u8, rng.range(1, 254) as u8];
        let (cip, sip) = if v6 {
            let c = Ipv6Addr::new(0x2001, 0x0db8, 0x10 + sub as u16, 0, 0, 0, 0, host);
            let s = Ipv6Addr::new(
                0x2001,
                0x0db8,
                0x25,
                snet as u16,
                0,
                0,
                shost[0] as u16,
                shost[1] as u16,
            );
            (IpAddr::V6(c), IpAddr::V6(s))
        } else {
            let n = CLIENT_NETS[sub];
            let c = Ipv4Addr::new(n[0], n[1], (host >> 8) as u8, host as u8);
            let n = SERVER_NETS[snet];
            let s = Ipv4Addr::new(n[0], n[1], shost[0], shost[1]);
            (IpAddr::V4(c), IpAddr::V4(s))
        };
        let to16 = |ip: &IpAddr| match ip {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                b
            }
            IpAddr::V6(a) => a.octets(),
        };
        let ipb = [to16(&cip), to16(&sip)];
        let mut addr_sum = 0u64;
        let alen = if v6 { 16 } else { 4 };
        addr_sum = sum_be(&ipb[0][..alen], addr_sum);
        addr_sum = sum_be(&ipb[1][..alen], addr_sum);

        let is_pop3 = cfg.mix.pop3 > 0 && rng.pct(cfg.mix.pop3 as u32);
        let mode = match pick_weighted(
            &mut rng,
            &[
                cfg.mix.plain as u32,
                cfg.mix.pipelined as u32,
                cfg.mix.bdat as u32,
            ],
        ) {
            0 => Mode::Plain,
            1 => Mode::Pipelined,
            _ => Mode::Bdat,
        };
        let auth = if rng.pct(cfg.mix.auth as u32) {
            if rng.pct(50) {
                Auth::Plain
            } else {
                Auth::Login
            }
        } else {
            Auth::None
        };
        let starttls = rng.pct(cfg.mix.starttls as u32);
        let sport = if auth != Auth::None && rng.pct(70) || rng.pct(10) {
            587
        } else {
            25
        };
        let mut n_msgs = rng.range32(cfg.messages_per_session.0, cfg.messages_per_session.1);
        let (mode, auth, starttls, sport) = if is_pop3 {
            (Mode::Plain, Auth::None, false, 110)
        } else {
            (mode, auth, starttls, sport)
        };
        // (Every draw for a knob the attach mix leaves off is guarded, so
        // the attach mix's output never changes.)
        match (is_pop3, cfg.shape.more_messages, cfg.shape.pop3_messages) {
            (false, Some(p), _) => {
                n_msgs = 1;
                while n_msgs < cfg.messages_per_session.1 && rng.pct(p as u32) {
                    n_msgs += 1;
                }
            }
            (true, _, Some((a, b))) => n_msgs = rng.range32(a, b),
            _ => {}
        }
        let gap = !is_pop3
            && !starttls
            && mode != Mode::Bdat
            && cfg.gap_percent > 0
            && rng.pct(cfg.gap_percent as u32);
        if gap {
            n_msgs = 1;
        } else if !is_pop3 && cfg.mix.probe > 0 && rng.pct(cfg.mix.probe as u32) {
            n_msgs = 0;
        }
        let rtt = if rng.pct(70) {
            rng.range32(100, 3_000)
        } else {
            rng.range32(3_000, 60_000)
        };
        let cdom = *rng.pick(DOMAINS);
        let sdom = *rng.pick(DOMAINS);
        let helo = match rng.below(4) {
            0 => format!("mail{}.{cdom}", rng.below(20)),
            1 => format!("smtp-out-{}.{cdom}", rng.below(100)),
            2 => match cip {
                IpAddr::V4(a) => format!("[{a}]"),
                IpAddr::V6(a) => format!("[IPv6:{a}]"),
            },
            _ => format!("relay.{cdom}"),
        };
        let server = format!("mx{}.{sdom}", rng.below(10));
        let sender = address(&mut rng);
        let sender_name = display_name(&sender);
        let mean_body = match cfg.shape.body_sizes {
            BodySizes::Uniform => (cfg.body_bytes.0 as u64 + cfg.body_bytes.1 as u64) / 2,
            BodySizes::LogNormal {
                median,
                sigma_milli,
            } => crate::rng::lognormal_mean(median, sigma_milli)
                .clamp(cfg.body_bytes.0 as u64, cfg.body_bytes.1 as u64),
        };
        let per_msg = mean_body * 1077 / 1000
            + 1700
            + 260 * (cfg.recipients.0 as u64 + cfg.recipients.1 as u64) / 2;
        let est_bytes = 2300 + n_msgs as u64 * per_msg * if is_pop3 { 5 } else { 4 } / 4;
        let pop3 = if is_pop3 {
            Some(Box::new(Pop3::new(&mut rng, n_msgs, &sender)))
        } else {
            None
        };
        let mac = |ip: &[u8; 16], tag: u8| {
            [
                0x02,
                tag,
                ip[12] ^ ip[0],
                ip[13] ^ ip[1],
                ip[14] ^ ip[2],
                ip[15] ^ ip[3],
            ]
        };
        let seq = [rng.next_u64() as u32, rng.next_u64() as u32];
        let ip_id = [rng.next_u64() as u16, rng.next_u64() as u16];
        let ttl = [if rng.pct(60) { 64 } else { 128 }, 64];
        let win = [if rng.pct(50) { 64240 } else { 65535 }, 65160];
        let tls = match cfg.shape.tls {
            TlsStyle::Realistic { tls13 } if starttls => Some(Box::new(Tls::new(&mut rng, tls13))),
            _ => None,
        };
        // Quirks draw from a stream of their own: the session's own stream
        // (and so ordinary output) stays the same.
        let (abandon, long_auth) = if cfg.quirks == crate::Quirks::default() {
            (false, 0)
        } else {
            let q = &cfg.quirks;
            let mut qr = Rng::derive(cfg.seed ^ QUIRK_STREAM, id);
            let abandon = q.reuse_open_percent > 0 && qr.pct(q.reuse_open_percent as u32);
            let long = !is_pop3
                && auth != Auth::None
                && q.long_auth_percent > 0
                && qr.pct(q.long_auth_percent as u32);
            (abandon && !starttls, if long { q.long_auth_len } else { 0 })
        };
        Session {
            id,
            isn: seq,
            rng,
            v6,
            ip: [cip, sip],
            ipb,
            port: [cport, sport],
            mac: [mac(&ipb[0], 0xc1), mac(&ipb[1], 0x5e)],
            seq,
            ip_id,
            ttl,
            win,
            // An IPv6 header is 20 bytes longer than IPv4's: the same
            // link MTU leaves 20 fewer bytes of segment (1440 for 1500).
            mss: if v6 {
                cfg.mss.saturating_sub(20).max(64)
            } else {
                cfg.mss
            } as u32,
            addr_sum,
            flights: [VecDeque::new(), VecDeque::new()],
            plan: VecDeque::new(),
            local: Vec::new(),
            stage: Stage::Connect,
            mode,
            auth,
            starttls,
            n_msgs,
            msgs_done: 0,
            rset_done: false,
            msg: None,
            rtt,
            helo,
            server,
            sender,
            sender_name,
            pop3,
            reported: 0,
            gap,
            drop_pending: false,
            reply_ack: cfg.shape.reply_ack,
            ack_each: cfg.shape.ack_each,
            data_write: cfg.shape.data_write,
            write_left: 0,
            tls,
            tls_on: false,
            tls_bytes: 0,
            tls_messages: 0,
            est_bytes,
            written: 0,
            span: None,
            abandon,
            unclosed: false,
            long_auth,
        }
    }

    /// Takes over the 4-tuple (addresses, ports, link details) of the
    /// ended session `old`, when both speak the same protocol; returns
    /// whether it did.
    pub(crate) fn reuse_endpoints(&mut self, old: &Session) -> bool {
        if self.pop3.is_some() != old.pop3.is_some() {
            return false;
        }
        self.v6 = old.v6;
        self.ip = old.ip;
        self.ipb = old.ipb;
        self.port = old.port;
        self.mac = old.mac;
        self.mss = old.mss;
        self.addr_sum = old.addr_sum;
        true
    }

    /// The stream offset of the next byte queued for `dir`.
    fn stream_off(&self, dir: usize) -> u64 {
        let sent = self.seq[dir].wrapping_sub(self.isn[dir].wrapping_add(1)) as u64;
        sent + self.flights[dir]
            .iter()
            .map(|s| s.len() as u64)
            .sum::<u64>()
    }

    /// A span for the message reported last, starting at client offset
    /// `start`.
    fn new_span(&self, data_dir: usize, start: u64) -> Span {
        Span {
            isn: self.isn[C],
            orig: (self.ip[0], self.port[0]),
            resp: (self.ip[1], self.port[1]),
            index: self.reported.saturating_sub(1),
            data_dir,
            start,
            data_mark: (data_dir, 0),
            data: Vec::new(),
            end: (S, 0),
        }
    }

    fn emit_span(&mut self, ctx: &mut Ctx) {
        if let (Some(cb), Some(sp)) = (ctx.on_span.as_mut(), self.span.take()) {
            cb(&sp);
        }
    }

    /// Builds the next packet into `buf` (a full pcap record), then returns
    /// the delay in microseconds until the session's following packet, or
    /// `None` when the session is finished.
    pub(crate) fn emit(&mut self, ctx: &mut Ctx, buf: &mut Vec<u8>) -> Option<u32> {
        if self.plan.is_empty() {
            self.advance(ctx);
        }
        let item = *self.plan.front()?;
        let dir = item.dir as usize;
        match item.kind {
            Kind::Syn => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, SYN, 0, true);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::SynAck => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, SYN | ACK, 0, true);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::Ack => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, ACK, 0, false);
                self.plan.pop_front();
            }
            Kind::Fin => {
                self.packet(ctx.pools, buf, ctx.now_us, dir, FIN | ACK, 0, false);
                self.seq[dir] = self.seq[dir].wrapping_add(1);
                self.plan.pop_front();
            }
            Kind::Data {
                remaining,
                bulk,
                since_ack,
            } => {
                let mut n = remaining.min(self.mss);
                let mut write_end = false;
                let chunked = bulk && dir == C && self.data_write.is_some();
                if let (true, Some((a, b))) = (chunked, self.data_write) {
                    if self.write_left == 0 {
                        self.write_left = self.rng.range32(a, b);
                    }
                    n = n.min(self.write_left);
                    self.write_left -= n;
                    write_end = self.write_left == 0;
                }
                let last = n == remaining;
                if last {
                    self.write_left = 0;
                }
                let flags = if last || write_end { ACK | PSH } else { ACK };
                self.packet(ctx.pools, buf, ctx.now_us, dir, flags, n as usize, false);
                if self.tls_on && n > 0 {
                    self.tls_bytes += buf.len() as u64;
                }
                if self.drop_pending && dir == C && bulk && since_ack == 1 && !last {
                    // left out of the capture; the peer still acknowledges it
                    buf.clear();
                    self.drop_pending = false;
                    *ctx.dropped += 1;
                }
                self.seq[dir] = self.seq[dir].wrapping_add(n);
                if last {
                    self.plan.pop_front();
                } else {
                    let since = since_ack + 1;
                    let ack_now = bulk
                        && (since >= 2
                            || (self.ack_each > 0 && self.rng.pct(self.ack_each as u32)));
                    let gap = if ack_now {
                        self.rng.range32(1, 12)
                    } else {
                        self.rng.range32(3, 30)
                    };
                    let front = self.plan.front_mut().expect("data item");
                    front.kind = Kind::Data {
                        remaining: remaining - n,
                        bulk,
                        since_ack: if ack_now { 0 } else { since },
                    };
                    front.delay = gap;
                    if ack_now {
                        let d = self.rng.range32(5, 40);
                        self.plan.push_front(Item {
                            dir: (1 - dir) as u8,
                            kind: Kind::Ack,
                            delay: d,
                        });
                    }
                }
            }
        }
        if self.plan.is_empty() {
            self.advance(ctx);
        }
        self.plan.front().map(|i| i.delay.max(1))
    }

    /// Writes one pcap record (header + Ethernet + IP + TCP + payload taken
    /// from the direction's send queue) into `buf`.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        pools: &Pools,
        buf: &mut Vec<u8>,
        ts_us: u64,
        dir: usize,
        flags: u8,
        len: usize,
        syn_opts: bool,
    ) {
        let l3 = if self.v6 { 40 } else { 20 };
        let l4 = if syn_opts { 24 } else { 20 };
        let frame = 14 + l3 + l4 + len;
        buf.clear();
        buf.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        buf.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        buf.extend_from_slice(&(frame as u32).to_le_bytes());
        buf.extend_from_slice(&(frame as u32).to_le_bytes());
        // Ethernet
        buf.extend_from_slice(&self.mac[1 - dir]);
        buf.extend_from_slice(&self.mac[dir]);
        let (src, dst) = (&self.ipb[dir], &self.ipb[1 - dir]);
        let tcp_len = l4 + len;
        if self.v6 {
            buf.extend_from_slice(&[0x86, 0xdd]);
            buf.extend_from_slice(&[0x60, 0, 0, 0]);
            buf.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            buf.extend_from_slice(&[6, self.ttl[dir]]);
            buf.extend_from_slice(src);
            buf.extend_from_slice(dst);
        } else {
            buf.extend_from_slice(&[0x08, 0x00]);
            let ip_start = buf.len();
            buf.extend_from_slice(&[0x45, 0]);
            buf.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            buf.extend_from_slice(&self.ip_id[dir].to_be_bytes());
            self.ip_id[dir] = self.ip_id[dir].wrapping_add(1);
            buf.extend_from_slice(&[0x40, 0x00, self.ttl[dir], 6, 0, 0]);
            buf.extend_from_slice(&src[..4]);
            buf.extend_from_slice(&dst[..4]);
            let cs = finish(sum_be(&buf[ip_start..ip_start + 20], 0));
            buf[ip_start + 10..ip_start + 12].copy_from_slice(&cs.to_be_bytes());
        }
        let tcp_start = buf.len();
        buf.extend_from_slice(&self.port[dir].to_be_bytes());
        buf.extend_from_slice(&self.port[1 - dir].to_be_bytes());
        buf.extend_from_slice(&self.seq[dir].to_be_bytes());
        let ack = if flags & ACK != 0 {
            self.seq[1 - dir]
        } else {
            0
        };
        buf.extend_from_slice(&ack.to_be_bytes());
        buf.push(((l4 / 4) as u8) << 4);
        buf.push(flags);
        buf.extend_from_slice(&self.win[dir].to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        if syn_opts {
            buf.extend_from_slice(&[2, 4]);
            buf.extend_from_slice(&(self.mss as u16).to_be_bytes());
        }
        // payload
        let mut need = len;
        let flight = &mut self.flights[dir];
        while need > 0 {
            let seg = flight
                .front_mut()
                .expect("send queue shorter than planned data");
            let bytes = if seg.src == SRC_LOCAL {
                &self.local[..]
            } else {
                pools.bytes(seg.src)
            };
            let take = need.min(seg.len() as usize);
            let st = seg.start as usize;
            buf.extend_from_slice(&bytes[st..st + take]);
            seg.start += take as u32;
            if seg.start == seg.end {
                flight.pop_front();
            }
            need -= take;
        }
        let mut acc = add16(self.addr_sum, 6);
        acc = add16(acc, tcp_len as u64);
        acc = sum_be(&buf[tcp_start..], acc);
        let cs = finish(acc);
        buf[tcp_start + 16..tcp_start + 18].copy_from_slice(&cs.to_be_bytes());
    }

    // ---------------------------------------------------------------- script

    fn think(&mut self) -> u32 {
        if self.rng.pct(90) {
            self.rng.range32(40, 1_500)
        } else {
            self.rng.range32(1_500, 40_000)
        }
    }

    fn reply_delay(&mut self, slow: bool) -> u32 {
        let proc = if slow {
            self.rng.range32(2_000, 60_000)
        } else {
            self.rng.range32(30, 900)
        };
        self.rtt + proc
    }

    fn mark(&self) -> usize {
        self.local.len()
    }

    /// Queues local[a..] for `dir` as a data run.
    fn send_local(&mut self, dir: usize, a: usize, delay: u32) {
        let seg = Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        };
        let len = seg.len();
        if len == 0 {
            return;
        }
        self.flights[dir].push_back(seg);
        self.plan.push_back(Item {
            dir: dir as u8,
            kind: Kind::Data {
                remaining: len,
                bulk: false,
                since_ack: 0,
            },
            delay,
        });
    }

    fn push_data(&mut self, dir: usize, len: u64, delay: u32, bulk: bool) {
        // Runs longer than u32 are split (never happens with sane configs).
        let mut left = len;
        let mut d = delay;
        while left > 0 {
            let n = left.min(u32::MAX as u64 / 2) as u32;
            self.plan.push_back(Item {
                dir: dir as u8,
                kind: Kind::Data {
                    remaining: n,
                    bulk,
                    since_ack: 0,
                },
                delay: d,
            });
            left -= n as u64;
            d = 5;
        }
    }

    fn maybe_client_ack(&mut self) {
        if self.rng.pct(self.reply_ack as u32) {
            let d = self.rng.range32(20, 400);
            self.plan.push_back(Item {
                dir: C as u8,
                kind: Kind::Ack,
                delay: d,
            });
        }
    }

    /// One command/reply exchange: client local[c..r], server local[r..].
    fn exchange(&mut self, c: usize, r: usize, slow: bool) {
        let end = self.local.len();
        let think = self.think();
        // client part
        let seg = Seg {
            src: SRC_LOCAL,
            start: c as u32,
            end: r as u32,
        };
        self.flights[C].push_back(seg);
        self.plan.push_back(Item {
            dir: C as u8,
            kind: Kind::Data {
                remaining: seg.len(),
                bulk: false,
                since_ack: 0,
            },
            delay: think,
        });
        let d = self.reply_delay(slow);
        let seg = Seg {
            src: SRC_LOCAL,
            start: r as u32,
            end: end as u32,
        };
        self.flights[S].push_back(seg);
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Data {
                remaining: seg.len(),
                bulk: false,
                since_ack: 0,
            },
            delay: d,
        });
        self.maybe_client_ack();
    }

    fn teardown_server_first(&mut self) {
        let d1 = self.rng.range32(10, 200);
        let d2 = self.rtt + self.rng.range32(10, 300);
        let d3 = self.rtt;
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Fin,
            delay: d1,
        });
        self.plan.push_back(Item {
            dir: C as u8,
            kind: Kind::Fin,
            delay: d2,
        });
        self.plan.push_back(Item {
            dir: S as u8,
            kind: Kind::Ack,
            delay: d3,
        });
    }

    fn advance(&mut self, ctx: &mut Ctx) {
        debug_assert!(
            self.plan.is_empty() && self.flights[0].is_empty() && self.flights[1].is_empty()
        );
        if self.msg.is_none() {
            self.local.clear();
        }
        if self.pop3.is_some() && matches!(self.stage, Stage::Greeting) {
            return self.pop3_step(ctx);
        }
        if matches!(self.stage, Stage::Tls) {
            return self.tls_step(ctx);
        }
        match self.stage {
            Stage::Connect => {
                let d = self.rng.range32(20, 150);
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Syn,
                    delay: 0,
                });
                self.plan.push_back(Item {
                    dir: S as u8,
                    kind: Kind::SynAck,
                    delay: d,
                });
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Ack,
                    delay: self.rtt,
                });
                self.stage = Stage::Greeting;
            }
            Stage::Greeting => {
                let a = self.mark();
                let r = self.rng.below(3);
                let _ = match r {
                    0 => write!(
                        self.local,
                        "220 {} ESMTP Postfix (Debian/GNU)\r\n",
                        self.server
                    ),
                    1 => {
                        let _ = write!(self.local, "220-{} ESMTP Exim 4.96 ", self.server);
                        rfc5322_date(&mut self.local, ctx.now_us);
                        write!(
                            self.local,
                            "\r\n220-We do not authorize the use of this system to transport unsolicited,\r\n220 and/or bulk e-mail.\r\n"
                        )
                    }
                    _ => write!(
                        self.local,
                        "220 {} Microsoft ESMTP MAIL Service ready\r\n",
                        self.server
                    ),
                };
                let d = self.rng.range32(300, 5_000);
                self.send_local(S, a, d);
                self.maybe_client_ack();
                self.stage = Stage::Ehlo;
            }
            Stage::Ehlo => {
                let c = self.mark();
                let _ = write!(self.local, "EHLO {}\r\n", self.helo);
                let r = self.mark();
                let _ = write!(
                    self.local,
                    "250-{} Hello {}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
                    self.server, self.helo
                );
                self.exchange(c, r, false);
                self.stage = if self.starttls {
                    Stage::StartTls
                } else if self.auth != Auth::None {
                    Stage::Auth
                } else {
                    Stage::Mail
                };
            }
            Stage::StartTls => {
                let c = self.mark();
                self.local.extend_from_slice(b"STARTTLS\r\n");
                let r = self.mark();
                self.local
                    .extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                self.exchange(c, r, false);
                self.stage = if self.tls.is_some() {
                    Stage::Tls
                } else {
                    Stage::TlsHandshake
                };
            }
            Stage::TlsHandshake => {
                self.tls_on = true;
                let n = self.rng.range(500, 600) as usize;
                let len = self.tls_record(ctx.pools, C, 0x16, 0x01, n);
                let t = self.think().min(500);
                self.push_data(C, len, t, false);
                let n = self.rng.range(2_500, 4_800) as usize;
                let mut len = self.tls_record(ctx.pools, S, 0x16, 0x03, n);
                len += self.tls_record(ctx.pools, S, 0x14, 0x03, 1);
                len += self.tls_record(ctx.pools, S, 0x16, 0x03, 40);
                let d = self.reply_delay(false);
                self.push_data(S, len, d, true);
                let mut len = self.tls_record(ctx.pools, C, 0x14, 0x03, 1);
                len += self.tls_record(ctx.pools, C, 0x16, 0x03, 40);
                let t = self.think();
                self.push_data(C, len, t, false);
                self.stage = Stage::TlsData(self.n_msgs * 2 + 2);
            }
            Stage::TlsData(n) => {
                if n == 0 {
                    self.stage = Stage::TlsClose;
                    return self.advance(ctx);
                }
                let want = if n % 2 == 1 {
                    self.rng
                        .range(ctx.cfg.body_bytes.0 as u64, ctx.cfg.body_bytes.1 as u64)
                        as usize
                } else {
                    self.rng.range(20, 120) as usize
                };
                let mut len = 0;
                let mut left = want.max(1);
                while left > 0 {
                    let r = left.min(16_384);
                    len += self.tls_record(ctx.pools, C, 0x17, 0x03, r + 24);
                    left -= r;
                }
                let t = self.think();
                self.push_data(C, len, t, len > 3000);
                let sz = self.rng.range(30, 90) as usize;
                let len = self.tls_record(ctx.pools, S, 0x17, 0x03, sz);
                let d = self.reply_delay(n % 2 == 1);
                self.push_data(S, len, d, false);
                self.maybe_client_ack();
                self.stage = Stage::TlsData(n - 1);
            }
            Stage::TlsClose => {
                let len = self.tls_record(ctx.pools, C, 0x15, 0x03, 26);
                let t = self.think();
                self.push_data(C, len, t, false);
                let d1 = self.rng.range32(5, 100);
                let d2 = self.rtt + self.rng.range32(10, 300);
                let d3 = self.rtt;
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Fin,
                    delay: d1,
                });
                self.plan.push_back(Item {
                    dir: S as u8,
                    kind: Kind::Fin,
                    delay: d2,
                });
                self.plan.push_back(Item {
                    dir: C as u8,
                    kind: Kind::Ack,
                    delay: d3,
                });
                self.stage = Stage::Done;
            }
            Stage::Auth => {
                let user = self.sender.clone();
                let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                let c = self.mark();
                if self.auth == Auth::Plain && self.long_auth > 0 {
                    // the credentials as a continuation line of their own
                    self.local.extend_from_slice(b"AUTH PLAIN\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 \r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(3);
                } else if self.auth == Auth::Plain {
                    self.local.extend_from_slice(b"AUTH PLAIN ");
                    let cred = format!("\0{user}\0{pass}");
                    base64_into(&mut self.local, cred.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                } else {
                    self.local.extend_from_slice(b"AUTH LOGIN\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(1);
                }
            }
            Stage::AuthLogin(k) => {
                let c = self.mark();
                if k == 1 {
                    let user = self.sender.clone();
                    base64_into(&mut self.local, user.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::AuthLogin(2);
                } else if self.long_auth > 0 {
                    // AUTH LOGIN's password (k == 2) or AUTH PLAIN's
                    // credentials (k == 3), base64, one long line
                    let prefix = if k == 3 {
                        format!("\0{}\0", self.sender)
                    } else {
                        String::new()
                    };
                    if k == 2 {
                        // the draw of the short password: the rest of the
                        // session stays as without the quirk
                        let _ = self.rng.next_u64();
                    }
                    let raw = self.long_auth.div_ceil(4) * 3;
                    let mut q = Rng::derive(ctx.cfg.seed ^ QUIRK_STREAM.rotate_left(17), self.id);
                    let mut cred = prefix.into_bytes();
                    let want = raw.max(cred.len() + 8);
                    while cred.len() < want {
                        cred.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[q.below(36) as usize]);
                    }
                    base64_into(&mut self.local, &cred);
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                } else {
                    let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                    base64_into(&mut self.local, pass.as_bytes());
                    self.local.extend_from_slice(b"\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"235 2.7.0 Authentication successful\r\n");
                    self.exchange(c, r, false);
                    self.stage = Stage::Mail;
                }
            }
            Stage::Mail => self.mail_step(ctx),
            Stage::Quit if self.abandon => {
                // the client goes away: no QUIT, no FIN
                self.unclosed = true;
                self.stage = Stage::Done;
            }
            Stage::Quit => {
                let c = self.mark();
                self.local.extend_from_slice(b"QUIT\r\n");
                let r = self.mark();
                self.local.extend_from_slice(b"221 2.0.0 Bye\r\n");
                self.exchange(c, r, false);
                self.teardown_server_first();
                self.stage = Stage::Done;
            }
            Stage::Tls => unreachable!("handled above"),
            Stage::Done => {}
        }
    }

    /// Queues a TLS-looking record (5-byte header from `local`, opaque
    /// payload from the pool) for `dir`; returns its total length.
    fn tls_record(&mut self, pools: &Pools, dir: usize, ctype: u8, minor: u8, len: usize) -> u64 {
        let a = self.mark();
        self.local
            .extend_from_slice(&[ctype, 3, minor, (len >> 8) as u8, len as u8]);
        self.flights[dir].push_back(Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        });
        self.push_opaque(pools, dir, len);
        5 + len as u64
    }

    /// Queues `len` opaque (random-looking) bytes for `dir`.
    fn push_opaque(&mut self, pools: &Pools, dir: usize, len: usize) {
        let pool = pools.opaque.len();
        let mut left = len;
        while left > 0 {
            let st = self.rng.below(pool as u64) as usize;
            let n = left.min(pool - st);
            self.flights[dir].push_back(Seg {
                src: SRC_OPAQUE,
                start: st as u32,
                end: (st + n) as u32,
            });
            left -= n;
        }
    }

    fn mail_step(&mut self, ctx: &mut Ctx) {
        if self.msg.is_none() {
            if self.msgs_done >= self.n_msgs {
                self.stage = Stage::Quit;
                return self.advance(ctx);
            }
            if self.msgs_done > 0 && !self.rset_done && self.rng.pct(12) {
                self.rset_done = true;
                let c = self.mark();
                self.local.extend_from_slice(b"RSET\r\n");
                let r = self.mark();
                self.local.extend_from_slice(b"250 2.0.0 Ok\r\n");
                self.exchange(c, r, false);
                return;
            }
            let mut m = self.build_message(ctx);
            m.fate = self.draw_fate(ctx.cfg);
            if m.fate == Fate::Data {
                let len = ctx.truth_buf.len();
                self.report(ctx, &m, len, false);
            }
            self.msg = Some(m);
        }
        let mut m = self.msg.take().expect("message");
        let k = m.rcpts.len() as u32;
        let spans = ctx.on_span.is_some() && m.fate == Fate::Data;
        if spans && m.step == 0 {
            self.span = Some(self.new_span(C, self.stream_off(C)));
        }
        let done = match self.mode {
            Mode::Plain => {
                let c = self.mark();
                if m.step == 0 {
                    self.mail_cmd(&m);
                    let r = self.mark();
                    self.mail_reply(&m);
                    self.exchange(c, r, false);
                } else if m.step <= k {
                    let i = (m.step - 1) as usize;
                    self.rcpt_cmd(&m, i);
                    let r = self.mark();
                    self.rcpt_reply(&m, i);
                    self.exchange(c, r, false);
                } else if m.step == k + 1 {
                    if spans {
                        let off = self.stream_off(S);
                        self.span.as_mut().expect("span").data_mark = (S, off);
                    }
                    self.local.extend_from_slice(b"DATA\r\n");
                    let r = self.mark();
                    self.local
                        .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                    self.exchange(c, r, false);
                } else {
                    self.body_span(spans, &m);
                    self.send_body(&m);
                }
                m.step += 1;
                // a rejected sender or no accepted recipient: no DATA
                m.step > k + 2
                    || (m.fate == Fate::MailRejected && m.step == 1)
                    || (m.fate == Fate::RcptRejected && m.step == k + 1)
            }
            Mode::Pipelined => {
                if m.step == 0 {
                    let c = self.mark();
                    self.mail_cmd(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_cmd(&m, i);
                    }
                    self.local.extend_from_slice(b"DATA\r\n");
                    let r = self.mark();
                    self.mail_reply(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_reply(&m, i);
                    }
                    if spans {
                        let off = self.stream_off(S) + (self.mark() - r) as u64;
                        self.span.as_mut().expect("span").data_mark = (S, off);
                    }
                    self.local.extend_from_slice(match m.fate {
                        Fate::Data => b"354 End data with <CR><LF>.<CR><LF>\r\n",
                        Fate::MailRejected => b"503 5.5.1 Error: need RCPT command\r\n",
                        Fate::RcptRejected => b"554 5.5.1 Error: no valid recipients\r\n",
                    });
                    self.exchange(c, r, false);
                } else {
                    self.body_span(spans, &m);
                    self.send_body(&m);
                }
                m.step += 1;
                m.step > 1 || m.fate != Fate::Data
            }
            Mode::Bdat => {
                let n_chunks = m.chunks.len() as u32 - 1;
                if m.step == 0 {
                    let c = self.mark();
                    self.mail_cmd(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_cmd(&m, i);
                    }
                    let r = self.mark();
                    self.mail_reply(&m);
                    for i in 0..m.rcpts.len() {
                        self.rcpt_reply(&m, i);
                    }
                    self.exchange(c, r, false);
                    if m.fate != Fate::Data {
                        // nothing accepted: no BDAT
                        m.step = n_chunks + m.zero_last as u32;
                    }
                } else if m.step <= n_chunks {
                    let j = m.step as usize;
                    let (from, to) = (m.chunks[j - 1], m.chunks[j]);
                    let last = m.step == n_chunks && !m.zero_last;
                    let a = self.mark();
                    let cmd_off = self.stream_off(C);
                    let _ = write!(
                        self.local,
                        "BDAT {}{}\r\n",
                        to - from,
                        if last { " LAST" } else { "" }
                    );
                    if spans {
                        let d0 = cmd_off + (self.local.len() - a) as u64;
                        let end = self.stream_off(S);
                        let sp = self.span.as_mut().expect("span");
                        if j == 1 {
                            // A BDAT chunk seen mid-stream may be any
                            // chunk: only the MAIL FROM before it tells
                            // that it is the first.
                            sp.data_mark = (C, sp.start.min(cmd_off));
                        }
                        sp.data.push((d0, d0 + (to - from)));
                        sp.end = (S, end);
                    }
                    self.flights[C].push_back(Seg {
                        src: SRC_LOCAL,
                        start: a as u32,
                        end: self.local.len() as u32,
                    });
                    let mut len = (self.local.len() - a) as u64;
                    len += push_slice(&mut self.flights[C], &m.segs, from, to);
                    let t = self.think();
                    self.push_data(C, len, t, true);
                    let r = self.mark();
                    if last {
                        self.queued_reply(&m);
                    } else {
                        let _ = write!(
                            self.local,
                            "250 2.0.0 Ok: {} octets received\r\n",
                            to - from
                        );
                    }
                    let d = self.reply_delay(last);
                    self.send_local(S, r, d);
                    self.maybe_client_ack();
                } else {
                    if spans {
                        let end = self.stream_off(S);
                        self.span.as_mut().expect("span").end = (S, end);
                    }
                    let c = self.mark();
                    self.local.extend_from_slice(b"BDAT 0 LAST\r\n");
                    let r = self.mark();
                    self.queued_reply(&m);
                    self.exchange(c, r, true);
                }
                m.step += 1;
                m.step > n_chunks + m.zero_last as u32
            }
        };
        if done {
            self.msgs_done += 1;
            self.rset_done = false;
            self.emit_span(ctx);
        } else {
            self.msg = Some(m);
        }
    }

    fn mail_cmd(&mut self, m: &Msg) {
        // BODY=8BITMIME for BDAT too: the server does not offer BINARYMIME.
        let _ = write!(
            self.local,
            "MAIL FROM:<{}> SIZE={} BODY=8BITMIME\r\n",
            m.mailfrom, m.len
        );
    }

    fn rcpt_cmd(&mut self, m: &Msg, i: usize) {
        let _ = write!(self.local, "RCPT TO:<{}>\r\n", m.rcpts[i]);
    }

    /// Where the transaction of the next message ends (always at the end
    /// of data in a gap session, whose one message must be transferred).
    fn draw_fate(&mut self, cfg: &GenConfig) -> Fate {
        let mix = &cfg.mix;
        if self.gap {
            Fate::Data
        } else if mix.mail_reject > 0 && self.rng.pct(mix.mail_reject as u32) {
            Fate::MailRejected
        } else if mix.rcpt_reject > 0 && self.rng.pct(mix.rcpt_reject as u32) {
            Fate::RcptRejected
        } else {
            Fate::Data
        }
    }

    fn mail_reply(&mut self, m: &Msg) {
        if m.fate != Fate::MailRejected {
            self.local.extend_from_slice(b"250 2.1.0 Ok\r\n");
            return;
        }
        let _ = match m.qid % 4 {
            0 => write!(
                self.local,
                "553 5.7.1 <{}>: Sender address rejected: not owned by user\r\n",
                m.mailfrom
            ),
            1 => write!(
                self.local,
                "550 5.7.1 <{}>: Sender address rejected: Access denied\r\n",
                m.mailfrom
            ),
            2 => write!(self.local, "501 5.1.7 Bad sender address syntax\r\n"),
            _ => write!(
                self.local,
                "450 4.1.8 <{}>: Sender address rejected: Domain not found\r\n",
                m.mailfrom
            ),
        };
    }

    fn rcpt_reply(&mut self, m: &Msg, i: usize) {
        match m.fate {
            Fate::Data => {}
            Fate::MailRejected => {
                self.local
                    .extend_from_slice(b"503 5.5.1 Error: need MAIL command\r\n");
                return;
            }
            Fate::RcptRejected => {
                let r = &m.rcpts[i];
                let _ = match (m.qid >> 8) % 3 {
                    0 => write!(
                        self.local,
                        "550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table\r\n"
                    ),
                    1 => write!(
                        self.local,
                        "450 4.2.0 <{r}>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/help/{}.html\r\n",
                        r.rsplit('@').next().unwrap_or("")
                    ),
                    _ => write!(self.local, "554 5.7.1 <{r}>: Relay access denied\r\n"),
                };
                return;
            }
        }
        if m.rejected == Some(i) {
            let _ = write!(
                self.local,
                "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table\r\n",
                m.rcpts[i]
            );
        } else {
            self.local.extend_from_slice(b"250 2.1.5 Ok\r\n");
        }
    }

    fn queued_reply(&mut self, m: &Msg) {
        match m.status {
            250 => {}
            552 => {
                self.local
                    .extend_from_slice(b"552 5.3.4 Message size exceeds fixed limit\r\n");
                return;
            }
            _ => {
                let _ = write!(
                    self.local,
                    "{} 5.7.1 Message rejected: content policy violation\r\n",
                    m.status
                );
                return;
            }
        }
        self.local.extend_from_slice(b"250 2.0.0 Ok: queued as ");
        hex_into(&mut self.local, m.qid, 10, true);
        self.local.extend_from_slice(b"\r\n");
    }

    /// Records where the DATA transfer `send_body` queues next will lie.
    fn body_span(&mut self, spans: bool, m: &Msg) {
        if !spans {
            return;
        }
        let d0 = self.stream_off(C);
        let len = m.segs.iter().map(|s| s.len() as u64).sum::<u64>();
        let end = self.stream_off(S);
        let sp = self.span.as_mut().expect("span");
        sp.data.push((d0, d0 + len));
        sp.end = (S, end);
    }

    /// DATA transfer: the dot-stuffed message, `.` CRLF, then the reply.
    fn send_body(&mut self, m: &Msg) {
        self.drop_pending = self.gap;
        for s in &m.segs {
            self.flights[C].push_back(*s);
        }
        let a = self.mark();
        self.local.extend_from_slice(b".\r\n");
        self.flights[C].push_back(Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: self.local.len() as u32,
        });
        let len = m.segs.iter().map(|s| s.len() as u64).sum::<u64>() + 3;
        let t = self.think();
        self.push_data(C, len, t, true);
        let r = self.mark();
        self.queued_reply(m);
        let d = self.reply_delay(true);
        self.send_local(S, r, d);
        self.maybe_client_ack();
    }

    /// Reports message `m` to the truth callback: the first `len` bytes of
    /// `ctx.truth_buf` (all of it, or a `TOP` prefix).
    fn report(&mut self, ctx: &mut Ctx, m: &Msg, len: usize, partial: bool) {
        *ctx.messages += 1;
        let index = self.reported;
        self.reported += 1;
        if let Some(cb) = ctx.on_message.as_mut() {
            let pop3 = self.pop3.as_deref();
            let rejected = match m.rejected {
                Some(i) if pop3.is_none() => std::slice::from_ref(&m.rcpts[i]),
                _ => &[],
            };
            let t = MessageTruth {
                protocol: if pop3.is_some() {
                    Protocol::Pop3
                } else {
                    Protocol::Smtp
                },
                orig: (self.ip[0], self.port[0]),
                resp: (self.ip[1], self.port[1]),
                index_in_session: index,
                mailfrom: &m.mailfrom,
                rcptto: &m.rcpts,
                rcptto_rejected: rejected,
                subject: &m.subject,
                subject_decoded: &m.subject_decoded,
                bytes: &ctx.truth_buf[..len],
                via_bdat: self.mode == Mode::Bdat,
                status_code: if pop3.is_some() { None } else { Some(m.status) },
                user: pop3.map(|p| p.user.as_str()),
                partial,
                complete: !self.gap,
            };
            cb(&t);
        }
    }

    /// Builds the next message (headers into `local`, body as pool slices)
    /// and returns its transfer state; its bytes are in `ctx.truth_buf`
    /// when a truth callback is set.
    fn build_message(&mut self, ctx: &mut Ctx) -> Msg {
        let cfg = ctx.cfg;
        let pools = ctx.pools;
        let want_truth = ctx.on_message.is_some();
        let stuffed = self.mode != Mode::Bdat;
        let truth = &mut *ctx.truth_buf;
        truth.clear();
        let rng = &mut self.rng;

        let mailfrom = if rng.pct(75) {
            self.sender.clone()
        } else {
            address(rng)
        };
        let k = rng.range32(cfg.recipients.0, cfg.recipients.1).max(1) as usize;
        let mut rcpts: Vec<String> = Vec::with_capacity(k);
        while rcpts.len() < k {
            let a = address(rng);
            if !rcpts.contains(&a) || rcpts.len() >= FIRST.len() * LAST.len() {
                rcpts.push(a);
            }
        }
        let rejected = if k >= 2 && rng.pct(15) {
            Some(rng.below(k as u64) as usize)
        } else {
            None
        };
        let mut body_len = body_size(rng, cfg);
        if self.gap {
            // room for a dropped segment well inside the message
            body_len = body_len.max(6 * cfg.mss);
        }
        let attach = rng.pct(cfg.mix.mime_attachment as u32) || body_len >= cfg.shape.attach_above;
        let qid = rng.next_u64() & 0xff_ffff_ffff;
        let smtp = self.pop3.is_none();
        let status = if smtp && cfg.mix.reject > 0 && rng.pct(cfg.mix.reject as u32) {
            *rng.pick(&[554u16, 550, 552])
        } else {
            250
        };
        let lf_only = smtp && stuffed && cfg.mix.lf_only > 0 && rng.pct(cfg.mix.lf_only as u32);
        let now = ctx.now_us;

        let l = &mut self.local;
        let mut segs: Vec<Seg> = Vec::with_capacity(8);
        let mut mark = l.len();
        let mark0 = mark;

        // Received: 1-3 hops, newest first.
        let hops = rng.range(1, 3);
        for h in 0..hops {
            let ts = now.saturating_sub((h + 1) * rng.range(200_000, 3_000_000));
            if h == 0 {
                let _ = write!(
                    l,
                    "Received: from ws{}.{} (ws{}.{} [10.{}.{}.{}])\r\n\tby {} (Postfix) with ESMTPSA id ",
                    h,
                    rng.pick(DOMAINS),
                    h,
                    rng.pick(DOMAINS),
                    rng.below(256),
                    rng.below(256),
                    rng.range(1, 254),
                    self.helo
                );
                hex_into(l, rng.next_u64(), 10, true);
                l.extend_from_slice(b";\r\n\t");
            } else {
                let _ = write!(
                    l,
                    "Received: from [192.168.{}.{}] (unknown [192.168.{}.{}])\r\n\tby relay{}.{} with ESMTP id ",
                    h,
                    h + 10,
                    h,
                    h + 10,
                    h,
                    rng.pick(DOMAINS)
                );
                hex_into(l, rng.next_u64(), 12, false);
                let _ = write!(l, "\r\n\tfor <{}>; ", rcpts[0]);
            }
            rfc5322_date(l, ts);
            l.extend_from_slice(b"\r\n");
        }
        l.extend_from_slice(b"Date: ");
        rfc5322_date(l, now.saturating_sub(hops * 4_000_000));
        l.extend_from_slice(b"\r\n");
        if mailfrom == self.sender && rng.pct(70) {
            let _ = write!(l, "From: \"{}\" <{}>\r\n", self.sender_name, mailfrom);
        } else {
            let _ = write!(l, "From: {mailfrom}\r\n");
        }
        l.extend_from_slice(b"To: ");
        let mut first = true;
        for (i, r) in rcpts.iter().enumerate() {
            if rejected == Some(i) {
                continue;
            }
            if !first {
                l.extend_from_slice(if i % 3 == 0 { b",\r\n\t" } else { b", " });
            }
            first = false;
            if rng.pct(40) {
                let _ = write!(l, "{} <{r}>", display_name(r));
            } else {
                l.extend_from_slice(r.as_bytes());
            }
        }
        l.extend_from_slice(b"\r\n");
        if rng.pct(30) {
            let _ = write!(l, "Cc: {}", address(rng));
            if rng.pct(40) {
                let _ = write!(l, ", \"{}\" <{}>", display_name(&mailfrom), address(rng));
            }
            l.extend_from_slice(b"\r\n");
        }
        // Subject: plain, folded, or RFC 2047 encoded words (UTF-8 B and Q,
        // ISO-8859-1 Q, two adjacent encoded words on folded lines).
        let mut subject = String::new();
        let prefix = match rng.below(10) {
            0 => "Re: ",
            1 => "Fwd: ",
            _ => "",
        };
        subject.push_str(prefix);
        let mut decoded = String::from(prefix);
        let kind = rng.below(100);
        let words = |n: u64, rng: &mut Rng| {
            let mut s = String::new();
            for i in 0..n {
                if i > 0 {
                    s.push(' ');
                }
                let w: &str = rng.pick::<&str>(WORDS);
                s.push_str(w);
            }
            s
        };
        l.extend_from_slice(b"Subject: ");
        if kind < 10 {
            let raw = *rng.pick(SUBJECTS_UTF8);
            let mut enc = b"=?UTF-8?B?".to_vec();
            base64_into(&mut enc, raw.as_bytes());
            enc.extend_from_slice(b"?=");
            subject.push_str(std::str::from_utf8(&enc).expect("ascii"));
            decoded.push_str(raw);
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 15 {
            let n = rng.below(100);
            subject.push_str(&format!("=?UTF-8?Q?Caf=C3=A9_r=C3=A9union_{n}?="));
            decoded.push_str(&format!("Café réunion {n}"));
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 19 {
            let (enc, dec) = *rng.pick(SUBJECTS_LATIN1);
            subject.push_str(enc);
            decoded.push_str(dec);
            l.extend_from_slice(subject.as_bytes());
        } else if kind < 23 {
            // two encoded words, the second on a continuation line: the
            // folding whitespace between them is not part of the text
            let raw = *rng.pick(SUBJECTS_UTF8);
            let cut = raw
                .char_indices()
                .map(|(i, _)| i)
                .find(|&i| i >= raw.len() / 2)
                .unwrap_or(0);
            let (a, b) = raw.split_at(cut);
            let mut e1 = b"=?UTF-8?B?".to_vec();
            base64_into(&mut e1, a.as_bytes());
            e1.extend_from_slice(b"?=");
            let mut e2 = b"=?UTF-8?B?".to_vec();
            base64_into(&mut e2, b.as_bytes());
            e2.extend_from_slice(b"?=");
            l.extend_from_slice(subject.as_bytes());
            l.extend_from_slice(&e1);
            l.extend_from_slice(b"\r\n ");
            l.extend_from_slice(&e2);
            subject.push_str(std::str::from_utf8(&e1).expect("ascii"));
            subject.push(' ');
            subject.push_str(std::str::from_utf8(&e2).expect("ascii"));
            decoded.push_str(raw);
        } else if kind < 35 {
            let a = words(rng.range(4, 8), rng);
            let b = words(rng.range(3, 8), rng);
            subject.push_str(&a);
            l.extend_from_slice(subject.as_bytes());
            l.extend_from_slice(b"\r\n ");
            l.extend_from_slice(b.as_bytes());
            subject.push(' ');
            subject.push_str(&b);
            decoded.push_str(&a);
            decoded.push(' ');
            decoded.push_str(&b);
        } else {
            let a = words(rng.range(1, 7), rng);
            subject.push_str(&a);
            decoded.push_str(&a);
            l.extend_from_slice(subject.as_bytes());
        }
        l.extend_from_slice(b"\r\nMessage-ID: <");
        hex_into(l, rng.next_u64(), 16, false);
        l.push(b'.');
        hex_into(l, rng.next_u64(), 8, false);
        let _ = write!(
            l,
            "@{}>\r\n",
            mailfrom.rsplit('@').next().unwrap_or("example.com")
        );
        let (h, v) = *rng.pick(MAILERS);
        let _ = write!(l, "{h}: {v}\r\nMIME-Version: 1.0\r\n");

        // flush local bytes written since `mark` as one segment
        macro_rules! flush {
            () => {
                if l.len() > mark {
                    segs.push(Seg {
                        src: SRC_LOCAL,
                        start: mark as u32,
                        end: l.len() as u32,
                    });
                    if want_truth {
                        truth.extend_from_slice(&l[mark..]);
                    }
                    mark = l.len();
                }
            };
        }
        let add_text = |segs: &mut Vec<Seg>, truth: &mut Vec<u8>, rng: &mut Rng, want: usize| {
            pick_lines(&pools.text.lines, rng, want, |a, b| {
                let (ra, rb) = (pools.text.lines[a], pools.text.lines[b]);
                if stuffed {
                    let (sa, sb) = (pools.text_stuffed.lines[a], pools.text_stuffed.lines[b]);
                    segs.push(Seg {
                        src: SRC_TEXT_STUFFED,
                        start: sa,
                        end: sb,
                    });
                } else {
                    segs.push(Seg {
                        src: SRC_TEXT,
                        start: ra,
                        end: rb,
                    });
                }
                if want_truth {
                    truth.extend_from_slice(&pools.text.bytes[ra as usize..rb as usize]);
                }
            });
        };
        let add_pool =
            |segs: &mut Vec<Seg>, truth: &mut Vec<u8>, rng: &mut Rng, src: u8, want: usize| {
                let pool = if src == SRC_B64 {
                    &pools.b64
                } else {
                    &pools.qp
                };
                pick_lines(&pool.lines, rng, want, |a, b| {
                    let (ra, rb) = (pool.lines[a], pool.lines[b]);
                    segs.push(Seg {
                        src,
                        start: ra,
                        end: rb,
                    });
                    if want_truth {
                        truth.extend_from_slice(&pool.bytes[ra as usize..rb as usize]);
                    }
                });
            };

        let hdr_end;
        if !attach {
            l.extend_from_slice(b"Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
            hdr_end = (l.len() - mark0) as u64;
            flush!();
            if lf_only {
                // a CRLF part, a run of LF-only lines, a CRLF line
                let first = (body_len / 2).max(1);
                add_text(&mut segs, truth, rng, first);
                pick_lines(&pools.text_lf.lines, rng, body_len - first + 1, |a, b| {
                    let (ra, rb) = (pools.text_lf.lines[a], pools.text_lf.lines[b]);
                    segs.push(Seg {
                        src: SRC_TEXT_LF,
                        start: ra,
                        end: rb,
                    });
                    if want_truth {
                        truth.extend_from_slice(&pools.text_lf.bytes[ra as usize..rb as usize]);
                    }
                });
                l.extend_from_slice(b"(the lines above end in a bare LF)\r\n");
            } else {
                add_text(&mut segs, truth, rng, body_len);
            }
        } else {
            let mut boundary = b"----=_Part_".to_vec();
            let _ = write!(boundary, "{}_", rng.below(100_000));
            hex_into(&mut boundary, rng.next_u64(), 12, false);
            let bnd = std::str::from_utf8(&boundary).expect("ascii").to_owned();
            let _ = write!(
                l,
                "Content-Type: multipart/mixed;\r\n\tboundary=\"{bnd}\"\r\n\r\n"
            );
            hdr_end = (l.len() - mark0) as u64;
            let _ = write!(
                l,
                "This is a multi-part message in MIME format.\r\n\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            );
            flush!();
            let text_len = (body_len / 6).max(64).min(cfg.shape.text_part_max);
            add_text(&mut segs, truth, rng, text_len);
            let mut rest = body_len.saturating_sub(text_len);
            if rng.pct(50) {
                let _ = write!(
                    l,
                    "\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                );
                flush!();
                let qp_len = (body_len / 6).max(64).min(cfg.shape.text_part_max);
                add_pool(&mut segs, truth, rng, SRC_QP, qp_len);
                rest = rest.saturating_sub(qp_len);
                // end the QP part with a hard line break
                l.extend_from_slice(b"end of quoted-printable part\r\n");
            }
            if rng.pct(25) {
                // a text file attached as quoted-printable
                let fname = format!("notes-{}.txt", rng.below(1000));
                let _ = write!(
                    l,
                    "\r\n--{bnd}\r\nContent-Type: text/plain; charset=utf-8; name=\"{fname}\"\r\nContent-Disposition: attachment; filename=\"{fname}\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                );
                flush!();
                add_pool(&mut segs, truth, rng, SRC_QP, rest.max(78));
                let _ = write!(l, "end of the attached notes\r\n\r\n--{bnd}--\r\n");
            } else {
                let (ctype, ext) = *rng.pick(&[
                    ("application/pdf", "pdf"),
                    ("application/zip", "zip"),
                    ("image/png", "png"),
                    ("application/octet-stream", "bin"),
                ]);
                let fname = format!(
                    "{}-{}.{ext}",
                    rng.pick(WORDS)
                        .trim_matches(|c: char| !c.is_ascii_alphanumeric()),
                    rng.below(1000)
                );
                let _ = write!(
                l,
                "\r\n--{bnd}\r\nContent-Type: {ctype}; name=\"{fname}\"\r\nContent-Disposition: attachment; filename=\"{fname}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            );
                flush!();
                add_pool(&mut segs, truth, rng, SRC_B64, rest.max(78));
                // a final short line with padding
                let mut tail = [0u8; 5];
                for b in tail.iter_mut() {
                    *b = rng.next_u64() as u8;
                }
                let n = rng.range(1, 5) as usize;
                base64_into(l, &tail[..n]);
                let _ = write!(l, "\r\n\r\n--{bnd}--\r\n");
            }
        }
        flush!();
        debug_assert_eq!(mark, l.len());

        let len: u64 = if want_truth {
            truth.len() as u64
        } else {
            msg_len(&segs, pools)
        };
        let mut chunks = vec![0u64];
        let mut zero_last = false;
        if !stuffed {
            let n = if len < 2048 { 1 } else { rng.range(2, 4) };
            for c in 1..n {
                let centre = len * c / n;
                let jitter = len / (4 * n);
                let b = rng.range(centre - jitter, centre + jitter);
                chunks.push(b);
            }
            chunks.push(len);
            zero_last = rng.pct(10);
        }
        let plain_body = !attach && segs.len() > 1;
        Msg {
            segs,
            len,
            mailfrom,
            rcpts,
            rejected,
            step: 0,
            chunks,
            zero_last,
            qid,
            status,
            subject,
            subject_decoded: decoded,
            hdr_end,
            plain_body,
            fate: Fate::Data,
        }
    }
}

/// A message body size drawn as `cfg.shape.body_sizes` says.
fn body_size(rng: &mut Rng, cfg: &GenConfig) -> usize {
    let (lo, hi) = (cfg.body_bytes.0 as u64, cfg.body_bytes.1 as u64);
    match cfg.shape.body_sizes {
        BodySizes::Uniform => rng.range(lo, hi) as usize,
        BodySizes::LogNormal {
            median,
            sigma_milli,
        } => crate::rng::lognormal(rng, median, sigma_milli).clamp(lo, hi) as usize,
    }
}

/// Unstuffed message length (stuffed text segments are mapped back by line).
fn msg_len(segs: &[Seg], pools: &Pools) -> u64 {
    let mut n = 0u64;
    for s in segs {
        if s.src == SRC_TEXT_STUFFED {
            let lines = &pools.text_stuffed.lines;
            let a = lines.partition_point(|&x| x < s.start);
            let b = lines.partition_point(|&x| x < s.end);
            n += (pools.text.lines[b] - pools.text.lines[a]) as u64;
        } else {
            n += s.len() as u64;
        }
    }
    n
}

/// Queues bytes [from, to) of a message made of `segs` onto `flight`.
fn push_slice(flight: &mut VecDeque<Seg>, segs: &[Seg], from: u64, to: u64) -> u64 {
    let mut off = 0u64;
    for s in segs {
        let (a, b) = (off, off + s.len() as u64);
        off = b;
        if b <= from {
            continue;
        }
        if a >= to {
            break;
        }
        let st = s.start + (from.max(a) - a) as u32;
        let en = s.start + (to.min(b) - a) as u32;
        if en > st {
            flight.push_back(Seg {
                src: s.src,
                start: st,
                end: en,
            });
        }
    }
    to - from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_slice_cuts_segments() {
        let segs = [
            Seg {
                src: 1,
                start: 10,
                end: 20,
            },
            Seg {
                src: 2,
                start: 0,
                end: 5,
            },
        ];
        let mut q = VecDeque::new();
        assert_eq!(push_slice(&mut q, &segs, 8, 12), 4);
        let v: Vec<_> = q.iter().map(|s| (s.src, s.start, s.end)).collect();
        assert_eq!(v, vec![(1, 18, 20), (2, 0, 2)]);
    }

    #[test]
    fn unique_client_endpoints() {
        let cfg = GenConfig::default();
        let mut seen = std::collections::HashSet::new();
        for id in 0..20_000 {
            let s = Session::new(id, &cfg);
            assert!(seen.insert((s.ip[0], s.port[0])));
        }
    }
}
