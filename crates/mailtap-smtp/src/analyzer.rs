//! The SMTP protocol state machine (Zeek's `SMTP_Analyzer`): per-direction
//! line splitting, command/reply pairing through the pending-command queue,
//! DATA and BDAT message transfer, AUTH, STARTTLS hand-off, content gaps,
//! analyzer violations, and the `smtp_*` events; it drives the script layer
//! in [`crate::record`] in event order.

use crate::bdat::Bdat;
use crate::config::SmtpConfig;
use crate::headers::extract_email_addrs;
use crate::parser::{parse_bdat_arg, parse_reply, split_command, Cmd, ReplyLine};
use crate::record::Script;
use mailtap_contentline::{LineSplitter, Nuls, Piece};
use mailtap_core::mail::{EmailMeta, MailProtocol};
use mailtap_core::{Bytes, ConnCtx, Event, Record, TcpAnalyzer, Timestamp, Weird};
use mailtap_mime::{MessageAnalyzer, MessageContext, MimeSink, Source};
use std::collections::VecDeque;
use std::sync::Arc;

#[path = "resync.rs"]
mod resync;
use resync::Hunt;

/// Recipients remembered per transaction for the extraction metadata.
const MAX_META_RCPTS: usize = 1000;

/// Zeek's SMTP states; the numbers appear in `smtp_unexpected` details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Connected = 0,
    Initiated = 1,
    NotAvailable = 2,
    Ready = 3,
    MailOk = 4,
    RcptOk = 5,
    InData = 6,
    AfterData = 7,
    InAuth = 8,
    InTls = 9,
    Quit = 10,
    AfterGap = 11,
    GapRecovery = 12,
    InBdat = 13,
}

/// Counters of one analyzer instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmtpStats {
    pub commands: u64,
    pub replies: u64,
    pub data_lines: u64,
    pub bdat_bytes: u64,
    pub gaps: u64,
    pub violations: u64,
}

/// SMTP analyzer for one TCP connection.
pub struct SmtpAnalyzer {
    /// Line splitters, indexed by `is_orig as usize` (0 = responder).
    lines: [LineSplitter; 2],
    p: Proto,
    disabled: bool,
    finished: bool,
    /// Set when a STARTTLS was accepted (220) during the last delivery:
    /// the offset in that delivery where the TLS bytes begin.
    tls_handoff: Option<usize>,
}

/// Protocol state, kept apart from the splitters so a borrowed line and
/// the state can be used together.
struct Proto {
    cfg: Arc<SmtpConfig>,
    state: State,
    first_cmd: Option<Cmd>,
    pending: VecDeque<Cmd>,
    last_replied: Option<Cmd>,
    pending_reply: u16,
    orig_is_sender: bool,
    /// The MIME layer (one message open at a time).
    mime: MessageAnalyzer,
    /// Extraction state of the current transaction / message.
    ext: Extract,
    bdat: Option<Bdat>,
    confirmed: bool,
    /// Plain-delivery length to set on a splitter after the current line
    /// (splitter index, length; 0 cancels).
    plain_cmd: Option<(usize, u64)>,
    /// Payload bytes seen in both directions (DPD's size check).
    bytes_seen: u64,
    /// Next relative sequence number per direction, for gap messages.
    seq: [u64; 2],
    /// An analyzer violation asked DPD to disable us.
    violation_disable: bool,
    script: Script,
    stats: SmtpStats,
    /// Picked up mid-stream and not yet synchronised (see `resync`).
    hunt: Option<Hunt>,
    /// The bytes the splitter dropped when it cut the current line at the
    /// length limit (put back into the extracted message).
    cut_lost: Option<[u8; 2]>,
    /// The previous line of this direction was cut at the length limit:
    /// the current one continues it (responder first).
    after_cut: [bool; 2],
    /// The line being handled continues a cut one.
    cont_line: bool,
}

impl SmtpAnalyzer {
    pub fn new(cfg: Arc<SmtpConfig>) -> Self {
        let max_line = cfg.max_line_length;
        let files = cfg.files.clone();
        let mut p = Proto {
            cfg,
            state: State::Connected,
            first_cmd: Some(Cmd::ConnEstablishment),
            pending: VecDeque::new(),
            last_replied: None,
            pending_reply: 0,
            orig_is_sender: true,
            mime: MessageAnalyzer::new(files),
            ext: Extract::default(),
            bdat: None,
            confirmed: false,
            plain_cmd: None,
            bytes_seen: 0,
            seq: [1, 1],
            violation_disable: false,
            script: Script::default(),
            stats: SmtpStats::default(),
            hunt: None,
            cut_lost: None,
            after_cut: [false; 2],
            cont_line: false,
        };
        // CONN_ESTABLISHMENT with reply 0: CONNECTED -> INITIATED, no events.
        p.state = State::Initiated;
        SmtpAnalyzer {
            lines: [
                LineSplitter::new(max_line, Nuls::DropFirst),
                LineSplitter::new(max_line, Nuls::DropFirst),
            ],
            p,
            disabled: false,
            finished: false,
            tls_handoff: None,
        }
    }

    /// Current protocol state.
    pub fn state(&self) -> State {
        self.p.state
    }

    pub fn stats(&self) -> SmtpStats {
        self.p.stats
    }

