//! SMTP hot paths: the ContentLine splitter over a message body, and the
//! whole analyzer over a session delivered in 1448-byte segments.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailtap_contentline::{LineSplitter, Nuls};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use std::sync::Arc;

fn body(lines: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..lines {
        b.extend_from_slice(
            format!("Line {i} of a plain text message body, about seventy bytes long.\r\n")
                .as_bytes(),
        );
    }
    b
}

fn session(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut c = b"EHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n".to_vec();
    c.extend_from_slice(
        b"From: A <a@example.org>\r\nTo: B <b@example.net>\r\nSubject: bench\r\nReceived: from x ([192.0.2.1]) by y; Fri, 01 Mar 2024 11:59:52 +0000\r\n\r\n",
    );
    c.extend_from_slice(body);
    c.extend_from_slice(b".\r\nQUIT\r\n");
    let s = b"220 mx ESMTP\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n"
        .to_vec();
    (c, s)
}

fn bench(c: &mut Criterion) {
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 25,
    };
    let b = body(2000);
    let mut g = c.benchmark_group("smtp");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("line_splitter_body", |bench| {
        let mut out = Output::new(false);
        let mut ann = ConnAnnotations::default();
        bench.iter(|| {
            let mut cx = ConnCtx {
                ts: Timestamp(0),
                uid: "C1",
                id: &id,
                out: &mut out,
                conn: &mut ann,
            };
            let mut sp = LineSplitter::new(16 << 20, Nuls::DropFirst);
            for seg in b.chunks(1448) {
                let mut pos = 0;
                while let Some(p) = sp.next(&mut cx, seg, &mut pos) {
                    black_box(&p);
                }
            }
        })
    });

    let (client, server) = session(&b);
    g.throughput(Throughput::Bytes((client.len() + server.len()) as u64));
    let cfg = Arc::new(SmtpConfig::default());
    g.bench_function("analyzer_session", |bench| {
        let mut out = Output::new(false);
        bench.iter(|| {
            let mut ann = ConnAnnotations::default();
            let mut a = SmtpAnalyzer::new(cfg.clone());
            let mut cx = ConnCtx {
                ts: Timestamp(0),
                uid: "C1",
                id: &id,
                out: &mut out,
                conn: &mut ann,
            };
            // Server greeting and replies interleaved the way a pipelining
            // client sees them; the body goes in MSS-sized pieces.
            let replies: Vec<&[u8]> = server.split_inclusive(|&x| x == b'\n').collect();
            a.deliver(&mut cx, false, replies[0]);
            let mut r = 1;
            for seg in client.chunks(1448) {
                a.deliver(&mut cx, true, seg);
                if r < replies.len() && seg.ends_with(b"\r\n") {
                    a.deliver(&mut cx, false, replies[r]);
                    r += 1;
                }
            }
            for rest in &replies[r.min(replies.len())..] {
                a.deliver(&mut cx, false, rest);
            }
            a.done(&mut cx);
            cx.out.records.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
