//! The POP3 protocol state machine (Zeek's `POP3_Analyzer`): per-direction
//! line splitting, the queue of client commands and its pairing with server
//! replies, multi-line responses, SASL AUTH exchanges, STLS hand-off,
//! unknown commands and analyzer violations, the `pop3_*` events, the
//! RETR/TOP message hand-off and the pop3.log session record.

use crate::config::Pop3Config;
use crate::message::{MessageInfo, Messages};
use crate::parse::{c_str, decode_base64, normalise, tokens, Cmd};
use crate::session::Session;
use mailtap_contentline::{LineSplitter, Nuls, Piece};
use mailtap_core::{ConnCtx, Event, TcpAnalyzer, Weird};
use std::collections::VecDeque;
use std::sync::Arc;

/// Zeek's master state of a POP3 session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Master {
    Start,
    Authorization,
    Transaction,
    Update,
    Finished,
}

/// Zeek's command state (the last command that was accepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Start,
    User,
    Pass,
    Apop,
    Auth,
    AuthPlain,
    AuthLogin,
    AuthCramMd5,
    Noop,
    Last,
    Stat,
    List,
    Retr,
    Dele,
    Uidl,
    Top,
    Quit,
    Rset,
    Capa,
    Stls,
    Xsender,
}

/// Counters of one analyzer instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pop3Stats {
    pub client_lines: u64,
    pub server_lines: u64,
    /// Client commands processed (known or not).
    pub commands: u64,
    pub replies: u64,
    /// Lines inside multi-line responses.
    pub data_lines: u64,
    /// SASL answer lines.
    pub auth_lines: u64,
    pub unknown_client_commands: u64,
    pub violations: u64,
    pub gaps: u64,
    /// Queued commands dropped (count limit or byte limit).
    pub pending_dropped: u64,
    /// Peak bytes of queued command lines.
    pub pending_peak_bytes: u64,
}

/// POP3 analyzer for one TCP connection.
pub struct Pop3Analyzer {
    /// Line splitters, indexed by `is_orig as usize` (0 = responder).
    lines: [LineSplitter; 2],
    p: Proto,
    disabled: bool,
    finished: bool,
    /// Set when STLS was accepted (+OK) during the last delivery: the
    /// offset in that delivery where the TLS bytes begin.
    tls_handoff: Option<usize>,
}

/// Protocol state, apart from the splitters so that a borrowed line and the
/// state can be used together.
struct Proto {
    cfg: Arc<Pop3Config>,
    master: Master,
    state: State,
    last_state: State,
    guessing: bool,
    /// Picked up mid-stream at a command valid in either state (CAPA,
    /// QUIT): `master` is a guess the next state-specific command settles.
    master_unsure: bool,
    waiting_auth: bool,
    auth_lines: u32,
    request_multi: bool,
    multi: bool,
    tls: bool,
    /// Never cleared, as in Zeek (login events may carry stale values).
    user: Vec<u8>,
    password: Vec<u8>,
    /// Client command lines; the head has already been processed and is
    /// kept as an empty placeholder until its reply completes.
    cmds: VecDeque<Vec<u8>>,
    pending_bytes: usize,
    unknown_client: u64,
    confirmed: bool,
    violation_disable: bool,
    /// Payload bytes of both directions (DPD's size check).
    bytes_seen: u64,
    msgs: Messages,
    session: Session,
    stats: Pop3Stats,
    /// Picked up mid-stream and not yet synchronised: the server lines
    /// since the pickup (or since the last `.`), with their terminators.
    hunt: Option<Vec<(Vec<u8>, &'static [u8])>>,
    /// The bytes the splitter dropped when it cut the current line.
    cut_lost: Option<[u8; 2]>,
    /// The previous server line was cut at the length limit.
    srv_after_cut: bool,
}

/// Server bytes kept while hunting; older lines are dropped beyond it.
const MAX_HUNT_BYTES: usize = 1 << 20;

impl Pop3Analyzer {
    pub fn new(cfg: Arc<Pop3Config>) -> Self {
        let max_line = cfg.max_line_length;
        let msgs = Messages::new(cfg.files.clone(), cfg.max_header_bytes);
        Pop3Analyzer {
            lines: [
                LineSplitter::new(max_line, Nuls::Keep),
                LineSplitter::new(max_line, Nuls::Keep),
            ],
            p: Proto {
                cfg,
                master: Master::Start,
                state: State::Start,
                last_state: State::Start,
                guessing: false,
                master_unsure: false,
                waiting_auth: false,
                auth_lines: 0,
                request_multi: false,
                multi: false,
                tls: false,
                user: Vec::new(),
                password: Vec::new(),
                cmds: VecDeque::new(),
                pending_bytes: 0,
                unknown_client: 0,
                confirmed: false,
                violation_disable: false,
                bytes_seen: 0,
                msgs,
                session: Session::default(),
                stats: Pop3Stats::default(),
                hunt: None,
                cut_lost: None,
                srv_after_cut: false,
            },
            disabled: false,
            finished: false,
            tls_handoff: None,
        }
    }

