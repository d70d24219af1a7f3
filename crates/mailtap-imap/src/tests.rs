//! Session tests: `ImapAnalyzer` driven through `TcpAnalyzer` on
//! realistic transcripts; extracted bytes compared with the literals.

use crate::{ImapAnalyzer, ImapConfig, ImapRecord, ImapWeird};
use mailtap_core::mail::EmailMeta;
use mailtap_core::testing::Harness;
use mailtap_core::{BufferBudget, Event, Record, TcpAnalyzer, Timestamp};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    C(Vec<u8>),
    S(Vec<u8>),
    Gap(bool, u64),
}
use Step::{Gap, C, S};

fn c(b: &[u8]) -> Step {
    C(b.to_vec())
}
fn s(b: &[u8]) -> Step {
    S(b.to_vec())
}

struct Run {
    h: Harness,
    a: ImapAnalyzer,
    rec: ImapRecord,
    events: Vec<Event>,
}

fn run_cfg(cfg: ImapConfig, steps: &[Step]) -> Run {
    run_budget(cfg, BufferBudget::default(), steps)
}

/// A run on a shard whose buffer budget is `budget`.
fn run_budget(cfg: ImapConfig, budget: BufferBudget, steps: &[Step]) -> Run {
    let mut h = Harness::new("192.168.0.4:40001", "10.0.0.2:143");
    h.out.extract_enabled = true;
    h.out.buffers = budget;
    let mut a = ImapAnalyzer::new(Arc::new(cfg));
    for (i, st) in steps.iter().enumerate() {
        h.ts = Timestamp(1_000_000_000 + i as i64 * 1000);
        let mut cx = h.cx();
        match st {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, *o, *n),
        }
    }
    let mut cx = h.cx();
    a.eof(&mut cx, true);
    a.eof(&mut cx, false);
    a.done(&mut cx);
    let rec = h.imap().first().map(|r| (*r).clone()).unwrap_or_default();
    let events = h.events().into_iter().cloned().collect();
    Run { h, a, rec, events }
}

fn run(steps: &[Step]) -> Run {
    run_cfg(ImapConfig::default(), steps)
}

impl Run {
    /// Extracted bytes per message number.
    fn extracted(&self) -> BTreeMap<u32, Vec<u8>> {
        let mut m: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for r in &self.h.out.records {
            if let Record::EmailData(c) = r {
                m.entry(c.n).or_default().extend_from_slice(&c.data);
            }
        }
        m
    }
    fn metas(&self) -> Vec<&EmailMeta> {
        self.h
            .out
            .records
            .iter()
            .filter_map(|r| match r {
                Record::EmailMeta(m) => Some(&**m),
                _ => None,
            })
            .collect()
    }
    fn weird(&self, w: ImapWeird) -> bool {
        self.h.weird_names().contains(&w.name())
    }
    /// The IMAP analyzer's own weirds, in order.
    fn imap_weirds(&self) -> Vec<&'static str> {
        let mut v = self.h.weird_names();
        v.retain(|n| n.starts_with("imap_"));
        v
    }
    fn commands(&self) -> Vec<String> {
        self.rec
            .commands
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }
}

const MSG1: &[u8] =
    b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: one\r\n\r\nHello Bob.\r\n";
const MSG2: &[u8] = b"From: carol@example.com\r\nSubject: two\r\nContent-Type: text/plain\r\n\r\na5 OK fake\r\n* 9 FETCH (BODY[] {3}\r\n";

fn lit(prefix: &str, body: &[u8], suffix: &str) -> Vec<u8> {
    let mut v = format!("{prefix}{{{}}}\r\n", body.len()).into_bytes();
    v.extend_from_slice(body);
    v.extend_from_slice(suffix.as_bytes());
    v
}

