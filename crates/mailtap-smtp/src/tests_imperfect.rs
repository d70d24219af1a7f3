//! Imperfect traffic (issue 11): connections picked up mid-stream, content
//! gaps, over-long lines, pipelined BDAT: what is logged and extracted.

use crate::testutil::{harness, Harness};
use crate::{SmtpAnalyzer, SmtpConfig};
use mailtap_core::mail::EmailMeta;
use mailtap_core::{Event, Record, TcpAnalyzer};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Step {
    C(&'static [u8]),
    S(&'static [u8]),
    Gap(bool, u64),
}
use Step::{Gap, C, S};

struct Out {
    h: Harness,
    /// Extracted bytes per message number.
    data: BTreeMap<u32, Vec<u8>>,
    metas: Vec<EmailMeta>,
}

fn go(cfg: SmtpConfig, midstream: bool, steps: &[Step]) -> Out {
    let mut h = harness();
    h.out.extract_enabled = true;
    let mut a = SmtpAnalyzer::new(Arc::new(cfg));
    if midstream {
        a.start_midstream();
    }
    for (i, s) in steps.iter().enumerate() {
        h.ts = mailtap_core::Timestamp(1_000_000_000 + i as i64 * 1000);
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
    let mut data: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut metas = Vec::new();
    for r in &h.out.records {
        match r {
            Record::EmailData(c) => data.entry(c.n).or_default().extend_from_slice(&c.data),
            Record::EmailMeta(m) => metas.push((**m).clone()),
            _ => {}
        }
    }
    Out { h, data, metas }
}

fn mid(steps: &[Step]) -> Out {
    go(SmtpConfig::default(), true, steps)
}

fn sha(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The meta of message `n`, checked against its bytes.
fn msg(o: &Out, n: u32) -> (&EmailMeta, &[u8]) {
    let m = o.metas.iter().find(|m| m.n == n).expect("meta");
    let d = o.data.get(&n).map_or(&[][..], Vec::as_slice);
    assert_eq!(m.size, d.len() as u64, "size of message {n}");
    assert_eq!(m.sha256, sha(d), "sha256 of message {n}");
    (m, d)
}

const SECOND: &[Step] = &[
    C(b"MAIL FROM:<a@x.example>\r\n"),
    S(b"250 ok\r\n"),
    C(b"RCPT TO:<b@y.example>\r\n"),
    S(b"250 ok\r\n"),
    C(b"DATA\r\n"),
    S(b"354 go\r\n"),
    C(b"Subject: two\r\n\r\nbody two\r\n..dot\r\n.\r\n"),
    S(b"250 queued\r\n"),
    C(b"QUIT\r\n"),
    S(b"221 bye\r\n"),
];

fn with_second(first: &[Step]) -> Vec<Step> {
    first.iter().chain(SECOND).cloned().collect()
}

fn assert_second_exact(o: &Out, n: u32) {
    let (m, d) = msg(o, n);
    assert_eq!(d, b"Subject: two\r\n\r\nbody two\r\n.dot\r\n");
    assert!(m.complete && !m.partial, "{m:?}");
    assert_eq!(m.mailfrom.as_deref(), Some(&b"a@x.example"[..]));
    assert_eq!(m.rcptto, vec![b"b@y.example".to_vec()]);
    assert_eq!(m.status_code, Some(250));
    assert_eq!(m.headers.subject.as_deref(), Some("two"));
}

#[test]
fn pickup_inside_data() {
    let o = mid(&with_second(&[
        C(b"ne cut in the middle\r\n..stuffed\r\nlast line\r\n"),
        C(b".\r\n"),
        S(b"250 2.0.0 queued\r\n"),
    ]));
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"ne cut in the middle\r\n.stuffed\r\nlast line\r\n");
    assert!(!m.complete && m.partial);
    assert!(m.missing_unknown, "the start was not seen");
    assert_eq!(m.status_code, Some(250));
    assert_second_exact(&o, 2);
    // Two rows: the transaction picked up (what is known) and the next.
    let rows = o.h.smtp();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0].last_reply.as_deref(),
        Some(&b"250 2.0.0 queued"[..])
    );
    assert_eq!(rows[1].mailfrom.as_deref(), Some(&b"a@x.example"[..]));
    // Nothing of the tail went through MIME: no files for it.
    assert!(o.h.files().iter().all(|f| f.seen_bytes > 0));
}

#[test]
fn pickup_inside_bdat_chunk() {
    let o = mid(&with_second(&[
        C(b"rest of chunk one\r\nno terminator"),
        C(b"BDAT 10 LAST\r\n0123456789"),
        S(b"250 chunk one\r\n"),
        S(b"250 message ok\r\n"),
    ]));
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"rest of chunk one\r\nno terminator0123456789");
    assert!(!m.complete && m.partial);
    assert_second_exact(&o, 2);
}

