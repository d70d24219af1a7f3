//! IMAP line syntax for a passive reader: one *logical* line (a command or
//! a response) is a run of physical lines joined by literals. The line
//! splitter (`mailtap_contentline`) cuts physical lines; [`LineParser`]
//! tokenises each of them as it comes ([`LineParser::fragment`]) and says
//! when a fragment ends with a literal marker (`{n}`, `{n+}`, `~{n}`,
//! `~{n+}`), whose payload the caller then streams with the splitter's
//! plain mode (never buffered whole) before the next fragment continues
//! the same logical line.
//!
//! Tokens are ranges into one per-direction arena (no allocation per
//! token); the arena, the token count and the parenthesis depth are
//! bounded. What goes wrong is a [`ParseError`]: the line is then *broken*
//! (tokens are no longer stored, nothing of it is interpreted) but the
//! framing goes on, so literals are still found and skipped exactly.

use mailtap_core::{BufferBudget, Charge};
use std::borrow::Cow;

/// What can be wrong with a line (each has a weird name, see
/// [`ParseError::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// A physical line longer than the splitter's limit.
    LineTooLong,
    /// A logical line (fragments and kept literals) beyond its byte bound.
    LineTooLarge,
    /// More tokens than the bound.
    TooManyTokens,
    /// Parentheses nested deeper than the bound.
    NestingTooDeep,
    /// A `)` without its `(`.
    UnbalancedParen,
    /// A quoted string without its closing quote.
    UnterminatedQuoted,
    /// A `BODY[` / `BINARY[` section without its `]`.
    UnterminatedSection,
    /// A `{` at a token position that is no literal marker.
    MalformedLiteral,
    /// A literal size beyond IMAP4rev2's 63-bit `number64`.
    LiteralTooLarge,
    /// A literal size beyond the configured cap (usually a desync).
    LiteralOverLimit,
    /// `{n}` at the end of free text (resp-text): not a literal.
    LiteralInText,
    /// `{n+}` from the server (only clients may send it).
    NonSyncLiteralFromServer,
    /// An empty line where a command or a response was expected.
    EmptyLine,
}

impl ParseError {
    pub const ALL: [ParseError; 13] = [
        ParseError::LineTooLong,
        ParseError::LineTooLarge,
        ParseError::TooManyTokens,
        ParseError::NestingTooDeep,
        ParseError::UnbalancedParen,
        ParseError::UnterminatedQuoted,
        ParseError::UnterminatedSection,
        ParseError::MalformedLiteral,
        ParseError::LiteralTooLarge,
        ParseError::LiteralOverLimit,
        ParseError::LiteralInText,
        ParseError::NonSyncLiteralFromServer,
        ParseError::EmptyLine,
    ];

    /// The weird name (weird.log `name`).
    pub fn name(self) -> &'static str {
        match self {
            ParseError::LineTooLong => "imap_line_too_long",
            ParseError::LineTooLarge => "imap_logical_line_too_large",
            ParseError::TooManyTokens => "imap_too_many_tokens",
            ParseError::NestingTooDeep => "imap_nesting_too_deep",
            ParseError::UnbalancedParen => "imap_unbalanced_parenthesis",
            ParseError::UnterminatedQuoted => "imap_unterminated_quoted_string",
            ParseError::UnterminatedSection => "imap_unterminated_section",
            ParseError::MalformedLiteral => "imap_malformed_literal",
            ParseError::LiteralTooLarge => "imap_literal_too_large",
            ParseError::LiteralOverLimit => "imap_literal_over_limit",
            ParseError::LiteralInText => "imap_literal_in_text",
            ParseError::NonSyncLiteralFromServer => "imap_server_nonsync_literal",
            ParseError::EmptyLine => "imap_empty_line",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    /// An atom, a number, `NIL`, a tag, or a FETCH label with its bracket
    /// section and partial (`BODY[HEADER.FIELDS (FROM)]<0>`).
    Atom,
    /// A quoted string (the range is its inside, still escaped).
    Quoted,
    /// A literal; the range holds what was kept of its payload.
    Literal,
    LParen,
    RParen,
    /// A response code: the inside of `[...]` after a status word.
    Code,
    /// Free text (resp-text, a continuation request, a raw client line).
    Text,
}

/// One token: a range of the arena.
#[derive(Clone, Copy, Debug)]
pub struct Tok {
    pub kind: TokKind,
    /// Parenthesis depth the token sits at (a `(` has the outer depth).
    pub depth: u16,
    start: u32,
    end: u32,
    /// Literal: the announced size.
    pub lit_len: u64,
    /// Literal: the whole payload is in the range (not skipped, not cut).
    pub lit_kept: bool,
}

/// A literal marker that ended a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub len: u64,
    /// `{n}` / `~{n}`: a client waits for the server's `+` before sending
    /// the payload (servers never wait).
    pub sync: bool,
    /// `~{n}`: literal8 (may hold NUL).
    pub binary: bool,
}

