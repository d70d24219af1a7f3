//! The IMAP script of a session (port 143, plaintext), shaped like what
//! Dovecot and Thunderbird, Outlook or Python's imaplib say to each other:
//! the greeting (with or without a `[CAPABILITY ...]` code), CAPABILITY,
//! login (LOGIN, sometimes failing first; AUTHENTICATE PLAIN with an
//! initial response or after a continuation), SELECT or EXAMINE, then
//! FETCH and UID FETCH of whole messages (`BODY[]`, `BODY.PEEK[]`,
//! `RFC822`) and of parts (`BODY.PEEK[HEADER]`, `BODY[TEXT]`,
//! `RFC822.HEADER`, `BODY.PEEK[]<o.n>`), several commands pipelined in one
//! segment, APPEND with a synchronizing `{n}` literal (after the server's
//! continuation) or a LITERAL+ `{n+}` one, IDLE ... DONE, COMPRESS
//! DEFLATE (RFC 4978: everything after the server's OK is raw deflate in
//! both directions, one sync-flushed block per write), LOGOUT.
//!
//! Message literals are the message's bytes as they are: no dot-stuffing
//! (`build_message` composes IMAP bodies from the unstuffed pools).

use std::io::Write as _;

use super::{Ctx, Kind, Session, Span, C, S};
use crate::pool::{Seg, SRC_LOCAL};
use crate::rng::Rng;
use crate::text::{base64_into, FIRST, LAST};
use crate::ImapTruth;

mod wire;

/// The mailbox every APPEND goes to (a client's copy of what it sent).
const SENT: &str = "Sent";
/// Mailboxes a session selects (or examines) before fetching.
const MAILBOXES: &[&str] = &["INBOX", "INBOX", "INBOX", "Archive", "Lists/rust-users"];
const UIDVALIDITY: u32 = 1_700_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credentials {
    Login,
    /// A wrong password first (`NO [AUTHENTICATIONFAILED]`), then the
    /// right one.
    LoginRetry,
    /// `AUTHENTICATE PLAIN <initial response>` (SASL-IR).
    PlainIr,
    /// `AUTHENTICATE PLAIN`, `+ `, then the response line.
    PlainContinued,
}

