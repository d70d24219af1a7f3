//! A file's buffered sink: the rows it holds, what a failed write leaves
//! behind and how it is cut back, and a file's failure state.

use super::*;

/// Bytes buffered before a write to the file; also the bound of what a
/// failing file keeps waiting.
pub const BUFFER_BYTES: usize = 256 * 1024;

/// Where a [`Sink`]'s bytes go: the file, or in tests a writer that fails
/// on demand.
pub(crate) trait Target: Write + Send {
    /// Removes the last `n` bytes written (the start of a row a failed
    /// write left behind). An error when that is impossible (not a
    /// regular file).
    fn cut(&mut self, n: u64) -> io::Result<()>;
}

impl Target for File {
    fn cut(&mut self, n: u64) -> io::Result<()> {
        let m = self.metadata()?;
        if !m.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a regular file",
            ));
        }
        let len = m
            .len()
            .checked_sub(n)
            .ok_or_else(|| io::Error::other("the file is shorter than what was written"))?;
        self.set_len(len)?;
        // A file opened without O_APPEND writes at its offset.
        self.seek(SeekFrom::Start(len))?;
        Ok(())
    }
}

/// A buffer in front of a file, written out at [`BUFFER_BYTES`].
///
/// Rows are formatted straight into the buffer (no copy into a second
/// buffer); the end of each row is remembered, so that after a write that
/// failed midway the rows written whole are known (they leave the buffer)
/// and the partial one is cut off the file again (it stays in the buffer,
/// with the rows after it). Nothing else is lost by a failed write.
///
/// The sink counts the file's size (bytes written plus bytes buffered), so
/// size rotation needs no `stat` per row.
pub(crate) struct Sink {
    pub(crate) file: Box<dyn Target>,
    pub(crate) buf: Vec<u8>,
    /// Where the rows in `buf` end (header and `#close` lines are not
    /// rows), ascending.
    pub(crate) row_ends: Vec<u32>,
    pub(crate) written: u64,
    /// The file's name, for error messages.
    pub(crate) path: PathBuf,
}

impl Sink {
    /// Creates the file anew (replacing a regular file at the name), or
    /// with `append` opens it for appending (creating it if missing; its
    /// current length counts); see [`open_output`]. Errors name the file.
    pub(crate) fn open(path: &Path, append: bool, special: bool) -> io::Result<Sink> {
        let (file, written) = open_output(path, append, special).map_err(|e| named(e, path))?;
        Ok(Sink::with_target(Box::new(file), written, path))
    }

    pub(crate) fn with_target(file: Box<dyn Target>, written: u64, path: &Path) -> Sink {
        Sink {
            file,
            buf: Vec::with_capacity(BUFFER_BYTES + 8192),
            row_ends: Vec::new(),
            written,
            path: path.to_owned(),
        }
    }

