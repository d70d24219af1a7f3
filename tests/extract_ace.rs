//! `--ace-dir`, `ace-collect` and `--extract-dir` end to end with the built
//! binary: ACE files for port-25 sessions with `.ready`, read by ACE's own
//! collector rules; `ace-collect --once` turns them into pairs that equal
//! the directly extracted messages up to line endings.

#[path = "../crates/mailtap-extract/tests/ace_rules/mod.rs"]
mod ace_rules;
mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn names(d: &Path) -> BTreeSet<String> {
    std::fs::read_dir(d)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// conn.log uid -> (orig_p, resp_p, history).
fn conns(dir: &Path) -> BTreeMap<String, (u16, u16, String)> {
    rows(dir, "conn.log")
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split('\t').collect();
            (
                f[1].to_string(),
                (
                    f[3].parse().unwrap(),
                    f[5].parse().unwrap(),
                    f[15].to_string(),
                ),
            )
        })
        .collect()
}

fn check_capture(pcap: &Path) {
    let t = tempfile::tempdir().unwrap();
    let (logs, ace, ex, ac) = (
        t.path().join("logs"),
        t.path().join("ace"),
        t.path().join("ex"),
        t.path().join("ac"),
    );
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        logs.to_str().unwrap(),
        "--ace-dir",
        ace.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ACE transcripts:"), "{}", stderr(&o));

    // ACE files: port-25 connections only, each with its marker.
    let conns = conns(&logs);
    let files = names(&ace);
    let sessions: Vec<&String> = files.iter().filter(|n| !n.ends_with(".ready")).collect();
    assert!(!sessions.is_empty(), "no ACE session files");
    let mut ace_emails = BTreeMap::new();
    for s in &sessions {
        assert!(files.contains(&format!("{s}.ready")), "{s} has no .ready");
        let (op, rp, _) = conns
            .get(*s)
            .unwrap_or_else(|| panic!("{s} not in conn.log"));
        assert!(*op == 25 || *rp == 25, "{s} is not a port-25 connection");
        let bytes = std::fs::read(ace.join(s)).unwrap();
        let line1 = bytes.split(|&b| b == b'\n').next().unwrap();
        if line1.iter().filter(|&&b| b == b':').count() > 1 {
            // IPv6: ACE's own header pattern is broken (a defect
            // ace-collect fixes; see collect_tests::defect_ipv6_header).
            continue;
        }
        // ACE's collector rules read it: header parsed, emails found.
        let emails = ace_rules::parse(&bytes, 0).unwrap();
        for e in &emails {
            assert!(e.source_ip.is_some() && e.source_port.is_some(), "{s}");
        }
        ace_emails.insert((*s).clone(), emails);
    }
    assert!(
        ace_emails.values().any(|v| !v.is_empty()),
        "no emails for ACE"
    );

    // Extraction: pairs only, no temporary names, .eml sizes as stated.
    let ex_names = names(&ex);
    assert!(ex_names.iter().all(|n| !n.starts_with('.')), "{ex_names:?}");
    let jsons: Vec<&String> = ex_names.iter().filter(|n| n.ends_with(".json")).collect();
    assert!(!jsons.is_empty(), "nothing extracted");
    for j in &jsons {
        let stem = j.trim_end_matches(".json");
        let eml = std::fs::read(ex.join(format!("{stem}.eml"))).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ex.join(j)).unwrap()).unwrap();
        assert_eq!(v["size"].as_u64(), Some(eml.len() as u64), "{stem}");
        assert_eq!(v["source"], "capture");
        assert_eq!(format!("{}-{}", v["uid"].as_str().unwrap(), v["n"]), stem);
    }
    assert_eq!(jsons.len() * 2, ex_names.len());

    // ace-collect --once: every session becomes pairs, the directory
    // empties (review/ stays empty).
    let (o, _) = run(&[
        "ace-collect",
        ace.to_str().unwrap(),
        "--extract-dir",
        ac.to_str().unwrap(),
        "--once",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(names(&ace), BTreeSet::from(["review".to_string()]));
    assert!(names(&ace.join("review")).is_empty());
    let ac_names = names(&ac);
    for (uid, emails) in &ace_emails {
        for (i, e) in emails.iter().enumerate() {
            let stem = format!("{uid}-{}", i + 1);
            let eml = std::fs::read(ac.join(format!("{stem}.eml"))).unwrap();
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(ac.join(format!("{stem}.json"))).unwrap())
                    .unwrap();
            assert_eq!(v["line_endings"], "lf");
            assert_eq!(
                v["id"]["orig_p"].to_string(),
                *e.source_port.as_ref().unwrap()
            );
            // ACE drops undecodable bytes; where there are none, the
            // contents agree.
            if let Ok(text) = std::str::from_utf8(&eml) {
                assert_eq!(text, e.content, "{stem}");
            }
            if let Some(f) = &e.envelope_from {
                assert_eq!(v["mailfrom"].as_str(), Some(f.as_str()), "{stem}");
            }
            // The rebuilt message is the extracted one with LF endings.
            let direct: Vec<Vec<u8>> = ex_names
                .iter()
                .filter(|n| n.starts_with(&format!("{uid}-")) && n.ends_with(".eml"))
                .map(|n| std::fs::read(ex.join(n)).unwrap())
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace("\r\n", "\n")
                        .into_bytes()
                })
                .collect();
            assert!(
                direct
                    .iter()
                    .any(|d| *d == String::from_utf8_lossy(&eml).into_owned().into_bytes()),
                "{stem} matches no extracted message of {uid}"
            );
        }
    }
    assert!(ac_names.iter().all(|n| !n.starts_with('.')));
}

#[test]
fn sample_capture() {
    check_capture(&sample());
}

#[test]
fn zeek_smtp_trace() {
    let p = repo().join("../shared/conformance/zeek/traces/smtp.pcap");
    if !p.exists() {
        skip("zeek_smtp_trace", &format!("{} absent", p.display()));
        return;
    }
    check_capture(&p);
}

#[test]
fn unwritable_extract_dir_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let bad: PathBuf = file.join("sub");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        t.path().join("logs").to_str().unwrap(),
        "--extract-dir",
        bad.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("--extract-dir") && e.contains("file/sub"), "{e}");
}

#[test]
fn ace_ports_are_configurable() {
    let t = tempfile::tempdir().unwrap();
    let ace = t.path().join("ace");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        t.path().join("logs").to_str().unwrap(),
        "--ace-dir",
        ace.to_str().unwrap(),
        "--set",
        "ace.ports=[2525]",
        sample().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let conns = conns(&t.path().join("logs"));
    for n in names(&ace).iter().filter(|n| !n.ends_with(".ready")) {
        let (op, rp, _) = conns[n];
        assert!(op == 2525 || rp == 2525, "{n}");
    }
}
