//! Outages longer than message.timeout.ms: records go to the disk spill and
//! are replayed in order when the brokers return; the spill survives a
//! restart, is bounded, and a torn tail is cut without losing what precedes
//! it.

mod common;

use common::*;
use mailtap_core::Record;
use mailtap_kafka::{KafkaConfig, KafkaSink};
use std::time::Duration;

const UIDS: [&str; 4] = ["Ca", "Cb", "Cc", "Cd"];

fn rec(i: u64) -> Record {
    conn(UIDS[i as usize % UIDS.len()], i)
}

/// Every record of `written` exactly once, in write order per key.
fn assert_exactly_once_in_order(got: &[Got], written: &[Record]) {
    assert_eq!(got.len(), written.len(), "count (duplicates or losses)");
    let got = by_key(got);
    for uid in UIDS {
        let want: Vec<String> = written
            .iter()
            .filter(|r| matches!(r, Record::Conn(c) if c.uid == uid))
            .map(json_row)
            .collect();
        assert_eq!(
            got.get(&Some(uid.to_string())).cloned().unwrap_or_default(),
            want,
            "records of {uid}"
        );
    }
}

fn seg_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn long_outage_spills_and_replays_in_order() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    let mut sink = KafkaSink::new(config(&bs, spill.path(), 500)).unwrap();
    let mut written = Vec::new();
    let mut i = 0u64;
    let mut write = |sink: &mut KafkaSink, n: u64| {
        for _ in 0..n {
            let r = rec(i);
            sink.write(&r).unwrap();
            written.push(r);
            i += 1;
            sink.poll();
        }
    };
    write(&mut sink, 20);
    // The first deliveries can take about as long as message.timeout.ms
    // (connection, idempotent producer id): they may spill and replay
    // already. Either way, wait until all 20 are in and the spill is empty.
    poll_until(&mut sink, Duration::from_secs(10), "delivery", |s| {
        let c = s.counters();
        c.delivered == 20 && c.spill_records == 0 && c.queue_depth == 0
    });
    let b = sink.counters();

    mc.broker_down(-1).unwrap();
    write(&mut sink, 50);
    // librdkafka gives up after message.timeout.ms: the records spill.
    poll_until(&mut sink, Duration::from_secs(10), "spill", |s| {
        s.counters().spilled - b.spilled == 50
    });
    // Now new records go straight to the spill, behind the failed ones.
    write(&mut sink, 50);
    let c = sink.counters();
    assert_eq!(
        (c.spilled - b.spilled, c.spill_records, c.delivered),
        (100, 100, 20),
        "{c:?}"
    );
    assert!(c.failed > b.failed && c.spill_bytes > 0, "{c:?}");
    // Replay probes keep failing while the broker is down, and nothing
    // leaves the spill.
    let f = sink.counters().failed;
    poll_until(&mut sink, Duration::from_secs(10), "a failed probe", |s| {
        s.counters().failed > f
    });
    assert_eq!(sink.counters().spill_records, 100);

    mc.broker_up(-1).unwrap();
    poll_until(&mut sink, Duration::from_secs(20), "replay", |s| {
        let c = s.counters();
        c.spill_records == 0 && c.queue_depth == 0
    });
    let c = sink.counters();
    assert_eq!((c.replayed - b.replayed, c.delivered), (100, 120), "{c:?}");
    assert!(
        seg_files(spill.path()).is_empty(),
        "drained spill leaves no segments"
    );
    // Direct producing again.
    write(&mut sink, 10);
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(
        (c.delivered, c.spilled - b.spilled, c.spill_dropped),
        (130, 100, 0),
        "{c:?}"
    );

    let got = consume(
        &bs,
        &["mailtap.conn"],
        written.len(),
        Duration::from_millis(500),
    );
    assert_exactly_once_in_order(&got, &written);
}

