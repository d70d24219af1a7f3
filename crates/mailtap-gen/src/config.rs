//! What to generate: the traffic mix, the session shape, the imperfections
//! ([`GenConfig`] and its parts), and the named mixes (`--mix`).

use mailtap_core::Timestamp;

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
    /// Percent of sessions that are IMAP (port 143) instead of SMTP (of
    /// those that are not POP3): CAPABILITY, LOGIN or AUTHENTICATE PLAIN
    /// (sometimes failing first), SELECT or EXAMINE, FETCH and UID FETCH
    /// of whole messages and of headers, texts and `<o.n>` pieces (some
    /// pipelined), APPEND with `{n}` or `{n+}` literals, IDLE, LOGOUT.
    pub imap: u8,
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
            imap: 0,
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
                    imap: 0,
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
                    imap: 0,
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

    pub(crate) fn normalized(&self) -> GenConfig {
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
