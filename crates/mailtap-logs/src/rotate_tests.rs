//! Tests of log rotation: by size, by interval, names and collisions, the
//! post-rotation command, reopen and finish.

use crate::rotate::{next_rotation, rotated_path};
use crate::values::{local_start_of_day, write_log_time};
use crate::*;
use mailtap_core::{ConnId, Event, EventRecord, Record, SmtpRecord, Timestamp, WeirdRecord};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn id4() -> ConnId {
    ConnId {
        orig_h: IpAddr::from([10, 10, 1, 4]),
        orig_p: 1470,
        resp_h: IpAddr::from([74, 53, 140, 153]),
        resp_p: 25,
    }
}

/// An smtp row whose `ts` (seconds) identifies it.
fn smtp(ts_secs: i64) -> Record {
    Record::Smtp(Box::new(SmtpRecord {
        ts: Timestamp(ts_secs * 1_000_000_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(id4()),
        trans_depth: 1,
        rcptto: Some(vec![b"rcpt@example.com".to_vec()]),
        ..SmtpRecord::default()
    }))
}

fn weird(ts_secs: i64) -> Record {
    Record::Weird(Box::new(WeirdRecord {
        ts: Timestamp(ts_secs * 1_000_000_000),
        uid: None,
        id: None,
        name: "test_weird",
        addl: None,
        source: None,
    }))
}

fn event(ts_secs: i64) -> Record {
    Record::Event(Box::new(EventRecord {
        ts: Timestamp(ts_secs * 1_000_000_000),
        uid: "C1".into(),
        id: id4(),
        event: Event::SmtpStarttls,
    }))
}

/// A time as Zeek's log times (and the rotated names) print it.
fn fmt(t: SystemTime) -> String {
    let mut v = Vec::new();
    write_log_time(&mut v, t);
    String::from_utf8(v).unwrap()
}

/// 2026-11-23 13:10:00 local time (whatever the zone).
fn t0() -> SystemTime {
    // 2026-11-23 00:00:00 UTC; local midnight of that day is within +-14 h.
    let noon_utc = 1_795_392_000 + 12 * 3600;
    let midnight = local_start_of_day(noon_utc);
    UNIX_EPOCH + Duration::from_secs(u64::try_from(midnight).unwrap()) + 13 * HOUR + 10 * MIN
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// File names in `dir` (not directories), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn rotated(dir: &Path, file: &str, open: SystemTime, close: SystemTime) -> PathBuf {
    rotated_path(&dir.join(file), open, close, 0)
}

/// Data rows (non-`#` lines) of a TSV log.
fn data_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.starts_with('#')).collect()
}

