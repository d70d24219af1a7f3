//! The per-message truth of imperfect captures and the quirks (reused
//! 4-tuples, long AUTH lines).

use std::collections::{HashMap, HashSet};

use mailtap_gen::{
    count_packets, extraction_test_config, generate, generate_imperfect,
    generate_imperfect_with_truth, generate_with_truth, Expect, GenConfig, ImperfectStats,
    Imperfections, MessageCapture, Quirks,
};

type Key = (std::net::IpAddr, u16, std::net::IpAddr, u16, u32);

/// (capture, stats, per message: (key, index, bytes, complete, capture)).
#[allow(clippy::type_complexity)]
fn run(
    cfg: &GenConfig,
    imp: &Imperfections,
) -> (
    Vec<u8>,
    ImperfectStats,
    Vec<(Key, Vec<u8>, bool, MessageCapture)>,
) {
    let mut pcap = Vec::new();
    let mut msgs = Vec::new();
    let st = generate_imperfect_with_truth(cfg, imp, &mut pcap, &mut |t| {
        let m = &t.message;
        msgs.push((
            (m.orig.0, m.orig.1, m.resp.0, m.resp.1, m.index_in_session),
            m.bytes.to_vec(),
            m.complete,
            t.capture.clone(),
        ));
    })
    .unwrap();
    (pcap, st, msgs)
}

#[test]
fn every_message_once_and_exact_without_damage_but_gaps() {
    let cfg = extraction_test_config(150, 3);
    let mut plain = Vec::new();
    let mut n = 0u64;
    let gs = generate_with_truth(&cfg, &mut plain, &mut |_| n += 1).unwrap();
    let (pcap, st, msgs) = run(&cfg, &Imperfections::default());
    assert!(pcap == plain, "the truth changes the capture");
    assert_eq!(msgs.len() as u64, n);
    assert_eq!(st.gen, gs);
    let mut gaps = 0;
    for (k, bytes, complete, c) in &msgs {
        assert!(
            c.start_captured && c.data_start_captured && c.end_captured,
            "{k:?}"
        );
        assert_eq!(c.bytes_cut, 0);
        assert!(!c.session_cut);
        assert!(c.data_bytes >= bytes.len() as u64, "{k:?}: wire bytes");
        if *complete {
            assert_eq!(c.expect, Expect::Exact, "{k:?}");
            assert!(c.fully_captured);
        } else {
            gaps += 1;
            // one full-size segment (the IPv6 MSS is 20 bytes smaller)
            let mss = if k.0.is_ipv4() { 1460 } else { 1440 };
            assert_eq!(c.expect, Expect::Incomplete { missing_bytes: mss }, "{k:?}");
            assert_eq!(c.bytes_in_gaps, mss);
            assert!(!c.fully_captured);
        }
    }
    assert!(gaps > 0);
    // unique (4-tuple, index)
    let keys: HashSet<_> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(keys.len(), msgs.len());
    // the plain API gives the same capture
    let mut other = Vec::new();
    generate_imperfect(&cfg, &Imperfections::default(), &mut other, &mut |_| {}).unwrap();
    assert!(other == pcap);
}

#[test]
fn a_cut_capture_sorts_the_messages_of_running_sessions() {
    let cfg = GenConfig {
        concurrency: 40,
        gap_percent: 0,
        ..extraction_test_config(200, 5)
    };
    let total = count_packets(&cfg).unwrap();
    let imp = Imperfections {
        skip_packets: total / 2,
        ..Imperfections::default()
    };
    let (_, st, msgs) = run(&cfg, &imp);
    assert_eq!(st.packets_dropped, total / 2);
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for (k, _, _, c) in &msgs {
        let kind = match c.expect {
            Expect::Exact => "exact",
            Expect::Incomplete { .. } => panic!("{k:?}: no gaps here"),
            Expect::Tail => "tail",
            Expect::NotCaptured => "none",
        };
        if c.session_cut {
            *kinds.entry(kind).or_default() += 1;
        } else {
            // before the cut or after it
            assert!(
                matches!(c.expect, Expect::Exact | Expect::NotCaptured),
                "{k:?}: session not cut: {c:?}"
            );
        }
        if c.fully_captured {
            assert_eq!(c.expect, Expect::Exact);
        }
        match c.expect {
            Expect::Tail => {
                assert!(c.bytes_cut > 0 && c.bytes_cut < c.data_bytes, "{k:?} {c:?}")
            }
            Expect::NotCaptured => assert_eq!(c.bytes_cut, c.data_bytes),
            _ => assert_eq!(c.bytes_cut, 0),
        }
    }
    eprintln!("messages of cut sessions: {kinds:?}");
    for k in ["exact", "tail", "none"] {
        assert!(kinds.get(k).is_some_and(|&n| n > 0), "{k}: {kinds:?}");
    }
}

