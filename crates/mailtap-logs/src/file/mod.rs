//! Log files, the event stream file and the set of logs of one run.
//!
//! # Write errors (a full disk)
//!
//! Each log file and the event stream handle their own write errors
//! ([`OutputHealth`]): the first failure is queued as an
//! [`OutputNotice`] (and returned by the call that met it), the file's
//! other rows go on being taken, and the other files are not affected.
//! While a file fails, rows wait in its buffer (at most
//! [`BUFFER_BYTES`]); once the buffer is full, further rows are dropped
//! and counted as lost. The buffer is tried again at the next row or
//! [`LogSet::flush`] after the back-off ([`RETRY_INTERVAL`], the first
//! retry at once); when it goes through, writing resumes and a notice
//! says how many rows were lost meanwhile. A write that fails midway never
//! leaves a partial row: the rows written whole stay, the partial one is
//! cut off the file again (`ftruncate`) and stays in the buffer; where a
//! file cannot be cut (a FIFO or device), the rest of the row is written
//! first when writing resumes. Closing a file (rotation, reopen, finish)
//! always tries once more; rows that still cannot be written are lost.

use crate::format::{format_event, format_zeek_close, format_zeek_header, json_row, zeek_row};
use crate::rotate::{
    next_rotation, rename_noreplace, rename_rotated, PostRotate, RotationConfig, RotationStats,
};
use crate::{LogFormat, LogLimits, Truncations};
use mailtap_core::output::{OutputHealth, OutputNotice, OutputReport};
use mailtap_core::{
    EventRecord, FieldDef, Interval, Record, Timestamp, Weird, WeirdRecord, ZeekRecord,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub use mailtap_core::output::RETRY_INTERVAL;

mod log_file;
mod open;
mod sink;

pub use log_file::{EventFile, LogFile};
pub(crate) use open::*;
pub use sink::BUFFER_BYTES;
pub(crate) use sink::*;

/// What a [`LogSet`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Rows written per log path (including the truncation weirds in
    /// `weird`; not the rows lost to write errors).
    pub rows: BTreeMap<&'static str, u64>,
    /// Events written to the event stream (not the ones lost).
    pub events: u64,
    /// Events dropped because no event stream was configured.
    pub events_dropped: u64,
    /// `log_*_field_truncated` weirds written to weird.log.
    pub truncation_weirds: u64,
    /// What rotation did, including the renames at finish and the
    /// post-rotation commands that ended before finish returned.
    pub rotation: RotationStats,
    /// Rotation failure messages not yet taken with
    /// [`LogSet::take_rotation_errors`] (for the caller to log).
    pub rotation_errors: Vec<String>,
    /// What every log file and the event stream wrote and lost.
    pub outputs: Vec<OutputReport>,
    /// Write-error notices not yet taken with [`LogSet::take_notices`]
    /// (for the caller to log).
    pub notices: Vec<OutputNotice>,
}

/// Zeek suppresses a repeat of a connection-less weird of the same name for
/// 10 minutes (`Weird::weird_ignore`, `&create_expire=10min`).
const WEIRD_REPEAT_SUPPRESS: Interval = Interval(600 * 1_000_000_000);

/// How long [`LogSet::finish`] waits for post-rotation commands still
/// running; later ones run on but are not in the stats.
pub const POST_ROTATE_FINISH_WAIT: Duration = Duration::from_secs(5);

/// All logs of one run: routes each [`Record`] to its [`LogFile`] (created
/// on first use, by path), events to the [`EventFile`] if there is one, and
/// turns log-limit truncations into weirds in weird.log. Rotates the files
/// as its [`RotationConfig`] says (see the crate documentation).
///
/// Truncation weirds follow Zeek: no uid/connection, addl `<PATH>::LOG`
/// (path upper-cased, e.g. `SMTP::LOG`), no source, and a given name is
/// logged at most once per 10 minutes whatever its addl. Their `ts` is the
/// latest record/event timestamp seen so far, the closest thing to Zeek's
/// `network_time()` the collector has.
pub struct LogSet {
    dir: PathBuf,
    format: LogFormat,
    limits: LogLimits,
    logs: Vec<(&'static str, LogFile)>,
    events: Option<EventFile>,
    events_dropped: u64,
    network_time: Option<Timestamp>,
    last_string_weird: Option<Timestamp>,
    last_container_weird: Option<Timestamp>,
    truncation_weirds: u64,
    rotation: RotationConfig,
    post: PostRotate,
    /// Back-off of failing files (tests shorten it).
    retry: Duration,
}

impl LogSet {
    /// Logs go to `dir` (which must exist); the event stream, if `events` is
    /// given, is created at that path now. No rotation.
    pub fn new(
        dir: &Path,
        format: LogFormat,
        limits: LogLimits,
        events: Option<&Path>,
    ) -> io::Result<Self> {
        Self::with_rotation(dir, format, limits, events, RotationConfig::default())
    }