/// A Dovecot-style session: greeting, CAPABILITY, LOGIN, SELECT, two
/// pipelined UID FETCH BODY.PEEK[], LOGOUT.
fn dovecot_session() -> Vec<Step> {
    let mut fetch = lit(
        "* 1 FETCH (UID 41 RFC822.SIZE 80 FLAGS (\\Seen) BODY[] ",
        MSG1,
        ")\r\n",
    );
    fetch.extend_from_slice(b"a5 OK Fetch completed (0.001 + 0.000 secs).\r\n");
    fetch.extend(lit("* 2 FETCH (BODY[] ", MSG2, " UID 42 FLAGS ())\r\n"));
    fetch.extend_from_slice(b"a6 OK Fetch completed.\r\n");
    vec![
        s(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n"),
        c(b"a1 CAPABILITY\r\n"),
        s(b"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN COMPRESS=DEFLATE\r\na1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"),
        c(b"a2 LOGIN alice \"s3cr\\\"et\"\r\n"),
        s(b"a2 OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE] Logged in\r\n"),
        c(b"a3 SELECT INBOX\r\n"),
        s(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n* OK [UIDNEXT 43] Predicted next UID\r\na3 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"),
        c(b"a5 UID FETCH 41 (RFC822.SIZE FLAGS BODY.PEEK[])\r\na6 UID FETCH 42 (BODY.PEEK[] UID FLAGS)\r\n"),
        S(fetch),
        c(b"a7 LOGOUT\r\n"),
        s(b"* BYE Logging out\r\na7 OK Logout completed.\r\n"),
    ]
}

#[test]
fn dovecot_session_extracts_two_pipelined_messages_byte_exact() {
    let r = run(&dovecot_session());
    let x = r.extracted();
    assert_eq!(x.len(), 2);
    assert_eq!(x[&1], MSG1);
    assert_eq!(
        x[&2], MSG2,
        "a fake completion and a literal marker inside the literal are data"
    );
    let metas = r.metas();
    assert_eq!(metas.len(), 2);
    assert!(metas
        .iter()
        .all(|m| m.complete && !m.partial && m.missing_bytes == 0));
    assert_eq!(metas[0].size, MSG1.len() as u64);
    assert_eq!(metas[0].user.as_deref(), Some(&b"alice"[..]));
    assert_eq!(metas[0].headers.subject.as_deref(), Some("one"));
    let m = r.a.messages();
    assert_eq!(m[0].imap_uid, Some(41));
    assert_eq!(
        m[1].imap_uid,
        Some(42),
        "UID after the literal is still found"
    );
    assert_eq!(m[0].seq, Some(1));
    assert_eq!(m[0].mailbox.as_deref(), Some(&b"INBOX"[..]));
    assert_eq!(m[0].uidvalidity, Some(1_700_000_000));
    assert_eq!(m[0].flags, vec![b"\\Seen".to_vec()]);
    assert_eq!(m[0].section, "BODY[]");
    assert_eq!(r.rec.user.as_deref(), Some(&b"alice"[..]));
    assert_eq!(r.rec.auth_method.as_deref(), Some(&b"LOGIN"[..]));
    assert_eq!(r.rec.login, "success");
    assert_eq!(r.rec.mailboxes, vec![b"INBOX".to_vec()]);
    assert_eq!(r.rec.messages_fetched, 2);
    assert_eq!(r.rec.bytes_fetched, (MSG1.len() + MSG2.len()) as u64);
    assert_eq!(
        r.commands(),
        [
            "CAPABILITY:1",
            "LOGIN:1",
            "SELECT:1",
            "UID FETCH:2",
            "LOGOUT:1"
        ]
    );
    assert_eq!(
        r.rec.last_response.as_deref(),
        Some(&b"OK Logout completed."[..])
    );
    assert!(
        r.rec.capabilities.contains(&b"MOVE".to_vec()),
        "from LOGIN's OK code"
    );
    assert_eq!(r.a.pending_commands(), 0);
    assert!(r.imap_weirds().is_empty(), "{:?}", r.imap_weirds());
    assert_eq!(r.h.conn.service, vec!["imap"]);
    // files.log: one entity per message, source IMAP.
    let files = r.h.files();
    assert_eq!(files.len(), 2);
    assert!(files
        .iter()
        .all(|f| f.source == Some("IMAP") && f.is_orig == Some(false)));
    // Zeek's imap_capabilities: the untagged CAPABILITY line only.
    let caps: Vec<_> = r
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ImapCapabilities { capabilities } => Some(capabilities.len()),
            _ => None,
        })
        .collect();
    assert_eq!(caps, vec![10]);
    // The password is nowhere.
    let dbg = format!("{:?}{:?}", r.events, r.rec);
    assert!(!dbg.contains("s3cr"), "{dbg}");
}

#[test]
fn append_with_sync_and_nonsync_literals_and_multiappend() {
    let m3 = b"Subject: draft\r\n\r\nHello\r\n";
    let m4 = b"Subject: sent\r\n\r\nBye\r\n";
    let mut multi = format!(
        "a4 APPEND Sent (\\Seen) \"05-Jan-2026 10:00:00 +0000\" {{{}+}}\r\n",
        m3.len()
    )
    .into_bytes();
    multi.extend_from_slice(m3);
    multi.extend(format!(" (\\Draft) {{{}+}}\r\n", m4.len()).into_bytes());
    multi.extend_from_slice(m4);
    multi.extend_from_slice(b"\r\n");
    let steps = vec![
        s(b"* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS] ready\r\n"),
        c(format!("a2 APPEND Drafts (\\Draft) {{{}}}\r\n", MSG1.len()).as_bytes()),
        s(b"+ OK\r\n"),
        C([MSG1, b"\r\n"].concat()),
        s(b"a2 OK [APPENDUID 1700000001 44] Append completed.\r\n"),
        C(multi),
        s(b"a4 OK [APPENDUID 1700000001 45:46] Append completed.\r\n"),
        c(b"a6 APPEND Drafts {7+}\r\nHello\r\n\r\n"),
        s(b"a6 OK [APPENDUID 1700000001 47] done\r\n"),
    ];
    let r = run(&steps);
    let x = r.extracted();
    assert_eq!(x.len(), 4);
    assert_eq!(x[&1], MSG1);
    assert_eq!(x[&2], m3);
    assert_eq!(x[&3], m4);
    assert_eq!(x[&4], b"Hello\r\n");
    let m = r.a.messages();
    assert_eq!(
        m.iter().map(|m| m.imap_uid).collect::<Vec<_>>(),
        [Some(44), Some(45), Some(46), Some(47)]
    );
    assert!(m
        .iter()
        .all(|m| m.direction == Some(crate::Direction::Append)));
    assert_eq!(m[0].mailbox.as_deref(), Some(&b"Drafts"[..]));
    assert_eq!(m[0].flags, vec![b"\\Draft".to_vec()]);
    assert_eq!(m[1].mailbox.as_deref(), Some(&b"Sent"[..]));
    assert_eq!(m[1].flags, vec![b"\\Seen".to_vec()]);
    assert_eq!(
        m[1].internal_date.as_deref(),
        Some(&b"05-Jan-2026 10:00:00 +0000"[..])
    );
    assert_eq!(m[2].flags, vec![b"\\Draft".to_vec()]);
    assert_eq!(m[0].status.as_deref(), Some(&b"OK"[..]));
    assert_eq!(r.rec.messages_appended, 4);
    assert_eq!(r.rec.auth_method.as_deref(), Some(&b"PREAUTH"[..]));
    assert!(r.h.files().iter().all(|f| f.is_orig == Some(true)));
    assert!(r.metas().iter().all(|m| m.complete));
    assert!(r.imap_weirds().is_empty(), "{:?}", r.imap_weirds());
}

