//! The IMAP analyzer of one connection: framing per direction (line
//! splitter, logical-line parser, literals streamed in plain mode, the
//! passive decision on synchronizing literals), STARTTLS and
//! COMPRESS=DEFLATE switches, content gaps, and the hand-over to the
//! protocol state ([`crate::proto::Proto`]).

use crate::config::ImapConfig;
use crate::message::MsgStream;
use crate::parse::{Frag, LineParser, Marker};
use crate::proto::{LitUse, Proto, Switch};
use crate::record::{ImapMessage, ImapWeird};
use mailtap_contentline::{LineSplitter, Nuls, Piece};
use mailtap_core::{Charge, ConnCtx, Record, TcpAnalyzer};
use std::sync::Arc;

/// Counters of one analyzer instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImapStats {
    pub client_lines: u64,
    pub server_lines: u64,
    pub commands: u64,
    pub tagged_responses: u64,
    pub untagged_responses: u64,
    pub continuations: u64,
    pub literals: u64,
    pub literal_bytes: u64,
    /// Client synchronizing literals refused by a tagged NO/BAD.
    pub literals_refused: u64,
    pub gaps: u64,
    /// Lines skipped while hunting for a command/response after framing
    /// was lost.
    pub lines_skipped: u64,
    pub pending_dropped: u64,
    pub messages_dropped: u64,
    /// Bytes before and after inflation (COMPRESS).
    pub compressed_bytes: u64,
    pub inflated_bytes: u64,
    pub held_bytes_dropped: u64,
    /// COMPRESS refused by the shard's buffer budget.
    pub compress_over_budget: u64,
}

/// One direction's framing state.
pub(crate) struct Dir {
    lines: LineSplitter,
    pub(crate) parser: LineParser,
    /// A literal's payload is being read.
    lit: Option<LitUse>,
    /// Client: a synchronizing literal announced; whether its payload
    /// follows is decided at the next octet (RFC 3501 §7.5, spec §2.3).
    await_lit: Option<(Marker, LitUse)>,
    /// Framing lost: lines are skipped until one looks like a command or
    /// a response.
    lost: bool,
    /// Nothing more is analysed in this direction.
    dead: bool,
    inflate: Option<Box<flate2::Decompress>>,
    /// Client bytes held while STARTTLS or COMPRESS awaits its answer.
    hold: Option<Vec<u8>>,
    pub(crate) msgs: MsgStream,
    scratch: Vec<u8>,
}

/// IMAP analyzer for one TCP connection.
pub struct ImapAnalyzer {
    /// Indexed by `is_orig as usize` (0 = server).
    dirs: [Dir; 2],
    p: Proto,
    finished: bool,
    tls_handoff: Option<usize>,
    /// The inflate states and their output buffers after COMPRESS,
    /// charged to the shard's buffer budget.
    inflate_charge: Charge,
}

/// Inflated bytes handed on at once.
const INFLATE_CHUNK: usize = 32 * 1024;

/// What COMPRESS costs a connection: per direction a raw-inflate state
/// (miniz_oxide's, a 32 KiB window and its tables, about 43 KB) and an
/// `INFLATE_CHUNK` output buffer.
const INFLATE_MEMORY: usize = 2 * (44 * 1024 + INFLATE_CHUNK);

impl ImapAnalyzer {
    pub fn new(cfg: Arc<ImapConfig>) -> Self {
        let dir = |is_orig: bool| Dir {
            lines: LineSplitter::new(cfg.max_line_length, Nuls::Keep),
            parser: LineParser::new(),
            lit: None,
            await_lit: None,
            lost: false,
            dead: false,
            inflate: None,
            hold: None,
            msgs: MsgStream::new(
                cfg.files.clone(),
                cfg.max_header_bytes,
                cfg.max_line_length,
                is_orig,
            ),
            scratch: Vec::new(),
        };
        ImapAnalyzer {
            dirs: [dir(false), dir(true)],
            p: Proto::new(cfg.clone()),
            finished: false,
            tls_handoff: None,
            inflate_charge: Charge::default(),
        }
    }