    /// [`new`](Self::new) with rotation. An invalid `rotation`
    /// ([`RotationConfig::validate`]) is an `InvalidInput` error.
    pub fn with_rotation(
        dir: &Path,
        format: LogFormat,
        limits: LogLimits,
        events: Option<&Path>,
        rotation: RotationConfig,
    ) -> io::Result<Self> {
        rotation
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let events = match events {
            Some(p) => {
                let mut f = EventFile::create(p)?;
                f.interval = rotation.interval;
                Some(f)
            }
            None => None,
        };
        Ok(LogSet {
            dir: dir.to_owned(),
            format,
            limits,
            logs: Vec::new(),
            events,
            events_dropped: 0,
            network_time: None,
            last_string_weird: None,
            last_container_weird: None,
            truncation_weirds: 0,
            rotation,
            post: PostRotate::default(),
            retry: RETRY_INTERVAL,
        })
    }

    /// The back-off between tries of a failing file ([`RETRY_INTERVAL`]
    /// unless changed; tests shorten it).
    pub fn set_retry_interval(&mut self, d: Duration) {
        self.retry = d;
        for (_, f) in &mut self.logs {
            f.out.health.set_retry_interval(d);
        }
        if let Some(e) = self.events.as_mut() {
            e.out.health.set_retry_interval(d);
        }
    }

    /// Writes one record where it belongs. A file opened for it gets the
    /// current wall-clock time as its open time.
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        self.write_opt(rec, None)
    }

    /// [`write`](Self::write) on a given clock: `now` is the open time of
    /// a file opened for this record and the close time of a file rotated
    /// by size after it. For tests and callers with their own clock.
    pub fn write_at(&mut self, rec: &Record, now: SystemTime) -> io::Result<()> {
        self.write_opt(rec, Some(now))
    }

    fn write_opt(&mut self, rec: &Record, now: Option<SystemTime>) -> io::Result<()> {
        let ts = match rec {
            Record::Conn(r) => r.ts,
            Record::Smtp(r) => r.ts,
            Record::Weird(r) => r.ts,
            Record::Event(e) => e.ts,
            Record::Pop3(r) => r.ts,
            Record::Imap(r) => r.ts,
            Record::File(r) => r.ts,
            Record::Ssl(r) => r.ts,
            Record::X509(r) => r.ts,
            Record::EmailMeta(m) => m.ts,
            // Extracted message bytes are not the logs' business.
            Record::EmailData(_) => return Ok(()),
        };
        match self.network_time {
            Some(t) if t >= ts => {}
            _ => self.network_time = Some(ts),
        }
        match rec {
            Record::Event(ev) => {
                match self.events.as_mut() {
                    Some(f) => {
                        f.write_opt(ev, now)?;
                        if let Some(max) = self.rotation.max_bytes {
                            if f.size() > max {
                                self.rotate_events(now.unwrap_or_else(SystemTime::now))?;
                            }
                        }
                    }
                    None => self.events_dropped += 1,
                }
                Ok(())
            }
            Record::Conn(r) => self.write_log(&**r, now),
            Record::Smtp(r) => self.write_log(&**r, now),
            Record::Weird(r) => self.write_log(&**r, now),
            Record::Pop3(r) => self.write_log(&**r, now),
            Record::Imap(r) => self.write_log(&**r, now),
            Record::File(r) => self.write_log(&**r, now),
            Record::Ssl(r) => self.write_log(&**r, now),
            Record::X509(r) => self.write_log(&**r, now),
            Record::EmailData(_) | Record::EmailMeta(_) => Ok(()),
        }
    }

    fn log_index(&mut self, path: &'static str) -> usize {
        match self.logs.iter().position(|(p, _)| *p == path) {
            Some(i) => i,
            None => {
                let mut f = LogFile::new(&self.dir, path, self.format, self.limits);
                f.interval = self.rotation.interval;
                f.out.health.set_retry_interval(self.retry);
                self.logs.push((path, f));
                self.logs.len() - 1
            }
        }
    }

    /// Writes a row to its log and rotates that log if the row took it
    /// past `max_bytes`.
    fn write_row(
        &mut self,
        rec: &dyn ZeekRecord,
        now: Option<SystemTime>,
    ) -> io::Result<Truncations> {
        let idx = self.log_index(rec.path());
        let f = &mut self.logs[idx].1;
        let t = f.write_opt(rec, now)?;
        if let Some(max) = self.rotation.max_bytes {
            if f.size() > max {
                self.rotate_log(idx, now.unwrap_or_else(SystemTime::now))?;
            }
        }
        Ok(t)
    }

