//! IMAP protocol state: commands registered by tag and paired with their
//! tagged responses (several in flight, tags reused: oldest first),
//! capabilities, LOGIN and AUTHENTICATE, the selected mailbox, what each
//! literal is (a message, a value to keep, a password never kept), FETCH
//! and APPEND messages, IDLE, STARTTLS and COMPRESS, the imap.log row.

use crate::analyzer::ImapStats;
use crate::config::ImapConfig;
use crate::message::{emit_meta, Finished, MsgStream};
use crate::parse::{
    decode_base64, parse_fetch_label, parse_number, sasl_plain_user, xoauth2_user, Extract, Limits,
    LineParser, Marker, SectionKind, Tok, TokKind,
};
use crate::record::{Direction, ImapMessage, ImapRecord, ImapWeird};
use mailtap_core::{Bytes, ConnCtx, Event, Timestamp};
use std::collections::VecDeque;
use std::sync::Arc;

/// What the payload of a literal is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LitUse {
    /// Kept (small) for interpretation: a mailbox or user name.
    Keep,
    /// Read past.
    Skip,
    /// A password: read past, never kept.
    Redact,
    /// A message (FETCH body, APPEND payload): to the MIME layer.
    Message,
}

/// A change of the connection's framing the analyzer carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// STARTTLS accepted: everything after this line is TLS.
    Tls,
    /// The client sent STARTTLS or COMPRESS: hold its next bytes until
    /// the answer.
    HoldClient,
    /// The answer came: release the held client bytes, inflating them
    /// (and the rest of the server's) when COMPRESS was accepted.
    Release { compress: bool },
}

/// The IMAP commands the analyzer tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Capability,
    Noop,
    Logout,
    Starttls,
    Authenticate,
    Login,
    Select,
    Examine,
    Create,
    Delete,
    Rename,
    Subscribe,
    Unsubscribe,
    List,
    Lsub,
    Status,
    Append,
    Check,
    Close,
    Unselect,
    Expunge,
    Search,
    Fetch,
    Store,
    Copy,
    Move,
    Idle,
    Enable,
    Id,
    Namespace,
    Compress,
    Other,
}

impl Cmd {
    const NAMES: [(&'static str, Cmd); 31] = [
        ("CAPABILITY", Cmd::Capability),
        ("NOOP", Cmd::Noop),
        ("LOGOUT", Cmd::Logout),
        ("STARTTLS", Cmd::Starttls),
        ("AUTHENTICATE", Cmd::Authenticate),
        ("LOGIN", Cmd::Login),
        ("SELECT", Cmd::Select),
        ("EXAMINE", Cmd::Examine),
        ("CREATE", Cmd::Create),
        ("DELETE", Cmd::Delete),
        ("RENAME", Cmd::Rename),
        ("SUBSCRIBE", Cmd::Subscribe),
        ("UNSUBSCRIBE", Cmd::Unsubscribe),
        ("LIST", Cmd::List),
        ("LSUB", Cmd::Lsub),
        ("STATUS", Cmd::Status),
        ("APPEND", Cmd::Append),
        ("CHECK", Cmd::Check),
        ("CLOSE", Cmd::Close),
        ("UNSELECT", Cmd::Unselect),
        ("EXPUNGE", Cmd::Expunge),
        ("SEARCH", Cmd::Search),
        ("FETCH", Cmd::Fetch),
        ("STORE", Cmd::Store),
        ("COPY", Cmd::Copy),
        ("MOVE", Cmd::Move),
        ("IDLE", Cmd::Idle),
        ("ENABLE", Cmd::Enable),
        ("ID", Cmd::Id),
        ("NAMESPACE", Cmd::Namespace),
        ("COMPRESS", Cmd::Compress),
    ];

    /// The command named `w` (upper case).
    pub fn parse(w: &[u8]) -> Cmd {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.as_bytes() == w)
            .map_or(Cmd::Other, |&(_, c)| c)
    }

    /// The name counted in imap.log `commands` (`UID FETCH` for the UID
    /// forms; `OTHER` for anything unknown, so the list stays bounded).
    pub fn name(self, uid: bool) -> &'static str {
        if uid {
            match self {
                Cmd::Fetch => return "UID FETCH",
                Cmd::Store => return "UID STORE",
                Cmd::Copy => return "UID COPY",
                Cmd::Move => return "UID MOVE",
                Cmd::Search => return "UID SEARCH",
                Cmd::Expunge => return "UID EXPUNGE",
                _ => {}
            }
        }
        Self::NAMES
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("OTHER", |&(n, _)| n)
    }
}

/// SASL mechanisms the analyzer reads a user from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mech {
    Plain,
    Login,
    Xoauth2,
    Oauthbearer,
    Other,
}

/// A command waiting for its tagged response.
#[derive(Debug)]
pub(crate) struct Pending {
    id: u64,
    tag: Bytes,
    cmd: Cmd,
    /// The client finished sending the command line.
    line_done: bool,
    mailbox: Option<Bytes>,
    uidvalidity: Option<u64>,
    mech: Option<Mech>,
    sasl_steps: u32,
    user: Option<Bytes>,
    /// APPEND: messages whose literal ended, waiting for the status.
    appended: Vec<Finished>,
    /// APPEND: the flags and date of the message being sent.
    flags: Vec<Bytes>,
    date: Option<Bytes>,
}

