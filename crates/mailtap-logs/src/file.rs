//! Log files, the event stream file and the set of logs of one run.

use crate::format::{format_event, format_zeek_close, format_zeek_header, json_row, zeek_row};
use crate::rotate::{
    next_rotation, rename_noreplace, rename_rotated, PostRotate, RotationConfig, RotationStats,
};
use crate::{LogFormat, LogLimits, Truncations};
use mailtap_core::{EventRecord, FieldDef, Interval, Record, Timestamp, WeirdRecord, ZeekRecord};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
///
/// The sink counts the file's size (bytes written plus bytes buffered), so
/// size rotation needs no `stat` per row.
struct Sink {
    file: File,
    buf: Vec<u8>,
    written: u64,
    /// The file's name, for error messages.
    path: PathBuf,
}

/// `e` with `path` in its message, unless it names it already.
fn named(e: io::Error, path: &Path) -> io::Error {
    let msg = e.to_string();
    if msg.contains(&*path.to_string_lossy()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {msg}", path.display()))
}

/// 64 random bits from the OS (getrandom(2)); std's randomly keyed hasher
/// if that fails.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid writable buffer of 8 bytes.
    if unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) } == 8 {
        return u64::from_ne_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A new file next to `path` under a hidden name nobody can guess
/// (`.<name>.<16 hex digits>.tmp`), created `O_CREAT | O_EXCL |
/// O_NOFOLLOW`: nothing planted in advance can be written through.
fn create_tmp_beside(path: &Path) -> io::Result<(File, PathBuf)> {
    let name = path
        .file_name()
        .map_or_else(|| "log".into(), |n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new("."));
    for _ in 0..8 {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", random_u64()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(named(e, &tmp)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: no free temporary name", dir.display()),
    ))
}

/// What is at `path` now, without following a link.
enum AtPath {
    Nothing,
    Regular,
    Link,
    /// A device, FIFO or socket.
    Special,
}

fn at_path(path: &Path) -> io::Result<AtPath> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(AtPath::Link),
        Ok(m) if m.is_file() => Ok(AtPath::Regular),
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        )),
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => Ok(AtPath::Special),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AtPath::Nothing),
        Err(e) => Err(e),
    }
}

/// Opens an existing device or FIFO the operator named (`--events
/// /dev/stdout`'s target, `/dev/full`) for writing, without creating,
/// truncating or following anything.
fn open_special(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an output file safely. A new file (or a new generation replacing
/// a regular file, `append == false`) is created under an unpredictable
/// temporary name with `O_EXCL | O_NOFOLLOW` and renamed to `path`, so a
/// symbolic link planted at `path` is replaced, never followed, and no
/// file outside the directory can be touched. `append` opens a regular
/// file already at `path` with `O_APPEND | O_NOFOLLOW` (checked on the
/// descriptor). A symbolic link at `path` is replaced by a new log and
/// refused otherwise; a device or FIFO is written to only when `special`
/// (the event stream may go to one).
fn open_output(path: &Path, append: bool, special: bool) -> io::Result<(File, u64)> {
    for _ in 0..4 {
        match at_path(path)? {
            // A new log generation replaces a link (rename does not
            // follow it); the event stream's name is the operator's, and
            // an appended file must be the one at the name: refused.
            AtPath::Link if !append && !special => {}
            AtPath::Link => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symbolic link (not followed)",
                ))
            }
            AtPath::Special if special => return Ok((open_special(path)?, 0)),
            AtPath::Special => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file",
                ))
            }
            AtPath::Regular if append => {
                let f = match OpenOptions::new()
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(path)
                {
                    // Replaced or removed meanwhile: look again.
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ELOOP) =>
                    {
                        continue
                    }
                    r => r?,
                };
                let m = f.metadata()?;
                if !m.is_file() {
                    continue;
                }
                return Ok((f, m.len()));
            }
            AtPath::Nothing | AtPath::Regular => {}
        }
        let (f, tmp) = create_tmp_beside(path)?;
        let r = if append {
            // Never replace a file that appeared meanwhile.
            rename_noreplace(&tmp, path)
        } else {
            std::fs::rename(&tmp, path)
        };
        match r {
            Ok(()) => return Ok((f, 0)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if e.kind() == io::ErrorKind::AlreadyExists {
                    continue;
                }
                return Err(e);
            }
        }
    }
    Err(io::Error::other(
        "the file keeps changing while it is opened",
    ))
}