    pub fn master(&self) -> Master {
        self.p.master
    }

    pub fn state(&self) -> State {
        self.p.state
    }

    pub fn stats(&self) -> Pop3Stats {
        self.p.stats
    }

    /// Splitter counters, responder side first.
    pub fn line_stats(&self) -> [mailtap_contentline::LineStats; 2] {
        [self.lines[0].stats, self.lines[1].stats]
    }

    /// Whether the session switched to TLS (STLS answered `+OK`).
    pub fn tls(&self) -> bool {
        self.p.tls
    }

    /// The offset in the last delivered data where TLS began, if STLS was
    /// accepted during that delivery (once).
    pub fn take_tls_handoff(&mut self) -> Option<usize> {
        self.tls_handoff.take()
    }

    /// Splits and handles lines; returns where it stopped in `data` (its
    /// end, or the end of the line that switched the session to TLS).
    fn feed(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) -> usize {
        let dir = usize::from(is_orig);
        let mut pos = 0usize;
        while !self.p.tls {
            let mut lost = None;
            // Server lines carry messages and may be long; client lines
            // are commands (any line while resynchronising may be data).
            self.lines[dir].set_max_line(if is_orig && self.p.hunt.is_none() {
                self.p.cfg.max_command_line_length
            } else {
                self.p.cfg.max_line_length
            });
            let Some(piece) = self.lines[dir].next_cut(cx, data, &mut pos, &mut lost) else {
                break;
            };
            self.p.cut_lost = lost;
            if self.p.hunt.is_some() {
                match piece {
                    Piece::Line(line, term) => {
                        self.p.hunt_line(cx, is_orig, line, term);
                        if self.p.hunt.is_none() {
                            for sp in &mut self.lines {
                                sp.set_quiet(false);
                            }
                        }
                    }
                    Piece::LateLf if !is_orig => {
                        if let Some(l) = self.p.hunt.as_mut().and_then(|h| h.last_mut()) {
                            if l.1 == b"\r" {
                                l.1 = b"\r\n";
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match piece {
                Piece::Line(line, _) if is_orig => self.p.client_line(cx, line),
                Piece::Line(line, term) => self.p.server_line(cx, line, term),
                Piece::LateLf if is_orig => {}
                Piece::LateLf => self.p.late_lf(cx),
                // POP3 never asks for plain delivery.
                Piece::Plain(_) => {}
            }
        }
        self.apply_disable(cx);
        pos
    }

    /// A violation disables the analyzer once the current delivery is
    /// processed, as Zeek's event-driven DPD disable does.
    fn apply_disable(&mut self, cx: &mut ConnCtx<'_>) {
        if !self.disabled && self.p.violation_disable {
            self.disabled = true;
            // Removing the analyzer runs its Done(): an open message ends.
            self.p.end_message(cx, false);
        }
    }
}

impl TcpAnalyzer for Pop3Analyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        if self.disabled || self.finished || data.is_empty() {
            return;
        }
        self.p.bytes_seen = self.p.bytes_seen.saturating_add(data.len() as u64);
        if self.p.tls {
            // The SSL analyzer would take these bytes.
            return;
        }
        self.p.session.touch(cx.ts);
        let pos = self.feed(cx, is_orig, data);
        if self.p.tls {
            self.tls_handoff = Some(pos.min(data.len()));
        }
    }

    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        if self.disabled || self.finished || len == 0 {
            return;
        }
        self.p.bytes_seen = self.p.bytes_seen.saturating_add(len);
        if self.p.tls {
            return;
        }
        self.p.stats.gaps += 1;
        let dir = usize::from(is_orig);
        if !is_orig && self.p.multi && self.p.hunt.is_none() {
            // The partial line is lost for MIME (as in Zeek) but its bytes
            // are the message's: the extraction keeps them.
            let partial = self.lines[dir].partial();
            let body = if self.p.srv_after_cut {
                partial
            } else {
                partial.strip_prefix(b".").unwrap_or(partial)
            };
            self.p.msgs.raw(cx, body);
        }
        // The partial line is lost with the gap.
        self.lines[dir].discard_partial();
        if !is_orig {
            self.p.msgs.gap(cx, len);
        }
    }

    fn eof(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        if self.disabled || self.finished || self.p.tls {
            return;
        }
        // ContentLine delivers a partial line at end of stream.
        if self.lines[usize::from(is_orig)].has_partial() {
            self.feed(cx, is_orig, b"\n");
        }
    }

    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.disabled {
            self.p.end_message(cx, false);
        }
        // A connection DPD threw out before POP3 was confirmed (Redis and
        // the like) was not POP3: no pop3.log row.
        let not_pop3 = self.disabled && !self.p.confirmed;
        if !not_pop3 {
            let user = (!self.p.user.is_empty()).then(|| self.p.user.clone());
            self.p.session.finish(cx, user, self.p.tls);
        }
    }

    fn disabled(&self) -> bool {
        self.disabled
    }

    fn start_midstream(&mut self) {
        self.p.hunt = Some(Vec::new());
        for sp in &mut self.lines {
            sp.set_quiet(true);
        }
    }
}

/// LIST/UIDL (`n size`, `n uid`) or CAPA (capability words) response lines:
/// a multi-line response made of them only is not a message.
fn listing_line(l: &[u8]) -> bool {
    let (a, b) = tokens(l);
    (!a.is_empty() && a.iter().all(u8::is_ascii_digit) && !b.contains(&b' '))
        || (!l.is_empty()
            && l.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || b" -_.".contains(c)))
}

impl Proto {
    /// One line while hunting (see `Pop3Analyzer::start_midstream`): server
    /// lines are kept until a `.` ends a multi-line response (whose tail,
    /// if it looks like a message, is extracted as an incomplete, partial
    /// message) and the first client command synchronises: the session is
    /// then in the state that command needs, and analysed as usual.
    fn hunt_line(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, line: &[u8], term: &'static [u8]) {
        let Some(h) = self.hunt.as_mut() else { return };
        if !is_orig {
            if line == b"." {
                let mut lines = std::mem::take(h);
                // The whole response was captured: its status line is not
                // content. (Which command it answers is unknown: RETR or
                // TOP, so what follows is still only a partial message.)
                if lines.first().is_some_and(|(l, _)| dpd_resp_matches(l)) {
                    lines.remove(0);
                }
                if !lines.is_empty() && !lines.iter().all(|(l, _)| listing_line(l)) {
                    let info = MessageInfo {
                        ts: cx.ts,
                        user: None,
                        partial: true,
                        tls: false,
                        local_orig: Some(self.cfg.is_local_addr(cx.id.resp_h)),
                    };
                    self.msgs.headless(cx, info, &lines);
                    self.session.retrieved();
                }
                return;
            }
            // A first `+OK` may be the greeting or the status line of a
            // multi-line response (CAPA, LIST, RETR): it is kept, and
            // taken as the greeting only if a client command follows it.
            self.stats.server_lines += 1;
            h.push((line.to_vec(), term));
            let mut bytes: usize = h.iter().map(|(l, t)| l.len() + t.len()).sum();
            while bytes > MAX_HUNT_BYTES && !h.is_empty() {
                let (l, t) = h.remove(0);
                bytes -= l.len() + t.len();
            }
            return;
        }
        let norm = normalise(c_str(line));
        let Some(cmd) = Cmd::parse(tokens(&norm).0) else {
            return;
        };
        if matches!(cmd, Cmd::Ok | Cmd::Err) {
            return;
        }
        let held = self.hunt.take().unwrap_or_default();
        if let [(greeting, term)] = held.as_slice() {
            // The capture's first server line, alone and answered by a
            // command: the greeting. The session starts at its beginning,
            // so the state machine needs no guess.
            if self.stats.server_lines == 1 && !self.confirmed && dpd_resp_matches(greeting) {
                self.stats.server_lines = 0;
                self.server_line(cx, greeting, term);
                self.client_line(cx, line);
                return;
            }
        }
        match cmd {
            Cmd::User | Cmd::Apop | Cmd::Auth => self.master = Master::Authorization,
            Cmd::Pass => {
                self.master = Master::Authorization;
                self.state = State::User;
            }
            // Valid before and after login: a guess, settled by the next
            // command that is not.
            Cmd::Capa | Cmd::Quit => {
                self.master = Master::Transaction;
                self.master_unsure = true;
            }
            _ => self.master = Master::Transaction,
        }
        self.client_line(cx, line);
    }

