//! Deterministic SMTP and POP3 traffic generator writing classic pcap files.
//!
//! Used for the bundled sample capture (`samples/sample-smtp.pcap`), for
//! tests, and for multi-hundred-megabyte benchmark captures. The same
//! [`GenConfig`] (including `seed`) always produces a byte-identical file.
//!
//! Each session is a complete TCP connection (handshake, SMTP dialogue, FIN
//! teardown) with a unique 4-tuple. `concurrency` sessions are in flight at
//! once; their packets are interleaved by a time-ordered scheduler, so the
//! capture's timestamps are globally non-decreasing and every flow's are
//! strictly increasing. Message bodies are slices of pre-generated text,
//! quoted-printable and base64 pools, so output runs at several hundred MB/s.
//!
//! [`generate_with_truth`] additionally reports every message as the
//! receiving MTA (SMTP) or the mail client (POP3 `RETR`/`TOP`) sees it,
//! after dot-unstuffing / BDAT reassembly, so tests can check an analyzer
//! or the message extraction byte for byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

pub use mailtap_core::Timestamp;

mod imperfect;
mod pcap;
mod pool;
mod rng;
mod session;
mod text;

pub use imperfect::{
    count_packets, generate_imperfect, generate_imperfect_with_truth, Expect, FlowTruth,
    ImperfectMessageTruth, ImperfectStats, Imperfections, MessageCapture,
};
use session::{Ctx, Session};

/// Feature mix. `plain`, `pipelined` and `bdat` are relative weights that
/// choose each SMTP session's transfer style; the others are percentages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weight: one command per round trip, `DATA` + dot-stuffed body.
    pub plain: u8,
    /// Weight: `MAIL`/`RCPT…`/`DATA` sent in one segment (PIPELINING).
    pub pipelined: u8,
    /// Weight: `MAIL`/`RCPT…` pipelined, then 1–4 `BDAT` chunks, the
    /// last with `LAST` (sometimes a separate `BDAT 0 LAST`) (CHUNKING).
    pub bdat: u8,
    /// Percent of messages that are `multipart/mixed` with a text part,
    /// sometimes a quoted-printable part, and an attachment (base64, or
    /// for about a quarter of them a quoted-printable text file).
    pub mime_attachment: u8,
    /// Percent of sessions that authenticate (AUTH PLAIN or AUTH LOGIN).
    pub auth: u8,
    /// Percent of sessions that issue STARTTLS after EHLO and then carry
    /// only opaque TLS-looking records (no plaintext messages).
    pub starttls: u8,
    /// Percent of sessions that are POP3 (port 110) instead of SMTP: CAPA,
    /// USER/PASS (sometimes failing first), APOP or AUTH PLAIN, STAT, LIST,
    /// UIDL, `RETR` (and sometimes `TOP`) of every message, DELE, QUIT.
    pub pop3: u8,
    /// Percent of SMTP messages the server rejects with a 5xx reply to the
    /// end of data (the message was still transferred completely).
    pub reject: u8,
    /// Percent of SMTP `DATA` messages whose body has a run of LF-only
    /// lines (bare `\n`), which must survive extraction byte for byte.
    pub lf_only: u8,
    /// Percent of SMTP transactions the server rejects at `MAIL FROM`
    /// (no message is transferred).
    pub mail_reject: u8,
    /// Percent of SMTP transactions whose every `RCPT TO` is rejected (550
    /// or a 450 greylisting reply; no message is transferred). Independent
    /// of the single rejected recipient among several that the attach
    /// mix has always had.
    pub rcpt_reject: u8,
    /// Percent of SMTP sessions that carry no transaction: `EHLO` (and
    /// STARTTLS, when the session does TLS), then `QUIT`.
    pub probe: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            plain: 45,
            pipelined: 35,
            bdat: 20,
            mime_attachment: 30,
            auth: 20,
            starttls: 5,
            pop3: 0,
            reject: 3,
            lf_only: 3,
            mail_reject: 0,
            rcpt_reject: 0,
            probe: 0,
        }
    }
}

