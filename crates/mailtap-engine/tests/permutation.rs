//! Property: reordering and duplicating a connection's TCP segments (within
//! buffer limits, as a capture point can) gives the same smtp.log, weirds
//! and SMTP events as the in-order capture.

use mailtap_core::{Event, Output, Record, Timestamp};
use mailtap_engine::MailAnalyzers;
use mailtap_flow::{FlowConfig, FlowTable, LocalNets, Segment, UidGenerator};
use mailtap_smtp::SmtpConfig;
use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;

const TURNS: &[(bool, &str)] = &[
    (false, "220 mx.example.net ESMTP ready\r\n"),
    (true, "EHLO client.example.org\r\n"),
    (false, "250-mx.example.net\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"),
    (true, "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"),
    (false, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
    (
        true,
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nFrom: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>,\r\n \"Carol, C.\" <carol@example.net>\r\nSubject: quarterly numbers\r\nMessage-ID: <1@example.org>\r\nReceived: from a.example.org ([198.51.100.7]) by mx\r\nX-Mailer: testmailer 1.0\r\n\r\nHello Bob,\r\n..a dot-stuffed line\r\nbye\r\n.\r\n",
    ),
    (false, "250 2.0.0 Ok: queued as ABC123\r\n"),
    (true, "MAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@example.net>\r\nBDAT 60 LAST\r\nSubject: chunked\r\nFrom: alice@example.org\r\n\r\nshort body.\r\n"),
    (false, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 60 bytes queued\r\n"),
    (true, "QUIT\r\n"),
    (false, "221 2.0.0 Bye\r\n"),
];

#[derive(Clone, Debug)]
struct Pkt {
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    data: Vec<u8>,
}

/// Splits every turn at `cuts`, then permutes segments inside each turn and
/// re-inserts duplicates of earlier segments later on.
fn build(cuts: &[usize], perm: &[u32], dups: &[(u16, u16)]) -> Vec<Pkt> {
    let (cisn, sisn) = (1000u32, 900_000u32);
    let mut v = vec![
        Pkt {
            from_client: true,
            seq: cisn,
            ack: 0,
            flags: 0x02,
            data: vec![],
        },
        Pkt {
            from_client: false,
            seq: sisn,
            ack: cisn + 1,
            flags: 0x12,
            data: vec![],
        },
        Pkt {
            from_client: true,
            seq: cisn + 1,
            ack: sisn + 1,
            flags: 0x10,
            data: vec![],
        },
    ];
    let (mut cseq, mut sseq) = (cisn + 1, sisn + 1);
    let mut ci = 0usize;
    let mut pi = 0usize;
    for &(client, text) in TURNS {
        let bytes = text.as_bytes();
        let mut turn = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let n = cuts[ci % cuts.len()].min(bytes.len() - pos);
            ci += 1;
            let (seq, ack) = if client { (cseq, sseq) } else { (sseq, cseq) };
            turn.push(Pkt {
                from_client: client,
                seq: seq.wrapping_add(pos as u32),
                ack,
                flags: 0x18,
                data: bytes[pos..pos + n].to_vec(),
            });
            pos += n;
        }
        for i in (1..turn.len()).rev() {
            let j = perm[pi % perm.len()] as usize % (i + 1);
            pi += 1;
            turn.swap(i, j);
        }
        v.extend(turn);
        if client {
            cseq = cseq.wrapping_add(bytes.len() as u32);
        } else {
            sseq = sseq.wrapping_add(bytes.len() as u32);
        }
    }
    for &(from, to) in dups {
        let n = v.len();
        let src = 3 + from as usize % (n - 3);
        let dst = (src + 1 + to as usize % (n - src)).min(n);
        let p = v[src].clone();
        v.insert(dst, p);
    }
    v.push(Pkt {
        from_client: true,
        seq: cseq,
        ack: sseq,
        flags: 0x11,
        data: vec![],
    });
    v.push(Pkt {
        from_client: false,
        seq: sseq,
        ack: cseq + 1,
        flags: 0x11,
        data: vec![],
    });
    v.push(Pkt {
        from_client: true,
        seq: cseq + 1,
        ack: sseq + 1,
        flags: 0x10,
        data: vec![],
    });
    v
}

/// Runs the packets through a real flow table and SMTP analyzer; returns
/// smtp.log records without ts, weird names and the request/reply events.
fn analyze(pkts: &[Pkt]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let factory = MailAnalyzers {
        smtp: Arc::new(SmtpConfig::default()),
        ..MailAnalyzers::with_defaults()
    };
    let mut t = FlowTable::new(
        FlowConfig::default(),
        factory,
        UidGenerator::new(""),
        LocalNets::default(),
    );
    let mut out = Output::new(true);
    let c: IpAddr = "10.1.1.1".parse().unwrap();
    let s: IpAddr = "10.2.2.2".parse().unwrap();
    for (i, p) in pkts.iter().enumerate() {
        let (src, dst, sp, dp) = if p.from_client {
            (c, s, 41000, 25)
        } else {
            (s, c, 25, 41000)
        };
        let seg = Segment {
            ts: Timestamp(1_700_000_000_000_000_000 + i as i64 * 1000),
            src,
            dst,
            src_port: sp,
            dst_port: dp,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags,
            window: 65535,
            ip_len: 40 + p.data.len() as u32,
            payload: &p.data,
            bad_checksum: false,
        };
        t.process(&seg, &mut out);
    }
    t.finish(&mut out);
    let (mut smtp, mut weird, mut events) = (Vec::new(), Vec::new(), Vec::new());
    for r in &out.records {
        match r {
            Record::Smtp(m) => {
                let mut m = (**m).clone();
                m.ts = Timestamp::ZERO;
                let mut row = Vec::new();
                mailtap_logs::format_zeek_row(&m, &mailtap_logs::LogLimits::default(), &mut row);
                smtp.push(String::from_utf8_lossy(&row).into_owned());
            }
            Record::Weird(w) => weird.push(w.name.to_string()),
            Record::Event(e) => match &e.event {
                Event::SmtpRequest { .. } | Event::SmtpReply { .. } | Event::SmtpData { .. } => {
                    let mut e = (**e).clone();
                    e.ts = Timestamp::ZERO;
                    let mut line = Vec::new();
                    mailtap_logs::format_event(&e, &mut line);
                    events.push(String::from_utf8_lossy(&line).into_owned())
                }
                _ => {}
            },
            _ => {}
        }
    }
    (smtp, weird, events)
}

#[test]
fn in_order_session_is_logged() {
    let (smtp, weird, events) = analyze(&build(&[100_000], &[0], &[]));
    assert_eq!(smtp.len(), 2, "{smtp:#?}");
    assert!(
        smtp[0].contains("quarterly numbers") && smtp[0].contains("bob@example.net"),
        "{}",
        smtp[0]
    );
    assert!(smtp[1].contains("chunked"), "{}", smtp[1]);
    assert!(weird.is_empty(), "{weird:?}");
    assert!(
        events.iter().any(|e| e.contains("a dot-stuffed line")),
        "smtp_data is unstuffed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn reordering_and_duplicates_change_nothing(
        cuts in proptest::collection::vec(1usize..48, 1..12),
        perm in proptest::collection::vec(any::<u32>(), 1..64),
        dups in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..12),
    ) {
        let want = analyze(&build(&[100_000], &[0], &[]));
        let got = analyze(&build(&cuts, &perm, &dups));
        prop_assert_eq!(&got.0, &want.0);
        prop_assert_eq!(&got.1, &want.1);
        prop_assert_eq!(&got.2, &want.2);
    }
}
