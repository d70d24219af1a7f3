//! POP3 hot path: a session retrieving a large message, server side in
//! 1448-byte segments, with events off (the production default) and on.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_pop3::{Pop3Analyzer, Pop3Config};
use std::sync::Arc;

fn server(lines: usize) -> Vec<u8> {
    let mut s =
        b"+OK POP3 ready\r\n+OK\r\n+OK\r\n+OK 1 messages\r\n+OK message follows\r\n".to_vec();
    s.extend_from_slice(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n");
    for i in 0..lines {
        s.extend_from_slice(
            format!("Line {i} of a plain text message body, about seventy bytes long.\r\n")
                .as_bytes(),
        );
    }
    s.extend_from_slice(b"..dot-stuffed line\r\n.\r\n+OK bye\r\n");
    s
}

fn bench(c: &mut Criterion) {
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 110,
    };
    let srv = server(2000);
    let cfg = Arc::new(Pop3Config::default());
    let mut g = c.benchmark_group("pop3");
    g.throughput(Throughput::Bytes(srv.len() as u64));
    for events in [false, true] {
        let name = if events { "session_events" } else { "session" };
        g.bench_function(name, |b| {
            let mut out = Output::new(events);
            b.iter(|| {
                let mut ann = ConnAnnotations::default();
                let mut a = Pop3Analyzer::new(cfg.clone());
                let mut cx = ConnCtx {
                    ts: Timestamp(0),
                    uid: "C1",
                    id: &id,
                    out: &mut out,
                    conn: &mut ann,
                };
                let (greet, rest) = srv.split_at(16);
                a.deliver(&mut cx, false, greet);
                a.deliver(
                    &mut cx,
                    true,
                    b"USER bob\r\nPASS x\r\nSTAT\r\nRETR 1\r\nQUIT\r\n",
                );
                for seg in rest.chunks(1448) {
                    a.deliver(&mut cx, false, seg);
                }
                a.done(&mut cx);
                black_box(cx.out.records.len());
                cx.out.records.clear();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