/// A named traffic mix (`mailtap gen --mix`): a whole [`GenConfig`] shaped
/// like one kind of mail link. See [`GenConfig::for_mix`] and the "Traffic
/// mixes" section of docs/benchmarks.md for the measured shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficMix {
    /// An MX link between MTAs: most SMTP sessions use STARTTLS with
    /// realistic TLS records, message sizes are heavy-tailed, some sessions
    /// are probes or rejected transactions.
    Mta,
    /// The worst case for a sensor: many short plaintext SMTP sessions with
    /// 1-5 kB messages and a share of POP3, small segments, many ACKs
    /// (shaped like a measured 524 MB Postfix/Dovecot capture: 143-byte
    /// average frame, about 28 packets per connection).
    Small,
    /// The generator's original, attachment-heavy mix (617-byte average
    /// frame); byte-identical to what `GenConfig::default()` has always
    /// produced.
    #[default]
    Attach,
}

impl TrafficMix {
    /// `mta`, `small` or `attach`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficMix::Mta => "mta",
            TrafficMix::Small => "small",
            TrafficMix::Attach => "attach",
        }
    }
}

/// How message body sizes are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySizes {
    /// Uniform in [`GenConfig::body_bytes`].
    Uniform,
    /// Lognormal with this median and shape (sigma in thousandths),
    /// clamped to [`GenConfig::body_bytes`]. Computed with plain IEEE
    /// arithmetic only (no libm), so the sizes are the same everywhere.
    LogNormal { median: u32, sigma_milli: u32 },
}

/// How encrypted sessions look after STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsStyle {
    /// The original shape: one opaque handshake record per flight and one
    /// application-data record per exchange (kept for the attach mix).
    Opaque,
    /// Real handshakes, recorded from real peers (OpenSSL's `s_server` and
    /// `s_client`, Python's `ssl`; see [`tls_handshakes`]) and replayed with
    /// the session's addresses, then the SMTP dialogue and the message as
    /// application-data records of at most 16 KiB plus AEAD overhead, and
    /// close_notify alerts. 2% of the handshakes end in a fatal alert
    /// (then FIN, no application data); [`generate_with_tls_truth`] reports
    /// what each negotiated.
    Realistic {
        /// Percent of the established TLS sessions that negotiate TLS 1.3
        /// (else 1.2).
        tls13: u8,
    },
}