#[test]
fn a_refused_literal_is_not_payload() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"b1 APPEND INBOX {900000000}\r\n"),
        s(b"b1 NO [TOOBIG] Too large\r\n"),
        c(b"b2 LOGOUT\r\n"),
        s(b"* BYE\r\nb2 OK bye\r\n"),
    ]);
    assert_eq!(r.a.stats().literals_refused, 1);
    assert!(r.extracted().is_empty());
    assert_eq!(r.commands(), ["APPEND:1", "LOGOUT:1"]);
    assert_eq!(r.rec.no_responses, 1);
    assert_eq!(r.a.pending_commands(), 0);
}

#[test]
fn a_continuation_among_other_responses() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"d1 FETCH 1:2 (FLAGS)\r\nd2 APPEND Sent {7}\r\n"),
        s(b"* 1 FETCH (FLAGS (\\Seen))\r\n+ go ahead\r\n* 2 FETCH (FLAGS ())\r\n"),
        c(b"Hello\r\n\r\n"),
        s(b"d1 OK done\r\nd2 OK [APPENDUID 1700000001 45] done\r\n"),
    ]);
    assert_eq!(r.extracted()[&1], b"Hello\r\n");
    assert_eq!(r.a.messages()[0].imap_uid, Some(45));
    assert_eq!(r.a.pending_commands(), 0);
}

#[test]
fn two_literals_in_one_response_and_empty_ones() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a SELECT INBOX\r\n"),
        s(b"a OK [READ-ONLY] ok\r\n"),
        c(b"b FETCH 1 (BODY[HEADER] BODY[TEXT])\r\n"),
        s(b"* 1 FETCH (UID 41 BODY[HEADER] {15}\r\nSubject: hi\r\n\r\n BODY[TEXT] {7}\r\nHello\r\n)\r\n"),
        s(b"* 4 FETCH (BODY[TEXT] {0}\r\n)\r\nb OK done\r\n"),
    ]);
    let x = r.extracted();
    assert_eq!(x[&1], b"Subject: hi\r\n\r\n");
    assert_eq!(x[&2], b"Hello\r\n");
    assert!(!x.contains_key(&3), "an empty message has no bytes");
    let m = r.a.messages();
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[0].section.as_str(), m[0].partial, m[0].imap_uid),
        ("BODY[HEADER]", true, Some(41))
    );
    assert_eq!(
        (m[1].section.as_str(), m[1].partial, m[1].imap_uid),
        ("BODY[TEXT]", true, Some(41))
    );
    assert!(m.iter().all(|m| m.complete));
    assert_eq!(r.rec.partial_fetched, 3);
    assert_eq!(r.rec.messages_fetched, 0);
    assert!(r.metas().iter().all(|m| m.partial));
}

#[test]
fn partial_and_part_fetches() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a FETCH 1 (BODY.PEEK[]<0.10> BODY[1] BINARY[] RFC822)\r\n"),
        s(b"* 1 FETCH (BODY[]<0> {10}\r\nSubject: h BODY[1] {2}\r\nhi BINARY[] ~{3}\r\na\0b RFC822 {5}\r\nx\r\n\r\n)\r\na OK done\r\n"),
    ]);
    let x = r.extracted();
    assert_eq!(x.len(), 3, "BODY[1] is not extracted");
    assert_eq!(x[&1], b"Subject: h");
    assert_eq!(x[&2], b"a\0b");
    assert_eq!(x[&3], b"x\r\n\r\n");
    let m = r.a.messages();
    assert_eq!(m[0].section, "BODY[]<0>");
    assert!(m[0].partial && !m[1].partial && !m[2].partial);
    assert_eq!(r.rec.messages_fetched, 2);
}