#[test]
fn reused_four_tuples_are_separate_connections_with_their_messages() {
    let cfg = GenConfig {
        quirks: Quirks {
            reuse_closed_percent: 30,
            reuse_open_percent: 20,
            ..Quirks::default()
        },
        gap_percent: 0,
        ..extraction_test_config(200, 8)
    };
    let (pcap, st, msgs) = run(&cfg, &Imperfections::default());
    assert!(st.gen.reused >= 30, "{} reused", st.gen.reused);
    assert_eq!(st.flows.len() as u64, st.gen.sessions);
    let tuples: HashSet<_> = st.flows.iter().map(|f| (f.orig, f.resp)).collect();
    assert_eq!(
        (st.flows.len() - tuples.len()) as u64,
        st.gen.reused,
        "one connection more per reuse"
    );
    assert_eq!(msgs.len() as u64, st.gen.messages);
    for (k, _, _, c) in &msgs {
        assert_eq!(c.expect, Expect::Exact, "{k:?}");
        assert!(c.fully_captured);
    }
    // deterministic, and the quirks' own random streams leave every session
    // that is not reused or abandoned as it was
    let (again, _, _) = run(&cfg, &Imperfections::default());
    assert!(again == pcap);
    let mut plain = Vec::new();
    generate(&cfg, &mut plain).unwrap();
    assert!(plain == pcap);
}

#[test]
fn long_auth_lines_are_longer_than_asked_and_messages_follow() {
    let len = 3_000;
    let mut cfg = GenConfig {
        quirks: Quirks {
            long_auth_percent: 100,
            long_auth_len: len,
            ..Quirks::default()
        },
        gap_percent: 0,
        ..extraction_test_config(60, 4)
    };
    cfg.mix.auth = 100;
    cfg.mix.pop3 = 0;
    cfg.mix.starttls = 0;
    let (pcap, st, msgs) = run(&cfg, &Imperfections::default());
    assert!(!msgs.is_empty());
    assert!(msgs.iter().all(|m| m.3.expect == Expect::Exact));
    let plain_auth = pcap.windows(12).filter(|w| w == b"AUTH PLAIN\r\n").count();
    let login = pcap.windows(12).filter(|w| w == b"AUTH LOGIN\r\n").count();
    assert!(plain_auth > 0 && login > 0, "{plain_auth} {login}");
    assert_eq!(plain_auth + login, st.flows.len());
    // every client stream has one line of `len` bytes (base64, rounded up
    // to 4) among its first lines
    let streams = client_streams(&pcap);
    assert_eq!(streams.len(), st.flows.len());
    for (k, v) in &streams {
        let longest = v.split(|&b| b == b'\n').take(12).map(<[u8]>::len).max();
        assert_eq!(longest, Some(len + 1), "{k:?}"); // with its CR
    }
}

/// Client payload per (client port, server port), in capture order (no
/// loss, no reordering in these captures).
fn client_streams(pcap: &[u8]) -> HashMap<(Vec<u8>, u16), Vec<u8>> {
    let mut out: HashMap<(Vec<u8>, u16), Vec<u8>> = HashMap::new();
    let mut pos = 24;
    while pos + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let rec = &pcap[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        let (src, tcp, end) = if rec[12..14] == [0x08, 0x00] {
            let ihl = usize::from(rec[14] & 15) * 4;
            let tot = usize::from(u16::from_be_bytes([rec[16], rec[17]]));
            (rec[26..30].to_vec(), 14 + ihl, 14 + tot)
        } else {
            let plen = usize::from(u16::from_be_bytes([rec[18], rec[19]]));
            (rec[22..38].to_vec(), 54, 54 + plen)
        };
        let sport = u16::from_be_bytes([rec[tcp], rec[tcp + 1]]);
        let dport = u16::from_be_bytes([rec[tcp + 2], rec[tcp + 3]]);
        let off = usize::from(rec[tcp + 12] >> 4) * 4;
        if dport < sport {
            out.entry((src, sport))
                .or_default()
                .extend_from_slice(&rec[tcp + off..end]);
        }
    }
    out
}