/// Wire-level shape beyond the feature percentages of [`Mix`]. The default
/// is the original generator's behaviour (the attach mix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub body_sizes: BodySizes,
    /// Messages above this many body bytes always carry an attachment (big
    /// mail is big because of attachments). `usize::MAX`: never forced.
    pub attach_above: usize,
    /// The text (and quoted-printable) parts of a multipart message are at
    /// most this long, so the attachment takes the rest.
    pub text_part_max: usize,
    /// When set, the number of messages of an SMTP session is 1 plus a
    /// geometric number of further messages, each with this percent
    /// probability, at most [`GenConfig::messages_per_session`]`.1`
    /// (instead of uniform in `messages_per_session`).
    pub more_messages: Option<u8>,
    /// POP3 maildrop size range (instead of `messages_per_session`):
    /// polls often find nothing.
    pub pop3_messages: Option<(u32, u32)>,
    /// The SMTP client writes message data in pieces of this many bytes
    /// (inclusive range), each sent as its own segments; `None`: the data
    /// goes out in full-MSS segments.
    pub data_write: Option<(u32, u32)>,
    /// Percent of a bulk sender's data segments the receiver acknowledges
    /// at once (delayed ACK: otherwise every second segment is
    /// acknowledged).
    pub ack_each: u8,
    /// Percent of server replies the client acknowledges with a pure ACK
    /// before it sends its next command.
    pub reply_ack: u8,
    pub tls: TlsStyle,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            body_sizes: BodySizes::Uniform,
            attach_above: usize::MAX,
            text_part_max: usize::MAX,
            more_messages: None,
            pop3_messages: None,
            data_write: None,
            ack_each: 0,
            reply_ack: 35,
            tls: TlsStyle::Opaque,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Total SMTP sessions (ignored when `target_bytes` is set).
    pub sessions: u64,
    /// Sessions in flight at once (interleaved packets); at least 1.
    pub concurrency: usize,
    /// Same seed + config => byte-identical file.
    pub seed: u64,
    /// Stop starting sessions once about this many bytes are written or
    /// committed; overrides `sessions`. Every session is always completed.
    pub target_bytes: Option<u64>,
    /// Messages per session, inclusive range (min may be 0).
    pub messages_per_session: (u32, u32),
    /// Recipients per message, inclusive range (at least 1).
    pub recipients: (u32, u32),
    /// Message body size in bytes, inclusive range (headers come on top).
    pub body_bytes: (usize, usize),
    pub mix: Mix,
    /// Percent of sessions over IPv6.
    pub ipv6_percent: u8,
    /// Time of the first packet.
    pub start_ts: Timestamp,
    /// TCP maximum segment size for data packets (clamped to 64..=9000).
    pub mss: usize,
    /// Percent of plain/pipelined SMTP sessions (one message each) from
    /// which one full-size client data segment in the middle of the message
    /// is left out of the capture. The server still acknowledges it, so a
    /// receiver sees a content gap and the message is incomplete
    /// ([`MessageTruth::complete`] is false). 0 (the default) drops nothing.
    pub gap_percent: u8,
    /// Wire-level shape (sizes, segmenting, ACKs, TLS).
    pub shape: Shape,
    /// Traffic a sensor must cope with that ordinary generation leaves out
    /// (reused 4-tuples, over-long AUTH lines); all off by default.
    pub quirks: Quirks,
}

/// Odd but legal traffic (see [`GenConfig::quirks`]). Every option is off
/// by default; with all of them off the output is exactly that of a
/// configuration without them. Decisions are drawn from random streams of
/// their own, so turning one on changes only the sessions it picks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Percent of the sessions ended with their full FIN exchange whose
    /// 4-tuple the next session started takes over (same client and
    /// server address and port, a new initial sequence number), between
    /// 1 µs and 2 ms after the old connection's last packet: well inside
    /// Zeek's 5 s `tcp_connection_linger` (weird
    /// `premature_connection_reuse`). Only between sessions of the same
    /// protocol (SMTP or POP3).
    pub reuse_closed_percent: u8,
    /// Percent of sessions that are abandoned without closing (after their
    /// last transaction, no `QUIT`, no FIN: a client that went away),
    /// whose 4-tuple the next session started takes over while the old
    /// connection is still open (weird `active_connection_reuse`). Only
    /// between sessions of the same protocol.
    pub reuse_open_percent: u8,
    /// Percent of authenticating SMTP sessions ([`Mix::auth`]) whose
    /// credentials are one over-long continuation line: `AUTH PLAIN`, `334`,
    /// then the base64 credentials; or `AUTH LOGIN`'s password line. The
    /// transactions that follow carry messages as usual (with truth).
    pub long_auth_percent: u8,
    /// Length in bytes (CRLF excluded) of a long AUTH line: at least this,
    /// rounded up to a multiple of 4 (base64). Make it longer than the
    /// sensor's `smtp.max_line_length` (default 16777116; tests set it
    /// lower). 0 means 4096.
    pub long_auth_len: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            sessions: 100,
            concurrency: 16,
            seed: 1,
            target_bytes: None,
            messages_per_session: (1, 3),
            recipients: (1, 4),
            body_bytes: (512, 32 * 1024),
            mix: Mix::default(),
            ipv6_percent: 10,
            // 2024-03-01T12:00:00Z
            start_ts: Timestamp::from_secs_micros(1_709_294_400, 0),
            mss: 1460,
            gap_percent: 0,
            shape: Shape::default(),
            quirks: Quirks::default(),
        }
    }
}

