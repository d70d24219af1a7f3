//! Unit tests of the line syntax: tokens, every literal kind, bounds.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

/// Feeds whole physical lines (no literal payloads) and returns the
/// fragment results and the tokens as `kind:value` strings.
fn toks(p: &LineParser) -> Vec<String> {
    p.toks()
        .iter()
        .map(|t| {
            let k = match t.kind {
                TokKind::Atom => "a",
                TokKind::Quoted => "q",
                TokKind::Literal => "l",
                TokKind::LParen => "(",
                TokKind::RParen => ")",
                TokKind::Code => "c",
                TokKind::Text => "t",
            };
            format!("{k}:{}", String::from_utf8_lossy(&p.value(t)))
        })
        .collect()
}

fn one(line: &[u8], server: bool) -> (Frag, LineParser) {
    let mut p = LineParser::new();
    let b = BufferBudget::default();
    let f = p.fragment(line, false, false, server, &lim(), &b);
    (f, p)
}

#[test]
fn command_with_quoted_atoms_and_lists() {
    let (f, p) = one(br#"a1 LOGIN "al \"x\" \\ice" s3cret"#, false);
    assert_eq!(f, Frag::Done);
    assert_eq!(
        toks(&p),
        ["a:a1", "a:LOGIN", r#"q:al "x" \ice"#, "a:s3cret"]
    );
    let (f, p) = one(
        b"A0007 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM \"X-Spam\")]<0.100>)",
        false,
    );
    assert_eq!(f, Frag::Done);
    assert_eq!(
        toks(&p),
        [
            "a:A0007",
            "a:UID",
            "a:FETCH",
            "a:1:*",
            "(:(",
            "a:FLAGS",
            "a:BODY.PEEK[HEADER.FIELDS (FROM \"X-Spam\")]<0.100>",
            "):)"
        ]
    );
    assert_eq!(p.depth(), 0);
}

#[test]
fn status_responses_keep_code_and_free_text() {
    let (f, p) = one(b"* OK [CAPABILITY IMAP4rev1 IDLE] Dovecot ready.", true);
    assert_eq!(f, Frag::Done);
    assert_eq!(
        toks(&p),
        [
            "a:*",
            "a:OK",
            "c:CAPABILITY IMAP4rev1 IDLE",
            "t:Dovecot ready."
        ]
    );
    let (_, p) = one(b"a1 OK [READ-WRITE]", true);
    assert_eq!(toks(&p), ["a:a1", "a:OK", "c:READ-WRITE", "t:"]);
    let (_, p) = one(b"+ idling", true);
    assert_eq!(toks(&p), ["a:+", "t:idling"]);
    let (_, p) = one(b"+", true);
    assert_eq!(toks(&p), ["a:+", "t:"]);
}

#[test]
fn literal_in_free_text_is_no_literal() {
    let (f, p) = one(b"* OK [ALERT] quota almost used {5}", true);
    assert_eq!(f, Frag::Done);
    assert!(p.has_error(ParseError::LiteralInText));
    assert!(!p.is_broken());
}

#[test]
fn every_literal_kind_is_recognised() {
    for (line, server, want) in [
        (
            &b"* 1 FETCH (BODY[] {22}"[..],
            true,
            Marker {
                len: 22,
                sync: true,
                binary: false,
            },
        ),
        (
            b"a APPEND Drafts {7+}",
            false,
            Marker {
                len: 7,
                sync: false,
                binary: false,
            },
        ),
        (
            b"a APPEND Drafts ~{7}",
            false,
            Marker {
                len: 7,
                sync: true,
                binary: true,
            },
        ),
        (
            b"a APPEND Drafts ~{7+}",
            false,
            Marker {
                len: 7,
                sync: false,
                binary: true,
            },
        ),
        (
            b"* 2 FETCH (BINARY[1] ~{04}",
            true,
            Marker {
                len: 4,
                sync: true,
                binary: true,
            },
        ),
        (
            b"* 4 FETCH (BODY[TEXT] {0}",
            true,
            Marker {
                len: 0,
                sync: true,
                binary: false,
            },
        ),
        (
            b"* 5 FETCH (BODY[]{3}",
            true,
            Marker {
                len: 3,
                sync: true,
                binary: false,
            },
        ),
    ] {
        let (f, p) = one(line, server);
        assert_eq!(f, Frag::Literal(want), "{}", String::from_utf8_lossy(line));
        assert_eq!(p.toks().last().unwrap().kind, TokKind::Literal);
        assert_eq!(p.toks().last().unwrap().lit_len, want.len);
    }
}

#[test]
fn a_literal_inside_quotes_is_text() {
    let (f, p) = one(br#"a SELECT "{5}""#, false);
    assert_eq!(f, Frag::Done);
    assert_eq!(toks(&p), ["a:a", "a:SELECT", "q:{5}"]);
}

#[test]
fn huge_and_malformed_literals() {
    let (f, p) = one(b"* 1 FETCH (BODY[] {18446744073709551615}", true);
    assert_eq!(f, Frag::Desync(ParseError::LiteralTooLarge));
    assert!(p.has_error(ParseError::LiteralTooLarge));
    let (f, _) = one(b"* 1 FETCH (BODY[] {99999999999999999999999}", true);
    assert_eq!(f, Frag::Desync(ParseError::LiteralTooLarge));
    // Within number64 but beyond the cap.
    let (f, _) = one(b"* 1 FETCH (BODY[] {9223372036854775807}", true);
    assert_eq!(f, Frag::Desync(ParseError::LiteralOverLimit));
    let (f, p) = one(b"a SEARCH {5x}", false);
    assert_eq!(f, Frag::Done);
    assert!(p.has_error(ParseError::MalformedLiteral));
    let (f, p) = one(b"* 1 FETCH (BODY[] {2+}", true);
    assert_eq!(
        f,
        Frag::Literal(Marker {
            len: 2,
            sync: false,
            binary: false
        })
    );
    assert!(p.has_error(ParseError::NonSyncLiteralFromServer));
}

#[test]
fn literal_payload_kept_then_line_continues() {
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    let f = p.fragment(b"a LOGIN {5}", false, false, false, &lim(), &b);
    assert_eq!(
        f,
        Frag::Literal(Marker {
            len: 5,
            sync: true,
            binary: false
        })
    );
    p.keep(b"al", 4096, &lim(), &b);
    p.keep(b"ice", 4096, &lim(), &b);
    let f = p.fragment(b" {6}", false, false, false, &lim(), &b);
    assert!(matches!(f, Frag::Literal(_)));
    p.skip_literal();
    let f = p.fragment(b"", false, false, false, &lim(), &b);
    assert_eq!(f, Frag::Done);
    assert_eq!(toks(&p), ["a:a", "a:LOGIN", "l:alice", "l:"]);
    assert!(p.toks()[2].lit_kept);
    assert!(!p.toks()[3].lit_kept);
    p.reset(true);
    assert!(p.is_fresh());
    assert!(p.toks().is_empty());
}

#[test]
fn kept_literals_are_bounded() {
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    p.fragment(b"* LIST () \"/\" {10}", false, false, true, &lim(), &b);
    p.keep(b"0123456789", 4, &lim(), &b);
    p.fragment(b"", false, false, true, &lim(), &b);
    assert_eq!(toks(&p).last().unwrap(), "l:0123");
    assert!(!p.toks().last().unwrap().lit_kept);
}

#[test]
fn nesting_is_bounded_and_framing_survives() {
    let l = Limits {
        max_depth: 8,
        ..Limits::default()
    };
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    let mut line = b"* 1 FETCH ".to_vec();
    line.extend(std::iter::repeat_n(b'(', 10_000));
    line.extend_from_slice(b" {3}");
    let f = p.fragment(&line, false, false, true, &l, &b);
    assert_eq!(
        f,
        Frag::Literal(Marker {
            len: 3,
            sync: true,
            binary: false
        })
    );
    assert!(p.has_error(ParseError::NestingTooDeep));
    assert!(p.is_broken());
    assert!(p.toks().len() < 20, "tokens stop being stored");
}

#[test]
fn tokens_and_line_bytes_are_bounded() {
    let l = Limits {
        max_tokens: 10,
        max_line_bytes: 100,
        ..Limits::default()
    };
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    p.fragment(
        b"* SEARCH 1 2 3 4 5 6 7 8 9 10 11 12",
        false,
        false,
        true,
        &l,
        &b,
    );
    assert!(p.has_error(ParseError::TooManyTokens));
    assert_eq!(p.toks().len(), 10);
    p.reset(false);
    let long = [b'x'; 200];
    p.fragment(&long, false, false, true, &l, &b);
    assert!(p.has_error(ParseError::LineTooLarge));
    assert!(p.toks().is_empty());
}

#[test]
fn cut_lines_keep_only_trailing_framing() {
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    assert_eq!(
        p.fragment(b"* 1 FETCH (X \"", true, false, true, &lim(), &b),
        Frag::Cut
    );
    assert_eq!(
        p.fragment(b"more", true, false, true, &lim(), &b),
        Frag::Cut
    );
    let f = p.fragment(b"end\" BODY[] {4}", false, false, true, &lim(), &b);
    assert_eq!(
        f,
        Frag::Literal(Marker {
            len: 4,
            sync: true,
            binary: false
        })
    );
    assert!(p.has_error(ParseError::LineTooLong));
}

#[test]
fn unbalanced_and_unterminated() {
    let (_, p) = one(b"* 1 FETCH (FLAGS ()))", true);
    assert!(p.has_error(ParseError::UnbalancedParen));
    let (f, p) = one(b"a SELECT \"INBOX {5}", false);
    assert_eq!(f, Frag::Done, "a marker inside an open quote is no literal");
    assert!(p.has_error(ParseError::UnterminatedQuoted));
    let (_, p) = one(b"* 1 FETCH (BODY[HEADER", true);
    assert!(p.has_error(ParseError::UnterminatedSection));
    let (_, p) = one(b"", true);
    assert!(p.has_error(ParseError::EmptyLine));
}

#[test]
fn raw_lines_are_one_text_token() {
    let b = BufferBudget::default();
    let mut p = LineParser::new();
    let f = p.fragment(b"AGFsaWNlAHNlY3JldA== {5}", false, true, false, &lim(), &b);
    assert_eq!(f, Frag::Done);
    assert_eq!(toks(&p), ["t:AGFsaWNlAHNlY3JldA== {5}"]);
}

#[test]
fn fetch_labels() {
    let s = parse_fetch_label(b"BODY[]").unwrap();
    assert_eq!(
        (s.kind, s.spec, s.origin),
        (SectionKind::Body, &b""[..], None)
    );
    assert_eq!(s.extract(), Extract::Whole);
    let s = parse_fetch_label(b"body.peek[header]<0.100>").unwrap();
    assert_eq!(s.extract(), Extract::Head);
    assert_eq!(s.label(), "BODY[HEADER]<0>");
    assert_eq!(
        parse_fetch_label(b"BODY[]<1024>").unwrap().extract(),
        Extract::Tail
    );
    assert_eq!(
        parse_fetch_label(b"BODY[]<0>").unwrap().extract(),
        Extract::Head
    );
    assert_eq!(
        parse_fetch_label(b"BODY[TEXT]").unwrap().extract(),
        Extract::Tail
    );
    assert_eq!(
        parse_fetch_label(b"BODY[1.2]").unwrap().extract(),
        Extract::No
    );
    assert_eq!(
        parse_fetch_label(b"BODY[HEADER.FIELDS (FROM)]")
            .unwrap()
            .extract(),
        Extract::No
    );
    assert_eq!(
        parse_fetch_label(b"BINARY[]").unwrap().extract(),
        Extract::Whole
    );
    assert_eq!(
        parse_fetch_label(b"BINARY[1]<0>").unwrap().extract(),
        Extract::No
    );
    assert_eq!(
        parse_fetch_label(b"RFC822").unwrap().extract(),
        Extract::Whole
    );
    assert_eq!(
        parse_fetch_label(b"RFC822.HEADER").unwrap().extract(),
        Extract::Head
    );
    assert_eq!(
        parse_fetch_label(b"rfc822.text").unwrap().extract(),
        Extract::Tail
    );
    assert!(parse_fetch_label(b"RFC822.SIZE").is_none());
    assert!(parse_fetch_label(b"BINARY.SIZE[1]").is_none());
    assert!(parse_fetch_label(b"FLAGS").is_none());
    assert!(parse_fetch_label(b"BODY[]<x>").is_none());
}

#[test]
fn markers() {
    assert_eq!(parse_marker(b"{04}"), Ok(Some((4, false))));
    assert_eq!(parse_marker(b"{4+}"), Ok(Some((4, true))));
    assert_eq!(parse_marker(b"{}"), Ok(None));
    assert_eq!(parse_marker(b"{+}"), Ok(None));
    assert_eq!(parse_marker(b"{4} "), Ok(None));
    assert_eq!(
        parse_marker(b"{9223372036854775808}"),
        Err(ParseError::LiteralTooLarge)
    );
    assert_eq!(
        trailing_marker(b"x ~{5+}"),
        Ok(Some((
            2,
            Marker {
                len: 5,
                sync: false,
                binary: true
            }
        )))
    );
}

#[test]
fn sasl_helpers() {
    let d = decode_base64(b"AGFsaWNlAHNlY3JldA==").unwrap();
    assert_eq!(d, b"\0alice\0secret");
    assert_eq!(sasl_plain_user(&d).unwrap(), b"alice");
    let x = decode_base64(b"dXNlcj1ib2JAZXhhbXBsZS5jb20BYXV0aD1CZWFyZXIgdG9rZW4BAQ==").unwrap();
    assert_eq!(xoauth2_user(&x).unwrap(), b"bob@example.com");
    assert!(decode_base64(b"a*b").is_none());
    assert!(sasl_plain_user(b"nonul").is_none());
}

#[test]
fn error_names_are_distinct() {
    let mut names: Vec<_> = ParseError::ALL.iter().map(|e| e.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ParseError::ALL.len());
}