/// A message fetched in pieces, the way Thunderbird fetches large ones
/// (`BODY.PEEK[]<0.n>`, `<n.n>`, ... until one comes back short): one
/// message, the pieces joined, `BODY[]`, not partial.
fn chunked_session(body: &[u8], n: usize, size: bool) -> Vec<Step> {
    let mut v = vec![
        s(b"* OK ready\r\n"),
        c(b"a1 SELECT INBOX\r\n"),
        s(b"* 3 EXISTS\r\na1 OK [READ-WRITE] done\r\n"),
    ];
    let mut o = 0;
    let mut k = 2;
    loop {
        let piece = &body[o.min(body.len())..(o + n).min(body.len())];
        v.push(c(format!(
            "a{k} UID FETCH 7 (UID BODY.PEEK[]<{o}.{n}>)\r\n"
        )
        .as_bytes()));
        let pre = if size && o == 0 {
            format!("* 2 FETCH (UID 7 RFC822.SIZE {} BODY[]<{o}> ", body.len())
        } else {
            format!("* 2 FETCH (UID 7 BODY[]<{o}> ")
        };
        let mut r = lit(&pre, piece, ")\r\n");
        r.extend_from_slice(format!("a{k} OK Fetch completed.\r\n").as_bytes());
        v.push(S(r));
        o += n;
        k += 1;
        if piece.len() < n || (size && o >= body.len()) {
            break;
        }
    }
    v
}

#[test]
fn a_run_of_partial_fetches_is_joined_into_the_whole_message() {
    let mut body = MSG1.to_vec();
    for i in 0..30 {
        body.extend_from_slice(format!("line {i} of a longer body\r\n").as_bytes());
    }
    // short last piece; an exact multiple ending in an empty piece; an
    // exact multiple that RFC822.SIZE ends; one short piece alone
    for (n, size) in [
        (100, false),
        (body.len() / 3, false),
        (body.len() / 3, true),
        (4096, false),
    ] {
        let r = run(&chunked_session(&body, n, size));
        let x = r.extracted();
        assert_eq!(x.len(), 1, "n={n}: one message");
        assert_eq!(x[&1], body, "n={n}: the pieces joined");
        let m = r.metas();
        assert_eq!(m.len(), 1);
        assert!(m[0].complete && !m[0].partial, "n={n}: {:?}", m[0]);
        let meta = &r.a.messages()[0];
        assert_eq!(meta.section, "BODY[]");
        assert_eq!((meta.imap_uid, meta.seq), (Some(7), Some(2)));
        assert_eq!(m[0].headers.subject.as_deref(), Some("one"));
        assert_eq!(
            (r.rec.messages_fetched, r.rec.bytes_fetched),
            (1, body.len() as u64)
        );
        assert_eq!(r.rec.partial_fetched, 0);
    }
}

#[test]
fn a_run_cut_short_or_broken_stays_partial() {
    let body: Vec<u8> = MSG1.iter().copied().cycle().take(500).collect();
    // the first piece, full, then something else: the piece alone, partial
    let mut steps = chunked_session(&body, 100, false);
    steps.truncate(5);
    steps.push(c(b"a9 UID FETCH 8 BODY.PEEK[]\r\n"));
    steps.push(S(lit(
        "* 3 FETCH (UID 8 BODY[] ",
        MSG1,
        ")\r\na9 OK done\r\n",
    )));
    let r = run(&steps);
    let x = r.extracted();
    assert_eq!(x[&1], &body[..100]);
    assert_eq!(x[&2], MSG1);
    let m = r.a.messages();
    assert_eq!((m[0].section.as_str(), m[0].partial), ("BODY[]<0>", true));
    assert_eq!((m[1].section.as_str(), m[1].partial), ("BODY[]", false));
    // a next piece that skips bytes or names another message is its own
    let mut steps = chunked_session(&body, 100, false);
    steps.truncate(5);
    steps.push(c(b"a8 UID FETCH 7 (UID BODY.PEEK[]<150.100>)\r\n"));
    steps.push(S(lit(
        "* 2 FETCH (UID 7 BODY[]<150> ",
        &body[150..250],
        ")\r\na8 OK done\r\n",
    )));
    steps.push(c(b"a9 UID FETCH 9 (UID BODY.PEEK[]<250.100>)\r\n"));
    steps.push(S(lit(
        "* 4 FETCH (UID 9 BODY[]<250> ",
        &body[250..350],
        ")\r\na9 OK done\r\n",
    )));
    let r = run(&steps);
    let x = r.extracted();
    assert_eq!(x.len(), 3);
    assert_eq!(x[&1], &body[..100]);
    assert_eq!(x[&2], &body[150..250]);
    let sections: Vec<_> =
        r.a.messages()
            .iter()
            .map(|m| (m.section.clone(), m.partial))
            .collect();
    assert_eq!(
        sections,
        [
            ("BODY[]<0>".to_string(), true),
            ("BODY[]<150>".into(), true),
            ("BODY[]<250>".into(), true)
        ]
    );
    // the connection ends while a run waits: what came is written
    let mut steps = chunked_session(&body, 100, false);
    steps.truncate(7);
    let r = run(&steps);
    assert_eq!(r.extracted()[&1], &body[..200]);
    assert!(r.a.messages()[0].partial);
    assert_eq!(r.rec.partial_fetched, 1);
}

