//! Issue 12, item 4: a full disk is survived. `mailtap read` writes its
//! logs, event stream, extracted messages and ACE transcripts into a small
//! tmpfs; the capture comes through stdin in three parts, and between them
//! the test fills the tmpfs with a filler file and frees it again. The run
//! must go on, name the failing files once, resume writing by itself, count
//! what each output wrote and lost (together what a run with room writes),
//! and leave only whole rows and byte-exact messages (docs/operations.md,
//! "Limits and attacks").

mod common;

use common::{bin, skip, stderr};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Unmounts the tmpfs and kills the run, whatever happens to the test.
struct Guard {
    mnt: PathBuf,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// Fills the file system holding `path` with one file until writes fail.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut n = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let b = vec![0x5a; chunk];
        loop {
            match f.write(&b) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k as u64,
            }
        }
    }
    n
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `records: a=1 b=2` of the summary line.
fn records(err: &str) -> BTreeMap<String, u64> {
    let line = err
        .lines()
        .find(|l| l.contains("; records: "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let r = line.split("; records: ").nth(1).unwrap();
    let r = r.split(';').next().unwrap();
    assert_ne!(r, "none", "{line}");
    r.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (format!("{k}.log"), v.parse().unwrap())
        })
        .collect()
}

/// `output PATH (LABEL): W written, L lost` lines: label -> (W, L).
fn output_lines(err: &str) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for l in err.lines() {
        let Some(rest) = l.strip_prefix("mailtap: error: output ") else {
            continue;
        };
        let label = rest.split(" (").nth(1).unwrap().split(')').next().unwrap();
        let nums = rest.split("): ").nth(1).unwrap();
        let w: u64 = nums.split(' ').next().unwrap().parse().unwrap();
        let lost: u64 = nums
            .split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        m.insert(label.to_string(), (w, lost));
    }
    m
}

/// `N` of "extracted N messages" / "ACE transcripts: N sessions ready".
fn count_after(err: &str, prefix: &str) -> u64 {
    let l = err
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no {prefix:?}: {err}"));
    l.split(' ').next().unwrap().parse().unwrap()
}

/// Checks every Zeek log in `dir`: each line whole (ends in LF), each row
/// with its header's column count. Returns the data rows per log.
fn check_logs(dir: &Path) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".log") {
            continue;
        }
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.ends_with('\n'), "{name}: partial last line");
        let mut cols = None;
        let mut n = 0;
        for l in t.lines() {
            if let Some(f) = l.strip_prefix("#fields\t") {
                cols = Some(f.split('\t').count());
            } else if l.starts_with('#') {
                assert!(
                    [
                        "#separator",
                        "#set_separator",
                        "#empty_field",
                        "#unset_field",
                        "#path",
                        "#open",
                        "#close",
                        "#types"
                    ]
                    .iter()
                    .any(|h| l.starts_with(h)),
                    "{name}: {l:?}"
                );
            } else {
                let c = cols.unwrap_or_else(|| panic!("{name}: a row before #fields"));
                assert_eq!(l.split('\t').count(), c, "{name}: {l:?}");
                n += 1;
            }
        }
        rows.insert(name, n);
    }
    rows
}

fn events_lines(p: &Path) -> u64 {
    let t = std::fs::read_to_string(p).unwrap();
    assert!(
        t.is_empty() || t.ends_with('\n'),
        "events: partial last line"
    );
    for l in t.lines() {
        assert!(l.starts_with('{') && l.ends_with('}'), "{l:?}");
    }
    t.lines().count() as u64
}

fn args<'a>(out: &'a str, x: &'a str, ace: &'a str, ev: &'a str, input: &'a str) -> Vec<&'a str> {
    vec![
        "read",
        "--no-progress",
        "-w",
        "1",
        "--set",
        "general.uid_salt=disk-full-test",
        // Small capture blocks: stdin's packets reach the shards as they
        // come instead of waiting for a large block to fill.
        "--set",
        "capture.block_bytes=65536",
        "-o",
        out,
        "--extract-dir",
        x,
        "--ace-dir",
        ace,
        "--events",
        ev,
        input,
    ]
}