    pub fn stats(&self) -> ImapStats {
        self.p.stats
    }

    /// Whether the session switched to TLS (STARTTLS answered OK).
    pub fn tls(&self) -> bool {
        self.p.tls
    }

    /// Whether COMPRESS=DEFLATE is active.
    pub fn compressed(&self) -> bool {
        self.p.compress
    }

    /// The offset in the last delivered data where TLS began, if STARTTLS
    /// was accepted during that delivery (once).
    pub fn take_tls_handoff(&mut self) -> Option<usize> {
        self.tls_handoff.take()
    }

    /// IMAP metadata of the messages extracted so far (bounded).
    pub fn messages(&self) -> &[ImapMessage] {
        &self.p.messages
    }

    /// The mailbox currently selected.
    pub fn mailbox(&self) -> Option<&[u8]> {
        self.p.mailbox.as_deref()
    }

    /// Commands waiting for their tagged response.
    pub fn pending_commands(&self) -> usize {
        self.p.pending.len()
    }

    /// Delivers wire bytes of one direction (held, inflated or framed).
    fn drive(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        let d = usize::from(is_orig);
        if self.p.tls || self.dirs[d].dead {
            return;
        }
        if let Some(h) = self.dirs[d].hold.as_mut() {
            let room = self.p.cfg.max_held_bytes.saturating_sub(h.len());
            if data.len() > room {
                self.p.stats.held_bytes_dropped += (h.len() + data.len()) as u64;
                self.dirs[d].hold = None;
                self.dirs[d].lost = true;
                self.p.weird(cx, ImapWeird::HeldBytesOverflow);
            } else {
                h.extend_from_slice(data);
            }
            return;
        }
        if self.dirs[d].inflate.is_some() {
            self.inflate_feed(cx, is_orig, data);
        } else {
            self.plain_feed(cx, is_orig, data, true);
        }
    }