#[test]
fn idle_pushes_and_done() {
    let r = run(&[
        s(b"* PREAUTH ready\r\n"),
        c(b"a6 IDLE\r\n"),
        s(b"+ idling\r\n* 9 EXISTS\r\n* 4 FETCH (FLAGS (\\Seen))\r\n* 2 EXPUNGE\r\n"),
        c(b"DONE\r\n"),
        s(b"a6 OK IDLE terminated\r\n"),
        c(b"a7 NOOP\r\n"),
        s(b"a7 OK\r\n"),
    ]);
    assert!(r.rec.idle);
    assert_eq!(r.commands(), ["IDLE:1", "NOOP:1"], "DONE is no command");
    assert_eq!(r.a.pending_commands(), 0);
    assert!(r.imap_weirds().is_empty(), "{:?}", r.imap_weirds());
}

#[test]
fn authenticate_plain_and_xoauth2_users_without_secrets() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a2 AUTHENTICATE PLAIN\r\n"),
        s(b"+ \r\n"),
        c(b"AGFsaWNlAHNlY3JldA==\r\n"),
        s(b"a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        c(b"a3 AUTHENTICATE XOAUTH2 dXNlcj1ib2JAZXhhbXBsZS5jb20BYXV0aD1CZWFyZXIgdG9rZW4BAQ==\r\n"),
        s(b"a3 OK Logged in\r\n"),
        c(b"a4 AUTHENTICATE CRAM-MD5\r\n"),
        s(b"+ PDEyMz4=\r\n"),
        c(b"*\r\n"),
        s(b"a4 BAD cancelled\r\n"),
    ]);
    assert_eq!(r.rec.user.as_deref(), Some(&b"bob@example.com"[..]));
    assert_eq!(r.rec.login, "success");
    assert_eq!(r.rec.login_failures, 2);
    assert_eq!(r.rec.auth_other_mechanisms, 1);
    assert_eq!(r.commands(), ["AUTHENTICATE:3"]);
    let dbg = format!("{:?}{:?}", r.events, r.rec);
    assert!(!dbg.contains("AGFsaWNl") && !dbg.contains("secret") && !dbg.contains("token"));
}

#[test]
fn login_with_literal_password_is_never_kept() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a1 LOGIN {5}\r\n"),
        s(b"+ Ready\r\n"),
        c(b"alice {6}\r\n"),
        s(b"+ Ready\r\n"),
        c(b"s3cret\r\n"),
        s(b"a1 OK done\r\n"),
    ]);
    assert_eq!(r.rec.user.as_deref(), Some(&b"alice"[..]));
    assert_eq!(r.rec.login, "success");
    let dbg = format!("{:?}{:?}", r.events, r.rec);
    assert!(!dbg.contains("s3cret"), "{dbg}");
}

#[test]
fn starttls_makes_the_rest_opaque() {
    let hello = b"\x16\x03\x01\x01\x39\x01\x00\x01\x35\x03\x03";
    let mut a = ImapAnalyzer::new(Arc::new(ImapConfig::default()));
    let mut h = Harness::new("192.168.0.4:40001", "10.0.0.2:143");
    let mut cx = h.cx();
    a.deliver(
        &mut cx,
        false,
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
    );
    a.deliver(&mut cx, true, b". CAPABILITY\r\n");
    a.deliver(
        &mut cx,
        false,
        b"* CAPABILITY IMAP4rev1 STARTTLS\r\n. OK done\r\n",
    );
    a.deliver(&mut cx, true, b". STARTTLS\r\n");
    assert!(!a.bypass_ready());
    let srv = b". OK Begin TLS negotiation now\r\n\x16\x03\x03";
    a.deliver(&mut cx, false, srv);
    assert!(a.tls() && a.bypass_ready());
    assert_eq!(a.take_tls_handoff(), Some(srv.len() - 3));
    a.deliver(&mut cx, true, hello);
    a.deliver(&mut cx, true, b"a9 LOGIN x y\r\n");
    a.done(&mut cx);
    let rec = h.imap()[0].clone();
    assert!(rec.starttls);
    assert_eq!(
        rec.commands,
        vec![b"CAPABILITY:1".to_vec(), b"STARTTLS:1".to_vec()]
    );
    assert!(h.events().contains(&&Event::ImapStarttls));
}

#[test]
fn starttls_plaintext_injection_is_flagged_and_not_parsed() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a STARTTLS\r\nb LOGIN evil pw\r\n"),
        s(b"a OK go\r\n"),
    ]);
    assert!(r.weird(ImapWeird::StarttlsInjection));
    assert_eq!(r.commands(), ["STARTTLS:1"]);
    // Refused: the held command is parsed after all.
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a STARTTLS\r\nb NOOP\r\n"),
        s(b"a BAD no\r\nb OK\r\n"),
    ]);
    assert!(r.weird(ImapWeird::ServerRefusedStarttls));
    assert_eq!(r.commands(), ["STARTTLS:1", "NOOP:1"]);
    assert_eq!(r.a.pending_commands(), 0);
}

