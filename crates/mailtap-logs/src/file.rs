//! Log files, the event stream file and the set of logs of one run.

use crate::format::{format_event, format_zeek_close, format_zeek_header, json_row, zeek_row};
use crate::{LogFormat, LogLimits, Truncations};
use mailtap_core::{EventRecord, FieldDef, Interval, Record, Timestamp, WeirdRecord, ZeekRecord};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes buffered before a write to the file.
const BUFFER_BYTES: usize = 256 * 1024;

/// Weird name raised when a string field was cut by the log limits.
pub const WEIRD_STRING_TRUNCATED: &str = "log_string_field_truncated";
/// Weird name raised when a set/vector field was cut by the log limits.
pub const WEIRD_CONTAINER_TRUNCATED: &str = "log_container_field_truncated";

/// A buffer in front of a file, written out at [`BUFFER_BYTES`].
///
/// Rows are formatted straight into the buffer (no copy into a second
/// buffer). If writing the buffer fails the buffered bytes are dropped and
/// the error returned, so a persistent error (disk full) cannot make the
/// buffer grow without bound.
struct Sink {
    file: File,
    buf: Vec<u8>,
}

impl Sink {
    fn create(path: &Path) -> io::Result<Sink> {
        Ok(Sink {
            file: File::create(path)?,
            buf: Vec::with_capacity(BUFFER_BYTES + 8192),
        })
    }

    fn maybe_write_out(&mut self) -> io::Result<()> {
        if self.buf.len() >= BUFFER_BYTES {
            self.write_out()
        } else {
            Ok(())
        }
    }

    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// One log (`<dir>/<path>.log`). The file is created only when the first row
/// is written, so a run that produces no rows for a path leaves no file (as
/// Zeek does). In the Zeek format the header is written with the first row
/// (schema = the first record's [`ZeekRecord::fields`]; later rows are held
/// to that column count) and `#close` by [`LogFile::finish`]. A `LogFile`
/// dropped without `finish` writes out its buffer but no `#close`.
pub struct LogFile {
    file_path: PathBuf,
    path_name: String,
    format: LogFormat,
    limits: LogLimits,
    schema: &'static [FieldDef],
    sink: Option<Sink>,
    rows: u64,
}

impl LogFile {
    /// A log named `path_name` in `dir`; nothing is created yet.
    pub fn new(dir: &Path, path_name: &str, format: LogFormat, limits: LogLimits) -> Self {
        LogFile {
            file_path: dir.join(format!("{path_name}.log")),
            path_name: path_name.to_owned(),
            format,
            limits,
            schema: &[],
            sink: None,
            rows: 0,
        }
    }

    /// Formats and buffers one row (creating the file and writing the header
    /// first if this is the first row). Returns which limits cut something.
    pub fn write(&mut self, rec: &dyn ZeekRecord) -> io::Result<Truncations> {
        if self.sink.is_none() {
            let mut sink = Sink::create(&self.file_path)?;
            self.schema = rec.fields();
            if self.format == LogFormat::Zeek {
                format_zeek_header(
                    &self.path_name,
                    self.schema,
                    SystemTime::now(),
                    &mut sink.buf,
                );
            }
            self.sink = Some(sink);
        }
        let Some(sink) = self.sink.as_mut() else {
            return Ok(Truncations::default());
        };
        let t = match self.format {
            LogFormat::Zeek => zeek_row(rec, self.schema.len(), &self.limits, &mut sink.buf),
            LogFormat::Json => json_row(rec, self.schema, &self.limits, &mut sink.buf),
        };
        self.rows += 1;
        sink.maybe_write_out()?;
        Ok(t)
    }

    /// Writes buffered rows to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.sink.as_mut() {
            Some(s) => s.write_out(),
            None => Ok(()),
        }
    }

    /// Writes `#close` (Zeek format, only if the file exists) and the
    /// buffer. Does not fsync.
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        let Some(mut sink) = self.sink.take() else {
            return Ok(());
        };
        if self.format == LogFormat::Zeek {
            format_zeek_close(SystemTime::now(), &mut sink.buf);
        }
        sink.write_out()?;
        sink.file.flush()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The log's `#path` name.
    pub fn path_name(&self) -> &str {
        &self.path_name
    }

    /// Where the file is (or will be).
    pub fn file_path(&self) -> &Path {
        &self.file_path
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.write_out();
        }
    }
}

/// The JSON event stream (one [`format_event`] line per event). Unlike a
/// log, the file is created when the `EventFile` is opened, so users see it
/// (possibly empty) as soon as the run starts.
pub struct EventFile {
    sink: Option<Sink>,
    events: u64,
}

impl EventFile {
    /// Creates (truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(EventFile {
            sink: Some(Sink::create(path)?),
            events: 0,
        })
    }

    /// Formats and buffers one event.
    pub fn write(&mut self, ev: &EventRecord) -> io::Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        format_event(ev, &mut sink.buf);
        self.events += 1;
        sink.maybe_write_out()
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.sink.as_mut() {
            Some(s) => s.write_out(),
            None => Ok(()),
        }
    }

    /// Writes the buffer out and closes the file.
    pub fn finish(mut self) -> io::Result<()> {
        match self.sink.take() {
            Some(mut s) => s.write_out(),
            None => Ok(()),
        }
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }
}

