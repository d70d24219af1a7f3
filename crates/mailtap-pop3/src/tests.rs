//! Session-level tests: drive `Pop3Analyzer` through `TcpAnalyzer` and check
//! events, weirds, confirmation, disabling and the pop3.log record.

use crate::testutil::{harness, Harness};
use crate::{
    dpd_orig_matches, dpd_resp_matches, dpd_resp_possible, Master, Pop3Analyzer, Pop3Config, State,
};
use mailtap_core::{Event, Record, TcpAnalyzer};
use proptest::prelude::*;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    C(&'static [u8]),
    S(&'static [u8]),
    Gap(bool, u64),
}
use Step::{Gap, C, S};

fn run_cfg(cfg: Pop3Config, steps: &[Step]) -> (Harness, Pop3Analyzer) {
    let mut h = harness();
    let mut a = Pop3Analyzer::new(Arc::new(cfg));
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
    a.eof(&mut cx, true);
    a.eof(&mut cx, false);
    a.done(&mut cx);
    (h, a)
}

fn run(steps: &[Step]) -> (Harness, Pop3Analyzer) {
    run_cfg(Pop3Config::default(), steps)
}

fn st(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Events as compact strings: `req CMD arg`, `rep OK msg`, ...
fn evs(h: &Harness) -> Vec<String> {
    h.events()
        .iter()
        .map(|e| match e {
            Event::Pop3Request { command, arg, .. } => format!("req {} {}", st(command), st(arg)),
            Event::Pop3Reply { cmd, msg, .. } => format!("rep {} {}", st(cmd), st(msg)),
            Event::Pop3Data { data, .. } => format!("data {}", st(data)),
            Event::Pop3Unexpected {
                is_orig,
                msg,
                detail,
            } => format!("unexp {} {} {}", is_orig, st(msg), st(detail)),
            Event::Pop3Starttls => "starttls".into(),
            Event::Pop3LoginSuccess { user, password, .. } => {
                format!("login_ok {} {}", st(user), st(password))
            }
            Event::Pop3LoginFailure { user, password, .. } => {
                format!("login_fail {} {}", st(user), st(password))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// Requests and replies only, as the Zeek baselines print them.
fn req_rep(h: &Harness) -> Vec<String> {
    evs(h)
        .into_iter()
        .filter(|e| e.starts_with("req ") || e.starts_with("rep "))
        .collect()
}

fn weird_pairs(h: &Harness) -> Vec<(String, String, String)> {
    h.weirds()
        .iter()
        .map(|w| {
            (
                w.name.to_string(),
                w.addl.as_deref().map(st).unwrap_or_else(|| "-".into()),
                w.source.unwrap_or("-").to_string(),
            )
        })
        .collect()
}

const GREETING: &[u8] = b"+OK POP server ready H mimap15 0LfD5x\r\n";
const CAPA_REPLY: &[u8] =
    b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSTLS\r\nSASL PLAIN\r\n.\r\n";

#[test]
fn basic_auth_plain_session_like_zeek() {
    let (h, a) = run(&[
        S(GREETING),
        C(b"AUTH\r\n"),
        S(b"-ERR 1 argument required\r\n"),
        C(b"CAPA\r\n"),
        S(CAPA_REPLY),
        C(b"AUTH PLAIN\r\n"),
        S(b"+ \r\n"),
        C(b"AGRpZ2l0YWxpbnZlc3RpZ2F0b3JAbmV0d29ya3NpbXMuY29tAG5hcGllcjEyMw==\r\n"),
        S(b"+OK mailbox has 3 messages\r\n"),
        C(b"STAT\r\n"),
        S(b"+OK 3 19191\r\n"),
        C(b"LIST\r\n"),
        S(b"+OK\r\n1 5565\r\n2 8412\r\n.\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK POP server signing off\r\n"),
    ]);
    assert_eq!(
        req_rep(&h),
        vec![
            "rep OK POP server ready H mimap15 0LfD5x",
            "req AUTH ",
            "rep ERR 1 argument required",
            "req CAPA ",
            "rep OK Capability list follows",
            "req AUTH PLAIN",
            "rep OK mailbox has 3 messages",
            "req STAT ",
            "rep OK 3 19191",
            "req LIST ",
            "rep OK ",
            "req RETR 1",
            "rep OK ",
            "req QUIT ",
            "rep OK POP server signing off",
        ]
    );
    let e = evs(&h);
    // The login event comes before the reply, with the password withheld.
    let i = e
        .iter()
        .position(|x| x == "login_ok digitalinvestigator@networksims.com ")
        .unwrap();
    assert_eq!(e[i + 1], "rep OK mailbox has 3 messages");
    assert!(e.contains(&"data ..dot".to_string()));
    assert!(e.contains(&"data SASL PLAIN".to_string()));
    assert!(h.weirds().is_empty(), "{:?}", weird_pairs(&h));
    assert_eq!(h.conn.service, vec!["pop3"]);
    assert_eq!(a.master(), Master::Update);
    let r = h.pop3();
    assert_eq!(r.len(), 1);
    let r = r[0];
    assert_eq!(
        r.user.as_deref(),
        Some(&b"digitalinvestigator@networksims.com"[..])
    );
    assert_eq!(r.auth_method.as_deref(), Some(&b"PLAIN"[..]));
    assert_eq!(r.login, "success");
    assert_eq!(r.login_failures, 0);
    assert_eq!(r.messages_retrieved, 1);
    // "Subject: hi", "", "body", ".dot" each plus CRLF.
    assert_eq!(r.bytes_retrieved, 13 + 2 + 6 + 6);
    assert_eq!(r.messages_deleted, 0);
    assert!(!r.tls);
    assert_eq!(
        r.last_reply.as_deref(),
        Some(&b"+OK POP server signing off"[..])
    );
    assert_eq!(r.ts, mailtap_core::Timestamp(1_000_000_000));
}

#[test]
fn auth_plain_failure_reports_stale_credentials() {
    let (h, _) = run(&[
        S(GREETING),
        C(b"AUTH PLAIN\r\n"),
        S(b"+ \r\n"),
        C(b"AGRpZ2l0YWxpbnZlc3RpZ2F0b3JAbmV0d29ya3NpbXMuY29tAG5hcGllcg==\r\n"),
        S(b"-ERR authentication failed\r\n"),
    ]);
    let e = evs(&h);
    assert!(e.contains(&"login_fail digitalinvestigator@networksims.com ".to_string()));
    let r = h.pop3()[0];
    assert_eq!(r.login, "failure");
    assert_eq!(r.login_failures, 1);
    // AUTH alone does not confirm.
    assert!(h.conn.service.is_empty());
}

#[test]
fn user_pass_passwords_hidden_unless_asked() {
    let steps = [
        S(b"+OK hi\r\n"),
        C(b"USER bob\r\n"),
        S(b"+OK send pass\r\n"),
        C(b"PASS s3cret\r\n"),
        S(b"+OK logged in\r\n"),
        C(b"DELE 1\r\n"),
        S(b"+OK deleted\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK bye\r\n"),
    ];
    let (h, _) = run(&steps);
    let e = evs(&h);
    assert!(e.contains(&"req PASS ".to_string()));
    assert!(e.contains(&"login_ok bob ".to_string()));
    assert!(!format!("{:?}", h.out.records).contains("s3cret"));
    let r = h.pop3()[0];
    assert_eq!(r.user.as_deref(), Some(&b"bob"[..]));
    assert_eq!(r.auth_method.as_deref(), Some(&b"USER/PASS"[..]));
    assert_eq!(r.messages_deleted, 1);
    assert_eq!(h.conn.service, vec!["pop3"]);

    let cfg = Pop3Config {
        log_passwords: true,
        ..Pop3Config::default()
    };
    let (h, _) = run_cfg(cfg, &steps);
    let e = evs(&h);
    assert!(e.contains(&"req PASS s3cret".to_string()));
    assert!(e.contains(&"login_ok bob s3cret".to_string()));
    // pop3.log has no password column at all.
    assert!(!format!("{:?}", h.pop3()).contains("s3cret"));
}

#[test]
fn user_rejected_is_a_login_failure() {
    let (h, a) = run(&[
        S(b"+OK hi\r\n"),
        C(b"USER nobody\r\n"),
        S(b"-ERR no such user\r\n"),
    ]);
    assert!(evs(&h).contains(&"login_fail nobody ".to_string()));
    assert_eq!(a.state(), State::Start);
    assert_eq!(a.master(), Master::Authorization);
}

#[test]
fn apop_login() {
    let (h, _) = run(&[
        S(b"+OK <1896.697170952@dbc.mtview.ca.us>\r\n"),
        C(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        S(b"+OK maildrop has 1 message\r\n"),
    ]);
    let e = evs(&h);
    assert!(e.contains(&"req APOP mrose c4c9334bac560ecc979e58001b3e22fb".to_string()));
    assert!(e.contains(&"login_ok mrose ".to_string()));
    let r = h.pop3()[0];
    assert_eq!(r.auth_method.as_deref(), Some(&b"APOP"[..]));
    assert_eq!(r.login, "success");
    // APOP's +OK does not confirm in Zeek.
    assert!(h.conn.service.is_empty());
}

#[test]
fn auth_login_and_cram_md5() {
    let cfg = Pop3Config {
        log_passwords: true,
        ..Pop3Config::default()
    };
    let (h, _) = run_cfg(
        cfg.clone(),
        &[
            S(b"+OK hi\r\n"),
            C(b"AUTH LOGIN\r\n"),
            S(b"+ VXNlcm5hbWU6\r\n"),
            C(b"Ym9i\r\n"),
            S(b"+ UGFzc3dvcmQ6\r\n"),
            C(b"cHc=\r\n"),
            S(b"+OK welcome\r\n"),
        ],
    );
    assert!(evs(&h).contains(&"login_ok bob pw".to_string()));
    assert_eq!(h.pop3()[0].auth_method.as_deref(), Some(&b"LOGIN"[..]));

    let (h, _) = run_cfg(
        cfg,
        &[
            S(b"+OK hi\r\n"),
            C(b"AUTH CRAM-MD5\r\n"),
            S(b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+\r\n"),
            // "tim b913a602c7eda7a495b4e6e7334d3890"
            C(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"),
            S(b"+OK\r\n"),
        ],
    );
    assert!(evs(&h).contains(&"login_ok tim ".to_string()));
}

#[test]
fn auth_unknown_mechanism_and_redacted_initial_response() {
    let (h, _) = run(&[
        S(b"+OK hi\r\n"),
        C(b"AUTH XOAUTH2 dXNlcj1ib2IBYXV0aD1CZWFyZXIgdG9rZW4BAQ==\r\n"),
        S(b"-ERR no\r\n"),
    ]);
    let e = evs(&h);
    assert!(e.contains(&"req AUTH XOAUTH2".to_string()), "{e:?}");
    assert!(e.contains(&"unexp true AUTH unknown AUTH method XOAUTH2".to_string()));
    assert!(!format!("{:?}", h.out.records).contains("dXNlcj1i"));
}

#[test]
fn sasl_weirds() {
    let (h, _) = run(&[
        S(b"+OK hi\r\n"),
        C(b"AUTH PLAIN\r\n"),
        S(b"+ \r\n"),
        C(b"not base64!\r\n"),
        C(b"Ym9i\r\n"),
    ]);
    assert_eq!(
        weird_pairs(&h),
        vec![
            (
                "base64_illegal_encoding".into(),
                "character 32 ignored by Base64 decoding".into(),
                "-".into()
            ),
            ("pop3_bad_base64_encoding".into(), "-".into(), "POP3".into()),
            (
                "pop3_malformed_auth_plain".into(),
                "-".into(),
                "POP3".into()
            ),
        ]
    );
    // SASL answers are not requests.
    assert_eq!(req_rep(&h), vec!["rep OK hi", "req AUTH PLAIN"]);
}

#[test]
fn pipelined_commands_wait_for_replies() {
    let (h, _) = run(&[
        S(GREETING),
        C(b"CAPA\r\n"),
        C(b"QUIT\r\n"),
        S(CAPA_REPLY),
        S(b"+OK POP server signing off\r\n"),
    ]);
    assert_eq!(
        req_rep(&h),
        vec![
            "rep OK POP server ready H mimap15 0LfD5x",
            "req CAPA ",
            "rep OK Capability list follows",
            "req QUIT ",
            "rep OK POP server signing off",
        ]
    );
    assert_eq!(h.conn.service, vec!["pop3"]);
}

#[test]
fn not_allowed_and_guessing() {
    let (h, a) = run(&[
        S(b"+OK hi\r\n"),
        C(b"STAT\r\n"),
        S(b"-ERR not now\r\n"),
        C(b"PASS x\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n"),
    ]);
    let e = evs(&h);
    assert!(e.contains(&"unexp true STAT not allowed in other state than 'transaction'".into()));
    assert!(e.contains(&"unexp true PASS pass must follow the command 'USER'".into()));
    // PASS is queued behind nothing (STAT was answered): processed at once;
    // RETR waits for a reply that never pairs with PASS... the +OK completes
    // PASS's slot and then RETR is processed (not allowed, guessing).
    assert!(e.contains(&"unexp true RETR not allowed in other state than 'transaction'".into()));
    assert!(a.master() == Master::Authorization || a.master() == Master::Transaction);
}

#[test]
fn retr_before_login_guesses_transaction() {
    let (h, a) = run(&[
        S(b"+OK hi\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK 120 octets\r\nSubject: x\r\n\r\nbody\r\n.\r\n"),
    ]);
    let e = evs(&h);
    assert_eq!(
        e,
        vec![
            "rep OK hi",
            "unexp true RETR not allowed in other state than 'transaction'",
            "unexp false OK no auth required -> state changed to 'transaction'",
            "rep OK 120 octets",
            "data Subject: x",
            "data ",
            "data body",
        ]
    );
    assert_eq!(a.master(), Master::Transaction);
    assert_eq!(a.state(), State::Retr);
    assert_eq!(h.pop3()[0].messages_retrieved, 1);
}

#[test]
fn stls_hands_off_to_tls() {
    let (h, a) = run(&[
        S(b"+OK server ready\r\n"),
        C(b"STLS\r\n"),
        S(b"+OK Begin TLS negotiation now\r\n"),
        C(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n"),
        S(b"\x16\x03\x03\x00:\x02\x00\r\n"),
    ]);
    assert_eq!(
        evs(&h),
        vec!["rep OK server ready", "req STLS ", "starttls"]
    );
    assert!(a.tls());
    assert!(h.weirds().is_empty());
    assert_eq!(h.conn.service, vec!["pop3"]);
    let r = h.pop3()[0];
    assert!(r.tls);
    assert_eq!(r.login, "unknown");
    assert_eq!(
        r.last_reply.as_deref(),
        Some(&b"+OK Begin TLS negotiation now"[..])
    );
}

#[test]
fn redis_is_not_pop3() {
    // The first exchanges of Zeek's redis-50-pings trace.
    let mut steps = vec![
        C(b"*2\r\n$4\r\nAUTH\r\n$4\r\nzeek\r\n"),
        S(b"+OK\r\n"),
        C(b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$8\r\nLIB-NAME\r\n$8\r\nredis-py\r\n"),
        S(b"+OK\r\n"),
        C(b"*4\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$7\r\nLIB-VER\r\n$5\r\n5.0.8\r\n"),
        S(b"+OK\r\n"),
    ];
    for _ in 0..5 {
        steps.push(C(b"*1\r\n$4\r\nPING\r\n"));
        steps.push(S(b"+PONG\r\n"));
    }
    let cfg = Pop3Config {
        max_unknown_client_commands: 3,
        ..Pop3Config::default()
    };
    let (h, a) = run_cfg(cfg, &steps);
    assert_eq!(req_rep(&h), vec!["rep OK ", "rep OK ", "rep OK "]);
    assert_eq!(
        weird_pairs(&h),
        vec![
            (
                "pop3_client_command_unknown".into(),
                "*2".into(),
                "POP3".into()
            ),
            (
                "pop3_client_too_many_pending_commands".into(),
                "-".into(),
                "POP3".into()
            ),
        ]
    );
    assert!(a.disabled());
    assert!(h.conn.service.is_empty());
    assert!(
        h.pop3().is_empty(),
        "no pop3.log row for a non-POP3 connection"
    );
}

#[test]
fn unknown_server_command_disables() {
    let (h, a) = run(&[
        S(b"+OK example.com POP3-Server\r\n"),
        C(b"LIST\r\n"),
        S(b"GARBAGE (and LIST response missing .)\r\n"),
        S(b"+OK 2 messages (320 octets)\r\n1 120\r\n.\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nx\r\n.\r\n"),
    ]);
    assert!(a.disabled());
    assert_eq!(
        weird_pairs(&h),
        vec![(
            "pop3_server_command_unknown".into(),
            "GARBAGE".into(),
            "POP3".into()
        )]
    );
    assert!(h.pop3().is_empty());
}

#[test]
fn max_analyzer_violations_like_zeek() {
    let cfg = Pop3Config {
        max_analyzer_violations: 5,
        dpd_ignore_violations: true,
        ..Pop3Config::default()
    };
    let (h, a) = run_cfg(
        cfg,
        &[
            S(b"+OK example.com POP3-Server\n"),
            C(b"USER zeek@zeek.org\n"),
            S(b"+OK Please enter your password\n"),
            C(b"PASS zeek\n"),
            S(b"+OK mailbox locked and ready\n"),
            C(b"STAT\n"),
            S(b"+\r\r..\r\r..x\r\r\n"),
            S(b".\r\r\t\t'\n"),
            S(b"x\n"),
            S(b"+OK 1 236\n"),
            C(b"QUIT\n"),
            S(b"+OK Bye\n"),
        ],
    );
    assert!(!a.disabled());
    assert_eq!(a.stats().violations, 10);
    assert_eq!(
        req_rep(&h),
        vec![
            "rep OK example.com POP3-Server",
            "req USER zeek@zeek.org",
            "rep OK Please enter your password",
            "req PASS ",
            "rep OK mailbox locked and ready",
            "req STAT ",
            "rep OK 1 236",
            "req QUIT ",
            "rep OK Bye",
        ]
    );
    let mut w = weird_pairs(&h);
    w.sort();
    assert_eq!(
        w,
        vec![
            (
                "line_terminated_with_single_CR".into(),
                "-".into(),
                "CONTENTLINE".into()
            ),
            (
                "pop3_server_command_unknown".into(),
                "+".into(),
                "POP3".into()
            ),
            (
                "too_many_analyzer_violations".into(),
                "-".into(),
                "POP3".into()
            ),
        ]
    );
    assert_eq!(h.pop3()[0].login, "success");
}

#[test]
fn violations_after_ten_kib_do_not_disable() {
    let big = vec![b'x'; 11000];
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    let (_, a) = run(&[S(b"+OK hi\r\n"), C(b"CAPA\r\n"), S(big), S(b"\r\nJUNK\r\n")]);
    // The 11000-byte line arrives in the same delivery as nothing else; its
    // violation happens when more than 10 KiB have been seen.
    assert!(!a.disabled());
}

#[test]
fn client_and_server_keyword_confusion() {
    let (h, _) = run(&[
        S(b"+OK hi\r\n"),
        C(b"+OK\r\n"),
        S(b"USER x\r\n"),
        S(b"-ERR\r\n"),
    ]);
    let names = h.weird_names();
    assert!(names.contains(&"pop3_client_sending_server_commands"));
    assert!(names.contains(&"pop3_server_sending_client_commands"));
}

#[test]
fn empty_and_blank_client_lines() {
    let (h, _) = run(&[S(b"+OK hi\r\n"), C(b"\r\n"), C(b"   \r\n")]);
    assert_eq!(
        weird_pairs(&h),
        vec![(
            "pop3_client_command_unknown".into(),
            "???".into(),
            "POP3".into()
        )]
    );
}

#[test]
fn nul_truncates_command_text() {
    let (h, _) = run(&[S(b"+OK hi\r\n"), C(b"USER bob\0evil\r\n"), S(b"+OK\r\n")]);
    assert!(evs(&h).contains(&"req USER bob".to_string()));
}

#[test]
fn too_many_pending_commands() {
    let mut steps = vec![S(b"+OK hi\r\n")];
    for _ in 0..12 {
        steps.push(C(b"NOOP\r\n"));
    }
    let (h, a) = run(&steps);
    assert_eq!(
        h.weird_names(),
        vec!["pop3_client_too_many_pending_commands"]
    );
    assert_eq!(a.stats().pending_dropped, 2);
}

#[test]
fn pending_bytes_bounded() {
    let cfg = Pop3Config {
        max_pending_commands: 0,
        max_pending_bytes: 100,
        ..Pop3Config::default()
    };
    let mut steps = vec![S(b"+OK hi\r\n")];
    for _ in 0..50 {
        steps.push(C(b"NOOP 0123456789\r\n"));
    }
    let (h, a) = run_cfg(cfg, &steps);
    assert!(h.weirds().is_empty());
    assert!(a.stats().pending_dropped > 0);
    assert!(a.stats().pending_peak_bytes <= 100 + 15);
}

#[test]
fn top_is_partial_and_not_counted_as_retrieved() {
    let (h, a) = run(&[
        S(b"+OK hi\r\n"),
        C(b"USER u\r\n"),
        S(b"+OK\r\n"),
        C(b"PASS p\r\n"),
        S(b"+OK\r\n"),
        C(b"TOP 1 0\r\n"),
        S(b"+OK\r\nSubject: x\r\n\r\n.\r\n"),
        C(b"UIDL 1\r\n"),
        S(b"+OK 1 abc\r\n"),
    ]);
    let r = h.pop3()[0];
    assert_eq!(r.messages_retrieved, 0);
    assert_eq!(r.bytes_retrieved, 0);
    assert_eq!(a.stats().data_lines, 2);
    assert!(req_rep(&h).contains(&"rep OK 1 abc".to_string()));
}

#[test]
fn gap_in_message_and_eof_flush() {
    let (h, a) = run(&[
        S(b"+OK hi\r\n"),
        C(b"USER u\r\nPASS p\r\n"),
        S(b"+OK\r\n+OK\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: x\r\n\r\npart"),
        Gap(false, 100),
        S(b"ial\r\nrest\r\n.\r\n"),
        C(b"QUIT"),
    ]);
    assert_eq!(a.stats().gaps, 1);
    // The partial line before the gap is lost; QUIT without CRLF is
    // flushed at end of stream.
    let e = evs(&h);
    assert!(e.contains(&"data ial".to_string()));
    assert!(e.contains(&"req QUIT ".to_string()));
}

#[test]
fn events_off_builds_nothing() {
    let mut h = harness().with_events(false);
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    let mut cx = h.cx();
    a.deliver(&mut cx, false, GREETING);
    a.deliver(&mut cx, true, b"CAPA\r\n");
    a.deliver(&mut cx, false, CAPA_REPLY);
    a.done(&mut cx);
    assert!(h.events().is_empty());
    assert_eq!(h.pop3().len(), 1);
    assert_eq!(h.conn.service, vec!["pop3"]);
}

#[test]
fn no_data_no_row() {
    let (h, _) = run(&[]);
    assert!(h.out.records.is_empty());
}

fn extracted(h: &Harness) -> (Vec<u8>, Vec<mailtap_core::mail::EmailMeta>) {
    let mut data = Vec::new();
    let mut metas = Vec::new();
    for r in &h.out.records {
        match r {
            Record::EmailData(c) => data.extend_from_slice(&c.data),
            Record::EmailMeta(m) => metas.push((**m).clone()),
            _ => {}
        }
    }
    (data, metas)
}

#[test]
fn retr_and_top_go_through_mime_and_extraction() {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    let mut cx = h.cx();
    let body: &[u8] = b"From: a@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n..leading dot\nLF line\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n";
    for (o, d) in [
        (false, &b"+OK hi\r\n"[..]),
        (true, b"USER bob\r\nPASS pw\r\n"),
        (false, b"+OK\r\n+OK\r\n"),
        (true, b"RETR 1\r\n"),
        (false, b"+OK 300 octets\r"),
        (false, b"\n"),
    ] {
        a.deliver(&mut cx, o, d);
    }
    // The body, cut right after a CR to exercise the late LF.
    let cut = body.iter().position(|&c| c == b'\r').unwrap() + 1;
    a.deliver(&mut cx, false, &body[..cut]);
    a.deliver(&mut cx, false, &body[cut..]);
    a.deliver(&mut cx, false, b".\r\n");
    a.deliver(&mut cx, true, b"TOP 1 0\r\n");
    a.deliver(&mut cx, false, b"+OK\r\nSubject: t\r\n\r\n.\r\n");
    a.done(&mut cx);
    let (data, metas) = extracted(&h);
    let unstuffed: Vec<u8> = {
        let t = String::from_utf8(body.to_vec()).unwrap();
        t.replace("\n..leading", "\n.leading").into_bytes()
    };
    let mut want = unstuffed.clone();
    want.extend_from_slice(b"Subject: t\r\n\r\n");
    assert_eq!(data, want);
    assert_eq!(metas.len(), 2);
    let m = &metas[0];
    assert_eq!(m.protocol, Some(mailtap_core::mail::MailProtocol::Pop3));
    assert_eq!(m.user.as_deref(), Some(&b"bob"[..]));
    assert_eq!(m.n, 1);
    assert!(!m.partial && m.complete);
    assert_eq!(m.size, unstuffed.len() as u64);
    assert_eq!(m.headers.subject.as_deref(), Some("café"));
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].filename.as_deref(), Some("x.bin"));
    assert!(metas[1].partial);
    assert_eq!(metas[1].n, 2);
    let files: Vec<_> = h
        .out
        .records
        .iter()
        .filter_map(|r| match r {
            Record::File(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    assert!(files
        .iter()
        .all(|f| f.source == Some("POP3") && f.is_orig == Some(false)));
    let r = h.pop3()[0];
    assert_eq!(r.messages_retrieved, 1);
    assert_eq!(r.bytes_retrieved, unstuffed.len() as u64);
}

#[test]
fn message_cut_by_connection_end_is_incomplete() {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    let mut cx = h.cx();
    a.deliver(&mut cx, false, b"+OK\r\n");
    a.deliver(&mut cx, true, b"USER u\r\nPASS p\r\nRETR 1\r\n");
    a.deliver(&mut cx, false, b"+OK\r\n+OK\r\n+OK\r\nSubject: x\r\n\r\nbo");
    a.gap(&mut cx, false, 10);
    a.deliver(&mut cx, false, b"dy\r\n");
    a.done(&mut cx);
    let (_, metas) = extracted(&h);
    assert_eq!(metas.len(), 1);
    assert!(!metas[0].complete);
    assert_eq!(metas[0].missing_bytes, 10);
}

#[test]
fn dpd_halves() {
    assert!(dpd_resp_matches(b"+OK POP3 ready\r\n"));
    assert!(!dpd_resp_matches(b" +OK"));
    assert!(!dpd_resp_matches(b"220 smtp"));
    assert!(dpd_resp_possible(b"+O"));
    assert!(dpd_resp_possible(b""));
    assert!(!dpd_resp_possible(b"22"));
    assert!(dpd_orig_matches(b"USER bob\r\n"));
    assert!(dpd_orig_matches(b"capa\r\n"));
    assert!(dpd_orig_matches(b"  apop x y\r\n"));
    assert!(dpd_orig_matches(b"*2\r\n$4\r\nAUTH\r\n"));
    assert!(dpd_orig_matches(b"STLS"));
    assert!(!dpd_orig_matches(b"USERNAME\r\n"));
    assert!(!dpd_orig_matches(b"EHLO x\r\n"));
    assert!(!dpd_orig_matches(b"xUSER bob\r\n"));
}

/// Everything the analyzer produced, as comparable strings.
fn fingerprint(h: &Harness) -> Vec<String> {
    h.out
        .records
        .iter()
        .map(|r| match r {
            Record::Event(e) => format!("{:?}", e.event),
            Record::Weird(w) => format!("weird {} {:?} {:?}", w.name, w.addl, w.source),
            Record::Pop3(p) => format!("{p:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

const SESSION: &[(bool, &[u8])] = &[
    (false, b"+OK POP3 ready <1.2@x>\r\n"),
    (true, b"CAPA\r\nAUTH PLAIN\r\n"),
    (false, b"+OK caps\r\nSASL PLAIN\r\n.\r\n+ \r\n"),
    (true, b"AGJvYgBwdw==\r\n"),
    (false, b"+OK in\r\n"),
    (true, b"STAT\r\nLIST\r\nRETR 1\r\nTOP 1 1\r\nDELE 1\r\n  noop  x  \r\nBOGUS\r\n"),
    (
        false,
        b"+OK 1 30\r\n+OK\r\n1 30\r\n.\r\n+OK\r\nSubject: a\r\n\r\n..x\r\n\r\rbody\r\n.\r\n+OK\r\nSubject: a\r\n\r\n.\r\n+OK gone\r\n+OK\r\n-ERR what\r\n",
    ),
    (true, b"QUIT\n"),
    (false, b"+OK bye\n"),
];

fn run_split(cuts: &[Vec<usize>]) -> Vec<String> {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    for (i, (orig, data)) in SESSION.iter().enumerate() {
        let mut cx = h.cx();
        let mut pts: Vec<usize> = cuts
            .get(i)
            .map(|c| c.iter().map(|x| x % (data.len() + 1)).collect())
            .unwrap_or_default();
        pts.push(0);
        pts.push(data.len());
        pts.sort_unstable();
        pts.dedup();
        for w in pts.windows(2) {
            a.deliver(&mut cx, *orig, &data[w[0]..w[1]]);
        }
    }
    let mut cx = h.cx();
    a.done(&mut cx);
    fingerprint(&h)
}

proptest! {
    #[test]
    fn any_split_gives_the_same_output(
        cuts in proptest::collection::vec(proptest::collection::vec(0usize..400, 0..8), SESSION.len())
    ) {
        let whole = run_split(&[]);
        prop_assert!(whole.iter().any(|x| x.contains("Pop3LoginSuccess")));
        prop_assert!(whole.iter().any(|x| x.contains("EmailMeta")));
        prop_assert_eq!(run_split(&cuts), whole);
    }

    #[test]
    fn never_panics(
        pieces in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)),
            0..40,
        )
    ) {
        let cfg = Pop3Config { max_line_length: 32, ..Pop3Config::default() };
        let mut h = harness();
        let mut a = Pop3Analyzer::new(Arc::new(cfg));
        let mut cx = h.cx();
        for (orig, gap, data) in &pieces {
            if a.disabled() { break; }
            if *gap {
                a.gap(&mut cx, *orig, data.len() as u64 + 1);
            } else {
                a.deliver(&mut cx, *orig, data);
            }
        }
        a.eof(&mut cx, true);
        a.eof(&mut cx, false);
        a.done(&mut cx);
    }

    #[test]
    fn never_panics_on_pop3ish_text(
        lines in proptest::collection::vec(
            (any::<bool>(), prop::sample::select(vec![
                "+OK", "-ERR", "+", ".", "..", "USER a", "PASS b", "APOP a b", "AUTH",
                "AUTH PLAIN", "AUTH LOGIN", "AUTH CRAM-MD5", "AUTH X", "AGJvYgBwdw==", "Ym9i",
                "STAT", "LIST", "LIST 1", "RETR 1", "TOP 1 2", "DELE 1", "RSET", "NOOP",
                "LAST", "QUIT", "CAPA", "UIDL", "STLS", "XSENDER 1", "garbage", "",
            ])),
            0..60,
        )
    ) {
        let mut h = harness();
        let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
        let mut cx = h.cx();
        for (orig, l) in &lines {
            if a.disabled() { break; }
            let mut d = l.as_bytes().to_vec();
            d.extend_from_slice(b"\r\n");
            a.deliver(&mut cx, *orig, &d);
        }
        a.done(&mut cx);
        prop_assert!(h.pop3().len() <= 1);
    }
}

#[test]
fn pop3_files_like_zeek_depth_zero_no_filename_dots_kept() {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    let mut cx = h.cx();
    a.deliver(&mut cx, false, b"+OK\r\n");
    a.deliver(&mut cx, true, b"USER u\r\nPASS p\r\nRETR 1\r\n");
    a.deliver(&mut cx, false, b"+OK\r\n+OK\r\n+OK 99\r\n");
    a.deliver(
        &mut cx,
        false,
        b"Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\n..dot\r\nx\r\n.\r\n",
    );
    a.done(&mut cx);
    let files = h.files();
    assert_eq!(files.len(), 1);
    // Zeek: depth 0, no filename, and the dot-stuffed line as sent.
    assert_eq!(files[0].depth, 0);
    assert_eq!(files[0].filename, None);
    assert_eq!(files[0].seen_bytes, b"..dot\r\nx\r\n".len() as u64);
    // The extracted message is unstuffed and keeps its attachment name.
    let (data, metas) = extracted(&h);
    assert!(data.ends_with(b"\r\n.dot\r\nx\r\n"));
    assert_eq!(metas[0].attachments[0].filename.as_deref(), Some("a.txt"));
}

fn midstream_run(steps: &[Step]) -> (Harness, Vec<u8>, Vec<mailtap_core::mail::EmailMeta>) {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = Pop3Analyzer::new(Arc::new(Pop3Config::default()));
    a.start_midstream();
    for s in steps {
        let mut cx = h.cx();
        match s {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, *o, *n),
        }
    }
    let mut cx = h.cx();
    a.eof(&mut cx, true);
    a.eof(&mut cx, false);
    a.done(&mut cx);
    let (data, metas) = extracted(&h);
    (h, data, metas)
}

#[test]
fn midstream_pickup_inside_retr_response() {
    let (h, data, metas) = midstream_run(&[
        S(b"ody line\r\n..dot\r\nlast\r"),
        S(b"\n.\r\n"),
        C(b"RETR 2\r\n"),
        S(b"+OK 30 octets\r\nSubject: s\r\n\r\n..b\r\n.\r\n"),
        C(b"LIST\r\n"),
        S(b"+OK\r\n1 100\r\n2 30\r\n.\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK bye\r\n"),
    ]);
    assert_eq!(metas.len(), 2, "{metas:?}");
    assert!(!metas[0].complete && metas[0].partial);
    assert_eq!(metas[0].size, 22);
    assert!(metas[1].complete && !metas[1].partial);
    assert_eq!(metas[1].size, 18);
    assert_eq!(
        data,
        b"ody line\r\n.dot\r\nlast\r\nSubject: s\r\n\r\n.b\r\n"
    );
    assert_eq!(metas[1].headers.subject.as_deref(), Some("s"));
    assert_eq!(h.files().len(), 1);
}

#[test]
fn midstream_pickup_in_listing_extracts_nothing() {
    let (_, _, metas) = midstream_run(&[
        S(b"3 200\r\n4 100\r\n.\r\n"),
        C(b"RETR 4\r\n"),
        S(b"+OK\r\nSubject: s\r\n\r\nb\r\n.\r\n"),
    ]);
    assert_eq!(metas.len(), 1);
    assert!(metas[0].complete && !metas[0].partial);
}

#[test]
fn midstream_greeting_first_is_a_normal_session() {
    let (h, _, metas) = midstream_run(&[
        S(b"+OK ready\r\n"),
        C(b"USER bob\r\n"),
        S(b"+OK\r\n"),
        C(b"PASS x\r\n"),
        S(b"+OK\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: s\r\n\r\nb\r\n.\r\n"),
    ]);
    assert_eq!(metas.len(), 1);
    assert!(metas[0].complete);
    assert_eq!(metas[0].user.as_deref(), Some(&b"bob"[..]));
    assert_eq!(h.pop3()[0].messages_retrieved, 1);
}

#[test]
fn midstream_pickup_at_capa_before_login_follows_the_login() {
    // The capture starts with the client's CAPA, before the login: CAPA is
    // valid in both states, so the guess that the session is past its
    // login is only a guess, and the AUTH that follows settles it (found
    // by tests/imperfect_truth.rs: such sessions lost every message).
    let (h, _, metas) = midstream_run(&[
        C(b"CAPA\r\n"),
        S(b"+OK\r\nCAPA\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"),
        C(b"AUTH PLAIN\r\n"),
        S(b"+ \r\n"),
        C(b"AGJvYgB4\r\n"),
        S(b"+OK Logged in.\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: s\r\n\r\nb\r\n.\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK bye\r\n"),
    ]);
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(metas[0].complete && !metas[0].partial);
    assert_eq!(metas[0].user.as_deref(), Some(&b"bob"[..]));
    let row = &h.pop3()[0];
    assert_eq!(row.messages_retrieved, 1);
}

#[test]
fn midstream_pickup_at_a_capa_response_is_not_a_greeting() {
    // The capture starts with the answer to CAPA: its `+OK` status line is
    // not the greeting, and the lines after it are not client commands
    // sent by the server (issue 11: such sessions were lost whole).
    let (h, _, metas) = midstream_run(&[
        S(b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"),
        C(b"USER bob\r\n"),
        S(b"+OK\r\n"),
        C(b"PASS x\r\n"),
        S(b"+OK\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK\r\nSubject: s\r\n\r\nb\r\n.\r\n"),
    ]);
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(metas[0].complete && !metas[0].partial);
    assert_eq!(metas[0].user.as_deref(), Some(&b"bob"[..]));
    assert_eq!(h.pop3()[0].messages_retrieved, 1);
    assert!(h.weirds().is_empty(), "{:?}", h.weird_names());
}

#[test]
fn midstream_pickup_at_the_greeting_is_a_whole_session() {
    // Handshake not captured, data from the greeting on: the greeting is
    // recognised when the client's first command answers it, and CAPA
    // (allowed in any state) leaves the session in AUTHORIZATION, so the
    // AUTH exchange and the RETR after it are analysed as usual.
    let (h, data, metas) = midstream_run(&[
        S(b"+OK Dovecot ready.\r\n"),
        C(b"CAPA\r\n"),
        S(b"+OK\r\nCAPA\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
        C(b"AUTH PLAIN\r\n"),
        S(b"+ \r\n"),
        C(b"AGJvYgB4\r\n"),
        S(b"+OK Logged in.\r\n"),
        C(b"RETR 1\r\n"),
        S(b"+OK 22 octets\r\nSubject: s\r\n\r\nbody\r\n.\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK bye\r\n"),
    ]);
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(metas[0].complete && !metas[0].partial, "{metas:?}");
    assert_eq!(data, b"Subject: s\r\n\r\nbody\r\n");
    assert!(!metas[0].missing_unknown);
    assert_eq!(h.pop3()[0].messages_retrieved, 1);
    assert!(h.weirds().is_empty(), "{:?}", h.weird_names());
}

#[test]
fn midstream_whole_response_leaves_its_status_line_out() {
    let (_, data, metas) = midstream_run(&[
        S(b"+OK 30 octets\r\nSubject: s\r\n\r\nbody\r\n.\r\n"),
        C(b"QUIT\r\n"),
        S(b"+OK bye\r\n"),
    ]);
    assert_eq!(metas.len(), 1, "{metas:?}");
    assert!(metas[0].partial && !metas[0].complete);
    assert_eq!(data, b"Subject: s\r\n\r\nbody\r\n");
    assert!(metas[0].missing_unknown);
}

#[test]
fn cut_lines_in_retr_stay_byte_exact() {
    let mut h = harness();
    h.out.extract_enabled = true;
    let cfg = Pop3Config {
        max_line_length: 32,
        ..Pop3Config::default()
    };
    let mut a = Pop3Analyzer::new(Arc::new(cfg));
    let body: Vec<u8> = [
        &b"Subject: s\r\n\r\n"[..],
        &[b'x'; 100][..],
        b"\r\n",
        &[b'y'; 30][..],
        b".z\r\n",
        &[b'w'; 31][..],
        b"\r",
    ]
    .concat();
    let mut cx = h.cx();
    a.deliver(&mut cx, false, b"+OK\r\n");
    a.deliver(&mut cx, true, b"USER u\r\nPASS p\r\nRETR 1\r\n");
    a.deliver(&mut cx, false, b"+OK\r\n+OK\r\n+OK\r\n");
    a.deliver(&mut cx, false, &body);
    a.deliver(&mut cx, false, b"\nend\r\n.\r\n");
    a.done(&mut cx);
    let (data, metas) = extracted(&h);
    let mut want = body.clone();
    want.extend_from_slice(b"\nend\r\n");
    assert_eq!(data, want);
    assert!(metas[0].complete);
    assert_eq!(metas[0].size, want.len() as u64);
}