    /// smtp.log records written so far.
    pub fn records_written(&self) -> u64 {
        self.p.script.records_written
    }

    /// True once STARTTLS was accepted: the rest of the connection is TLS.
    pub fn in_tls(&self) -> bool {
        self.p.state == State::InTls
    }

    /// The offset in the last delivered data where TLS began, if a
    /// STARTTLS was accepted during that delivery (once).
    pub fn take_tls_handoff(&mut self) -> Option<usize> {
        self.tls_handoff.take()
    }

    /// Splits and handles lines; returns where it stopped in `data` (its
    /// end, or the end of the line that switched the session to TLS).
    fn feed(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) -> usize {
        let dir = usize::from(is_orig);
        let mut pos = 0usize;
        while self.p.state != State::InTls {
            let mut lost = None;
            // Message lines may be long; commands and replies need not be.
            let in_message = matches!(
                self.p.state,
                State::InData | State::InBdat | State::AfterGap
            ) || self.p.hunt.is_some();
            self.lines[dir].set_max_line(if in_message {
                self.p.cfg.max_line_length
            } else {
                self.p.cfg.max_command_line_length
            });
            let Some(piece) = self.lines[dir].next_cut(cx, data, &mut pos, &mut lost) else {
                break;
            };
            let hunting = self.p.hunt.is_some();
            self.p.cut_lost = lost;
            self.p.piece(cx, is_orig, piece);
            self.p.cut_lost = None;
            if hunting && self.p.hunt.is_none() {
                for sp in &mut self.lines {
                    sp.set_quiet(false);
                }
            }
            if let Some((idx, n)) = self.p.plain_cmd.take() {
                if let Some(sp) = self.lines.get_mut(idx) {
                    sp.set_plain(n);
                }
            }
        }
        self.apply_disable(cx);
        pos
    }

    /// Disabling (by the script or DPD) takes effect once the current
    /// packet is processed, as Zeek's event-driven disable does.
    fn apply_disable(&mut self, cx: &mut ConnCtx<'_>) {
        if !self.disabled && (self.p.script.disable_requested || self.p.violation_disable) {
            self.disabled = true;
            // Removing the analyzer runs its Done(): an open message ends.
            if self.p.mime.in_message() {
                self.p.end_data(cx, false);
            }
            self.p.emit_meta(cx);
        }
    }
}

impl TcpAnalyzer for SmtpAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        if self.disabled || self.finished || data.is_empty() {
            return;
        }
        let dir = usize::from(is_orig);
        self.p.bytes_seen = self.p.bytes_seen.saturating_add(data.len() as u64);
        self.p.seq[dir] = self.p.seq[dir].saturating_add(data.len() as u64);
        if self.p.state == State::InTls {
            // The TLS analyzer takes these bytes.
            return;
        }
        let pos = self.feed(cx, is_orig, data);
        if self.p.state == State::InTls {
            self.tls_handoff = Some(pos.min(data.len()));
        }
    }

    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        if self.disabled || self.finished || len == 0 {
            return;
        }
        let dir = usize::from(is_orig);
        let seq = self.p.seq[dir];
        self.p.seq[dir] = seq.saturating_add(len);
        self.p.bytes_seen = self.p.bytes_seen.saturating_add(len);
        if self.p.state == State::InTls {
            return;
        }
        self.p.gap(cx, is_orig, seq, len);
        if let Some((idx, n)) = self.p.plain_cmd.take() {
            if let Some(sp) = self.lines.get_mut(idx) {
                sp.set_plain(n);
            }
        }
    }

    fn eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        if self.disabled || self.finished || self.p.state == State::InTls {
            return;
        }
        // ContentLine flushes a partial line at end of stream.
        if self.lines[usize::from(is_orig)].has_partial() {
            self.feed(cx, is_orig, b"\n");
        }
    }

    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.p.abandon_tail(cx);
        if !self.disabled && self.p.mime.in_message() {
            self.p.end_data(cx, false);
        }
        self.p.emit_meta(cx);
        self.p.script.finish(cx);
    }

    fn disabled(&self) -> bool {
        self.disabled
    }

    fn start_midstream(&mut self) {
        self.p.hunt = Some(Hunt::default());
        for sp in &mut self.lines {
            sp.set_quiet(true);
        }
    }
}

impl Proto {
    fn sender_index(&self) -> usize {
        usize::from(self.orig_is_sender)
    }

    /// `smtp_unexpected`; `is_sender` is relative to the sender role.
    fn unexpected(&self, cx: &mut ConnCtx<'_>, is_sender: bool, msg: &'static str, detail: &[u8]) {
        let is_orig = if self.orig_is_sender {
            is_sender
        } else {
            !is_sender
        };
        cx.event(|| Event::SmtpUnexpected {
            is_orig,
            msg: msg.as_bytes().to_vec(),
            detail: detail.to_vec(),
        });
    }

    fn unexpected_command(&self, cx: &mut ConnCtx<'_>, cmd: Option<Cmd>, reply: u16) {
        if cx.events_enabled() {
            let d = format!(
                "{} reply = {} state = {}",
                cmd.map_or("(UNKNOWN)", Cmd::name),
                reply,
                self.state as u8
            );
            self.unexpected(cx, true, "unexpected command", d.as_bytes());
        }
    }