fn ts_of(line: &str) -> i64 {
    let secs = line.split('\t').next().unwrap();
    secs.strip_suffix(".000000").unwrap().parse().unwrap()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rot(interval: Option<Duration>, max_bytes: Option<u64>, post: Option<&str>) -> RotationConfig {
    RotationConfig {
        interval,
        max_bytes,
        post_rotate: post.map(str::to_owned),
    }
}

// ----------------------------------------------------------------- config

#[test]
fn validate_names_the_key() {
    assert!(RotationConfig::default().validate().is_ok());
    assert!(rot(Some(HOUR), Some(4096), Some("true")).validate().is_ok());
    let e = rot(Some(Duration::from_millis(500)), None, None)
        .validate()
        .unwrap_err();
    assert!(e.contains("log.rotate_interval"), "{e}");
    let e = rot(None, Some(4095), None).validate().unwrap_err();
    assert!(e.contains("log.rotate_max_bytes"), "{e}");
    let e = rot(Some(HOUR), None, Some("  ")).validate().unwrap_err();
    assert!(e.contains("log.post_rotate"), "{e}");
    let e = rot(None, None, Some("true")).validate().unwrap_err();
    assert!(e.contains("log.post_rotate"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let err = LogSet::with_rotation(
        dir.path(),
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(None, Some(1), None),
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn next_rotation_is_aligned_like_zeek() {
    let t = t0();
    // Hourly: on the (local) hour.
    assert_eq!(next_rotation(t, HOUR), Some(t + 50 * MIN));
    // Exactly on a boundary: the next one.
    assert_eq!(next_rotation(t + 50 * MIN, HOUR), Some(t + 110 * MIN));
    // Every 10 min.
    assert_eq!(next_rotation(t + 3 * MIN, 10 * MIN), Some(t + 10 * MIN));
    // An interval that does not divide a day counts from local midnight:
    // 7 h from 13:10 -> 14:00.
    assert_eq!(next_rotation(t, 7 * HOUR), Some(t + 50 * MIN));
    // 7 h from 22:00 -> 28:00 = 04:00 next day.
    let ten_pm = t + 8 * HOUR + 50 * MIN;
    assert_eq!(next_rotation(ten_pm, 7 * HOUR), Some(ten_pm + 6 * HOUR));
}

#[test]
fn rotated_names_are_zeek_style() {
    let t = t0();
    let dir = Path::new("/logs");
    let open = fmt(t);
    let close = fmt(t + 50 * MIN);
    assert_eq!(
        rotated_path(&dir.join("smtp.log"), t, t + 50 * MIN, 0),
        dir.join(format!("smtp.{open}_{close}.log"))
    );
    assert_eq!(
        rotated_path(&dir.join("smtp.log"), t, t + 50 * MIN, 2),
        dir.join(format!("smtp.{open}_{close}-2.log"))
    );
    assert_eq!(
        rotated_path(&dir.join("events.jsonl"), t, t + 50 * MIN, 0),
        dir.join(format!("events.{open}_{close}.jsonl"))
    );
    assert_eq!(
        rotated_path(Path::new("events"), t, t + 50 * MIN, 0),
        PathBuf::from(format!("events.{open}_{close}"))
    );
    // Local wall-clock time, whatever the zone.
    assert_eq!(open, "2026-11-23-13-10-00");
    assert_eq!(close, "2026-11-23-14-00-00");
    // Where the zone is UTC (this machine), that is plain UTC.
    if local_start_of_day(1_795_392_000 + 12 * 3600) == 1_795_392_000 {
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_795_392_000 + 47_400));
    }
}

// ------------------------------------------------------------------- size

/// Checks one rotated TSV smtp log: full header, `#close` last, whole rows.
/// Returns the row timestamps.
fn check_tsv_file(path: &Path, max_bytes: u64, max_row: u64) -> Vec<i64> {
    let s = read(path);
    let lines: Vec<&str> = s.lines().collect();
    assert!(s.ends_with('\n'), "{}", path.display());
    assert_eq!(lines[0], "#separator \\x09", "{}", path.display());
    assert_eq!(lines[4], "#path\tsmtp");
    assert!(lines[5].starts_with("#open\t"));
    assert!(lines[6].starts_with("#fields\tts\tuid\t"));
    assert!(lines[7].starts_with("#types\ttime\tstring\t"));
    let ncols = lines[6].split('\t').count() - 1;
    let last = lines.last().unwrap();
    assert!(last.starts_with("#close\t"), "{}: {last}", path.display());
    assert_eq!(lines.iter().filter(|l| l.starts_with('#')).count(), 9);
    let rows = data_lines(&s);
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r.split('\t').count(), ncols, "a split row: {r}");
    }
    let close_len = last.len() as u64 + 1;
    let len = s.len() as u64;
    assert!(
        len <= max_bytes + max_row + close_len,
        "{}: {len} bytes",
        path.display()
    );
    rows.iter().map(|r| ts_of(r)).collect()
}

#[test]
fn size_rotation_under_load() {
    const N: i64 = 50_000;
    const MAX: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut set = LogSet::with_rotation(
        dir.path(),
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(None, Some(MAX), None),
    )
    .unwrap();
    for i in 0..N {
        set.write(&smtp(i)).unwrap();
    }
    // Before finish: the current file is still at its name.
    assert!(dir.path().join("smtp.log").exists());
    let stats = set.finish().unwrap();
    assert_eq!(stats.rows["smtp"], N as u64);
    let files = names(dir.path());
    assert!(files.len() > 50, "{} files", files.len());
    assert_eq!(stats.rotation.files_rotated, files.len() as u64);
    assert!(!files.contains(&"smtp.log".to_owned()), "finish renames it");
    // A row is ~170 bytes here; rows are the same length but for ts.
    let max_row = 200;
    let mut seen = BTreeSet::new();
    let mut total = 0usize;
    for f in &files {
        assert!(f.starts_with("smtp.") && f.ends_with(".log"), "{f}");
        let ts = check_tsv_file(&dir.path().join(f), MAX, max_row);
        total += ts.len();
        seen.extend(ts);
    }
    assert_eq!(total, N as usize, "rows across files");
    assert_eq!(seen.len(), N as usize, "no row lost or duplicated");
    assert_eq!(seen.iter().next_back(), Some(&(N - 1)));
}

#[test]
fn size_rotation_json_and_events() {
    const MAX: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let ev_path = dir.path().join("ev").join("events.jsonl");
    std::fs::create_dir(dir.path().join("ev")).unwrap();
    let mut set = LogSet::with_rotation(
        dir.path(),
        LogFormat::Json,
        LogLimits::default(),
        Some(&ev_path),
        rot(None, Some(MAX), None),
    )
    .unwrap();
    for i in 0..1000 {
        set.write(&smtp(i)).unwrap();
        set.write(&event(i)).unwrap();
    }
    let stats = set.finish().unwrap();
    assert_eq!(stats.events, 1000);
    let logs = names(dir.path());
    let evs = names(&dir.path().join("ev"));
    assert!(logs.len() > 10 && evs.len() > 10, "{logs:?} {evs:?}");
    assert_eq!(
        stats.rotation.files_rotated,
        (logs.len() + evs.len()) as u64
    );
    let mut rows = 0;
    for f in &logs {
        let s = read(&dir.path().join(f));
        assert!(s.len() as u64 <= MAX + 400, "{f}: {}", s.len());
        for l in s.lines() {
            assert!(!l.starts_with('#'), "no header lines in JSON: {l}");
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["ts"].is_number());
            rows += 1;
        }
    }
    assert_eq!(rows, 1000);
    let mut events = 0;
    for f in &evs {
        assert!(f.starts_with("events.") && f.ends_with(".jsonl"), "{f}");
        let s = read(&dir.path().join("ev").join(f));
        assert!(s.len() as u64 <= MAX + 400, "{f}: {}", s.len());
        for l in s.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["event"], "smtp_starttls");
            events += 1;
        }
    }
    assert_eq!(events, 1000);
}

