//! Write errors (a full disk): each file fails on its own, reports once,
//! keeps what fits in its buffer, counts what it drops, never leaves a
//! partial row and resumes by itself (issue 12 item 4).

use crate::file::{Target, BUFFER_BYTES};
use crate::*;
use mailtap_core::output::OutputNotice;
use mailtap_core::{ConnId, Event, EventRecord, Record, SmtpRecord, Timestamp, WeirdRecord};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A disk in memory: `room` bytes still fit (`None`: no limit), then
/// every write fails with ENOSPC (a short write first when part fits);
/// `fail_next` makes that many writes fail outright whatever the room.
#[derive(Default)]
struct Disk {
    data: Vec<u8>,
    room: Option<usize>,
    fail_next: u32,
    failed: u32,
    /// Whether a partial row can be cut off (a regular file can).
    cannot_cut: bool,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Disk>>);

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Disk) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn text(&self) -> String {
        self.with(|d| String::from_utf8(d.data.clone()).unwrap())
    }
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.with(|d| {
            if d.fail_next > 0 {
                d.fail_next -= 1;
                d.failed += 1;
                return Err(enospc());
            }
            // Short writes of at most 4 KiB, like a file system that
            // fills page by page.
            let mut n = buf.len().min(4096);
            if let Some(r) = d.room {
                if r == 0 {
                    d.failed += 1;
                    return Err(enospc());
                }
                n = n.min(r);
                d.room = Some(r - n);
            }
            d.data.extend_from_slice(&buf[..n]);
            Ok(n)
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Target for Shared {
    fn cut(&mut self, n: u64) -> io::Result<()> {
        self.with(|d| {
            if d.cannot_cut {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "a FIFO"));
            }
            let len = d.data.len() - n as usize;
            d.data.truncate(len);
            if let Some(r) = d.room.as_mut() {
                *r += n as usize;
            }
            Ok(())
        })
    }
}

fn id4() -> ConnId {
    ConnId {
        orig_h: IpAddr::from([10, 10, 1, 4]),
        orig_p: 1470,
        resp_h: IpAddr::from([74, 53, 140, 153]),
        resp_p: 25,
    }
}

/// A weird row whose `ts` and `addl` identify it (about 120 bytes).
fn weird(i: u64) -> WeirdRecord {
    WeirdRecord {
        ts: Timestamp(1_700_000_000_000_000_000 + i as i64),
        uid: Some(format!("C{i:017}")),
        id: Some(id4()),
        name: "test_weird",
        addl: Some(format!("row {i}").into_bytes()),
        source: None,
    }
}

/// The rows of `n` weirds as a healthy file holds them.
fn expected(n: u64) -> String {
    let s = Shared::default();
    let mut f = LogFile::new(
        Path::new("/x"),
        "weird",
        LogFormat::Zeek,
        LogLimits::default(),
    );
    f.set_target(Box::new(s.clone()), &weird(0));
    for i in 0..n {
        f.write(&weird(i)).unwrap();
    }
    f.flush().unwrap();
    s.text()
}

fn log_with(disk: &Shared, retry: Duration) -> LogFile {
    let mut f = LogFile::new(
        Path::new("/x"),
        "weird",
        LogFormat::Zeek,
        LogLimits::default(),
    );
    f.set_target(Box::new(disk.clone()), &weird(0));
    f.health_mut().set_retry_interval(retry);
    f
}

fn notices(f: &mut LogFile) -> Vec<OutputNotice> {
    let mut v = Vec::new();
    f.health_mut().take_notices(&mut v);
    v
}

/// Every line ends in LF and has weird.log's 11 columns.
fn whole_rows(text: &str) -> usize {
    assert!(text.is_empty() || text.ends_with('\n'), "partial last line");
    for l in text.lines() {
        assert_eq!(l.split('\t').count(), 11, "{l:?}");
    }
    text.lines().count()
}