/// How a fragment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// The physical line was cut at the length limit: more of it follows.
    Cut,
    /// The logical line is complete.
    Done,
    /// A literal of this size follows; then the logical line continues.
    Literal(Marker),
    /// A literal whose size cannot be honoured: framing is lost.
    Desync(ParseError),
}

/// Bounds of one direction's parser.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_depth: u16,
    pub max_tokens: usize,
    pub max_line_bytes: usize,
    pub max_literal: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_tokens: 65536,
            max_line_bytes: 1 << 20,
            max_literal: 1 << 32,
        }
    }
}

/// The largest literal IMAP4rev2's `number64` can announce.
pub const MAX_NUMBER64: u64 = i64::MAX as u64;

/// Arena capacity kept between lines.
const RETAINED: usize = 16 * 1024;

/// The tokeniser of one direction's logical line.
#[derive(Debug, Default)]
pub struct LineParser {
    arena: Vec<u8>,
    charge: Charge,
    toks: Vec<Tok>,
    depth: u16,
    /// No fragment of the current logical line seen yet.
    started: bool,
    /// Tokens are no longer stored (an error).
    broken: bool,
    /// The previous fragment was cut at the line limit.
    overflow: bool,
    /// [`ParseError`] bits seen in this line.
    errors: u32,
    /// A literal's payload was announced and not yet finished.
    in_literal: bool,
}

impl LineParser {
    pub fn new() -> Self {
        LineParser::default()
    }

    /// No fragment of a logical line seen yet.
    pub fn is_fresh(&self) -> bool {
        !self.started
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn toks(&self) -> &[Tok] {
        &self.toks
    }

    /// Current parenthesis depth.
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// Errors of this line.
    pub fn errors(&self) -> impl Iterator<Item = ParseError> + '_ {
        ParseError::ALL
            .into_iter()
            .filter(move |e| self.errors & e.bit() != 0)
    }

    pub fn has_error(&self, e: ParseError) -> bool {
        self.errors & e.bit() != 0
    }

    /// The token's bytes as sent (a quoted string without its quotes,
    /// still escaped).
    pub fn raw(&self, t: &Tok) -> &[u8] {
        &self.arena[t.start as usize..t.end as usize]
    }

