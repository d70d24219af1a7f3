//! Analyzer-level tests: byte streams fed as the engine would (both
//! directions, arbitrary delivery boundaries), checked against the ssl.log
//! row, weirds and service confirmation Zeek would produce.

use crate::{TlsAnalyzer, TlsConfig};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::record::SslRecord;
use mailtap_core::{ConnCtx, ConnId, Output, Record, TcpAnalyzer, Timestamp};
use std::sync::Arc;

fn id() -> ConnId {
    ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 465,
    }
}

/// Feeds (is_orig, bytes) pieces, each cut into `chunk`-byte deliveries.
fn run(
    pieces: &[(bool, Vec<u8>)],
    chunk: usize,
    cfg: TlsConfig,
) -> (Vec<Record>, ConnAnnotations, bool) {
    let id = id();
    let mut a = TlsAnalyzer::new(Arc::new(cfg));
    let mut out = Output::new(false);
    let mut ann = ConnAnnotations::default();
    let mut done_early = false;
    {
        let mut cx = ConnCtx {
            ts: Timestamp(1_000_000_000),
            uid: "Ctest",
            id: &id,
            out: &mut out,
            conn: &mut ann,
        };
        for (i, (o, b)) in pieces.iter().enumerate() {
            cx.ts = Timestamp((i as i64 + 1) * 1_000_000_000);
            for c in b.chunks(chunk.max(1)) {
                a.deliver(&mut cx, *o, c);
            }
        }
        done_early = done_early || a.handshake_done();
        a.done(&mut cx);
    }
    (out.records, ann, done_early)
}

fn ssl(recs: &[Record]) -> Vec<&SslRecord> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Ssl(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

fn record(ct: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ct, 3, 3, (body.len() >> 8) as u8, body.len() as u8];
    v.extend_from_slice(body);
    v
}

fn hs(t: u8, body: &[u8]) -> Vec<u8> {
    let l = body.len();
    let mut v = vec![t, (l >> 16) as u8, (l >> 8) as u8, l as u8];
    v.extend_from_slice(body);
    v
}

fn ext(t: u16, data: &[u8]) -> Vec<u8> {
    let mut v = t.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn client_hello(exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.push(0); // session id
    b.extend_from_slice(&[0, 4, 0xc0, 0x2f, 0x13, 0x01]);
    b.extend_from_slice(&[1, 0]);
    let e: Vec<u8> = exts.concat();
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    hs(1, &b)
}

fn server_hello(version: u16, cipher: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&[9; 32]);
    b.push(0);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let e: Vec<u8> = exts.concat();
    b.extend_from_slice(&(e.len() as u16).to_be_bytes());
    b.extend_from_slice(&e);
    hs(2, &b)
}

