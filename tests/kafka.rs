//! `--kafka`: `mailtap read` sends every record to a real Kafka-protocol
//! broker (librdkafka's mock cluster, started here), on the right topic,
//! keyed by uid, with the same JSON as `--log-format json`.

mod common;
use common::*;
use mailtap_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use mailtap_kafka::rdkafka::mocking::MockCluster;
use mailtap_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TOPICS: [&str; 7] = [
    "mailtap.smtp",
    "mailtap.pop3",
    "mailtap.conn",
    "mailtap.files",
    "mailtap.weird",
    "mailtap.events",
    "mailtap.emails",
];

/// Every message of `topics` (from the beginning) until `settle` passes
/// without a new one; (topic, key, value).
fn consume_all(bootstrap: &str, settle: Duration) -> Vec<(String, Option<String>, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mailtap-cli-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in TOPICS {
        for p in 0..3 {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last.elapsed() < settle && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(50)) {
            let m = m.expect("consume");
            got.push((
                m.topic().to_string(),
                m.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
                String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            ));
            last = Instant::now();
        }
    }
    got
}

fn lines(p: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Decodes standard base64 (the test's own decoder, independent of mailtap's).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= (val(c) as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn read_sends_every_record_to_its_topic_keyed_by_uid() {
    let mc = MockCluster::new(1).expect("mock cluster");
    for t in TOPICS {
        mc.create_topic(t, 3, 1).unwrap();
    }
    let bs = mc.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let ev = dir.path().join("events.json");
    let ex = dir.path().join("extract");
    let s = sample();
    let (o, _) = run(&[
        "read",
        "--no-progress",
        s.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--log-format",
        "json",
        "--events",
        ev.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        "--kafka",
        &bs,
        "--set",
        "kafka.events=true",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let kline = err
        .lines()
        .find(|l| l.starts_with("mailtap: Kafka:"))
        .unwrap_or_else(|| panic!("no Kafka line:\n{err}"));
    assert!(kline.contains(" 0 spilled to disk"), "{kline}");

    let got = consume_all(&bs, Duration::from_secs(2));
    let mut by_topic: BTreeMap<&str, Vec<(Option<String>, String)>> = BTreeMap::new();
    for (t, k, v) in &got {
        let t = TOPICS.iter().find(|x| **x == t).expect("known topic");
        by_topic.entry(t).or_default().push((k.clone(), v.clone()));
    }
    // Log records: the values are exactly the JSON log rows, the key the uid.
    for (topic, log) in [
        ("mailtap.smtp", "smtp.log"),
        ("mailtap.conn", "conn.log"),
        ("mailtap.files", "files.log"),
    ] {
        let mut want = lines(&out.join(log));
        assert!(!want.is_empty(), "{log} has rows");
        let msgs = by_topic.get(topic).cloned().unwrap_or_default();
        let mut values: Vec<String> = msgs.iter().map(|(_, v)| v.clone()).collect();
        want.sort();
        values.sort();
        assert_eq!(values, want, "{topic} vs {log}");
        for (k, v) in &msgs {
            let row: serde_json::Value = serde_json::from_str(v).unwrap();
            assert_eq!(k.as_deref(), row["uid"].as_str(), "{topic}: key is the uid");
        }
    }
    // Events: one message per line of the event stream.
    let mut want = lines(&ev);
    let mut values: Vec<String> = by_topic
        .get("mailtap.events")
        .map(|m| m.iter().map(|(_, v)| v.clone()).collect())
        .unwrap_or_default();
    want.sort();
    values.sort();
    assert_eq!(values.len(), want.len(), "events");
    assert_eq!(values, want, "event values are the event stream's lines");
    // Emails: one per extracted message, its bytes inline.
    let emails = by_topic.get("mailtap.emails").cloned().unwrap_or_default();
    let emls: Vec<_> = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(emails.len(), emls.len(), "one email message per .eml");
    for (k, v) in &emails {
        let j: serde_json::Value = serde_json::from_str(v).unwrap();
        let uid = j["uid"].as_str().unwrap();
        assert_eq!(k.as_deref(), Some(uid));
        let n = j["n"].as_u64().unwrap();
        let eml = std::fs::read(ex.join(format!("{uid}-{n}.eml"))).unwrap();
        let data = unbase64(j["data_base64"].as_str().expect("inline data"));
        assert_eq!(data, eml, "{uid}-{n}: Kafka bytes == extracted bytes");
    }
    let total: usize = by_topic.values().map(Vec::len).sum();
    assert_eq!(total, got.len());
}

/// With no broker reachable, every record spills to disk, the run still
/// ends cleanly and says so; a later run with the broker up replays them
/// first, and none is lost.
#[test]
fn unreachable_broker_spills_and_a_later_run_replays() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    let s = sample();
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let spill_set = format!("kafka.spill_dir={:?}", spill.to_str().unwrap());
    let (o, _) = run(&[
        "read",
        "--no-progress",
        s.to_str().unwrap(),
        "-o",
        dir.path().join("a").to_str().unwrap(),
        "--kafka",
        &dead,
        "--set",
        &spill_set,
        "--set",
        "kafka.flush_timeout=2",
        "--set",
        "kafka.librdkafka.message.timeout.ms=1000",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let kline = err
        .lines()
        .find(|l| l.starts_with("mailtap: Kafka:"))
        .unwrap();
    assert!(
        !kline.contains(" 0 still spilled"),
        "records wait on disk: {kline}"
    );
    assert!(!kline.contains(" 0 spilled to disk"), "{kline}");

    let mc = MockCluster::new(1).expect("mock cluster");
    for t in TOPICS {
        mc.create_topic(t, 3, 1).unwrap();
    }
    let bs = mc.bootstrap_servers();
    // A second run with nothing to read but the spill (an empty capture).
    let empty = dir.path().join("empty.pcap");
    std::fs::write(
        &empty,
        [
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ],
    )
    .unwrap();
    let (o, _) = run(&[
        "read",
        "--no-progress",
        empty.to_str().unwrap(),
        "-o",
        dir.path().join("b").to_str().unwrap(),
        "--kafka",
        &bs,
        "--set",
        &spill_set,
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let kline = err
        .lines()
        .find(|l| l.starts_with("mailtap: Kafka:"))
        .unwrap();
    assert!(kline.contains(" 0 still spilled"), "{kline}");
    let got = consume_all(&bs, Duration::from_secs(2));
    let smtp_rows = rows(&dir.path().join("a"), "smtp.log").len();
    let conn_rows = rows(&dir.path().join("a"), "conn.log").len();
    let n = |t: &str| got.iter().filter(|(x, _, _)| x == t).count();
    assert_eq!(
        n("mailtap.smtp"),
        smtp_rows,
        "every spilled smtp record replayed once"
    );
    assert_eq!(
        n("mailtap.conn"),
        conn_rows,
        "every spilled conn record replayed once"
    );
}

/// A second SIGTERM while the shutdown waits for unreachable brokers
/// (a long kafka.flush_timeout) ends the process within the grace period,
/// with the log files already complete (they are closed before Kafka's
/// flush).
#[test]
fn second_signal_forces_exit_after_the_files_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("g.pcap");
    let (o, _) = run(&[
        "gen",
        "--mix",
        "attach",
        "-o",
        pcap.to_str().unwrap(),
        "--sessions",
        "300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let out = dir.path().join("out");
    let spill = format!(
        "kafka.spill_dir={:?}",
        dir.path().join("spill").to_str().unwrap()
    );
    // Read from a pipe that stays open, so the run is still going when
    // the first signal comes.
    let mut child = std::process::Command::new(bin())
        .args([
            "read",
            "--no-progress",
            "-",
            "-o",
            out.to_str().unwrap(),
            "--kafka",
            &dead,
            "--set",
            &spill,
            "--set",
            "kafka.flush_timeout=120",
            "--set",
            "kafka.librdkafka.message.timeout.ms=300000",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&std::fs::read(&pcap).unwrap()).unwrap();
        // Keep it open: the reader waits for more.
        let t0 = Instant::now();
        while !out.join("smtp.log").exists() {
            assert!(t0.elapsed() < Duration::from_secs(30), "no smtp.log");
            std::thread::sleep(Duration::from_millis(20));
        }
        let kill = |sig: &str| {
            assert!(std::process::Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .unwrap()
                .success())
        };
        kill("-TERM");
        drop(stdin);
        // The first signal's shutdown writes the files, then waits on
        // Kafka (120 s): wait for the files (not a fixed time, which a
        // loaded machine can outlast).
        let closed = |log: &str| {
            std::fs::read_to_string(out.join(log)).is_ok_and(|t| {
                t.trim_end()
                    .lines()
                    .last()
                    .is_some_and(|l| l.starts_with("#close"))
            })
        };
        let t0 = Instant::now();
        while !(closed("smtp.log") && closed("conn.log")) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the logs were never closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Well into the wait on Kafka.
        std::thread::sleep(Duration::from_millis(500));
        let t1 = Instant::now();
        kill("-TERM");
        let o = child.wait_with_output().unwrap();
        let waited = t1.elapsed();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            waited < Duration::from_secs(10),
            "took {waited:?} after the second signal: {err}"
        );
        assert_eq!(o.status.code(), Some(130), "{err}");
        assert!(err.contains("second signal"), "{err}");
    }
    for log in ["smtp.log", "conn.log"] {
        let text = std::fs::read_to_string(out.join(log)).unwrap();
        assert!(
            text.trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("#close"),
            "{log} complete before the forced exit"
        );
    }
}

/// `--kafka` alone fills the emails topic (no extraction directory
/// needed); the events topic only with `kafka.events=true`, and then
/// without an event file.
#[test]
fn kafka_alone_gets_messages_and_events_on_request() {
    let mc = MockCluster::new(1).expect("mock cluster");
    for t in TOPICS {
        mc.create_topic(t, 3, 1).unwrap();
    }
    let bs = mc.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let s = sample();
    let (o, _) = run(&[
        "read",
        "--no-progress",
        s.to_str().unwrap(),
        "-o",
        dir.path().join("a").to_str().unwrap(),
        "--kafka",
        &bs,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = consume_all(&bs, Duration::from_secs(2));
    let n = |t: &str| got.iter().filter(|(x, _, _)| x == t).count();
    assert_eq!(n("mailtap.events"), 0, "events only on request");
    // The sample has 66 messages (mailtap gen's count for it).
    assert_eq!(n("mailtap.emails"), 66);
    for (_, _, v) in got.iter().filter(|(t, _, _)| t == "mailtap.emails") {
        let j: serde_json::Value = serde_json::from_str(v).unwrap();
        assert!(
            j["data_base64"].as_str().is_some_and(|d| !d.is_empty()),
            "{v}"
        );
    }
    // Events on request, still without an event file.
    let (o, _) = run(&[
        "read",
        "--no-progress",
        s.to_str().unwrap(),
        "-o",
        dir.path().join("b").to_str().unwrap(),
        "--kafka",
        &bs,
        "--set",
        "kafka.events=true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = consume_all(&bs, Duration::from_secs(2));
    let n = |t: &str| got.iter().filter(|(x, _, _)| x == t).count();
    assert!(n("mailtap.events") > 100, "{} events", n("mailtap.events"));
    assert_eq!(
        n("mailtap.emails"),
        2 * 66,
        "the first run's and this one's"
    );
}

/// `kafka.emails = off` leaves the emails topic empty; `reference` sends
/// only the path of the extracted .eml (and needs --extract-dir).
#[test]
fn emails_topic_off_or_by_reference() {
    let s = sample();
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = run(&[
        "read",
        s.to_str().unwrap(),
        "-o",
        dir.path().join("x").to_str().unwrap(),
        "--kafka",
        "127.0.0.1:9",
        "--set",
        "kafka.emails=reference",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("kafka.emails"), "{}", stderr(&o));

    for (mode, emails) in [("off", 0usize), ("reference", 66)] {
        let mc = MockCluster::new(1).expect("mock cluster");
        for t in TOPICS {
            mc.create_topic(t, 3, 1).unwrap();
        }
        let bs = mc.bootstrap_servers();
        let ex = dir.path().join(format!("ex-{mode}"));
        let (o, _) = run(&[
            "read",
            "--no-progress",
            s.to_str().unwrap(),
            "-o",
            dir.path().join(mode).to_str().unwrap(),
            "--extract-dir",
            ex.to_str().unwrap(),
            "--kafka",
            &bs,
            "--set",
            &format!("kafka.emails={mode}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = consume_all(&bs, Duration::from_secs(2));
        let values: Vec<&String> = got
            .iter()
            .filter(|(t, _, _)| t == "mailtap.emails")
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(values.len(), emails, "{mode}");
        assert!(
            got.iter().any(|(t, _, _)| t == "mailtap.smtp"),
            "{mode}: logs still go"
        );
        for v in values {
            let j: serde_json::Value = serde_json::from_str(v).unwrap();
            assert!(j.get("data_base64").is_none(), "{v}");
            let path = j["eml_path"].as_str().expect("eml_path");
            assert!(std::path::Path::new(path).starts_with(&ex), "{path}");
            assert!(std::path::Path::new(path).exists(), "{path}");
        }
    }
}