/// Raw DEFLATE with a sync flush after each burst, as Dovecot sends it.
struct Deflater(flate2::write::DeflateEncoder<Vec<u8>>);
impl Deflater {
    fn new() -> Self {
        Deflater(flate2::write::DeflateEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ))
    }
    fn burst(&mut self, b: &[u8]) -> Vec<u8> {
        self.0.write_all(b).unwrap();
        self.0.flush().unwrap();
        std::mem::take(self.0.get_mut())
    }
}

fn compressed_session() -> (Vec<Step>, Vec<u8>) {
    let big: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("line {i} of a long message\r\n").into_bytes())
        .collect();
    let mut body = b"Subject: compressed\r\n\r\n".to_vec();
    body.extend_from_slice(&big);
    let mut cz = Deflater::new();
    let mut sz = Deflater::new();
    let mut srv_ok = b"e1 OK Begin compression.\r\n".to_vec();
    srv_ok.extend(sz.burst(b"* CAPABILITY IMAP4rev1 IDLE\r\n"));
    let fetch = sz.burst(&lit(
        "* 1 FETCH (UID 7 BODY[] ",
        &body,
        ")\r\nf1 OK done\r\n",
    ));
    let mut steps = vec![
        s(b"* PREAUTH ready\r\n"),
        c(b"a SELECT INBOX\r\n"),
        s(b"a OK [READ-WRITE] ok\r\n"),
        c(b"e1 COMPRESS DEFLATE\r\n"),
        S(srv_ok),
        C(cz.burst(b"f1 UID FETCH 7 BODY.PEEK[]\r\n")),
    ];
    // The compressed response in TCP-sized pieces.
    for ch in fetch.chunks(1448) {
        steps.push(S(ch.to_vec()));
    }
    steps.push(C(cz.burst(b"f2 LOGOUT\r\n")));
    steps.push(S(sz.burst(b"* BYE\r\nf2 OK bye\r\n")));
    (steps, body)
}

#[test]
fn compress_deflate_is_inflated_in_both_directions() {
    let (steps, body) = compressed_session();
    let r = run(&steps);
    assert!(r.rec.compress && r.a.compressed());
    assert_eq!(r.extracted()[&1], body);
    assert_eq!(r.a.messages()[0].imap_uid, Some(7));
    assert_eq!(
        r.commands(),
        ["SELECT:1", "COMPRESS:1", "UID FETCH:1", "LOGOUT:1"]
    );
    assert_eq!(r.a.pending_commands(), 0);
    assert!(r.a.stats().inflated_bytes > r.a.stats().compressed_bytes);
    assert!(r.imap_weirds().is_empty(), "{:?}", r.imap_weirds());
}

#[test]
fn compress_counts_against_the_shard_budget() {
    let (steps, body) = compressed_session();
    // room for it: charged while the session runs, given back at its end
    let budget = BufferBudget::new(1 << 20);
    let r = run_budget(ImapConfig::default(), budget.clone(), &steps);
    assert_eq!(r.extracted()[&1], body);
    assert!(budget.peak() >= 2 * 44 * 1024, "peak {}", budget.peak());
    assert_eq!(budget.used(), 0);
    // no room: the session is not analysed past COMPRESS, and says why
    let budget = BufferBudget::new(64 * 1024);
    let r = run_budget(ImapConfig::default(), budget.clone(), &steps);
    assert!(r.extracted().is_empty());
    assert!(r.weird(ImapWeird::CompressOverBudget));
    assert_eq!(r.a.stats().compress_over_budget, 1);
    assert_eq!(budget.refused(), 1);
    // what came before is kept, nothing after is read
    assert_eq!(r.commands(), ["SELECT:1", "COMPRESS:1"]);
}

#[test]
fn a_gap_in_a_compressed_direction_ends_it() {
    let (mut steps, _) = compressed_session();
    steps.insert(8, Gap(false, 100));
    let r = run(&steps);
    assert!(r.weird(ImapWeird::GapInCompressedStream));
    let m = r.metas();
    assert_eq!(m.len(), 1);
    assert!(!m[0].complete);
}

#[test]
fn a_gap_inside_a_literal_keeps_framing() {
    let body = vec![b'x'; 5000];
    let mut resp = format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
    resp.extend_from_slice(&body[..1000]);
    let mut tail = body[3000..].to_vec();
    tail.extend_from_slice(b" UID 5)\r\na OK done\r\n");
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a FETCH 1 BODY[]\r\n"),
        S(resp),
        Gap(false, 2000),
        S(tail),
        c(b"b NOOP\r\n"),
        s(b"b OK\r\n"),
    ]);
    let m = r.metas();
    assert_eq!(m.len(), 1);
    assert!(!m[0].complete);
    assert_eq!(m[0].missing_bytes, 2000);
    assert_eq!(r.a.messages()[0].imap_uid, Some(5));
    assert_eq!(r.a.pending_commands(), 0);
    assert!(!r.weird(ImapWeird::GapLostSync));
}

#[test]
fn a_gap_in_line_data_resynchronises() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a NOOP\r\n"),
        s(b"* 3 EXI"),
        Gap(false, 10),
        s(b"garbage\r\n* 4 EXISTS\r\na OK\r\n"),
    ]);
    assert!(r.weird(ImapWeird::GapLostSync));
    assert!(r.weird(ImapWeird::Resynchronized));
    assert_eq!(r.a.pending_commands(), 0);
}