// --------------------------------------------------------------- interval

#[test]
fn interval_rotation_via_tick() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut set = LogSet::with_rotation(
        d,
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(Some(HOUR), None, None),
    )
    .unwrap();
    let t = t0(); // 13:10
    set.write_at(&smtp(1), t).unwrap();
    set.write_at(&weird(1), t + MIN).unwrap();
    set.write_at(&smtp(2), t + 2 * MIN).unwrap();
    // Not due before 14:00.
    set.tick(t + 49 * MIN).unwrap();
    assert_eq!(names(d), ["smtp.log", "weird.log"]);
    assert_eq!(set.rotation_stats().files_rotated, 0);
    // 14:00:01: both rotate, closed at the tick's time.
    let t1 = t + 50 * MIN + Duration::from_secs(1);
    set.tick(t1).unwrap();
    let smtp1 = rotated(d, "smtp.log", t, t1);
    let weird1 = rotated(d, "weird.log", t + MIN, t1);
    assert!(smtp1.exists() && weird1.exists(), "{:?}", names(d));
    assert_eq!(
        names(d).len(),
        2,
        "nothing at the plain names: {:?}",
        names(d)
    );
    assert_eq!(set.rotation_stats().files_rotated, 2);
    let s = read(&smtp1);
    assert!(s.contains(&format!("\n#open\t{}\n", fmt(t))), "{s}");
    assert!(s.ends_with(&format!("#close\t{}\n", fmt(t1))), "{s}");
    assert_eq!(data_lines(&s).len(), 2);
    // A second tick in the same interval does nothing.
    set.tick(t1 + MIN).unwrap();
    assert_eq!(set.rotation_stats().files_rotated, 2);
    // 14:10: only smtp gets rows in this interval.
    let t2 = t + HOUR;
    set.write_at(&smtp(3), t2).unwrap();
    assert!(d.join("smtp.log").exists());
    let t3 = t + 110 * MIN; // 15:00
    set.tick(t3).unwrap();
    let smtp2 = rotated(d, "smtp.log", t2, t3);
    assert!(smtp2.exists(), "{:?}", names(d));
    let s = read(&smtp2);
    assert!(s.starts_with("#separator"));
    assert!(s.contains(&format!("\n#open\t{}\n", fmt(t2))));
    assert_eq!(data_lines(&s).len(), 1);
    // weird had no rows in 14:00-15:00, and nobody has rows in 15:00-17:00:
    // no file, empty or not.
    set.tick(t3 + HOUR).unwrap();
    set.tick(t3 + 2 * HOUR).unwrap();
    assert_eq!(names(d).len(), 3, "{:?}", names(d));
    assert_eq!(set.rotation_stats().files_rotated, 3);
    // Rows again at 18:05, then shutdown at 18:20: finish rotates too.
    let t4 = t3 + 3 * HOUR + 5 * MIN;
    set.write_at(&smtp(4), t4).unwrap();
    let t5 = t4 + 15 * MIN;
    let stats = set.finish_at(t5).unwrap();
    assert_eq!(stats.rotation.files_rotated, 4);
    let smtp3 = rotated(d, "smtp.log", t4, t5);
    assert!(smtp3.exists(), "{:?}", names(d));
    assert!(read(&smtp3).ends_with(&format!("#close\t{}\n", fmt(t5))));
    assert_eq!(names(d).len(), 4, "{:?}", names(d));
    assert_eq!(stats.rows["smtp"], 4);
    assert_eq!(stats.rows["weird"], 1);
}

