//! Mid-stream resynchronisation (issue 11): a connection whose start was
//! not captured (`TcpAnalyzer::start_midstream`) is first *hunted*: the
//! lines of both directions are kept, uninterpreted and without events,
//! until a point where the dialogue's state is certain:
//!
//! * the server's first line is a `220` greeting and the client has said
//!   nothing: the capture began at the session's start, analysed as usual;
//! * a final `354` reply: the client's next bytes are a message whose DATA
//!   is seen whole (byte-exact, `complete`); the commands kept since the
//!   pickup (from the last `MAIL`, if any) and the replies that came after
//!   the first of them are replayed, paired from the end;
//! * a client line `.`: the end of a message whose start was not seen; the
//!   client's lines since the pickup are its tail (extracted, not parsed,
//!   `complete: false`, `partial: true`), and the reply to `.` is its status;
//! * a valid `BDAT n [LAST]` command: after it, chunk arithmetic is exact;
//!   with a `MAIL` or `RCPT` kept before it the transaction is replayed and
//!   the message is whole, otherwise the client's lines since the pickup
//!   are the tail of a chunk of a message whose start was not seen.
//!
//! Nothing kept before the synchronisation point raises events; the
//! replayed commands and replies raise theirs as usual.

use super::{Proto, State};
use crate::bdat::Bdat;
use crate::parser::{parse_bdat_arg, split_command, Cmd};
use mailtap_core::ConnCtx;

/// Client bytes kept while hunting; older lines are dropped beyond it.
const MAX_HUNT_BYTES: usize = 1 << 20;

/// One line seen while hunting.
pub(crate) struct HuntLine {
    orig: bool,
    line: Vec<u8>,
    term: &'static [u8],
}

/// Hunting state of a connection picked up mid-stream.
#[derive(Default)]
pub(crate) struct Hunt {
    lines: Vec<HuntLine>,
    bytes: usize,
    /// Lines seen per direction (responder first).
    seen: [u64; 2],
    /// Lines were dropped at the byte bound.
    dropped: bool,
}

/// `NNN` followed by a space, a `-` or nothing: (code, final line).
fn strict_reply(line: &[u8]) -> Option<(u16, bool)> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
    if !(100..600).contains(&code) {
        return None;
    }
    match line.get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        _ => None,
    }
}

/// Where a valid `BDAT n [LAST]` command begins in a client line: at its
/// start, or after chunk bytes that did not end with a line end.
fn bdat_at(line: &[u8]) -> Option<usize> {
    let valid = |at: usize| {
        let l = &line[at..];
        command_of(l) == Some(Cmd::Bdat) && parse_bdat_arg(split_command(l).1).is_ok()
    };
    if valid(0) {
        return Some(0);
    }
    let at = memchr::memmem::rfind(line, b"BDAT ")?;
    valid(at).then_some(at)
}

fn command_of(line: &[u8]) -> Option<Cmd> {
    let (word, _) = split_command(line);
    match Cmd::parse(word)? {
        // Internal names a client never sends.
        Cmd::ConnEstablishment | Cmd::EndOfData | Cmd::AuthAnswer => None,
        c => Some(c),
    }
}

impl Proto {
    /// One line while hunting. Returns `Some(at)` when the analyzer is now
    /// synchronised and `line[at..]` was *not* consumed: the caller handles
    /// it as a normal line.
    pub(crate) fn hunt_line(
        &mut self,
        cx: &mut ConnCtx<'_>,
        orig: bool,
        line: &[u8],
        term: &'static [u8],
    ) -> Option<usize> {
        let Some(h) = self.hunt.as_mut() else {
            return Some(0);
        };
        let dir = usize::from(orig);
        h.seen[dir] += 1;
        let is_sender = orig == self.orig_is_sender;
        if !is_sender {
            let reply = strict_reply(line);
            if h.seen[dir] == 1 && !h.lines.iter().any(|l| l.orig != orig) {
                if let Some((220, _)) = reply {
                    // The greeting, nothing from the client before it: the
                    // session's start after all.
                    self.hunt = None;
                    return Some(0);
                }
            }
            h.lines.push(HuntLine {
                orig,
                line: line.to_vec(),
                term,
            });
            if reply == Some((354, true)) {
                self.sync_replay(cx, None);
            }
            return None;
        }
        if line == b"." {
            self.sync_tail(cx, orig, false);
            return Some(0);
        }
        if let Some(at) = bdat_at(line) {
            let new_transaction = at == 0
                && h.lines.iter().any(|l| {
                    l.orig == orig && matches!(command_of(&l.line), Some(Cmd::Mail | Cmd::Rcpt))
                });
            if new_transaction {
                self.sync_replay(cx, Some(orig));
            } else {
                // Chunk bytes without a line end, then the next BDAT.
                if at > 0 {
                    if let Some(h) = self.hunt.as_mut() {
                        h.lines.push(HuntLine {
                            orig,
                            line: line[..at].to_vec(),
                            term: b"",
                        });
                    }
                }
                self.sync_tail(cx, orig, true);
            }
            return Some(at);
        }
        h.bytes += line.len() + term.len();
        h.lines.push(HuntLine {
            orig,
            line: line.to_vec(),
            term,
        });
        while h.bytes > MAX_HUNT_BYTES && !h.lines.is_empty() {
            let l = h.lines.remove(0);
            h.bytes -= l.line.len() + l.term.len();
            h.dropped = true;
        }
        None
    }

