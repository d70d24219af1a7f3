//! The `mailtap read` contract: inputs (pcap, gzip, stdin, several files as
//! one stream), outputs (Zeek TSV and JSON, events), and identical results
//! whatever the number of workers.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn read(args: &[&str], out: &Path) -> String {
    let mut a = vec!["read", "--no-progress", "-o", out.to_str().unwrap()];
    a.extend_from_slice(args);
    let (o, _) = run(&a);
    assert!(o.status.success(), "mailtap {a:?}: {}", stderr(&o));
    stderr(&o)
}

fn sorted_rows(dir: &Path, log: &str) -> Vec<String> {
    let mut r = rows(dir, log);
    r.sort();
    r
}

#[test]
fn sample_gives_smtp_conn_logs_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = read(&[sample().to_str().unwrap()], dir.path());
    let smtp = rows(dir.path(), "smtp.log");
    let conn = rows(dir.path(), "conn.log");
    assert!(smtp.len() >= 40, "{} smtp rows", smtp.len());
    assert!(conn.len() >= 40, "{} conn rows", conn.len());
    assert!(
        conn.iter().all(|r| r.contains("\tsmtp\t")),
        "every sample connection is confirmed smtp"
    );
    assert!(
        summary.contains("packets") && summary.contains("smtp="),
        "{summary}"
    );
    let text = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#separator \\x09");
    assert_eq!(lines[1], "#set_separator\t,");
    assert_eq!(lines[2], "#empty_field\t(empty)");
    assert_eq!(lines[3], "#unset_field\t-");
    assert_eq!(lines[4], "#path\tsmtp");
    assert!(lines[5].starts_with("#open\t"));
    assert!(lines[6].starts_with(
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\thelo"
    ));
    assert!(lines.last().unwrap().starts_with("#close\t"));
}

#[test]
fn same_rows_with_1_2_and_8_workers() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("gen.pcap");
    let (o, _) = run(&[
        "gen",
        "-o",
        cap.to_str().unwrap(),
        "--sessions",
        "600",
        "--concurrency",
        "150",
        "--seed",
        "9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut results = Vec::new();
    for w in ["1", "2", "8"] {
        let out = dir.path().join(format!("w{w}"));
        read(
            &[
                cap.to_str().unwrap(),
                "-w",
                w,
                "--events",
                out.join("events.json").to_str().unwrap(),
            ],
            &out,
        );
        let mut ev: Vec<String> = std::fs::read_to_string(out.join("events.json"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        ev.sort();
        results.push((
            sorted_rows(&out, "smtp.log"),
            sorted_rows(&out, "conn.log"),
            sorted_rows(&out, "weird.log"),
            ev,
        ));
    }
    assert!(
        results[0].0.len() >= 600,
        "smtp rows: {}",
        results[0].0.len()
    );
    assert_eq!(results[0].1.len(), 600, "conn rows");
    for r in &results[1..] {
        assert!(
            r.0 == results[0].0,
            "smtp.log differs between worker counts"
        );
        assert!(
            r.1 == results[0].1,
            "conn.log differs between worker counts"
        );
        assert!(
            r.2 == results[0].2,
            "weird.log differs between worker counts"
        );
        assert!(r.3 == results[0].3, "events differ between worker counts");
    }
}

#[test]
fn gzip_stdin_and_several_files_are_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    read(&[sample().to_str().unwrap()], &plain);

    // gzip-compressed copy, detected by content.
    let gz = dir.path().join("sample.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(sample()).unwrap()).unwrap();
    enc.finish().unwrap();
    let gzo = dir.path().join("gz");
    read(&[gz.to_str().unwrap()], &gzo);
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&gzo, "smtp.log")
    );
    assert_eq!(
        sorted_rows(&plain, "conn.log"),
        sorted_rows(&gzo, "conn.log")
    );

    // stdin
    let so = dir.path().join("stdin");
    let mut child = Command::new(bin())
        .args(["read", "--no-progress", "-o", so.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(sample()).unwrap())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&so, "smtp.log")
    );

    // A capture split in two files at a packet boundary reads as one.
    let full = std::fs::read(sample()).unwrap();
    let mut off = 24usize;
    let mut cut = 0;
    while off + 16 <= full.len() {
        let len = u32::from_le_bytes(full[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + len;
        if off >= full.len() / 2 && cut == 0 {
            cut = off;
        }
    }
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    std::fs::write(&a, &full[..cut]).unwrap();
    let mut second = full[..24].to_vec();
    second.extend_from_slice(&full[cut..]);
    std::fs::write(&b, second).unwrap();
    let two = dir.path().join("two");
    read(&[a.to_str().unwrap(), b.to_str().unwrap()], &two);
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&two, "smtp.log")
    );
    assert_eq!(
        sorted_rows(&plain, "conn.log"),
        sorted_rows(&two, "conn.log")
    );
}

#[test]
fn json_logs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("events.json");
    read(
        &[
            sample().to_str().unwrap(),
            "--log-format",
            "json",
            "--events",
            ev.to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["ts"].is_f64(), "{first}");
    assert!(
        first["id.orig_h"].is_string() && first["id.resp_p"].is_u64(),
        "{first}"
    );
    assert!(first["rcptto"].is_array(), "{first}");
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for l in std::fs::read_to_string(&ev).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["uid"].as_str().unwrap().starts_with('C'));
        assert!(v["id"]["orig_h"].is_string());
        *names
            .entry(v["event"].as_str().unwrap().to_string())
            .or_default() += 1;
        if v["event"] == "smtp_request" {
            assert!(
                v["args"]["is_orig"].is_boolean()
                    && v["args"]["command"].is_string()
                    && v["args"]["arg"].is_string(),
                "{v}"
            );
        }
    }
    for n in ["smtp_request", "smtp_reply", "smtp_data"] {
        assert!(
            names.get(n).copied().unwrap_or(0) > 0,
            "no {n} events: {names:?}"
        );
    }
}
