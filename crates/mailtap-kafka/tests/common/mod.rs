//! Shared test helpers: a mock cluster, sink configs, record builders and
//! a consumer that reads everything back.
#![allow(dead_code)]

use mailtap_core::mail::{EmailChunk, EmailMeta, MailProtocol};
use mailtap_core::{
    ConnId, ConnRecord, Event, EventRecord, FileRecord, Interval, Pop3Record, Record, SmtpRecord,
    Timestamp, WeirdRecord,
};
use mailtap_kafka::{KafkaConfig, KafkaSink, Topics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub const PARTITIONS: i32 = 3;

/// A mock cluster with every default topic created.
pub fn cluster(brokers: i32) -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(brokers).expect("mock cluster");
    for (_, t) in Topics::default().all() {
        c.create_topic(t, PARTITIONS, 1).expect("create topic");
    }
    c
}

/// A sink config for the mock cluster: short timeouts and backoffs so
/// outages are noticed and left quickly.
pub fn config(bootstrap: &str, spill: &Path, message_timeout_ms: u32) -> KafkaConfig {
    KafkaConfig {
        brokers: bootstrap.to_string(),
        spill_dir: spill.to_path_buf(),
        flush_timeout: Duration::from_secs(20),
        librdkafka: [
            ("message.timeout.ms", message_timeout_ms.to_string()),
            ("linger.ms", "5".into()),
            ("reconnect.backoff.ms", "20".into()),
            ("reconnect.backoff.max.ms", "200".into()),
            ("retry.backoff.ms", "20".into()),
            ("retry.backoff.max.ms", "200".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..KafkaConfig::default()
    }
}

pub fn id() -> ConnId {
    ConnId {
        orig_h: "198.51.100.7".parse().unwrap(),
        orig_p: 51514,
        resp_h: "2001:db8::25".parse().unwrap(),
        resp_p: 25,
    }
}

/// A conn record whose value identifies it: `i` is in `orig_pkts`.
pub fn conn(uid: &str, i: u64) -> Record {
    Record::Conn(Box::new(ConnRecord {
        ts: Timestamp(1_700_000_000_000_000_000 + i as i64 * 1000),
        uid: uid.into(),
        id: id(),
        service: vec!["smtp"],
        duration: Some(Interval(1_500_000_000)),
        orig_bytes: Some(100),
        resp_bytes: Some(200),
        conn_state: "SF",
        local_orig: None,
        local_resp: None,
        missed_bytes: 0,
        history: "ShAdDaFf".into(),
        orig_pkts: i,
        orig_ip_bytes: 1000,
        resp_pkts: 5,
        resp_ip_bytes: 500,
    }))
}

pub fn smtp(uid: &str) -> Record {
    Record::Smtp(Box::new(SmtpRecord {
        ts: Timestamp(1_700_000_001_000_000_000),
        uid: uid.into(),
        id: Some(id()),
        trans_depth: 1,
        helo: Some(b"client.example".to_vec()),
        mailfrom: Some(b"alice@example.test".to_vec()),
        rcptto: Some(vec![b"bob@example.test".to_vec()]),
        subject: Some("h\u{e9}llo \"quoted\"\t".as_bytes().to_vec()),
        fuids: vec![b"Fabc".to_vec()],
        ..SmtpRecord::default()
    }))
}

pub fn pop3(uid: &str) -> Record {
    Record::Pop3(Box::new(Pop3Record {
        ts: Timestamp(1_700_000_002_000_000_000),
        uid: uid.into(),
        id: Some(id()),
        user: Some(b"carol".to_vec()),
        login: "success",
        messages_retrieved: 2,
        ..Pop3Record::default()
    }))
}

pub fn file(uid: Option<&str>) -> Record {
    Record::File(Box::new(FileRecord {
        ts: Timestamp(1_700_000_003_000_000_000),
        fuid: "Fabc".into(),
        uid: uid.map(Into::into),
        id: Some(id()),
        source: Some("SMTP"),
        seen_bytes: 42,
        ..FileRecord::default()
    }))
}

pub fn weird(uid: Option<&str>) -> Record {
    Record::Weird(Box::new(WeirdRecord {
        ts: Timestamp(1_700_000_004_000_000_000),
        uid: uid.map(Into::into),
        id: uid.map(|_| id()),
        name: "test_weird",
        addl: Some(b"x".to_vec()),
        source: Some("SMTP"),
    }))
}

pub fn event(uid: &str) -> Record {
    Record::Event(Box::new(EventRecord {
        ts: Timestamp(1_700_000_005_000_000_000),
        uid: uid.into(),
        id: id(),
        event: Event::SmtpRequest {
            is_orig: true,
            command: b"MAIL".to_vec(),
            arg: b"FROM:<alice@example.test>".to_vec(),
        },
    }))
}

pub fn chunk(uid: &str, n: u32, d: &[u8]) -> Record {
    Record::EmailData(Box::new(EmailChunk {
        uid: uid.into(),
        n,
        data: d.to_vec(),
    }))
}

pub fn meta(uid: &str, n: u32, size: u64) -> EmailMeta {
    EmailMeta {
        uid: uid.into(),
        n,
        ts: Timestamp::from_secs_micros(1_700_000_000, 123_456),
        id: Some(id()),
        protocol: Some(MailProtocol::Smtp),
        trans_depth: 1,
        mailfrom: Some(b"alice@example.test".to_vec()),
        rcptto: vec![b"bob@example.test".to_vec()],
        size,
        sha256: "00".repeat(32),
        complete: true,
        ..EmailMeta::default()
    }
}

/// One message read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub value: String,
}

/// Reads `topics` from the beginning until `want` messages arrived (or
/// `timeout`), then for `settle` more to catch duplicates.
pub fn consume(bootstrap: &str, topics: &[&str], want: usize, settle: Duration) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mailtap-kafka-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if got.len() >= want && settle_until.is_none() {
            settle_until = Some(now + settle);
        }
        if settle_until.is_some_and(|t| now >= t) || now >= deadline {
            break;
        }
        if let Some(m) = c.poll(Duration::from_millis(50)) {
            let m = m.expect("consume");
            got.push(Got {
                topic: m.topic().to_string(),
                partition: m.partition(),
                key: m.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
                value: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            });
        }
    }
    got
}

/// Polls the sink until `done` holds (or panics after `timeout`).
pub fn poll_until(
    sink: &mut KafkaSink,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&KafkaSink) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(sink) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            sink.counters()
        );
        sink.poll();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The JSON row `--log-format json` writes for `r`, without its newline.
pub fn json_row(r: &Record) -> String {
    let mut v = Vec::new();
    match r {
        Record::Event(e) => mailtap_logs::format_event(e, &mut v),
        _ => {
            mailtap_logs::format_json_row(
                r.as_log().unwrap(),
                &mailtap_logs::LogLimits::default(),
                &mut v,
            );
        }
    }
    String::from_utf8(v)
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

/// Messages per key, in arrival order.
pub fn by_key(got: &[Got]) -> HashMap<Option<String>, Vec<String>> {
    let mut m: HashMap<Option<String>, Vec<String>> = HashMap::new();
    for g in got {
        m.entry(g.key.clone()).or_default().push(g.value.clone());
    }
    m
}

/// Standard base64 decoding (test-side, independent of the sink's encoder).
pub fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let mut out = Vec::new();
    for q in s.as_bytes().chunks(4) {
        let pad = q.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            n |= if c == b'=' { 0 } else { val(c) } << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    out
}