impl GenConfig {
    /// The configuration of a named mix (100 sessions, concurrency 16,
    /// seed 1; set `sessions`/`target_bytes`, `concurrency` and `seed` as
    /// needed). `Attach` is exactly [`GenConfig::default`].
    pub fn for_mix(mix: TrafficMix) -> GenConfig {
        match mix {
            TrafficMix::Attach => GenConfig::default(),
            TrafficMix::Small => GenConfig {
                // About one transaction per connection, as measured (117 k
                // transactions over 116 k connections): most sessions send
                // one message, 18% send another (and so on).
                messages_per_session: (1, 4),
                // Mostly one recipient; the single rejected recipient among
                // several (15% of multi-recipient messages) stays.
                recipients: (1, 2),
                // 1-5 kB messages: about 0.8 kB of headers plus a body with
                // a median of 0.8 kB (with the client's small writes below,
                // this gives the measured 143-byte average frame and 28
                // packets per connection).
                body_bytes: (300, 4_200),
                mix: Mix {
                    // Postfix pipelines when the server offers it, but many
                    // clients (and Postfix towards some servers) do not.
                    plain: 60,
                    pipelined: 36,
                    bdat: 4,
                    // Mostly a single text part; some small multipart
                    // messages with a tiny attachment (this share brings
                    // files.log to about 1.1 rows per connection, as
                    // measured: 127 k files over 116 k connections).
                    mime_attachment: 4,
                    auth: 10,
                    // The measured capture was plaintext.
                    starttls: 0,
                    // Dovecot's side of the link: mail clients polling.
                    pop3: 12,
                    reject: 3,
                    lf_only: 1,
                    mail_reject: 3,
                    rcpt_reject: 6,
                    probe: 4,
                },
                shape: Shape {
                    body_sizes: BodySizes::LogNormal {
                        median: 800,
                        sigma_milli: 500,
                    },
                    text_part_max: 1_024,
                    more_messages: Some(18),
                    pop3_messages: Some((0, 2)),
                    // Clients write message data in small pieces.
                    data_write: Some((256, 768)),
                    ack_each: 50,
                    reply_ack: 55,
                    ..Shape::default()
                },
                ..GenConfig::default()
            },
            TrafficMix::Mta => GenConfig {
                // Connection caching: an MTA often sends several messages
                // over one connection.
                messages_per_session: (1, 6),
                recipients: (1, 3),
                // Heavy tail: median body 4 kB, mean (before the cap) about
                // 30 kB, capped at 20 MB.
                body_bytes: (120, 20 << 20),
                mix: Mix {
                    plain: 45,
                    pipelined: 50,
                    bdat: 5,
                    mime_attachment: 25,
                    // MTA-to-MTA mail on port 25 rarely authenticates.
                    auth: 4,
                    // Google's Transparency Report ("Email encryption in
                    // transit") shows roughly 90% or more of Gmail's inbound
                    // and outbound mail encrypted; a link that also carries
                    // small senders, bulk mailers, bots and probes sees
                    // less, so 80% of SMTP sessions.
                    starttls: 80,
                    pop3: 0,
                    reject: 2,
                    lf_only: 1,
                    mail_reject: 3,
                    rcpt_reject: 8,
                    probe: 6,
                },
                shape: Shape {
                    body_sizes: BodySizes::LogNormal {
                        median: 4_000,
                        sigma_milli: 2_000,
                    },
                    attach_above: 48 << 10,
                    text_part_max: 16 << 10,
                    more_messages: Some(30),
                    // TLS 1.3 is what current OpenSSL-based MTAs (Postfix,
                    // Exim) negotiate with each other; 1.2 remains common.
                    tls: TlsStyle::Realistic { tls13: 70 },
                    ..Shape::default()
                },
                ..GenConfig::default()
            },
        }
    }