    /// Frames plaintext bytes and carries out the switches the protocol
    /// asks for. `wire`: `data` is what the flow layer delivered (so a
    /// TLS hand-off offset means something).
    fn plain_feed(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8], wire: bool) {
        let mut off = 0usize;
        loop {
            let (n, sw) = self.feed_text(cx, is_orig, &data[off..]);
            off += n;
            let Some(sw) = sw else { return };
            match sw {
                Switch::Tls => {
                    if let Some(h) = self.dirs[1].hold.take() {
                        if !h.is_empty() {
                            self.p.weird(cx, ImapWeird::StarttlsInjection);
                        }
                    }
                    if wire {
                        self.tls_handoff = Some(off.min(data.len()));
                    } else {
                        self.p.weird(cx, ImapWeird::StarttlsUnderCompress);
                    }
                    return;
                }
                Switch::HoldClient => {
                    let rest = &data[off.min(data.len())..];
                    if rest.len() > self.p.cfg.max_held_bytes {
                        self.p.stats.held_bytes_dropped += rest.len() as u64;
                        self.p.weird(cx, ImapWeird::HeldBytesOverflow);
                        self.dirs[1].lost = true;
                        return;
                    }
                    self.dirs[1].hold = Some(rest.to_vec());
                    return;
                }
                Switch::Release { compress } => {
                    let held = self.dirs[1].hold.take().unwrap_or_default();
                    if compress {
                        // Two inflate states and their output buffers per
                        // connection: thousands of COMPRESS sessions would
                        // hold gigabytes, so they count against the
                        // shard's budget, and one that does not fit is
                        // not analysed further.
                        let need = INFLATE_MEMORY;
                        if !cx.out.buffers.fits(need) {
                            cx.out.buffers.note_refused();
                            self.p.stats.compress_over_budget += 1;
                            self.p.weird(cx, ImapWeird::CompressOverBudget);
                            self.kill(cx, 0);
                            self.kill(cx, 1);
                            return;
                        }
                        self.inflate_charge.set(&cx.out.buffers, need);
                        for dir in &mut self.dirs {
                            dir.inflate = Some(Box::new(flate2::Decompress::new(false)));
                        }
                        if !held.is_empty() {
                            self.inflate_feed(cx, true, &held);
                        }
                        let rest = &data[off.min(data.len())..];
                        if !rest.is_empty() {
                            self.inflate_feed(cx, is_orig, rest);
                        }
                        return;
                    }
                    if !held.is_empty() {
                        self.plain_feed(cx, true, &held, false);
                    }
                    if off >= data.len() {
                        return;
                    }
                }
            }
        }
    }

    /// Inflates one direction's compressed bytes and frames the output.
    fn inflate_feed(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, mut input: &[u8]) {
        let d = usize::from(is_orig);
        self.p.stats.compressed_bytes += input.len() as u64;
        let mut out = std::mem::take(&mut self.dirs[d].scratch);
        out.resize(INFLATE_CHUNK, 0);
        loop {
            if self.p.tls || self.dirs[d].dead {
                break;
            }
            let Some(z) = self.dirs[d].inflate.as_mut() else {
                break;
            };
            let (in0, out0) = (z.total_in(), z.total_out());
            let r = z.decompress(input, &mut out, flate2::FlushDecompress::None);
            let used = (z.total_in() - in0) as usize;
            let produced = (z.total_out() - out0) as usize;
            input = &input[used.min(input.len())..];
            if produced > 0 {
                self.p.stats.inflated_bytes += produced as u64;
                self.plain_feed(cx, is_orig, &out[..produced], false);
            }
            match r {
                Err(_) => {
                    self.p.weird(cx, ImapWeird::InflateError);
                    self.kill(cx, d);
                    break;
                }
                Ok(flate2::Status::StreamEnd) => {
                    // A final block: nothing more can follow in this
                    // direction that we could read.
                    self.dirs[d].inflate = None;
                    self.dirs[d].dead = true;
                    break;
                }
                Ok(_) => {}
            }
            if produced < out.len() && (input.is_empty() || used == 0) {
                break;
            }
        }
        out.clear();
        self.dirs[d].scratch = out;
    }

    /// Ends analysis of one direction (an open message ends cut).
    fn kill(&mut self, cx: &mut ConnCtx<'_>, d: usize) {
        let dir = &mut self.dirs[d];
        dir.dead = true;
        dir.lines.set_plain(0);
        dir.lines.discard_partial();
        dir.parser.reset(true);
        dir.await_lit = None;
        if dir.lit.take() == Some(LitUse::Message) {
            if let Some(f) = dir.msgs.end(cx, true) {
                self.p.message_done(cx, d == 1, f);
            }
        } else if d == 0 {
            self.p.flush_run(cx, &mut dir.msgs);
        }
    }

    /// Frames plaintext of one direction until its end or a switch; how
    /// far it got and the switch.
    fn feed_text(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        data: &[u8],
    ) -> (usize, Option<Switch>) {
        let d = usize::from(is_orig);
        let lim = self.p.limits;
        let max_line = if is_orig {
            self.p.cfg.max_command_line_length
        } else {
            self.p.cfg.max_line_length
        };
        let mut pos = 0usize;
        loop {
            if let Some(sw) = self.p.switch.take() {
                return (pos, Some(sw));
            }
            if self.p.tls {
                return (pos, None);
            }
            let Self { dirs, p, .. } = self;
            let dir = &mut dirs[d];
            if dir.dead {
                return (data.len(), None);
            }
            if pos < data.len() {
                if let Some((m, u)) = dir.await_lit.take() {
                    if std::mem::take(&mut p.await_refused) {
                        // The server refused the literal before its
                        // payload: these octets are a new command.
                        // (The command was completed by that response.)
                        p.stats.literals_refused += 1;
                        p.await_tag = None;
                        p.drop_prepared(d);
                        p.abandon_line(cx, true);
                        p.parse_weirds(cx, &dir.parser);
                        dir.parser.reset(true);
                    } else {
                        p.await_tag = None;
                        start_literal(dir, p, cx, is_orig, m, u);
                    }
                }
            }
            dir.lines.set_max_line(max_line);
            let mut lost = None;
            let Some(piece) = dir.lines.next_cut(cx, data, &mut pos, &mut lost) else {
                break;
            };
            match piece {
                Piece::LateLf => {}
                Piece::Plain(b) => {
                    p.stats.literal_bytes += b.len() as u64;
                    literal_data(dir.lit, &mut dir.parser, &mut dir.msgs, p, cx, b);
                    if dir.lines.plain_remaining() == 0 {
                        literal_end(dir, p, cx, is_orig);
                    }
                }
                Piece::Line(l, term) => {
                    let cut = term.is_empty();
                    if is_orig {
                        p.stats.client_lines += 1;
                    } else {
                        p.stats.server_lines += 1;
                    }
                    if dir.lost {
                        if cut || !resync_candidate(l, is_orig) {
                            p.stats.lines_skipped += 1;
                            continue;
                        }
                        dir.lost = false;
                        p.weird(cx, ImapWeird::Resynchronized);
                    }
                    let raw = is_orig && dir.parser.is_fresh() && !cut && p.client_raw(l);
                    let frag = dir
                        .parser
                        .fragment(l, cut, raw, !is_orig, &lim, &cx.out.buffers);
                    match frag {
                        Frag::Cut => {}
                        Frag::Done => {
                            let redact = p.line_end(cx, is_orig, &dir.parser, raw);
                            p.parse_weirds(cx, &dir.parser);
                            dir.parser.reset(redact);
                        }
                        Frag::Literal(m) => {
                            p.stats.literals += 1;
                            let u = p.literal_begin(cx, is_orig, &dir.parser, m);
                            if is_orig && m.sync {
                                p.await_tag = p.current_tag();
                                p.await_refused = false;
                                dir.await_lit = Some((m, u));
                            } else {
                                start_literal(dir, p, cx, is_orig, m, u);
                            }
                        }
                        Frag::Desync(_) => {
                            p.parse_weirds(cx, &dir.parser);
                            p.abandon_line(cx, is_orig);
                            dir.parser.reset(true);
                            dir.lost = true;
                        }
                    }
                }
            }
        }
        (pos, self.p.switch.take())
    }
}

