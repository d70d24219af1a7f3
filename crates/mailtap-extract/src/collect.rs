//! `mailtap ace-collect`: ACE session transcripts (from mailtap's
//! `--ace-dir` or from Zeek with ACE's scripts) turned into per-message
//! `<uid>-<n>.eml` + `<uid>-<n>.json` pairs, like `--extract-dir` writes.
//!
//! The parser follows ACE's collector (`saq/bro.py: parse_bro_smtp`) but
//! fixes its defects (docs/outputs.md lists each):
//!
//! * **IPv6 header**: the port is the digits after the *last* colon, so
//!   `2001:db8::5:40312/tcp` gives `2001:db8::5` and 40312 (ACE splits at
//!   the first colon and either turns the whole dialogue into "email 0" or
//!   reports IP `2001`, port `db8`...).
//! * **Pipelined RSET**: the envelope is reset by the RSET *command*; its
//!   reply is ignored (ACE also resets on `< RSET`, which in a pipelined
//!   session arrives after the next MAIL/RCPT and wipes them).
//! * **Lower-case verbs and addresses**: `mail from:`, `Rcpt To:` and a
//!   space after the colon are accepted (ACE matches `> MAIL FROM:<`
//!   exactly).
//! * **Null sender**: `MAIL FROM:<>` gives `"mailfrom": ""`, distinct from
//!   no MAIL at all (`null`); ACE treats it as "no sender".
//! * Also: a new MAIL or a refused DATA starts a new envelope (ACE carries
//!   refused recipients into the next message); refused recipients are
//!   listed apart with their code; the reply to end-of-data is recorded;
//!   a header-less file keeps its first message line (ACE drops it);
//!   bytes are kept exactly (ACE decodes as UTF-8 and drops what does not
//!   decode); a file that is neither a header nor a transcript goes to
//!   `review/` (ACE submits it as an empty email).
//!
//! Files are handled safely: a session file is opened with `O_NOFOLLOW`
//! and must be a regular file (checked on the open descriptor), so a link
//! planted in the ACE directory is never followed; a warning quotes at most
//! 80 bytes of an unparsable file, escaped; recipients are capped
//! ([`RCPT_MAX`]) with the cap and the number dropped in the JSON; distinct
//! session names give distinct output names ([`safe_stem`]).

use crate::files::{create_new, ensure_writable_dir, named, open_regular, safe_stem, write_atomic};
use crate::json::{message_json_with, JsonOptions, Origin, RcptLimit};
use mailtap_core::mail::{Attachment, EmailHeaders, EmailMeta, MailProtocol};
use mailtap_core::{Bytes, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of a message kept for header parsing.
const HEAD_MAX: usize = 64 << 10;
/// Messages whose body is done but whose end-of-data reply is not yet seen.
const AWAITING_MAX: usize = 16;
/// Recipients kept per envelope (accepted and refused together), as the
/// capture path keeps per list; the rest are counted in `rcptto_dropped`.
pub const RCPT_MAX: usize = 1000;
/// Bytes of recipient addresses kept per envelope.
const RCPT_BYTES_MAX: usize = 1 << 20;
/// Bytes of an unparsable file quoted in a warning.
const EXCERPT_MAX: usize = 80;

/// At most [`EXCERPT_MAX`] bytes of `b`, every byte outside printable
/// ASCII escaped (`\xNN`, `\n`...), for a log line.
fn excerpt(b: &[u8]) -> String {
    b[..b.len().min(EXCERPT_MAX)].escape_ascii().to_string()
}

/// What the transcript header said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Originator address and port (None for a header-less file).
    pub orig: Option<(IpAddr, u16)>,
    /// Header epoch seconds, or the caller's fallback (the file's mtime).
    pub epoch: i64,
    /// The file had the two-line header.
    pub had_header: bool,
}