    fn normalized(&self) -> GenConfig {
        let mut c = self.clone();
        let order32 = |(a, b): (u32, u32)| if a <= b { (a, b) } else { (b, a) };
        c.concurrency = c.concurrency.max(1);
        c.messages_per_session = order32(c.messages_per_session);
        c.recipients = order32(c.recipients);
        c.recipients.0 = c.recipients.0.max(1);
        c.recipients.1 = c.recipients.1.max(1);
        if c.body_bytes.0 > c.body_bytes.1 {
            c.body_bytes = (c.body_bytes.1, c.body_bytes.0);
        }
        // keep u32 packet/segment arithmetic comfortably in range
        c.body_bytes.1 = c.body_bytes.1.min(256 << 20);
        c.body_bytes.0 = c.body_bytes.0.min(c.body_bytes.1);
        c.mss = c.mss.clamp(64, 9000);
        c.ipv6_percent = c.ipv6_percent.min(100);
        c.gap_percent = c.gap_percent.min(100);
        if let Some((a, b)) = c.shape.pop3_messages {
            c.shape.pop3_messages = Some(order32((a, b)));
        }
        if let Some((a, b)) = c.shape.data_write {
            let (a, b) = order32((a.max(1), b.max(1)));
            c.shape.data_write = Some((a, b));
        }
        c.shape.text_part_max = c.shape.text_part_max.max(64);
        let q = &mut c.quirks;
        q.reuse_closed_percent = q.reuse_closed_percent.min(100);
        q.reuse_open_percent = q.reuse_open_percent.min(100);
        q.long_auth_percent = q.long_auth_percent.min(100);
        if q.long_auth_len == 0 {
            q.long_auth_len = 4096;
        }
        q.long_auth_len = q.long_auth_len.min(64 << 20);
        c
    }
}

/// Totals of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    pub sessions: u64,
    /// Plaintext messages transferred (STARTTLS sessions carry none): one
    /// per SMTP transaction with data, one per POP3 `RETR` or `TOP` response;
    /// the number of [`MessageTruth`] reports.
    pub messages: u64,
    /// Packets left out of the capture (see [`GenConfig::gap_percent`]);
    /// not counted in `packets`.
    pub dropped_packets: u64,
    pub packets: u64,
    /// Bytes written, including the pcap global header.
    pub bytes: u64,
    /// Sessions that switched to TLS (STARTTLS accepted).
    pub tls_sessions: u64,
    /// Pcap bytes (record headers included) of the packets whose payload
    /// is TLS records.
    pub tls_bytes: u64,
    /// Messages transferred inside TLS (not in `messages`, no truth).
    pub tls_messages: u64,
    /// Sessions started on the 4-tuple of the session that ended just
    /// before (see [`Quirks`]).
    pub reused: u64,
}

/// Which protocol carried a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Smtp,
    Pop3,
}

impl Protocol {
    /// `smtp` or `pop3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
        }
    }
}

/// Ground truth of one message, as reported by [`generate_with_truth`].
#[derive(Debug)]
pub struct MessageTruth<'a> {
    pub protocol: Protocol,
    /// Client (connection originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server (responder) address and port (25 or 587 for SMTP, 110 for
    /// POP3).
    pub resp: (IpAddr, u16),
    /// 0-based message number within the session, in transfer order (for
    /// POP3: the number of the `RETR`/`TOP` response, not the maildrop
    /// message number).
    pub index_in_session: u32,
    /// The bare address of `MAIL FROM:<…>` (POP3: the `From:` address).
    pub mailfrom: &'a str,
    /// SMTP: the bare address of every `RCPT TO:<…>` sent, in order,
    /// including a recipient the server rejected with 550 (Zeek logs those
    /// too). POP3: the envelope the message was composed with (not on the
    /// wire).
    pub rcptto: &'a [String],
    /// SMTP: the recipients the server rejected (a subset of `rcptto`).
    pub rcptto_rejected: &'a [String],
    /// The Subject header value as Zeek reports it: raw (encoded words are
    /// not decoded), folded lines joined by dropping the CRLF only.
    pub subject: &'a str,
    /// The Subject with RFC 2047 encoded words decoded to UTF-8 (and the
    /// whitespace between adjacent encoded words removed).
    pub subject_decoded: &'a str,
    /// The exact message bytes transferred, after dot-unstuffing (DATA,
    /// RETR, TOP) or chunk concatenation (BDAT); always ends in CRLF. May
    /// contain LF-only lines (see [`Mix::lf_only`]).
    pub bytes: &'a [u8],
    pub via_bdat: bool,
    /// SMTP: the server's reply code to the end of data (250, or 5xx when
    /// the message was rejected). POP3: `None`.
    pub status_code: Option<u16>,
    /// POP3: the user that logged in. SMTP: `None`.
    pub user: Option<&'a str>,
    /// POP3 `TOP` response: only the headers and the first lines of the
    /// body.
    pub partial: bool,
    /// False when the generator left a segment of this message out of the
    /// capture (see [`GenConfig::gap_percent`]); `bytes` is then what was
    /// sent, not what a receiver of the capture can see.
    pub complete: bool,
}

