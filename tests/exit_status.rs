//! Issue 11, item 7: the exit status tells the truth (docs/operations.md,
//! "Exit status"): 0 complete, 1 error, 2 usage, 3 interrupted, 4 panic;
//! the logs are flushed in every case.

mod common;

use common::{bin, sample, skip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn mailtap(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run mailtap")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A log that was closed properly: Zeek's `#close` line at the end.
fn closed_rows(p: &Path) -> usize {
    let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        t.lines().last().unwrap_or("").starts_with("#close"),
        "{} not closed",
        p.display()
    );
    t.lines().filter(|l| !l.starts_with('#')).count()
}

fn big_capture(dir: &Path) -> PathBuf {
    let p = dir.join("big.pcap");
    let o = mailtap(
        &[
            "gen",
            "--mix",
            "small",
            "--size",
            "400M",
            "--seed",
            "9",
            "-o",
            s(&p),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    p
}

#[test]
fn complete_run_exits_0_and_usage_errors_2() {
    let d = tempfile::tempdir().unwrap();
    let o = mailtap(
        &["read", "--no-progress", "-o", s(d.path()), s(&sample())],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = mailtap(&["read", "--no-such-option", s(&sample())], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = mailtap(
        &[
            "read",
            "-o",
            s(d.path()),
            "--set",
            "no.such_key=1",
            s(&sample()),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn sigterm_during_read_exits_3_with_the_logs_flushed() {
    let d = tempfile::tempdir().unwrap();
    let pcap = big_capture(d.path());
    let out = d.path().join("out");
    let child = Command::new(bin())
        .args(["read", "--no-progress", "-w", "1", "-o", s(&out), s(&pcap)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first rows, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !out.join("conn.log").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    let e = err(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(e.contains("interrupted"), "{e}");
    assert!(closed_rows(&out.join("conn.log")) > 0);
    assert!(closed_rows(&out.join("smtp.log")) > 0);
}

#[test]
fn write_error_exits_1_naming_it_and_other_logs_are_flushed() {
    let d = tempfile::tempdir().unwrap();
    // /dev/full: every write fails with ENOSPC, deterministically.
    let o = mailtap(
        &[
            "read",
            "--no-progress",
            "-o",
            s(d.path()),
            "--events",
            "/dev/full",
            s(&sample()),
        ],
        &[],
    );
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("error"), "{e}");
    // A full file system under the output directory (root: a 64 KiB tmpfs).
    let mnt = d.path().join("full");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", s(&mnt)])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if mounted {
        let o = mailtap(&["read", "--no-progress", "-o", s(&mnt), s(&sample())], &[]);
        let _ = Command::new("umount").arg(&mnt).status();
        let e = err(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("No space left"), "{e}");
    } else {
        skip("exit_status tmpfs case", "cannot mount a tmpfs (not root?)");
    }
}

#[test]
fn a_panic_in_any_thread_exits_4_with_the_logs_flushed() {
    let d = tempfile::tempdir().unwrap();
    let pcap = d.path().join("c.pcap");
    let o = mailtap(
        &[
            "gen",
            "--mix",
            "small",
            "--size",
            "8M",
            "--seed",
            "4",
            "-o",
            s(&pcap),
        ],
        &[],
    );
    assert!(o.status.success());
    for thread in ["reader", "shard", "collector"] {
        let out = d.path().join(thread);
        // Test-only hook (docs/operations.md): that thread panics after its
        // second block or batch; a small block size gives many.
        let o = mailtap(
            &[
                "read",
                "--no-progress",
                "-w",
                "2",
                "--set",
                "capture.block_bytes=65536",
                "-o",
                s(&out),
                s(&pcap),
            ],
            &[("MAILTAP_TEST_PANIC", thread)],
        );
        let e = err(&o);
        assert_eq!(o.status.code(), Some(4), "{thread}: {e}");
        assert!(e.contains("internal error"), "{thread}: {e}");
        assert!(closed_rows(&out.join("conn.log")) > 0, "{thread}");
    }
}
