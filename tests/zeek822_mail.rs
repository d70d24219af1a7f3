//! Zeek 8.2.2 parity on the mail captures of `../shared/conformance/zeek-8.2.2`
//! (issue 11, item 0): for every capture in `traces/mail/`, mailtap's
//! smtp.log, conn.log, files.log, ssl.log and weird.log equal what a real
//! Zeek 8.2.2 wrote (`out/mail/<capture>/`), field by field, uids and fuids
//! aside.
//!
//! mailtap runs as Zeek was run (`frameworks/files/hash-all-files`: md5,
//! sha1 and sha256 in files.log) and with `flow.analyze_partial = false`,
//! since analysing connections without any handshake is where mailtap
//! deliberately goes beyond Zeek. Only Zeek's columns are compared (mailtap
//! adds JA4 columns to ssl.log). A log Zeek did not write must have no rows
//! in mailtap's output either.
//!
//! Skipped, with a message, when `../shared` is not there.

mod common;

use common::{bin, repo, skip, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Columns that hold Zeek's random identifiers.
const RANDOM: [&str; 5] = ["uid", "fuid", "fuids", "parent_fuid", "conn_uids"];

const LOGS: [&str; 5] = ["smtp.log", "conn.log", "files.log", "ssl.log", "weird.log"];

fn shared() -> Option<PathBuf> {
    let d = repo().join("../shared/conformance/zeek-8.2.2");
    d.join("MANIFEST.md").exists().then_some(d)
}

struct Log {
    fields: Vec<String>,
    types: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_log(path: &Path) -> Option<Log> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = Vec::new();
    let mut types = Vec::new();
    let mut rows = Vec::new();
    for l in text.lines() {
        if let Some(f) = l.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if let Some(t) = l.strip_prefix("#types\t") {
            types = t.split('\t').map(str::to_string).collect();
        } else if !l.starts_with('#') && !l.is_empty() {
            rows.push(l.split('\t').map(str::to_string).collect());
        }
    }
    Some(Log {
        fields,
        types,
        rows,
    })
}

/// The rows of `log` projected on `cols` (a column `log` lacks reads as
/// `<no column>`), as a multiset. The elements of a `set[...]` column are
/// sorted: a set has no order, and Zeek writes its sets in the order of its
/// internal hash table.
fn project(log: &Log, cols: &[&str]) -> BTreeMap<String, i64> {
    let idx: Vec<Option<usize>> = cols
        .iter()
        .map(|c| log.fields.iter().position(|f| f == c))
        .collect();
    let mut m = BTreeMap::new();
    for r in &log.rows {
        let key = idx
            .iter()
            .map(|i| {
                let Some((i, v)) = i.and_then(|i| Some((i, r.get(i)?))) else {
                    return "<no column>".to_string();
                };
                if log.types.get(i).is_some_and(|t| t.starts_with("set[")) {
                    let mut e: Vec<&str> = v.split(',').collect();
                    e.sort_unstable();
                    e.join(",")
                } else {
                    v.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("\t");
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Differences between Zeek's and mailtap's version of one log, as text
/// (empty when equal).
fn compare(name: &str, zeek: Option<Log>, ours: Option<Log>) -> String {
    let ours_rows = ours.as_ref().map_or(0, |l| l.rows.len());
    let Some(zeek) = zeek else {
        return if ours_rows == 0 {
            String::new()
        } else {
            let sample: Vec<String> = ours
                .unwrap()
                .rows
                .iter()
                .take(5)
                .map(|r| r.join("\t"))
                .collect();
            format!(
                "{name}: Zeek wrote none, mailtap {ours_rows} rows, e.g.\n    {}\n",
                sample.join("\n    ")
            )
        };
    };
    let cols: Vec<&str> = zeek
        .fields
        .iter()
        .map(String::as_str)
        .filter(|c| !RANDOM.contains(c))
        .collect();
    let want = project(&zeek, &cols);
    let got = ours.as_ref().map(|l| project(l, &cols)).unwrap_or_default();
    let mut only_zeek = Vec::new();
    let mut only_ours = Vec::new();
    for (k, n) in &want {
        let d = n - got.get(k).copied().unwrap_or(0);
        for _ in 0..d.max(0) {
            only_zeek.push(k.clone());
        }
    }
    for (k, n) in &got {
        let d = n - want.get(k).copied().unwrap_or(0);
        for _ in 0..d.max(0) {
            only_ours.push(k.clone());
        }
    }
    if only_zeek.is_empty() && only_ours.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "{name}: {} rows from Zeek, {ours_rows} from mailtap; {} only in Zeek, {} only in mailtap\n  columns: {}\n",
        zeek.rows.len(),
        only_zeek.len(),
        only_ours.len(),
        cols.join(" ")
    );
    for r in only_zeek.iter().take(6) {
        s.push_str(&format!("  - zeek:    {r}\n"));
    }
    for r in only_ours.iter().take(6) {
        s.push_str(&format!("  + mailtap: {r}\n"));
    }
    s
}

/// Runs mailtap on one capture and compares every log with Zeek's.
fn check_capture(base: &Path, capture: &Path) -> String {
    let name = capture
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".gz")
        .trim_end_matches(".pcap")
        .to_string();
    let zeek_dir = base.join("out/mail").join(&name);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "read",
            "--no-progress",
            "-w",
            "1",
            "-o",
            dir.path().to_str().unwrap(),
            "--set",
            r#"files.hashes=["md5","sha1","sha256"]"#,
            "--set",
            "flow.analyze_partial=false",
        ])
        .arg(capture)
        .output()
        .expect("run mailtap");
    assert!(
        out.status.success(),
        "mailtap read {}: {}",
        capture.display(),
        stderr(&out)
    );
    let mut report = String::new();
    for log in LOGS {
        let d = compare(
            log,
            read_log(&zeek_dir.join(log)),
            read_log(&dir.path().join(log)),
        );
        if !d.is_empty() {
            report.push_str(&format!("{name} {d}"));
        }
    }
    report
}

#[test]
fn mail_captures_match_zeek_8_2_2() {
    let Some(base) = shared() else {
        skip(
            "mail_captures_match_zeek_8_2_2",
            "../shared/conformance/zeek-8.2.2 is not there",
        );
        return;
    };
    let mut captures: Vec<PathBuf> = std::fs::read_dir(base.join("traces/mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".pcap") || n.ends_with(".pcap.gz")
        })
        .collect();
    captures.sort();
    assert!(captures.len() >= 7, "captures: {captures:?}");
    let mut report = String::new();
    for c in &captures {
        report.push_str(&check_capture(&base, c));
    }
    assert!(
        report.is_empty(),
        "mailtap differs from Zeek 8.2.2:\n{report}"
    );
}