/// Longest response text kept (`last_response`, events).
const MAX_TEXT: usize = 4096;
/// Messages kept waiting in one response or command before being
/// written without the rest of their metadata.
const MAX_WAITING: usize = 64;
/// IMAP metadata of extracted messages kept for the caller.
const MAX_MESSAGES: usize = 10_000;

pub(crate) struct Proto {
    pub(crate) cfg: Arc<ImapConfig>,
    pub(crate) limits: Limits,
    pub(crate) stats: ImapStats,
    pub(crate) pending: VecDeque<Pending>,
    next_id: u64,
    /// The client command whose line is being read.
    cur_cmd: Option<u64>,
    /// Tag of the command whose synchronizing literal awaits its `+`, and
    /// whether a tagged response refused it meanwhile.
    pub(crate) await_tag: Option<Bytes>,
    pub(crate) await_refused: bool,
    /// A message literal announced, per direction, to open at its start.
    prepared: [Option<(ImapMessage, bool)>; 2],
    /// The server literal announced or being read is a piece of a run of
    /// partial fetches (`BODY[]<0>`, `BODY[]<n>`, ...; see [`Run`]).
    piece: Option<RunPiece>,
    /// The announced server literal continues the held run.
    continuing: bool,
    /// A run of partial fetches held open in the server's message stream,
    /// waiting for its next piece.
    run: Option<Run>,
    /// Recent FETCH commands for one message with a `BODY[]<o.n>` item
    /// (what a piece's count is checked against; at most
    /// `MAX_PARTIAL_ASKS`, the oldest dropped).
    partial_asks: VecDeque<PartialAsk>,
    pub(crate) switch: Option<Switch>,
    pub(crate) tls: bool,
    pub(crate) compress: bool,
    pub(crate) midstream: bool,
    ts: Option<Timestamp>,
    greeting: bool,
    confirmed: bool,
    starttls_sent: bool,
    pub(crate) mailbox: Option<Bytes>,
    uidvalidity: Option<u64>,
    user: Option<Bytes>,
    auth_method: Option<Bytes>,
    login_ok: bool,
    login_failures: u64,
    auth_other: u64,
    mailboxes: Vec<Bytes>,
    caps: Vec<Bytes>,
    commands: Vec<(&'static str, u64)>,
    fetched: (u64, u64),
    partial: (u64, u64),
    appended: (u64, u64),
    idle: bool,
    no: u64,
    bad: u64,
    last_response: Option<Bytes>,
    untagged_run: u64,
    msg_count: u32,
    /// FETCH messages of the server response being read.
    fetch_waiting: Vec<Finished>,
    pub(crate) messages: Vec<ImapMessage>,
}

fn upper(b: &[u8]) -> Bytes {
    b.to_ascii_uppercase()
}

fn cap_text(b: &[u8]) -> Bytes {
    b[..b.len().min(MAX_TEXT)].to_vec()
}

impl Proto {
    pub(crate) fn new(cfg: Arc<ImapConfig>) -> Self {
        Proto {
            limits: cfg.limits(),
            cfg,
            stats: ImapStats::default(),
            pending: VecDeque::new(),
            next_id: 0,
            cur_cmd: None,
            await_tag: None,
            await_refused: false,
            prepared: [None, None],
            piece: None,
            continuing: false,
            run: None,
            partial_asks: VecDeque::new(),
            switch: None,
            tls: false,
            compress: false,
            midstream: false,
            ts: None,
            greeting: false,
            confirmed: false,
            starttls_sent: false,
            mailbox: None,
            uidvalidity: None,
            user: None,
            auth_method: None,
            login_ok: false,
            login_failures: 0,
            auth_other: 0,
            mailboxes: Vec::new(),
            caps: Vec::new(),
            commands: Vec::new(),
            fetched: (0, 0),
            partial: (0, 0),
            appended: (0, 0),
            idle: false,
            no: 0,
            bad: 0,
            last_response: None,
            untagged_run: 0,
            msg_count: 0,
            fetch_waiting: Vec::new(),
            messages: Vec::new(),
        }
    }

    pub(crate) fn touch(&mut self, ts: Timestamp) {
        self.ts.get_or_insert(ts);
    }

    /// Raises a weird (once per connection, as Zeek logs them: `cx`
    /// deduplicates).
    pub(crate) fn weird(&mut self, cx: &mut ConnCtx<'_>, w: ImapWeird) {
        cx.weird(w.weird(), None, "IMAP");
    }

    fn confirm(&mut self, cx: &mut ConnCtx<'_>) {
        self.confirmed = true;
        cx.confirm("imap");
    }

    pub(crate) fn parse_weirds(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) {
        for e in p.errors() {
            self.weird(cx, e.into());
        }
    }

    fn find(&self, id: u64) -> Option<usize> {
        self.pending.iter().position(|p| p.id == id)
    }

    fn cur(&mut self) -> Option<&mut Pending> {
        let id = self.cur_cmd?;
        self.pending.iter_mut().find(|p| p.id == id)
    }

    /// The tag of the command being read.
    pub(crate) fn current_tag(&self) -> Option<Bytes> {
        let id = self.cur_cmd?;
        self.pending
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.tag.clone())
    }

    /// The logical line being read was lost (gap, desync).
    pub(crate) fn abandon_line(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool) {
        if is_orig {
            self.cur_cmd = None;
            self.await_tag = None;
        } else {
            // Messages of a lost response go out with what is known.
            for f in std::mem::take(&mut self.fetch_waiting) {
                self.finish_message(cx, f);
            }
        }
        self.prepared[usize::from(is_orig)] = None;
        if !is_orig {
            self.piece = None;
            self.continuing = false;
        }
    }