    fn unexpected_reply(&self, cx: &mut ConnCtx<'_>, cmd: Option<Cmd>, reply: u16) {
        if cx.events_enabled() {
            let d = format!(
                "{} state = {}, last command = {}",
                reply,
                self.state as u8,
                cmd.map_or("(UNKNOWN)", Cmd::name)
            );
            self.unexpected(cx, true, "unexpected reply", d.as_bytes());
        }
    }

    /// `smtp_request` (and analyzer confirmation before the first one).
    fn request(&mut self, cx: &mut ConnCtx<'_>, command: &[u8], arg: &[u8]) {
        if command.is_empty() && arg.is_empty() {
            return;
        }
        if !self.confirmed {
            self.confirmed = true;
            cx.confirm("smtp");
            self.script.on_confirm(cx, &self.cfg);
        }
        let is_orig = self.orig_is_sender;
        cx.event(|| Event::SmtpRequest {
            is_orig,
            command: command.to_ascii_uppercase(),
            arg: arg.to_vec(),
        });
        if cx.extract_enabled() {
            if command.eq_ignore_ascii_case(b"RCPT") {
                if self.ext.rcpt_pending.len() < MAX_META_RCPTS {
                    let a = extract_email_addrs(arg).into_iter().next();
                    self.ext
                        .rcpt_pending
                        .push_back(a.unwrap_or_else(|| arg.to_vec()));
                }
            } else if command.eq_ignore_ascii_case(b"MAIL") {
                self.ext.rcpt_ok.clear();
                self.ext.rcpt_bad.clear();
            }
        }
        self.script.on_request(cx, &self.cfg, command, arg);
    }

    fn new_cmd(&mut self, cx: &mut ConnCtx<'_>, cmd: Cmd) {
        self.stats.commands += 1;
        if self.first_cmd.is_none() {
            self.first_cmd = Some(cmd);
        } else {
            self.pending.push_back(cmd);
            if self.pending.len() > self.cfg.max_pending_commands {
                cx.weird(Weird::SmtpExcessivePendingCmds, None, "SMTP");
                self.pending.clear();
            }
        }
    }

    /// One piece from a line splitter.
    fn piece(&mut self, cx: &mut ConnCtx<'_>, orig: bool, piece: Piece<'_>) {
        if self.hunt.is_some() {
            match piece {
                Piece::Line(l, t) => match self.hunt_line(cx, orig, l, t) {
                    Some(at) => {
                        let l = &l[at.min(l.len())..];
                        let is_sender = orig == self.orig_is_sender;
                        if is_sender {
                            self.sender_line(cx, orig, l, t);
                        } else {
                            self.receiver_line(cx, orig, is_sender, l);
                        }
                        return;
                    }
                    None => return,
                },
                Piece::LateLf => return self.hunt_late_lf(orig),
                Piece::Plain(_) => return,
            }
        }
        let (mut line, plain, term) = match piece {
            Piece::Line(l, t) => (l, false, t),
            Piece::Plain(l) => (l, true, &b""[..]),
            Piece::LateLf => {
                // The LF of a CRLF split across deliveries: message bytes.
                if orig == self.orig_is_sender {
                    if self.state == State::InData {
                        self.mime.raw(cx, b"\n");
                    } else if let Some(t) = self.ext.tail.as_mut() {
                        if !t.ended && t.bytes.last() == Some(&b'\r') {
                            t.bytes.push(b'\n');
                        }
                    }
                }
                return;
            }
        };
        let is_sender = orig == self.orig_is_sender;
        if is_sender && self.bdat.is_some() {
            let n = self.bdat_consume(cx, line);
            line = &line[n..];
            if self.bdat.as_ref().is_some_and(Bdat::complete) {
                // LAST chunk complete: end of data right away, not queued.
                self.update_state(cx, Some(Cmd::EndOfData), 0, orig);
            }
            if n > 0 && line.is_empty() {
                return;
            }
        }
        // Only plain leftovers can carry CR/LF; split lines never do, so
        // the per-line scan is skipped on the hot path.
        if plain && line.last() == Some(&b'\r') {
            self.unexpected(cx, is_sender, "more than one <CR> at the end of line", line);
            while line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
        }
        if plain && memchr::memchr2(b'\r', b'\n', line).is_some() {
            self.unexpected(
                cx,
                is_sender,
                "Bare <CR> or <LF> appears in the middle of line",
                line,
            );
        }
        // The rest of a command or reply line cut at the length limit
        // belongs to the line already handled: one request (an AUTH
        // answer, a long RCPT), not several that would shift the pairing.
        let dir = usize::from(orig);
        let continues = std::mem::replace(&mut self.after_cut[dir], term.is_empty() && !plain);
        if continues && !(is_sender && self.state == State::InData) {
            return;
        }
        self.cont_line = continues;
        if is_sender {
            self.sender_line(cx, orig, line, term);
        } else {
            self.receiver_line(cx, orig, is_sender, line);
        }
    }

