//! Tests of the transcript parser (each fixed ACE defect) and of the
//! collector's file handling.

use crate::collect::*;
use std::io;
use std::sync::atomic::AtomicBool;

#[derive(Default)]
struct Mem {
    bodies: Vec<(u32, Vec<u8>)>,
    msgs: Vec<(SessionInfo, TranscriptMessage)>,
}

impl MessageOut for Mem {
    fn begin(&mut self, n: u32) -> io::Result<()> {
        self.bodies.push((n, Vec::new()));
        Ok(())
    }
    fn body(&mut self, n: u32, b: &[u8]) -> io::Result<()> {
        if let Some((m, v)) = self.bodies.last_mut() {
            assert_eq!(*m, n);
            v.extend_from_slice(b);
        }
        Ok(())
    }
    fn end_body(&mut self, _n: u32) -> io::Result<()> {
        Ok(())
    }
    fn message(&mut self, info: &SessionInfo, m: TranscriptMessage) -> io::Result<()> {
        self.msgs.push((info.clone(), m));
        Ok(())
    }
}

fn parse(t: &str) -> Result<Mem, ParseError> {
    let mut m = Mem::default();
    parse_transcript(t.as_bytes(), 42, 1 << 20, &mut m)?;
    Ok(m)
}

fn body(m: &Mem, n: u32) -> String {
    let b = &m.bodies.iter().find(|(k, _)| *k == n).unwrap().1;
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn spec_transcript() {
    let m = parse(crate::ace::tests::SPEC_TRANSCRIPT).unwrap();
    assert_eq!(m.msgs.len(), 1);
    let (info, msg) = &m.msgs[0];
    assert_eq!(info.orig, Some(("198.51.100.7".parse().unwrap(), 51514)));
    assert_eq!(info.epoch, 1_700_000_000);
    assert_eq!(msg.mailfrom.as_deref(), Some(&b"alice@example.test"[..]));
    assert_eq!(
        msg.rcptto,
        vec![b"bob@example.test".to_vec(), b"carol@example.test".to_vec()]
    );
    assert_eq!(msg.helo.as_deref(), Some(&b"client.example.test"[..]));
    assert_eq!(msg.status_code, Some(250));
    assert_eq!(msg.status_text.as_deref(), Some(&b"2.0.0 queued"[..]));
    assert!(msg.complete);
    assert_eq!(
        body(&m, 1),
        "Subject: hello\n\n.this line was sent as \"..this line\" (already unstuffed)\n"
    );
    assert_eq!(msg.size, body(&m, 1).len() as u64);
    assert_eq!(parse_headers(&msg.head).subject.as_deref(), Some("hello"));
}

#[test]
fn defect_ipv6_header() {
    let t = "2607:5300:60:1::25:40312/tcp\n1700000000\n> MAIL FROM:<a@x>\n> RCPT TO:<b@x>\n> DATA \n< DATA 354 go\nhi\n> . .\n";
    let m = parse(t).unwrap();
    assert_eq!(m.msgs.len(), 1);
    assert_eq!(
        m.msgs[0].0.orig,
        Some(("2607:5300:60:1::25".parse().unwrap(), 40312))
    );
    assert_eq!(body(&m, 1), "hi\n");
}

#[test]
fn defect_pipelined_rset() {
    // ACE resets on `< RSET 250`, which arrives after the pipelined new
    // envelope and wipes it.
    let t = "1.2.3.4:1/tcp\n1\n> MAIL FROM:<old@x>\n< MAIL 250 ok\n> RSET \n> MAIL FROM:<new@x>\n> RCPT TO:<r@x>\n> DATA \n< RSET 250 ok\n< MAIL 250 ok\n< RCPT 250 ok\n< DATA 354 go\nbody\n> . .\n< . 250 ok\n";
    let m = parse(t).unwrap();
    let msg = &m.msgs[0].1;
    assert_eq!(msg.mailfrom.as_deref(), Some(&b"new@x"[..]));
    assert_eq!(msg.rcptto, vec![b"r@x".to_vec()]);
}

#[test]
fn defect_lower_case_verbs_and_addresses() {
    let t = "1.2.3.4:1/tcp\n1\n> mail from: <a@x>\n> Rcpt To:<b@x> NOTIFY=NEVER\n> rcpt to: c@x\n> data \n< DATA 354 go\nx\n> . .\n";
    let m = parse(t).unwrap();
    let msg = &m.msgs[0].1;
    assert_eq!(msg.mailfrom.as_deref(), Some(&b"a@x"[..]));
    assert_eq!(msg.rcptto, vec![b"b@x".to_vec(), b"c@x".to_vec()]);
}

#[test]
fn defect_null_sender() {
    let t = "1.2.3.4:1/tcp\n1\n> MAIL FROM:<>\n> RCPT TO:<b@x>\n> DATA \n< DATA 354 go\nbounce\n> . .\n";
    let m = parse(t).unwrap();
    assert_eq!(m.msgs[0].1.mailfrom.as_deref(), Some(&b""[..]));
    // And no MAIL at all stays None.
    let m = parse("1.2.3.4:1/tcp\n1\n< DATA 354 go\nx\n> . .\n").unwrap();
    assert_eq!(m.msgs[0].1.mailfrom, None);
}

#[test]
fn rejected_recipients_refused_data_and_status() {
    let t = "1.2.3.4:1/tcp\n1\n\
> MAIL FROM:<a@x>\n> RCPT TO:<bad@x>\n> RCPT TO:<good@x>\n> DATA \n\
< MAIL 250 ok\n< RCPT 550 no such user\n< RCPT 250 ok\n< DATA 554 no valid recipients\n\
> MAIL FROM:<a2@x>\n> RCPT TO:<c@x>\n> DATA \n< MAIL 250 ok\n< RCPT 250 ok\n< DATA 354 go\n\
spam\n> . .\n< . 554 5.7.1 rejected as spam\n";
    let m = parse(t).unwrap();
    assert_eq!(m.msgs.len(), 1);
    let msg = &m.msgs[0].1;
    // The refused DATA's envelope does not leak into the next message.
    assert_eq!(msg.rcptto, vec![b"c@x".to_vec()]);
    assert!(msg.rcptto_rejected.is_empty());
    assert_eq!(msg.status_code, Some(554));
    assert_eq!(msg.trans_depth, 2);

    let t = "1.2.3.4:1/tcp\n1\n> MAIL FROM:<a@x>\n> RCPT TO:<bad@x>\n> RCPT TO:<good@x>\n> DATA \n< MAIL 250 ok\n< RCPT 550 no\n< RCPT 250 ok\n< DATA 354 go\nx\n> . .\n";
    let msg = &parse(t).unwrap().msgs[0].1;
    assert_eq!(msg.rcptto, vec![b"good@x".to_vec()]);
    assert_eq!(msg.rcptto_rejected, vec![(b"bad@x".to_vec(), 550)]);
}

#[test]
fn several_messages_rset_and_truncation() {
    let t = "1.2.3.4:1/tcp\n1\n\
> MAIL FROM:<a@x>\n> RCPT TO:<b@x>\n> DATA \n< DATA 354 go\none\n> . .\n< . 250 ok\n\
> RSET \n< RSET 250 ok\n\
> MAIL FROM:<c@x>\n> RCPT TO:<d@x>\n> DATA \n< DATA 354 go\ntwo\n";
    let m = parse(t).unwrap();
    assert_eq!(m.msgs.len(), 2);
    assert_eq!(body(&m, 1), "one\n");
    assert_eq!(body(&m, 2), "two\n");
    assert!(m.msgs[0].1.complete);
    assert!(!m.msgs[1].1.complete);
    assert_eq!(m.msgs[1].1.mailfrom.as_deref(), Some(&b"c@x"[..]));
    assert_eq!(m.msgs[1].1.status_code, None);
}

#[test]
fn headerless_file_keeps_first_line_and_uses_fallback_time() {
    let t = "> MAIL FROM:<a@x>\n> RCPT TO:<b@x>\n> DATA \nReturn-Path: <a@x>\nSubject: s\n\nbody\n> . .\n";
    let m = parse(t).unwrap();
    assert_eq!(m.msgs.len(), 1);
    assert_eq!(m.msgs[0].0.epoch, 42);
    assert_eq!(m.msgs[0].0.orig, None);
    assert_eq!(body(&m, 1), "Return-Path: <a@x>\nSubject: s\n\nbody\n");
}

#[test]
fn garbage_and_bad_epoch_are_errors() {
    assert!(matches!(
        parse("invalid data"),
        Err(ParseError::BadHeader(_))
    ));
    assert!(matches!(
        parse("1.2.3.4:25/tcp\nnot a number\n"),
        Err(ParseError::BadEpoch(_))
    ));
    // Empty and header-only files are fine: no messages.
    assert!(parse("").unwrap().msgs.is_empty());
    assert!(parse("1.2.3.4:25/tcp\n17\n").unwrap().msgs.is_empty());
}

#[test]
fn long_lines_and_binary_bytes_pass_through() {
    let long = "x".repeat(300);
    let mut t = format!("1.2.3.4:1/tcp\n1\n< DATA 354 go\n{long}\n").into_bytes();
    t.extend_from_slice(&[0xc3, 0xa9, 0xff, b'\n']);
    t.extend_from_slice(b"> . .\n");
    let mut m = Mem::default();
    parse_transcript(&t[..], 0, 64, &mut m).unwrap();
    let mut expect = long.into_bytes();
    expect.extend_from_slice(&[b'\n', 0xc3, 0xa9, 0xff, b'\n']);
    assert_eq!(m.bodies[0].1, expect);
    assert!(m.msgs[0].1.complete);
}

#[test]
fn rfc2047_headers() {
    let h = parse_headers(
        b"Subject: =?UTF-8?B?aMOpbGxv?= =?iso-8859-1?Q?_w=E9rld?=\r\nFrom: a\r\n b\r\nX-Mailer: m\r\n\r\nSubject: no",
    );
    assert_eq!(h.subject.as_deref(), Some("héllo wérld"));
    assert_eq!(h.from.as_deref(), Some("a b"));
    assert_eq!(h.user_agent.as_deref(), Some("m"));
}

// ------------------------------------------------------------ collector

fn collector() -> (tempfile::TempDir, AceCollector) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("ace")).unwrap();
    let c = AceCollector::new(CollectorConfig::new(
        d.path().join("ace"),
        d.path().join("out"),
    ))
    .unwrap();
    (d, c)
}