    fn unexpected(&self, cx: &mut ConnCtx<'_>, is_orig: bool, msg: &str, detail: &[u8]) {
        cx.event(|| Event::Pop3Unexpected {
            is_orig,
            msg: msg.as_bytes().to_vec(),
            detail: detail.to_vec(),
        });
    }

    fn not_allowed(&self, cx: &mut ConnCtx<'_>, cmd: Cmd, state: &str) {
        if cx.events_enabled() {
            let d = format!("not allowed in other state than '{state}'");
            self.unexpected(cx, true, cmd.name(), d.as_bytes());
        }
    }

    fn request(&self, cx: &mut ConnCtx<'_>, cmd: Cmd, arg: &[u8]) {
        cx.event(|| Event::Pop3Request {
            is_orig: true,
            command: cmd.name().as_bytes().to_vec(),
            arg: arg.to_vec(),
        });
    }

    /// An AUTH argument as events may show it: the mechanism only, unless
    /// passwords are to be logged (an initial response carries credentials).
    fn auth_arg<'a>(&self, arg: &'a [u8]) -> &'a [u8] {
        if self.cfg.log_passwords {
            arg
        } else {
            tokens(arg).0
        }
    }

    fn password_for_event(&self) -> Vec<u8> {
        if self.cfg.log_passwords {
            self.password.clone()
        } else {
            Vec::new()
        }
    }

    fn login_success(&mut self, cx: &mut ConnCtx<'_>) {
        if self.user.is_empty() {
            return;
        }
        self.session.login_success();
        let (user, password) = (&self.user, self.password_for_event());
        cx.event(|| Event::Pop3LoginSuccess {
            is_orig: false,
            user: user.clone(),
            password,
        });
    }

    fn login_failure(&mut self, cx: &mut ConnCtx<'_>) {
        if self.user.is_empty() {
            return;
        }
        self.session.login_failure();
        let (user, password) = (&self.user, self.password_for_event());
        cx.event(|| Event::Pop3LoginFailure {
            is_orig: false,
            user: user.clone(),
            password,
        });
    }

    /// Analyzer violation: counted against `max_analyzer_violations`; DPD
    /// disables the analyzer while the connection is still small.
    fn violation(&mut self, cx: &mut ConnCtx<'_>) {
        self.stats.violations += 1;
        let max = self.cfg.max_analyzer_violations;
        if self.stats.violations > max {
            if self.stats.violations == max.saturating_add(1) {
                cx.weird(Weird::TooManyAnalyzerViolations, None, "POP3");
            }
            return;
        }
        if self.cfg.dpd_ignore_violations {
            return;
        }
        let after = self.cfg.dpd_ignore_violations_after;
        if after == 0 || self.bytes_seen <= after {
            self.violation_disable = true;
        }
    }

    // ------------------------------------------------------------ client

    fn client_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        self.stats.client_lines += 1;
        if self.waiting_auth {
            self.auth_line(cx, line);
            return;
        }
        if self.cmds.is_empty() {
            // Processed now; the head is kept as a placeholder.
            self.cmds.push_back(Vec::new());
            self.client_cmd(cx, line);
        } else {
            self.pending_bytes += line.len();
            self.cmds.push_back(line.to_vec());
            self.stats.pending_peak_bytes =
                self.stats.pending_peak_bytes.max(self.pending_bytes as u64);
        }
        let max = self.cfg.max_pending_commands;
        if max > 0 && self.cmds.len() > max {
            cx.weird(Weird::Pop3ClientTooManyPendingCommands, None, "POP3");
            self.drop_pending(0);
        }
        // mailtap's byte bound on queued lines: drop the oldest waiting ones.
        while self.pending_bytes > self.cfg.max_pending_bytes && self.cmds.len() > 1 {
            self.drop_pending(1);
        }
    }

    fn drop_pending(&mut self, idx: usize) {
        if let Some(l) = self.cmds.remove(idx) {
            self.pending_bytes -= l.len();
            self.stats.pending_dropped += 1;
        }
    }

    /// One SASL answer line (not queued, no event).
    fn auth_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8]) {
        self.auth_lines = self.auth_lines.saturating_add(1);
        self.stats.auth_lines += 1;
        let Some(decoded) = decode_base64(cx, c_str(line)) else {
            cx.weird(Weird::Pop3BadBase64Encoding, None, "POP3");
            return;
        };
        match self.state {
            State::AuthLogin => {
                if self.auth_lines == 1 {
                    self.user = c_str(&decoded).to_vec();
                } else if self.auth_lines == 2 {
                    self.password = c_str(&decoded).to_vec();
                }
            }
            State::AuthPlain => {
                // authzid NUL authcid NUL password
                let Some(a) = memchr::memchr(0, &decoded) else {
                    cx.weird(Weird::Pop3MalformedAuthPlain, None, "POP3");
                    return;
                };
                let rest = &decoded[a + 1..];
                let Some(b) = memchr::memchr(0, rest) else {
                    cx.weird(Weird::Pop3MalformedAuthPlain, None, "POP3");
                    return;
                };
                self.user = rest[..b].to_vec();
                let pw = &rest[b + 1..];
                if pw.is_empty() {
                    cx.weird(Weird::Pop3MalformedAuthPlain, None, "POP3");
                    return;
                }
                self.password = c_str(pw).to_vec();
            }
            State::AuthCramMd5 => {
                let s = c_str(&decoded);
                let end = s
                    .iter()
                    .position(|&c| c == b' ' || c == b'\t')
                    .unwrap_or(s.len());
                self.user = s[..end].to_vec();
                self.password.clear();
            }
            _ => {}
        }
    }

    /// Processes the command at the head of the queue (Zeek's
    /// `ProcessClientCmd`).
    fn client_cmd(&mut self, cx: &mut ConnCtx<'_>, line: &[u8]) {
        self.stats.commands += 1;
        let norm = normalise(c_str(line));
        let (tok, msg) = tokens(&norm);
        let Some(cmd) = Cmd::parse(tok) else {
            if !self.waiting_auth {
                let addl: &[u8] = if tok.is_empty() { b"???" } else { tok };
                cx.weird(Weird::Pop3ClientCommandUnknown, Some(addl), "POP3");
                self.unknown_client += 1;
                self.stats.unknown_client_commands += 1;
                let max = self.cfg.max_unknown_client_commands;
                if max > 0 && self.unknown_client > max {
                    self.violation(cx);
                }
            }
            return;
        };
        use Master::*;
        if self.master_unsure && !matches!(cmd, Cmd::Capa | Cmd::Quit) {
            self.master_unsure = false;
            if matches!(
                cmd,
                Cmd::User | Cmd::Pass | Cmd::Apop | Cmd::Auth | Cmd::Stls
            ) {
                self.master = Authorization;
            }
        }
        let tx = self.master == Transaction;
        match cmd {
            Cmd::Ok | Cmd::Err => {
                cx.weird(Weird::Pop3ClientSendingServerCommands, None, "POP3");
            }
            Cmd::User => {
                if self.master == Authorization {
                    self.request(cx, cmd, msg);
                    self.state = State::User;
                    self.user = msg.to_vec();
                    self.session.auth_method(b"USER/PASS");
                } else {
                    self.not_allowed(cx, cmd, "authorization");
                }
            }
            Cmd::Pass => {
                if self.master == Authorization {
                    if self.state == State::User {
                        let arg: &[u8] = if self.cfg.log_passwords { msg } else { b"" };
                        self.request(cx, cmd, arg);
                        self.state = State::Pass;
                        self.password = msg.to_vec();
                    } else {
                        self.unexpected(cx, true, "PASS", b"pass must follow the command 'USER'");
                    }
                } else {
                    self.not_allowed(cx, cmd, "authorization");
                }
            }
            Cmd::Apop => {
                if self.master == Authorization {
                    self.request(cx, cmd, msg);
                    self.state = State::Apop;
                    let end = msg
                        .iter()
                        .position(|&c| c == b' ' || c == b'\t')
                        .unwrap_or(msg.len());
                    self.user = msg[..end].to_vec();
                    self.session.auth_method(b"APOP");
                } else {
                    self.not_allowed(cx, cmd, "authorization");
                }
            }
            Cmd::Auth => {
                if self.master == Authorization {
                    self.request(cx, cmd, self.auth_arg(msg));
                    if msg.is_empty() {
                        self.request_multi = true;
                        self.state = State::Auth;
                    } else {
                        let has = |w: &[u8]| memchr::memmem::find(msg, w).is_some();
                        self.state = if has(b"LOGIN") {
                            State::AuthLogin
                        } else if has(b"PLAIN") {
                            State::AuthPlain
                        } else if has(b"CRAM-MD5") {
                            State::AuthCramMd5
                        } else {
                            if cx.events_enabled() {
                                let mut d = b"unknown AUTH method ".to_vec();
                                d.extend_from_slice(self.auth_arg(msg));
                                self.unexpected(cx, true, "AUTH", &d);
                            }
                            State::Auth
                        };
                        self.session.auth_method(tokens(msg).0);
                        self.waiting_auth = true;
                        self.auth_lines = 0;
                    }
                } else {
                    self.unexpected(cx, true, "AUTH", b"pass must follow the command 'USER'");
                }
            }
            Cmd::Stat => {
                if tx {
                    self.request(cx, cmd, msg);
                    self.state = State::Stat;
                } else {
                    self.not_allowed(cx, cmd, "transaction");
                }
            }
            Cmd::List | Cmd::Uidl => {
                let st = if cmd == Cmd::List {
                    State::List
                } else {
                    State::Uidl
                };
                if msg.is_empty() {
                    self.request_multi = true;
                }
                if tx {
                    self.request(cx, cmd, msg);
                    self.state = st;
                } else {
                    self.guess(st);
                    self.not_allowed(cx, cmd, "transaction");
                }
            }
            Cmd::Retr | Cmd::Top => {
                let st = if cmd == Cmd::Retr {
                    State::Retr
                } else {
                    State::Top
                };
                self.request_multi = true;
                if tx {
                    self.request(cx, cmd, msg);
                    self.state = st;
                } else {
                    self.guess(st);
                    self.not_allowed(cx, cmd, "transaction");
                }
            }
            Cmd::Dele | Cmd::Rset | Cmd::Noop | Cmd::Last | Cmd::Xsender => {
                let (st, guess) = match cmd {
                    Cmd::Dele => (State::Dele, State::Dele),
                    Cmd::Rset => (State::Rset, State::Rset),
                    Cmd::Noop => (State::Noop, State::Noop),
                    Cmd::Last => (State::Last, State::Last),
                    // Zeek: XSENDER sets state LAST but guesses XSENDER.
                    _ => (State::Last, State::Xsender),
                };
                if tx {
                    self.request(cx, cmd, msg);
                    self.state = st;
                } else {
                    self.guess(guess);
                    self.not_allowed(cx, cmd, "transaction");
                }
            }
            Cmd::Quit => {
                if matches!(self.master, Start | Authorization | Transaction) {
                    self.request(cx, cmd, msg);
                    self.state = State::Quit;
                } else {
                    self.guess(State::Last);
                    self.not_allowed(cx, cmd, "transaction");
                }
            }
            Cmd::Capa => {
                self.request(cx, cmd, msg);
                self.state = State::Capa;
                self.request_multi = true;
            }
            Cmd::Stls => {
                self.request(cx, cmd, msg);
                self.state = State::Stls;
            }
        }
    }

    fn guess(&mut self, st: State) {
        self.guessing = true;
        self.last_state = st;
    }

    /// The head command's reply is complete: drop it and process the next.
    fn finish_client_cmd(&mut self, cx: &mut ConnCtx<'_>) {
        if self.cmds.pop_front().is_none() {
            return;
        }
        if let Some(next) = self.cmds.front_mut() {
            let line = std::mem::take(next);
            self.pending_bytes -= line.len();
            self.client_cmd(cx, &line);
        }
    }

    // ------------------------------------------------------------ server

    fn server_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], term: &[u8]) {
        self.stats.server_lines += 1;
        if self.multi {
            self.multi_line(cx, line, term);
            return;
        }
        self.msgs.not_body();
        let norm = normalise(c_str(line));
        let (tok, msg) = tokens(&norm);
        let Some(cmd) = Cmd::parse(tok) else {
            if !self.waiting_auth {
                self.violation(cx);
                let addl: &[u8] = if tok.is_empty() { b"???" } else { tok };
                cx.weird(Weird::Pop3ServerCommandUnknown, Some(addl), "POP3");
            }
            return;
        };
        match cmd {
            Cmd::Ok => {
                self.stats.replies += 1;
                if self.ok_reply(cx, c_str(line), msg) {
                    // STLS: no pop3_reply, nothing more to parse.
                    return;
                }
                cx.event(|| Event::Pop3Reply {
                    is_orig: false,
                    cmd: b"OK".to_vec(),
                    msg: msg.to_vec(),
                });
                self.session.last_reply(b"+OK", msg);
                if !self.multi {
                    self.finish_client_cmd(cx);
                }
            }
            Cmd::Err => {
                self.stats.replies += 1;
                self.err_reply(cx);
                cx.event(|| Event::Pop3Reply {
                    is_orig: false,
                    cmd: b"ERR".to_vec(),
                    msg: msg.to_vec(),
                });
                self.session.last_reply(b"-ERR", msg);
                self.finish_client_cmd(cx);
            }
            _ => cx.weird(Weird::Pop3ServerSendingClientCommands, None, "POP3"),
        }
    }

    /// A line inside a multi-line response.
    fn multi_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], term: &[u8]) {
        if line == b"." {
            self.msgs.not_body();
            self.request_multi = false;
            self.multi = false;
            self.end_message(cx, true);
            self.finish_client_cmd(cx);
            return;
        }
        self.stats.data_lines += 1;
        // The rest of a line cut at the length limit is not a line start:
        // its leading dot is data.
        let cont = std::mem::replace(&mut self.srv_after_cut, term.is_empty());
        if matches!(self.state, State::Retr | State::Top) {
            let body = if cont {
                line
            } else {
                line.strip_prefix(b".").unwrap_or(line)
            };
            let lost: &[u8] = match (&self.cut_lost, term.is_empty()) {
                (Some(l), true) => l,
                _ => b"",
            };
            if self.state == State::Retr {
                self.session
                    .retrieved_bytes((body.len() + term.len() + lost.len()) as u64);
            }
            self.msgs.line(cx, line, body, term);
            // Put back what the cut dropped: the extraction stays exact.
            self.msgs.raw(cx, lost);
        }
        cx.event(|| Event::Pop3Data {
            is_orig: false,
            data: normalise(c_str(line)).into_owned(),
        });
    }

    /// `+OK` outside a multi-line response; true for STLS (the caller
    /// then raises no reply).
    fn ok_reply(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], msg: &[u8]) -> bool {
        use State::*;
        if self.guessing {
            self.master = Master::Transaction;
            self.guessing = false;
            self.state = self.last_state;
            self.unexpected(
                cx,
                false,
                "OK",
                b"no auth required -> state changed to 'transaction'",
            );
        }
        match self.state {
            Start => self.master = Master::Authorization,
            User => {
                self.master = Master::Authorization;
                self.confirm(cx);
            }
            Pass | Apop | Noop | Last | Stat | Rset | Dele | Xsender => {
                if self.master == Master::Authorization {
                    self.login_success(cx);
                }
                self.master = Master::Transaction;
                if self.state == Dele {
                    self.session.deleted();
                }
            }
            Auth | AuthPlain | AuthLogin | AuthCramMd5 => {
                if self.request_multi {
                    self.multi = true;
                }
                if self.waiting_auth {
                    self.master = Master::Transaction;
                }
                self.waiting_auth = false;
                self.login_success(cx);
            }
            Retr | Top => {
                if !self.msgs.is_open() {
                    let info = MessageInfo {
                        ts: cx.ts,
                        user: (!self.user.is_empty()).then(|| self.user.clone()),
                        partial: self.state == Top,
                        tls: self.tls,
                        local_orig: Some(self.cfg.is_local_addr(cx.id.resp_h)),
                    };
                    self.msgs.begin(cx, info);
                }
                // Zeek hands the `+OK` line itself to the MIME layer as the
                // message's first line (not part of the message's bytes).
                self.msgs.mime_only(cx, line);
                if self.state == Retr {
                    self.session.retrieved();
                }
                if self.request_multi {
                    self.multi = true;
                }
            }
            Capa => {
                self.confirm(cx);
                if self.request_multi {
                    self.multi = true;
                }
            }
            Uidl | List => {
                if self.request_multi {
                    self.multi = true;
                }
            }
            Stls => {
                self.confirm(cx);
                self.tls = true;
                self.session.last_reply(b"+OK", msg);
                cx.event(|| Event::Pop3Starttls);
                return true;
            }
            Quit => {
                self.master = match self.master {
                    Master::Authorization | Master::Start => Master::Finished,
                    Master::Transaction => Master::Update,
                    m => m,
                };
            }
        }
        false
    }

    /// `-ERR` outside a multi-line response.
    fn err_reply(&mut self, cx: &mut ConnCtx<'_>) {
        use State::*;
        self.multi = false;
        self.request_multi = false;
        self.guessing = false;
        self.waiting_auth = false;
        match self.state {
            User | Pass | Apop | Auth | AuthLogin | AuthPlain | AuthCramMd5 => {
                self.master = Master::Authorization;
                self.state = Start;
                self.login_failure(cx);
            }
            Noop | Last | Stat | Rset | Dele | List | Retr | Uidl | Top | Xsender => {
                self.master = Master::Transaction;
            }
            Quit => {
                if matches!(
                    self.master,
                    Master::Start | Master::Authorization | Master::Transaction
                ) {
                    self.master = Master::Finished;
                }
            }
            Start | Capa | Stls => {}
        }
    }

    fn confirm(&mut self, cx: &mut ConnCtx<'_>) {
        self.confirmed = true;
        cx.confirm("pop3");
    }

    fn end_message(&mut self, cx: &mut ConnCtx<'_>, complete: bool) {
        self.msgs.end(cx, complete);
    }

    /// The LF of a server CRLF split across deliveries.
    fn late_lf(&mut self, cx: &mut ConnCtx<'_>) {
        if self.msgs.late_lf(cx) && self.state == State::Retr {
            self.session.retrieved_bytes(1);
        }
    }
}