    /// Feeds owed chunk bytes to the BDAT transfer; returns bytes used.
    fn bdat_consume(&mut self, cx: &mut ConnCtx<'_>, data: &[u8]) -> usize {
        let Proto {
            bdat,
            mime,
            script,
            cfg,
            stats,
            ..
        } = self;
        let Some(b) = bdat.as_mut() else { return 0 };
        let n = usize::try_from(b.remaining())
            .unwrap_or(usize::MAX)
            .min(data.len());
        if n > 0 {
            stats.bdat_bytes += n as u64;
            // The chunk bytes as transferred (size, hash, extraction).
            mime.raw(cx, &data[..n]);
            b.deliver(cx, &data[..n], &mut |cx, l| {
                mime.mime_line(cx, l, &mut ScriptSink { script, cfg })
            });
        }
        n
    }

    fn sender_line(&mut self, cx: &mut ConnCtx<'_>, orig: bool, line: &[u8], term: &[u8]) {
        match self.state {
            // Unknown whether command or data: swallowed (the extraction
            // may still be following the message's data).
            State::AfterGap => self.tail_line(cx, line, term),
            State::InData if line == b"." => {
                self.new_cmd(cx, Cmd::EndOfData);
                self.update_state(cx, Some(Cmd::EndOfData), 0, orig);
                self.request(cx, b".", b".");
            }
            State::InData => {
                let data = line.strip_prefix(b".").unwrap_or(line);
                if !self.mime.in_message() {
                    self.begin_data(cx, orig);
                }
                self.stats.data_lines += 1;
                // Extraction stays byte-exact across a line cut at the
                // length limit: the dropped bytes go back in, and the rest
                // of the cut line keeps its leading dot (it is not a line
                // start on the wire).
                let exact = if self.cont_line { line } else { data };
                self.mime.raw(cx, exact);
                self.mime.raw(cx, term);
                if term.is_empty() {
                    if let Some(lost) = self.cut_lost {
                        self.mime.raw(cx, &lost);
                    }
                }
                let Proto {
                    mime, script, cfg, ..
                } = self;
                mime.mime_line(cx, data, &mut ScriptSink { script, cfg });
                cx.event(|| Event::SmtpData {
                    is_orig: orig,
                    data: data.to_vec(),
                });
            }
            State::InAuth => {
                self.new_cmd(cx, Cmd::AuthAnswer);
                self.request(cx, b"**", line);
                self.update_state(cx, Some(Cmd::AuthAnswer), 0, orig);
            }
            _ => {
                let (word, arg) = split_command(line);
                let Some(cmd) = Cmd::parse(word) else {
                    self.unexpected(cx, true, "unknown command", word);
                    return;
                };
                self.new_cmd(cx, cmd);
                self.request(cx, word, arg);
                if cmd == Cmd::Bdat {
                    self.bdat_command(cx, orig, arg);
                    return;
                }
                if self.bdat.is_some() {
                    cx.weird(Weird::SmtpMissingBdatLastChunk, None, "SMTP");
                    self.end_data(cx, false);
                }
                self.update_state(cx, Some(cmd), 0, orig);
            }
        }
    }

    fn bdat_command(&mut self, cx: &mut ConnCtx<'_>, orig: bool, arg: &[u8]) {
        let a = match parse_bdat_arg(arg) {
            Ok(a) => a,
            Err(e) => {
                cx.weird(
                    Weird::SmtpInvalidBdatCommand,
                    Some(e.text().as_bytes()),
                    "SMTP",
                );
                return;
            }
        };
        if a.size > i64::MAX as u64 {
            cx.weird(
                Weird::SmtpHugeBdatChunk,
                Some(a.size.to_string().as_bytes()),
                "SMTP",
            );
            return;
        }
        self.ext.bdat_unreplied = self.ext.bdat_unreplied.saturating_add(1);
        if self.bdat.is_none() {
            self.begin_data(cx, orig);
            self.ext.bdat = true;
            self.state = State::InBdat;
            self.bdat = Some(Bdat::new(self.cfg.bdat_max_line_length));
        }
        if let Some(b) = self.bdat.as_mut() {
            b.next_chunk(a.size, a.last);
        }
        self.plain_cmd = Some((self.sender_index(), a.size));
        self.update_state(cx, Some(Cmd::Bdat), 0, orig);
    }

    fn receiver_line(&mut self, cx: &mut ConnCtx<'_>, orig: bool, is_sender: bool, line: &[u8]) {
        let (code, cont, msg) = match parse_reply(line) {
            ReplyLine::Reply { code, cont, msg } => (code, cont, msg),
            ReplyLine::OutOfRange => {
                self.unexpected(cx, is_sender, "reply code out of range", line);
                self.violation(cx);
                return;
            }
        };
        self.stats.replies += 1;
        if self.pending_reply != 0 && code != self.pending_reply {
            self.unexpected(
                cx,
                is_sender,
                "reply code does not match the continuing reply",
                line,
            );
            self.pending_reply = 0;
        }
        if self.pending_reply == 0 {
            self.new_reply(cx, code, orig);
        }
        self.pending_reply = if cont { code } else { 0 };
        let cmd = Cmd::reply_name(self.last_replied);
        cx.event(|| Event::SmtpReply {
            is_orig: orig,
            code: u32::from(code),
            cmd: cmd.as_bytes().to_vec(),
            msg: msg.to_vec(),
            cont_resp: cont,
        });
        self.script.on_reply(cx, &self.cfg, code, cmd, msg, cont);
        if !cont {
            self.meta_reply(cx, code, cmd, msg);
        }
    }