    pub(crate) fn drop_prepared(&mut self, d: usize) {
        self.prepared[d] = None;
        if d == 0 {
            self.piece = None;
            self.continuing = false;
        }
    }

    /// Whether a client line starting now is raw (a SASL response while
    /// AUTHENTICATE runs, `DONE` while IDLE runs).
    pub(crate) fn client_raw(&self, line: &[u8]) -> bool {
        self.pending.iter().any(|p| {
            p.line_done
                && match p.cmd {
                    Cmd::Authenticate => true,
                    Cmd::Idle => line.eq_ignore_ascii_case(b"DONE"),
                    _ => false,
                }
        })
    }

    /// Registers the client command once its tag and name are known.
    fn ensure_cmd(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) {
        if self.cur_cmd.is_some() {
            return;
        }
        let toks = p.toks();
        if toks.len() < 2 || toks[0].kind != TokKind::Atom || toks[1].kind != TokKind::Atom {
            return;
        }
        let tag = p.raw(&toks[0]).to_vec();
        let mut name = upper(p.raw(&toks[1]));
        let uid = name == b"UID";
        if uid {
            match toks.get(2) {
                Some(t) if t.kind == TokKind::Atom => name = upper(p.raw(t)),
                _ => return,
            }
        }
        let cmd = Cmd::parse(&name);
        if self.pending.len() >= self.cfg.max_pending_commands {
            self.pending.pop_front();
            self.stats.pending_dropped += 1;
            self.weird(cx, ImapWeird::TooManyPendingCommands);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(Pending {
            id,
            tag,
            cmd,
            line_done: false,
            mailbox: None,
            uidvalidity: None,
            mech: None,
            sasl_steps: 0,
            user: None,
            appended: Vec::new(),
            flags: Vec::new(),
            date: None,
        });
        self.cur_cmd = Some(id);
        self.stats.commands += 1;
        let key = cmd.name(uid);
        match self.commands.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.commands.push((key, 1)),
        }
        if matches!(cmd, Cmd::Capability | Cmd::Starttls) {
            self.confirm(cx);
        }
    }

    // ------------------------------------------------------------ literals

    /// A literal was announced at the end of a fragment: what its payload
    /// is for. A message literal is prepared here and opened at its start.
    pub(crate) fn literal_begin(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        p: &LineParser,
        m: Marker,
    ) -> LitUse {
        let small = if m.len as usize <= self.cfg.max_kept_literal
            && m.len <= self.cfg.max_kept_literal as u64
        {
            LitUse::Keep
        } else {
            LitUse::Skip
        };
        if p.is_broken() {
            return LitUse::Skip;
        }
        let toks = p.toks();
        // The literal's own token is the last one.
        let before = &toks[..toks.len().saturating_sub(1)];
        if is_orig {
            self.ensure_cmd(cx, p);
            let Some(cmd) = self.cur().map(|c| c.cmd) else {
                return LitUse::Skip;
            };
            let idx = before.len();
            match cmd {
                Cmd::Login if idx >= 3 => LitUse::Redact,
                Cmd::Append => {
                    let depth = p.depth();
                    let utf8 = depth == 1
                        && before.len() >= 2
                        && before[before.len() - 1].kind == TokKind::LParen
                        && p.raw(&before[before.len() - 2])
                            .eq_ignore_ascii_case(b"UTF8");
                    if (depth == 0 && idx >= 3) || utf8 {
                        self.prepare_append(cx, p, before, m);
                        LitUse::Message
                    } else {
                        small
                    }
                }
                _ => small,
            }
        } else {
            if p.depth() == 1
                && before.len() >= 5
                && p.raw(&before[0]) == b"*"
                && p.raw(&before[2]).eq_ignore_ascii_case(b"FETCH")
            {
                let label = &before[before.len() - 1];
                if label.kind == TokKind::Atom && label.depth == 1 {
                    if let Some(sec) = parse_fetch_label(p.raw(label)) {
                        let ex = sec.extract();
                        if ex != Extract::No {
                            let seq = parse_number(p.raw(&before[1]));
                            let imap_uid = att_number(p, before, b"UID");
                            // A piece of a run of partial fetches of the
                            // whole message (spec 5.2): the first, from 0,
                            // or the next one of the run held open.
                            let run_piece = sec.kind == SectionKind::Body
                                && sec.spec.is_empty()
                                && sec.origin.is_some();
                            let origin = sec.origin.unwrap_or(0);
                            let count = if run_piece {
                                self.take_partial_ask(origin, seq, imap_uid)
                            } else {
                                None
                            };
                            let piece = RunPiece {
                                origin,
                                len: m.len,
                                count,
                                size: att_number(p, before, b"RFC822.SIZE"),
                            };
                            self.piece = None;
                            if let Some(r) = &self.run {
                                if run_piece && r.continued_by(origin, seq, imap_uid) {
                                    self.piece = Some(RunPiece {
                                        size: piece.size.or(r.size),
                                        ..piece
                                    });
                                    self.continuing = true;
                                    return LitUse::Message;
                                }
                            }
                            if run_piece && origin == 0 {
                                self.piece = Some(piece);
                            }
                            let meta = ImapMessage {
                                ts: cx.ts,
                                direction: Some(Direction::Fetch),
                                mailbox: self.mailbox.clone(),
                                uidvalidity: self.uidvalidity,
                                seq,
                                imap_uid,
                                section: sec.label(),
                                partial: ex != Extract::Whole,
                                user: self.user.clone(),
                                announced: m.len,
                                ..ImapMessage::default()
                            };
                            self.prepared[0] = Some((meta, ex == Extract::Tail));
                            return LitUse::Message;
                        }
                    }
                }
            }
            small
        }
    }