#[test]
fn finish_spills_the_rest_and_the_next_run_replays_it_first() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    mc.broker_down(-1).unwrap();
    let cfg = KafkaConfig {
        flush_timeout: Duration::from_millis(200),
        ..config(&bs, spill.path(), 10_000)
    };
    let mut sink = KafkaSink::new(cfg.clone()).unwrap();
    let mut written: Vec<Record> = (0..30).map(rec).collect();
    for r in &written {
        sink.write(r).unwrap();
        sink.poll();
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(
        (c.delivered, c.spilled, c.spill_records),
        (0, 30, 30),
        "{c:?}"
    );

    // A new run: the spill comes first, then what it writes.
    mc.broker_up(-1).unwrap();
    let mut sink = KafkaSink::new(KafkaConfig {
        flush_timeout: Duration::from_secs(20),
        ..cfg
    })
    .unwrap();
    assert_eq!(sink.counters().spill_recovered, 30);
    for i in 30..35 {
        let r = rec(i);
        sink.write(&r).unwrap();
        written.push(r);
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(
        (c.replayed, c.delivered, c.spill_records),
        (35, 35, 0),
        "{c:?}"
    );

    let got = consume(&bs, &["mailtap.conn"], 35, Duration::from_millis(500));
    assert_exactly_once_in_order(&got, &written);
}

#[test]
fn full_spill_drops_and_counts_and_the_rest_still_works() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    mc.broker_down(-1).unwrap();
    let one = json_row(&rec(0)).len() as u64 + 40;
    let cfg = KafkaConfig {
        flush_timeout: Duration::from_millis(200),
        spill_max_bytes: one * 5,
        ..config(&bs, spill.path(), 300)
    };
    let mut sink = KafkaSink::new(cfg.clone()).unwrap();
    for i in 0..40 {
        sink.write(&rec(i)).unwrap();
        sink.poll();
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert!(c.spill_dropped > 0, "{c:?}");
    assert_eq!(c.spilled + c.spill_dropped, 40, "{c:?}");
    assert!(c.spill_bytes <= one * 5, "{c:?}");
    let kept = c.spilled;

    // Brokers back: the kept records are replayed, new ones delivered.
    mc.broker_up(-1).unwrap();
    let mut sink = KafkaSink::new(KafkaConfig {
        flush_timeout: Duration::from_secs(20),
        ..cfg
    })
    .unwrap();
    // (While the full spill drains, a new record would queue behind it and
    // be dropped too: wait until it has drained.)
    poll_until(&mut sink, Duration::from_secs(20), "replay", |s| {
        s.counters().spill_records == 0
    });
    sink.write(&rec(100)).unwrap();
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(
        (c.replayed, c.delivered, c.spill_dropped),
        (kept, kept + 1, 0),
        "{c:?}"
    );
    let got = consume(
        &bs,
        &["mailtap.conn"],
        kept as usize + 1,
        Duration::from_millis(300),
    );
    assert_eq!(got.len() as u64, kept + 1);
}

#[test]
fn torn_spill_tail_is_cut_and_the_records_before_it_replayed() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    mc.broker_down(-1).unwrap();
    let cfg = KafkaConfig {
        flush_timeout: Duration::from_millis(200),
        ..config(&bs, spill.path(), 10_000)
    };
    let mut sink = KafkaSink::new(cfg.clone()).unwrap();
    let mut written: Vec<Record> = (0..10).map(rec).collect();
    for r in &written {
        sink.write(r).unwrap();
    }
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.spill_records, 10);

    // A crash mid-write: the last record is cut short.
    let segs = seg_files(spill.path());
    assert_eq!(segs.len(), 1);
    let len = std::fs::metadata(&segs[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    written.pop();

    mc.broker_up(-1).unwrap();
    let mut sink = KafkaSink::new(cfg).unwrap();
    let c = sink.counters();
    assert_eq!(c.spill_recovered, 9, "{c:?}");
    assert!(c.spill_torn_bytes > 0, "{c:?}");
    poll_until(&mut sink, Duration::from_secs(20), "replay", |s| {
        s.counters().spill_records == 0 && s.counters().queue_depth == 0
    });
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.replayed, 9, "{c:?}");
    let got = consume(&bs, &["mailtap.conn"], 9, Duration::from_millis(300));
    assert_exactly_once_in_order(&got, &written);
}

/// The documented at-least-once case: the broker writes the records but its
/// acknowledgements come after message.timeout.ms. librdkafka reports them
/// as failed, the sink spills them and replays them once the broker answers
/// in time again: nothing is lost, and records may arrive twice.
#[test]
fn late_acks_are_spilled_and_replayed_at_least_once() {
    let mc = cluster(1);
    let bs = mc.bootstrap_servers();
    let spill = tempfile::tempdir().unwrap();
    let mut cfg = config(&bs, spill.path(), 600);
    cfg.librdkafka
        .push(("socket.timeout.ms".into(), "400".into()));
    let mut sink = KafkaSink::new(cfg).unwrap();
    // Warm up (connection, producer id) with a quick broker.
    let mut written = vec![rec(0)];
    sink.write(&written[0]).unwrap();
    poll_until(&mut sink, Duration::from_secs(10), "warm-up", |s| {
        let c = s.counters();
        c.delivered == 1 && c.spill_records == 0 && c.queue_depth == 0
    });
    let b = sink.counters();

    mc.broker_round_trip_time(1, Duration::from_millis(1500))
        .unwrap();
    for i in 1..21 {
        let r = rec(i);
        sink.write(&r).unwrap();
        written.push(r);
        sink.poll();
    }
    poll_until(&mut sink, Duration::from_secs(15), "spill", |s| {
        s.counters().spilled - b.spilled == 20
    });
    mc.broker_round_trip_time(1, Duration::ZERO).unwrap();
    poll_until(&mut sink, Duration::from_secs(30), "replay", |s| {
        let c = s.counters();
        c.spill_records == 0 && c.queue_depth == 0
    });
    let (c, res) = sink.finish();
    res.unwrap();
    assert_eq!(c.spill_dropped, 0, "{c:?}");

    let got = consume(
        &bs,
        &["mailtap.conn"],
        written.len(),
        Duration::from_millis(1000),
    );
    let values: Vec<&str> = got.iter().map(|g| g.value.as_str()).collect();
    for r in &written {
        assert!(
            values.contains(&json_row(r).as_str()),
            "lost: {}",
            json_row(r)
        );
    }
    // The broker had written them: the replay makes duplicates (the mock
    // writes before it delays the answer; 20 of 20 in every run so far).
    assert!(got.len() > written.len(), "expected duplicates");
    eprintln!(
        "late acks: {} written, {} arrived ({} duplicates)",
        written.len(),
        got.len(),
        got.len() - written.len()
    );
}
