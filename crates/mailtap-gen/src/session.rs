//! One SMTP session: a script of client/server exchanges turned lazily into
//! TCP packets, one packet per call, so many sessions can interleave.
//!
//! The script (`advance`) appends the bytes of the next exchange to the
//! per-direction send queues (`flights`) and a small packet plan (`plan`);
//! `emit` turns the first plan item into one packet. Bytes are never
//! formatted into the packet directly: commands, replies and headers live in
//! the session's `local` buffer, message bodies are slices of the shared
//! pools.
//!
//! This file holds the session's state and its set-up; the rest is split by
//! job: `framing` (TCP: packets, sequence numbers, ACKs, teardown),
//! `script` (the SMTP dialogue and its transactions), `pop3` (the POP3
//! dialogue), `imap` (the IMAP dialogue), `tls` (STARTTLS handshakes and records), `compose` (message
//! envelopes, headers and MIME bodies) and `truth` (what each message was,
//! reported to the caller).

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

mod compose;
mod framing;
mod imap;
mod pop3;
mod script;
mod tls;
mod truth;
use compose::body_size;
use framing::push_slice;
use imap::Imap;
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
    /// IMAP session state (`None`: SMTP or POP3).
    imap: Option<Box<Imap>>,
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
        // (drawn only when the mix has IMAP: other mixes stay the same)
        let is_imap = !is_pop3 && cfg.mix.imap > 0 && rng.pct(cfg.mix.imap as u32);
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
        } else if is_imap {
            (Mode::Plain, Auth::None, false, 143)
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
            && !is_imap
            && !starttls
            && mode != Mode::Bdat
            && cfg.gap_percent > 0
            && rng.pct(cfg.gap_percent as u32);
        if gap {
            n_msgs = 1;
        } else if !is_pop3 && !is_imap && cfg.mix.probe > 0 && rng.pct(cfg.mix.probe as u32) {
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
        let imap = if is_imap {
            Some(Box::new(Imap::new(&mut rng, n_msgs)))
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
                && !is_imap
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
            imap,
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
        if self.pop3.is_some() != old.pop3.is_some() || self.imap.is_some() != old.imap.is_some() {
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