#[test]
fn absurd_literal_sizes_desynchronise_without_waiting_forever() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a FETCH 1 BODY[]\r\n"),
        s(b"* 1 FETCH (BODY[] {18446744073709551615}\r\nabc\r\n)\r\na OK done\r\n"),
        c(b"b NOOP\r\n"),
        s(b"b OK\r\n"),
    ]);
    assert!(r.weird(ImapWeird::LiteralTooLarge));
    assert!(r.weird(ImapWeird::Resynchronized));
    assert!(r.extracted().is_empty());
    assert_eq!(r.a.pending_commands(), 0);
    let r = run_cfg(
        ImapConfig {
            max_literal_size: 1000,
            ..ImapConfig::default()
        },
        &[s(b"* OK ready\r\n"), s(b"* 1 FETCH (BODY[] {1001}\r\n")],
    );
    assert!(r.weird(ImapWeird::LiteralOverLimit));
}

#[test]
fn endless_lines_deep_nesting_and_untagged_floods_are_bounded() {
    let cfg = ImapConfig {
        max_line_length: 16384,
        max_untagged_responses: 100,
        max_nesting_depth: 16,
        ..ImapConfig::default()
    };
    let mut flood = Vec::new();
    for i in 0..1000 {
        flood.extend(format!("* {i} EXISTS\r\n").into_bytes());
    }
    let deep = [
        b"* 1 FETCH ".as_slice(),
        &[b'('; 5000],
        b" {3}\r\nabc",
        &[b')'; 5000],
        b"\r\n",
    ]
    .concat();
    let r = run_cfg(
        cfg,
        &[
            s(b"* OK ready\r\n"),
            c(b"a NOOP\r\n"),
            S(vec![b'x'; 100_000]),
            s(b"\r\n"),
            S(flood),
            S(deep),
            s(b"a OK\r\n"),
        ],
    );
    assert!(r.weird(ImapWeird::LineTooLong));
    assert!(r.weird(ImapWeird::ExcessiveUntaggedResponses));
    assert!(r.weird(ImapWeird::NestingTooDeep));
    assert_eq!(r.a.pending_commands(), 0, "framing survived all three");
    assert_eq!(r.h.out.buffers.used(), 0);
}

#[test]
fn pending_commands_are_bounded() {
    let mut cmds = Vec::new();
    for i in 0..100 {
        cmds.extend(format!("t{i} NOOP\r\n").into_bytes());
    }
    let r = run_cfg(
        ImapConfig {
            max_pending_commands: 10,
            ..ImapConfig::default()
        },
        &[s(b"* OK ready\r\n"), C(cmds), s(b"t99 OK\r\nt0 OK\r\n")],
    );
    assert_eq!(r.a.pending_commands(), 9);
    assert!(r.weird(ImapWeird::TooManyPendingCommands));
    assert!(r.weird(ImapWeird::UnmatchedTaggedResponse));
}

#[test]
fn reused_tags_complete_oldest_first_and_out_of_order() {
    let r = run(&[
        s(b"* OK ready\r\n"),
        c(b"a7 UID FETCH 41 (FLAGS)\r\na8 UID FETCH 42 (FLAGS)\r\na9 NOOP\r\n. CAPABILITY\r\n. NOOP\r\n"),
        s(b"* 2 FETCH (UID 42 FLAGS ())\r\na8 OK done\r\n* 1 FETCH (UID 41 FLAGS (\\Seen))\r\na7 OK done\r\na9 OK done\r\n. OK caps\r\n. OK noop\r\n"),
    ]);
    assert_eq!(r.a.pending_commands(), 0);
    assert!(r.imap_weirds().is_empty(), "{:?}", r.imap_weirds());
    assert!(r.extracted().is_empty());
}

#[test]
fn literal_looking_free_text_is_flagged_not_awaited() {
    let r = run(&[
        s(b"* OK [ALERT] quota almost used {5}\r\n"),
        c(b"a NOOP\r\n"),
        s(b"a OK\r\n"),
    ]);
    assert!(r.weird(ImapWeird::LiteralInText));
    assert_eq!(r.a.pending_commands(), 0);
}

#[test]
fn select_failure_and_close_clear_the_mailbox() {
    let r = run(&[
        s(b"* PREAUTH ok\r\n"),
        c(b"a SELECT \"Entw&APw-rfe\"\r\n"),
        s(b"a OK [READ-WRITE] ok\r\n"),
        c(b"b EXAMINE {5}\r\n"),
        s(b"+ go\r\n"),
        c(b"Trash\r\n"),
        s(b"b OK [READ-ONLY] ok\r\n"),
        c(b"c SELECT Nope\r\n"),
        s(b"c NO no such mailbox\r\n"),
    ]);
    assert_eq!(
        r.rec.mailboxes,
        vec![b"Entw&APw-rfe".to_vec(), b"Trash".to_vec()]
    );
    assert_eq!(r.a.mailbox(), None);
    assert_eq!(r.rec.no_responses, 1);
}