    fn prepare_append(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser, before: &[Tok], m: Marker) {
        // tag APPEND mailbox [(flags)] ["date"] literal, or after a
        // previous message of a MULTIAPPEND: ... literal SP [(flags)] [date].
        let mailbox = before.get(2).map(|t| p.value(t).into_owned());
        let mut flags = Vec::new();
        let mut date = None;
        // Walk back from the literal over this message's flags and date.
        let mut i = before.len();
        while i > 3 {
            let t = &before[i - 1];
            match t.kind {
                TokKind::Quoted if date.is_none() && flags.is_empty() => {
                    date = Some(p.value(t).into_owned());
                    i -= 1;
                }
                TokKind::RParen if t.depth == 0 => {
                    let mut j = i - 1;
                    while j > 0 && before[j - 1].kind != TokKind::LParen {
                        j -= 1;
                    }
                    flags = before[j..i - 1]
                        .iter()
                        .map(|t| p.value(t).into_owned())
                        .collect();
                    break;
                }
                _ => break,
            }
        }
        if let Some(c) = self.cur() {
            c.mailbox.clone_from(&mailbox);
            c.flags.clone_from(&flags);
            c.date.clone_from(&date);
        }
        let meta = ImapMessage {
            ts: cx.ts,
            direction: Some(Direction::Append),
            mailbox,
            section: "APPEND".into(),
            flags,
            internal_date: date,
            user: self.user.clone(),
            announced: m.len,
            ..ImapMessage::default()
        };
        self.prepared[1] = Some((meta, false));
    }

    /// The payload of a prepared message literal starts.
    pub(crate) fn open_message(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        msgs: &mut MsgStream,
    ) {
        if !is_orig {
            if std::mem::take(&mut self.continuing) {
                // The next piece of the held run: the same message goes on.
                self.run = None;
                let len = self.piece.as_ref().map_or(0, |p| p.len);
                if let Some(m) = msgs.current_mut() {
                    m.announced = m.announced.saturating_add(len);
                }
                return;
            }
            self.flush_run(cx, msgs);
        }
        let d = usize::from(is_orig);
        let Some((mut meta, headless)) = self.prepared[d].take() else {
            return;
        };
        self.msg_count = self.msg_count.saturating_add(1);
        meta.n = self.msg_count;
        meta.ts = cx.ts;
        let sender = if is_orig { cx.id.orig_h } else { cx.id.resp_h };
        let local = Some(self.cfg.is_local_addr(sender));
        msgs.begin(cx, meta, headless, local);
    }

    /// A message literal's payload ended. A piece of a run of partial
    /// fetches that came back full (as long as asked, and short of
    /// RFC822.SIZE) is held open for the next piece; a piece that came back
    /// short, or reached RFC822.SIZE, ends the run: the pieces joined are
    /// the whole message, `BODY[]`, not partial.
    pub(crate) fn literal_done(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        msgs: &mut MsgStream,
    ) {
        if let (false, Some(pc)) = (is_orig, self.piece.take()) {
            let end = pc.origin.saturating_add(pc.len);
            let whole = pc.size.is_some_and(|s| end >= s) || pc.count.is_some_and(|n| pc.len < n);
            if whole {
                if let Some(m) = msgs.current_mut() {
                    m.section = "BODY[]".into();
                    m.partial = false;
                }
            } else if pc.count.is_some() || pc.size.is_some() {
                if let Some(m) = msgs.current_mut() {
                    self.run = Some(Run {
                        next: end,
                        seq: m.seq,
                        uid: m.imap_uid,
                        size: pc.size,
                    });
                    return;
                }
            }
        }
        if let Some(f) = msgs.end(cx, false) {
            self.message_done(cx, is_orig, f);
        }
    }

    /// Ends a run of partial fetches held open (no next piece came): it is
    /// written as what it is, the message's first bytes, partial.
    pub(crate) fn flush_run(&mut self, cx: &mut ConnCtx<'_>, msgs: &mut MsgStream) {
        if self.run.take().is_none() {
            return;
        }
        if let Some(f) = msgs.end(cx, false) {
            self.count_message(cx, false, &f);
            self.finish_message(cx, f);
        }
    }

    /// The count a FETCH asked for the piece at `origin` of message
    /// `seq`/`uid`, if one did (and forgets that ask).
    fn take_partial_ask(&mut self, origin: u64, seq: Option<u64>, uid: Option<u64>) -> Option<u64> {
        let i = self.partial_asks.iter().position(|a| {
            a.origin == origin
                && if a.uid {
                    uid == Some(a.id)
                } else {
                    seq == Some(a.id)
                }
        })?;
        self.partial_asks.remove(i).map(|a| a.count)
    }

    /// A message literal ended.
    pub(crate) fn message_done(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, f: Finished) {
        self.count_message(cx, is_orig, &f);
        if is_orig {
            match self.cur() {
                Some(c) if c.appended.len() < MAX_WAITING => c.appended.push(f),
                _ => self.finish_message(cx, f),
            }
        } else if self.fetch_waiting.len() < MAX_WAITING {
            self.fetch_waiting.push(f);
        } else {
            self.finish_message(cx, f);
        }
    }

