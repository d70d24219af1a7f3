//! ssl.log and x509.log against the generator's TLS truth.
//!
//! The generator's `mta` mix replays real TLS handshakes recorded from
//! OpenSSL and Python peers (`scripts/record-tls-handshakes.py`,
//! `crates/mailtap-gen/tls/`); `mailtap_gen::generate_with_tls_truth`
//! reports, for every TLS session, its endpoints and what the real peers
//! said the handshake negotiated. A small `mta` capture is read with
//! `mailtap read`, and every TLS session's ssl.log row (joined to the truth
//! by the connection's 4-tuple through conn.log's uid) and the x509.log
//! rows of its certificates must say the same.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;

use mailtap_gen::{generate_with_tls_truth, GenConfig, HandshakeTruth, TrafficMix};

type Key = (IpAddr, u16, IpAddr, u16);

/// Rows of a Zeek TSV log as field-name -> value maps.
fn log(dir: &Path, name: &str) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
        return Vec::new();
    };
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !line.starts_with('#') {
            assert!(!fields.is_empty(), "{name}: row before #fields");
            let vals: Vec<&str> = line.split('\t').collect();
            assert_eq!(vals.len(), fields.len(), "{name}: {line}");
            out.push(
                fields
                    .iter()
                    .cloned()
                    .zip(vals.iter().map(|v| v.to_string()))
                    .collect(),
            );
        }
    }
    out
}

