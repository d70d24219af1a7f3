//! One log file (header, rows, `#close`, rotation) and the event stream
//! file.

use super::*;

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
///
/// Write errors: see the module documentation.
pub struct LogFile {
    pub(super) file_path: PathBuf,
    pub(super) path_name: String,
    pub(super) format: LogFormat,
    pub(super) limits: LogLimits,
    pub(super) schema: &'static [FieldDef],
    pub(super) out: FileOut,
    /// A file was opened before: open the next one for appending.
    pub(super) append: bool,
    pub(super) opened: Opened,
    pub(super) interval: Option<Duration>,
}

impl LogFile {
    /// A log named `path_name` in `dir`; nothing is created yet.
    pub fn new(dir: &Path, path_name: &str, format: LogFormat, limits: LogLimits) -> Self {
        let file_path = dir.join(format!("{path_name}.log"));
        LogFile {
            out: FileOut::new(&file_path, None),
            file_path,
            path_name: path_name.to_owned(),
            format,
            limits,
            schema: &[],
            append: false,
            opened: Opened::default(),
            interval: None,
        }
    }

    /// Formats and buffers one row (creating the file and writing the header
    /// first if this is the first row). Returns which limits cut something.
    /// A write error is returned when it starts a failure of this file
    /// (the row is kept or counted as lost, see the module documentation);
    /// while the file fails rows are taken without an error.
    pub fn write(&mut self, rec: &dyn ZeekRecord) -> io::Result<Truncations> {
        self.write_opt(rec, None)
    }

    /// [`write`](Self::write); a file opened for this row is opened at
    /// `now` (`SystemTime::now()` if `None`, read only then).
    pub(super) fn write_opt(
        &mut self,
        rec: &dyn ZeekRecord,
        now: Option<SystemTime>,
    ) -> io::Result<Truncations> {
        let admit = self.out.admit();
        if admit == Admit::Drop {
            return Ok(Truncations::default());
        }
        if self.out.sink.is_none() {
            let mut sink = match Sink::open(&self.file_path, self.append, false) {
                Ok(s) => s,
                Err(e) => return self.out.open_failed(e).map(|()| Truncations::default()),
            };
            self.append = true;
            let now = now.unwrap_or_else(SystemTime::now);
            self.opened.start(now, self.interval);
            self.schema = rec.fields();
            if self.format == LogFormat::Zeek {
                format_zeek_header(&self.path_name, self.schema, now, &mut sink.buf);
            }
            self.out.sink = Some(sink);
        }
        let Some(sink) = self.out.sink.as_mut() else {
            return Ok(Truncations::default());
        };
        // Every row of a file has its header's columns: a record type's
        // optional columns are on or off for a whole run.
        debug_assert!(
            rec.fields() == self.schema,
            "{}.log: a row's columns differ from its header's",
            self.path_name
        );
        let t = match self.format {
            LogFormat::Zeek => zeek_row(rec, self.schema.len(), &self.limits, &mut sink.buf),
            LogFormat::Json => json_row(rec, self.schema, &self.limits, &mut sink.buf),
        };
        self.out.row_done(admit)?;
        Ok(t)
    }

    /// Writes buffered rows to the file (unless it is failing and its next
    /// try is not due). An error when this starts a failure.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes `#close` (Zeek format, only if the file exists) and the
    /// buffer. Does not fsync. The error of the last try when rows were
    /// lost to write errors.
    pub fn finish(mut self) -> io::Result<()> {
        self.close_at(SystemTime::now());
        match self.out.health.lost() {
            0 => Ok(()),
            n => Err(io::Error::other(format!(
                "{}: {n} rows lost to write errors",
                self.file_path.display()
            ))),
        }
    }

    /// Closes the current file if one is open: `#close` at `now` (Zeek
    /// format), buffer written out, file closed. Returns its open time.
    /// If writing fails the file is closed all the same (without a
    /// complete `#close`), the rows not written are lost and the failure
    /// is queued as a notice.
    pub(super) fn close_at(&mut self, now: SystemTime) -> Option<SystemTime> {
        let sink = self.out.sink.as_mut()?;
        let opened = std::mem::take(&mut self.opened);
        if self.format == LogFormat::Zeek {
            format_zeek_close(now, &mut sink.buf);
        }
        self.out.close();
        opened.open_time
    }