#[test]
fn a_failed_write_leaves_whole_rows_and_keeps_the_rest() {
    let disk = Shared::default();
    disk.with(|d| d.room = Some(1000));
    let mut f = log_with(&disk, Duration::ZERO);
    for i in 0..50 {
        f.write(&weird(i)).unwrap();
    }
    // The disk takes 1000 bytes, the write fails midway through a row:
    // reported once, naming the file; the partial row is cut off.
    let e = f.flush().unwrap_err();
    assert!(e.to_string().contains("/x/weird.log"), "{e}");
    assert!(e.to_string().contains("No space left"), "{e}");
    let on_disk = whole_rows(&disk.text());
    assert!(on_disk > 0 && on_disk < 50, "{on_disk}");
    // Failing again: no second report.
    f.flush().unwrap();
    assert_eq!(whole_rows(&disk.text()), on_disk);
    // Space comes back: the kept rows follow, nothing lost or repeated.
    disk.with(|d| d.room = None);
    f.flush().unwrap();
    assert_eq!(disk.text(), expected(50));
    let n = notices(&mut f);
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(matches!(&n[0], OutputNotice::Failed { output, .. } if output == "/x/weird.log"));
    assert!(
        matches!(&n[1], OutputNotice::Resumed { lost: 0, .. }),
        "{n:?}"
    );
    let r = f.report();
    assert_eq!((r.output.as_str(), r.written, r.lost), ("weird.log", 50, 0));
}

#[test]
fn rows_beyond_the_buffer_are_dropped_and_counted() {
    let disk = Shared::default();
    disk.with(|d| d.room = Some(0));
    // No retry during the outage.
    let mut f = log_with(&disk, Duration::from_secs(3600));
    let total = 2 * BUFFER_BYTES as u64 / 100;
    let mut errors = 0;
    for i in 0..total {
        if f.write(&weird(i)).is_err() {
            errors += 1;
        }
    }
    assert_eq!(errors, 1, "reported once");
    let r = f.report();
    assert_eq!(r.written, 0);
    assert!(r.failing && r.failures == 1);
    // Bounded: the buffer stopped growing at its size; the rest is lost.
    assert!(r.lost > total / 3, "{r:?}");
    let kept = f.rows();
    assert_eq!(kept + r.lost, total);
    assert!(kept * 100 <= BUFFER_BYTES as u64 + 8192, "{kept}");
    // Space back and the back-off over: the kept rows are written.
    disk.with(|d| d.room = None);
    f.health_mut().set_retry_interval(Duration::ZERO);
    f.write(&weird(total)).unwrap();
    f.flush().unwrap();
    let rows = whole_rows(&disk.text()) as u64;
    assert_eq!(rows, kept + 1);
    let r = f.report();
    assert_eq!((r.written, r.failing), (kept + 1, false));
    assert_eq!(r.written + r.lost, total + 1);
    let n = notices(&mut f);
    assert!(
        matches!(&n[1], OutputNotice::Resumed { lost, .. } if *lost == r.lost),
        "{n:?}"
    );
}

#[test]
fn fails_n_times_with_enospc_then_resumes_intact() {
    let disk = Shared::default();
    disk.with(|d| d.fail_next = 3);
    let mut f = log_with(&disk, Duration::ZERO);
    let mut errors = 0;
    for i in 0..20 {
        f.write(&weird(i)).unwrap();
        if f.flush().is_err() {
            errors += 1;
        }
    }
    assert_eq!(errors, 1);
    assert_eq!(disk.with(|d| d.failed), 3);
    assert_eq!(disk.text(), expected(20));
    assert_eq!(f.report().lost, 0);
}

#[test]
fn a_file_that_cannot_be_cut_completes_its_row_later() {
    // A FIFO or device: the partial row cannot be taken back, so its rest
    // goes first when writing resumes.
    let disk = Shared::default();
    disk.with(|d| {
        d.room = Some(777);
        d.cannot_cut = true;
    });
    let mut f = log_with(&disk, Duration::ZERO);
    for i in 0..30 {
        f.write(&weird(i)).unwrap();
    }
    assert!(f.flush().is_err());
    assert!(!disk.text().ends_with('\n'));
    disk.with(|d| d.room = None);
    f.flush().unwrap();
    assert_eq!(disk.text(), expected(30));
}