#[test]
fn interval_rotation_json_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ev = d.join("events.jsonl");
    let mut set = LogSet::with_rotation(
        d,
        LogFormat::Json,
        LogLimits::default(),
        Some(&ev),
        rot(Some(HOUR), None, None),
    )
    .unwrap();
    let t = t0();
    // The event stream exists (empty) from the start; empty, it does not
    // rotate.
    assert_eq!(names(d), ["events.jsonl"]);
    set.tick(t + 2 * HOUR).unwrap();
    assert_eq!(names(d), ["events.jsonl"]);
    let t1 = t + 3 * HOUR; // 16:10
    set.write_at(&event(1), t1).unwrap();
    set.write_at(&smtp(1), t1 + MIN).unwrap();
    let t2 = t1 + 50 * MIN; // 17:00
    set.tick(t2).unwrap();
    let ev1 = rotated(d, "events.jsonl", t1, t2);
    let smtp1 = rotated(d, "smtp.log", t1 + MIN, t2);
    assert!(ev1.exists() && smtp1.exists(), "{:?}", names(d));
    assert_eq!(names(d).len(), 2, "{:?}", names(d));
    assert!(read(&ev1).starts_with("{\"ts\":1.0,\"event\":\"smtp_starttls\""));
    let s = read(&smtp1);
    assert_eq!(s.lines().count(), 1);
    assert!(s.starts_with("{\"ts\":1.0,"), "{s}");
    // Next event: a new stream file at the same name.
    set.write_at(&event(2), t2 + MIN).unwrap();
    let stats = set.finish_at(t2 + 2 * MIN).unwrap();
    assert_eq!(stats.events, 2);
    let ev2 = rotated(d, "events.jsonl", t2 + MIN, t2 + 2 * MIN);
    assert!(ev2.exists(), "{:?}", names(d));
    assert_eq!(read(&ev2).lines().count(), 1);
    assert_eq!(stats.rotation.files_rotated, 3);
}