#[test]
fn collector_writes_pairs_and_removes_sessions() {
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    std::fs::write(
        ace.join("CyEkdLKUYIgTyYhAl"),
        crate::ace::tests::SPEC_TRANSCRIPT,
    )
    .unwrap();
    // Not ready yet: untouched.
    std::fs::write(ace.join("Cnotready"), "1.2.3.4:1/tcp\n1\n").unwrap();
    std::fs::write(ace.join("CyEkdLKUYIgTyYhAl.ready"), "").unwrap();
    assert_eq!(c.scan(&AtomicBool::new(false)).unwrap(), 1);
    assert!(!ace.join("CyEkdLKUYIgTyYhAl").exists());
    assert!(!ace.join("CyEkdLKUYIgTyYhAl.ready").exists());
    assert!(ace.join("Cnotready").exists());
    let out = d.path().join("out");
    let eml = std::fs::read_to_string(out.join("CyEkdLKUYIgTyYhAl-1.eml")).unwrap();
    assert!(eml.starts_with("Subject: hello\n"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("CyEkdLKUYIgTyYhAl-1.json")).unwrap())
            .unwrap();
    assert_eq!(v["uid"], "CyEkdLKUYIgTyYhAl");
    assert_eq!(v["ts"], serde_json::json!(1700000000.0));
    assert_eq!(v["id"]["orig_h"], "198.51.100.7");
    assert_eq!(v["id"]["orig_p"], 51514);
    assert_eq!(v["id"]["resp_h"], serde_json::Value::Null);
    assert_eq!(v["line_endings"], "lf");
    assert_eq!(v["source"], "ace-transcript");
    assert_eq!(v["status_code"], 250);
    assert_eq!(
        v["rcptto"],
        serde_json::json!(["bob@example.test", "carol@example.test"])
    );
    assert_eq!(v["size"], eml.len());
    // No temporary names left behind.
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(c.counters().sessions, 1);
    assert_eq!(c.counters().messages, 1);
}

