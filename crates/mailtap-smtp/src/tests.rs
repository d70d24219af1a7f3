//! Session-level tests: drive `SmtpAnalyzer` through `TcpAnalyzer` and
//! check the smtp.log records, weirds and events it emits.

use crate::testutil::{harness, Harness};
use crate::{dpd_orig_matches, dpd_resp_matches, SmtpAnalyzer, SmtpConfig, State};
use mailtap_core::{Event, Record, TcpAnalyzer};
use proptest::prelude::*;
use std::sync::Arc;

/// One step of a session.
#[derive(Clone, Debug)]
enum Step {
    C(&'static [u8]),
    S(&'static [u8]),
    Gap(bool, u64),
}
use Step::{Gap, C, S};

fn run_cfg(cfg: SmtpConfig, steps: &[Step]) -> (Harness, SmtpAnalyzer) {
    let mut h = harness();
    let mut a = SmtpAnalyzer::new(Arc::new(cfg));
    for (i, s) in steps.iter().enumerate() {
        h.ts = mailtap_core::Timestamp(1_000_000_000 + i as i64 * 1000);
        let mut cx = h.cx();
        if a.disabled() {
            continue;
        }
        match s {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, *o, *n),
        }
    }
    let mut cx = h.cx();
    a.done(&mut cx);
    (h, a)
}

fn run(steps: &[Step]) -> (Harness, SmtpAnalyzer) {
    run_cfg(SmtpConfig::default(), steps)
}

fn s(b: &Option<Vec<u8>>) -> Option<&str> {
    b.as_deref().map(|x| std::str::from_utf8(x).unwrap())
}

fn set(v: &Option<Vec<Vec<u8>>>) -> Vec<String> {
    let mut v: Vec<String> = v
        .iter()
        .flatten()
        .map(|x| String::from_utf8(x.clone()).unwrap())
        .collect();
    v.sort();
    v
}

fn requests(h: &Harness) -> Vec<(String, String)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::SmtpRequest { command, arg, .. } => Some((
                String::from_utf8_lossy(command).into_owned(),
                String::from_utf8_lossy(arg).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn replies(h: &Harness) -> Vec<(u32, String, String, bool)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::SmtpReply {
                code,
                cmd,
                msg,
                cont_resp,
                ..
            } => Some((
                *code,
                String::from_utf8_lossy(cmd).into_owned(),
                String::from_utf8_lossy(msg).into_owned(),
                *cont_resp,
            )),
            _ => None,
        })
        .collect()
}

