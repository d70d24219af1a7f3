//! The ACE transcript parser: one session file in, its messages (envelope,
//! bytes, end-of-data reply) out to a [`MessageOut`], and the header
//! fields of each message for its JSON.

use super::*;

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