#[test]
fn dpd_halves() {
    assert!(crate::dpd_resp_matches(
        b"* OK [CAPABILITY IMAP4rev1] hi\r\n"
    ));
    assert!(crate::dpd_resp_matches(b"* preauth hi\r\n"));
    assert!(!crate::dpd_resp_matches(b"+OK POP3\r\n"));
    assert!(crate::dpd_orig_matches(b"a1 CAPABILITY\r\n"));
    assert!(crate::dpd_orig_matches(b"x\r\nA0001 uid fetch 1 FLAGS\r\n"));
    assert!(!crate::dpd_orig_matches(b"USER bob\r\n"));
    assert!(!crate::dpd_orig_matches(b"EHLO x\r\n"));
}

/// Everything a run produced that must not depend on how the bytes were
/// cut into deliveries.
fn outcome(r: &Run) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        r.extracted(),
        r.a.messages()
            .iter()
            .map(|m| (m.n, m.seq, m.imap_uid, &m.section, &m.flags, m.size, m.complete, &m.sha256))
            .collect::<Vec<_>>(),
        ImapRecord {
            ts: Timestamp(0),
            ..r.rec.clone()
        },
        r.imap_weirds(),
        r.h.files()
            .iter()
            .map(|f| (&f.fuid, f.seen_bytes))
            .collect::<Vec<_>>(),
    )
}

/// Re-cuts a session: each direction's bytes delivered in pieces at the
/// given cut points, the directions kept in their order.
fn recut(steps: &[Step], cuts: &[usize]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut k = 0usize;
    for st in steps {
        let (d, is_c) = match st {
            C(d) => (d, true),
            S(d) => (d, false),
            g => {
                out.push(g.clone());
                continue;
            }
        };
        let mut pos = 0;
        while pos < d.len() {
            let n = cuts[k % cuts.len()].clamp(1, d.len() - pos);
            k += 1;
            let piece = d[pos..pos + n].to_vec();
            out.push(if is_c { C(piece) } else { S(piece) });
            pos += n;
        }
    }
    out
}

#[test]
fn every_single_byte_split_gives_the_same_result() {
    let session = dovecot_session();
    let whole = outcome(&run(&session));
    assert_eq!(outcome(&run(&recut(&session, &[1]))), whole);
    // A split at every position of each step, one at a time.
    for (i, st) in session.iter().enumerate() {
        let d = match st {
            C(d) | S(d) => d,
            _ => continue,
        };
        for at in 1..d.len() {
            let mut v = session.clone();
            let (a, b) = (d[..at].to_vec(), d[at..].to_vec());
            let (x, y) = match st {
                C(_) => (C(a), C(b)),
                _ => (S(a), S(b)),
            };
            v.splice(i..=i, [x, y]);
            assert_eq!(outcome(&run(&v)), whole, "step {i} split at {at}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_result(cuts in proptest::collection::vec(1usize..300, 1..40)) {
        let session = dovecot_session();
        let whole = outcome(&run(&session));
        prop_assert_eq!(outcome(&run(&recut(&session, &cuts))), whole);
    }

    #[test]
    fn any_split_of_a_compressed_session_gives_the_same_result(cuts in proptest::collection::vec(1usize..5000, 1..20)) {
        let (session, body) = compressed_session();
        let r = run(&recut(&session, &cuts));
        prop_assert_eq!(&r.extracted()[&1], &body);
        prop_assert!(r.imap_weirds().is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..40)) {
        let steps: Vec<Step> = chunks.into_iter().map(|(o, d)| if o { C(d) } else { S(d) }).collect();
        let _ = run(&steps);
    }
}

/// The committed fuzz seeds (fuzz/seeds/imap_analyzer), replayed as the
/// fuzz target does: no panic, the buffer budget comes back whole.
#[test]
fn fuzz_seeds_replay_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/imap_analyzer");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("seed directory") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let Some((&mode, mut rest)) = data.split_first() else {
            continue;
        };
        let mut h = Harness::new("10.0.0.1:40000", "10.0.0.2:143");
        h.out.extract_enabled = true;
        h.out.buffers = mailtap_core::BufferBudget::new(1 << 20);
        let mut a = ImapAnalyzer::new(Arc::new(ImapConfig::default()));
        let mut cx = h.cx();
        if mode & 1 == 1 {
            a.start_midstream();
        }
        while let Some((&ctl, tail)) = rest.split_first() {
            let is_orig = ctl & 0x80 == 0;
            let k = usize::from(ctl & 0x3f).min(tail.len());
            if ctl & 0x40 != 0 {
                a.gap(&mut cx, is_orig, u64::from(ctl & 0x3f) * 4 + 1);
                rest = tail;
                continue;
            }
            a.deliver(&mut cx, is_orig, &tail[..k]);
            rest = &tail[k..];
        }
        a.done(&mut cx);
        let rec = h.imap().first().map(|r| (*r).clone()).unwrap_or_default();
        if mode & 1 == 0 {
            assert!(rec.messages_fetched + rec.messages_appended >= 1, "{rec:?}");
        }
        drop(a);
        assert_eq!(h.out.buffers.used(), 0);
        n += 1;
    }
    assert!(n >= 4);
}
