//! Records reach the right topics with the right keys and values, and a
//! short broker outage (shorter than message.timeout.ms) is ridden out by
//! librdkafka's idempotent retries: nothing lost, nothing twice.

mod common;

use common::*;
use mailtap_kafka::{KafkaConfig, KafkaSink, Topics};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn every_record_type_on_its_topic_with_uid_key_and_log_json_value() {
    let mc = cluster(3);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    let mut sink = KafkaSink::new(config(&bs, spill.path(), 10_000)).unwrap();
    let records = vec![
        conn("Cone", 1),
        smtp("Cone"),
        pop3("Ctwo"),
        file(Some("Cone")),
        file(None),
        weird(Some("Ctwo")),
        weird(None),
        event("Cone"),
        conn("Ctwo", 2),
    ];
    let t = Topics::default();
    let topic_of = |r: &mailtap_core::Record| -> &str {
        use mailtap_core::Record::*;
        match r {
            Conn(_) => &t.conn,
            Smtp(_) => &t.smtp,
            Pop3(_) => &t.pop3,
            File(_) => &t.files,
            Weird(_) => &t.weird,
            Event(_) => &t.events,
            _ => unreachable!(),
        }
    };
    let key_of = |r: &mailtap_core::Record| -> Option<String> {
        use mailtap_core::Record::*;
        match r {
            Conn(c) => Some(c.uid.clone()),
            Smtp(s) => Some(s.uid.clone()),
            Pop3(p) => Some(p.uid.clone()),
            File(f) => f.uid.clone(),
            Weird(w) => w.uid.clone(),
            Event(e) => Some(e.uid.clone()),
            _ => unreachable!(),
        }
    };
    for r in &records {
        sink.write(r).unwrap();
        sink.poll();
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.records, records.len() as u64);
    assert_eq!(c.delivered, records.len() as u64, "{c:?}");
    assert_eq!((c.spilled, c.failed, c.queue_depth), (0, 0, 0), "{c:?}");

    let topics: Vec<&str> = t.all().iter().map(|(_, n)| *n).collect();
    let mut got = consume(&bs, &topics, records.len(), Duration::from_millis(300));
    let mut want: Vec<Got> = records
        .iter()
        .map(|r| Got {
            topic: topic_of(r).to_string(),
            partition: 0,
            key: key_of(r),
            value: json_row(r),
        })
        .collect();
    // Partition is the broker's business; compare everything else.
    for g in &mut got {
        g.partition = 0;
    }
    let key = |g: &Got| (g.topic.clone(), g.key.clone(), g.value.clone());
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
    // Values are JSON.
    for g in &got {
        serde_json::from_str::<serde_json::Value>(&g.value).unwrap();
    }
}