// -------------------------------------------------------------- collision

#[test]
fn name_collision_gets_a_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = t0();
    let t1 = t + 50 * MIN;
    let taken = rotated(d, "smtp.log", t, t1);
    std::fs::write(&taken, "keep me\n").unwrap();
    let taken1 = rotated_path(&d.join("smtp.log"), t, t1, 1);
    std::fs::write(&taken1, "keep me too\n").unwrap();
    let mut set = LogSet::with_rotation(
        d,
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(Some(HOUR), None, None),
    )
    .unwrap();
    set.write_at(&smtp(1), t).unwrap();
    set.tick(t1).unwrap();
    assert_eq!(read(&taken), "keep me\n");
    assert_eq!(read(&taken1), "keep me too\n");
    let new = rotated_path(&d.join("smtp.log"), t, t1, 2);
    assert!(
        new.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(&format!("{}-2.log", fmt(t1))),
        "{new:?}"
    );
    let s = read(&new);
    assert_eq!(data_lines(&s).len(), 1);
    // Same open and close again (size rotation within one second).
    set.write_at(&smtp(2), t).unwrap();
    set.tick(t1).unwrap();
    let newer = rotated_path(&d.join("smtp.log"), t, t1, 3);
    assert_eq!(data_lines(&read(&newer)).len(), 1);
    assert_eq!(read(&new), s);
    assert_eq!(names(d).len(), 4);
    set.finish().unwrap();
}

// ------------------------------------------------------------ post-rotate

#[test]
fn post_rotate_command_runs_with_the_rotated_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("logs");
    let copied = dir.path().join("copied");
    std::fs::create_dir(&d).unwrap();
    std::fs::create_dir(&copied).unwrap();
    let list = dir.path().join("list");
    let cmd = format!(
        "cp \"$1\" '{}/' && echo \"$1\" >> '{}'",
        copied.display(),
        list.display()
    );
    let mut set = LogSet::with_rotation(
        &d,
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(Some(HOUR), None, Some(&cmd)),
    )
    .unwrap();
    let t = t0();
    set.write_at(&smtp(1), t).unwrap();
    let t1 = t + 50 * MIN;
    set.tick(t1).unwrap();
    let r = rotated(&d, "smtp.log", t, t1);
    assert!(r.exists());
    assert_eq!(set.rotation_stats().post_rotate_started, 1);
    let copy = copied.join(r.file_name().unwrap());
    wait_for("the post-rotate copy", || {
        list.exists() && read(&list).ends_with('\n')
    });
    assert_eq!(read(&list), format!("{}\n", r.display()));
    assert_eq!(read(&copy), read(&r));
    wait_for("the command to be reaped", || {
        set.tick(t1).unwrap();
        set.post_rotate_running() == 0
    });
    assert_eq!(set.rotation_stats().post_rotate_failed, 0);
    assert!(set.take_rotation_errors().is_empty());
    let stats = set.finish().unwrap();
    assert_eq!(stats.rotation.post_rotate_started, 1);
    assert_eq!(stats.rotation.post_rotate_failed, 0);
}

#[test]
fn failing_post_rotate_command_is_counted_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut set = LogSet::with_rotation(
        d,
        LogFormat::Zeek,
        LogLimits::default(),
        None,
        rot(Some(HOUR), None, Some("exit 3")),
    )
    .unwrap();
    let t = t0();
    set.write_at(&smtp(1), t).unwrap();
    set.tick(t + HOUR).unwrap();
    wait_for("the failure to be counted", || {
        set.tick(t + HOUR).unwrap();
        set.rotation_stats().post_rotate_failed == 1
    });
    let errs = set.take_rotation_errors();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("log.post_rotate") && errs[0].contains('3'),
        "{errs:?}"
    );
    // The run goes on: more rows, another rotation, another failure.
    set.write_at(&smtp(2), t + HOUR).unwrap();
    set.tick(t + 2 * HOUR).unwrap();
    set.write_at(&smtp(3), t + 2 * HOUR).unwrap();
    // finish rotates the last file and waits for the commands.
    let stats = set.finish_at(t + 2 * HOUR + MIN).unwrap();
    assert_eq!(stats.rotation.files_rotated, 3);
    assert_eq!(stats.rotation.post_rotate_started, 3);
    assert_eq!(stats.rotation.post_rotate_failed, 3);
    assert_eq!(stats.rotation_errors.len(), 2);
    assert_eq!(names(d).len(), 3);
}