    fn new_reply(&mut self, cx: &mut ConnCtx<'_>, code: u16, orig: bool) {
        if self.ext.tail.as_ref().is_some_and(|t| !t.ended) {
            self.abandon_tail(cx);
        }
        if self.state == State::AfterGap {
            self.state = State::GapRecovery;
            self.request(cx, b"(UNKNOWN)", b"");
        }
        let cmd = self.first_cmd;
        if cmd == Some(Cmd::Rcpt) {
            if let Some(a) = self.ext.rcpt_pending.pop_front() {
                // A pipelined `MAIL`/`RCPT`/`BDAT n LAST` can finish the
                // message before the RCPT replies arrive: they then belong
                // to the waiting metadata.
                let (ok, bad) = match self.ext.meta.as_mut() {
                    Some(m) if self.ext.meta_rcpts_owed > 0 => {
                        self.ext.meta_rcpts_owed -= 1;
                        (&mut m.rcptto, &mut m.rcptto_rejected)
                    }
                    _ => (&mut self.ext.rcpt_ok, &mut self.ext.rcpt_bad),
                };
                if (200..300).contains(&code) {
                    if ok.len() < MAX_META_RCPTS {
                        ok.push(a);
                    }
                } else if bad.len() < MAX_META_RCPTS {
                    bad.push((a, u32::from(code)));
                }
            }
        }
        self.last_replied = cmd;
        self.first_cmd = self.pending.pop_front();
        self.update_state(cx, cmd, code, orig);
    }

    /// Analyzer violation; DPD disables the analyzer while the connection
    /// is still small.
    fn violation(&mut self, cx: &mut ConnCtx<'_>) {
        self.stats.violations += 1;
        let max = self.cfg.max_analyzer_violations;
        if self.stats.violations > max {
            if self.stats.violations == max.saturating_add(1) {
                cx.weird(Weird::TooManyAnalyzerViolations, None, "SMTP");
            }
            return;
        }
        let after = self.cfg.dpd_ignore_violations_after;
        if after == 0 || self.bytes_seen <= after {
            self.violation_disable = true;
        }
    }