    /// Counts a message in imap.log and raises `imap_data`.
    fn count_message(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, f: &Finished) {
        let size = f.meta.size;
        let section = f.meta.section.clone();
        if is_orig {
            self.appended.0 += 1;
            self.appended.1 += size;
        } else if f.meta.partial {
            self.partial.0 += 1;
            self.partial.1 += size;
        } else {
            self.fetched.0 += 1;
            self.fetched.1 += size;
        }
        cx.event(|| Event::ImapData {
            is_orig,
            section: section.into_bytes(),
            size,
        });
    }

    fn finish_message(&mut self, cx: &mut ConnCtx<'_>, f: Finished) {
        emit_meta(cx, &f);
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(f.meta);
        } else {
            self.stats.messages_dropped += 1;
        }
    }

    // --------------------------------------------------------------- lines

    /// A complete logical line; returns whether its bytes must be zeroed
    /// (a password or SASL response was in it).
    pub(crate) fn line_end(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        p: &LineParser,
        raw: bool,
    ) -> bool {
        if is_orig {
            if raw {
                self.raw_client_line(cx, p);
                return true;
            }
            self.client_line(cx, p)
        } else {
            self.server_line(cx, p);
            false
        }
    }

    fn raw_client_line(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) {
        let text = p.toks().first().map(|t| p.raw(t)).unwrap_or(b"");
        // IDLE's DONE, or a SASL response (AUTHENTICATE runs).
        if let Some(i) = self
            .pending
            .iter()
            .rposition(|c| c.line_done && c.cmd == Cmd::Authenticate)
        {
            let c = &mut self.pending[i];
            let step = c.sasl_steps;
            c.sasl_steps += 1;
            if text == b"*" {
                return;
            }
            let mech = c.mech;
            if let Some(user) = sasl_user(mech, step, text) {
                self.pending[i].user = Some(user);
            } else if step == 0 && matches!(mech, Some(Mech::Plain)) {
                self.weird(cx, ImapWeird::BadSaslResponse);
            }
            return;
        }
        if text.eq_ignore_ascii_case(b"DONE") {
            cx.event(|| Event::ImapRequest {
                tag: Vec::new(),
                command: b"DONE".to_vec(),
                arg: Vec::new(),
            });
        }
    }

    fn client_line(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) -> bool {
        self.ensure_cmd(cx, p);
        let Some(id) = self.cur_cmd.take() else {
            if !p.is_broken() && !p.toks().is_empty() {
                self.weird(cx, ImapWeird::ClientCommandMissing);
            }
            return false;
        };
        let Some(i) = self.find(id) else { return false };
        let toks = p.toks();
        let uid = upper(p.raw(&toks[1])) == b"UID";
        let args = if uid { 3 } else { 2 };
        let mut redact = false;
        let cmd = self.pending[i].cmd;
        let arg = |k: usize| p.value_at(args + k - 2).map(|v| v.into_owned());
        let mut shown: Option<Bytes> = None;
        match cmd {
            Cmd::Login => {
                redact = true;
                let user = arg(2);
                let mut s = user.clone().unwrap_or_default();
                s.extend_from_slice(b" <redacted>");
                shown = Some(s);
                self.pending[i].user = user;
            }
            Cmd::Select | Cmd::Examine => self.pending[i].mailbox = arg(2),
            Cmd::Authenticate => {
                redact = true;
                let mech = arg(2).map(|m| upper(&m)).unwrap_or_default();
                let kind = match &mech[..] {
                    b"PLAIN" => Mech::Plain,
                    b"LOGIN" => Mech::Login,
                    b"XOAUTH2" => Mech::Xoauth2,
                    b"OAUTHBEARER" => Mech::Oauthbearer,
                    _ => Mech::Other,
                };
                if kind == Mech::Other {
                    self.auth_other += 1;
                }
                self.pending[i].mech = Some(kind);
                if let Some(ir) = arg(3) {
                    // SASL-IR: the initial response is the first step.
                    self.pending[i].sasl_steps = 1;
                    if let Some(u) = sasl_user(Some(kind), 0, &ir) {
                        self.pending[i].user = Some(u);
                    }
                }
                self.auth_method = Some(mech.clone());
                shown = Some(mech);
            }
            Cmd::Starttls => {
                if self.starttls_sent {
                    self.weird(cx, ImapWeird::DuplicateStarttls);
                }
                self.starttls_sent = true;
                if !self.compress {
                    self.switch = Some(Switch::HoldClient);
                }
            }
            Cmd::Compress if !self.compress => self.switch = Some(Switch::HoldClient),
            Cmd::Idle => self.idle = true,
            Cmd::Fetch => {
                // One message (not a set), and a BODY[]<o.n> item.
                let id = toks.get(args).and_then(|t| parse_number(p.raw(t)));
                let ask = toks
                    .get(args + 1..)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|t| t.kind == TokKind::Atom)
                    .find_map(|t| body_partial(p.raw(t)));
                if let (Some(id), Some((origin, count))) = (id, ask) {
                    if self.partial_asks.len() >= MAX_PARTIAL_ASKS {
                        self.partial_asks.pop_front();
                    }
                    self.partial_asks.push_back(PartialAsk {
                        uid,
                        id,
                        origin,
                        count,
                    });
                }
            }
            _ => {}
        }
        self.pending[i].line_done = true;
        if cx.events_enabled() {
            let tag = self.pending[i].tag.clone();
            let command = cmd.name(uid).as_bytes().to_vec();
            let arg = shown.unwrap_or_else(|| join_args(p, &toks[args.min(toks.len())..]));
            cx.event(|| Event::ImapRequest { tag, command, arg });
        }
        redact
    }

    fn server_line(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) {
        let toks = p.toks();
        let first_line = !self.greeting;
        self.greeting = true;
        if p.is_broken() || toks.is_empty() {
            self.flush_fetch_now(cx, p);
            return;
        }
        let t0 = p.raw(&toks[0]);
        if t0 == b"+" {
            self.stats.continuations += 1;
            return;
        }
        let t1 = toks.get(1).map(|t| upper(p.raw(t))).unwrap_or_default();
        let status = matches!(&t1[..], b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH");
        let code = toks
            .iter()
            .find(|t| t.kind == TokKind::Code)
            .map(|t| p.raw(t));
        let text = toks
            .iter()
            .rfind(|t| t.kind == TokKind::Text)
            .map(|t| p.raw(t))
            .unwrap_or(b"");
        if t0 == b"*" {
            self.stats.untagged_responses += 1;
            self.untagged_run += 1;
            if self.untagged_run == self.cfg.max_untagged_responses.saturating_add(1) {
                self.weird(cx, ImapWeird::ExcessiveUntaggedResponses);
            }
            if status {
                match &t1[..] {
                    b"OK" if first_line || !self.confirmed => self.confirm(cx),
                    b"PREAUTH" => {
                        self.confirm(cx);
                        self.login_ok = true;
                        self.auth_method = Some(b"PREAUTH".to_vec());
                    }
                    b"NO" => self.no += 1,
                    b"BAD" => self.bad += 1,
                    _ => {}
                }
                if let Some(code) = code {
                    self.code(code);
                }
                if cx.events_enabled() {
                    let (s, t) = (t1.clone(), cap_text(text));
                    cx.event(|| Event::ImapResponse {
                        tag: b"*".to_vec(),
                        status: s,
                        text: t,
                    });
                }
                return;
            }
            if t1 == b"CAPABILITY" {
                let caps: Vec<Bytes> = toks[2..].iter().map(|t| p.raw(t).to_vec()).collect();
                self.set_caps(&caps);
                cx.event(|| Event::ImapCapabilities { capabilities: caps });
                return;
            }
            if toks.len() > 2 && p.raw(&toks[2]).eq_ignore_ascii_case(b"FETCH") {
                self.flush_fetch_now(cx, p);
            }
            return;
        }
        if !status || matches!(&t1[..], b"BYE" | b"PREAUTH") {
            self.weird(cx, ImapWeird::ServerLineUnknown);
            return;
        }
        // A tagged completion.
        self.stats.tagged_responses += 1;
        self.untagged_run = 0;
        match &t1[..] {
            b"NO" => self.no += 1,
            b"BAD" => self.bad += 1,
            _ => {}
        }
        let mut last = t1.clone();
        if let Some(c) = code {
            last.extend_from_slice(b" [");
            last.extend_from_slice(c);
            last.push(b']');
        }
        if !text.is_empty() {
            last.push(b' ');
            last.extend_from_slice(text);
        }
        self.last_response = Some(cap_text(&last));
        if cx.events_enabled() {
            let (tag, s, t) = (t0.to_vec(), t1.clone(), cap_text(text));
            cx.event(|| Event::ImapResponse {
                tag,
                status: s,
                text: t,
            });
        }
        if let Some(c) = code {
            self.code(c);
        }
        if self.await_tag.as_deref() == Some(t0) {
            self.await_refused = true;
        }
        let Some(i) = self.pending.iter().position(|c| c.tag == t0) else {
            self.weird(cx, ImapWeird::UnmatchedTaggedResponse);
            return;
        };
        let Some(c) = self.pending.remove(i) else {
            return;
        };
        if self.cur_cmd == Some(c.id) {
            // Completed before its line ended (a refused literal).
            self.cur_cmd = None;
        }
        self.complete(cx, c, &t1, code);
    }

    fn complete(&mut self, cx: &mut ConnCtx<'_>, c: Pending, status: &[u8], code: Option<&[u8]>) {
        let ok = status == b"OK";
        match c.cmd {
            Cmd::Login | Cmd::Authenticate => {
                if c.user.is_some() {
                    self.user.clone_from(&c.user);
                }
                if c.cmd == Cmd::Login {
                    self.auth_method = Some(b"LOGIN".to_vec());
                }
                if ok {
                    self.login_ok = true;
                } else {
                    self.login_failures += 1;
                }
            }
            Cmd::Select | Cmd::Examine => {
                if ok {
                    self.mailbox.clone_from(&c.mailbox);
                    self.uidvalidity = c.uidvalidity;
                    if let Some(m) = c.mailbox {
                        if !self.mailboxes.contains(&m)
                            && self.mailboxes.len() < self.cfg.max_mailboxes_logged
                        {
                            self.mailboxes.push(m);
                        }
                    }
                } else {
                    self.mailbox = None;
                    self.uidvalidity = None;
                }
            }
            Cmd::Close | Cmd::Unselect if ok => {
                self.mailbox = None;
                self.uidvalidity = None;
            }
            Cmd::Starttls => {
                if ok && !self.compress {
                    self.tls = true;
                    self.confirm(cx);
                    cx.event(|| Event::ImapStarttls);
                    self.switch = Some(Switch::Tls);
                } else {
                    if !ok {
                        self.weird(cx, ImapWeird::ServerRefusedStarttls);
                    }
                    self.switch = Some(Switch::Release { compress: false });
                }
            }
            Cmd::Compress => {
                let on = ok && !self.compress;
                self.compress |= on;
                self.switch = Some(Switch::Release { compress: on });
            }
            Cmd::Append => {
                // APPENDUID uidvalidity uid-set (one UID per message when
                // the set lists them in order).
                let uids = code.and_then(appenduid);
                let n = c.appended.len();
                for (k, mut f) in c.appended.into_iter().enumerate() {
                    f.meta.status = Some(status.to_vec());
                    if let Some((v, ref set)) = uids {
                        f.meta.uidvalidity = Some(v);
                        if set.len() == n {
                            f.meta.imap_uid = Some(set[k]);
                        }
                    }
                    self.finish_message(cx, f);
                }
            }
            _ => {}
        }
    }

    /// A response code (`[...]` contents) of any status response.
    fn code(&mut self, code: &[u8]) {
        let mut w = code.split(|&c| c == b' ');
        let name = upper(w.next().unwrap_or(b""));
        match &name[..] {
            b"CAPABILITY" => {
                let caps: Vec<Bytes> = w.filter(|x| !x.is_empty()).map(<[u8]>::to_vec).collect();
                self.set_caps(&caps);
            }
            b"UIDVALIDITY" => {
                let v = w.next().and_then(parse_number);
                if let Some(c) = self
                    .pending
                    .iter_mut()
                    .rev()
                    .find(|c| matches!(c.cmd, Cmd::Select | Cmd::Examine))
                {
                    c.uidvalidity = v;
                }
            }
            _ => {}
        }
    }

    fn set_caps(&mut self, caps: &[Bytes]) {
        self.caps = caps
            .iter()
            .take(self.cfg.max_capabilities_logged)
            .cloned()
            .collect();
    }

    /// The FETCH response `p` ended: its messages get UID, FLAGS and
    /// INTERNALDATE and are written.
    fn flush_fetch_now(&mut self, cx: &mut ConnCtx<'_>, p: &LineParser) {
        if self.fetch_waiting.is_empty() {
            return;
        }
        let toks = p.toks();
        let fetch = !p.is_broken() && toks.len() > 3 && p.raw(&toks[0]) == b"*";
        let uid = if fetch {
            att_number(p, toks, b"UID")
        } else {
            None
        };
        let mut flags = Vec::new();
        let mut date = None;
        if fetch {
            for (i, t) in toks.iter().enumerate() {
                if t.depth != 1 || t.kind != TokKind::Atom {
                    continue;
                }
                let name = p.raw(t);
                if name.eq_ignore_ascii_case(b"FLAGS")
                    && toks.get(i + 1).is_some_and(|n| n.kind == TokKind::LParen)
                {
                    flags = toks[i + 2..]
                        .iter()
                        .take_while(|t| t.kind != TokKind::RParen)
                        .map(|t| p.value(t).into_owned())
                        .collect();
                } else if name.eq_ignore_ascii_case(b"INTERNALDATE") {
                    date = toks.get(i + 1).map(|t| p.value(t).into_owned());
                }
            }
        }
        for mut f in std::mem::take(&mut self.fetch_waiting) {
            if f.meta.imap_uid.is_none() {
                f.meta.imap_uid = uid;
            }
            f.meta.flags.clone_from(&flags);
            if f.meta.internal_date.is_none() {
                f.meta.internal_date.clone_from(&date);
            }
            self.finish_message(cx, f);
        }
    }

    /// Writes the session row (if the session showed any data) and every
    /// message still waiting.
    pub(crate) fn finish(&mut self, cx: &mut ConnCtx<'_>) -> Option<ImapRecord> {
        for f in std::mem::take(&mut self.fetch_waiting) {
            self.finish_message(cx, f);
        }
        let appended: Vec<Finished> = self
            .pending
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.appended))
            .collect();
        for f in appended {
            self.finish_message(cx, f);
        }
        let ts = self.ts?;
        let login = if self.login_ok {
            "success"
        } else if self.login_failures > 0 {
            "failure"
        } else {
            "unknown"
        };
        Some(ImapRecord {
            ts,
            uid: cx.uid.to_owned(),
            id: Some(*cx.id),
            user: self.user.take(),
            auth_method: self.auth_method.take(),
            login,
            login_failures: self.login_failures,
            auth_other_mechanisms: self.auth_other,
            mailboxes: std::mem::take(&mut self.mailboxes),
            capabilities: std::mem::take(&mut self.caps),
            commands: self
                .commands
                .iter()
                .map(|(k, n)| format!("{k}:{n}").into_bytes())
                .collect(),
            messages_fetched: self.fetched.0,
            bytes_fetched: self.fetched.1,
            partial_fetched: self.partial.0,
            partial_bytes_fetched: self.partial.1,
            messages_appended: self.appended.0,
            bytes_appended: self.appended.1,
            starttls: self.tls,
            compress: self.compress,
            idle: self.idle,
            no_responses: self.no,
            bad_responses: self.bad,
            last_response: self.last_response.take(),
        })
    }
}