/// One certificate of a recorded handshake (see [`HandshakeTruth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertTruth {
    /// SHA-256 of the DER certificate, lowercase hex (Zeek's
    /// `fingerprint`).
    pub fingerprint: &'static str,
    /// The subject as OpenSSL prints it in RFC 2253 form (what Zeek logs as
    /// `certificate.subject`).
    pub subject: &'static str,
    pub issuer: &'static str,
}

/// What one recorded TLS handshake negotiated, as the real peers reported
/// it when it was recorded (`scripts/record-tls-handshakes.py`; the
/// fixtures and their notes are in `crates/mailtap-gen/tls/`). Field names
/// and values follow Zeek's ssl.log; `None` is Zeek's unset (`-`).
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeTruth {
    /// The fixture's name (`t13_rsa_sni`, `alert_unknown_ca`, ...).
    pub name: &'static str,
    /// `TLSv12` or `TLSv13`; `None` when the server sent no ServerHello.
    pub version: Option<&'static str>,
    /// The IANA name (`TLS_AES_256_GCM_SHA384`).
    pub cipher: Option<&'static str>,
    /// The key-exchange group (`x25519`, `secp256r1`); `None` when there
    /// was no key exchange (a resumed TLS 1.2 handshake) or no ServerHello.
    pub curve: Option<&'static str>,
    /// The SNI the client sent; `None`: no SNI.
    pub server_name: Option<&'static str>,
    pub resumed: bool,
    /// The handshake completed (both peers said so).
    pub established: bool,
    /// The fatal alert that ended a failed handshake (`unknown_ca`,
    /// `protocol_version`); `None` for an established one (its
    /// close_notify is encrypted).
    pub last_alert: Option<&'static str>,
    /// The ALPN protocol the server selected.
    pub next_protocol: Option<&'static str>,
    /// SHA-256 fingerprints of the certificates the server sent in the
    /// clear, leaf first: empty in TLS 1.3 (the Certificate message is
    /// encrypted) and in a resumed TLS 1.2 handshake.
    pub cert_chain_fps: &'static [&'static str],
    /// Likewise for the client's certificates.
    pub client_cert_chain_fps: &'static [&'static str],
    /// Every certificate of the two lists above (server's first).
    pub certs: &'static [CertTruth],
}

/// Ground truth of one TLS session (STARTTLS after `220 Ready to start
/// TLS`), as reported by [`generate_with_tls_truth`]: the session's
/// endpoints and the recorded handshake it replays.
#[derive(Clone, Copy, Debug)]
pub struct TlsTruth {
    /// Client (connection originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server address and port.
    pub resp: (IpAddr, u16),
    pub handshake: &'static HandshakeTruth,
}

/// Every recorded handshake the generator can replay
/// ([`TlsStyle::Realistic`]), in a fixed order.
pub fn tls_handshakes() -> impl Iterator<Item = &'static HandshakeTruth> {
    session::tls_fixture_truths()
}