#[test]
fn pickup_between_transactions() {
    let o = mid(&[
        S(b"ed as 1234\r\n"),
        C(b"MAIL FROM:<a@x.example>\r\n"),
        S(b"250 ok\r\n"),
        C(b"RCPT TO:<b@y.example>\r\n"),
        S(b"250 ok\r\n"),
        C(b"DATA\r\n"),
        S(b"354 go\r\n"),
        C(b"Subject: two\r\n\r\nbody two\r\n..dot\r\n.\r\n"),
        S(b"250 queued\r\n"),
    ]);
    assert_second_exact(&o, 1);
    assert_eq!(o.h.smtp().len(), 1);
    assert_eq!(o.h.files().len(), 1);
}

#[test]
fn pickup_in_multiline_reply_then_pipelined_envelope() {
    let o = mid(&[
        S(b"-SIZE 1000\r\n250-8BITMIME\r\n250 HELP\r\n"),
        C(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n"),
        S(b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n"),
        C(b"Subject: two\r\n\r\nbody two\r\n..dot\r\n.\r\n"),
        S(b"250 queued\r\n"),
    ]);
    let (m, _) = msg(&o, 1);
    assert!(m.complete && !m.partial);
    assert_eq!(m.rcptto, vec![b"b@y.example".to_vec()]);
    assert_eq!(m.rcptto_rejected, vec![(b"c@y.example".to_vec(), 550)]);
    let rows = o.h.smtp();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].mailfrom.as_deref(), Some(&b"a@x.example"[..]));
}

#[test]
fn pickup_between_data_and_354_is_whole_but_envelope_unknown() {
    let o = mid(&with_second(&[
        C(b"TA\r\n"),
        S(b"354 go ahead\r\n"),
        C(b"Subject: one\r\n\r\nbody\r\n.\r\n"),
        S(b"250 ok\r\n"),
    ]));
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: one\r\n\r\nbody\r\n");
    assert!(m.complete && m.partial, "{m:?}");
    assert_eq!(m.mailfrom, None);
    assert_second_exact(&o, 2);
    assert_eq!(o.h.smtp().len(), 2);
}

#[test]
fn pickup_at_session_start_is_a_normal_session() {
    let mut steps = vec![S(b"220 mx ESMTP\r\n"), C(b"EHLO c\r\n"), S(b"250 mx\r\n")];
    steps.extend_from_slice(SECOND);
    let o = mid(&steps);
    assert_second_exact(&o, 1);
    assert_eq!(o.h.smtp()[0].helo.as_deref(), Some(&b"c"[..]));
}