/// DPD client half: `USER`/`APOP` followed by whitespace, or `CAPA`,
/// `AUTH`, `STLS`, at the start or after CR/LF, after optional whitespace,
/// case-insensitive.
pub fn dpd_orig_matches(payload: &[u8]) -> bool {
    let mut starts =
        std::iter::once(0).chain(memchr::memchr2_iter(b'\r', b'\n', payload).map(|i| i + 1));
    starts.any(|s| {
        let rest = &payload[s.min(payload.len())..];
        let n = rest.iter().take_while(|c| is_space(**c)).count();
        let w = &rest[n..];
        if w.len() < 4 {
            return false;
        }
        let word = &w[..4];
        let spaced = w.get(4).is_some_and(|c| is_space(*c));
        ((word.eq_ignore_ascii_case(b"USER") || word.eq_ignore_ascii_case(b"APOP")) && spaced)
            || word.eq_ignore_ascii_case(b"CAPA")
            || word.eq_ignore_ascii_case(b"AUTH")
            || word.eq_ignore_ascii_case(b"STLS")
    })
}

/// DPD server half: the payload starts with `+OK`.
pub fn dpd_resp_matches(payload: &[u8]) -> bool {
    payload.starts_with(b"+OK")
}

/// Whether the server's first bytes may still turn into a match (they are
/// a prefix of `+OK`, or match).
pub fn dpd_resp_possible(payload: &[u8]) -> bool {
    let n = payload.len().min(3);
    payload[..n] == b"+OK"[..n]
}

fn is_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0b
}