fn sni(name: &str) -> Vec<u8> {
    let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    d.push(0);
    d.extend_from_slice(&(name.len() as u16).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    ext(0, &d)
}

/// A TLS 1.2 ECDHE handshake: C s x k n, G I, (server) t i, then
/// application data.
fn tls12() -> Vec<(bool, Vec<u8>)> {
    let ske = [3, 0, 23, 1, 4, 0, 0];
    let cert_msg = hs(11, &[0, 0, 7, 0, 0, 4, 0x30, 0x02, 0x05, 0x00]);
    let server = [
        server_hello(0x0303, 0xc02f, &[ext(16, &[0, 3, 2, b'h', b'2'])]),
        cert_msg,
        hs(12, &ske),
        hs(14, &[]),
    ]
    .concat();
    vec![
        (
            true,
            record(
                22,
                &client_hello(&[sni("mx.example.org"), ext(16, &[0, 3, 2, b'h', b'2'])]),
            ),
        ),
        (false, record(22, &server)),
        (
            true,
            [
                record(22, &hs(16, &[0; 33])),
                record(20, &[1]),
                record(22, &[0; 40]),
            ]
            .concat(),
        ),
        (
            false,
            [
                record(22, &hs(4, &[0; 10])),
                record(20, &[1]),
                record(22, &[0; 40]),
            ]
            .concat(),
        ),
        (true, record(23, &[0; 50])),
        (false, record(23, &[0; 50])),
    ]
}

#[test]
fn tls12_handshake_any_boundaries() {
    for chunk in [1, 2, 3, 7, 64, 100_000] {
        let (recs, ann, done) = run(&tls12(), chunk, TlsConfig::default());
        let rows = ssl(&recs);
        assert_eq!(rows.len(), 1, "chunk {chunk}");
        let r = rows[0];
        assert_eq!(r.version.as_deref(), Some(&b"TLSv12"[..]));
        assert_eq!(
            r.cipher.as_deref(),
            Some(&b"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"[..])
        );
        assert_eq!(r.curve.as_deref(), Some(&b"secp256r1"[..]));
        assert_eq!(r.server_name.as_deref(), Some(&b"mx.example.org"[..]));
        assert_eq!(r.next_protocol.as_deref(), Some(&b"h2"[..]));
        assert_eq!(r.ssl_history, b"CsxknGIti");
        assert!(r.established && !r.resumed);
        // The "certificate" does not parse: a fingerprint but no x509 row.
        assert_eq!(r.cert_chain_fps.as_ref().map(Vec::len), Some(1));
        assert_eq!(r.client_cert_chain_fps.as_ref().map(Vec::len), Some(0));
        // ts: the first SSL event (the client hello's delivery).
        assert_eq!(r.ts, Timestamp(1_000_000_000));
        assert!(r
            .ja4
            .as_deref()
            .is_some_and(|j| j.starts_with(b"t12d0202h2_")));
        assert_eq!(ann.service, vec!["ssl"]);
        assert!(done);
    }
}

#[test]
fn fragmented_handshake_messages() {
    // The ServerHello split over three handshake records.
    let mut v = tls12();
    let sh = server_hello(0x0303, 0x009c, &[]);
    let (a, rest) = sh.split_at(10);
    let (b, c) = rest.split_at(20);
    v[1] = (
        false,
        [
            record(22, a),
            record(22, b),
            record(22, &[c, &hs(14, &[])].concat()),
        ]
        .concat(),
    );
    let (recs, _, _) = run(&v, 5, TlsConfig::default());
    let r = ssl(&recs)[0];
    assert_eq!(
        r.cipher.as_deref(),
        Some(&b"TLS_RSA_WITH_AES_128_GCM_SHA256"[..])
    );
    assert_eq!(r.ssl_history, b"CsnGIti");
    assert!(r.curve.is_none() && r.cert_chain_fps.is_none());
}

#[test]
fn tls13_with_alert_and_hrr() {
    let hrr_random: [u8; 32] = [
        0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8,
        0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8,
        0x33, 0x9C,
    ];
    let mut hrr = server_hello(0x0303, 0x1302, &[ext(43, &[3, 4]), ext(51, &[0, 23])]);
    hrr[6..38].copy_from_slice(&hrr_random);
    let sh = server_hello(
        0x0303,
        0x1302,
        &[ext(43, &[3, 4]), ext(51, &[0, 23, 0, 1, 0])],
    );
    let v = vec![
        (true, record(22, &client_hello(&[ext(43, &[2, 3, 4])]))),
        (false, [record(22, &hrr), record(20, &[1])].concat()),
        (
            true,
            [record(20, &[1]), record(22, &client_hello(&[]))].concat(),
        ),
        (false, [record(22, &sh), record(23, &[0; 30])].concat()),
        (true, record(23, &[0; 30])),
    ];
    let (recs, _, done) = run(&v, 9, TlsConfig::default());
    let r = ssl(&recs)[0];
    assert_eq!(r.ssl_history, b"CjiICs");
    assert_eq!(r.version.as_deref(), Some(&b"TLSv13"[..]));
    assert_eq!(r.cipher.as_deref(), Some(&b"TLS_AES_256_GCM_SHA384"[..]));
    assert_eq!(r.curve.as_deref(), Some(&b"secp256r1"[..]));
    assert!(r.established && done);
    assert!(r
        .ja4s
        .as_deref()
        .is_some_and(|j| j.starts_with(b"t130200_1302_")));

    // An alert instead of a server hello.
    let v = vec![
        (true, record(22, &client_hello(&[]))),
        (false, record(21, &[2, 40])),
    ];
    let (recs, ann, _) = run(&v, 3, TlsConfig::default());
    let r = ssl(&recs)[0];
    assert_eq!(r.ssl_history, b"Cl");
    assert_eq!(r.last_alert.as_deref(), Some(&b"handshake_failure"[..]));
    assert!(!r.established);
    assert_eq!(ann.service, vec!["ssl"]);
}

#[test]
fn garbage_and_http_answers() {
    // No TLS at all: no row, no service.
    let (recs, ann, done) = run(
        &[(true, b"GET / HTTP/1.1\r\n\r\n".to_vec())],
        4,
        TlsConfig::default(),
    );
    assert!(ssl(&recs).is_empty());
    assert!(ann.service.is_empty());
    assert!(done);
    // A client hello answered by HTTP: row with history C, service withdrawn.
    let v = vec![
        (true, record(22, &client_hello(&[sni("vk.com")]))),
        (false, b"HTTP/1.1 400 Bad Request\r\n".to_vec()),
    ];
    let (recs, ann, _) = run(&v, 1000, TlsConfig::default());
    let r = ssl(&recs)[0];
    assert_eq!(r.ssl_history, b"C");
    assert_eq!(r.server_name.as_deref(), Some(&b"vk.com"[..]));
    assert!(r.version.is_none());
    assert!(ann.service.is_empty());
    // Pseudo-random bytes never panic.
    let mut x: u32 = 1;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for start in [22u8, 0x80] {
        let mut b = vec![start, 3, 1, 0x40, 0];
        b.extend_from_slice(&noise);
        run(&[(true, b.clone()), (false, b)], 13, TlsConfig::default());
    }
}

#[test]
fn oversized_handshake_message_is_skipped() {
    let cfg = TlsConfig {
        max_handshake_message: 1024,
        ..TlsConfig::default()
    };
    let big = hs(11, &vec![0; 5000]);
    let mut recs_bytes = Vec::new();
    for c in big.chunks(1000) {
        recs_bytes.extend(record(22, c));
    }
    recs_bytes.extend(record(22, &hs(14, &[])));
    let v = vec![
        (true, record(22, &client_hello(&[]))),
        (
            false,
            [record(22, &server_hello(0x0303, 0x002f, &[])), recs_bytes].concat(),
        ),
    ];
    let (recs, _, _) = run(&v, 700, cfg);
    let r = ssl(&recs)[0];
    assert_eq!(r.ssl_history, b"Csxn");
    assert!(r.cert_chain_fps.is_none());
    assert!(
        !recs.iter().any(|r| matches!(r, Record::Weird(_))),
        "no weird: Zeek reports none"
    );
}

#[test]
fn sslv2_hello_and_master_key() {
    // Client hello: 2-byte header, type 1, version 0x0002, lengths.
    let mut ch = vec![0x80, 0, 1, 0, 2, 0, 3, 0, 0, 0, 16, 0x07, 0x00, 0xc0];
    ch.extend_from_slice(&[5; 16]);
    ch[1] = (ch.len() - 2) as u8;
    // Server hello: session_id_hit 0, cert type 1, version 2, no cert.
    let mut sh = vec![0x80, 0, 4, 0, 1, 0, 2, 0, 0, 0, 3, 0, 16, 0x07, 0x00, 0xc0];
    sh.extend_from_slice(&[6; 16]);
    sh[1] = (sh.len() - 2) as u8;
    let mut mk = vec![0x80, 0, 2, 0x07, 0x00, 0xc0, 0, 0, 0, 0, 0, 0];
    mk[1] = (mk.len() - 2) as u8;
    let (recs, ann, done) = run(
        &[(true, ch), (false, sh), (true, mk)],
        2,
        TlsConfig::default(),
    );
    let r = ssl(&recs)[0];
    assert_eq!(r.version.as_deref(), Some(&b"SSLv2"[..]));
    assert_eq!(
        r.cipher.as_deref(),
        Some(&b"SSLv20_CK_DES_192_EDE3_CBC_WITH_MD5"[..])
    );
    assert_eq!(r.ssl_history, b"Cs");
    assert!(r.established && done);
    assert_eq!(ann.service, vec!["ssl"]);
}

#[test]
fn analyze_off_does_nothing() {
    let cfg = TlsConfig {
        analyze: false,
        ..TlsConfig::default()
    };
    let (recs, _, done) = run(&tls12(), 64, cfg);
    assert!(recs.is_empty() && done);
}

#[test]
fn dpd() {
    let ch = record(22, &client_hello(&[]));
    assert!(crate::dpd_orig_matches(&ch));
    assert!(!crate::dpd_orig_matches(b"EHLO x\r\n"));
    assert!(crate::dpd_resp_matches(&record(
        22,
        &server_hello(0x0303, 0x2f, &[])
    )));
    assert!(crate::dpd_resp_matches(&record(21, &[2, 40])));
    assert!(!crate::dpd_resp_matches(b"220 mx\r\n"));
}
