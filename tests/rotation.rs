//! Log rotation (`log.rotate_*`) and SIGHUP reopening, end to end through
//! `mailtap read`.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Data rows of a Zeek TSV log (no `#` lines).
fn data_rows(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Every file of `dir` whose name starts with `<path>.` or is `<path>.log`.
fn files_of(dir: &Path, path: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(&format!("{path}.")) && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

fn generated(dir: &Path, sessions: &str) -> std::path::PathBuf {
    let p = dir.join("gen.pcap");
    let (o, _) = run(&[
        "gen",
        "--mix",
        "attach",
        "-o",
        p.to_str().unwrap(),
        "--sessions",
        sessions,
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    p
}

#[test]
fn size_rotation_keeps_every_row_in_complete_zeek_named_files() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = generated(dir.path(), "400");
    let plain = dir.path().join("plain");
    let rotated = dir.path().join("rotated");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        pcap.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = dir.path().join("rotated-list");
    let post = format!("echo \"$1\" >> {}", list.display());
    let (o, _) = run(&[
        "read",
        "--no-progress",
        pcap.to_str().unwrap(),
        "-o",
        rotated.to_str().unwrap(),
        "--set",
        "log.rotate_max_bytes=16384",
        "--set",
        &format!("log.post_rotate={post:?}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("logs rotated"), "{}", stderr(&o));
    let name = regex_like_zeek_name();
    for log in ["smtp", "conn", "files"] {
        let files = files_of(&rotated, log);
        assert!(files.len() > 2, "{log}: {files:?}");
        let mut rows = Vec::new();
        for f in &files {
            let n = f.file_name().unwrap().to_string_lossy().to_string();
            assert!(name(&n, log), "not a Zeek rotated name: {n}");
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("#separator"), "{n} has no header");
            assert!(
                text.trim_end()
                    .lines()
                    .last()
                    .unwrap()
                    .starts_with("#close"),
                "{n} not closed"
            );
            assert!(text.len() <= 16384 + 8192, "{n} is {} bytes", text.len());
            rows.extend(data_rows(f));
        }
        let mut want = data_rows(&plain.join(format!("{log}.log")));
        want.sort();
        rows.sort();
        assert_eq!(rows.len(), want.len(), "{log}: rows across rotated files");
        assert_eq!(rows, want, "{log}: same rows");
    }
    // The post-rotation command ran once per rotated file (waited for at
    // the end of the run).
    let listed = std::fs::read_to_string(&list).unwrap();
    let all: usize = ["smtp", "conn", "files", "weird", "pop3", "ssl", "x509"]
        .iter()
        .map(|l| files_of(&rotated, l).len())
        .sum();
    assert_eq!(listed.lines().count(), all, "{listed}");
}

/// `<path>.<YYYY-MM-DD-HH-MM-SS>_<YYYY-MM-DD-HH-MM-SS>[-N].log`.
fn regex_like_zeek_name() -> impl Fn(&str, &str) -> bool {
    fn stamp(s: &str) -> bool {
        s.len() == 19
            && s.char_indices().all(|(i, c)| {
                if [4, 7, 10, 13, 16].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
    }
    |n: &str, path: &str| {
        let Some(rest) = n
            .strip_prefix(&format!("{path}."))
            .and_then(|r| r.strip_suffix(".log"))
        else {
            return false;
        };
        let Some((open, close)) = rest.split_once('_') else {
            return false;
        };
        let (close, suffix) = close.split_at(close.len().min(19));
        stamp(open)
            && stamp(close)
            && (suffix.is_empty()
                || suffix
                    .strip_prefix('-')
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())))
    }
}

/// SIGHUP while reading: the moved log is complete, and rows go on into a
/// fresh file at the original name; nothing is lost.
#[test]
fn sighup_reopens_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = generated(dir.path(), "600");
    let bytes = std::fs::read(&pcap).unwrap();
    let plain = dir.path().join("plain");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        pcap.to_str().unwrap(),
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    let mut child = Command::new(bin())
        .args(["read", "--no-progress", "-", "-o", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let half = bytes.len() / 2;
    stdin.write_all(&bytes[..half]).unwrap();
    stdin.flush().unwrap();
    let smtp = out.join("smtp.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !smtp.exists() || data_rows(&smtp).is_empty() {
        assert!(Instant::now() < deadline, "smtp.log never got rows");
        std::thread::sleep(Duration::from_millis(50));
    }
    let moved = out.join("smtp.log.1");
    std::fs::rename(&smtp, &moved).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success(), "kill -HUP");
    // The collector reopens within a second even when no rows come.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&moved).unwrap().contains("#close") {
        assert!(Instant::now() < deadline, "the moved log was never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    stdin.write_all(&bytes[half..]).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&smtp).unwrap();
    assert!(
        text.starts_with("#separator"),
        "the new smtp.log has a header"
    );
    let mut rows = data_rows(&moved);
    rows.extend(data_rows(&smtp));
    rows.sort();
    let mut want = data_rows(&plain.join("smtp.log"));
    want.sort();
    assert!(!data_rows(&smtp).is_empty(), "rows after the reopen");
    assert_eq!(rows, want, "no row lost or doubled across the reopen");
}