/// The number after the depth-1 attribute `name` (`UID 42`).
/// A piece of a run of partial fetches (see [`Proto::literal_done`]).
#[derive(Clone, Copy, Debug)]
struct RunPiece {
    /// The response's `<o>`.
    origin: u64,
    /// The literal's announced length.
    len: u64,
    /// What the FETCH asked for (`<o.n>`'s n), if known.
    count: Option<u64>,
    /// RFC822.SIZE, if this or an earlier response of the run gave it.
    size: Option<u64>,
}

/// A run of partial fetches of one message held open for its next piece.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// The origin the next piece must have.
    next: u64,
    seq: Option<u64>,
    uid: Option<u64>,
    size: Option<u64>,
}

impl Run {
    /// Whether a response piece at `origin` for message `seq`/`uid` is the
    /// run's next one: the same message (by UID when both carry one, else
    /// by sequence number) and no byte missing or repeated in between.
    fn continued_by(&self, origin: u64, seq: Option<u64>, uid: Option<u64>) -> bool {
        let same = match (self.uid, uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.seq.is_some() && self.seq == seq,
        };
        same && origin == self.next
    }
}

/// A FETCH of one message (`id`: a UID for UID FETCH, else a sequence
/// number) that asked for `BODY[]<origin.count>`.
#[derive(Clone, Copy, Debug)]
struct PartialAsk {
    uid: bool,
    id: u64,
    origin: u64,
    count: u64,
}