// ----------------------------------------------------------------- reopen

#[test]
fn reopen_after_logrotate_moved_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ev = d.join("events.jsonl");
    // No rotation configured: reopen works on its own (SIGHUP).
    let mut set = LogSet::new(d, LogFormat::Zeek, LogLimits::default(), Some(&ev)).unwrap();
    set.write(&smtp(1)).unwrap();
    set.write(&smtp(2)).unwrap();
    set.write(&event(1)).unwrap();
    set.flush().unwrap();
    // logrotate renames, then sends SIGHUP.
    std::fs::rename(d.join("smtp.log"), d.join("smtp.log.1")).unwrap();
    std::fs::rename(&ev, d.join("events.jsonl.1")).unwrap();
    // Rows before the reopen still go to the moved file (same open file).
    set.write(&smtp(3)).unwrap();
    set.reopen().unwrap();
    let old = read(&d.join("smtp.log.1"));
    assert!(old.lines().last().unwrap().starts_with("#close\t"), "{old}");
    assert_eq!(data_lines(&old).len(), 3);
    assert_eq!(read(&d.join("events.jsonl.1")).lines().count(), 1);
    assert!(!d.join("smtp.log").exists(), "opened with the next row");
    set.write(&smtp(4)).unwrap();
    set.write(&event(2)).unwrap();
    let stats = set.finish().unwrap();
    assert_eq!(stats.rows["smtp"], 4);
    assert_eq!(stats.events, 2);
    assert_eq!(stats.rotation, RotationStats::default());
    let new = read(&d.join("smtp.log"));
    assert!(new.starts_with("#separator \\x09\n"), "{new}");
    assert!(new.contains("\n#fields\tts\t"));
    assert!(new.lines().last().unwrap().starts_with("#close\t"));
    assert_eq!(data_lines(&new).len(), 1);
    assert_eq!(ts_of(data_lines(&new)[0]), 4);
    let ev_new = read(&ev);
    assert_eq!(ev_new.lines().count(), 1);
    assert!(ev_new.starts_with("{\"ts\":2.0,"));
}

#[test]
fn reopen_without_a_move_appends() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut set = LogSet::new(d, LogFormat::Zeek, LogLimits::default(), None).unwrap();
    set.write(&smtp(1)).unwrap();
    set.reopen().unwrap();
    set.reopen().unwrap(); // nothing open: nothing happens
    set.write(&smtp(2)).unwrap();
    set.finish().unwrap();
    let s = read(&d.join("smtp.log"));
    // Two complete header/close blocks, nothing lost.
    assert_eq!(s.matches("#separator").count(), 2);
    assert_eq!(s.matches("#close").count(), 2);
    assert_eq!(data_lines(&s).len(), 2);
    assert!(s.ends_with('\n') && s.lines().last().unwrap().starts_with("#close"));
}

// ----------------------------------------------------------------- finish