#[test]
fn emails_inline_and_over_the_cap() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    let extract = tempfile::tempdir().unwrap();
    let cfg = KafkaConfig {
        email_inline_max: 64,
        extract_dir: Some(extract.path().to_path_buf()),
        ..config(&bs, spill.path(), 10_000)
    };
    let mut sink = KafkaSink::new(cfg).unwrap();
    // Two messages interleaved, one small (inline), one over 64 bytes.
    let small: &[&[u8]] = &[b"Subject: hi\r\n", b"\r\n", b"body \xff\x00 bytes\r\n"];
    let big = vec![b'x'; 50];
    sink.write(&chunk("Cmail", 1, small[0])).unwrap();
    sink.write(&chunk("Cmail", 2, &big)).unwrap();
    sink.write(&chunk("Cmail", 1, small[1])).unwrap();
    sink.write(&chunk("Cmail", 2, &big)).unwrap();
    sink.write(&chunk("Cmail", 1, small[2])).unwrap();
    let small_bytes: Vec<u8> = small.concat();
    sink.write(&mailtap_core::Record::EmailMeta(Box::new(meta(
        "Cmail",
        1,
        small_bytes.len() as u64,
    ))))
    .unwrap();
    sink.write(&mailtap_core::Record::EmailMeta(Box::new(meta(
        "Cmail", 2, 100,
    ))))
    .unwrap();
    // An empty message (no chunk) and one whose metadata never comes.
    sink.write(&mailtap_core::Record::EmailMeta(Box::new(meta(
        "Cmail", 3, 0,
    ))))
    .unwrap();
    sink.write(&chunk("Corphan", 1, b"cut")).unwrap();
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.records, 4, "{c:?}");
    assert_eq!(c.delivered, 4, "{c:?}");
    assert_eq!((c.emails_inline, c.emails_truncated), (3, 1));

    let got = consume(&bs, &["mailtap.emails"], 4, Duration::from_millis(300));
    assert_eq!(got.len(), 4);
    let docs: HashMap<(String, u64), serde_json::Value> = got
        .iter()
        .map(|g| {
            let v: serde_json::Value = serde_json::from_str(&g.value).unwrap();
            assert_eq!(g.key.as_deref(), v["uid"].as_str());
            (
                (
                    v["uid"].as_str().unwrap().to_string(),
                    v["n"].as_u64().unwrap(),
                ),
                v,
            )
        })
        .collect();
    let one = &docs[&("Cmail".into(), 1)];
    assert_eq!(unbase64(one["data_base64"].as_str().unwrap()), small_bytes);
    assert!(one.get("data_truncated").is_none());
    // The document is the --extract-dir one plus the data member.
    let mut want: serde_json::Value = serde_json::from_slice(&mailtap_extract::json::message_json(
        &meta("Cmail", 1, small_bytes.len() as u64),
        &mailtap_extract::json::JsonOptions {
            origin: mailtap_extract::json::Origin::Capture,
            ts_known: true,
            missing_known: true,
        },
    ))
    .unwrap();
    want["data_base64"] = one["data_base64"].clone();
    assert_eq!(one, &want);

    let two = &docs[&("Cmail".into(), 2)];
    assert_eq!(two["data_truncated"], serde_json::json!(true));
    assert!(two.get("data_base64").is_none());
    assert_eq!(
        two["eml_path"].as_str().unwrap(),
        extract.path().join("Cmail-2.eml").to_str().unwrap()
    );
    assert_eq!(docs[&("Cmail".into(), 3)]["data_base64"], "");
    let orphan = &docs[&("Corphan".into(), 1)];
    assert_eq!(unbase64(orphan["data_base64"].as_str().unwrap()), b"cut");
    assert_eq!(orphan["complete"], false);
    assert_eq!(orphan["size"], 3);
    assert!(orphan["ts"].is_null());
}

#[test]
fn short_outage_is_retried_without_loss_or_duplicates() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    // Outage well inside message.timeout.ms: librdkafka retries on its own.
    let mut sink = KafkaSink::new(config(&bs, spill.path(), 20_000)).unwrap();
    let uids = ["Ca", "Cb", "Cc", "Cd", "Ce"];
    let n = 300u64;
    let mut written = Vec::new();
    for i in 0..n {
        if i == 100 {
            poll_until(
                &mut sink,
                Duration::from_secs(10),
                "first deliveries",
                |s| s.counters().delivered == 100,
            );
            mc.broker_down(-1).unwrap();
        }
        if i == 200 {
            // Records are queued and not delivered while it is down.
            let before = sink.counters().delivered;
            for _ in 0..50 {
                sink.poll();
                std::thread::sleep(Duration::from_millis(10));
            }
            let c = sink.counters();
            assert!(c.queue_depth > 0 && c.delivered < 200, "{c:?} {before}");
            mc.broker_up(-1).unwrap();
        }
        let r = conn(uids[i as usize % uids.len()], i);
        sink.write(&r).unwrap();
        written.push(r);
        sink.poll();
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.delivered, n, "{c:?}");
    assert_eq!((c.spilled, c.failed, c.spill_records), (0, 0, 0), "{c:?}");

    let got = consume(
        &bs,
        &["mailtap.conn"],
        n as usize,
        Duration::from_millis(500),
    );
    assert_eq!(got.len(), n as usize, "exactly once");
    let got = by_key(&got);
    for uid in uids {
        let want: Vec<String> = written
            .iter()
            .filter(|r| matches!(r, mailtap_core::Record::Conn(c) if c.uid == uid))
            .map(json_row)
            .collect();
        assert_eq!(got[&Some(uid.to_string())], want, "order of {uid}");
    }
}