impl Sink {
    /// Creates the file anew (replacing a regular file at the name), or
    /// with `append` opens it for appending (creating it if missing; its
    /// current length counts); see [`open_output`]. Errors name the file.
    fn open(path: &Path, append: bool, special: bool) -> io::Result<Sink> {
        let (file, written) = open_output(path, append, special).map_err(|e| named(e, path))?;
        Ok(Sink {
            file,
            buf: Vec::with_capacity(BUFFER_BYTES + 8192),
            written,
            path: path.to_owned(),
        })
    }

    /// Bytes in the file once the buffer is written out.
    fn size(&self) -> u64 {
        self.written + self.buf.len() as u64
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
        if r.is_ok() {
            self.written += self.buf.len() as u64;
        }
        self.buf.clear();
        r.map_err(|e| named(e, &self.path))
    }
}

/// Times of the file currently open for a log or the event stream.
#[derive(Clone, Copy, Default)]
struct Opened {
    /// When the current file got its first row (its `#open`); `None`
    /// while it has none.
    open_time: Option<SystemTime>,
    /// When interval rotation of the current file is due.
    due: Option<SystemTime>,
}

impl Opened {
    fn start(&mut self, now: SystemTime, interval: Option<Duration>) {
        self.open_time = Some(now);
        self.due = interval.and_then(|i| next_rotation(now, i));
    }
}