/// Starts reading a literal's payload.
fn start_literal(
    dir: &mut Dir,
    p: &mut Proto,
    cx: &mut ConnCtx<'_>,
    is_orig: bool,
    m: Marker,
    u: LitUse,
) {
    if u == LitUse::Message {
        p.open_message(cx, is_orig, &mut dir.msgs);
    }
    dir.lit = Some(u);
    if m.len == 0 {
        literal_end(dir, p, cx, is_orig);
    } else {
        dir.lines.set_plain(m.len);
    }
}

fn literal_data(
    lit: Option<LitUse>,
    parser: &mut LineParser,
    msgs: &mut MsgStream,
    p: &mut Proto,
    cx: &mut ConnCtx<'_>,
    b: &[u8],
) {
    match lit {
        Some(LitUse::Keep) => parser.keep(b, p.cfg.max_kept_literal, &p.limits, &cx.out.buffers),
        Some(LitUse::Message) => msgs.data(cx, b),
        _ => {}
    }
}

fn literal_end(dir: &mut Dir, p: &mut Proto, cx: &mut ConnCtx<'_>, is_orig: bool) {
    match dir.lit.take() {
        Some(LitUse::Message) => p.literal_done(cx, is_orig, &mut dir.msgs),
        Some(LitUse::Skip | LitUse::Redact) => dir.parser.skip_literal(),
        _ => {}
    }
}