    fn write_log(&mut self, rec: &dyn ZeekRecord, now: Option<SystemTime>) -> io::Result<()> {
        let path = rec.path();
        let t = self.write_row(rec, now)?;
        if t.string {
            self.truncation_weird(Weird::LogStringFieldTruncated, path, now)?;
        }
        if t.container {
            self.truncation_weird(Weird::LogContainerFieldTruncated, path, now)?;
        }
        Ok(())
    }

    fn truncation_weird(
        &mut self,
        name: Weird,
        path: &str,
        now: Option<SystemTime>,
    ) -> io::Result<()> {
        let ts = self.network_time.unwrap_or(Timestamp::ZERO);
        let last = if name == Weird::LogStringFieldTruncated {
            &mut self.last_string_weird
        } else {
            &mut self.last_container_weird
        };
        if let Some(prev) = *last {
            if ts.since(prev) < WEIRD_REPEAT_SUPPRESS {
                return Ok(());
            }
        }
        *last = Some(ts);
        let mut addl = path.to_ascii_uppercase().into_bytes();
        addl.extend_from_slice(b"::LOG");
        let w = WeirdRecord {
            ts,
            uid: None,
            id: None,
            name: name.name(),
            addl: Some(addl),
            source: None,
        };
        // Truncations of this row itself are not reported (no recursion).
        self.write_row(&w, now)?;
        self.truncation_weirds += 1;
        Ok(())
    }

    /// Closes log `idx` at `now` and renames it to its rotated name, then
    /// starts the post-rotation command. Nothing happens if it is not open.
    fn rotate_log(&mut self, idx: usize, now: SystemTime) -> io::Result<()> {
        let f = &mut self.logs[idx].1;
        match f.close_at(now) {
            Some(open) => self.rotated(&self.logs[idx].1.file_path.clone(), open, now),
            None => Ok(()),
        }
    }

    /// The event stream's [`rotate_log`](Self::rotate_log). An open file
    /// without events is neither closed nor renamed.
    fn rotate_events(&mut self, now: SystemTime) -> io::Result<()> {
        let Some(f) = self.events.as_mut() else {
            return Ok(());
        };
        if f.opened.open_time.is_none() {
            return Ok(());
        }
        match f.close() {
            Some(open) => {
                let path = f.path.clone();
                self.rotated(&path, open, now)
            }
            None => Ok(()),
        }
    }

    /// A closed file at `path` (opened at `open`, closed at `close`) goes
    /// to its rotated name; then the post-rotation command starts.
    fn rotated(&mut self, path: &Path, open: SystemTime, close: SystemTime) -> io::Result<()> {
        let to = rename_rotated(path, open, close)?;
        self.post.stats.files_rotated += 1;
        // Reaping here too bounds the zombies when tick is not called.
        self.post.reap();
        if let Some(cmd) = self.rotation.post_rotate.as_deref() {
            self.post.spawn(cmd, &to);
        }
        Ok(())
    }

    /// Interval rotation on the caller's clock: every file whose rotation
    /// time has come (`now` at or past it) is closed at `now` and renamed.
    /// Also reaps finished post-rotation commands. Cheap when nothing is
    /// due (a comparison per log). Every due file is handled even if one
    /// fails; the first error is returned.
    pub fn tick(&mut self, now: SystemTime) -> io::Result<()> {
        self.post.reap();
        if self.rotation.interval.is_none() {
            return Ok(());
        }
        let mut res = Ok(());
        for idx in 0..self.logs.len() {
            if self.logs[idx].1.opened.due.is_some_and(|d| now >= d) {
                keep_first_err(&mut res, self.rotate_log(idx, now));
            }
        }
        let events_due = self
            .events
            .as_ref()
            .and_then(|e| e.opened.due)
            .is_some_and(|d| now >= d);
        if events_due {
            keep_first_err(&mut res, self.rotate_events(now));
        }
        res
    }

