//! files.log `mime_type` against Zeek 8.2.2 (issue 11, item 0: the file
//! type sniffer). mailtap reads every capture of
//! `../shared/conformance/zeek-8.2.2/traces/mail/` and each files.log row's
//! `mime_type` must be the one Zeek wrote (`out/mail/<capture>/files.log`).
//!
//! Rows are paired by connection 4-tuple and SHA-256 (a file's content is
//! what its type is sniffed from; uids and fuids are random in Zeek). For
//! `mime-types.pcap` (134 sessions, 124 formats, text part and attachment
//! each) every one of Zeek's 268 rows must be there and agree. For the other
//! captures, rows present on one side only are counted and printed but are
//! not this test's concern (connection handling and POP3 entity bounds have
//! their own tests); every row present on both sides must agree.
//!
//! Skipped, with a message, when `../shared` is not there.

mod common;
use common::skip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek-8.2.2");
    d.join("MANIFEST.md").exists().then_some(d)
}

type Key = (String, String, String, String, String);

/// files.log rows: key -> mime types of the rows with that key, sorted.
fn mime_types(path: &Path) -> BTreeMap<Key, Vec<String>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut fields: Vec<&str> = Vec::new();
    let mut out: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').collect();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let row: Vec<&str> = line.split('\t').collect();
        let get = |name: &str| {
            let i = fields
                .iter()
                .position(|f| *f == name)
                .unwrap_or_else(|| panic!("{}: no column {name}", path.display()));
            row[i].to_string()
        };
        let key = (
            get("id.orig_h"),
            get("id.orig_p"),
            get("id.resp_h"),
            get("id.resp_p"),
            get("sha256"),
        );
        out.entry(key).or_default().push(get("mime_type"));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

struct Outcome {
    zeek_rows: usize,
    compared: usize,
    only_zeek: usize,
    only_mailtap: usize,
    wrong: Vec<String>,
}

fn compare(zeek: &Path, ours: &Path) -> Outcome {
    let z = mime_types(zeek);
    let m = if ours.exists() {
        mime_types(ours)
    } else {
        BTreeMap::new()
    };
    let mut o = Outcome {
        zeek_rows: z.values().map(Vec::len).sum(),
        compared: 0,
        only_zeek: 0,
        only_mailtap: 0,
        wrong: Vec::new(),
    };
    for (k, zt) in &z {
        let mt = m.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let n = zt.len().min(mt.len());
        o.only_zeek += zt.len() - n;
        o.only_mailtap += mt.len() - n;
        for (a, b) in zt.iter().zip(mt) {
            o.compared += 1;
            if a != b {
                o.wrong.push(format!(
                    "{}:{} sha256 {}: zeek {a}, mailtap {b}",
                    k.0, k.1, k.4
                ));
            }
        }
    }
    o.only_mailtap += m
        .iter()
        .filter(|(k, _)| !z.contains_key(*k))
        .map(|(_, v)| v.len())
        .sum::<usize>();
    o
}

fn run(trace: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_mailtap"))
        .arg("read")
        .arg(trace)
        .arg("-o")
        .arg(out)
        .args(["-w", "1", "--no-progress"])
        .args(["--set", r#"files.hashes=["md5","sha1","sha256"]"#])
        .output()
        .expect("run mailtap");
    assert!(
        o.status.success(),
        "mailtap read {} failed: {}",
        trace.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn mime_type_equals_zeek_on_every_mail_capture() {
    let Some(shared) = shared() else {
        skip(
            "mime_type_equals_zeek_on_every_mail_capture",
            "../shared/conformance/zeek-8.2.2 not found",
        );
        return;
    };
    let traces = shared.join("traces/mail");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&traces)
        .expect("traces/mail")
        .map(|e| e.expect("dir entry").path())
        .collect();
    names.sort();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut seen_mime_types = false;
    for trace in names {
        let file = trace.file_name().unwrap().to_string_lossy().into_owned();
        let name = file
            .trim_end_matches(".gz")
            .trim_end_matches(".pcapng")
            .trim_end_matches(".pcap")
            .to_string();
        let zeek = shared.join("out/mail").join(&name).join("files.log");
        if !zeek.exists() {
            eprintln!("{name}: Zeek wrote no files.log, nothing to compare");
            continue;
        }
        let out = tmp.path().join(&name);
        run(&trace, &out);
        let o = compare(&zeek, &out.join("files.log"));
        eprintln!(
            "{name}: {} of {} Zeek rows compared, {} mime_type differences; rows only in Zeek {}, only in mailtap {}",
            o.compared,
            o.zeek_rows,
            o.wrong.len(),
            o.only_zeek,
            o.only_mailtap
        );
        for w in &o.wrong {
            eprintln!("  {w}");
        }
        if name == "mime-types" {
            seen_mime_types = true;
            assert_eq!(
                o.zeek_rows, 268,
                "mime-types: Zeek's files.log has 268 rows"
            );
            if o.compared != o.zeek_rows {
                failures.push(format!(
                    "mime-types: only {} of {} rows found in mailtap's files.log",
                    o.compared, o.zeek_rows
                ));
            }
        }
        if !o.wrong.is_empty() {
            failures.push(format!("{name}: {} mime_type differences", o.wrong.len()));
        }
    }
    assert!(seen_mime_types, "traces/mail/mime-types.pcap not found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
