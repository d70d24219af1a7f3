//! A Kafka-protocol broker for benchmarks and manual tests: librdkafka's
//! mock cluster on loopback, with mailtap's topics created.
//!
//! `cargo run --release -p mailtap-kafka --example mock-broker [BROKERS] [PARTITIONS]`
//!
//! Prints the bootstrap servers on the first line of stdout, then runs
//! until stdin closes (or the process is killed).

use rdkafka::mocking::MockCluster;
use std::io::{BufRead, Write};

fn main() {
    let mut args = std::env::args().skip(1);
    let brokers: i32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let partitions: i32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mc = MockCluster::new(brokers).expect("mock cluster");
    for (_, t) in mailtap_kafka::Topics::default().all() {
        mc.create_topic(t, partitions, 1).expect("create topic");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", mc.bootstrap_servers()).unwrap();
    out.flush().unwrap();
    drop(out);
    // Serve until stdin closes.
    for _ in std::io::stdin().lock().lines() {}
}