    /// Bytes in the current file (0 if none is open).
    pub(super) fn size(&self) -> u64 {
        self.out.size()
    }

    /// Rows written so far, or waiting in the buffer (rows lost to write
    /// errors are not counted; at the end every row is written or lost).
    pub fn rows(&self) -> u64 {
        self.out.rows()
    }

    /// Rows lost to write errors.
    pub fn rows_lost(&self) -> u64 {
        self.out.health.lost()
    }

    /// What this log wrote and lost (`<path>.log`).
    pub fn report(&self) -> OutputReport {
        self.out
            .health
            .report(&format!("{}.log", self.path_name), self.out.written())
    }

    /// The log's `#path` name.
    pub fn path_name(&self) -> &str {
        &self.path_name
    }

    /// Where the file is (or will be).
    pub fn file_path(&self) -> &Path {
        &self.file_path
    }

    /// Writes go to `target` from now on, as if it were the file just
    /// opened for rows like `first` (tests: a writer that fails on
    /// demand; no header).
    #[cfg(test)]
    pub(crate) fn set_target(&mut self, target: Box<dyn Target>, first: &dyn ZeekRecord) {
        self.schema = first.fields();
        self.out.sink = Some(Sink::with_target(target, 0, &self.file_path));
        self.append = true;
    }

    #[cfg(test)]
    pub(crate) fn health_mut(&mut self) -> &mut OutputHealth {
        &mut self.out.health
    }
}

/// The JSON event stream (one [`format_event`] line per event). Unlike a
/// log, the file is created when the `EventFile` is opened, so users see it
/// (possibly empty) as soon as the run starts. Within a [`LogSet`] that
/// rotates, files after the first are opened (for appending) with their
/// first event, like logs. Write errors: as a log's (see the module
/// documentation).
pub struct EventFile {
    pub(super) path: PathBuf,
    pub(super) out: FileOut,
    pub(super) opened: Opened,
    pub(super) interval: Option<Duration>,
}

impl EventFile {
    /// Creates (truncates) the file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(EventFile {
            path: path.to_owned(),
            out: FileOut::new(path, Some(Sink::open(path, false, true)?)),
            opened: Opened::default(),
            interval: None,
        })
    }

    /// Formats and buffers one event.
    pub fn write(&mut self, ev: &EventRecord) -> io::Result<()> {
        self.write_opt(ev, None)
    }

    pub(super) fn write_opt(
        &mut self,
        ev: &EventRecord,
        now: Option<SystemTime>,
    ) -> io::Result<()> {
        let admit = self.out.admit();
        if admit == Admit::Drop {
            return Ok(());
        }
        if self.out.sink.is_none() {
            match Sink::open(&self.path, true, true) {
                Ok(s) => self.out.sink = Some(s),
                Err(e) => return self.out.open_failed(e),
            }
        }
        if self.opened.open_time.is_none() {
            self.opened
                .start(now.unwrap_or_else(SystemTime::now), self.interval);
        }
        let Some(sink) = self.out.sink.as_mut() else {
            return Ok(());
        };
        format_event(ev, &mut sink.buf);
        self.out.row_done(admit)
    }

    /// Closes the current file if one is open; returns the time of its
    /// first event (`None` if it has none). Write errors as
    /// [`LogFile`]'s.
    pub(super) fn close(&mut self) -> Option<SystemTime> {
        self.out.sink.as_ref()?;
        let opened = std::mem::take(&mut self.opened);
        self.out.close();
        opened.open_time
    }

    pub(super) fn size(&self) -> u64 {
        self.out.size()
    }

    /// Writes buffered events to the file (unless it is failing and its
    /// next try is not due).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes the buffer out and closes the file; an error when events
    /// were lost to write errors.
    pub fn finish(mut self) -> io::Result<()> {
        self.close();
        match self.out.health.lost() {
            0 => Ok(()),
            n => Err(io::Error::other(format!(
                "{}: {n} events lost to write errors",
                self.path.display()
            ))),
        }
    }

    /// Events written so far, or waiting in the buffer (not the ones lost
    /// to write errors).
    pub fn events(&self) -> u64 {
        self.out.rows()
    }

    /// What the event stream wrote and lost (`events`).
    pub fn report(&self) -> OutputReport {
        self.out.health.report("events", self.out.written())
    }
}