    /// The token's value: quoted strings unescaped.
    pub fn value(&self, t: &Tok) -> Cow<'_, [u8]> {
        let r = self.raw(t);
        if t.kind == TokKind::Quoted && r.contains(&b'\\') {
            let mut v = Vec::with_capacity(r.len());
            let mut esc = false;
            for &c in r {
                if esc || c != b'\\' {
                    v.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            Cow::Owned(v)
        } else {
            Cow::Borrowed(r)
        }
    }

    /// Token `i`'s value, if there is such a token.
    pub fn value_at(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        self.toks.get(i).map(|t| self.value(t))
    }

    /// Forgets the logical line; `redact` zeroes its bytes first (a line
    /// that held a password). The arena's memory is kept up to a bound.
    pub fn reset(&mut self, redact: bool) {
        if redact {
            self.arena.iter_mut().for_each(|b| *b = 0);
        }
        if self.arena.capacity() > RETAINED {
            self.arena = Vec::new();
            self.charge.release();
        } else {
            self.arena.clear();
        }
        self.toks.clear();
        self.depth = 0;
        self.started = false;
        self.broken = false;
        self.overflow = false;
        self.errors = 0;
        self.in_literal = false;
    }

    /// Forgets the line and gives its memory back (the connection ended).
    pub fn release(&mut self) {
        self.reset(true);
        self.arena = Vec::new();
        self.toks = Vec::new();
        self.charge.release();
    }

    fn fail(&mut self, e: ParseError) {
        self.errors |= e.bit();
        if !matches!(
            e,
            ParseError::LiteralInText
                | ParseError::NonSyncLiteralFromServer
                | ParseError::MalformedLiteral
        ) {
            self.broken = true;
        }
    }

    fn push(&mut self, kind: TokKind, start: usize, end: usize, lim: &Limits) {
        if self.broken {
            return;
        }
        if self.toks.len() >= lim.max_tokens {
            self.fail(ParseError::TooManyTokens);
            return;
        }
        self.toks.push(Tok {
            kind,
            depth: self.depth,
            start: start as u32,
            end: end as u32,
            lit_len: 0,
            lit_kept: false,
        });
    }

    /// Copies `text` into the arena (if it fits the bound): its offset.
    fn store(&mut self, text: &[u8], lim: &Limits, budget: &BufferBudget) -> Option<usize> {
        if self.broken {
            return None;
        }
        if self.arena.len() + text.len() > lim.max_line_bytes
            || self.arena.len() > u32::MAX as usize / 2
        {
            self.fail(ParseError::LineTooLarge);
            return None;
        }
        let base = self.arena.len();
        self.arena.extend_from_slice(text);
        self.charge.set(budget, self.arena.capacity());
        Some(base)
    }

    /// Tokenises one physical line (without its terminator) of the current
    /// logical line. `cut`: the splitter cut it at its length limit (more
    /// of it follows). `raw`: take the whole line as one text token (SASL
    /// responses, `DONE`). `server`: the line comes from the server.
    pub fn fragment(
        &mut self,
        text: &[u8],
        cut: bool,
        raw: bool,
        server: bool,
        lim: &Limits,
        budget: &BufferBudget,
    ) -> Frag {
        let first = !self.started;
        self.started = true;
        self.in_literal = false;
        if self.overflow {
            if cut {
                return Frag::Cut;
            }
            // The rest of a cut line: quoting is unknown, only a marker
            // at its very end is honoured (for framing).
            self.overflow = false;
            return self.trailing(text, server, lim);
        }
        if cut {
            self.fail(ParseError::LineTooLong);
            self.overflow = true;
            return Frag::Cut;
        }
        let base = self.store(text, lim, budget);
        if first && raw {
            if let Some(b) = base {
                self.push(TokKind::Text, b, b + text.len(), lim);
            }
            return Frag::Done;
        }
        let mut i = 0usize;
        if first {
            let end = word_end(text, 0);
            if end == 0 {
                if text.is_empty() {
                    self.fail(ParseError::EmptyLine);
                    return Frag::Done;
                }
            } else {
                self.push_at(TokKind::Atom, base, 0, end, lim);
                i = skip_sp(text, end);
                if server && &text[..end] == b"+" {
                    self.push_at(TokKind::Text, base, i, text.len(), lim);
                    return Frag::Done;
                }
                let e2 = word_end(text, i);
                if server && is_status(&text[i..e2]) {
                    self.push_at(TokKind::Atom, base, i, e2, lim);
                    i = skip_sp(text, e2);
                    if text.get(i) == Some(&b'[') {
                        let j = memchr::memchr(b']', &text[i..]).map_or(text.len(), |k| i + k);
                        self.push_at(TokKind::Code, base, i + 1, j, lim);
                        i = skip_sp(text, (j + 1).min(text.len()));
                    }
                    self.push_at(TokKind::Text, base, i, text.len(), lim);
                    if let Ok(Some(_)) = trailing_marker(text) {
                        self.fail(ParseError::LiteralInText);
                    }
                    return Frag::Done;
                }
            }
        }
        self.tokenize(text, i, base, server, lim)
    }

    fn push_at(&mut self, kind: TokKind, base: Option<usize>, s: usize, e: usize, lim: &Limits) {
        if let Some(b) = base {
            self.push(kind, b + s, b + e, lim);
        }
    }

    /// The end of a line whose start was cut away.
    fn trailing(&mut self, text: &[u8], server: bool, lim: &Limits) -> Frag {
        match trailing_marker(text) {
            Ok(Some((_, m))) => self.literal(m, server, lim),
            Ok(None) => Frag::Done,
            Err(e) => {
                self.fail(e);
                Frag::Desync(e)
            }
        }
    }

    fn literal(&mut self, m: Marker, server: bool, lim: &Limits) -> Frag {
        if m.len > lim.max_literal {
            self.fail(ParseError::LiteralOverLimit);
            return Frag::Desync(ParseError::LiteralOverLimit);
        }
        if server && !m.sync {
            self.fail(ParseError::NonSyncLiteralFromServer);
        }
        let at = self.arena.len();
        self.push(TokKind::Literal, at, at, lim);
        if let Some(t) = self.toks.last_mut().filter(|t| t.kind == TokKind::Literal) {
            t.lit_len = m.len;
            t.lit_kept = m.len == 0;
        }
        self.in_literal = true;
        Frag::Literal(m)
    }

    fn tokenize(
        &mut self,
        text: &[u8],
        mut i: usize,
        base: Option<usize>,
        server: bool,
        lim: &Limits,
    ) -> Frag {
        let n = text.len();
        while i < n {
            match text[i] {
                b' ' | b'\t' => i += 1,
                b'(' => {
                    if self.depth >= lim.max_depth {
                        self.fail(ParseError::NestingTooDeep);
                    }
                    self.push_at(TokKind::LParen, base, i, i + 1, lim);
                    self.depth = self.depth.saturating_add(1);
                    i += 1;
                }
                b')' => {
                    if self.depth == 0 {
                        self.fail(ParseError::UnbalancedParen);
                    } else {
                        self.depth -= 1;
                    }
                    self.push_at(TokKind::RParen, base, i, i + 1, lim);
                    i += 1;
                }
                b'"' => match quoted_end(text, i + 1) {
                    Some(j) => {
                        self.push_at(TokKind::Quoted, base, i + 1, j, lim);
                        i = j + 1;
                    }
                    None => {
                        self.fail(ParseError::UnterminatedQuoted);
                        return Frag::Done;
                    }
                },
                c @ (b'{' | b'~') => {
                    let at = if c == b'~' { i + 1 } else { i };
                    match parse_marker(&text[at..]) {
                        Ok(Some((len, plus))) if c == b'{' || text.get(at) == Some(&b'{') => {
                            return self.literal(
                                Marker {
                                    len,
                                    sync: !plus,
                                    binary: c == b'~',
                                },
                                server,
                                lim,
                            );
                        }
                        Err(e) => {
                            self.fail(e);
                            return Frag::Desync(e);
                        }
                        _ => {
                            if c == b'{' {
                                self.fail(ParseError::MalformedLiteral);
                            }
                            i = self.atom(text, i, base, lim);
                        }
                    }
                }
                _ => i = self.atom(text, i, base, lim),
            }
        }
        Frag::Done
    }

    /// An atom from `i`, with a bracket section and a `<partial>` kept in
    /// it; its end.
    fn atom(&mut self, text: &[u8], i: usize, base: Option<usize>, lim: &Limits) -> usize {
        let n = text.len();
        let mut j = i + 1;
        // The first byte is taken whatever it is (a stray `{` or `~`).
        if text[i] == b'[' {
            j = self.section(text, i, lim);
        }
        while j < n {
            match text[j] {
                b' ' | b'\t' | b'(' | b')' => break,
                b'[' => j = self.section(text, j, lim),
                b'{' if matches!(parse_marker(&text[j..]), Ok(Some(_))) => break,
                _ => j += 1,
            }
        }
        self.push_at(TokKind::Atom, base, i, j, lim);
        j
    }

    /// A `[...]` from `i` (quoted strings inside honoured): the index after
    /// its `]`.
    fn section(&mut self, text: &[u8], i: usize, _lim: &Limits) -> usize {
        let mut j = i + 1;
        while j < text.len() {
            match text[j] {
                b']' => return j + 1,
                b'"' => match quoted_end(text, j + 1) {
                    Some(e) => j = e + 1,
                    None => break,
                },
                _ => j += 1,
            }
        }
        self.fail(ParseError::UnterminatedSection);
        text.len()
    }

    /// Payload bytes of the literal that ended the last fragment, kept up
    /// to `max_keep` bytes in all (beyond, the literal is marked cut).
    pub fn keep(&mut self, data: &[u8], max_keep: usize, lim: &Limits, budget: &BufferBudget) {
        if self.broken {
            return;
        }
        let Some(t) = self.toks.last().copied() else {
            return;
        };
        if t.kind != TokKind::Literal {
            return;
        }
        let have = (t.end - t.start) as usize;
        let take = max_keep.saturating_sub(have).min(data.len());
        if take > 0 {
            if self.arena.len() + take > lim.max_line_bytes {
                self.fail(ParseError::LineTooLarge);
                return;
            }
            self.arena.extend_from_slice(&data[..take]);
            self.charge.set(budget, self.arena.capacity());
        }
        if let Some(t) = self.toks.last_mut() {
            t.end += take as u32;
            t.lit_kept = (t.end - t.start) as u64 == t.lit_len;
        }
    }

    /// The literal announced by the last fragment was skipped or refused:
    /// nothing of it is kept.
    pub fn skip_literal(&mut self) {
        if let Some(t) = self.toks.last_mut().filter(|t| t.kind == TokKind::Literal) {
            t.lit_kept = t.lit_len == 0;
        }
    }
}

fn is_status(w: &[u8]) -> bool {
    [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
        .iter()
        .any(|s| w.eq_ignore_ascii_case(s))
}

/// The end of the word starting at `i` (up to SP, TAB or the end).
fn word_end(text: &[u8], i: usize) -> usize {
    let i = i.min(text.len());
    text[i..]
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .map_or(text.len(), |k| i + k)
}

fn skip_sp(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && (text[i] == b' ' || text[i] == b'\t') {
        i += 1;
    }
    i
}

/// The index of the closing quote of a quoted string whose inside starts
/// at `i`.
fn quoted_end(text: &[u8], mut i: usize) -> Option<usize> {
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `{digits[+]}` making up all of `s`: its size and whether it had `+`.
/// `Ok(None)` if `s` is not of that shape; an error for a size beyond
/// `number64`.
pub fn parse_marker(s: &[u8]) -> Result<Option<(u64, bool)>, ParseError> {
    let Some(inner) = s.strip_prefix(b"{").and_then(|r| r.strip_suffix(b"}")) else {
        return Ok(None);
    };
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(ParseError::LiteralTooLarge)?;
    }
    if v > MAX_NUMBER64 {
        return Err(ParseError::LiteralTooLarge);
    }
    Ok(Some((v, plus)))
}

/// A literal marker at the very end of `text` (`{n}`, `{n+}`, `~{n}`,
/// `~{n+}`), ignoring quoting: its start and the marker.
pub fn trailing_marker(text: &[u8]) -> Result<Option<(usize, Marker)>, ParseError> {
    if text.last() != Some(&b'}') {
        return Ok(None);
    }
    let Some(open) = memchr::memrchr(b'{', text) else {
        return Ok(None);
    };
    let Some((len, plus)) = parse_marker(&text[open..])? else {
        return Ok(None);
    };
    let binary = open > 0 && text[open - 1] == b'~';
    Ok(Some((
        open - usize::from(binary),
        Marker {
            len,
            sync: !plus,
            binary,
        },
    )))
}

// ------------------------------------------------------------- FETCH items

/// Which message data a FETCH label names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// `BODY[...]` (and `BODY.PEEK[...]` in commands).
    Body,
    /// `BINARY[...]` / `BINARY.PEEK[...]` (decoded content).
    Binary,
    /// `RFC822` (= `BODY[]`).
    Rfc822,
    /// `RFC822.HEADER` (= `BODY.PEEK[HEADER]`).
    Rfc822Header,
    /// `RFC822.TEXT` (= `BODY[TEXT]`).
    Rfc822Text,
}

/// A FETCH label that carries message bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub kind: SectionKind,
    /// Inside the brackets (`HEADER`, `1.2.MIME`, empty for the whole).
    pub spec: &'a [u8],
    /// `<o>` (responses) or `<o.n>` (commands): the origin.
    pub origin: Option<u64>,
}