#[test]
fn a_full_disk_is_survived_and_every_output_resumes() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs", s(&mnt)])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        skip(
            "disk_full::a_full_disk_is_survived_and_every_output_resumes",
            "cannot mount a tmpfs (not root?)",
        );
        return;
    }
    let mut guard = Guard {
        mnt: mnt.clone(),
        child: None,
    };
    // Many short SMTP and POP3 sessions: rows, events and messages all
    // through the capture.
    let pcap = t.path().join("c.pcap");
    let o = Command::new(bin())
        .args([
            "gen",
            "--mix",
            "small",
            "--size",
            "6M",
            "--seed",
            "12",
            "-o",
            s(&pcap),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let capture = std::fs::read(&pcap).unwrap();

    // The reference: the same capture with room to spare.
    let r = t.path().join("ref");
    let (r_out, r_x, r_ace, r_ev) = (
        r.join("out"),
        r.join("x"),
        r.join("ace"),
        r.join("ev.jsonl"),
    );
    std::fs::create_dir_all(&r).unwrap();
    let o = Command::new(bin())
        .args(args(s(&r_out), s(&r_x), s(&r_ace), s(&r_ev), s(&pcap)))
        .output()
        .unwrap();
    let ref_err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{ref_err}");
    let ref_rows = records(&ref_err);
    assert_eq!(check_logs(&r_out), ref_rows);
    let ref_events = events_lines(&r_ev);
    let ref_messages = count_after(&ref_err, "mailtap: extracted ");
    let ref_sessions = count_after(&ref_err, "ACE transcripts: ");
    assert!(ref_rows["smtp.log"] > 1000 && ref_messages > 1000 && ref_sessions > 500);

    // The run on the tmpfs, fed through stdin.
    let (out, x, ace, ev) = (
        mnt.join("out"),
        mnt.join("x"),
        mnt.join("ace"),
        mnt.join("ev.jsonl"),
    );
    let mut child = Command::new(bin())
        .args(args(s(&out), s(&x), s(&ace), s(&ev), "-"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut child_err = child.stderr.take().unwrap();
    guard.child = Some(child);
    let err = Arc::new(Mutex::new(String::new()));
    let reader = {
        let err = err.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = child_err.read(&mut b) {
                if n == 0 {
                    break;
                }
                err.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&b[..n]));
            }
        })
    };
    let sofar = || err.lock().unwrap().clone();
    let (a, b) = (capture.len() / 6, capture.len() * 5 / 6);
    // 1. Room: the first sixth is written.
    stdin.write_all(&capture[..a]).unwrap();
    wait_for(
        "the first rows and messages",
        Duration::from_secs(60),
        || {
            std::fs::metadata(out.join("smtp.log")).is_ok_and(|m| m.len() > 0)
                && std::fs::read_dir(&x).is_ok_and(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
                })
        },
    );
    // 2. The disk fills up; two thirds of the capture come meanwhile.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    stdin.write_all(&capture[a..(a + b) / 2]).unwrap();
    wait_for("the write errors", Duration::from_secs(60), || {
        let e = sofar();
        e.contains(&format!("writing {} failed", ev.display()))
            && e.contains(&format!("writing {} failed", x.display()))
    });
    // SIGHUP while the files fail: reopened all the same (the rows the
    // closed files still held are lost), written again once space is back.
    let pid = guard.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    stdin.write_all(&capture[(a + b) / 2..b]).unwrap();
    // Retries while the disk is still full fail quietly.
    std::thread::sleep(Duration::from_millis(2500));
    // 3. Space again: writing resumes by itself; the rest comes.
    std::fs::remove_file(&filler).unwrap();
    stdin.write_all(&capture[b..]).unwrap();
    drop(stdin);
    let status = guard.child.as_mut().unwrap().wait().unwrap();
    guard.child = None;
    reader.join().unwrap();
    let e = sofar();
    println!("{e}");
    // Alive to the end: exit status 1 (outputs lost records), not a signal.
    assert_eq!(status.code(), Some(1), "{e}");
    // Reported once per output, naming the file and the OS error; then
    // resumed with the count lost meanwhile.
    let failed_ev = format!(
        "writing {} failed: {}: No space left on device",
        ev.display(),
        ev.display()
    );
    assert_eq!(e.matches(&failed_ev).count(), 1, "{e}");
    assert!(
        e.contains(&format!("writing {} failed", x.display())),
        "{e}"
    );
    assert!(
        e.contains(&format!("writing {} resumed after", ev.display())),
        "{e}"
    );
    assert!(
        e.contains(&format!("writing {} resumed after", x.display())),
        "{e}"
    );
    for l in e.lines().filter(|l| l.contains(" failed: ")) {
        assert!(l.contains("No space left on device"), "{l}");
    }

    // Per output: written + lost = what the run with room wrote.
    let rows = records(&e);
    let lines = output_lines(&e);
    let on_disk = check_logs(&out);
    assert_eq!(on_disk, rows, "the summary counts the rows in the files");
    for (log, n) in &ref_rows {
        let lost = lines.get(log).map_or(0, |l| l.1);
        assert_eq!(rows.get(log).copied().unwrap_or(0) + lost, *n, "{log}: {e}");
    }
    let (ev_written, ev_lost) = lines["events"];
    assert_eq!(events_lines(&ev), ev_written);
    assert_eq!(ev_written + ev_lost, ref_events);
    let (x_written, x_lost) = lines["extract"];
    assert_eq!(count_after(&e, "mailtap: extracted "), x_written);
    assert_eq!(x_written + x_lost, ref_messages);
    let (a_written, a_lost) = lines
        .get("ace")
        .copied()
        .unwrap_or((count_after(&e, "ACE transcripts: "), 0));
    assert_eq!(a_written + a_lost, ref_sessions);
    // The outage lost records in the event stream, smtp.log and the
    // extraction; what it did not lose, the buffers kept.
    assert!(ev_lost > 0 && x_lost > 0, "{lines:?}");
    assert!(lines.get("smtp.log").is_some_and(|l| l.1 > 0), "{lines:?}");
    assert!(e.contains("drops: ") && e.contains("output.events="), "{e}");
    println!(
        "disk full: filler {filled} bytes; written/lost: {}",
        lines
            .iter()
            .map(|(k, (w, l))| format!("{k} {w}/{l}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Every extracted message present is whole: byte-identical to the
    // reference, its .json beside it; no temporary file is left.
    let mut emls = 0;
    for d in std::fs::read_dir(&x).unwrap() {
        let name = d.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left behind: {name}");
        if let Some(stem) = name.strip_suffix(".eml") {
            assert_eq!(
                std::fs::read(x.join(&name)).unwrap(),
                std::fs::read(r_x.join(&name)).unwrap(),
                "{name}"
            );
            assert!(x.join(format!("{stem}.json")).exists(), "{name}");
            emls += 1;
        }
    }
    assert_eq!(emls, x_written);
    // Every transcript present is the reference's, with its marker.
    for d in std::fs::read_dir(&ace).unwrap() {
        let name = d.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left behind: {name}");
        if !name.ends_with(".ready") {
            assert_eq!(
                std::fs::read(ace.join(&name)).unwrap(),
                std::fs::read(r_ace.join(&name)).unwrap(),
                "{name}"
            );
            assert!(ace.join(format!("{name}.ready")).exists());
        }
    }
    // The reopen gave smtp.log a second header block, written after the
    // outage.
    let smtp = std::fs::read_to_string(out.join("smtp.log")).unwrap();
    assert!(
        smtp.matches("#fields\t").count() >= 2,
        "no reopen after the error: {:?}",
        smtp.lines()
            .filter(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
    );
    assert!(smtp.ends_with('\n') && smtp.lines().last().unwrap().starts_with("#close"));
}