fn unexpected(h: &Harness) -> Vec<(String, String)> {
    h.events()
        .iter()
        .filter_map(|e| match e {
            Event::SmtpUnexpected { msg, detail, .. } => Some((
                String::from_utf8_lossy(msg).into_owned(),
                String::from_utf8_lossy(detail).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn weird(h: &Harness, name: &str) -> Option<(Option<String>, Option<&'static str>)> {
    h.weirds().into_iter().find(|w| w.name == name).map(|w| {
        (
            w.addl
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            w.source,
        )
    })
}

const GREETING: Step = S(b"220 mx.example ESMTP\r\n");

fn basic_mail() -> Vec<Step> {
    vec![
        GREETING,
        C(b"EHLO client.example\r\n"),
        S(b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        C(b"MAIL FROM:<alice@example.org>\r\n"),
        S(b"250 OK\r\n"),
        C(b"RCPT TO:<bob@example.net>\r\n"),
        S(b"250 Accepted\r\n"),
        C(b"DATA\r\n"),
        S(b"354 Go ahead\r\n"),
        C(b"From: Alice <alice@example.org>\r\nTo: \"Bob, B.\" <bob@example.net>,\r\n\tcarol@example.com, group-without-at\r\nSubject: hi\r\n\r\n"),
        C(b"..leading dot\r\nbody\r\n.\r\n"),
        S(b"250 OK id=1\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ]
}

#[test]
fn basic_transaction_record() {
    let (h, a) = run(&basic_mail());
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    let r = recs[0];
    assert_eq!(r.trans_depth, 1);
    assert_eq!(s(&r.helo), Some("client.example"));
    assert_eq!(s(&r.mailfrom), Some("alice@example.org"));
    assert_eq!(set(&r.rcptto), vec!["bob@example.net"]);
    assert_eq!(s(&r.from), Some("Alice <alice@example.org>"));
    assert_eq!(
        set(&r.to),
        vec!["\"Bob, B.\" <bob@example.net>", "carol@example.com"]
    );
    assert_eq!(s(&r.subject), Some("hi"));
    assert_eq!(s(&r.last_reply), Some("250 OK id=1"));
    assert_eq!(r.path.as_ref().unwrap(), &vec![h.id.resp_h, h.id.orig_h]);
    assert!(!r.tls);
    assert_eq!(
        r.ts,
        mailtap_core::Timestamp(1_000_000_000),
        "ts is the greeting time"
    );
    assert_eq!(h.conn.service, vec!["smtp"]);
    assert_eq!(a.state(), State::Quit);
    // Dot-unstuffing and the end-of-data request.
    let data: Vec<Vec<u8>> = h
        .events()
        .iter()
        .filter_map(|e| {
            if let Event::SmtpData { data, .. } = e {
                Some(data.clone())
            } else {
                None
            }
        })
        .collect();
    assert!(data.contains(&b".leading dot".to_vec()));
    assert!(requests(&h).contains(&(".".into(), ".".into())));
    assert_eq!(
        replies(&h)[0],
        (220, ">".into(), "mx.example ESMTP".into(), false)
    );
    assert!(replies(&h).contains(&(250, ".".into(), "OK id=1".into(), false)));
    assert!(h.weirds().is_empty());
}

#[test]
fn end_of_data_detected_across_deliveries() {
    let mut steps = basic_mail();
    steps[10] = C(b"body\r\n.");
    steps.insert(11, C(b"\r"));
    steps.insert(12, C(b"\n"));
    let (h, _) = run(&steps);
    assert!(requests(&h).contains(&(".".into(), ".".into())));
    assert_eq!(h.smtp().len(), 1);
    assert_eq!(s(&h.smtp()[0].last_reply), Some("250 OK id=1"));
}

#[test]
fn pipelined_commands_pair_with_replies_in_order() {
    let (h, _) = run(&[
        GREETING,
        C(b"EHLO c\r\n"),
        S(b"250 ok\r\n"),
        C(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"),
        S(b"250 sender ok\r\n250 rcpt ok\r\n354 go\r\n"),
    ]);
    let r = replies(&h);
    assert_eq!(r[2].1, "MAIL");
    assert_eq!(r[3].1, "RCPT");
    assert_eq!(r[4], (354, "DATA".into(), "go".into(), false));
}

#[test]
fn multiline_reply_lines_share_the_command() {
    let (h, _) = run(&[
        S(b"220-one\r\n220-two\r\n220 three\r\n"),
        C(b"EHLO x\r\n"),
        S(b"250-a\r\n250 b\r\n"),
    ]);
    let r = replies(&h);
    assert_eq!(r.len(), 5);
    assert!(r[..3].iter().all(|x| x.1 == ">"));
    assert_eq!((r[0].3, r[1].3, r[2].3), (true, true, false));
    assert_eq!(r[3], (250, "EHLO".into(), "a".into(), true));
    assert_eq!(r[4], (250, "EHLO".into(), "b".into(), false));
}

#[test]
fn unknown_command_is_not_queued_and_shifts_pairing() {
    let (h, _) = run(&[
        GREETING,
        C(b"XYZZY foo\r\n"),
        S(b"500 what\r\n"),
        C(b"NOOP\r\n"),
        S(b"250 ok\r\n"),
    ]);
    assert_eq!(
        unexpected(&h)[0],
        ("unknown command".into(), "XYZZY".into())
    );
    let r = replies(&h);
    assert_eq!(
        r[1].1, "(UNKNOWN)",
        "reply to an unknown command has no command"
    );
    assert_eq!(r[2].1, "NOOP");
}

#[test]
fn auth_answers_are_double_star_requests() {
    let (h, _) = run(&[
        GREETING,
        C(b"EHLO x\r\n"),
        S(b"250 ok\r\n"),
        C(b"AUTH LOGIN\r\n"),
        S(b"334 VXNlcm5hbWU6\r\n"),
        C(b"Z3VycGFydGFw\r\n"),
        S(b"334 UGFzc3dvcmQ6\r\n"),
        C(b"cHVuamFiQDEyMw==\r\n"),
        S(b"235 Authentication succeeded\r\n"),
        C(b"MAIL FROM:<a@b.c>\r\n"),
    ]);
    let rq = requests(&h);
    assert_eq!(rq[2], ("**".into(), "Z3VycGFydGFw".into()));
    assert_eq!(rq[3], ("**".into(), "cHVuamFiQDEyMw==".into()));
    let r = replies(&h);
    assert_eq!(r[3].1, "AUTH_ANSWER");
    // After AUTH the state is INITIATED, so MAIL is "unexpected".
    assert!(unexpected(&h).contains(&(
        "unexpected command".into(),
        "MAIL reply = 0 state = 1".into()
    )));
}

#[test]
fn one_side_two_records_both_depth_one() {
    let (h, _) = run(&[
        C(b"EHLO enzo\r\nMAIL FROM:<robin@icir.org>\r\nRCPT TO:<robin@icir.org>\r\nDATA\r\nSubject: Hello1!\r\n\r\nx\r\n.\r\n"),
        C(b"MAIL FROM:<robin@icir.org>\r\nRCPT TO:<rsommer@lbl.gov>\r\nDATA\r\nSubject: Hello2!\r\n\r\ny\r\n.\r\nQUIT\r\n"),
    ]);
    let recs = h.smtp();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].trans_depth, recs[1].trans_depth), (1, 1));
    assert_eq!(s(&recs[0].subject), Some("Hello1!"));
    assert_eq!(s(&recs[1].subject), Some("Hello2!"));
    assert_eq!(set(&recs[1].rcptto), vec!["rsommer@lbl.gov"]);
    assert!(recs.iter().all(|r| r.last_reply.is_none()));
}

/// The client/server exchange of Zeek's smtp-mail-transactions-invalid trace.
fn invalid_transactions() -> Vec<Step> {
    vec![
        GREETING,
        C(b"EHLO Bob-PC\r\n"),
        S(b"250 ok\r\n"),
        C(b"MAIL FROM:<bob@example.org>\r\n"),
        S(b"250 OK\r\n"),
        C(b"RCPT TO:<alice@example.org>\r\n"),
        S(b"250 Accepted\r\n"),
        C(b"DATA\r\n"),
        S(b"354 Enter message\r\n"),
        C(b"Subject: one\r\n\r\nhi\r\n.\r\n"),
        S(b"250 OK id=1pgobK-001mwq-ED\r\n"),
        // RCPT without MAIL; DATA refused with a 3-line 503; text sent anyway.
        C(b"RCPT TO:<alice@example.org>\r\n"),
        S(b"503 sender not yet given\r\n"),
        C(b"DATA\r\n"),
        S(b"503-All RCPT commands were rejected with this error:\r\n503-503 sender not yet given\r\n503 valid RCPT command must precede DATA\r\n"),
        C(b"Hello\r\n.\r\n"),
        S(b"500 unrecognized command\r\n500 unrecognized command\r\n"),
        // MAIL then DATA without RCPT, twice.
        C(b"MAIL FROM:<bob@example.org>\r\n"),
        S(b"250 OK\r\n"),
        C(b"DATA\r\n"),
        S(b"503 valid RCPT command must precede DATA\r\n"),
        C(b"Hello\r\n.\r\n"),
        S(b"500 unrecognized command\r\n500 unrecognized command\r\n"),
        C(b"DATA\r\n"),
        S(b"503 valid RCPT command must precede DATA\r\n"),
        C(b"Hello\r\n.\r\n"),
        S(b"500 unrecognized command\r\n500 unrecognized command\r\n"),
        // A good mail (MAIL refused: sender already given).
        C(b"MAIL FROM:<bob@example.org>\r\n"),
        S(b"503 sender already given\r\n"),
        C(b"RCPT TO:<alice@example.org>\r\n"),
        S(b"250 Accepted\r\n"),
        C(b"DATA\r\n"),
        S(b"354 Enter message\r\n"),
        C(b"Subject: three\r\n\r\nhi\r\n.\r\n"),
        S(b"250 OK id=1pgobM-001mwq-Vc\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ]
}

#[test]
fn mail_transactions_invalid_records_and_weird_once() {
    let (h, a) = run(&invalid_transactions());
    let recs = h.smtp();
    let depths: Vec<u64> = recs.iter().map(|r| r.trans_depth).collect();
    assert_eq!(depths, vec![1, 2, 2, 2]);
    assert_eq!(s(&recs[1].mailfrom), None);
    assert_eq!(set(&recs[1].rcptto), vec!["alice@example.org"]);
    assert_eq!(s(&recs[1].last_reply), Some("500 unrecognized command"));
    assert_eq!(s(&recs[3].last_reply), Some("250 OK id=1pgobM-001mwq-Vc"));
    assert_eq!(h.weird_names(), vec!["smtp_mail_transaction_invalid"]);
    assert_eq!(
        weird(&h, "smtp_mail_transaction_invalid").unwrap(),
        (Some("rcpt to missing mail from".into()), Some("SMTP"))
    );
    assert!(!a.disabled());
}

#[test]
fn mail_transactions_invalid_disables_analyzer() {
    let cfg = SmtpConfig {
        max_invalid_mail_transactions: 2,
        ..SmtpConfig::default()
    };
    let (h, a) = run_cfg(cfg, &invalid_transactions());
    assert!(a.disabled());
    let recs = h.smtp();
    assert_eq!(recs.len(), 3);
    assert_eq!(s(&recs[2].mailfrom), Some("bob@example.org"));
    assert_eq!(s(&recs[2].last_reply), Some("500 unrecognized command"));
    assert_eq!(
        weird(&h, "smtp_excessive_invalid_mail_transactions").unwrap(),
        (Some("3 > 2".into()), Some("SMTP"))
    );
    assert!(h.conn.limit_reached, "limit weird marks history with X");
}

fn bdat_prefix() -> Vec<Step> {
    vec![
        GREETING,
        C(b"EHLO localhost\r\n"),
        S(b"250-example.com\r\n250 CHUNKING\r\n"),
        C(b"MAIL FROM:<zeek@localhost>\r\n"),
        S(b"250 2.1.0 Ok\r\n"),
        C(b"RCPT TO:<root@localhost>\r\n"),
        S(b"250 2.1.5 Ok\r\n"),
    ]
}

#[test]
fn bdat_86_last() {
    let msg: &'static [u8] = b"From: Sam@random.com\r\nTo: Susan@random.com\r\nSubject: This is a bodyless test message\r\n";
    assert_eq!(msg.len(), 86);
    let mut steps = bdat_prefix();
    steps.push(C(b"BDAT 86 LAST\r\n"));
    steps.push(C(msg));
    steps.push(S(b"250 2.0.0 Ok: 86 bytes queued as 1E2891CA025\r\n"));
    steps.push(C(b"QUIT\r\n"));
    steps.push(S(b"221 2.0.0 Bye\r\n"));
    let (h, _) = run(&steps);
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert_eq!(s(&recs[0].from), Some("Sam@random.com"));
    assert_eq!(set(&recs[0].to), vec!["Susan@random.com"]);
    assert_eq!(s(&recs[0].subject), Some("This is a bodyless test message"));
    assert_eq!(
        s(&recs[0].last_reply),
        Some("250 2.0.0 Ok: 86 bytes queued as 1E2891CA025")
    );
    let rq: Vec<String> = requests(&h).into_iter().map(|r| r.0).collect();
    assert_eq!(rq, vec!["EHLO", "MAIL", "RCPT", "BDAT", "QUIT"]);
    assert!(replies(&h).iter().any(|r| r.0 == 250 && r.1 == "BDAT"));
    assert!(unexpected(&h).contains(&(
        "unexpected command".into(),
        "BDAT reply = 0 state = 13".into()
    )));
    // QUIT is the first command after the LAST chunk: no state check for QUIT.
    assert!(!unexpected(&h).iter().any(|u| u.1.starts_with("QUIT")));
    assert!(h.weirds().is_empty());
}

#[test]
fn bdat_0_last_ends_lazily() {
    let mut steps = bdat_prefix();
    steps.push(C(b"BDAT 0 LAST\r\n"));
    steps.push(S(b"250 2.0.0 Ok: 0 bytes queued as 75A291CA025\r\n"));
    steps.push(C(b"QUIT\r\n"));
    steps.push(S(b"221 2.0.0 Bye\r\n"));
    let (h, a) = run(&steps);
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        s(&recs[0].last_reply),
        Some("250 2.0.0 Ok: 0 bytes queued as 75A291CA025")
    );
    assert!(recs[0].subject.is_none());
    assert!(h.weirds().is_empty(), "{:?}", h.weird_names());
    assert_eq!(a.state(), State::Quit);
}

#[test]
fn bdat_chunked_header_across_chunks() {
    let mut steps = bdat_prefix();
    steps.push(C(b"BDAT 10\r\nSubject: c"));
    steps.push(S(b"250 2.0.0 Ok: 10 bytes\r\n"));
    steps.push(C(b"BDAT 12 LAST\r\nhunked\r\n\r\nb\r\n"));
    steps.push(S(b"250 2.0.0 Ok: queued\r\n"));
    let (h, _) = run(&steps);
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert_eq!(s(&recs[0].subject), Some("chunked"));
    assert_eq!(s(&recs[0].last_reply), Some("250 2.0.0 Ok: queued"));
}

fn bdat_invalid(arg: &'static [u8], weird_name: &str, addl: &str) {
    let mut steps = bdat_prefix();
    steps.push(C(arg));
    steps.push(S(b"521 5.5.4 Syntax: BDAT count [LAST]\r\n"));
    steps.push(C(b"QUIT\r\n"));
    let (h, _) = run(&steps);
    assert_eq!(
        weird(&h, weird_name).unwrap(),
        (Some(addl.into()), Some("SMTP"))
    );
    assert_eq!(h.weirds().len(), 1);
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].trans_depth, 1);
    assert_eq!(
        s(&recs[0].last_reply),
        Some("521 5.5.4 Syntax: BDAT count [LAST]")
    );
    assert!(replies(&h).iter().any(|r| r.0 == 521 && r.1 == "BDAT"));
}

#[test]
fn bdat_cmd_invalid_empty() {
    bdat_invalid(
        b"BDAT\r\n",
        "smtp_invalid_bdat_command",
        "BDAT argument bad length",
    );
}

#[test]
fn bdat_cmd_invalid_junk() {
    bdat_invalid(
        b"BDAT 1234 SCRAMBLE\r\n",
        "smtp_invalid_bdat_command",
        "BDAT chunk-size followed by junk",
    );
}

#[test]
fn bdat_cmd_invalid_word() {
    bdat_invalid(
        b"BDAT SCRAMBLE\r\n",
        "smtp_invalid_bdat_command",
        "BDAT not followed by a valid chunk-size",
    );
}

#[test]
fn bdat_chunk_size_overflow() {
    bdat_invalid(
        b"BDAT 15555555557777777777 LAST\r\n",
        "smtp_huge_bdat_chunk",
        "15555555557777777777",
    );
}

#[test]
fn bdat_chunk_size_overflow2() {
    bdat_invalid(
        b"BDAT 184467440737095516150 LAST\r\n",
        "smtp_invalid_bdat_command",
        "BDAT argument bad length",
    );
}

#[test]
fn bdat_negative_chunk_size() {
    bdat_invalid(
        b"BDAT -1 LAST\r\n",
        "smtp_invalid_bdat_command",
        "BDAT not followed by a valid chunk-size",
    );
}

#[test]
fn bdat_gap_then_recovery_with_data() {
    let mut steps = bdat_prefix();
    steps.push(C(b"BDAT 200\r\nSubject: gap\r\npartial"));
    steps.push(Gap(true, 100));
    steps.push(S(b"250 2.0.0 Ok\r\n"));
    steps.push(C(b"DATA\r\n"));
    steps.push(S(b"354 go\r\n"));
    steps.push(C(b"Subject: after\r\n\r\nx\r\n.\r\n"));
    steps.push(S(b"250 OK: message queued\r\n"));
    steps.push(C(b"QUIT\r\n"));
    let (h, _) = run(&steps);
    assert_eq!(
        h.weird_names(),
        vec![
            "smtp_bdat_remaining_at_end_data",
            "smtp_bdat_undelivered_at_done"
        ]
    );
    assert_eq!(
        weird(&h, "smtp_bdat_undelivered_at_done").unwrap().1,
        Some("SMTP_BDAT")
    );
    let rq: Vec<String> = requests(&h).into_iter().map(|r| r.0).collect();
    assert_eq!(
        rq,
        vec![
            "EHLO",
            "MAIL",
            "RCPT",
            "BDAT",
            "(UNKNOWN)",
            "DATA",
            ".",
            "QUIT"
        ]
    );
    assert_eq!(
        replies(&h).iter().find(|r| r.2 == "2.0.0 Ok").unwrap().1,
        "(UNKNOWN)"
    );
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert_eq!(s(&recs[0].mailfrom), Some("zeek@localhost"));
    assert_eq!(s(&recs[0].last_reply), Some("250 OK: message queued"));
    // Headers of the first (gapped) message were still seen.
    assert_eq!(s(&recs[0].subject), Some("gap"));
    let gaps: Vec<_> = unexpected(&h)
        .into_iter()
        .filter(|u| u.0 == "content gap")
        .collect();
    assert_eq!(
        gaps,
        vec![(
            "content gap".to_string(),
            "seq = 102, len = 100".to_string()
        )]
    );
}

#[test]
fn gap_outside_data_gives_unknown_request() {
    let (h, a) = run(&[
        GREETING,
        C(b"EHLO x\r\n"),
        Gap(false, 10),
        C(b"NOOP\r\n"),
        S(b"250 ok\r\n"),
        C(b"NOOP\r\n"),
        S(b"250 ok\r\n"),
    ]);
    let rq = requests(&h);
    assert!(rq.contains(&("(UNKNOWN)".into(), "".into())));
    assert!(
        !rq.iter()
            .skip(1)
            .any(|r| r.0 == "NOOP" && rq.iter().filter(|x| x.0 == "NOOP").count() > 1),
        "NOOP after the gap is swallowed"
    );
    assert_eq!(replies(&h)[1].1, "(UNKNOWN)");
    assert_eq!(a.state(), State::GapRecovery);
}

#[test]
fn starttls_hands_off_and_sets_tls() {
    let (h, a) = run(&[
        GREETING,
        C(b"EHLO openssl.client.net\r\n"),
        S(b"250-mx\r\n250 STARTTLS\r\n"),
        C(b"STARTTLS\r\n"),
        S(b"220 2.0.0 Ready to start TLS\r\n\x16\x03\x01garbage"),
        C(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not smtp\r\n"),
    ]);
    assert_eq!(a.state(), State::InTls);
    let recs = h.smtp();
    assert_eq!(recs.len(), 1);
    assert!(recs[0].tls);
    assert!(recs[0].mailfrom.is_none());
    assert_eq!(s(&recs[0].last_reply), Some("220 2.0.0 Ready to start TLS"));
    // smtp_starttls precedes the 220 reply; nothing follows it.
    let ev = h.events();
    let pos = ev
        .iter()
        .position(|e| matches!(e, Event::SmtpStarttls))
        .unwrap();
    assert!(matches!(ev[pos + 1], Event::SmtpReply { code: 220, .. }));
    assert_eq!(ev.len(), pos + 2);
}

#[test]
fn received_path_and_header_fields() {
    let (h, _) = run(&[
        GREETING,
        C(b"HELO [192.168.133.100]\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        C(b"Received: from mx2 (mx2.example [203.0.113.9])\r\n\tby mx3 (8.1.1.1) with ESMTP\r\n"),
        C(b"Received: from host ([IPv6:2001:db8::1]) by mx2\r\n"),
        C(b"Received: from client ([10.1.2.3]) by mx1\r\n"),
        C(b"X-Originating-IP: [192.0.2.77]\r\nUser-Agent: Mutt/1.5\r\nX-Mailer: Foo 1.0\r\n"),
        C(b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\nReply-To: r@x\r\nDate: today\r\nCc: c1@x, c2@x\r\nCc: c3@x\r\n\r\nbody\r\n.\r\n"),
        S(b"250 queued\r\n"),
    ]);
    let r = h.smtp()[0];
    assert_eq!(
        s(&r.first_received),
        Some("from client ([10.1.2.3]) by mx1")
    );
    assert_eq!(
        s(&r.second_received),
        Some("from host ([IPv6:2001:db8::1]) by mx2")
    );
    let path: Vec<String> = r
        .path
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    // Two wrapped addresses in the first header: the second one is taken.
    assert_eq!(
        path,
        vec!["74.53.140.153", "10.10.1.4", "8.1.1.1", "10.1.2.3"]
    );
    assert_eq!(r.x_originating_ip, Some("192.0.2.77".parse().unwrap()));
    assert_eq!(s(&r.user_agent), Some("Foo 1.0"));
    assert_eq!(s(&r.msg_id), Some("<m@x>"));
    assert_eq!(s(&r.in_reply_to), Some("<p@x>"));
    assert_eq!(s(&r.reply_to), Some("r@x"));
    assert_eq!(s(&r.date), Some("today"));
    assert_eq!(set(&r.cc), vec!["c1@x", "c2@x", "c3@x"]);
    assert_eq!(s(&r.helo), Some("[192.168.133.100]"));
}

#[test]
fn folded_to_with_quoted_names_and_group() {
    let (h, _) = run(&[
        GREETING,
        C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        C(b"To: \"Jan Grashoefer\" <jan@gmail.com>, \"Test Group\":addr-spec@example.com,\r\n <angle-addr@example.com>,\r\n\t\"Test Member\" <name-addr@example.com>;\r\n\r\n.\r\n"),
        S(b"250 queued\r\n"),
    ]);
    let r = h.smtp()[0];
    assert_eq!(
        set(&r.to),
        vec![
            "\"Jan Grashoefer\" <jan@gmail.com>",
            "\"Test Group\":addr-spec@example.com",
            "\"Test Member\" <name-addr@example.com>;",
            "<angle-addr@example.com>",
        ]
    );
}

#[test]
fn only_top_level_headers_and_second_message_in_record_ignored() {
    // No MAIL between two messages: the second message's headers belong
    // to a record that already saw an entity and are ignored.
    let (h, _) = run(&[C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: one\r\n\r\n.\r\nDATA\r\nSubject: two\r\n\r\n.\r\n")]);
    assert_eq!(s(&h.smtp()[0].subject), Some("one"));
}

#[test]
fn header_byte_limit_weird() {
    let cfg = SmtpConfig {
        max_header_bytes: 20,
        ..SmtpConfig::default()
    };
    let (h, _) = run_cfg(
        cfg,
        &[C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: 0123456789\r\n x\r\n x\r\n x\r\n x\r\n x\r\n\r\n.\r\n")],
    );
    assert_eq!(
        weird(&h, "exceeded_mime_max_header_bytes").unwrap(),
        (Some("21".into()), Some("SMTP"))
    );
    assert!(h.conn.limit_reached);
    assert_eq!(s(&h.smtp()[0].subject), Some("0123456789 x"));
}

#[test]
fn address_limits() {
    let cfg = SmtpConfig {
        max_rcptto_addresses: 2,
        max_to_addresses: 1,
        max_path_length: 3,
        ..SmtpConfig::default()
    };
    let (h, _) = run_cfg(
        cfg,
        &[C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\nTo: t1@x, t2@x\r\nReceived: from a ([1.1.1.1])\r\nReceived: from b ([2.2.2.2])\r\n\r\n.\r\n")],
    );
    let r = h.smtp()[0];
    assert_eq!(r.rcptto.as_ref().unwrap().len(), 2);
    assert_eq!(r.to.as_ref().unwrap().len(), 1);
    assert_eq!(r.path.as_ref().unwrap().len(), 3);
    for n in [
        "smtp_too_many_rcptto_addresses",
        "smtp_too_many_to_addresses",
        "smtp_max_path_length_exceeded",
    ] {
        assert_eq!(weird(&h, n).unwrap().1, None, "{n} has no source");
    }
}

#[test]
fn mail_path_capture_local_hosts_stops_at_remote() {
    let cfg = SmtpConfig {
        mail_path_capture: crate::MailPathCapture::LocalHosts,
        local_nets: vec![("74.53.0.0".parse().unwrap(), 16)],
        ..SmtpConfig::default()
    };
    let (h, _) = run_cfg(
        cfg,
        &[C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nReceived: from a ([74.53.1.1])\r\nReceived: from b ([8.8.8.8])\r\nReceived: from c ([9.9.9.9])\r\n\r\n.\r\n")],
    );
    let path: Vec<String> = h.smtp()[0]
        .path
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        path,
        vec!["74.53.140.153", "10.10.1.4", "74.53.1.1", "8.8.8.8"]
    );
}

#[test]
fn reply_code_out_of_range_disables_small_connection() {
    let (h, a) = run(&[S(b"HTTP/1.1 200 OK\r\nfoo\r\n"), C(b"EHLO x\r\n")]);
    assert!(a.disabled());
    let u = unexpected(&h);
    assert_eq!(
        u[0],
        ("reply code out of range".into(), "HTTP/1.1 200 OK".into())
    );
    // The second line of the same packet was still analyzed.
    assert_eq!(u.len(), 2);
    assert!(requests(&h).is_empty());
}

#[test]
fn no_record_without_client_activity() {
    let (h, _) = run(&[
        GREETING,
        C(b"EHLO x\r\n"),
        S(b"250 ok\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ]);
    assert!(h.smtp().is_empty());
}

#[test]
fn multiline_dot_reply_skips_trans_depth() {
    let (h, _) = run(&[
        GREETING,
        C(b"HELO h\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n"),
        S(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250-one\r\n250 two\r\n"),
        C(b"MAIL FROM:<c@x>\r\n"),
    ]);
    let recs = h.smtp();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        s(&recs[0].last_reply),
        Some("250 one"),
        "written at the first line of the reply to ."
    );
    assert_eq!(recs[1].trans_depth, 3);
}

#[test]
fn events_off_still_logs() {
    let mut h = harness();
    h.out.events_enabled = false;
    let mut a = SmtpAnalyzer::new(Arc::new(SmtpConfig::default()));
    for st in basic_mail() {
        let mut cx = h.cx();
        match st {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, o, n),
        }
    }
    a.done(&mut h.cx());
    assert!(h.events().is_empty());
    assert_eq!(h.smtp().len(), 1);
}

#[test]
fn dpd_signatures() {
    assert!(dpd_orig_matches(b"EHLO x\r\n"));
    assert!(dpd_orig_matches(b"  helo x"));
    assert!(dpd_orig_matches(b"NOOP\r\n ehlo x"));
    assert!(!dpd_orig_matches(b"GET / HTTP/1.1\r\nX: EHLO"));
    assert!(dpd_resp_matches(b"220 mx ESMTP"));
    assert!(dpd_resp_matches(b" 220-mx"));
    assert!(!dpd_resp_matches(b"2200 x"));
    assert!(!dpd_resp_matches(b"250 ok"));
}

/// Everything observable, for comparing runs.
fn fingerprint(h: &Harness) -> Vec<String> {
    h.out
        .records
        .iter()
        .map(|r| match r {
            Record::Event(e) => format!("{:?}", e.event),
            Record::Smtp(s) => format!("{:?}", s),
            Record::Weird(w) => format!("{} {:?} {:?}", w.name, w.addl, w.source),
            other => format!("{other:?}"),
        })
        .collect()
}

fn session_bytes() -> Vec<(bool, Vec<u8>)> {
    let mut v = Vec::new();
    for st in basic_mail().into_iter().chain(invalid_transactions()) {
        match st {
            C(d) => v.push((true, d.to_vec())),
            S(d) => v.push((false, d.to_vec())),
            Gap(..) => {}
        }
    }
    let mut b = bdat_prefix();
    b.push(C(b"BDAT 10\r\nSubject: c"));
    b.push(S(b"250 ok\r\n"));
    b.push(C(b"BDAT 12 LAST\r\nhunked\r\n\r\nb\r\n"));
    b.push(S(b"250 ok\r\n"));
    for st in b {
        match st {
            C(d) => v.push((true, d.to_vec())),
            S(d) => v.push((false, d.to_vec())),
            Gap(..) => {}
        }
    }
    v
}

fn replay(chunks: &[(bool, Vec<u8>)], cuts: &[usize]) -> Vec<String> {
    let mut h = harness();
    let mut a = SmtpAnalyzer::new(Arc::new(SmtpConfig::default()));
    for (i, (orig, data)) in chunks.iter().enumerate() {
        let cut = cuts.get(i).copied().unwrap_or(0);
        // Split every delivery into pieces of `cut` bytes (0 = whole).
        let size = if cut == 0 { data.len().max(1) } else { cut };
        for piece in data.chunks(size) {
            let mut cx = h.cx();
            a.deliver(&mut cx, *orig, piece);
        }
    }
    a.done(&mut h.cx());
    fingerprint(&h)
}

proptest! {
    #[test]
    fn any_split_gives_identical_output(cuts in proptest::collection::vec(0usize..9, 80)) {
        let chunks = session_bytes();
        let whole = replay(&chunks, &[]);
        prop_assert!(!whole.is_empty());
        prop_assert_eq!(replay(&chunks, &cuts), whole);
    }

    #[test]
    fn arbitrary_input_never_panics(a in proptest::collection::vec(any::<u8>(), 0..400), b in proptest::collection::vec(any::<u8>(), 0..400), n in 1usize..50) {
        let mut h = harness();
        let mut an = SmtpAnalyzer::new(Arc::new(SmtpConfig { max_line_length: 64, bdat_max_line_length: 8, ..SmtpConfig::default() }));
        for (i, (pa, pb)) in a.chunks(n).zip(b.chunks(n)).enumerate() {
            let mut cx = h.cx();
            an.deliver(&mut cx, true, pa);
            an.deliver(&mut cx, false, pb);
            if i % 7 == 3 { an.gap(&mut cx, i % 2 == 0, 5); }
        }
        an.eof(&mut h.cx(), true);
        an.done(&mut h.cx());
    }
}

fn extract_run(steps: &[Step]) -> (Vec<u8>, Vec<mailtap_core::mail::EmailMeta>, Harness) {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = SmtpAnalyzer::new(Arc::new(SmtpConfig::default()));
    for s in steps {
        let mut cx = h.cx();
        match s {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, *o, *n),
        }
    }
    let mut cx = h.cx();
    a.done(&mut cx);
    let mut data = Vec::new();
    let mut metas = Vec::new();
    for r in &h.out.records {
        match r {
            Record::EmailData(c) => data.extend_from_slice(&c.data),
            Record::EmailMeta(m) => metas.push((**m).clone()),
            _ => {}
        }
    }
    (data, metas, h)
}

#[test]
fn extraction_exact_bytes_rcpts_and_rejected_status() {
    let steps = vec![
        GREETING,
        C(b"EHLO c\r\n"),
        S(b"250 ok\r\n"),
        C(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<bad@y>\r\n"),
        S(b"250 ok\r\n250 ok\r\n550 no such user\r\n"),
        C(b"DATA\r\n"),
        S(b"354 go\r\n"),
        // CRLF split across deliveries, LF-only and CR-only endings, a dot.
        C(b"Subject: =?UTF-8?Q?caf=C3=A9?=\r"),
        C(b"\nX: lf\n\r\n..dot\rend\r\n.\r\n"),
        S(b"554 rejected\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ];
    let (data, metas, h) = extract_run(&steps);
    assert_eq!(
        data,
        b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\nX: lf\n\r\n.dot\rend\r\n".to_vec()
    );
    assert_eq!(metas.len(), 1);
    let m = &metas[0];
    assert_eq!(m.n, 1);
    assert_eq!(m.rcptto, vec![b"b@y".to_vec()]);
    assert_eq!(m.rcptto_rejected, vec![(b"bad@y".to_vec(), 550)]);
    assert_eq!(m.status_code, Some(554));
    assert_eq!(m.status_text.as_deref(), Some(&b"rejected"[..]));
    assert_eq!(m.headers.subject.as_deref(), Some("café"));
    assert_eq!(m.size, data.len() as u64);
    assert!(m.complete);
    assert_eq!(m.mailfrom.as_deref(), Some(&b"a@x"[..]));
    // fuids: the body became one file.
    assert_eq!(h.smtp()[0].fuids.len(), 1);
}

#[test]
fn extraction_bdat_0_last_keeps_envelope_and_status() {
    // The transfer ends only at the next client data (Zeek's lazy end),
    // after the reply to `BDAT 0 LAST` and after smtp.log wrote the record.
    let steps = vec![
        GREETING,
        C(b"EHLO c\r\n"),
        S(b"250 ok\r\n"),
        C(b"MAIL FROM:<a@x>\r\n"),
        S(b"250 ok\r\n"),
        C(b"RCPT TO:<b@y>\r\n"),
        S(b"250 ok\r\n"),
        C(b"BDAT 14\r\nSubject: z\r\n\r\n"),
        S(b"250 14 octets\r\n"),
        C(b"BDAT 0 LAST\r\n"),
        S(b"250 2.0.0 Ok: queued as X\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ];
    let (data, metas, _) = extract_run(&steps);
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].mailfrom.as_deref(), Some(&b"a@x"[..]));
    assert_eq!(metas[0].trans_depth, 1);
    assert_eq!(metas[0].status_code, Some(250));
    assert_eq!(
        metas[0].status_text.as_deref(),
        Some(&b"2.0.0 Ok: queued as X"[..])
    );
    assert!(metas[0].complete);
    assert_eq!(data, b"Subject: z\r\n\r\n");
}

#[test]
fn extraction_bdat_chunks_and_cut_message() {
    let steps = vec![
        GREETING,
        C(b"EHLO c\r\n"),
        S(b"250 ok\r\n"),
        C(b"MAIL FROM:<a@x>\r\n"),
        S(b"250 ok\r\n"),
        C(b"RCPT TO:<b@y>\r\n"),
        S(b"250 ok\r\n"),
        C(b"BDAT 10\r\nSubject: h"),
        C(b"BDAT 9 LAST\r\ni\r\n\r\nbody"),
        S(b"250 ok\r\n250 queued\r\n"),
        C(b"MAIL FROM:<a@x>\r\n"),
        S(b"250 ok\r\n"),
        C(b"RCPT TO:<b@y>\r\n"),
        S(b"250 ok\r\n"),
        C(b"DATA\r\n"),
        S(b"354 go\r\n"),
        C(b"Subject: cut\r\n\r\npartial"),
    ];
    let (data, metas, _) = extract_run(&steps);
    assert_eq!(metas.len(), 2);
    assert_eq!(metas[0].size, 19);
    assert_eq!(metas[0].status_code, Some(250));
    assert_eq!(metas[0].status_text.as_deref(), Some(&b"queued"[..]));
    assert!(metas[0].complete);
    assert_eq!(metas[1].n, 2);
    assert!(!metas[1].complete);
    assert_eq!(metas[1].status_code, None);
    assert_eq!(
        String::from_utf8_lossy(&data),
        "Subject: hi\r\n\r\nbodySubject: cut\r\n\r\n"
    );
}
