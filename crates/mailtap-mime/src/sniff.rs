//! Content sniffing for files.log `mime_type`, following the strongest
//! matching signature of Zeek's file-magic set for the types mail carries
//! (text, HTML, XML, JSON, diffs, mail, scripts), with the `infer` crate for
//! binary formats and its names mapped to Zeek's.

/// The MIME type of a file from its first bytes (Zeek's BOF buffer);
/// `None` when no signature matches (e.g. text shorter than 10 bytes).
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    let mut best: Option<(i32, &'static str)> = None;
    let mut cand = |strength: i32, mime: &'static str| {
        let better = match best {
            None => true,
            Some((s, _)) => strength > s,
        };
        if better {
            best = Some((strength, mime));
        }
    };
    if let Some(m) = binary(b) {
        cand(m.0, m.1);
    }
    if let Some(rest) = markup_start(b) {
        let l = |p: &[u8]| starts_ci(rest, p);
        if l(b"<!doctype html") || l(b"<html") || l(b"<meta http-equiv") {
            cand(100, "text/html");
        } else if l(b"<head") || l(b"<title") || l(b"<body") {
            cand(20, "text/html");
        } else if l(b"<?xml ") {
            cand(10, "application/xml");
        } else if l(b"<rss") {
            cand(90, "text/rss");
        }
    }
    if b.starts_with(b"#!") {
        let line = b.split(|&c| c == b'\n').next().unwrap_or(b);
        let has = |n: &[u8]| memchr::memmem::find(line, n).is_some();
        if has(b"bin/sh") || has(b"bin/bash") || has(b"bin/env sh") || has(b"bin/env bash") {
            cand(250, "text/x-shellscript");
        } else if has(b"perl") {
            cand(60, "text/x-perl");
        } else if has(b"python") {
            cand(60, "text/x-python");
        } else if has(b"ruby") {
            cand(60, "text/x-ruby");
        }
    }
    if is_diff(b) {
        cand(55, "text/x-diff");
    }
    for (p, s, m) in [
        (&b"Relay-Version:"[..], 170, "message/rfc822"),
        (b"Received:", 120, "message/rfc822"),
        (b"Return-Path:", 70, "message/rfc822"),
        (b"-----BEGIN CERTIFICATE-----", 1, "application/x-pem"),
        (b"%PDF-", 70, "application/pdf"),
        (b"{\\rtf", 70, "text/rtf"),
    ] {
        if b.starts_with(p) {
            cand(s, m);
        }
    }
    if is_json(b) {
        cand(1, "text/json");
    }
    if is_plaintext(b) {
        cand(-20, "text/plain");
    }
    best.map(|(_, m)| m)
}

fn starts_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b)
}

/// After an optional BOM, blanks and `<!-- -->` comments (and an XML
/// declaration when followed by more markup): where the first tag starts.
fn markup_start(b: &[u8]) -> Option<&[u8]> {
    let mut s = strip_bom(b);
    loop {
        let n = s
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        s = &s[n..];
        if s.starts_with(b"<!--") {
            let e = memchr::memmem::find(s, b"-->")?;
            s = &s[e + 3..];
            continue;
        }
        if s.starts_with(b"<?xml ") {
            if let Some(e) = memchr::memmem::find(s, b"?>") {
                let after = &s[e + 2..];
                let n = after.iter().take_while(|c| c.is_ascii_whitespace()).count();
                if after[n..].starts_with(b"<") && !after[n..].starts_with(b"<?") {
                    s = after;
                    continue;
                }
            }
        }
        return s.first().is_some_and(|&c| c == b'<').then_some(s);
    }
}

/// libmagic's "unified diff output": `--- `, then a line break, `+++ `,
/// a line break and `@@`, in that order anywhere in the buffer.
fn is_diff(b: &[u8]) -> bool {
    let f = |s: &[u8], n: &[u8]| memchr::memmem::find(s, n);
    let Some(a) = f(b, b"--- ") else { return false };
    let r = &b[a + 4..];
    let Some(n1) = memchr::memchr(b'\n', r) else {
        return false;
    };
    let r = &r[n1 + 1..];
    let Some(p) = f(r, b"+++ ") else { return false };
    let r = &r[p + 4..];
    let Some(n2) = memchr::memchr(b'\n', r) else {
        return false;
    };
    f(&r[n2 + 1..], b"@@").is_some()
}

fn is_json(b: &[u8]) -> bool {
    let s = strip_bom(b);
    let n = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    let s = &s[n..];
    match s.first() {
        Some(b'{') => {
            let t = &s[1..];
            let n = t.iter().take_while(|c| c.is_ascii_whitespace()).count();
            matches!(t.get(n), Some(b'"') | Some(b'}'))
        }
        _ => false,
    }
}

/// Zeek's file-plaintext: optional BOM, then ten bytes of printable ASCII
/// or whitespace.
fn is_plaintext(b: &[u8]) -> bool {
    let s = if let Some(r) = b.strip_prefix(b"\xef\xbb\xbf") {
        r
    } else if let Some(r) = b.strip_prefix(b"\x00\x00\xfe\xff") {
        r
    } else if let Some(r) = b.strip_prefix(b"\xfe\xff") {
        r
    } else if let Some(r) = b.strip_prefix(b"\xff\xfe\x00\x00") {
        r
    } else if let Some(r) = b.strip_prefix(b"\xff\xfe") {
        r
    } else {
        b
    };
    s.len() >= 10
        && s[..10].iter().all(|&c| {
            (0x20..=0x7e).contains(&c) || matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
        })
}

/// Binary formats via `infer`, named as Zeek names them.
fn binary(b: &[u8]) -> Option<(i32, &'static str)> {
    let t = infer::get(b)?;
    if t.matcher_type() == infer::MatcherType::Text {
        return None;
    }
    let m = match t.mime_type() {
        "application/gzip" => "application/x-gzip",
        "application/x-rar-compressed" | "application/vnd.rar" => "application/x-rar",
        "application/vnd.microsoft.portable-executable" | "application/x-msdownload" => {
            "application/x-dosexec"
        }
        "application/x-executable" | "application/x-elf" => "application/x-executable",
        "image/vnd.microsoft.icon" => "image/x-icon",
        "application/x-ole-storage" => "application/msword",
        other => other,
    };
    Some((110, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeek_baseline_types() {
        assert_eq!(sniff(b"Hello\r\n\r\n \r\n--\r\n"), Some("text/plain"));
        assert_eq!(sniff(b"<html xmlns:v=\"urn\">"), Some("text/html"));
        assert_eq!(sniff(b"Hello!\r\n"), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(
            sniff(b"Intro\n---\n x | 2 +\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n"),
            Some("text/x-diff")
        );
        assert_eq!(sniff(b"Received: from x\r\n"), Some("message/rfc822"));
        assert_eq!(sniff(b"%PDF-1.4\n%\xe2\xe3"), Some("application/pdf"));
        assert_eq!(
            sniff(b"PK\x03\x04\x14\x00\x00\x00\x08\x00"),
            Some("application/zip")
        );
        assert_eq!(
            sniff(b"\x1f\x8b\x08\x00\x00\x00\x00\x00"),
            Some("application/x-gzip")
        );
        assert_eq!(
            sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
            Some("image/jpeg")
        );
        assert_eq!(sniff(b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"), None);
    }
}