#[test]
fn pickup_idle_session_logs_nothing_wrong() {
    let o = mid(&[
        C(b"NOOP\r\n"),
        S(b"250 ok\r\n"),
        C(b"QUIT\r\n"),
        S(b"221 bye\r\n"),
    ]);
    assert!(o.metas.is_empty());
    assert!(o.h.smtp().is_empty());
    let ev = o.h.events();
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn hunting_lines_raise_no_events() {
    let o = mid(&with_second(&[
        C(b"garbage\r\nmore garbage\r\n"),
        S(b"what\r\n"),
    ]));
    assert_second_exact(&o, 1);
    assert!(!o.h.events().iter().any(|e| matches!(
        e,
        Event::SmtpUnexpected { msg, .. } if msg == b"unknown command"
    )));
}

#[test]
fn split_deliveries_during_hunt_keep_bytes_exact() {
    let o = mid(&with_second(&[
        C(b"line one\r"),
        C(b"\nline two\r\n"),
        C(b".\r\n"),
        S(b"250 ok\r\n"),
    ]));
    let (_, d) = msg(&o, 1);
    assert_eq!(d, b"line one\r\nline two\r\n");
    assert_second_exact(&o, 2);
}

#[test]
fn start_midstream_twice_is_harmless_after_gap() {
    let o = mid(&with_second(&[
        Gap(true, 100),
        C(b"x\r\n.\r\n"),
        S(b"250 ok\r\n"),
    ]));
    assert_second_exact(&o, 2);
    let _ = Gap(false, 0);
}

#[test]
fn pipelined_bdat_keeps_recipients_in_extraction() {
    let o = go(
        SmtpConfig::default(),
        false,
        &[
            S(b"220 mx ESMTP\r\n"),
            C(b"EHLO c\r\n"),
            S(b"250-mx\r\n250 CHUNKING\r\n"),
            C(b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\nBDAT 14 LAST\r\nSubject: b\r\n\r\n"),
            S(b"250 ok\r\n250 ok\r\n550 no\r\n250 done\r\n"),
            C(b"QUIT\r\n"),
            S(b"221 bye\r\n"),
        ],
    );
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: b\r\n\r\n");
    assert!(m.complete);
    assert_eq!(m.rcptto, vec![b"b@y.example".to_vec()]);
    assert_eq!(m.rcptto_rejected, vec![(b"c@y.example".to_vec(), 550)]);
    assert_eq!(m.status_code, Some(250));
    let rows = o.h.smtp();
    assert_eq!(rows.len(), 1);
}

fn small_lines() -> SmtpConfig {
    SmtpConfig {
        max_line_length: 64,
        ..SmtpConfig::default()
    }
}

#[test]
fn cut_data_lines_stay_byte_exact_and_complete() {
    let long: &'static [u8] = Box::leak(
        [
            &b"Subject: long\r\n\r\n"[..],
            &[b'x'; 200][..],
            b"\r\n",
            &[b'y'; 62][..],
            b".z\r\n",
            &[b'w'; 63][..],
            b"\r\nend\r\n",
        ]
        .concat()
        .into_boxed_slice(),
    );
    let o = go(
        small_lines(),
        false,
        &[
            S(b"220 mx\r\n"),
            C(b"EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"),
            S(b"250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            C(long),
            C(b".\r\n"),
            S(b"250 ok\r\n"),
        ],
    );
    let (m, d) = msg(&o, 1);
    assert_eq!(d, long);
    assert!(m.complete, "{m:?}");
    assert_eq!(m.missing_bytes, 0);
    assert!(o.h.weird_names().contains(&"contentline_size_exceeded"));
}

#[test]
fn long_auth_answer_is_one_request_and_pairing_holds() {
    let answer: &'static [u8] = Box::leak([&[b'Q'; 300][..], b"\r\n"].concat().into_boxed_slice());
    let o = go(
        small_lines(),
        false,
        &[
            S(b"220 mx\r\n"),
            C(b"EHLO c\r\n"),
            S(b"250 mx\r\n"),
            C(b"AUTH PLAIN\r\n"),
            S(b"334 \r\n"),
            C(answer),
            S(b"235 ok\r\n"),
            C(b"MAIL FROM:<a@x.example>\r\n"),
            S(b"250 ok\r\n"),
            C(b"RCPT TO:<b@y.example>\r\n"),
            S(b"250 ok\r\n"),
            C(b"DATA\r\n"),
            S(b"354 go\r\n"),
            C(b"Subject: two\r\n\r\nbody two\r\n..dot\r\n.\r\n"),
            S(b"250 queued\r\n"),
        ],
    );
    let reqs: Vec<_> =
        o.h.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::SmtpRequest { command, .. } => {
                    Some(String::from_utf8_lossy(command).into_owned())
                }
                _ => None,
            })
            .collect();
    assert_eq!(reqs, ["EHLO", "AUTH", "**", "MAIL", "RCPT", "DATA", "."]);
    let replies: Vec<_> =
        o.h.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::SmtpReply { code, cmd, .. } => {
                    Some(format!("{code} {}", String::from_utf8_lossy(cmd)))
                }
                _ => None,
            })
            .collect();
    assert_eq!(
        replies,
        [
            "220 >",
            "250 EHLO",
            "334 AUTH",
            "235 AUTH_ANSWER",
            "250 MAIL",
            "250 RCPT",
            "354 DATA",
            "250 ."
        ]
    );
    assert_second_exact(&o, 1);
}