/// Writes a classic pcap (Ethernet, microsecond, little-endian) to `w`.
pub fn generate<W: Write>(cfg: &GenConfig, w: W) -> io::Result<GenStats> {
    run(cfg, w, None, None, None)
}

/// Like [`generate`], calling `on_message` once per plaintext message (when
/// the message is composed, before its packets are written).
pub fn generate_with_truth<W: Write>(
    cfg: &GenConfig,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
) -> io::Result<GenStats> {
    run(cfg, w, Some(on_message), None, None)
}

/// Like [`generate_with_truth`], also calling `on_tls` once per TLS session
/// of the [`TlsStyle::Realistic`] style (when its handshake is queued,
/// before its packets are written). The output is the same as
/// [`generate`]'s.
pub fn generate_with_tls_truth<W: Write>(
    cfg: &GenConfig,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
    on_tls: &mut dyn FnMut(&TlsTruth),
) -> io::Result<GenStats> {
    run(cfg, w, Some(on_message), Some(on_tls), None)
}

pub(crate) fn run<W: Write>(
    cfg: &GenConfig,
    w: W,
    mut on_message: Option<&mut dyn FnMut(&MessageTruth)>,
    mut on_tls: Option<&mut dyn FnMut(&TlsTruth)>,
    mut on_span: Option<&mut dyn FnMut(&session::Span)>,
) -> io::Result<GenStats> {
    let cfg = cfg.normalized();
    let pools = pool::Pools::new(cfg.seed);
    let mut out = BufWriter::with_capacity(1 << 20, w);
    out.write_all(&pcap::global_header())?;
    let mut stats = GenStats {
        bytes: 24,
        ..GenStats::default()
    };

    let mut sched_rng = rng::Rng::derive(cfg.seed, u64::MAX);
    // Reuse decisions have a stream of their own (ordinary output stays).
    let reuse = cfg.quirks.reuse_closed_percent > 0 || cfg.quirks.reuse_open_percent > 0;
    let mut reuse_rng = rng::Rng::derive(cfg.seed, u64::MAX - 1);
    let mut slots: Vec<Option<Session>> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut tiebreak = 0u64;
    let mut truth_buf: Vec<u8> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(cfg.mss + 256);
    // Bytes still expected from active sessions (for `target_bytes`).
    let mut outstanding = 0u64;
    let mut launched = 0u64;
    let mut now = (cfg.start_ts.0.max(0) / 1000) as u64;

    let want_more = |launched: u64, written: u64, outstanding: u64| match cfg.target_bytes {
        Some(t) => launched == 0 || written + outstanding < t,
        None => launched < cfg.sessions,
    };

    // Initial sessions, staggered a little.
    let mut t0 = now;
    while slots.len() < cfg.concurrency && want_more(launched, stats.bytes, outstanding) {
        let s = Session::new(launched, &cfg);
        outstanding += s.est_bytes;
        launched += 1;
        slots.push(Some(s));
        heap.push(Reverse((t0, tiebreak, (slots.len() - 1) as u32)));
        tiebreak += 1;
        t0 += sched_rng.range(0, 400);
    }

    while let Some(Reverse((t, _, slot))) = heap.pop() {
        now = t;
        let sess = slots[slot as usize].as_mut().expect("scheduled session");
        let mut ctx = Ctx {
            pools: &pools,
            cfg: &cfg,
            now_us: now,
            truth_buf: &mut truth_buf,
            on_message: on_message
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&MessageTruth)),
            on_tls: on_tls
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&TlsTruth)),
            messages: &mut stats.messages,
            dropped: &mut stats.dropped_packets,
            on_span: on_span
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&session::Span)),
        };
        buf.clear();
        let next = sess.emit(&mut ctx, &mut buf);
        if !buf.is_empty() {
            out.write_all(&buf)?;
            let n = buf.len() as u64;
            stats.packets += 1;
            stats.bytes += n;
            let counted = n.min(sess.est_bytes.saturating_sub(sess.written));
            outstanding -= counted;
            sess.written += n;
        }
        match next {
            Some(d) => {
                heap.push(Reverse((now + d as u64, tiebreak, slot)));
                tiebreak += 1;
            }
            None => {
                let s = slots[slot as usize].take().expect("session");
                outstanding -= s.est_bytes.saturating_sub(s.written);
                stats.sessions += 1;
                stats.tls_sessions += s.tls_on as u64;
                stats.tls_bytes += s.tls_bytes;
                stats.tls_messages += s.tls_messages;
                free.push(slot);
                if want_more(launched, stats.bytes, outstanding) {
                    let mut ns = Session::new(launched, &cfg);
                    if reuse
                        && (s.unclosed || reuse_rng.pct(cfg.quirks.reuse_closed_percent as u32))
                        && ns.reuse_endpoints(&s)
                    {
                        stats.reused += 1;
                    }
                    let s = ns;
                    outstanding += s.est_bytes;
                    launched += 1;
                    let slot = free.pop().expect("free slot");
                    slots[slot as usize] = Some(s);
                    let start = now + sched_rng.range(1, 2_000);
                    heap.push(Reverse((start, tiebreak, slot)));
                    tiebreak += 1;
                }
            }
        }
    }
    out.flush()?;
    Ok(stats)
}

