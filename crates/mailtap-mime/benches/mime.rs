//! MIME parsing + base64 decoding + MD5/SHA1/SHA256 over a message with a
//! 1 MB attachment, fed line by line as the SMTP analyzer does.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, Timestamp};
use mailtap_mime::{FilesConfig, MessageAnalyzer, MessageContext, NoSink, Source};
use std::sync::Arc;

fn message() -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut m = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
Hello, see attachment.\r\n--b1\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let mut x: u32 = 1;
    // 1 MB decoded = 1,398,104 base64 chars, 76 per line.
    let mut line = Vec::with_capacity(78);
    for _ in 0..(1_048_576 / 57) {
        line.clear();
        for _ in 0..76 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            line.push(A[(x >> 16) as usize % 64]);
        }
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b1--\r\n");
    m
}

fn bench(c: &mut Criterion) {
    let msg = message();
    let lines: Vec<&[u8]> = msg
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 1,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 25,
    };
    let mut g = c.benchmark_group("mime");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    for (name, hashes) in [
        (
            "1MB_base64_attachment_md5_sha1_sha256",
            FilesConfig::default().hashes,
        ),
        ("1MB_base64_attachment_no_hashes", Vec::new()),
    ] {
        let cfg = Arc::new(FilesConfig {
            hashes,
            ..FilesConfig::default()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut out = Output::new(false);
                let mut ann = ConnAnnotations::default();
                let mut cx = ConnCtx {
                    ts: Timestamp(1),
                    uid: "Cbench",
                    id: &id,
                    out: &mut out,
                    conn: &mut ann,
                };
                let mut m = MessageAnalyzer::new(cfg.clone());
                let ctx = MessageContext {
                    source: Source::Smtp,
                    is_orig: true,
                    local_orig: None,
                    conn_start: Timestamp(0),
                    trans_depth: 1,
                    max_header_bytes: 65536,
                    extract: None,
                };
                m.begin(&mut cx, ctx, &mut NoSink);
                for l in &lines {
                    m.line(&mut cx, l, b"\r\n", &mut NoSink);
                }
                m.end(&mut cx, &mut NoSink, true)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