/// Partial asks remembered (pipelined chunk fetches of several messages).
const MAX_PARTIAL_ASKS: usize = 32;

/// The `(o, n)` of a FETCH command item `BODY[]<o.n>` or
/// `BODY.PEEK[]<o.n>` (the whole message's bytes from `o`, at most `n`).
fn body_partial(atom: &[u8]) -> Option<(u64, u64)> {
    let up = atom.to_ascii_uppercase();
    let rest = up
        .strip_prefix(b"BODY.PEEK[]<")
        .or_else(|| up.strip_prefix(b"BODY[]<"))?;
    let inner = rest.strip_suffix(b">")?;
    let dot = inner.iter().position(|&b| b == b'.')?;
    Some((
        parse_number(&inner[..dot])?,
        parse_number(&inner[dot + 1..])?,
    ))
}

fn att_number(p: &LineParser, toks: &[Tok], name: &[u8]) -> Option<u64> {
    toks.windows(2).find_map(|w| {
        (w[0].depth == 1 && w[0].kind == TokKind::Atom && p.raw(&w[0]).eq_ignore_ascii_case(name))
            .then(|| parse_number(p.raw(&w[1])))
            .flatten()
    })
}

/// `APPENDUID v set`: the UID validity and the UIDs in order.
fn appenduid(code: &[u8]) -> Option<(u64, Vec<u64>)> {
    let mut w = code.split(|&c| c == b' ');
    if !w.next()?.eq_ignore_ascii_case(b"APPENDUID") {
        return None;
    }
    let v = parse_number(w.next()?)?;
    let mut uids = Vec::new();
    for part in w.next()?.split(|&c| c == b',') {
        let mut r = part.split(|&c| c == b':');
        let a = parse_number(r.next()?)?;
        let b = r.next().map_or(Some(a), parse_number)?;
        let (lo, hi) = (a.min(b), a.max(b));
        if hi - lo > 10_000 || uids.len() > 10_000 {
            return None;
        }
        uids.extend(lo..=hi);
    }
    Some((v, uids))
}