/// How a section's bytes are extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extract {
    /// The whole message, byte-exact (`BODY[]`, `RFC822`, `BINARY[]`).
    Whole,
    /// The header, from the message's start (`BODY[HEADER]`,
    /// `RFC822.HEADER`, `BODY[]<0>`): MIME-parsed, flagged partial.
    Head,
    /// A piece that does not start at the message's start (`BODY[TEXT]`,
    /// `RFC822.TEXT`, `<o>` with o > 0): extracted, not MIME-parsed,
    /// flagged partial.
    Tail,
    /// Not extracted (one MIME part, a header subset, BINARY of a part).
    No,
}

impl Section<'_> {
    pub fn extract(&self) -> Extract {
        let spec = self.spec;
        let is = |w: &[u8]| spec.eq_ignore_ascii_case(w);
        let partial = self.origin.is_some();
        let from_start = self.origin.is_none_or(|o| o == 0);
        match self.kind {
            SectionKind::Rfc822 => Extract::Whole,
            SectionKind::Rfc822Header => Extract::Head,
            SectionKind::Rfc822Text => Extract::Tail,
            SectionKind::Body | SectionKind::Binary if spec.is_empty() => {
                match (partial, from_start) {
                    (false, _) => Extract::Whole,
                    (true, true) => Extract::Head,
                    (true, false) => Extract::Tail,
                }
            }
            SectionKind::Body if is(b"HEADER") => {
                if from_start {
                    Extract::Head
                } else {
                    Extract::Tail
                }
            }
            SectionKind::Body if is(b"TEXT") => Extract::Tail,
            _ => Extract::No,
        }
    }

    /// The label as IMAP writes it (upper case, `BODY.PEEK` as `BODY`).
    pub fn label(&self) -> String {
        let mut s = match self.kind {
            SectionKind::Body => "BODY[".to_string(),
            SectionKind::Binary => "BINARY[".to_string(),
            SectionKind::Rfc822 => return "RFC822".into(),
            SectionKind::Rfc822Header => return "RFC822.HEADER".into(),
            SectionKind::Rfc822Text => return "RFC822.TEXT".into(),
        };
        s.push_str(&String::from_utf8_lossy(self.spec).to_ascii_uppercase());
        s.push(']');
        if let Some(o) = self.origin {
            s.push_str(&format!("<{o}>"));
        }
        s
    }
}