/// Whether a line seen while framing is lost may start a command (client)
/// or a response (server).
pub fn resync_candidate(line: &[u8], is_orig: bool) -> bool {
    let mut w = line.splitn(4, |&c| c == b' ');
    let (Some(a), Some(b)) = (w.next(), w.next()) else {
        return false;
    };
    let c = w.next().unwrap_or(b"");
    let up = b.to_ascii_uppercase();
    if is_orig {
        if a.is_empty() || a == b"*" || a == b"+" || !a.iter().all(|&c| c.is_ascii_graphic()) {
            return false;
        }
        let name = if up == b"UID" {
            c.to_ascii_uppercase()
        } else {
            up
        };
        return crate::proto::Cmd::parse(&name) != crate::proto::Cmd::Other;
    }
    let status = matches!(&up[..], b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH");
    if a == b"*" {
        return status
            || matches!(
                &up[..],
                b"CAPABILITY"
                    | b"LIST"
                    | b"LSUB"
                    | b"FLAGS"
                    | b"SEARCH"
                    | b"ESEARCH"
                    | b"STATUS"
                    | b"ENABLED"
                    | b"ID"
                    | b"NAMESPACE"
            )
            || (b.iter().all(u8::is_ascii_digit)
                && !b.is_empty()
                && matches!(
                    &c.to_ascii_uppercase()[..],
                    b"EXISTS" | b"EXPUNGE" | b"RECENT" | b"FETCH" | b"FETCH ("
                ))
            || (b.iter().all(u8::is_ascii_digit)
                && c.len() >= 5
                && c[..5].eq_ignore_ascii_case(b"FETCH"));
    }
    status && !a.is_empty() && a != b"+" && a.iter().all(|&c| c.is_ascii_graphic())
}

impl TcpAnalyzer for ImapAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        if self.finished || data.is_empty() || self.p.tls {
            return;
        }
        self.p.touch(cx.ts);
        self.drive(cx, is_orig, data);
    }

    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, mut len: u64) {
        if self.finished || len == 0 || self.p.tls {
            return;
        }
        self.p.stats.gaps += 1;
        let d = usize::from(is_orig);
        if self.dirs[d].dead {
            return;
        }
        if self.dirs[d].inflate.is_some() {
            self.p.weird(cx, ImapWeird::GapInCompressedStream);
            self.kill(cx, d);
            return;
        }
        if self.dirs[d].hold.take().is_some() {
            self.dirs[d].lost = true;
            self.p.weird(cx, ImapWeird::GapLostSync);
            return;
        }
        let Self { dirs, p, .. } = self;
        let dir = &mut dirs[d];
        if let Some((m, u)) = dir.await_lit.take() {
            // The payload was sent (its bytes are what is missing).
            p.await_tag = None;
            p.await_refused = false;
            start_literal(dir, p, cx, is_orig, m, u);
        }
        if dir.lit.is_some() {
            let rem = dir.lines.plain_remaining();
            let take = rem.min(len);
            dir.lines.set_plain(rem - take);
            len -= take;
            match dir.lit {
                Some(LitUse::Message) => dir.msgs.gap(cx, take),
                Some(LitUse::Keep) => {
                    dir.lit = Some(LitUse::Skip);
                }
                _ => {}
            }
            if rem == take {
                literal_end(dir, p, cx, is_orig);
            }
            if len == 0 {
                return;
            }
        }
        // Line data is lost: so is framing.
        dir.lines.discard_partial();
        dir.parser.reset(true);
        p.abandon_line(cx, is_orig);
        if !dir.lost {
            p.weird(cx, ImapWeird::GapLostSync);
        }
        dir.lost = true;
    }

    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        for d in 0..2 {
            let dir = &mut self.dirs[d];
            if dir.lit.take() == Some(LitUse::Message) {
                if let Some(f) = dir.msgs.end(cx, true) {
                    self.p.message_done(cx, d == 1, f);
                }
            } else if d == 0 {
                self.p.flush_run(cx, &mut dir.msgs);
            }
        }
        for dir in &mut self.dirs {
            dir.lines.discard_partial();
            dir.parser.release();
            dir.hold = None;
            dir.inflate = None;
            dir.scratch = Vec::new();
        }
        self.inflate_charge.release();
        if let Some(r) = self.p.finish(cx) {
            cx.emit(Record::Imap(Box::new(r)));
        }
    }

    fn disabled(&self) -> bool {
        self.dirs.iter().all(|d| d.dead)
    }

    fn start_midstream(&mut self) {
        for d in &mut self.dirs {
            d.lost = true;
        }
        self.p.midstream = true;
    }

    fn bypass_ready(&self) -> bool {
        self.p.tls
    }
}
