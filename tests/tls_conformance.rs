//! ssl.log, x509.log and conn.log `service` against a real Zeek 8.2.2 on
//! Zeek's own TLS test traces (`../shared/conformance/zeek-8.2.2/traces/tls`,
//! expected logs in `out/tls/<trace>/`; see its MANIFEST.md). Rows are
//! compared field by field by column name, without uids and without
//! mailtap's extra `ja4`/`ja4s` columns, rows sorted. The test skips, saying
//! so, when ../shared is absent.

mod common;
use common::skip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek-8.2.2");
    p.join("traces/tls").is_dir().then_some(p)
}

/// Traces whose TLS is not reached by a mail sensor, and why. Every other
/// trace must match Zeek exactly.
const NOT_COVERED: &[(&str, &str)] = &[
    (
        "imap-starttls",
        "IMAP STARTTLS: no IMAP analyzer yet (issue 15)",
    ),
    ("xmpp-starttls", "XMPP STARTTLS: not a mail protocol"),
    (
        "xmpp-dialback-starttls",
        "XMPP STARTTLS: not a mail protocol",
    ),
    ("irc-starttls", "IRC STARTTLS: not a mail protocol"),
    (
        "tls-fragmented-handshake",
        "x509.log san.dns: Zeek's X509 log keeps up to 500 container elements, mailtap's log writer 100 (log.max_field_container_elements); ssl.log matches",
    ),
];

type Row = BTreeMap<String, String>;

/// Rows of a Zeek ASCII log as column name -> value, `skip` columns left out.
fn rows(path: &Path, skip: &[&str]) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut fields: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !line.starts_with('#') && !line.is_empty() {
            let mut m = Row::new();
            for (name, v) in fields.iter().zip(line.split('\t')) {
                if !skip.contains(&name.as_str()) {
                    m.insert(name.clone(), v.to_string());
                }
            }
            out.push(m);
        }
    }
    out.sort_by_key(|m| format!("{m:?}"));
    out
}

/// conn.log `service` by connection, for the connections Zeek gave to SSL.
fn ssl_services(path: &Path) -> BTreeMap<String, String> {
    rows(path, &[])
        .into_iter()
        .map(|r| {
            let key = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"]
                .map(|k| r.get(k).cloned().unwrap_or_default())
                .join(" ");
            (key, r.get("service").cloned().unwrap_or_default())
        })
        .collect()
}

fn diff(what: &str, ours: &[Row], zeek: &[Row]) -> Option<String> {
    if ours == zeek {
        return None;
    }
    let mut s = format!("{what}: {} rows, Zeek {}\n", ours.len(), zeek.len());
    for (i, z) in zeek.iter().enumerate() {
        match ours.get(i) {
            Some(o) if o == z => {}
            Some(o) => {
                for (k, zv) in z {
                    let ov = o.get(k).map(String::as_str).unwrap_or("<missing>");
                    if ov != zv {
                        s += &format!("  row {i} {k}: ours {ov:?} zeek {zv:?}\n");
                    }
                }
            }
            None => s += &format!("  row {i} missing: {z:?}\n"),
        }
    }
    for (i, o) in ours.iter().enumerate().skip(zeek.len()) {
        s += &format!("  extra row {i}: {o:?}\n");
    }
    Some(s)
}

/// Compares one trace; returns the differences, if any.
fn compare(root: &Path, name: &str, work: &Path) -> Option<String> {
    let mut trace = root.join("traces/tls").join(format!("{name}.pcap"));
    if !trace.exists() {
        trace = root.join("traces/tls").join(format!("{name}.pcap.gz"));
    }
    let out = work.join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtap"));
    cmd.arg("read")
        .arg(&trace)
        .args(["-w", "1", "--no-progress", "-o"])
        .arg(&out);
    if name == "tls-fragmented-handshake" {
        // Its Certificate message is 300 KB (500 SANs); mailtap bounds a
        // handshake message at 256 KiB by default (ssl.max_handshake_message),
        // Zeek takes any size.
        cmd.args(["--set", "ssl.max_handshake_message=524288"]);
    }
    let o = cmd.output().expect("run mailtap");
    if !o.status.success() {
        return Some(format!(
            "mailtap read failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let expected = root.join("out/tls").join(name);
    let mut report = String::new();
    let ssl_skip = ["uid", "ja4", "ja4s"];
    if let Some(d) = diff(
        "ssl.log",
        &rows(&out.join("ssl.log"), &ssl_skip),
        &rows(&expected.join("ssl.log"), &ssl_skip),
    ) {
        report += &d;
    }
    if let Some(d) = diff(
        "x509.log",
        &rows(&out.join("x509.log"), &[]),
        &rows(&expected.join("x509.log"), &[]),
    ) {
        report += &d;
    }
    let ours = ssl_services(&out.join("conn.log"));
    for (conn, service) in ssl_services(&expected.join("conn.log")) {
        if !service.split(',').any(|s| s == "ssl") {
            continue;
        }
        let mine = ours.get(&conn).map(String::as_str).unwrap_or("<no row>");
        if mine != service {
            report += &format!("conn.log {conn}: service ours {mine:?} zeek {service:?}\n");
        }
    }
    (!report.is_empty()).then_some(report)
}

#[test]
fn zeek_tls_conformance() {
    let Some(root) = shared() else {
        skip(
            "zeek_tls_conformance",
            "../shared/conformance/zeek-8.2.2 not found",
        );
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let mut names: Vec<String> = std::fs::read_dir(root.join("traces/tls"))
        .expect("traces/tls")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".pcap")
                .or_else(|| n.strip_suffix(".pcap.gz"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 50,
        "expected Zeek's TLS traces, found {}",
        names.len()
    );
    let only = std::env::var("MAILTAP_TLS_TRACE").ok();
    let mut failures = Vec::new();
    let mut matched = 0;
    for name in &names {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        if NOT_COVERED.iter().any(|(n, _)| n == name) {
            continue;
        }
        match compare(&root, name, work.path()) {
            None => matched += 1,
            Some(d) => failures.push(format!("== {name}\n{d}")),
        }
    }
    eprintln!(
        "TLS conformance: {matched} traces match Zeek 8.2.2, {} differ, {} not covered",
        failures.len(),
        NOT_COVERED.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