/// Parses a FETCH data item label (`BODY[]`, `BODY.PEEK[HEADER]<0.100>`,
/// `BINARY[1]`, `RFC822.TEXT`, ...), case-insensitively. `None` for any
/// other item (FLAGS, UID, ENVELOPE, `BINARY.SIZE[1]`, ...).
pub fn parse_fetch_label(atom: &[u8]) -> Option<Section<'_>> {
    let up = |n: usize| atom.get(..n).map(<[u8]>::to_ascii_uppercase);
    for (name, kind) in [
        (&b"RFC822.HEADER"[..], SectionKind::Rfc822Header),
        (b"RFC822.TEXT", SectionKind::Rfc822Text),
        (b"RFC822", SectionKind::Rfc822),
    ] {
        if atom.eq_ignore_ascii_case(name) {
            return Some(Section {
                kind,
                spec: b"",
                origin: None,
            });
        }
    }
    let (kind, rest) = if up(10).as_deref() == Some(b"BODY.PEEK[") {
        (SectionKind::Body, &atom[10..])
    } else if up(5).as_deref() == Some(b"BODY[") {
        (SectionKind::Body, &atom[5..])
    } else if up(12).as_deref() == Some(b"BINARY.PEEK[") {
        (SectionKind::Binary, &atom[12..])
    } else if up(7).as_deref() == Some(b"BINARY[") {
        (SectionKind::Binary, &atom[7..])
    } else {
        return None;
    };
    let close = memchr::memrchr(b']', rest)?;
    let spec = &rest[..close];
    let tail = &rest[close + 1..];
    let origin = if tail.is_empty() {
        None
    } else {
        let inner = tail.strip_prefix(b"<")?.strip_suffix(b">")?;
        let o = inner.split(|&c| c == b'.').next()?;
        Some(parse_number(o)?)
    };
    Some(Section { kind, spec, origin })
}

/// A decimal number (u64), if `s` is one.
pub fn parse_number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

// ---------------------------------------------------------------- SASL

/// Standard base64 (padding optional, whitespace not allowed), as SASL
/// responses use it.
pub fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in s {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The user (authcid) of a SASL PLAIN response
/// (`authzid NUL authcid NUL passwd`).
pub fn sasl_plain_user(decoded: &[u8]) -> Option<Vec<u8>> {
    let mut parts = decoded.split(|&c| c == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    parts.next()?;
    Some(user.to_vec())
}

/// The user of an XOAUTH2 response (`user=NAME ^A auth=Bearer TOKEN ^A^A`).
pub fn xoauth2_user(decoded: &[u8]) -> Option<Vec<u8>> {
    decoded
        .split(|&c| c == 1)
        .find_map(|kv| kv.strip_prefix(b"user="))
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