/// The user named by a SASL response at `step`.
fn sasl_user(mech: Option<Mech>, step: u32, text: &[u8]) -> Option<Bytes> {
    if step != 0 || text == b"=" {
        return None;
    }
    let d = decode_base64(text)?;
    match mech? {
        Mech::Plain => sasl_plain_user(&d),
        Mech::Login => Some(d),
        Mech::Xoauth2 => xoauth2_user(&d),
        Mech::Oauthbearer => d
            .split(|&c| c == b',')
            .find_map(|kv| kv.strip_prefix(b"a="))
            .map(<[u8]>::to_vec),
        Mech::Other => None,
    }
}

/// Command arguments for the request event: tokens as sent, literals as
/// `{n}`.
fn join_args(p: &LineParser, toks: &[Tok]) -> Bytes {
    let mut s = Vec::new();
    let mut prev_open = true;
    for t in toks {
        let close = t.kind == TokKind::RParen;
        if !s.is_empty() && !prev_open && !close {
            s.push(b' ');
        }
        match t.kind {
            TokKind::Quoted => {
                s.push(b'"');
                s.extend_from_slice(p.raw(t));
                s.push(b'"');
            }
            TokKind::Literal => s.extend_from_slice(format!("{{{}}}", t.lit_len).as_bytes()),
            _ => s.extend_from_slice(p.raw(t)),
        }
        prev_open = t.kind == TokKind::LParen;
        if s.len() > MAX_TEXT {
            s.truncate(MAX_TEXT);
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appenduid_sets() {
        assert_eq!(appenduid(b"APPENDUID 17 44"), Some((17, vec![44])));
        assert_eq!(appenduid(b"APPENDUID 17 45:46"), Some((17, vec![45, 46])));
        assert_eq!(appenduid(b"APPENDUID 17 1,3:4"), Some((17, vec![1, 3, 4])));
        assert_eq!(appenduid(b"COPYUID 1 2 3"), None);
        assert_eq!(appenduid(b"APPENDUID 1 1:99999999"), None);
    }

    #[test]
    fn command_names() {
        assert_eq!(Cmd::parse(b"FETCH").name(true), "UID FETCH");
        assert_eq!(Cmd::parse(b"FETCH").name(false), "FETCH");
        assert_eq!(Cmd::parse(b"XYZZY").name(false), "OTHER");
        assert_eq!(Cmd::parse(b"COMPRESS").name(true), "COMPRESS");
    }
}