#[test]
fn collector_moves_unparsable_files_to_review() {
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    std::fs::write(ace.join("Cbad"), "invalid data").unwrap();
    std::fs::write(ace.join("Cbad.ready"), "").unwrap();
    std::fs::write(ace.join("Cgone.ready"), "").unwrap();
    c.scan(&AtomicBool::new(false)).unwrap();
    assert!(!ace.join("Cbad").exists());
    assert!(!ace.join("Cbad.ready").exists());
    assert_eq!(
        std::fs::read_to_string(ace.join("review").join("Cbad")).unwrap(),
        "invalid data"
    );
    assert!(!ace.join("Cgone.ready").exists());
    assert_eq!(c.counters().review, 1);
    assert_eq!(c.counters().missing_session, 1);
    assert_eq!(std::fs::read_dir(d.path().join("out")).unwrap().count(), 0);
}

#[test]
fn collector_needs_an_existing_ace_dir() {
    let d = tempfile::tempdir().unwrap();
    let e = AceCollector::new(CollectorConfig::new(
        d.path().join("nope"),
        d.path().join("o"),
    ))
    .err()
    .unwrap();
    assert!(e.to_string().contains("nope"), "{e}");
}

// ------------------------------------------------------ hostile input

#[test]
fn collector_never_follows_links_or_reads_outside_its_directory() {
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    // A secret outside the directory, linked in as a session and as an
    // unparsable one (the issue saw its first line in a warning).
    let secret = d.path().join("secret");
    std::fs::write(&secret, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::os::unix::fs::symlink(&secret, ace.join("Clink")).unwrap();
    std::fs::write(ace.join("Clink.ready"), "").unwrap();
    // A FIFO must not block the collector.
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    mknodat(
        CWD,
        ace.join("Cfifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    std::fs::write(ace.join("Cfifo.ready"), "").unwrap();
    c.scan(&AtomicBool::new(false)).unwrap();
    assert_eq!(c.counters().not_regular, 2);
    assert_eq!(c.counters().review, 0);
    assert_eq!(c.counters().messages, 0);
    // The link and the secret are untouched; nothing was copied anywhere.
    assert!(std::fs::symlink_metadata(ace.join("Clink"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:x:0:0:root:/root:/bin/bash\n"
    );
    assert!(!ace.join("Clink.ready").exists());
    assert_eq!(std::fs::read_dir(ace.join("review")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(d.path().join("out")).unwrap().count(), 0);
}

#[test]
fn unparsable_file_excerpt_is_bounded_and_escaped() {
    let mut junk = b"\x1b[2J\x07evil\r".to_vec();
    junk.extend_from_slice(&[b'A'; 10_000]);
    let mut m = Mem::default();
    let e = parse_transcript(&junk[..], 0, 1 << 20, &mut m)
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        !text.contains('\x1b') && !text.contains('\x07') && !text.contains('\r'),
        "{text}"
    );
    assert!(text.contains("\\x1b"), "{text}");
    assert!(text.len() < 200, "{} bytes: {text}", text.len());
}

#[test]
fn distinct_session_names_never_share_an_output_name() {
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    let names = ["a.b", "a_b", "a b", "a:b"];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(
            ace.join(n),
            format!("1.2.3.4:1/tcp\n1\n< DATA 354 go\nmessage {i}\n> . .\n"),
        )
        .unwrap();
        std::fs::write(ace.join(format!("{n}.ready")), "").unwrap();
    }
    c.scan(&AtomicBool::new(false)).unwrap();
    assert_eq!(c.counters().messages, 4);
    let out = d.path().join("out");
    let mut bodies: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec!["message 0\n", "message 1\n", "message 2\n", "message 3\n"]
    );
    // The JSON names the session as it was called.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("a%2Eb-1.json")).unwrap()).unwrap();
    assert_eq!(v["uid"], "a.b");
}

#[test]
fn recipients_are_capped_and_the_drop_counted() {
    let mut t = String::from("1.2.3.4:1/tcp\n1\n> MAIL FROM:<a@x>\n");
    for i in 0..(RCPT_MAX + 250) {
        t.push_str(&format!("> RCPT TO:<r{i}@x>\n"));
    }
    t.push_str("< DATA 354 go\nx\n> . .\n");
    let m = parse(&t).unwrap();
    let msg = &m.msgs[0].1;
    assert_eq!(msg.rcptto.len(), RCPT_MAX);
    assert_eq!(msg.rcptto_dropped, 250);
    // And in the collector's JSON.
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    std::fs::write(ace.join("Cmany"), &t).unwrap();
    std::fs::write(ace.join("Cmany.ready"), "").unwrap();
    c.scan(&AtomicBool::new(false)).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("out/Cmany-1.json")).unwrap()).unwrap();
    assert_eq!(v["rcptto"].as_array().unwrap().len(), RCPT_MAX);
    assert_eq!(v["rcptto_limit"], RCPT_MAX);
    assert_eq!(v["rcptto_dropped"], 250);
}

#[test]
fn far_past_epoch_is_clamped_not_overflowed() {
    let (d, mut c) = collector();
    let ace = d.path().join("ace");
    std::fs::write(
        ace.join("Cold"),
        "1.2.3.4:1/tcp\n-99999999999\n< DATA 354 go\nx\n> . .\n",
    )
    .unwrap();
    std::fs::write(ace.join("Cold.ready"), "").unwrap();
    c.scan(&AtomicBool::new(false)).unwrap();
    assert_eq!(c.counters().messages, 1);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("out/Cold-1.json")).unwrap()).unwrap();
    assert!(v["ts"].as_f64().unwrap() < -9.2e9, "{}", v["ts"]);
}
