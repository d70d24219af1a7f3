//! Line-level parsing as Zeek's POP3 analyzer does it: lines are C strings
//! (text after a NUL is ignored), whitespace is normalised, a line has at
//! most two tokens, keywords are matched with Zeek's sign stripping, and
//! SASL lines are base64-decoded with Zeek's decoder rules.

use mailtap_core::{ConnCtx, Weird};
use std::borrow::Cow;

/// POP3 keywords, in Zeek's order (the order matters for sign stripping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Ok,
    Err,
    User,
    Pass,
    Apop,
    Auth,
    Stat,
    List,
    Retr,
    Dele,
    Rset,
    Noop,
    Last,
    Quit,
    Top,
    Capa,
    Uidl,
    Stls,
    Xsender,
}

const KEYWORDS: [(Cmd, &[u8]); 19] = [
    (Cmd::Ok, b"OK"),
    (Cmd::Err, b"ERR"),
    (Cmd::User, b"USER"),
    (Cmd::Pass, b"PASS"),
    (Cmd::Apop, b"APOP"),
    (Cmd::Auth, b"AUTH"),
    (Cmd::Stat, b"STAT"),
    (Cmd::List, b"LIST"),
    (Cmd::Retr, b"RETR"),
    (Cmd::Dele, b"DELE"),
    (Cmd::Rset, b"RSET"),
    (Cmd::Noop, b"NOOP"),
    (Cmd::Last, b"LAST"),
    (Cmd::Quit, b"QUIT"),
    (Cmd::Top, b"TOP"),
    (Cmd::Capa, b"CAPA"),
    (Cmd::Uidl, b"UIDL"),
    (Cmd::Stls, b"STLS"),
    (Cmd::Xsender, b"XSENDER"),
];

impl Cmd {
    /// Zeek's canonical (upper-case, unsigned) name.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Ok => "OK",
            Cmd::Err => "ERR",
            Cmd::User => "USER",
            Cmd::Pass => "PASS",
            Cmd::Apop => "APOP",
            Cmd::Auth => "AUTH",
            Cmd::Stat => "STAT",
            Cmd::List => "LIST",
            Cmd::Retr => "RETR",
            Cmd::Dele => "DELE",
            Cmd::Rset => "RSET",
            Cmd::Noop => "NOOP",
            Cmd::Last => "LAST",
            Cmd::Quit => "QUIT",
            Cmd::Top => "TOP",
            Cmd::Capa => "CAPA",
            Cmd::Uidl => "UIDL",
            Cmd::Stls => "STLS",
            Cmd::Xsender => "XSENDER",
        }
    }

    /// Matches a first token. Before each candidate one more leading `+`
    /// or `-` is stripped (Zeek strips cumulatively), so `+OK`, `-ERR`,
    /// `+-ERR` match while `++OK` and a lone `+` do not.
    pub fn parse(token: &[u8]) -> Option<Cmd> {
        let mut t = token;
        for (cmd, word) in KEYWORDS {
            if let Some((&c, rest)) = t.split_first() {
                if c == b'+' || c == b'-' {
                    t = rest;
                }
            }
            if t.eq_ignore_ascii_case(word) {
                return Some(cmd);
            }
        }
        None
    }
}