#[test]
fn closing_a_failing_file_loses_only_its_waiting_rows() {
    let disk = Shared::default();
    disk.with(|d| d.room = Some(600));
    let mut f = log_with(&disk, Duration::ZERO);
    for i in 0..10 {
        f.write(&weird(i)).unwrap();
    }
    assert!(f.finish().is_err(), "rows were lost");
    let text = disk.text();
    // No #close could be written whole: only whole rows (the cut part of
    // `#close` is gone too).
    let on_disk = whole_rows(&text) as u64;
    assert!(on_disk > 0 && on_disk < 10);
}

fn smtp(ts: i64) -> Record {
    Record::Smtp(Box::new(SmtpRecord {
        ts: Timestamp(ts * 1_000_000_000),
        uid: "CHhAvVGS1DHFjwGM9".into(),
        id: Some(id4()),
        trans_depth: 1,
        ..SmtpRecord::default()
    }))
}

fn event(ts: i64) -> Record {
    Record::Event(Box::new(EventRecord {
        ts: Timestamp(ts * 1_000_000_000),
        uid: "C1".into(),
        id: id4(),
        event: Event::SmtpStarttls,
    }))
}

#[test]
fn one_failing_file_does_not_stop_the_others_and_resumes_after_reopen() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ev = d.path().join("events.jsonl");
    let mut set = LogSet::new(&out, LogFormat::Zeek, LogLimits::default(), Some(&ev)).unwrap();
    set.set_retry_interval(Duration::from_secs(3600));
    // smtp.log cannot be created (a directory holds its name).
    std::fs::create_dir(out.join("smtp.log")).unwrap();
    let e = set.write(&smtp(1)).unwrap_err();
    assert!(e.to_string().contains("smtp.log"), "{e}");
    for t in 2..=5 {
        set.write(&smtp(t)).unwrap();
        set.write(&event(t)).unwrap();
        set.write(&Record::Weird(Box::new(weird(t as u64))))
            .unwrap();
    }
    set.flush().unwrap();
    assert_eq!(set.rows("smtp"), 0);
    let n = set.take_notices();
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].to_string().contains("smtp.log"), "{}", n[0]);
    // SIGHUP while failing: every file is closed and reopened as usual.
    set.reopen().unwrap();
    std::fs::remove_dir(out.join("smtp.log")).unwrap();
    set.set_retry_interval(Duration::ZERO);
    set.write(&smtp(6)).unwrap();
    set.write(&Record::Weird(Box::new(weird(6)))).unwrap();
    let n = set.take_notices();
    assert!(
        matches!(&n[..], [OutputNotice::Resumed { output, lost: 5, .. }] if output.ends_with("smtp.log")),
        "{n:?}"
    );
    let stats = set.finish().unwrap();
    assert_eq!(stats.rows["smtp"], 1);
    assert_eq!(stats.rows["weird"], 5);
    assert_eq!(stats.events, 4);
    let smtp_out = stats
        .outputs
        .iter()
        .find(|o| o.output == "smtp.log")
        .unwrap();
    assert_eq!(
        (smtp_out.written, smtp_out.lost, smtp_out.failures),
        (1, 5, 1)
    );
    assert!(!smtp_out.failing);
    assert!(stats
        .outputs
        .iter()
        .filter(|o| o.output != "smtp.log")
        .all(|o| o.lost == 0 && o.failures == 0));
    let text = std::fs::read_to_string(out.join("smtp.log")).unwrap();
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert!(text.ends_with('\n') && text.lines().last().unwrap().starts_with("#close"));
}

#[test]
fn an_event_stream_that_always_fails_counts_every_event_lost() {
    let d = tempfile::tempdir().unwrap();
    let mut set = LogSet::new(
        d.path(),
        LogFormat::Json,
        LogLimits::default(),
        Some(Path::new("/dev/full")),
    )
    .unwrap();
    for t in 0..10 {
        set.write(&event(t)).unwrap();
        set.write(&smtp(t)).unwrap();
    }
    let stats = set.finish().unwrap();
    assert_eq!(stats.events, 0);
    assert_eq!(stats.rows["smtp"], 10);
    let ev = stats.outputs.iter().find(|o| o.output == "events").unwrap();
    assert_eq!((ev.written, ev.lost, ev.failing), (0, 10, true));
    assert!(ev.first_error.as_deref().unwrap().contains("/dev/full"));
    assert!(matches!(&stats.notices[..], [OutputNotice::Failed { .. }]));
}