const ENVELOPE: &[Step] = &[
    S(b"220 mx\r\n"),
    C(b"EHLO c\r\n"),
    S(b"250 mx\r\n"),
    C(b"MAIL FROM:<g@x.example>\r\n"),
    S(b"250 ok\r\n"),
    C(b"RCPT TO:<h@y.example>\r\n"),
    S(b"250 ok\r\n"),
    C(b"DATA\r\n"),
    S(b"354 go\r\n"),
];

fn gapped(middle: &[Step]) -> Out {
    let steps: Vec<Step> = ENVELOPE
        .iter()
        .chain(middle)
        .chain(SECOND)
        .cloned()
        .collect();
    go(SmtpConfig::default(), false, &steps)
}

#[test]
fn client_gap_inside_data_counts_missing_and_keeps_envelope() {
    let o = gapped(&[
        C(b"Subject: g\r\n\r\nfirst\r\npar"),
        Gap(true, 50),
        C(b"tial\r\n..after\r\n.\r\n"),
        S(b"250 accepted\r\n"),
    ]);
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: g\r\n\r\nfirst\r\npartial\r\n.after\r\n");
    assert!(!m.complete);
    assert_eq!(m.missing_bytes, 50);
    assert!(
        !m.missing_unknown,
        "the end of data was seen: the count is exact"
    );
    assert_eq!(m.mailfrom.as_deref(), Some(&b"g@x.example"[..]));
    assert_eq!(m.rcptto, vec![b"h@y.example".to_vec()]);
    assert_eq!(m.status_code, Some(250));
    let rows = o.h.smtp();
    assert_eq!(rows[0].mailfrom.as_deref(), Some(&b"g@x.example"[..]));
    // Zeek's view: a content gap event, the entity file has the gap.
    assert!(o.h.events().iter().any(|e| matches!(
        e,
        Event::SmtpUnexpected { msg, .. } if msg == b"content gap"
    )));
    assert_eq!(o.h.files()[0].missing_bytes, 50);
}

#[test]
fn server_gap_inside_data_loses_no_message_byte() {
    let o = gapped(&[
        C(b"Subject: g\r\n\r\nfirst\r\n"),
        Gap(false, 20),
        C(b"second\r\n.\r\n"),
        S(b"250 accepted\r\n"),
    ]);
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: g\r\n\r\nfirst\r\nsecond\r\n");
    assert!(m.complete, "{m:?}");
    assert_eq!(m.missing_bytes, 0);
    assert_eq!(o.h.files()[0].missing_bytes, 20);
}

#[test]
fn gap_over_end_of_data_keeps_only_sure_bytes() {
    let steps: Vec<Step> = ENVELOPE
        .iter()
        .chain(&[
            C(b"Subject: g\r\n\r\nfirst\r\n"),
            Gap(true, 30),
            C(b"RSET\r\n"),
            S(b"250 reset\r\n"),
            C(b"QUIT\r\n"),
            S(b"221 bye\r\n"),
        ])
        .cloned()
        .collect();
    let o = go(SmtpConfig::default(), false, &steps);
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: g\r\n\r\nfirst\r\n");
    assert!(!m.complete);
    assert_eq!(m.missing_bytes, 30);
    // The end of data is somewhere in the gap: how much of the 30 bytes
    // was message is not known.
    assert!(m.missing_unknown);
}