    /// The LF of a CRLF split across deliveries, while hunting.
    pub(crate) fn hunt_late_lf(&mut self, orig: bool) {
        if let Some(h) = self.hunt.as_mut() {
            if let Some(l) = h.lines.iter_mut().rev().find(|l| l.orig == orig) {
                if l.term == b"\r" {
                    l.term = b"\r\n";
                    h.bytes += 1;
                }
            }
        }
    }

    /// Synchronises on a transaction whose commands since the pickup are
    /// kept: replays them with the replies that answer them. `bdat_from`:
    /// the sync line is a BDAT command (handled by the caller afterwards),
    /// else the last kept line is a final 354 reply.
    fn sync_replay(&mut self, cx: &mut ConnCtx<'_>, bdat_from: Option<bool>) {
        let Some(h) = self.hunt.take() else { return };
        let sender = self.orig_is_sender;
        let cmds: Vec<usize> = h
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.orig == sender && command_of(&l.line).is_some())
            .map(|(i, _)| i)
            .collect();
        let start = cmds
            .iter()
            .rposition(|&i| command_of(&h.lines[i].line) == Some(Cmd::Mail))
            .unwrap_or(0);
        let mut cmds = cmds[start..].to_vec();
        // Replies (indices of their lines) whose first line came after the
        // first kept command.
        let first = cmds.first().copied().unwrap_or(usize::MAX);
        let mut replies: Vec<Vec<usize>> = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut cur_ok = false;
        for (i, l) in h.lines.iter().enumerate() {
            if l.orig == sender {
                continue;
            }
            let Some((_, fin)) = strict_reply(&l.line) else {
                continue;
            };
            if cur.is_empty() {
                cur_ok = i > first;
            }
            cur.push(i);
            if fin {
                if cur_ok {
                    replies.push(std::mem::take(&mut cur));
                } else {
                    cur.clear();
                }
            }
        }
        // A 354 answers DATA: without a kept DATA, nothing is replayed.
        let at_354 = bdat_from.is_none();
        let data_last = cmds
            .last()
            .is_some_and(|&i| command_of(&h.lines[i].line) == Some(Cmd::Data));
        if at_354 && !data_last {
            cmds.clear();
            replies = vec![vec![h.lines.len() - 1]];
        } else if replies.len() > cmds.len() {
            replies.drain(..replies.len() - cmds.len());
        }
        let mut keep = vec![false; h.lines.len()];
        for &i in &cmds {
            keep[i] = true;
        }
        for r in &replies {
            for &i in r {
                keep[i] = true;
            }
        }
        let saw_mail = cmds
            .iter()
            .any(|&i| command_of(&h.lines[i].line) == Some(Cmd::Mail));
        self.state = match cmds.first().and_then(|&i| command_of(&h.lines[i].line)) {
            Some(Cmd::Ehlo | Cmd::Helo) => State::Initiated,
            Some(Cmd::Rcpt) => State::MailOk,
            Some(Cmd::Data | Cmd::Bdat) => State::RcptOk,
            _ => State::Ready,
        };
        self.first_cmd = None;
        self.pending.clear();
        self.last_replied = None;
        self.pending_reply = 0;
        if !saw_mail {
            self.script.midstream(cx, &self.cfg);
        }
        self.ext.midstream_envelope = !saw_mail;
        if at_354 && cmds.is_empty() {
            // Only the 354 itself: DATA was sent before the pickup.
            self.state = State::RcptOk;
            self.first_cmd = Some(Cmd::Data);
            self.begin_data(cx, sender);
        }
        for (i, l) in h.lines.iter().enumerate() {
            if !keep[i] {
                continue;
            }
            if l.orig == sender {
                self.sender_line(cx, l.orig, &l.line, l.term);
            } else {
                self.receiver_line(cx, l.orig, false, &l.line);
            }
        }
    }

    /// Synchronises at the end of a message (`.`) or at a BDAT command
    /// that continues one: the client's lines since the pickup are the
    /// message's tail.
    fn sync_tail(&mut self, cx: &mut ConnCtx<'_>, orig: bool, bdat: bool) {
        let Some(h) = self.hunt.take() else { return };
        self.state = State::InData;
        self.first_cmd = None;
        self.pending.clear();
        self.last_replied = None;
        self.pending_reply = 0;
        self.script.midstream(cx, &self.cfg);
        self.begin_headless(cx, orig);
        for l in h.lines.iter().filter(|l| l.orig == orig) {
            let data = if bdat {
                &l.line[..]
            } else {
                l.line.strip_prefix(b".").unwrap_or(&l.line)
            };
            self.mime.raw(cx, data);
            self.mime.raw(cx, l.term);
        }
        if bdat {
            self.ext.bdat = true;
            self.state = State::InBdat;
            self.bdat = Some(Bdat::new(self.cfg.bdat_max_line_length));
        }
    }
}