    /// Zeek's `UpdateState(cmd, reply)`; reply 0 = command just seen.
    fn update_state(&mut self, cx: &mut ConnCtx<'_>, cmd: Option<Cmd>, reply: u16, orig: bool) {
        use State::*;
        let st = self.state;
        if st == Quit && reply == 0 {
            self.unexpected_command(cx, cmd, reply);
        }
        match cmd {
            Some(Cmd::ConnEstablishment) => match reply {
                0 => {
                    if st != Connected {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.state = Initiated;
                }
                220 => {}
                421 | 554 => self.state = NotAvailable,
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Ehlo | Cmd::Helo) => match reply {
                0 => {
                    if st != Initiated {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.state = Ready;
                }
                250 => {}
                421 | 500 | 501 | 504 | 550 => self.state = Initiated,
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Mail | Cmd::Send | Cmd::Soml | Cmd::Saml) => match reply {
                0 => {
                    if st != Ready {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.state = MailOk;
                }
                250 => {}
                421 | 451 | 452 | 500 | 501 | 503 | 550 | 552 | 553 => {
                    if self.state != InData {
                        self.state = Ready;
                    }
                }
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Rcpt) => match reply {
                0 => {
                    if st != MailOk && st != RcptOk {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.state = RcptOk;
                }
                250 | 251 | 421 | 450 | 451 | 452 | 500 | 501 | 503 | 550..=554 => {}
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Data) => match reply {
                0 => {
                    if self.state != RcptOk {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.begin_data(cx, orig);
                }
                354 => {}
                421 => {
                    if self.state == InData {
                        self.end_data(cx, false);
                    }
                    self.state = Quit;
                }
                451 | 500 | 501 | 503 | 554 => {
                    if self.state == InData {
                        self.end_data(cx, false);
                    }
                    self.state = Ready;
                }
                _ => {
                    self.unexpected_reply(cx, cmd, reply);
                    if self.state == InData {
                        self.end_data(cx, false);
                    }
                    self.state = Ready;
                }
            },
            Some(Cmd::Bdat) => match reply {
                0 => {
                    if st != RcptOk {
                        self.unexpected_command(cx, cmd, reply);
                    }
                    self.state = InBdat;
                }
                250 | 421 | 451 | 500 | 501 | 503 | 554 => {}
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::EndOfData) => {
                match reply {
                    0 => {
                        if st != InData && st != InBdat {
                            self.unexpected_command(cx, cmd, reply);
                        }
                        self.end_data(cx, true);
                        self.state = AfterData;
                    }
                    250 | 421 | 451 | 452 | 552 | 554 => {}
                    _ => self.unexpected_reply(cx, cmd, reply),
                }
                if reply > 0 {
                    self.state = Ready;
                }
            }
            Some(Cmd::Rset) => match reply {
                0 => self.state = Ready,
                250 => {}
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Quit) => match reply {
                0 => self.state = Quit,
                221 => {}
                _ => self.unexpected_reply(cx, cmd, reply),
            },
            Some(Cmd::Auth) => {
                if st != Ready {
                    self.unexpected_command(cx, cmd, reply);
                }
                match reply {
                    0 => {}
                    334 => self.state = InAuth,
                    _ => self.state = Initiated,
                }
            }
            Some(Cmd::AuthAnswer) => {
                if st != InAuth {
                    self.unexpected_command(cx, cmd, reply);
                }
                match reply {
                    0 => {}
                    334 => self.state = InAuth,
                    _ => self.state = Initiated,
                }
            }
            Some(Cmd::Turn) => {
                if st != Ready {
                    self.unexpected_command(cx, cmd, reply);
                }
                if reply == 250 {
                    self.orig_is_sender = !self.orig_is_sender;
                    self.state = Connected;
                }
            }
            Some(Cmd::Starttls | Cmd::XAnonymousTls) => {
                if st != Ready {
                    self.unexpected_command(cx, cmd, reply);
                }
                if reply == 220 {
                    self.start_tls(cx);
                }
            }
            Some(Cmd::Vrfy | Cmd::Expn | Cmd::Help | Cmd::Noop | Cmd::Etrn) | None => {
                if st == GapRecovery && reply == 354 {
                    self.begin_data(cx, orig);
                }
            }
        }
    }

    fn start_tls(&mut self, cx: &mut ConnCtx<'_>) {
        self.state = State::InTls;
        cx.event(|| Event::SmtpStarttls);
        self.script.on_starttls();
    }

    /// Starts a message (DATA command, first BDAT chunk, 354 after a gap).
    fn begin_data(&mut self, cx: &mut ConnCtx<'_>, orig: bool) {
        self.begin_message(cx, orig, false);
    }

    /// Starts a message whose beginning was not seen (mid-stream pickup):
    /// extracted, not parsed, incomplete.
    fn begin_headless(&mut self, cx: &mut ConnCtx<'_>, orig: bool) {
        self.begin_message(cx, orig, true);
        self.ext.midstream_envelope = true;
        self.ext.headless = true;
    }

    fn begin_message(&mut self, cx: &mut ConnCtx<'_>, orig: bool, headless: bool) {
        self.abandon_tail(cx);
        self.ext.tail = None;
        self.state = State::InData;
        if self.mime.in_message() {
            cx.weird(Weird::SmtpNestedMailTransaction, None, "SMTP");
            self.finish_message(cx, false);
        }
        // A message whose end-of-data reply never came.
        self.emit_meta(cx);
        let extract = if cx.extract_enabled() {
            self.ext.n = self.ext.n.saturating_add(1);
            Some(self.ext.n)
        } else {
            None
        };
        self.ext.start = cx.ts;
        self.ext.bdat = false;
        self.ext.early_status = None;
        let rec = self.script.current();
        self.ext.mailfrom = rec.and_then(|r| r.mailfrom.clone());
        self.ext.trans_depth = rec.map_or(1, |r| r.trans_depth);
        let peer = if orig { cx.id.orig_h } else { cx.id.resp_h };
        let ctx = MessageContext {
            source: Source::Smtp,
            is_orig: orig,
            local_orig: Some(self.cfg.is_local_addr(peer)),
            conn_start: cx.conn.start_time,
            trans_depth: self.script.trans_depth(),
            max_header_bytes: self.cfg.max_header_bytes,
            extract,
        };
        if headless {
            self.mime.begin_headless(cx, ctx);
            return;
        }
        let Proto {
            mime, script, cfg, ..
        } = self;
        mime.begin(cx, ctx, &mut ScriptSink { script, cfg });
    }

    /// Ends the open message; with extraction on, its metadata waits for
    /// the server's reply to the end of data.
    fn finish_message(&mut self, cx: &mut ConnCtx<'_>, complete: bool) {
        let Proto {
            mime, script, cfg, ..
        } = self;
        let extracting = self.ext.n > 0 && cx.extract_enabled();
        let s = mime.end(cx, &mut ScriptSink { script, cfg }, complete);
        // Ended before its end was seen (unless chunk arithmetic says
        // where it was), or begun after its start: the losses counted are
        // not all there is.
        let end_known = std::mem::take(&mut self.ext.end_known);
        let missing_unknown = (!complete && !end_known) || std::mem::take(&mut self.ext.headless);
        if !extracting {
            return;
        }
        let rec = self.script.current();
        let meta = EmailMeta {
            uid: cx.uid.to_owned(),
            n: self.ext.n,
            ts: self.ext.start,
            id: Some(*cx.id),
            protocol: Some(MailProtocol::Smtp),
            trans_depth: self.ext.trans_depth,
            helo: self.script.helo().cloned(),
            mailfrom: self.ext.mailfrom.take(),
            rcptto: std::mem::take(&mut self.ext.rcpt_ok),
            rcptto_rejected: std::mem::take(&mut self.ext.rcpt_bad),
            status_code: None,
            status_text: None,
            user: None,
            size: s.size,
            sha256: s.sha256.unwrap_or_default(),
            complete: s.complete,
            missing_bytes: s.missing_bytes,
            missing_unknown,
            partial: std::mem::take(&mut self.ext.midstream_envelope),
            headers: s.headers,
            attachments: s.attachments,
            tls: rec.is_some_and(|r| r.tls),
            imap: None,
        };
        self.ext.meta = Some(Box::new(meta));
        self.ext.meta_rcpts_owed = self.ext.rcpt_pending.len();
        self.ext.meta_bdat = self.ext.bdat;
        if let Some((code, text)) = self.ext.early_status.take() {
            if let Some(m) = self.ext.meta.as_mut() {
                m.status_code = Some(code);
                m.status_text = Some(text);
            }
            self.emit_meta(cx);
        }
    }

    /// The final line of a reply: the end-of-data status of a waiting
    /// message's metadata.
    fn meta_reply(&mut self, cx: &mut ConnCtx<'_>, code: u16, cmd: &str, msg: &[u8]) {
        if cmd == "BDAT" {
            self.ext.bdat_unreplied = self.ext.bdat_unreplied.saturating_sub(1);
        }
        let Some(meta) = self.ext.meta.as_mut() else {
            // The last chunk of a BDAT transfer can be answered before the
            // transfer is finished (`BDAT 0 LAST` ends at the next client
            // data): keep the status for the message being finished.
            if cmd == "BDAT"
                && self.ext.bdat_unreplied == 0
                && self.bdat.as_ref().is_some_and(Bdat::complete)
            {
                self.ext.early_status = Some((u32::from(code), msg.to_vec()));
            }
            return;
        };
        if self.ext.tail.take().is_some() {
            // The reply to the end of data of a message followed past a
            // gap (Zeek pairs it with no command).
            meta.status_code = Some(u32::from(code));
            meta.status_text = Some(msg.to_vec());
            self.emit_meta(cx);
            return;
        }
        let ours = if self.ext.meta_bdat {
            cmd == "BDAT" && self.ext.bdat_unreplied == 0
        } else {
            cmd == "."
        };
        if ours {
            meta.status_code = Some(u32::from(code));
            meta.status_text = Some(msg.to_vec());
            self.emit_meta(cx);
        }
    }

    /// Emits the waiting metadata record, if any.
    fn emit_meta(&mut self, cx: &mut ConnCtx<'_>) {
        self.ext.meta_rcpts_owed = 0;
        if let Some(meta) = self.ext.meta.take() {
            cx.emit(Record::EmailMeta(meta));
        }
    }

    /// Ends the current message (and an open BDAT transfer).
    fn end_data(&mut self, cx: &mut ConnCtx<'_>, complete: bool) {
        let mut complete = complete;
        if let Some(mut b) = self.bdat.take() {
            if b.remaining() > 0 {
                cx.weird(Weird::SmtpBdatRemainingAtEndData, None, "SMTP");
                complete = false;
            }
            let Proto {
                mime, script, cfg, ..
            } = self;
            b.close(cx, &mut |cx, l| {
                mime.mime_line(cx, l, &mut ScriptSink { script, cfg })
            });
            self.plain_cmd = Some((self.sender_index(), 0));
        }
        if self.mime.in_message() {
            self.finish_message(cx, complete);
        } else {
            cx.weird(Weird::SmtpUnmatchedEndOfData, None, "SMTP");
        }
    }

    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, seq: u64, len: u64) {
        self.stats.gaps += 1;
        if cx.events_enabled() {
            let d = format!("seq = {seq}, len = {len}");
            self.unexpected(cx, is_orig, "content gap", d.as_bytes());
        }
        let in_msg = matches!(self.state, State::InData | State::InBdat);
        // The message's bytes travel from the sender: a gap the other way
        // costs the entity files (as in Zeek) but no message byte.
        let lost = is_orig == self.orig_is_sender;
        if in_msg {
            let rest_of_chunk = self
                .bdat
                .as_ref()
                .map_or(0, |b| b.remaining().saturating_sub(len));
            let Proto {
                mime, script, cfg, ..
            } = self;
            let sink = &mut ScriptSink { script, cfg };
            if lost {
                mime.gap(cx, len, sink);
            } else {
                mime.gap_file(cx, len, sink);
            }
            if self.state == State::InData && self.mime.in_message() && cx.extract_enabled() {
                // Zeek ends the message here; the extraction goes on to
                // the end of data (see `tail_line`).
                let Proto {
                    mime, script, cfg, ..
                } = self;
                mime.detach(cx, &mut ScriptSink { script, cfg });
                self.ext.tail = Some(Tail::default());
            } else {
                // The rest of the BDAT chunk will not be extracted. When
                // it is the LAST chunk and the gap inside it, that rest is
                // all that is missing besides the gap.
                self.ext.end_known = self
                    .bdat
                    .as_ref()
                    .is_some_and(|b| b.is_last() && len <= b.remaining());
                self.mime.missing(rest_of_chunk);
                self.end_data(cx, false);
            }
        } else if self.ext.tail.is_some() && lost {
            // Another gap while the extraction follows the data.
            self.mime.missing(len);
        }
        self.ext.rcpt_pending.clear();
        self.pending.clear();
        self.first_cmd = None;
        self.last_replied = None;
        self.state = State::AfterGap;
    }
}

/// Message lines after a content gap inside DATA, kept until the client's
/// `.` shows they were message data (a server reply first means they may
/// not have been: they are dropped and the message stays incomplete).
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    /// The end of data was seen: the next final reply is the message's
    /// status.
    ended: bool,
}

/// Tail bytes kept before giving up on following the data.
const MAX_TAIL_BYTES: usize = 8 << 20;

impl Proto {
    /// A client line while a message is followed past a gap (state
    /// AFTER_GAP, where Zeek swallows it): data, or the end of data.
    fn tail_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], term: &[u8]) {
        let Some(t) = self.ext.tail.as_mut() else {
            return;
        };
        if t.ended {
            return;
        }
        if line == b"." {
            t.ended = true;
            let bytes = std::mem::take(&mut t.bytes);
            self.mime.raw(cx, &bytes);
            self.finish_message(cx, true);
            return;
        }
        let data = if self.cont_line {
            line
        } else {
            line.strip_prefix(b".").unwrap_or(line)
        };
        t.bytes.extend_from_slice(data);
        t.bytes.extend_from_slice(term);
        if term.is_empty() {
            if let Some(lost) = self.cut_lost {
                t.bytes.extend_from_slice(&lost);
            }
        }
        if t.bytes.len() > MAX_TAIL_BYTES {
            self.abandon_tail(cx);
        }
    }

    /// Stops following a message past a gap: it ends incomplete with what
    /// was sure.
    fn abandon_tail(&mut self, cx: &mut ConnCtx<'_>) {
        let Some(t) = self.ext.tail.take() else {
            return;
        };
        if t.ended || !self.mime.detached() {
            return;
        }
        self.mime.mark_incomplete();
        self.finish_message(cx, false);
        self.emit_meta(cx);
    }
}

/// Extraction bookkeeping of the current transaction and message.
#[derive(Default)]
struct Extract {
    /// A message followed past a content gap (see `Tail`).
    tail: Option<Tail>,
    /// The current message began after its start (mid-stream pickup).
    headless: bool,
    /// The current message is being cut where its end is known anyway (a
    /// gap inside a LAST BDAT chunk): what is missing is counted exactly.
    end_known: bool,
    /// Messages started on this connection while extracting (1-based `n`).
    n: u32,
    start: Timestamp,
    /// The current message is a BDAT transfer.
    bdat: bool,
    /// RCPT addresses whose reply is still owed, in command order.
    rcpt_pending: VecDeque<Bytes>,
    rcpt_ok: Vec<Bytes>,
    rcpt_bad: Vec<(Bytes, u32)>,
    /// BDAT commands not answered yet.
    bdat_unreplied: u32,
    /// A finished message's metadata, waiting for its end-of-data reply.
    meta: Option<Box<EmailMeta>>,
    meta_bdat: bool,
    /// RCPT commands of the waiting metadata's transaction whose replies
    /// are still owed (the first ones in `rcpt_pending`).
    meta_rcpts_owed: usize,
    /// The current message's transaction began before a mid-stream
    /// pickup: its envelope (or its start) was not seen.
    midstream_envelope: bool,
    /// The envelope as it stood when the message began. The smtp.log
    /// record may be written and replaced before the message is finished
    /// (a `BDAT 0 LAST` transfer ends lazily, as in Zeek), so the metadata
    /// must not read it at the end.
    mailfrom: Option<Bytes>,
    trans_depth: u64,
    /// The reply that answered the last chunk of a BDAT transfer before
    /// the transfer was finished (`BDAT 0 LAST`).
    early_status: Option<(u32, Bytes)>,
}

/// Routes MIME notifications to the script layer (Zeek's `mime_*` and
/// `file_over_new_connection` handlers of the SMTP scripts).
struct ScriptSink<'a> {
    script: &'a mut Script,
    cfg: &'a SmtpConfig,
}