fn opt(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

fn tf(b: bool) -> String {
    (if b { "T" } else { "F" }).to_string()
}

/// A Zeek vector: unset (`-`) and empty (`(empty)`) both mean no element.
fn vector(v: &str) -> Vec<String> {
    match v {
        "-" | "(empty)" => Vec::new(),
        _ => v.split(',').map(str::to_string).collect(),
    }
}

/// The mta mix, small: 320 sessions with bodies capped at 200 kB (the
/// sessions' TLS handshakes are what this test is about).
fn config() -> GenConfig {
    GenConfig {
        sessions: 320,
        concurrency: 32,
        seed: 11,
        body_bytes: (120, 200_000),
        ..GenConfig::for_mix(TrafficMix::Mta)
    }
}

#[test]
fn ssl_and_x509_logs_equal_the_recorded_handshakes_truth() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("mta.pcap");
    let mut truth: HashMap<Key, &'static HandshakeTruth> = HashMap::new();
    let f = std::io::BufWriter::new(std::fs::File::create(&cap).unwrap());
    let stats = generate_with_tls_truth(&config(), f, &mut |_| {}, &mut |t| {
        let k = (t.orig.0, t.orig.1, t.resp.0, t.resp.1);
        assert!(truth.insert(k, t.handshake).is_none(), "{k:?} twice");
    })
    .unwrap();
    assert_eq!(truth.len() as u64, stats.tls_sessions);
    assert!(truth.len() >= 48, "{} TLS sessions", truth.len());
    // the seed is chosen so that every recorded handshake occurs
    let used: BTreeSet<&str> = truth.values().map(|h| h.name).collect();
    let all: BTreeSet<&str> = mailtap_gen::tls_handshakes().map(|h| h.name).collect();
    assert_eq!(used, all, "fixtures used by this capture");

    let out = dir.path().join("logs");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        out.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mailtap read: {}", stderr(&o));

    // uid -> 4-tuple, from conn.log
    let mut by_uid: HashMap<String, Key> = HashMap::new();
    for r in log(&out, "conn.log") {
        let k = (
            r["id.orig_h"].parse().unwrap(),
            r["id.orig_p"].parse().unwrap(),
            r["id.resp_h"].parse().unwrap(),
            r["id.resp_p"].parse().unwrap(),
        );
        assert!(by_uid.insert(r["uid"].clone(), k).is_none());
        if truth.contains_key(&k) {
            assert!(
                r["service"].split(',').any(|s| s == "ssl"),
                "{k:?}: conn.log service {}",
                r["service"]
            );
        }
    }
    let mut ssl: HashMap<Key, BTreeMap<String, String>> = HashMap::new();
    for r in log(&out, "ssl.log") {
        let k = by_uid[&r["uid"]];
        assert_eq!(
            (r["id.orig_h"].as_str(), r["id.resp_p"].as_str()),
            (k.0.to_string().as_str(), k.3.to_string().as_str())
        );
        assert!(ssl.insert(k, r).is_none(), "{k:?}: two ssl.log rows");
    }
    assert_eq!(ssl.len(), truth.len(), "one ssl.log row per TLS session");

    // field-by-field comparison; every difference is collected first
    let mut diffs: BTreeSet<String> = BTreeSet::new();
    let mut want_certs: BTreeMap<&str, (&str, &str, bool, bool)> = BTreeMap::new();
    for (k, h) in &truth {
        let row = ssl
            .get(k)
            .unwrap_or_else(|| panic!("{k:?} ({}): no ssl.log row", h.name));
        // In TLS 1.3 the server's ALPN choice travels in the encrypted
        // EncryptedExtensions: the peers negotiated it, but no passive
        // observer (Zeek included) can log it, so ssl.log must leave
        // next_protocol unset there. The certificates are handled the same
        // way in the truth itself (cert_chain_fps is empty for TLS 1.3).
        let visible_alpn = if h.version == Some("TLSv13") {
            None
        } else {
            h.next_protocol
        };
        let expect = [
            ("version", opt(h.version)),
            ("cipher", opt(h.cipher)),
            ("curve", opt(h.curve)),
            ("server_name", opt(h.server_name)),
            ("resumed", tf(h.resumed)),
            ("established", tf(h.established)),
            ("last_alert", opt(h.last_alert)),
            ("next_protocol", opt(visible_alpn)),
        ];
        for (field, want) in expect {
            if row[field] != want {
                diffs.insert(format!(
                    "{}: {field}: expected {want}, got {}",
                    h.name, row[field]
                ));
            }
        }
        for (field, want) in [
            ("cert_chain_fps", h.cert_chain_fps),
            ("client_cert_chain_fps", h.client_cert_chain_fps),
        ] {
            let got = vector(&row[field]);
            if got != want {
                diffs.insert(format!(
                    "{}: {field}: expected {want:?}, got {got:?}",
                    h.name
                ));
            }
        }
        if matches!(row["ssl_history"].as_str(), "" | "-") {
            diffs.insert(format!("{}: ssl_history empty", h.name));
        }
        // Zeek's host_cert: the end-host (leaf) certificate, first of its
        // chain; client_cert: sent by the client.
        for c in h.certs {
            let client = h.client_cert_chain_fps.contains(&c.fingerprint);
            let leaf = h.cert_chain_fps.first() == Some(&c.fingerprint)
                || h.client_cert_chain_fps.first() == Some(&c.fingerprint);
            want_certs.insert(c.fingerprint, (c.subject, c.issuer, leaf, client));
        }
    }

    // x509.log: one row per distinct certificate, as recorded
    let mut x509: BTreeMap<String, usize> = BTreeMap::new();
    for r in log(&out, "x509.log") {
        let fp = r["fingerprint"].clone();
        *x509.entry(fp.clone()).or_default() += 1;
        let Some(&(subject, issuer, leaf, client)) = want_certs.get(fp.as_str()) else {
            diffs.insert(format!("x509.log: unexpected certificate {fp}"));
            continue;
        };
        for (field, want) in [
            ("certificate.subject", subject.to_string()),
            ("certificate.issuer", issuer.to_string()),
            ("host_cert", tf(leaf)),
            ("client_cert", tf(client)),
        ] {
            if r[field] != want {
                diffs.insert(format!(
                    "x509.log {fp}: {field}: expected {want}, got {}",
                    r[field]
                ));
            }
        }
    }
    for (fp, n) in &x509 {
        if *n != 1 {
            diffs.insert(format!("x509.log: {fp} logged {n} times"));
        }
    }
    for fp in want_certs.keys() {
        if !x509.contains_key(*fp) {
            diffs.insert(format!("x509.log: no row for {fp}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "mailtap disagrees with the recorded peers:\n{}",
        diffs.into_iter().collect::<Vec<_>>().join("\n")
    );
}