/// One log (`<dir>/<path>.log`). The file is created only when the first row
/// is written, so a run that produces no rows for a path leaves no file (as
/// Zeek does). In the Zeek format the header is written with the first row
/// (schema = the first record's [`ZeekRecord::fields`]; later rows are held
/// to that column count) and `#close` by [`LogFile::finish`]. A `LogFile`
/// dropped without `finish` writes out its buffer but no `#close`.
///
/// Within a [`LogSet`] a log file can be closed and opened again
/// (rotation, reopen): the first file of a run is created (truncated),
/// every later one is opened for appending, so a file that is still at the
/// name is never truncated.
pub struct LogFile {
    file_path: PathBuf,
    path_name: String,
    format: LogFormat,
    limits: LogLimits,
    schema: &'static [FieldDef],
    sink: Option<Sink>,
    rows: u64,
    /// A file was opened before: open the next one for appending.
    append: bool,
    opened: Opened,
    interval: Option<Duration>,
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
            append: false,
            opened: Opened::default(),
            interval: None,
        }
    }

    /// Formats and buffers one row (creating the file and writing the header
    /// first if this is the first row). Returns which limits cut something.
    pub fn write(&mut self, rec: &dyn ZeekRecord) -> io::Result<Truncations> {
        self.write_opt(rec, None)
    }

    /// [`write`](Self::write); a file opened for this row is opened at
    /// `now` (`SystemTime::now()` if `None`, read only then).
    fn write_opt(
        &mut self,
        rec: &dyn ZeekRecord,
        now: Option<SystemTime>,
    ) -> io::Result<Truncations> {
        if self.sink.is_none() {
            let mut sink = Sink::open(&self.file_path, self.append, false)?;
            self.append = true;
            let now = now.unwrap_or_else(SystemTime::now);
            self.opened.start(now, self.interval);
            self.schema = rec.fields();
            if self.format == LogFormat::Zeek {
                format_zeek_header(&self.path_name, self.schema, now, &mut sink.buf);
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
        self.close_at(SystemTime::now()).map(|_| ())
    }

    /// Closes the current file if one is open: `#close` at `now` (Zeek
    /// format), buffer written out, file closed. Returns its open time.
    /// If writing fails the file is closed all the same (without a
    /// complete `#close`) and the error returned.
    fn close_at(&mut self, now: SystemTime) -> io::Result<Option<SystemTime>> {
        let Some(mut sink) = self.sink.take() else {
            return Ok(None);
        };
        let opened = std::mem::take(&mut self.opened);
        if self.format == LogFormat::Zeek {
            format_zeek_close(now, &mut sink.buf);
        }
        sink.write_out()?;
        sink.file.flush()?;
        Ok(opened.open_time)
    }

    /// Bytes in the current file (0 if none is open).
    fn size(&self) -> u64 {
        self.sink.as_ref().map_or(0, Sink::size)
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
/// (possibly empty) as soon as the run starts. Within a [`LogSet`] that
/// rotates, files after the first are opened (for appending) with their
/// first event, like logs.
pub struct EventFile {
    path: PathBuf,
    sink: Option<Sink>,
    events: u64,
    opened: Opened,
    interval: Option<Duration>,
}

impl EventFile {
    /// Creates (truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(EventFile {
            path: path.to_owned(),
            sink: Some(Sink::open(path, false, true)?),
            events: 0,
            opened: Opened::default(),
            interval: None,
        })
    }

    /// Formats and buffers one event.
    pub fn write(&mut self, ev: &EventRecord) -> io::Result<()> {
        self.write_opt(ev, None)
    }

    fn write_opt(&mut self, ev: &EventRecord, now: Option<SystemTime>) -> io::Result<()> {
        if self.sink.is_none() {
            self.sink = Some(Sink::open(&self.path, true, true)?);
        }
        if self.opened.open_time.is_none() {
            self.opened
                .start(now.unwrap_or_else(SystemTime::now), self.interval);
        }
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        format_event(ev, &mut sink.buf);
        self.events += 1;
        sink.maybe_write_out()
    }

    /// Closes the current file if one is open; returns the time of its
    /// first event (`None` if it has none).
    fn close(&mut self) -> io::Result<Option<SystemTime>> {
        let Some(mut sink) = self.sink.take() else {
            return Ok(None);
        };
        let opened = std::mem::take(&mut self.opened);
        sink.write_out()?;
        sink.file.flush()?;
        Ok(opened.open_time)
    }

    fn size(&self) -> u64 {
        self.sink.as_ref().map_or(0, Sink::size)
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
    /// What rotation did, including the renames at finish and the
    /// post-rotation commands that ended before finish returned.
    pub rotation: RotationStats,
    /// Rotation failure messages not yet taken with
    /// [`LogSet::take_rotation_errors`] (for the caller to log).
    pub rotation_errors: Vec<String>,
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
        })
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
            self.truncation_weird(WEIRD_STRING_TRUNCATED, path, now)?;
        }
        if t.container {
            self.truncation_weird(WEIRD_CONTAINER_TRUNCATED, path, now)?;
        }
        Ok(())
    }

    fn truncation_weird(
        &mut self,
        name: &'static str,
        path: &str,
        now: Option<SystemTime>,
    ) -> io::Result<()> {
        let ts = self.network_time.unwrap_or(Timestamp::ZERO);
        let last = if name == WEIRD_STRING_TRUNCATED {
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
            name,
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
        match f.close_at(now)? {
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
        match f.close()? {
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
    /// appended to, not truncated. Every file is closed even if one fails;
    /// the first error is returned.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.reopen_at(SystemTime::now())
    }

    /// [`reopen`](Self::reopen) with `now` as the `#close` time.
    pub fn reopen_at(&mut self, now: SystemTime) -> io::Result<()> {
        self.post.reap();
        let mut res = Ok(());
        for (_, f) in &mut self.logs {
            keep_first_err(&mut res, f.close_at(now).map(|_| ()));
        }
        if let Some(e) = self.events.as_mut() {
            keep_first_err(&mut res, e.close().map(|_| ()));
        }
        res
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
    /// finished even if one fails; the first error is returned.
    pub fn finish(self) -> io::Result<LogStats> {
        self.finish_at(SystemTime::now())
    }

    /// [`finish`](Self::finish) with `now` as the close time.
    pub fn finish_at(mut self, now: SystemTime) -> io::Result<LogStats> {
        let mut stats = LogStats {
            events: self.events.as_ref().map_or(0, EventFile::events),
            events_dropped: self.events_dropped,
            truncation_weirds: self.truncation_weirds,
            ..LogStats::default()
        };
        let rotate = self.rotation.enabled();
        let mut res = Ok(());
        for idx in 0..self.logs.len() {
            let (path, ref f) = self.logs[idx];
            stats.rows.insert(path, f.rows());
            if rotate {
                keep_first_err(&mut res, self.rotate_log(idx, now));
            } else {
                keep_first_err(&mut res, self.logs[idx].1.close_at(now).map(|_| ()));
            }
        }
        if rotate {
            keep_first_err(&mut res, self.rotate_events(now));
        }
        if let Some(e) = self.events.as_mut() {
            keep_first_err(&mut res, e.close().map(|_| ()));
        }
        if self.post.running() > 0 {
            self.post.wait_all(POST_ROTATE_FINISH_WAIT);
        }
        stats.rotation = self.post.stats;
        stats.rotation_errors = self.post.take_errors();
        res.map(|()| stats)
    }
}

fn keep_first_err(res: &mut io::Result<()>, r: io::Result<()>) {
    if res.is_ok() {
        *res = r;
    }
}