#[test]
fn gaps_without_extraction_log_like_zeek() {
    // Extraction off: the message ends at the gap, as in Zeek.
    let steps: Vec<Step> = ENVELOPE
        .iter()
        .chain(&[
            C(b"Subject: g\r\n\r\nfirst\r\n"),
            Gap(true, 30),
            C(b"second\r\n.\r\n"),
            S(b"250 accepted\r\n"),
        ])
        .cloned()
        .collect();
    let mut h = harness();
    let mut a = SmtpAnalyzer::new(Arc::new(SmtpConfig::default()));
    for s in &steps {
        let mut cx = h.cx();
        match s {
            C(d) => a.deliver(&mut cx, true, d),
            S(d) => a.deliver(&mut cx, false, d),
            Gap(o, n) => a.gap(&mut cx, *o, *n),
        }
    }
    a.done(&mut h.cx());
    let with = gapped(&[
        C(b"Subject: g\r\n\r\nfirst\r\n"),
        Gap(true, 30),
        C(b"second\r\n.\r\n"),
        S(b"250 accepted\r\n"),
    ]);
    assert_eq!(h.files()[0].seen_bytes, with.h.files()[0].seen_bytes);
    assert_eq!(h.files()[0].missing_bytes, with.h.files()[0].missing_bytes);
    assert_eq!(h.smtp()[0].fuids, with.h.smtp()[0].fuids);
}

const BDAT_ENVELOPE: &[Step] = &[
    S(b"220 mx\r\n"),
    C(b"EHLO c\r\n"),
    S(b"250-mx\r\n250 CHUNKING\r\n"),
    C(b"MAIL FROM:<g@x.example>\r\n"),
    S(b"250 ok\r\n"),
    C(b"RCPT TO:<h@y.example>\r\n"),
    S(b"250 ok\r\n"),
];

#[test]
fn gap_in_a_bdat_chunk_counts_exactly_only_in_the_last_chunk() {
    // Gap inside the LAST chunk: chunk arithmetic says what is missing.
    let steps: Vec<Step> = BDAT_ENVELOPE
        .iter()
        .chain(&[
            C(b"BDAT 40 LAST\r\nSubject: b\r\n\r\n"),
            Gap(true, 10),
            C(b"0123456789abcde"),
            S(b"250 ok\r\n"),
        ])
        .cloned()
        .collect();
    let o = go(SmtpConfig::default(), false, &steps);
    let (m, d) = msg(&o, 1);
    assert_eq!(d, b"Subject: b\r\n\r\n");
    assert!(!m.complete && !m.missing_unknown, "{m:?}");
    assert_eq!(m.missing_bytes, 40 - 14);

    // Gap inside a chunk with more to come: the later chunks are not
    // extracted, so how much is missing is not known.
    let steps: Vec<Step> = BDAT_ENVELOPE
        .iter()
        .chain(&[
            C(b"BDAT 40\r\nSubject: b\r\n\r\n"),
            Gap(true, 10),
            C(b"0123456789abcde"),
            S(b"250 ok\r\n"),
            C(b"BDAT 5 LAST\r\nxy\r\n\r\n"),
            S(b"250 ok\r\n"),
        ])
        .cloned()
        .collect();
    let o = go(SmtpConfig::default(), false, &steps);
    let (m, _) = msg(&o, 1);
    assert!(!m.complete && m.missing_unknown, "{m:?}");
}

#[test]
fn a_message_cut_by_the_connection_end_has_an_unknown_shortfall() {
    let steps: Vec<Step> = ENVELOPE
        .iter()
        .chain(&[C(b"Subject: g\r\n\r\nfirst\r\n")])
        .cloned()
        .collect();
    let o = go(SmtpConfig::default(), false, &steps);
    let (m, _) = msg(&o, 1);
    assert!(!m.complete && m.missing_unknown, "{m:?}");
    // Whole messages stay exact.
    let steps: Vec<Step> = ENVELOPE
        .iter()
        .chain(&[C(b"Subject: g\r\n\r\nx\r\n.\r\n"), S(b"250 ok\r\n")])
        .cloned()
        .collect();
    let o = go(SmtpConfig::default(), false, &steps);
    let (m, _) = msg(&o, 1);
    assert!(m.complete && !m.missing_unknown, "{m:?}");
}