/// What one fetch asks for: the command's item, the response's label and
/// which bytes of the message the response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Body,
    BodyPeek,
    Rfc822,
    Header,
    Rfc822Header,
    Text,
    /// `BODY.PEEK[]<0.n>`: the first `n` bytes (the header and a little
    /// of the body).
    Head,
    /// `BODY.PEEK[]<o.n>` with o > 0: the rest of the message after a
    /// `Head` fetch of the same message would have stopped.
    Rest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Fetches of `n` messages pipelined in one client segment (1: one
    /// round trip), by UID FETCH or FETCH.
    Fetch {
        n: u8,
        uid: bool,
    },
    /// APPEND of one message: LITERAL+ (`{n+}`) or synchronizing.
    Append {
        plus: bool,
    },
    Idle,
    Noop,
    /// `COMPRESS DEFLATE`: the rest of the session is deflated.
    Compress,
    /// One message fetched in pieces, one round trip each, as Thunderbird
    /// fetches large ones: `BODY.PEEK[]<o.n>` until a piece comes back
    /// short (or, when the first response gave RFC822.SIZE, until the
    /// last byte).
    Chunked {
        uid: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Greeting,
    Capability,
    Login,
    Select,
    Work,
    Logout,
}

pub(crate) struct Imap {
    pub(crate) user: String,
    tag_prefix: &'static str,
    tag: u32,
    login: Credentials,
    step: Step,
    /// The greeting carries no `[CAPABILITY ...]`: the client asks.
    ask_caps: bool,
    mailbox: &'static str,
    examine: bool,
    exists: u32,
    uidnext: u32,
    ops: Vec<Op>,
    next: usize,
    /// What the message being reported is (read by `report`).
    pub(crate) cur: Option<ImapTruth>,
    /// After COMPRESS DEFLATE: each direction's compressor.
    deflate: Option<Box<[flate2::Compress; 2]>>,
    /// Where each direction's COMPRESS exchange starts (the command, the
    /// server's OK), after which its stream is deflated.
    compress_at: [u64; 2],
    /// Spans of this step's transfers over COMPRESS, waiting for the
    /// deflated offsets: (span, direction, index of the data run among
    /// the direction's runs of the step).
    pending_spans: Vec<(Span, usize, usize)>,
}

impl Imap {
    /// A session that transfers `n` messages (fetched or appended).
    pub(crate) fn new(rng: &mut Rng, n: u32) -> Self {
        let user = if rng.pct(60) {
            format!("{}.{}", rng.pick(FIRST), rng.pick(LAST))
        } else {
            format!("{}{}@imap.example.org", rng.pick(FIRST), rng.below(100))
        };
        let login = match rng.below(10) {
            0..=4 => Credentials::Login,
            5 => Credentials::LoginRetry,
            6..=7 => Credentials::PlainIr,
            _ => Credentials::PlainContinued,
        };
        let tag_prefix = *rng.pick(&["a", "A", "", "tag"]);
        let mut ops = Vec::new();
        if rng.pct(20) {
            ops.push(Op::Compress);
        }
        let mut left = n;
        while left > 0 {
            let op = match rng.below(100) {
                0..=19 => Op::Append { plus: rng.pct(50) },
                92..=99 => Op::Chunked { uid: rng.pct(70) },
                20..=44 if left >= 2 => Op::Fetch {
                    n: rng.range32(2, left.min(4)) as u8,
                    uid: rng.pct(60),
                },
                _ => Op::Fetch {
                    n: 1,
                    uid: rng.pct(60),
                },
            };
            left -= match op {
                Op::Fetch { n, .. } => n as u32,
                _ => 1,
            };
            ops.push(op);
            if rng.pct(8) {
                ops.push(if rng.pct(50) { Op::Idle } else { Op::Noop });
            }
        }
        let exists = rng.range32(n.max(1), n.max(1) + 200);
        Imap {
            user,
            tag_prefix,
            tag: 0,
            login,
            step: Step::Greeting,
            ask_caps: rng.pct(30),
            mailbox: MAILBOXES[rng.below(MAILBOXES.len() as u64) as usize],
            examine: rng.pct(20),
            exists,
            uidnext: exists + rng.range32(1, 5_000),
            ops,
            next: 0,
            cur: None,
            deflate: None,
            compress_at: [0; 2],
            pending_spans: Vec::new(),
        }
    }

    fn tag(&mut self) -> String {
        self.tag += 1;
        format!("{}{}", self.tag_prefix, self.tag)
    }
}

const CAPS: &str =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN";
const CAPS_AFTER_LOGIN: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE COMPRESS=DEFLATE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY LITERAL+ NOTIFY SPECIAL-USE";

impl Session {
    fn im(&mut self) -> &mut Imap {
        self.imap.as_deref_mut().expect("IMAP session")
    }

    /// Client line `cmd`, then server lines `reply`, as one round trip.
    fn im_exchange(&mut self, cmd: &[u8], reply: &[u8]) {
        let c = self.mark();
        self.local.extend_from_slice(cmd);
        let r = self.mark();
        self.local.extend_from_slice(reply);
        self.exchange(c, r, false);
    }

    /// Queues local[a..b] on `dir`'s flight; returns its length.
    fn im_queue_local(&mut self, dir: usize, a: usize, b: usize) -> u64 {
        self.flights[dir].push_back(Seg {
            src: SRC_LOCAL,
            start: a as u32,
            end: b as u32,
        });
        (b - a) as u64
    }

    /// The next step of the script; once COMPRESS is active, what it
    /// queued is deflated.
    pub(super) fn imap_advance(&mut self, ctx: &mut Ctx) {
        let compressed = self.im().deflate.is_some();
        self.imap_step(ctx);
        if compressed {
            self.im_deflate_queued(ctx);
        }
    }

    fn imap_step(&mut self, ctx: &mut Ctx) {
        let step = self.im().step;
        match step {
            Step::Greeting => {
                let a = self.mark();
                if self.im().ask_caps {
                    self.local
                        .extend_from_slice(b"* OK Dovecot (Debian) ready.\r\n");
                } else {
                    let _ = write!(
                        self.local,
                        "* OK [CAPABILITY {CAPS}] Dovecot (Debian) ready.\r\n"
                    );
                }
                let d = self.rng.range32(300, 5_000);
                self.send_local(S, a, d);
                self.maybe_client_ack();
                self.im().step = if self.im().ask_caps {
                    Step::Capability
                } else {
                    Step::Login
                };
            }
            Step::Capability => {
                let t = self.im().tag();
                self.im_exchange(
                    format!("{t} CAPABILITY\r\n").as_bytes(),
                    format!("* CAPABILITY {CAPS}\r\n{t} OK Pre-login capabilities listed, post-login capabilities have more.\r\n").as_bytes(),
                );
                self.im().step = Step::Login;
            }
            Step::Login => {
                let user = self.im().user.clone();
                let pass = format!("pw{:08x}", self.rng.next_u64() as u32);
                let ok = format!("OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in\r\n");
                match self.im().login {
                    Credentials::Login | Credentials::LoginRetry => {
                        if self.im().login == Credentials::LoginRetry {
                            let t = self.im().tag();
                            let bad =
                                format!("{t} LOGIN {user} wrong{:04x}\r\n", self.rng.below(65536));
                            self.im_exchange(
                                bad.as_bytes(),
                                format!("{t} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                                    .as_bytes(),
                            );
                        }
                        let t = self.im().tag();
                        self.im_exchange(
                            format!("{t} LOGIN \"{user}\" \"{pass}\"\r\n").as_bytes(),
                            format!("{t} {ok}").as_bytes(),
                        );
                    }
                    Credentials::PlainIr | Credentials::PlainContinued => {
                        let t = self.im().tag();
                        let mut cred = Vec::new();
                        base64_into(&mut cred, format!("\0{user}\0{pass}").as_bytes());
                        cred.extend_from_slice(b"\r\n");
                        if self.im().login == Credentials::PlainIr {
                            let mut cmd = format!("{t} AUTHENTICATE PLAIN ").into_bytes();
                            cmd.extend_from_slice(&cred);
                            self.im_exchange(&cmd, format!("{t} {ok}").as_bytes());
                        } else {
                            self.im_exchange(
                                format!("{t} AUTHENTICATE PLAIN\r\n").as_bytes(),
                                b"+ \r\n",
                            );
                            self.im_exchange(&cred, format!("{t} {ok}").as_bytes());
                        }
                    }
                }
                self.im().step = Step::Select;
            }
            Step::Select => {
                let t = self.im().tag();
                let im = self.im();
                let (cmd, rw) = if im.examine {
                    ("EXAMINE", "READ-ONLY")
                } else {
                    ("SELECT", "READ-WRITE")
                };
                let mbox = im.mailbox;
                let reply = format!(
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk)\r\n\
                     * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded $Junk \\*)] Flags permitted.\r\n\
                     * {} EXISTS\r\n* 0 RECENT\r\n\
                     * OK [UIDVALIDITY {UIDVALIDITY}] UIDs valid\r\n\
                     * OK [UIDNEXT {}] Predicted next UID\r\n\
                     {t} OK [{rw}] {} completed (0.001 + 0.000 secs).\r\n",
                    im.exists,
                    im.uidnext,
                    if im.examine { "Examine" } else { "Select" }
                );
                let quoted = mbox.contains('/') || self.rng.pct(30);
                let cmd = if quoted {
                    format!("{t} {cmd} \"{mbox}\"\r\n")
                } else {
                    format!("{t} {cmd} {mbox}\r\n")
                };
                self.im_exchange(cmd.as_bytes(), reply.as_bytes());
                self.im().step = Step::Work;
            }
            Step::Work => {
                let im = self.im();
                let Some(&op) = im.ops.get(im.next) else {
                    self.im().step = Step::Logout;
                    return self.imap_step(ctx);
                };
                im.next += 1;
                match op {
                    Op::Fetch { n, uid } => self.im_fetch(ctx, n, uid),
                    Op::Chunked { uid } => self.im_fetch_chunked(ctx, uid),
                    Op::Append { plus } => self.im_append(ctx, plus),
                    Op::Idle => self.im_idle(),
                    Op::Compress => {
                        let t = self.im().tag();
                        // (a sensor needs the command and its OK to know
                        // the rest is deflated: spans start there)
                        let at = [self.stream_off(C), self.stream_off(S)];
                        self.im().compress_at = at;
                        self.im_exchange(
                            format!("{t} COMPRESS DEFLATE\r\n").as_bytes(),
                            format!("{t} OK Begin compression.\r\n").as_bytes(),
                        );
                        let level = flate2::Compression::new(self.rng.range32(1, 9));
                        self.im().deflate = Some(Box::new([
                            flate2::Compress::new(level, false),
                            flate2::Compress::new(level, false),
                        ]));
                    }
                    Op::Noop => {
                        let t = self.im().tag();
                        self.im_exchange(
                            format!("{t} NOOP\r\n").as_bytes(),
                            format!("{t} OK NOOP completed (0.001 + 0.000 secs).\r\n").as_bytes(),
                        );
                    }
                }
            }
            Step::Logout if self.abandon => {
                self.unclosed = true;
                self.stage = super::Stage::Done;
            }
            Step::Logout => {
                let t = self.im().tag();
                self.im_exchange(
                    format!("{t} LOGOUT\r\n").as_bytes(),
                    format!(
                        "* BYE Logging out\r\n{t} OK Logout completed (0.001 + 0.001 secs).\r\n"
                    )
                    .as_bytes(),
                );
                self.teardown_server_first();
                self.stage = super::Stage::Done;
            }
        }
    }

    /// `n` FETCH (or UID FETCH) commands in one client segment, then their
    /// responses (each with its tagged OK) in one server flight.
    fn im_fetch(&mut self, ctx: &mut Ctx, n: u8, uid: bool) {
        // The commands first: each one's item is drawn here.
        let c = self.mark();
        let mut planned = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t = self.im().tag();
            let (exists, uidnext) = (self.im().exists, self.im().uidnext);
            let seq = self.rng.range32(1, exists);
            let msg_uid = seq + (uidnext - exists - 1);
            let item = match self.rng.below(100) {
                0..=24 => Item::BodyPeek,
                25..=44 => Item::Body,
                45..=59 => Item::Rfc822,
                60..=69 => Item::Header,
                70..=74 => Item::Rfc822Header,
                75..=84 => Item::Text,
                85..=92 => Item::Head,
                _ => Item::Rest,
            };
            // The message is built after the commands are written: a
            // partial fetch's origin lies inside every header block (at
            // least ~500 bytes), and a count past the end gets what there
            // is (RFC 3501).
            let (head_cut, rest_from) = (self.rng.range(64, 600), self.rng.range(100, 400));
            let req = match item {
                Item::Body => "BODY[]".to_string(),
                Item::BodyPeek => "BODY.PEEK[]".to_string(),
                Item::Rfc822 => "RFC822".to_string(),
                Item::Header => "BODY.PEEK[HEADER]".to_string(),
                Item::Rfc822Header => "RFC822.HEADER".to_string(),
                Item::Text => "BODY[TEXT]".to_string(),
                Item::Head => format!("BODY.PEEK[]<0.{head_cut}>"),
                Item::Rest => format!("BODY.PEEK[]<{rest_from}.100000000>"),
            };
            let with_flags = self.rng.pct(40);
            let items = if with_flags {
                format!("(FLAGS {req})")
            } else {
                req
            };
            if uid {
                let _ = write!(self.local, "{t} UID FETCH {msg_uid} {items}\r\n");
            } else {
                let _ = write!(self.local, "{t} FETCH {seq} {items}\r\n");
            }
            planned.push((t, seq, msg_uid, item, with_flags, head_cut, rest_from));
        }
        let r = self.mark();
        let cmd_off = self.stream_off(C);
        self.im_queue_local(C, c, r);
        let think = self.think();
        self.push_data(C, (r - c) as u64, think, false);

        let s_off = self.stream_off(S);
        let run = self.im_next_run(S);
        let mut total = 0u64;
        for (t, seq, msg_uid, item, with_flags, head_cut, rest_from) in planned {
            let m = self.build_message(ctx);
            let len = m.len;
            let hdr = m.hdr_end.min(len);
            let (a, b, label) = match item {
                Item::Body | Item::BodyPeek => (0, len, "BODY[]".to_string()),
                Item::Rfc822 => (0, len, "RFC822".to_string()),
                Item::Header => (0, hdr, "BODY[HEADER]".to_string()),
                Item::Rfc822Header => (0, hdr, "RFC822.HEADER".to_string()),
                Item::Text => (hdr, len, "BODY[TEXT]".to_string()),
                Item::Head => (0, head_cut.min(len), "BODY[]<0>".to_string()),
                Item::Rest => {
                    let o = rest_from.min(len.saturating_sub(1));
                    (o, len, format!("BODY[]<{o}>"))
                }
            };
            let p = self.mark();
            let _ = write!(self.local, "* {seq} FETCH (");
            if uid {
                let _ = write!(self.local, "UID {msg_uid} ");
            }
            if with_flags {
                self.local.extend_from_slice(b"FLAGS (\\Seen) ");
            }
            let _ = write!(self.local, "{label} {{{}}}\r\n", b - a);
            let q = self.mark();
            let line_off = s_off + total;
            total += self.im_queue_local(S, p, q);
            let lit0 = s_off + total;
            total += super::framing::push_slice(&mut self.flights[S], &m.segs, a, b);
            let lit = (lit0, s_off + total);
            let e = self.mark();
            let _ = write!(
                self.local,
                ")\r\n{t} OK Fetch completed (0.001 + 0.000 + 0.001 secs).\r\n"
            );
            let f = self.mark();
            total += self.im_queue_local(S, e, f);
            let partial = !matches!(item, Item::Body | Item::BodyPeek | Item::Rfc822);
            let (base, origin) = match item {
                Item::Head => ("BODY[]", Some(0)),
                Item::Rest => ("BODY[]", Some(a)),
                Item::Body | Item::BodyPeek => ("BODY[]", None),
                Item::Rfc822 => ("RFC822", None),
                Item::Header => ("BODY[HEADER]", None),
                Item::Rfc822Header => ("RFC822.HEADER", None),
                Item::Text => ("BODY[TEXT]", None),
            };
            let mailbox = self.im().mailbox;
            self.im().cur = Some(ImapTruth {
                append: false,
                mailbox,
                section: base,
                origin,
                seq: Some(seq),
                uid: uid.then_some(msg_uid),
                compressed: self.im().deflate.is_some(),
                pieces: 1,
            });
            self.report_range(ctx, &m, a as usize, b as usize, partial);
            self.im_span(ctx, S, cmd_off, line_off, lit, run);
        }
        let d = self.reply_delay(false);
        self.push_data(S, total, d, true);
        self.maybe_client_ack();
    }

    /// One message fetched in pieces of `n` bytes, one round trip each.
    fn im_fetch_chunked(&mut self, ctx: &mut Ctx, uid: bool) {
        let (exists, uidnext) = (self.im().exists, self.im().uidnext);
        let seq = self.rng.range32(1, exists);
        let msg_uid = seq + (uidnext - exists - 1);
        let n = self.rng.range(256, 2_048);
        let with_size = self.rng.pct(50);
        let m = self.build_message(ctx);
        let len = m.len;
        let mut o = 0u64;
        let mut first: Option<(u64, u64)> = None;
        let mut lits = Vec::new();
        let mut last_run;
        let mut pieces = 0;
        loop {
            let t = self.im().tag();
            let c = self.mark();
            if uid {
                let _ = write!(
                    self.local,
                    "{t} UID FETCH {msg_uid} (UID BODY.PEEK[]<{o}.{n}>)\r\n"
                );
            } else {
                let _ = write!(self.local, "{t} FETCH {seq} (BODY.PEEK[]<{o}.{n}>)\r\n");
            }
            let r = self.mark();
            let cmd_off = self.stream_off(C);
            self.im_queue_local(C, c, r);
            let think = self.think();
            self.push_data(C, (r - c) as u64, think, false);
            let s_off = self.stream_off(S);
            last_run = self.im_next_run(S);
            let b = (o + n).min(len);
            let p = self.mark();
            let _ = write!(self.local, "* {seq} FETCH (");
            if uid {
                let _ = write!(self.local, "UID {msg_uid} ");
            }
            if with_size && o == 0 {
                let _ = write!(self.local, "RFC822.SIZE {len} ");
            }
            let _ = write!(self.local, "BODY[]<{o}> {{{}}}\r\n", b - o);
            let q = self.mark();
            let mut total = self.im_queue_local(S, p, q);
            let lit0 = s_off + total;
            total += super::framing::push_slice(&mut self.flights[S], &m.segs, o, b);
            lits.push((lit0, s_off + total));
            pieces += 1;
            first.get_or_insert((cmd_off, s_off));
            let e = self.mark();
            let _ = write!(
                self.local,
                ")\r\n{t} OK Fetch completed (0.001 + 0.000 secs).\r\n"
            );
            let f = self.mark();
            total += self.im_queue_local(S, e, f);
            let d = self.reply_delay(false);
            self.push_data(S, total, d, true);
            self.maybe_client_ack();
            let short = b - o < n;
            o = b;
            if short || (with_size && o >= len) {
                break;
            }
        }
        let mailbox = self.im().mailbox;
        self.im().cur = Some(ImapTruth {
            append: false,
            mailbox,
            section: "BODY[]",
            origin: None,
            seq: Some(seq),
            uid: uid.then_some(msg_uid),
            compressed: self.im().deflate.is_some(),
            pieces,
        });
        self.report_range(ctx, &m, 0, len as usize, false);
        if ctx.on_span.is_none() {
            return;
        }
        let (cmd_off, line_off) = first.expect("one piece at least");
        let mut sp = self.new_span(S, cmd_off);
        if self.im().deflate.is_some() {
            let at = self.im().compress_at;
            sp.start = at[C];
            sp.data_mark = (S, at[S]);
            self.im().pending_spans.push((sp, S, last_run));
        } else {
            sp.data_mark = (S, line_off);
            let end = lits.last().map_or(line_off, |l| l.1);
            sp.data = lits;
            sp.end = (S, end);
            self.span = Some(sp);
            self.emit_span(ctx);
        }
    }

    /// APPEND of one new message to the Sent mailbox, with flags and an
    /// internal date; a synchronizing literal waits for `+ OK`.
    fn im_append(&mut self, ctx: &mut Ctx, plus: bool) {
        let t = self.im().tag();
        let m = self.build_message(ctx);
        let len = m.len;
        let c = self.mark();
        let _ = write!(
            self.local,
            "{t} APPEND {SENT} (\\Seen) \"{:02}-Dec-2026 10:{:02}:{:02} +0000\" {{{len}{}}}\r\n",
            self.rng.range32(1, 28),
            self.rng.below(60),
            self.rng.below(60),
            if plus { "+" } else { "" }
        );
        let r = self.mark();
        let cmd_off = self.stream_off(C);
        let mut total = 0;
        if plus {
            total += self.im_queue_local(C, c, r);
        } else {
            self.local.extend_from_slice(b"+ OK\r\n");
            let e = self.mark();
            self.exchange(c, r, false);
            // `exchange` queued local[r..] as the continuation
            debug_assert_eq!(e, self.local.len());
        }
        let lit0 = cmd_off + (r - c) as u64;
        let run = self.im_next_run(C);
        total += super::framing::push_slice(&mut self.flights[C], &m.segs, 0, len);
        let a = self.mark();
        self.local.extend_from_slice(b"\r\n");
        let b = self.mark();
        total += self.im_queue_local(C, a, b);
        let think = self.think();
        self.push_data(C, total, think, true);
        let uid = self.im().uidnext;
        self.im().uidnext += 1;
        let a = self.mark();
        let _ = write!(
            self.local,
            "{t} OK [APPENDUID {} {uid}] Append completed (0.002 + 0.000 + 0.001 secs).\r\n",
            UIDVALIDITY + 1
        );
        let d = self.reply_delay(false);
        self.send_local(S, a, d);
        self.maybe_client_ack();
        self.im().cur = Some(ImapTruth {
            append: true,
            mailbox: SENT,
            section: "APPEND",
            origin: None,
            seq: None,
            uid: Some(uid),
            compressed: self.im().deflate.is_some(),
            pieces: 1,
        });
        self.report_range(ctx, &m, 0, len as usize, false);
        self.im_span(ctx, C, cmd_off, cmd_off, (lit0, lit0 + len), run);
    }

    /// IDLE, a new message announced, DONE.
    fn im_idle(&mut self) {
        let t = self.im().tag();
        self.im_exchange(format!("{t} IDLE\r\n").as_bytes(), b"+ idling\r\n");
        let exists = self.im().exists + 1;
        self.im().exists = exists;
        let a = self.mark();
        let _ = write!(self.local, "* {exists} EXISTS\r\n");
        let d = self.rng.range32(50_000, 2_000_000);
        self.send_local(S, a, d);
        self.maybe_client_ack();
        self.im_exchange(
            b"DONE\r\n",
            format!("{t} OK Idle completed (0.001 + 1.512 + 1.511 secs).\r\n").as_bytes(),
        );
    }
}