impl MimeSink for ScriptSink<'_> {
    fn begin_entity(&mut self, _cx: &mut ConnCtx<'_>, _level: usize) {
        self.script.on_begin_entity();
    }
    fn header(&mut self, cx: &mut ConnCtx<'_>, _level: usize, name: &[u8], value: &[u8]) {
        self.script.on_header(cx, self.cfg, name, value);
    }
    fn end_entity(&mut self, _cx: &mut ConnCtx<'_>, _level: usize) {
        self.script.on_end_entity();
    }
    fn file(&mut self, _cx: &mut ConnCtx<'_>, fuid: &str) {
        self.script.on_file(fuid);
    }
}

/// DPD client half: `HELO`/`EHLO` at the start or after CR/LF, after
/// optional whitespace, case-insensitive.
pub fn dpd_orig_matches(payload: &[u8]) -> bool {
    let mut starts =
        std::iter::once(0).chain(memchr::memchr2_iter(b'\r', b'\n', payload).map(|i| i + 1));
    starts.any(|s| {
        let rest = &payload[s.min(payload.len())..];
        let n = rest
            .iter()
            .take_while(|c| c.is_ascii_whitespace() || **c == 0x0b)
            .count();
        let w = &rest[n..];
        w.len() >= 4
            && (w[..4].eq_ignore_ascii_case(b"HELO") || w[..4].eq_ignore_ascii_case(b"EHLO"))
    })
}

/// DPD server half: `220` followed by whitespace or `-`, after optional
/// leading whitespace.
pub fn dpd_resp_matches(payload: &[u8]) -> bool {
    let n = payload
        .iter()
        .take_while(|c| c.is_ascii_whitespace() || **c == 0x0b)
        .count();
    let w = &payload[n..];
    w.len() >= 4
        && &w[..3] == b"220"
        && (w[3].is_ascii_whitespace() || w[3] == 0x0b || w[3] == b'-')
}
