//! Header text helpers: splitting a raw header into name and value (Zeek's
//! rules), Content-Type and Content-Transfer-Encoding, parameters with
//! RFC 2231 continuations and charsets, RFC 2047 encoded words, and Zeek's
//! script-level filename extraction.

use encoding_rs::Encoding;

fn is_name_char(c: u8) -> bool {
    (33..=126).contains(&c) && c != b':'
}

/// Skips whitespace, `(...)` comments and (before the name) any non-name
/// bytes other than `:`.
fn skip_lws_comments(s: &[u8], mut i: usize, before_name: bool) -> usize {
    while let Some(&c) = s.get(i) {
        if c == b'(' {
            let mut depth = 0usize;
            while let Some(&d) = s.get(i) {
                match d {
                    b'(' => depth += 1,
                    b')' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    b'\\' => i += 1,
                    _ => {}
                }
                i += 1;
            }
        } else if c == b' ' || c == b'\t' || (before_name && !is_name_char(c) && c != b':') {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Splits a completed raw header into name and value: the name is the first
/// run of printable non-space ASCII other than `:`; a `:` must follow (after
/// optional blanks/comments) or the header is dropped. The value is
/// left-trimmed only.
pub fn split_header(h: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = skip_lws_comments(h, 0, true);
    let rest = h.get(start..)?;
    let end = start + rest.iter().take_while(|&&c| is_name_char(c)).count();
    if end == start {
        return None;
    }
    let colon = skip_lws_comments(h, end, false);
    if h.get(colon) != Some(&b':') {
        return None;
    }
    let v = h.get(colon + 1..)?;
    let n = v.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    Some((&h[start..end], &v[n..]))
}

/// Top-level media type class, as Zeek distinguishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TypeClass {
    #[default]
    Text,
    Multipart,
    Message,
    Other,
}

/// A parsed Content-Type value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower-cased.
    pub mime: String,
    pub class: TypeClass,
    /// The `boundary` parameter (multipart only).
    pub boundary: Option<Vec<u8>>,
}

fn is_token_char(c: u8) -> bool {
    (33..=126).contains(&c) && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

fn skip_blank(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// Parses `type/subtype; params`. `None` when there is no `type/subtype`.
pub fn parse_content_type(v: &[u8]) -> Option<ContentType> {
    let i = skip_lws_comments(v, 0, false);
    let t_end = i + v
        .get(i..)?
        .iter()
        .take_while(|&&c| is_token_char(c))
        .count();
    let j = skip_lws_comments(v, t_end, false);
    if t_end == i || v.get(j) != Some(&b'/') {
        return None;
    }
    let k = skip_lws_comments(v, j + 1, false);
    let s_end = k + v
        .get(k..)?
        .iter()
        .take_while(|&&c| is_token_char(c))
        .count();
    if s_end == k {
        return None;
    }
    let ty = String::from_utf8_lossy(&v[i..t_end]).to_ascii_lowercase();
    let sub = String::from_utf8_lossy(&v[k..s_end]).to_ascii_lowercase();
    let class = match ty.as_str() {
        "multipart" => TypeClass::Multipart,
        "message" => TypeClass::Message,
        "text" => TypeClass::Text,
        _ => TypeClass::Other,
    };
    let boundary = if class == TypeClass::Multipart {
        boundary_param(&v[s_end..])
    } else {
        None
    };
    Some(ContentType {
        mime: format!("{ty}/{sub}"),
        class,
        boundary,
    })
}

/// The `boundary` parameter: a lenient token (any printable but `"`) or a
/// quoted string with backslash escapes.
fn boundary_param(params: &[u8]) -> Option<Vec<u8>> {
    let mut i = 0usize;
    while i < params.len() {
        // Find the next parameter name.
        let semi = memchr::memchr(b';', &params[i..])?;
        i += semi + 1;
        let ns = skip_blank(params, i);
        let ne = ns
            + params[ns..]
                .iter()
                .take_while(|&&c| is_token_char(c))
                .count();
        let eq = skip_blank(params, ne);
        if params.get(eq) != Some(&b'=') {
            i = ne.max(i);
            continue;
        }
        let vs = skip_blank(params, eq + 1);
        let (val, next) = param_value(params, vs, true);
        if params[ns..ne].eq_ignore_ascii_case(b"boundary") {
            return Some(val);
        }
        i = next;
    }
    None
}

/// A parameter value at `s`: quoted string or token; returns the value and
/// where parsing stopped. `lenient` accepts any printable but `"` in a token.
fn param_value(p: &[u8], s: usize, lenient: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    if p.get(s) == Some(&b'"') {
        let mut i = s + 1;
        while let Some(&c) = p.get(i) {
            match c {
                b'"' => return (out, i + 1),
                b'\\' => {
                    if let Some(&n) = p.get(i + 1) {
                        out.push(n);
                    }
                    i += 2;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        return (out, p.len());
    }
    let mut i = s;
    while let Some(&c) = p.get(i) {
        let ok = if lenient {
            (33..=126).contains(&c) && c != b'"' && c != b';'
        } else {
            is_token_char(c) || c == b'%' || c == b'\''
        };
        if !ok {
            break;
        }
        out.push(c);
        i += 1;
    }
    (out, i)
}

/// All `; name=value` parameters, names lower-cased, RFC 2231 sections
/// joined and `name*` values charset-decoded to UTF-8 (bounded to 64
/// parameters).
pub fn params(v: &[u8]) -> Vec<(String, String)> {
    let mut raw: Vec<(String, Option<u32>, bool, Vec<u8>)> = Vec::new();
    let mut i = 0usize;
    while raw.len() < 64 {
        let Some(semi) = v.get(i..).and_then(|r| memchr::memchr(b';', r)) else {
            break;
        };
        i += semi + 1;
        let ns = skip_blank(v, i);
        let ne = ns
            + v[ns..]
                .iter()
                .take_while(|&&c| is_token_char(c) || c == b'*')
                .count();
        let eq = skip_blank(v, ne);
        if ne == ns || v.get(eq) != Some(&b'=') {
            continue;
        }
        let vs = skip_blank(v, eq + 1);
        let (val, next) = param_value(v, vs, false);
        i = next;
        let name = String::from_utf8_lossy(&v[ns..ne]).to_ascii_lowercase();
        // name, name*, name*N, name*N*
        let (base, section, ext) = match name.split_once('*') {
            None => (name.clone(), None, false),
            Some((b, rest)) => {
                let ext = rest.ends_with('*') || rest.is_empty();
                let num = rest.trim_end_matches('*');
                (b.to_string(), num.parse::<u32>().ok(), ext)
            }
        };
        raw.push((base, section, ext, val));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    for (base, _, _, _) in &raw {
        if done.contains(base) {
            continue;
        }
        done.push(base.clone());
        let mut parts: Vec<&(String, Option<u32>, bool, Vec<u8>)> =
            raw.iter().filter(|p| &p.0 == base).collect();
        parts.sort_by_key(|p| p.1.unwrap_or(0));
        let mut charset: Option<String> = None;
        let mut bytes = Vec::new();
        for (n, p) in parts.iter().enumerate() {
            let mut val: &[u8] = &p.3;
            if p.2 {
                if n == 0 {
                    // charset'language'value
                    let mut it = val.splitn(3, |&c| c == b'\'');
                    if let (Some(cs), Some(_), Some(rest)) = (it.next(), it.next(), it.next()) {
                        charset = Some(String::from_utf8_lossy(cs).into_owned());
                        val = rest;
                    }
                }
                bytes.extend(percent_decode(val));
            } else {
                bytes.extend_from_slice(val);
            }
        }
        let text = match charset {
            Some(cs) => decode_charset(&cs, &bytes),
            None => decode_words(&bytes),
        };
        out.push((base.clone(), text));
    }
    out
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0usize;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h << 4) | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Bytes in a named charset to UTF-8 (unknown charsets: UTF-8, lossy).
pub fn decode_charset(charset: &str, bytes: &[u8]) -> String {
    match Encoding::for_label(charset.trim().as_bytes()) {
        Some(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) to UTF-8; blanks
/// between adjacent encoded words are dropped; other bytes are taken as
/// UTF-8 (lossy). A malformed word stays as it is.
pub fn decode_words(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0usize;
    let mut last_was_word = false;
    let mut lit_start = 0usize;
    while i < s.len() {
        if s[i] == b'=' && s.get(i + 1) == Some(&b'?') {
            if let Some((text, end)) = encoded_word(&s[i..]) {
                // Flush literal text before the word (blanks between two
                // words are dropped).
                let lit = &s[lit_start..i];
                let all_blank = lit.iter().all(|c| c.is_ascii_whitespace());
                if !(last_was_word && all_blank) {
                    out.push_str(&String::from_utf8_lossy(lit));
                }
                out.push_str(&text);
                i += end;
                lit_start = i;
                last_was_word = true;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&s[lit_start..]));
    out
}

/// One encoded word at the start of `s`: its decoded text and length.
fn encoded_word(s: &[u8]) -> Option<(String, usize)> {
    let body = s.get(2..)?;
    let q1 = memchr::memchr(b'?', body)?;
    let charset = &body[..q1];
    let enc = *body.get(q1 + 1)?;
    if body.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let rest = body.get(text_start..)?;
    let end = memchr::memmem::find(rest, b"?=")?;
    let text = &rest[..end];
    if charset.is_empty() || text.iter().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => {
            let mut d = crate::decode::Base64::new();
            let mut out = Vec::new();
            let mut p = Vec::new();
            d.line(text, &mut out, &mut p);
            d.finish(&mut out, &mut p);
            out
        }
        b'Q' | b'q' => {
            let mut out = Vec::with_capacity(text.len());
            let mut i = 0usize;
            while i < text.len() {
                match text[i] {
                    b'_' => out.push(b' '),
                    b'=' => {
                        if let (Some(h), Some(l)) = (
                            text.get(i + 1).copied().and_then(hex),
                            text.get(i + 2).copied().and_then(hex),
                        ) {
                            out.push((h << 4) | l);
                            i += 3;
                            continue;
                        }
                        out.push(b'=');
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    // RFC 2231 language suffix: charset*lang.
    let cs = String::from_utf8_lossy(charset);
    let cs = cs.split('*').next().unwrap_or("");
    Some((decode_charset(cs, &bytes), 2 + text_start + end + 2))
}

/// Zeek's `extract_filename_from_content_disposition`: the text after the
/// last `name[blank]*\*?=[blank]*`, inside quotes if it starts with one,
/// an RFC 2231 `charset'lang'` prefix removed, URI-unescaped.
pub fn zeek_filename(v: &[u8]) -> Vec<u8> {
    // Greedy `^.*name[blank]*\*?=[blank]*`: the last match wins.
    let mut start = None;
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    for pos in memchr::memmem::find_iter(&lower, b"name") {
        let mut i = pos + 4;
        while matches!(v.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if v.get(i) == Some(&b'*') {
            i += 1;
        }
        if v.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while matches!(v.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        start = Some(i);
    }
    // No match: Zeek's sub() leaves the whole value.
    let s = start.unwrap_or(0);
    let mut f: &[u8] = &v[s.min(v.len())..];
    if f.first() == Some(&b'"') {
        let inner = &f[1..];
        f = match memchr::memchr(b'"', inner) {
            Some(e) => &inner[..e],
            None => inner,
        };
    }
    // [a-zA-Z0-9!#$%&+-^_`{}~]+'[...]*'
    let cs = |c: u8| {
        c.is_ascii_alphanumeric() || b"!#$%&+-^_`{}~".contains(&c) || (b'+'..=b'^').contains(&c)
    };
    let a = f.iter().take_while(|&&c| cs(c)).count();
    if a > 0 && f.get(a) == Some(&b'\'') {
        let b = f[a + 1..].iter().take_while(|&&c| cs(c)).count();
        if f.get(a + 1 + b) == Some(&b'\'') {
            f = &f[a + 2 + b..];
        }
    }
    percent_decode(f)
}

/// Content-Transfer-Encoding classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cte {
    #[default]
    Identity,
    Base64,
    QuotedPrintable,
}

/// The first token of a Content-Transfer-Encoding value.
pub fn parse_cte(v: &[u8]) -> Cte {
    let i = skip_lws_comments(v, 0, false);
    let tok: Vec<u8> = v[i.min(v.len())..]
        .iter()
        .take_while(|&&c| is_token_char(c))
        .map(u8::to_ascii_lowercase)
        .collect();
    match tok.as_slice() {
        b"base64" => Cte::Base64,
        b"quoted-printable" => Cte::QuotedPrintable,
        _ => Cte::Identity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_header_rules() {
        assert_eq!(
            split_header(b"Subject:  hi there "),
            Some((&b"Subject"[..], &b"hi there "[..]))
        );
        assert_eq!(split_header(b"From sender@x Tue"), None);
        assert_eq!(
            split_header(b"(c) X-A (c) : v"),
            Some((&b"X-A"[..], &b"v"[..]))
        );
    }

    #[test]
    fn content_type_and_boundary() {
        let ct = parse_content_type(b"Multipart/Mixed;\tboundary=\"Apple-Mail=_A\\\"B\"").unwrap();
        assert_eq!(ct.mime, "multipart/mixed");
        assert_eq!(ct.class, TypeClass::Multipart);
        assert_eq!(ct.boundary.as_deref(), Some(&b"Apple-Mail=_A\"B"[..]));
        let ct = parse_content_type(b"multipart/alternative; boundary=----=_NextPart_000").unwrap();
        assert_eq!(ct.boundary.as_deref(), Some(&b"----=_NextPart_000"[..]));
        assert_eq!(parse_content_type(b"text").map(|c| c.mime), None);
        let ct = parse_content_type(b"text/plain; charset=us-ascii").unwrap();
        assert_eq!(ct.class, TypeClass::Text);
        assert_eq!(ct.boundary, None);
    }

    #[test]
    fn rfc2231_continuations_and_charset() {
        let p =
            params(b"attachment; filename*0*=UTF-8''r%C3%A9sum; filename*1*=%C3%A9.pdf; size=3");
        assert_eq!(p[0], ("filename".into(), "résumé.pdf".into()));
        let p = params(b"attachment; filename*=iso-8859-1'fr'caf%E9.txt");
        assert_eq!(p[0].1, "café.txt");
        let p = params(b"application/pdf; name=\"=?UTF-8?B?w6l0w6k=?=.pdf\"");
        assert_eq!(p[0], ("name".into(), "été.pdf".into()));
    }

    #[test]
    fn encoded_words() {
        assert_eq!(
            decode_words(b"=?ISO-8859-1?Q?Andr=E9?= Pirard"),
            "André Pirard"
        );
        assert_eq!(
            decode_words(b"=?UTF-8?B?SGVsbG8=?= =?UTF-8?Q?_w=C3=B6rld?="),
            "Hello wörld"
        );
        assert_eq!(decode_words(b"=?KOI8-R?B?8NLJ18XU?="), "Привет");
        assert_eq!(decode_words(b"=?windows-1252?Q?=80uro?="), "€uro");
        assert_eq!(decode_words(b"plain =?bogus"), "plain =?bogus");
        assert_eq!(decode_words(b"a =?x-unknown?Q?b?= c"), "a b c");
    }

    #[test]
    fn zeek_filename_rules() {
        assert_eq!(zeek_filename(b"attachment; filename=NEWS.txt"), b"NEWS.txt");
        assert_eq!(
            zeek_filename(b"image/png; name=\"zeek-logo.png\"; x=1"),
            b"zeek-logo.png"
        );
        assert_eq!(
            zeek_filename(b"attachment; filename*=UTF-8''a%20b.txt"),
            b"a b.txt"
        );
        assert_eq!(
            zeek_filename(b"attachment; filename=a.txt; size=3"),
            b"a.txt; size=3"
        );
    }

    #[test]
    fn cte() {
        assert_eq!(parse_cte(b" Base64"), Cte::Base64);
        assert_eq!(parse_cte(b"quoted-printable (x)"), Cte::QuotedPrintable);
        assert_eq!(parse_cte(b"8bit"), Cte::Identity);
    }
}