#[test]
fn finish_renames_only_with_rotation_and_leaves_empty_streams() {
    let t = t0();
    // Without rotation: plain names, as before.
    let dir = tempfile::tempdir().unwrap();
    let mut set = LogSet::new(dir.path(), LogFormat::Zeek, LogLimits::default(), None).unwrap();
    set.write_at(&smtp(1), t).unwrap();
    set.finish_at(t + MIN).unwrap();
    assert_eq!(names(dir.path()), ["smtp.log"]);
    // With rotation: renamed with open/close times; the post-rotate command
    // ran for it before finish returned. An event stream that never got an
    // event stays as it is.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = d.join("list.txt");
    let cmd = format!("echo \"$1\" >> '{}'", list.display());
    let mut set = LogSet::with_rotation(
        d,
        LogFormat::Zeek,
        LogLimits::default(),
        Some(&d.join("events.jsonl")),
        rot(None, Some(1 << 20), Some(&cmd)),
    )
    .unwrap();
    set.write_at(&smtp(1), t).unwrap();
    let stats = set.finish_at(t + MIN).unwrap();
    let r = rotated(d, "smtp.log", t, t + MIN);
    assert!(r.exists(), "{:?}", names(d));
    assert!(read(&r).ends_with(&format!("#close\t{}\n", fmt(t + MIN))));
    assert_eq!(stats.rotation.files_rotated, 1);
    assert_eq!(stats.rotation.post_rotate_started, 1);
    assert_eq!(stats.rotation.post_rotate_failed, 0);
    assert_eq!(read(&list), format!("{}\n", r.display()));
    assert_eq!(read(&d.join("events.jsonl")), "");
    assert_eq!(names(d).len(), 3, "{:?}", names(d));
}

// ------------------------------------------------------------ safe files

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn links_planted_at_log_names_are_never_followed() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Issue 12: File::create truncated and wrote through such links.
    std::os::unix::fs::symlink(&victim, out.join("smtp.log")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("weird.log")).unwrap();
    let mut set = LogSet::new(&out, LogFormat::Zeek, LogLimits::default(), None).unwrap();
    set.write(&smtp(1)).unwrap();
    set.write(&weird(2)).unwrap();
    let stats = set.finish().unwrap();
    assert_eq!(stats.rows.get("smtp"), Some(&1));
    assert_eq!(read(&victim), "keep me\n");
    // The links were replaced by the logs, not written through.
    assert!(!is_link(&out.join("smtp.log")) && !is_link(&out.join("weird.log")));
    assert_eq!(data_lines(&read(&out.join("smtp.log"))).len(), 1);
    // No temporary file left behind.
    assert!(
        names(&out).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        names(&out)
    );
}

#[test]
fn reopen_and_events_refuse_links_and_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, "keep me\n").unwrap();
    // The event stream: a link at its name is refused, naming it.
    let ev = d.path().join("events.json");
    std::os::unix::fs::symlink(&victim, &ev).unwrap();
    let e = LogSet::new(d.path(), LogFormat::Json, LogLimits::default(), Some(&ev))
        .err()
        .unwrap();
    assert!(e.to_string().contains("events.json"), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&ev).unwrap();
    // After a reopen (logrotate moved the file away and an attacker put a
    // link at the name), the next file is not opened through the link.
    let mut set = LogSet::new(d.path(), LogFormat::Json, LogLimits::default(), Some(&ev)).unwrap();
    set.write(&smtp(1)).unwrap();
    set.write(&event(1)).unwrap();
    set.reopen().unwrap();
    std::fs::rename(d.path().join("smtp.log"), d.path().join("smtp.old")).unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join("smtp.log")).unwrap();
    let e = set.write(&smtp(2)).unwrap_err();
    assert!(e.to_string().contains("smtp.log"), "{e}");
    assert_eq!(read(&victim), "keep me\n");
    // A regular file left at the name is appended to, as before.
    std::fs::remove_file(d.path().join("smtp.log")).unwrap();
    std::fs::write(d.path().join("smtp.log"), "kept\n").unwrap();
    set.write(&smtp(3)).unwrap();
    set.write(&event(3)).unwrap();
    set.finish().unwrap();
    assert!(read(&d.path().join("smtp.log")).starts_with("kept\n"));
    assert_eq!(read(&ev).lines().count(), 2);
    assert_eq!(read(&victim), "keep me\n");
}

#[test]
fn events_may_go_to_a_device_the_operator_names() {
    // /dev/null is a character device: written to, never replaced.
    let d = tempfile::tempdir().unwrap();
    let mut set = LogSet::new(
        d.path(),
        LogFormat::Json,
        LogLimits::default(),
        Some(Path::new("/dev/null")),
    )
    .unwrap();
    set.write(&event(1)).unwrap();
    set.finish().unwrap();
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}