impl Drop for EventFile {
    fn drop(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.write_out();
        }
    }
}

/// What a [`LogSet`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Rows per log path (including the truncation weirds in `weird`).
    pub rows: BTreeMap<&'static str, u64>,
    /// Events written to the event stream.
    pub events: u64,
    /// Events dropped because no event stream was configured.
    pub events_dropped: u64,
    /// `log_*_field_truncated` weirds written to weird.log.
    pub truncation_weirds: u64,
}

/// Zeek suppresses a repeat of a connection-less weird of the same name for
/// 10 minutes (`Weird::weird_ignore`, `&create_expire=10min`).
const WEIRD_REPEAT_SUPPRESS: Interval = Interval(600 * 1_000_000_000);

/// All logs of one run: routes each [`Record`] to its [`LogFile`] (created
/// on first use, by path), events to the [`EventFile`] if there is one, and
/// turns log-limit truncations into weirds in weird.log.
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
}

impl LogSet {
    /// Logs go to `dir` (which must exist); the event stream, if `events` is
    /// given, is created at that path now.
    pub fn new(
        dir: &Path,
        format: LogFormat,
        limits: LogLimits,
        events: Option<&Path>,
    ) -> io::Result<Self> {
        let events = match events {
            Some(p) => Some(EventFile::create(p)?),
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
        })
    }

    /// Writes one record where it belongs.
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        let ts = match rec {
            Record::Conn(r) => r.ts,
            Record::Smtp(r) => r.ts,
            Record::Weird(r) => r.ts,
            Record::Event(e) => e.ts,
            Record::Pop3(r) => r.ts,
            Record::File(r) => r.ts,
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
                    Some(f) => f.write(ev)?,
                    None => self.events_dropped += 1,
                }
                Ok(())
            }
            Record::Conn(r) => self.write_log(&**r),
            Record::Smtp(r) => self.write_log(&**r),
            Record::Weird(r) => self.write_log(&**r),
            Record::Pop3(r) => self.write_log(&**r),
            Record::File(r) => self.write_log(&**r),
            Record::EmailData(_) | Record::EmailMeta(_) => Ok(()),
        }
    }

    fn log_file(&mut self, path: &'static str) -> &mut LogFile {
        let idx = match self.logs.iter().position(|(p, _)| *p == path) {
            Some(i) => i,
            None => {
                self.logs.push((
                    path,
                    LogFile::new(&self.dir, path, self.format, self.limits),
                ));
                self.logs.len() - 1
            }
        };
        &mut self.logs[idx].1
    }

    fn write_log(&mut self, rec: &dyn ZeekRecord) -> io::Result<()> {
        let path = rec.path();
        let t = self.log_file(path).write(rec)?;
        if t.string {
            self.truncation_weird(WEIRD_STRING_TRUNCATED, path)?;
        }
        if t.container {
            self.truncation_weird(WEIRD_CONTAINER_TRUNCATED, path)?;
        }
        Ok(())
    }

    fn truncation_weird(&mut self, name: &'static str, path: &str) -> io::Result<()> {
        let now = self.network_time.unwrap_or(Timestamp::ZERO);
        let last = if name == WEIRD_STRING_TRUNCATED {
            &mut self.last_string_weird
        } else {
            &mut self.last_container_weird
        };
        if let Some(prev) = *last {
            if now.since(prev) < WEIRD_REPEAT_SUPPRESS {
                return Ok(());
            }
        }
        *last = Some(now);
        let mut addl = path.to_ascii_uppercase().into_bytes();
        addl.extend_from_slice(b"::LOG");
        let w = WeirdRecord {
            ts: now,
            uid: None,
            id: None,
            name,
            addl: Some(addl),
            source: None,
        };
        // Truncations of this row itself are not reported (no recursion).
        self.log_file(w.path()).write(&w)?;
        self.truncation_weirds += 1;
        Ok(())
    }

    /// Writes all buffered rows and events to their files.
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

    /// Rows written to `path` so far.
    pub fn rows(&self, path: &str) -> u64 {
        self.logs
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, f)| f.rows())
    }

    /// Finishes every log (`#close`) and the event stream. All files are
    /// finished even if one fails; the first error is returned.
    pub fn finish(self) -> io::Result<LogStats> {
        let mut stats = LogStats {
            events: self.events.as_ref().map_or(0, EventFile::events),
            events_dropped: self.events_dropped,
            truncation_weirds: self.truncation_weirds,
            ..LogStats::default()
        };
        let mut res = Ok(());
        for (path, f) in self.logs {
            stats.rows.insert(path, f.rows());
            keep_first_err(&mut res, f.finish());
        }
        if let Some(e) = self.events {
            keep_first_err(&mut res, e.finish());
        }
        res.map(|()| stats)
    }
}

fn keep_first_err(res: &mut io::Result<()>, r: io::Result<()>) {
    if res.is_ok() {
        *res = r;
    }
}
