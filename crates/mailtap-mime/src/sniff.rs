//! Content sniffing for files.log `mime_type`: the type Zeek 8.2.2 gives a
//! file from its first bytes (its BOF buffer, 4096 bytes by default).
//!
//! Two stages, both our own rules written from the formats' published
//! facts, with Zeek's names for the types:
//! * [`magic`]: binary formats by magic number and header layout, dispatched
//!   on the first byte; a match there is final.
//! * text: markup (HTML, XML and the XML vocabularies Zeek names: SVG, KML,
//!   Atom, RSS), scripts by `#!` line, mail, diffs, JSON, calendars, armored
//!   OpenPGP and a few more anchored at the start; where several apply the
//!   strongest wins, as in Zeek's signature matching; plain text (the first
//!   ten bytes printable) is the weakest.
//!
//! Formats Zeek does not type stay untyped (`None`, `-` in files.log):
//! zstd, lzop, PCX, PBM, ISO 9660, DER (certificates, PKCS#7, PKCS#12),
//! binary OpenPGP messages, UTF-16 text, class files newer than Java 8.
//! Nothing here allocates, and the work per call is bounded by the buffer.

mod magic;

/// The MIME type of a file from its first bytes (Zeek's BOF buffer);
/// `None` when no signature matches (e.g. text shorter than 10 bytes).
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    magic::binary(b).or_else(|| text(b))
}

/// Text formats, strongest match first.
fn text(b: &[u8]) -> Option<&'static str> {
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
    if let Some((rest, xml_decl)) = markup_start(b) {
        let l = |p: &[u8]| starts_ci(rest, p);
        let t = |name: &[u8]| is_tag(rest, name);
        if l(b"<!doctype html") || l(b"<html") || l(b"<meta http-equiv") {
            cand(100, "text/html");
        } else if l(b"<head") || l(b"<title") || l(b"<body") {
            cand(20, "text/html");
        } else if t(b"svg") || l(b"<!doctype svg") {
            cand(100, "image/svg+xml");
        } else if t(b"kml") {
            cand(100, "application/vnd.google-earth.kml+xml");
        } else if t(b"rss") {
            cand(90, "text/rss");
        } else if xml_decl && t(b"feed") {
            cand(90, "text/atom");
        } else if xml_decl || l(b"<?xml ") {
            cand(10, "application/xml");
        } else if l(b"<?php") {
            cand(100, "text/x-php");
        }
    }
    if b.starts_with(b"#!") {
        let (line, after) = match memchr::memchr(b'\n', b) {
            Some(n) => (&b[..n], &b[n + 1..]),
            None => (b, &b[b.len()..]),
        };
        let has = |n: &[u8]| memchr::memmem::find(line, n).is_some();
        let sh = has(b"bin/sh") || has(b"bin/env sh");
        if sh && is_shar(after) {
            cand(260, "application/x-shar");
        } else if sh || has(b"bin/bash") || has(b"bin/env bash") {
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
        // RFC 4880 6.2 armor headers.
        (
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----",
            100,
            "application/pgp-keys",
        ),
        (b"-----BEGIN PGP MESSAGE-----", 100, "application/pgp"),
        (
            b"-----BEGIN PGP SIGNATURE-----",
            100,
            "application/pgp-signature",
        ),
        (b"%PDF-", 70, "application/pdf"),
        (b"%!PS", 70, "application/postscript"),
        (b"{\\rtf", 70, "text/rtf"),
        // ISO 28500: a WARC record starts with its version line.
        (b"WARC/", 100, "application/warc"),
        (b"REGEDIT4", 100, "application/vnd.ms-reg"),
        (
            b"Windows Registry Editor Version ",
            100,
            "application/vnd.ms-reg",
        ),
    ] {
        if b.starts_with(p) {
            cand(s, m);
        }
    }
    // RFC 5545 / RFC 6350: the first content line opens the object; names
    // are case-insensitive.
    if starts_ci(b, b"BEGIN:VCALENDAR") {
        cand(100, "text/calendar");
    } else if starts_ci(b, b"BEGIN:VCARD") {
        cand(100, "text/x-vcard");
    } else if starts_ci(b, b"@echo off") {
        cand(100, "text/x-msdos-batch");
    }
    if utf16le_starts(b, b"Windows Registry Editor Version ") {
        cand(100, "application/vnd.ms-reg");
    }
    if is_javascript(b) {
        cand(60, "application/javascript");
    }
    if is_ini(b) {
        cand(40, "text/ini");
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
/// declaration when followed by more markup): where the first tag starts,
/// and whether an XML declaration was skipped to get there.
fn markup_start(b: &[u8]) -> Option<(&[u8], bool)> {
    let mut s = strip_bom(b);
    let mut decl = false;
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
                    decl = true;
                    continue;
                }
            }
        }
        return s.first().is_some_and(|&c| c == b'<').then_some((s, decl));
    }
}

/// `s` opens element `name`: `<name` then a blank, `>` or `/`.
fn is_tag(s: &[u8], name: &[u8]) -> bool {
    s.first() == Some(&b'<')
        && starts_ci(&s[1..], name)
        && s.get(1 + name.len())
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
}

/// After a `#!/bin/sh` line: a shell archive's banner comment, as written
/// by shar(1) ("# This is a shell archive.") on one of the next lines.
fn is_shar(after: &[u8]) -> bool {
    let head = &after[..after.len().min(512)];
    memchr::memmem::find(head, b"# This is a shell archive").is_some()
}

/// UTF-16LE text with a byte order mark that starts with the ASCII `p`.
fn utf16le_starts(b: &[u8], p: &[u8]) -> bool {
    let Some(s) = b.strip_prefix(b"\xff\xfe") else {
        return false;
    };
    s.len() >= 2 * p.len()
        && p.iter()
            .enumerate()
            .all(|(i, &c)| s[2 * i] == c && s[2 * i + 1] == 0)
}

/// JavaScript recognisable from its first statement: a function expression
/// invoked at once (`(function`, `!function`) or a `"use strict"` directive.
fn is_javascript(b: &[u8]) -> bool {
    let s = strip_bom(b);
    let n = s.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let s = &s[n..];
    s.starts_with(b"(function")
        || s.starts_with(b"!function")
        || s.starts_with(b"'use strict'")
        || s.starts_with(b"\"use strict\"")
}

/// An INI file: the first line is a `[section]` header (letters, digits,
/// blanks, `.`, `_`, `-`), alone on its line.
fn is_ini(b: &[u8]) -> bool {
    let Some(s) = b.strip_prefix(b"[") else {
        return false;
    };
    let n = s
        .iter()
        .take(64)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'.' | b'_' | b'-'))
        .count();
    n > 0 && (s[n..].starts_with(b"]\n") || s[n..].starts_with(b"]\r\n"))
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

#[cfg(test)]
mod tests;