/// The configuration of the bundled `samples/sample-smtp.pcap`: 40
/// sessions, 8 concurrent, seed 1, every SMTP feature of the mix present
/// (no POP3, no gaps).
pub fn sample_config() -> GenConfig {
    GenConfig {
        sessions: 40,
        concurrency: 8,
        seed: 1,
        target_bytes: None,
        messages_per_session: (1, 3),
        recipients: (1, 4),
        body_bytes: (300, 12 * 1024),
        mix: Mix {
            plain: 40,
            pipelined: 30,
            bdat: 30,
            mime_attachment: 35,
            auth: 25,
            starttls: 10,
            pop3: 0,
            reject: 8,
            lf_only: 10,
            ..Mix::default()
        },
        ipv6_percent: 15,
        start_ts: Timestamp::from_secs_micros(1_709_294_400, 0),
        mss: 1460,
        gap_percent: 0,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}

/// The configuration of the bundled `samples/sample-pop3.pcap`: 16 POP3
/// sessions, 4 concurrent, seed 2 (every login style, `RETR` and `TOP`).
pub fn sample_pop3_config() -> GenConfig {
    GenConfig {
        sessions: 16,
        concurrency: 4,
        seed: 2,
        target_bytes: None,
        messages_per_session: (0, 4),
        recipients: (1, 3),
        body_bytes: (300, 8 * 1024),
        mix: Mix {
            mime_attachment: 40,
            pop3: 100,
            ..Mix::default()
        },
        ipv6_percent: 15,
        start_ts: Timestamp::from_secs_micros(1_709_298_000, 0),
        mss: 1460,
        gap_percent: 0,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}

/// A configuration with every feature the extraction tests need: SMTP
/// (plain, pipelined, BDAT, attachments in both encodings, encoded-word
/// and folded subjects, dot-stuffed and LF-only lines, rejected messages,
/// multi-message sessions) and POP3 (`RETR`, `TOP`, every login style),
/// plus gap sessions. About `sessions` × 1.5 messages.
pub fn extraction_test_config(sessions: u64, seed: u64) -> GenConfig {
    GenConfig {
        sessions,
        concurrency: 24,
        seed,
        target_bytes: None,
        messages_per_session: (1, 3),
        recipients: (1, 4),
        body_bytes: (200, 24 * 1024),
        mix: Mix {
            plain: 40,
            pipelined: 30,
            bdat: 30,
            mime_attachment: 40,
            auth: 25,
            starttls: 5,
            pop3: 25,
            reject: 10,
            lf_only: 10,
            ..Mix::default()
        },
        ipv6_percent: 20,
        start_ts: Timestamp::from_secs_micros(1_709_294_400, 0),
        mss: 1460,
        gap_percent: 6,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}