/// One message rebuilt from a transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TranscriptMessage {
    /// 1-based index within the session file.
    pub n: u32,
    pub trans_depth: u64,
    pub helo: Option<Bytes>,
    /// `Some(empty)` for the null sender `<>`.
    pub mailfrom: Option<Bytes>,
    pub rcptto: Vec<Bytes>,
    pub rcptto_rejected: Vec<(Bytes, u32)>,
    /// Recipients beyond [`RCPT_MAX`] (or the byte cap) not kept.
    pub rcptto_dropped: u64,
    pub status_code: Option<u32>,
    pub status_text: Option<Bytes>,
    pub size: u64,
    pub sha256: String,
    /// False when the file ended inside the message.
    pub complete: bool,
    /// The start of the message (up to the blank line or 64 KiB).
    pub head: Bytes,
}

/// Receives what the parser finds.
pub trait MessageOut {
    /// Message `n` starts.
    fn begin(&mut self, n: u32) -> io::Result<()>;
    /// Bytes of message `n`, in order.
    fn body(&mut self, n: u32, bytes: &[u8]) -> io::Result<()>;
    /// No more bytes for message `n`.
    fn end_body(&mut self, n: u32) -> io::Result<()>;
    /// Message `n`'s metadata (after its end-of-data reply, or at the end
    /// of the file).
    fn message(&mut self, info: &SessionInfo, m: TranscriptMessage) -> io::Result<()>;
}

/// Why a file cannot be parsed (it goes to `review/`), or an I/O error.
#[derive(Debug)]
pub enum ParseError {
    /// Line 1 is neither an `addr:port/tcp` header nor a transcript record.
    BadHeader(String),
    /// Line 2 after a valid line 1 is not an integer epoch.
    BadEpoch(String),
    Io(io::Error),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::BadHeader(l) => write!(f, "not a session file: first line \"{l}\""),
            ParseError::BadEpoch(l) => write!(f, "header line 2 is not an epoch: \"{l}\""),
            ParseError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for ParseError {
    fn from(e: io::Error) -> Self {
        ParseError::Io(e)
    }
}

/// Reads one line (without its LF) of at most `max` bytes. Returns None at
/// end of input, else whether the line ended with LF (false: a piece of a
/// longer line, or the last line without LF).
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() { None } else { Some(false) });
        }
        let room = max.saturating_sub(buf.len()).max(1);
        let look = &avail[..avail.len().min(room)];
        if let Some(i) = look.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&look[..i]);
            r.consume(i + 1);
            return Ok(Some(true));
        }
        let k = look.len();
        buf.extend_from_slice(look);
        r.consume(k);
        if buf.len() >= max {
            return Ok(Some(false));
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e.max(s)]
}

fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// The address in a MAIL/RCPT argument: keyword (`FROM`/`TO`) in any case,
/// optional spaces around the colon, `<addr>` or a bare address. `<>`
/// gives an empty address.
pub fn envelope_address(arg: &[u8], keyword: &[u8]) -> Option<Bytes> {
    let a = trim(arg);
    if a.len() < keyword.len() || !a[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let a = trim(&a[keyword.len()..]);
    let a = trim(a.strip_prefix(b":")?);
    if let Some(rest) = a.strip_prefix(b"<") {
        let end = rest.iter().position(|&c| c == b'>')?;
        Some(rest[..end].to_vec())
    } else {
        let end = a
            .iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(a.len());
        (end > 0).then(|| a[..end].to_vec())
    }
}

struct Current {
    msg: TranscriptMessage,
    hash: Sha256,
    head_done: bool,
}

#[derive(PartialEq, Eq)]
enum State {
    Envelope,
    Data,
}

struct Parser<'o> {
    out: &'o mut dyn MessageOut,
    info: SessionInfo,
    state: State,
    helo: Option<Bytes>,
    mailfrom: Option<Bytes>,
    /// Recipients of the current envelope with their reply code once seen.
    rcpt: Vec<(Bytes, Option<u32>)>,
    /// Bytes of the addresses in `rcpt`.
    rcpt_bytes: usize,
    /// Recipients of the current envelope not kept (caps).
    rcpt_dropped: u64,
    /// RCPT commands awaiting a reply: (envelope generation, index).
    rcpt_queue: VecDeque<(u64, Option<usize>)>,
    generation: u64,
    trans_depth: u64,
    n: u32,
    cur: Option<Current>,
    awaiting: VecDeque<TranscriptMessage>,
}

