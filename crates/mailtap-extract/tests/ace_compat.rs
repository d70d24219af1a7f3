//! An unchanged ACE collector reads mailtap's transcripts: the spec's
//! collector rules (tests/ace_rules) applied to what `AceSink` writes.

mod ace_rules;

use mailtap_core::{ConnId, ConnRecord, Event, EventRecord, Record, Timestamp};
use mailtap_extract::{AceConfig, AceSink};

fn ev(uid: &str, id: ConnId, e: Event) -> Record {
    Record::Event(Box::new(EventRecord {
        ts: Timestamp::from_secs_micros(1_589_459_371, 500_000),
        uid: uid.into(),
        id,
        event: e,
    }))
}
fn req(c: &str, a: &str) -> Event {
    Event::SmtpRequest {
        is_orig: true,
        command: c.into(),
        arg: a.into(),
    }
}
fn rep(cmd: &str, code: u32, msg: &str) -> Event {
    Event::SmtpReply {
        is_orig: false,
        code,
        cmd: cmd.into(),
        msg: msg.into(),
        cont_resp: false,
    }
}
fn data(d: &str) -> Event {
    Event::SmtpData {
        is_orig: true,
        data: d.into(),
    }
}

fn conn(uid: &str, id: ConnId) -> Record {
    Record::Conn(Box::new(ConnRecord {
        ts: Timestamp::from_secs_micros(1_589_459_371, 0),
        uid: uid.into(),
        id,
        service: vec!["smtp"],
        duration: None,
        orig_bytes: None,
        resp_bytes: None,
        conn_state: "SF",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: "ShAdDaFf".into(),
        orig_pkts: 0,
        orig_ip_bytes: 0,
        resp_pkts: 0,
        resp_ip_bytes: 0,
    }))
}

#[test]
fn ace_rules_read_our_transcript_like_the_fixture() {
    // Shaped like ACE's `sample` fixture: pipelined envelope, two
    // messages separated by RSET, no QUIT.
    let d = tempfile::tempdir().unwrap();
    let mut s = AceSink::new(&AceConfig::new(d.path().into())).unwrap();
    let id = ConnId {
        orig_h: "1.2.3.4".parse().unwrap(),
        orig_p: 57523,
        resp_h: "192.0.2.25".parse().unwrap(),
        resp_p: 25,
    };
    let uid = "CyEkdLKUYIgTyYhAl";
    let mut events = vec![
        rep(">", 220, "mx ESMTP"),
        req("EHLO", "client"),
        rep("EHLO", 250, "mx"),
        rep("EHLO", 250, "PIPELINING"),
    ];
    for (from, to) in [("a@x.test", "b@y.test"), ("c+d=e@x.test", "f@y.test")] {
        events.extend([
            req("MAIL", &format!("FROM:<{from}> SIZE=100")),
            req("RCPT", &format!("TO:<{to}> ORCPT=rfc822;{to}")),
            req("DATA", ""),
            rep("MAIL", 250, "ok"),
            rep("RCPT", 250, "ok"),
            rep("DATA", 354, "go"),
            data("Return-Path: <x>"),
            data("Subject: hi"),
            data(""),
            data("> quoted line"),
            data("body"),
            req(".", "."),
            rep(".", 250, "Queued mail for delivery"),
            req("RSET", ""),
            rep("RSET", 250, "ok"),
        ]);
    }
    for e in events {
        s.write(&ev(uid, id, e)).unwrap();
    }
    s.write(&conn(uid, id)).unwrap();
    s.finish().1.unwrap();
    assert!(d.path().join(format!("{uid}.ready")).exists());

    let bytes = std::fs::read(d.path().join(uid)).unwrap();
    let emails = ace_rules::parse(&bytes, 0).unwrap();
    assert_eq!(emails.len(), 2);
    for (e, (from, to)) in emails
        .iter()
        .zip([("a@x.test", "b@y.test"), ("c+d=e@x.test", "f@y.test")])
    {
        assert_eq!(e.source_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(e.source_port.as_deref(), Some("57523"));
        assert_eq!(e.received, 1_589_459_371);
        assert_eq!(e.envelope_from.as_deref(), Some(from));
        assert_eq!(e.envelope_to, vec![to.to_string()]);
        assert_eq!(
            e.content,
            "Return-Path: <x>\nSubject: hi\n\n> quoted line\nbody\n"
        );
    }
}

#[test]
fn ace_rules_show_the_defects_we_fix() {
    // IPv6: ACE's header pattern produces nonsense; our collector does not
    // (collect_tests::defect_ipv6_header).
    let t =
        b"2607:5300:60:1::25:40312/tcp\n1700000000\n> MAIL FROM:<a@x>\n< DATA 354 go\nhi\n> . .\n";
    let e = ace_rules::parse(t, 0).unwrap();
    assert_eq!(e[0].source_ip.as_deref(), Some("2607"));
    assert_eq!(e[0].source_port.as_deref(), Some("5300"));
    // Pipelined RSET wipes the new envelope.
    let t = b"1.2.3.4:1/tcp\n1\n> RSET \n> MAIL FROM:<new@x>\n> RCPT TO:<r@x>\n> DATA \n< RSET 250 ok\n< DATA 354 go\nx\n> . .\n";
    let e = ace_rules::parse(t, 0).unwrap();
    assert_eq!(e[0].envelope_from, None);
    assert!(e[0].envelope_to.is_empty());
    // Lower case and the null sender lose the address.
    let t = b"1.2.3.4:1/tcp\n1\n> MAIL FROM:<>\n> RCPT to:<r@x>\n< DATA 354 go\nx\n> . .\n";
    let e = ace_rules::parse(t, 0).unwrap();
    assert_eq!(e[0].envelope_from, None);
    assert!(e[0].envelope_to.is_empty());
}