    /// Bytes in the file once the buffer is written out.
    pub(crate) fn size(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// The row just formatted into the buffer ends here.
    pub(crate) fn row_done(&mut self) {
        self.row_ends.push(self.buf.len() as u32);
    }

    /// Rows waiting in the buffer.
    pub(crate) fn buffered_rows(&self) -> u64 {
        self.row_ends.len() as u64
    }

    /// Writes the buffer to the file. On an error the lines written whole
    /// leave the buffer, a partial one is cut off the file again (or,
    /// where the file cannot be cut, its rest stays first in the buffer to
    /// complete it later), and everything not written stays buffered.
    pub(crate) fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut done = 0;
        let mut err = None;
        while done < self.buf.len() {
            match self.file.write(&self.buf[done..]) {
                Ok(0) => {
                    err = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let Some(e) = err else {
            self.written += self.buf.len() as u64;
            self.buf.clear();
            self.row_ends.clear();
            return Ok(());
        };
        let whole = self.buf[..done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let keep_from = if done > whole && self.file.cut((done - whole) as u64).is_err() {
            done
        } else {
            whole
        };
        self.written += keep_from as u64;
        self.buf.drain(..keep_from);
        let k = self
            .row_ends
            .partition_point(|&end| end as usize <= keep_from);
        self.row_ends.drain(..k);
        for end in &mut self.row_ends {
            *end -= keep_from as u32;
        }
        Err(named(e, &self.path))
    }
}

/// What to do with a row offered to a file ([`FileOut::admit`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Buffer it; write the buffer out once full.
    Write,
    /// The file is failing and a try is due: buffer it and try now.
    Retry,
    /// The file is failing: buffer it without trying (there is room).
    Keep,
    /// The file is failing and its buffer is full: counted as lost.
    Drop,
}

/// The open file of a log or of the event stream, with its write-error
/// state (see the module documentation).
pub(crate) struct FileOut {
    pub(crate) sink: Option<Sink>,
    pub(crate) health: OutputHealth,
    /// Rows (events) taken: written, waiting in the buffer, or lost.
    pub(crate) taken: u64,
}

impl FileOut {
    pub(crate) fn new(path: &Path, sink: Option<Sink>) -> Self {
        FileOut {
            sink,
            health: OutputHealth::new(path.display().to_string()),
            taken: 0,
        }
    }

    pub(crate) fn admit(&mut self) -> Admit {
        if !self.health.is_failing() {
            return Admit::Write;
        }
        if self.health.due(Instant::now()) {
            return Admit::Retry;
        }
        match &self.sink {
            Some(s) if s.buf.len() < BUFFER_BYTES => Admit::Keep,
            _ => {
                self.taken += 1;
                self.health.lose(1);
                Admit::Drop
            }
        }
    }

    /// A write failed: the error when it starts a failure (to report
    /// once), `Ok` while the file was failing already.
    pub(crate) fn fail(&mut self, e: io::Error) -> io::Result<()> {
        if self.health.failed(Instant::now(), &e) {
            Err(e)
        } else {
            Ok(())
        }
    }

    /// Opening the file for a row failed: the row is lost.
    pub(crate) fn open_failed(&mut self, e: io::Error) -> io::Result<()> {
        let r = self.fail(e);
        self.taken += 1;
        self.health.lose(1);
        r
    }

    /// Writes the buffer out now.
    pub(crate) fn write_out(&mut self) -> io::Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        match sink.write_out() {
            Ok(()) => {
                self.health.succeeded(Instant::now());
                Ok(())
            }
            Err(e) => self.fail(e),
        }
    }

    /// The row just formatted: counted, and written out if `admit` says
    /// so or the buffer is full.
    pub(crate) fn row_done(&mut self, admit: Admit) -> io::Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        sink.row_done();
        self.taken += 1;
        match admit {
            Admit::Retry => self.write_out(),
            Admit::Write if sink.buf.len() >= BUFFER_BYTES => self.write_out(),
            _ => Ok(()),
        }
    }

    /// [`write_out`](Self::write_out) unless the file is failing and its
    /// next try is not due.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.health.due_now() {
            self.write_out()
        } else {
            Ok(())
        }
    }

    /// Writes the buffer out (a last try, whatever the back-off) and
    /// closes the file; rows that still cannot be written are lost. The
    /// error is queued as a notice when it starts a failure.
    pub(crate) fn close(&mut self) {
        let Some(mut sink) = self.sink.take() else {
            return;
        };
        match sink.write_out() {
            Ok(()) => {
                self.health.succeeded(Instant::now());
            }
            Err(e) => {
                let _ = self.fail(e);
                self.health.lose(sink.buffered_rows());
            }
        }
        let _ = sink.file.flush();
    }

    /// Rows written or waiting to be (not lost).
    pub(crate) fn rows(&self) -> u64 {
        self.taken - self.health.lost()
    }

    /// Rows in the file: neither lost nor waiting.
    pub(crate) fn written(&self) -> u64 {
        self.rows() - self.sink.as_ref().map_or(0, Sink::buffered_rows)
    }

    pub(crate) fn size(&self) -> u64 {
        self.sink.as_ref().map_or(0, Sink::size)
    }
}

impl Drop for FileOut {
    fn drop(&mut self) {
        if let Some(s) = self.sink.as_mut() {
            let _ = s.write_out();
        }
    }
}

/// Times of the file currently open for a log or the event stream.
#[derive(Clone, Copy, Default)]
pub(crate) struct Opened {
    /// When the current file got its first row (its `#open`); `None`
    /// while it has none.
    pub(crate) open_time: Option<SystemTime>,
    /// When interval rotation of the current file is due.
    pub(crate) due: Option<SystemTime>,
}

impl Opened {
    pub(crate) fn start(&mut self, now: SystemTime, interval: Option<Duration>) {
        self.open_time = Some(now);
        self.due = interval.and_then(|i| next_rotation(now, i));
    }
}