impl Parser<'_> {
    fn reset_envelope(&mut self) {
        self.mailfrom = None;
        self.rcpt.clear();
        self.rcpt_bytes = 0;
        self.rcpt_dropped = 0;
        self.generation += 1;
    }

    fn start_message(&mut self) -> io::Result<()> {
        // Checked: a (huge) file with more messages than names is an error,
        // never a wrapped index that would reuse an output name.
        self.n = self
            .n
            .checked_add(1)
            .ok_or_else(|| io::Error::other("more than 4294967295 messages in one session"))?;
        let mut msg = TranscriptMessage {
            n: self.n,
            trans_depth: self.trans_depth.max(1),
            helo: self.helo.clone(),
            mailfrom: self.mailfrom.clone(),
            rcptto_dropped: self.rcpt_dropped,
            ..TranscriptMessage::default()
        };
        for (a, code) in &self.rcpt {
            match code {
                Some(c) if !(200..300).contains(c) => msg.rcptto_rejected.push((a.clone(), *c)),
                _ => msg.rcptto.push(a.clone()),
            }
        }
        self.out.begin(self.n)?;
        self.cur = Some(Current {
            msg,
            hash: Sha256::new(),
            head_done: false,
        });
        self.state = State::Data;
        Ok(())
    }

    fn body(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.hash.update(bytes);
            c.msg.size += bytes.len() as u64;
            if !c.head_done {
                let room = HEAD_MAX - c.msg.head.len();
                c.msg
                    .head
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                if c.msg.head.len() >= HEAD_MAX || c.msg.head.ends_with(b"\n\n") {
                    c.head_done = true;
                }
            }
            self.out.body(c.msg.n, bytes)?;
        }
        Ok(())
    }

    fn end_message(&mut self, complete: bool) -> io::Result<()> {
        self.state = State::Envelope;
        if let Some(c) = self.cur.take() {
            let mut msg = c.msg;
            msg.complete = complete;
            msg.sha256 = crate::extract::hex(&c.hash.finalize());
            self.out.end_body(msg.n)?;
            self.awaiting.push_back(msg);
            while self.awaiting.len() > AWAITING_MAX {
                if let Some(m) = self.awaiting.pop_front() {
                    self.out.message(&self.info, m)?;
                }
            }
        }
        // The transaction is over.
        self.reset_envelope();
        Ok(())
    }

    fn line(&mut self, line: &[u8], has_lf: bool) -> io::Result<()> {
        if self.state == State::Data {
            if trim(line) == b"> . ." {
                return self.end_message(true);
            }
            self.body(line)?;
            if has_lf {
                self.body(b"\n")?;
            }
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix(b">") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let (cmd, arg) = split_word(rest);
            let upper = cmd.to_ascii_uppercase();
            match upper.as_slice() {
                b"MAIL" => {
                    // A new transaction, whatever happened before.
                    self.reset_envelope();
                    self.trans_depth = self.trans_depth.saturating_add(1);
                    self.mailfrom = envelope_address(arg, b"FROM");
                }
                b"RCPT" => {
                    let idx = match envelope_address(arg, b"TO") {
                        Some(a)
                            if self.rcpt.len() < RCPT_MAX
                                && self.rcpt_bytes + a.len() <= RCPT_BYTES_MAX =>
                        {
                            self.rcpt_bytes += a.len();
                            self.rcpt.push((a, None));
                            Some(self.rcpt.len() - 1)
                        }
                        Some(_) => {
                            self.rcpt_dropped += 1;
                            None
                        }
                        None => None,
                    };
                    self.rcpt_queue.push_back((self.generation, idx));
                    if self.rcpt_queue.len() > 10_000 {
                        self.rcpt_queue.pop_front();
                    }
                }
                b"RSET" => self.reset_envelope(),
                b"HELO" | b"EHLO" => self.helo = Some(trim(arg).to_vec()),
                _ => {}
            }
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix(b"<") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let (cmd, rest) = split_word(rest);
            let (code, msg) = split_word(rest);
            let code: Option<u32> = std::str::from_utf8(code).ok().and_then(|c| c.parse().ok());
            let upper = cmd.to_ascii_uppercase();
            match (upper.as_slice(), code) {
                (b"RCPT", Some(code)) => {
                    if let Some((generation, Some(idx))) = self.rcpt_queue.pop_front() {
                        if generation == self.generation {
                            if let Some(r) = self.rcpt.get_mut(idx) {
                                r.1.get_or_insert(code);
                            }
                        }
                    }
                }
                (b"DATA", Some(354)) => self.start_message()?,
                // DATA refused: this envelope will not be used.
                (b"DATA", Some(_)) => self.reset_envelope(),
                (b".", Some(code)) => {
                    if let Some(mut m) = self.awaiting.pop_front() {
                        m.status_code = Some(code);
                        m.status_text = Some(msg.to_vec());
                        self.out.message(&self.info, m)?;
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        // Neither request nor reply outside DATA: the client side of a
        // one-sided capture, where no 354 was seen. The line is the first
        // line of a message (ACE drops it; it is kept here).
        self.start_message()?;
        self.body(line)?;
        if has_lf {
            self.body(b"\n")?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<SessionInfo> {
        if self.state == State::Data {
            self.end_message(false)?;
        }
        while let Some(m) = self.awaiting.pop_front() {
            self.out.message(&self.info, m)?;
        }
        Ok(self.info)
    }
}

/// Parses one session file. `fallback_epoch` is used when the file has no
/// header (ACE uses the file's mtime too). `max_line` bounds memory: longer
/// lines are passed through in pieces inside a message and cut short
/// outside one.
pub fn parse_transcript(
    mut r: impl BufRead,
    fallback_epoch: i64,
    max_line: usize,
    out: &mut dyn MessageOut,
) -> Result<SessionInfo, ParseError> {
    let max_line = max_line.max(64);
    let mut buf = Vec::new();
    let mut info = SessionInfo {
        orig: None,
        epoch: fallback_epoch,
        had_header: false,
    };
    let first = read_line(&mut r, &mut buf, max_line)?;
    let mut replay: Option<(Vec<u8>, bool)> = None;
    if let Some(lf) = first {
        if buf.first().is_some_and(|&c| c == b'<' || c == b'>') {
            replay = Some((std::mem::take(&mut buf), lf));
        } else if let Some(orig) = crate::ace::parse_header_line(&buf) {
            info.orig = Some(orig);
            info.had_header = true;
            let l2 = read_line(&mut r, &mut buf, max_line)?;
            let epoch = std::str::from_utf8(trim(&buf))
                .ok()
                .and_then(|s| s.parse::<i64>().ok());
            match (l2, epoch) {
                (Some(_), Some(e)) => info.epoch = e,
                _ => return Err(ParseError::BadEpoch(excerpt(&buf))),
            }
        } else {
            return Err(ParseError::BadHeader(excerpt(&buf)));
        }
    }
    let mut p = Parser {
        out,
        info,
        state: State::Envelope,
        helo: None,
        mailfrom: None,
        rcpt: Vec::new(),
        rcpt_bytes: 0,
        rcpt_dropped: 0,
        rcpt_queue: VecDeque::new(),
        generation: 0,
        trans_depth: 0,
        n: 0,
        cur: None,
        awaiting: VecDeque::new(),
    };
    if let Some((l, lf)) = replay {
        p.line(&l, lf)?;
    }
    let mut in_long_line = false;
    while let Some(lf) = read_line(&mut r, &mut buf, max_line)? {
        if in_long_line && p.state == State::Envelope {
            // The rest of an over-long record: ignored.
            in_long_line = !lf;
            continue;
        }
        if in_long_line {
            // A later piece of an over-long body line: raw bytes.
            p.body(&buf)?;
            if lf {
                p.body(b"\n")?;
            }
            in_long_line = !lf;
            continue;
        }
        p.line(&buf, lf)?;
        in_long_line = !lf;
    }
    Ok(p.finish()?)
}

// ------------------------------------------------------------- headers

/// Top-level headers of a message start: unfolded, first occurrence of
/// each, RFC 2047 words in UTF-8, US-ASCII or ISO-8859-1 decoded (others
/// left as they are), anything else as lossy UTF-8.
pub fn parse_headers(head: &[u8]) -> EmailHeaders {
    let mut h = EmailHeaders::default();
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for raw in head.split(|&c| c == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = fields.last_mut() {
                v.push(b' ');
                v.extend_from_slice(trim(line));
            }
            continue;
        }
        match line.iter().position(|&c| c == b':') {
            Some(i) => fields.push((
                String::from_utf8_lossy(trim(&line[..i])).to_ascii_lowercase(),
                trim(&line[i + 1..]).to_vec(),
            )),
            None => break,
        }
    }
    for (name, value) in fields {
        let slot = match name.as_str() {
            "date" => &mut h.date,
            "from" => &mut h.from,
            "to" => &mut h.to,
            "cc" => &mut h.cc,
            "reply-to" => &mut h.reply_to,
            "subject" => &mut h.subject,
            "message-id" => &mut h.msg_id,
            "in-reply-to" => &mut h.in_reply_to,
            "user-agent" | "x-mailer" => &mut h.user_agent,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode_2047(&value));
        }
    }
    h
}

fn decode_2047(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let mut out = String::new();
    let mut rest: &str = &s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        let decoded = encoded_word(from);
        match decoded {
            Some((text, used)) => {
                // Whitespace between two encoded words is dropped.
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &from[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &from[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `=?charset?enc?text?=` at the start of `s`: the text and bytes used.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = body[..q1].split('*').next()?.to_ascii_lowercase();
    let enc = body.get(q1 + 1..q1 + 2)?.to_ascii_lowercase();
    let text_start = q1 + 3;
    if body.get(q1 + 2..q1 + 3)? != "?" {
        return None;
    }
    let end = body[text_start..].find("?=")? + text_start;
    let text = &body[text_start..end];
    let bytes = match enc.as_str() {
        "b" => unbase64(text)?,
        "q" => unq(text)?,
        _ => return None,
    };
    let decoded = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| b as char).collect(),
        _ => return None,
    };
    Some((decoded, 2 + end + 2))
}

fn unq(t: &str) -> Option<Vec<u8>> {
    let b = t.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

fn unbase64(t: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in t.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

// ------------------------------------------------------------ collector

/// How `ace-collect` runs.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub ace_dir: PathBuf,
    pub extract_dir: PathBuf,
    /// Longest transcript line handled in one piece.
    pub max_line: usize,
}

impl CollectorConfig {
    pub fn new(ace_dir: PathBuf, extract_dir: PathBuf) -> Self {
        CollectorConfig {
            ace_dir,
            extract_dir,
            max_line: 16 << 20,
        }
    }
}

/// What the collector did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorCounters {
    /// Session files parsed and removed.
    pub sessions: u64,
    /// Message pairs written.
    pub messages: u64,
    /// Of those, cut short (the file ended inside the message).
    pub incomplete: u64,
    /// Session files moved to `review/`.
    pub review: u64,
    /// Markers whose session file was missing (marker removed).
    pub missing_session: u64,
    /// Sessions left in place after an I/O error (retried next scan).
    pub errors: u64,
    /// Markers whose session is a symbolic link or not a regular file:
    /// not read, left in place, marker removed.
    pub not_regular: u64,
}

/// Writes each parsed message as a pair, atomically, `.json` last.
struct PairWriter<'a> {
    dir: &'a Path,
    /// The session's name (the `uid` in the JSON).
    uid: String,
    stem: String,
    cur: Option<(u32, BufWriter<File>)>,
    /// Temporary files not yet renamed (cleaned up on failure).
    tmps: Vec<(u32, PathBuf)>,
    written: u64,
    incomplete: u64,
}

impl PairWriter<'_> {
    fn tmp(&self, n: u32) -> PathBuf {
        crate::files::tmp_path(self.dir, &format!("{}-{n}.eml", self.stem))
    }
    fn cleanup(&mut self) {
        self.cur = None;
        for (_, p) in self.tmps.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl MessageOut for PairWriter<'_> {
    fn begin(&mut self, n: u32) -> io::Result<()> {
        let p = self.tmp(n);
        let f = create_new(&p).map_err(|e| named(e, &p))?;
        self.tmps.push((n, p));
        self.cur = Some((n, BufWriter::with_capacity(64 << 10, f)));
        Ok(())
    }
    fn body(&mut self, n: u32, bytes: &[u8]) -> io::Result<()> {
        match self.cur.as_mut() {
            Some((m, w)) if *m == n => w.write_all(bytes),
            _ => Ok(()),
        }
    }
    fn end_body(&mut self, n: u32) -> io::Result<()> {
        match self.cur.take() {
            Some((m, mut w)) if m == n => w.flush(),
            other => {
                self.cur = other;
                Ok(())
            }
        }
    }
    fn message(&mut self, info: &SessionInfo, m: TranscriptMessage) -> io::Result<()> {
        let pos = self.tmps.iter().position(|(n, _)| *n == m.n);
        let Some(pos) = pos else { return Ok(()) };
        let (_, tmp) = self.tmps.remove(pos);
        let name = format!("{}-{}", self.stem, m.n);
        let eml = self.dir.join(format!("{name}.eml"));
        if let Err(e) = std::fs::rename(&tmp, &eml) {
            let _ = std::fs::remove_file(&tmp);
            return Err(named(e, &eml));
        }
        let complete = m.complete;
        let dropped = m.rcptto_dropped;
        let meta = EmailMeta {
            uid: self.uid.clone(),
            n: m.n,
            ts: Timestamp::from_secs_nanos(info.epoch, 0),
            id: None,
            protocol: Some(MailProtocol::Smtp),
            trans_depth: m.trans_depth,
            helo: m.helo,
            mailfrom: m.mailfrom,
            rcptto: m.rcptto,
            rcptto_rejected: m.rcptto_rejected,
            status_code: m.status_code,
            status_text: m.status_text,
            user: None,
            size: m.size,
            sha256: m.sha256,
            complete,
            missing_bytes: 0,
            missing_unknown: !complete,
            partial: false,
            headers: parse_headers(&m.head),
            attachments: Vec::<Attachment>::new(),
            tls: false,
        };
        let json = message_json_with(
            &meta,
            &JsonOptions {
                origin: Origin::AceTranscript { orig: info.orig },
                ts_known: true,
                missing_known: complete,
            },
            RcptLimit {
                limit: RCPT_MAX as u64,
                dropped: Some(dropped),
            },
        );
        write_atomic(self.dir, &format!("{name}.json"), &json)?;
        self.written += 1;
        if !complete {
            self.incomplete += 1;
        }
        Ok(())
    }
}

/// Watches an ACE directory for `<uid>.ready` markers.
pub struct AceCollector {
    cfg: CollectorConfig,
    review: PathBuf,
    counters: CollectorCounters,
}

impl AceCollector {
    /// Checks the directories: the ACE directory must exist; the extract
    /// directory and `<ACE_DIR>/review/` are created if needed. Errors name
    /// the directory.
    pub fn new(cfg: CollectorConfig) -> io::Result<Self> {
        if !cfg.ace_dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("ACE directory {}: not a directory", cfg.ace_dir.display()),
            ));
        }
        ensure_writable_dir(&cfg.extract_dir, "--extract-dir")?;
        let review = cfg.ace_dir.join("review");
        ensure_writable_dir(&review, "review directory")?;
        Ok(AceCollector {
            cfg,
            review,
            counters: CollectorCounters::default(),
        })
    }

    pub fn counters(&self) -> &CollectorCounters {
        &self.counters
    }

    /// Processes every session whose marker is present, in name order.
    /// Returns how many markers were handled. Stops early when `stop` is
    /// set.
    pub fn scan(&mut self, stop: &AtomicBool) -> io::Result<usize> {
        let mut uids: Vec<String> = Vec::new();
        for e in std::fs::read_dir(&self.cfg.ace_dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(uid) = name.strip_suffix(".ready") {
                uids.push(uid.to_string());
            }
        }
        uids.sort();
        let mut done = 0;
        for uid in uids {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.process(&uid);
            done += 1;
        }
        Ok(done)
    }

    /// One session: parse, write its messages, remove the pair (or move the
    /// file to `review/`).
    pub fn process(&mut self, uid: &str) {
        let dir = &self.cfg.ace_dir;
        let marker = dir.join(format!("{uid}.ready"));
        let session = dir.join(uid);
        if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') {
            tracing::warn!(uid, "marker without a session file; marker removed");
            let _ = std::fs::remove_file(&marker);
            self.counters.missing_session += 1;
            return;
        }
        // Never follows a link, never blocks on a FIFO, reads only a
        // regular file (checked on the descriptor it reads).
        let file = match open_regular(&session) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(uid, "marker without a session file; marker removed");
                let _ = std::fs::remove_file(&marker);
                self.counters.missing_session += 1;
                return;
            }
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.raw_os_error() == Some(libc::ELOOP)
                    || e.raw_os_error() == Some(libc::ENXIO) =>
            {
                tracing::warn!(
                    uid,
                    "session {} is a symbolic link or not a regular file: not read, left in place; marker removed",
                    session.display()
                );
                let _ = std::fs::remove_file(&marker);
                self.counters.not_regular += 1;
                return;
            }
            Err(e) => {
                tracing::error!(uid, "cannot open session file {}: {e}", session.display());
                self.counters.errors += 1;
                return;
            }
        };
        let mtime = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut w = PairWriter {
            dir: &self.cfg.extract_dir,
            uid: uid.to_string(),
            stem: safe_stem(uid),
            cur: None,
            tmps: Vec::new(),
            written: 0,
            incomplete: 0,
        };
        let res = parse_transcript(
            BufReader::with_capacity(64 << 10, file),
            mtime,
            self.cfg.max_line,
            &mut w,
        );
        w.cleanup();
        self.counters.messages += w.written;
        self.counters.incomplete += w.incomplete;
        match res {
            Ok(_) => {
                tracing::info!(uid, messages = w.written, "session collected");
                let _ = std::fs::remove_file(&session);
                let _ = std::fs::remove_file(&marker);
                self.counters.sessions += 1;
            }
            Err(ParseError::Io(e)) => {
                tracing::error!(uid, "I/O error, session left for the next scan: {e}");
                self.counters.errors += 1;
            }
            Err(e) => {
                tracing::warn!(uid, "unparsable session moved to review/: {e}");
                let to = self.review.join(safe_stem(uid));
                let review_ok = std::fs::symlink_metadata(&self.review).is_ok_and(|m| m.is_dir());
                if !review_ok {
                    tracing::error!(
                        uid,
                        "{} is not a directory (a link?): session left in place",
                        self.review.display()
                    );
                    self.counters.errors += 1;
                    return;
                }
                if let Err(e) = std::fs::rename(&session, &to) {
                    tracing::error!(uid, "moving to review/ failed: {e}");
                    self.counters.errors += 1;
                    return;
                }
                let _ = std::fs::remove_file(&marker);
                self.counters.review += 1;
            }
        }
    }
}