/// The line as a C string: everything before the first NUL.
pub fn c_str(line: &[u8]) -> &[u8] {
    match memchr::memchr(0, line) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Zeek's whitespace normalisation: leading spaces and tabs skipped, runs
/// of spaces collapsed to one, trailing spaces dropped (tabs elsewhere
/// kept). Borrows when nothing changes inside the line.
pub fn normalise(line: &[u8]) -> Cow<'_, [u8]> {
    let start = line
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(line.len());
    let s = &line[start..];
    let double = memchr::memmem::find(s, b"  ").is_some();
    if !double && s.last() != Some(&b' ') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b' ' {
            while i < s.len() && s[i] == b' ' {
                i += 1;
            }
            if i == s.len() {
                break;
            }
            out.push(b' ');
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// The two tokens of a normalised line: the text before the first space
/// and everything after it.
pub fn tokens(norm: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', norm) {
        Some(i) => (&norm[..i], &norm[i + 1..]),
        None => (norm, &[]),
    }
}

/// Zeek's base64 line decoding for SASL answers. Returns `None` when the
/// decoder "errored" (a character outside the alphabet, or groups after
/// `=` padding), after raising `base64_illegal_encoding` for the first
/// problem; an incomplete final group is zero-padded with the same weird
/// but decodes.
pub fn decode_base64(cx: &mut ConnCtx<'_>, input: &[u8]) -> Option<Vec<u8>> {
    let mut d = B64::default();
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    d.feed(cx, input, &mut out);
    if d.errored > 0 {
        return None;
    }
    if d.next != 0 {
        let bits = (4 - d.next) * 6;
        illegal(
            cx,
            format!("incomplete base64 group, padding with {bits} bits of 0"),
        );
        let pad = &b"==="[..4 - d.next];
        d.feed(cx, pad, &mut out);
    }
    Some(out)
}

#[derive(Default)]
struct B64 {
    group: [u8; 4],
    next: usize,
    padding: usize,
    after_padding: bool,
    errored: u32,
}

impl B64 {
    fn feed(&mut self, cx: &mut ConnCtx<'_>, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        loop {
            if self.next == 4 {
                if self.after_padding {
                    self.errored += 1;
                    if self.errored == 1 {
                        illegal(
                            cx,
                            "extra base64 groups after '=' padding are ignored".to_string(),
                        );
                    }
                    self.next = 0;
                    continue;
                }
                let g = self.group;
                let v = (u32::from(g[0]) << 18)
                    | (u32::from(g[1]) << 12)
                    | (u32::from(g[2]) << 6)
                    | u32::from(g[3]);
                let n = 3usize.saturating_sub(self.padding);
                let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
                out.extend_from_slice(&bytes[..n]);
                if self.padding > 0 {
                    self.after_padding = true;
                }
                self.next = 0;
                self.padding = 0;
            }
            let Some(&c) = data.get(i) else { break };
            i += 1;
            if c == b'=' {
                self.padding += 1;
            }
            match sextet(c) {
                Some(v) => {
                    self.group[self.next] = v;
                    self.next += 1;
                }
                None => {
                    self.errored += 1;
                    if self.errored == 1 {
                        // Zeek prints the byte as a signed char.
                        let n = i32::from(c as i8);
                        illegal(cx, format!("character {n} ignored by Base64 decoding"));
                    }
                }
            }
        }
    }
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

fn illegal(cx: &mut ConnCtx<'_>, msg: String) {
    cx.weird_unsourced(Weird::Base64IllegalEncoding, Some(msg.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::harness;

    #[test]
    fn keyword_signs() {
        assert_eq!(Cmd::parse(b"+OK"), Some(Cmd::Ok));
        assert_eq!(Cmd::parse(b"OK"), Some(Cmd::Ok));
        assert_eq!(Cmd::parse(b"-OK"), Some(Cmd::Ok));
        assert_eq!(Cmd::parse(b"-ERR"), Some(Cmd::Err));
        assert_eq!(Cmd::parse(b"+ERR"), Some(Cmd::Err));
        assert_eq!(Cmd::parse(b"+-ERR"), Some(Cmd::Err));
        assert_eq!(Cmd::parse(b"++OK"), None);
        assert_eq!(Cmd::parse(b"+"), None);
        assert_eq!(Cmd::parse(b""), None);
        assert_eq!(Cmd::parse(b"user"), Some(Cmd::User));
        assert_eq!(Cmd::parse(b"xsender"), Some(Cmd::Xsender));
        assert_eq!(Cmd::parse(b"PING"), None);
    }

    #[test]
    fn normalise_and_tokens() {
        assert_eq!(&*normalise(b"  \tUSER   bob  "), b"USER bob");
        assert!(matches!(normalise(b"USER bob"), Cow::Borrowed(_)));
        assert_eq!(&*normalise(b"a \t b"), b"a \t b");
        assert_eq!(tokens(b"USER bob smith"), (&b"USER"[..], &b"bob smith"[..]));
        assert_eq!(tokens(b"QUIT"), (&b"QUIT"[..], &b""[..]));
        assert_eq!(tokens(b""), (&b""[..], &b""[..]));
        assert_eq!(c_str(b"ab\0cd"), b"ab");
    }

    #[test]
    fn base64_rules() {
        let mut h = harness();
        let mut cx = h.cx();
        assert_eq!(
            decode_base64(&mut cx, b"AGJvYgBzZWNyZXQ="),
            Some(b"\0bob\0secret".to_vec())
        );
        assert_eq!(decode_base64(&mut cx, b"Ym9i"), Some(b"bob".to_vec()));
        assert_eq!(decode_base64(&mut cx, b"Ym9 i"), None);
        assert_eq!(h.weird_names(), vec!["base64_illegal_encoding"]);
        let w = &h.weirds()[0];
        assert_eq!(
            w.addl.as_deref(),
            Some(&b"character 32 ignored by Base64 decoding"[..])
        );
        assert_eq!(w.source, None);

        let mut h = harness();
        let mut cx = h.cx();
        assert_eq!(decode_base64(&mut cx, b"Ym9iYQ"), Some(b"boba".to_vec()));
        assert_eq!(
            h.weirds()[0].addl.as_deref(),
            Some(&b"incomplete base64 group, padding with 12 bits of 0"[..])
        );

        let mut h = harness();
        let mut cx = h.cx();
        assert_eq!(decode_base64(&mut cx, b"YQ==Ym9i"), None);
        assert_eq!(
            h.weirds()[0].addl.as_deref(),
            Some(&b"extra base64 groups after '=' padding are ignored"[..])
        );
    }
}