    /// What SIGHUP does: closes every open file (`#close` in the Zeek
    /// format) without renaming it; the next row (event) opens a new file
    /// at the same name, with a fresh header. Meant for logrotate, which
    /// has moved the files away already; a file still at the name is
    /// appended to, not truncated. Every file is closed; a write error
    /// loses that file's waiting rows and is queued as a notice (see
    /// [`take_notices`](Self::take_notices)). Works the same while files
    /// are failing: the reopened file is tried with its next row.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.reopen_at(SystemTime::now())
    }

    /// [`reopen`](Self::reopen) with `now` as the `#close` time.
    pub fn reopen_at(&mut self, now: SystemTime) -> io::Result<()> {
        self.post.reap();
        for (_, f) in &mut self.logs {
            f.close_at(now);
        }
        if let Some(e) = self.events.as_mut() {
            e.close();
        }
        Ok(())
    }

    /// Writes all buffered rows and events to their files; a failing file
    /// is tried again when its back-off has passed. An error when a file
    /// starts failing (also queued as a notice); every file is flushed.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        for (_, f) in &mut self.logs {
            keep_first_err(&mut res, f.flush());
        }
        if let Some(e) = self.events.as_mut() {
            keep_first_err(&mut res, e.flush());
        }
        res
    }

    /// What every log file and the event stream wrote and lost so far
    /// (rows waiting in a buffer are in neither).
    pub fn outputs(&self) -> Vec<OutputReport> {
        let mut v: Vec<OutputReport> = self.logs.iter().map(|(_, f)| f.report()).collect();
        if let Some(e) = &self.events {
            v.push(e.report());
        }
        v
    }

    /// Write-error notices (a file started failing, a file writes again)
    /// since the last call, for the caller to log.
    pub fn take_notices(&mut self) -> Vec<OutputNotice> {
        let mut v = Vec::new();
        for (_, f) in &mut self.logs {
            f.out.health.take_notices(&mut v);
        }
        if let Some(e) = self.events.as_mut() {
            e.out.health.take_notices(&mut v);
        }
        v
    }

    /// Whether notices are waiting (cheap: for every batch).
    pub fn has_notices(&self) -> bool {
        self.logs.iter().any(|(_, f)| f.out.health.has_notices())
            || self
                .events
                .as_ref()
                .is_some_and(|e| e.out.health.has_notices())
    }

    /// Rows written to `path` so far (or waiting in its buffer; not the
    /// ones lost to write errors).
    pub fn rows(&self, path: &str) -> u64 {
        self.logs
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, f)| f.rows())
    }

    /// What rotation did so far. Post-rotation commands are accounted
    /// when reaped, i.e. by the next [`tick`](Self::tick) (or rotation)
    /// after they end.
    pub fn rotation_stats(&self) -> RotationStats {
        self.post.stats
    }

    /// Failure messages of rotation (post-rotation commands that could not
    /// start or failed) since the last call, for the caller to log. At most
    /// 100 are kept between calls; all are counted in
    /// [`rotation_stats`](Self::rotation_stats).
    pub fn take_rotation_errors(&mut self) -> Vec<String> {
        self.post.take_errors()
    }

    /// Post-rotation commands started and not yet reaped.
    pub fn post_rotate_running(&self) -> usize {
        self.post.running()
    }

    /// Finishes every log (`#close`) and the event stream. With rotation
    /// configured the closed files are also renamed to their rotated names
    /// (close time = now) and the post-rotation command runs for them, as
    /// Zeek does at termination; then finish waits up to
    /// [`POST_ROTATE_FINISH_WAIT`] for running commands. All files are
    /// finished even if one fails: write errors lose the rows that cannot
    /// be written (counted in [`LogStats::outputs`], their notices in
    /// [`LogStats::notices`]), and a rename that fails is a rotation error
    /// ([`LogStats::rotation_errors`]); neither is returned as an error.
    pub fn finish(self) -> io::Result<LogStats> {
        self.finish_at(SystemTime::now())
    }

    /// [`finish`](Self::finish) with `now` as the close time.
    pub fn finish_at(mut self, now: SystemTime) -> io::Result<LogStats> {
        let mut stats = LogStats {
            events_dropped: self.events_dropped,
            truncation_weirds: self.truncation_weirds,
            ..LogStats::default()
        };
        let rotate = self.rotation.enabled();
        let mut rename_errors = Vec::new();
        for idx in 0..self.logs.len() {
            if rotate {
                if let Err(e) = self.rotate_log(idx, now) {
                    rename_errors.push(e.to_string());
                }
            } else {
                self.logs[idx].1.close_at(now);
            }
            let (path, ref f) = self.logs[idx];
            stats.rows.insert(path, f.rows());
        }
        if rotate {
            if let Err(e) = self.rotate_events(now) {
                rename_errors.push(e.to_string());
            }
        }
        if let Some(e) = self.events.as_mut() {
            e.close();
        }
        stats.events = self.events.as_ref().map_or(0, EventFile::events);
        if self.post.running() > 0 {
            self.post.wait_all(POST_ROTATE_FINISH_WAIT);
        }
        stats.rotation = self.post.stats;
        stats.rotation_errors = self.post.take_errors();
        stats.rotation_errors.extend(rename_errors);
        stats.outputs = self.outputs();
        stats.notices = self.take_notices();
        Ok(stats)
    }
}

fn keep_first_err(res: &mut io::Result<()>, r: io::Result<()>) {
    if res.is_ok() {
        *res = r;
    }
}
