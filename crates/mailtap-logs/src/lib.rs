//! Zeek-compatible log output for mailtap: Zeek ASCII (TSV) logs, Zeek JSON
//! logs and the JSON event stream, plus the files they go to.
//!
//! Formatting appends to a caller-owned, reused `Vec<u8>`; nothing is
//! allocated per row. The ASCII format follows Zeek's ASCII writer (header
//! lines, `-` for unset, `(empty)` for empty strings/containers, `\xNN`
//! escaping with UTF-8 passthrough); both formats apply Zeek's log writer
//! limits ([`LogLimits`]) and report cuts as [`Truncations`], which
//! [`LogSet`] turns into `log_string_field_truncated` /
//! `log_container_field_truncated` weirds.
//!
//! `#open`/`#close` carry local wall-clock time (`localtime_r`, honouring
//! `TZ`), falling back to UTC where local time is unavailable.
//!
//! # Rotation
//!
//! [`LogSet::with_rotation`] rotates the logs and the event stream as its
//! [`RotationConfig`] says ([`LogSet::new`] does not rotate):
//!
//! - **Names** are Zeek's: `<dir>/<path>.<open>_<close>.log`, e.g.
//!   `smtp.2026-11-23-13-00-05_2026-11-23-14-00-00.log`; the event stream
//!   `events.jsonl` becomes `events.<open>_<close>.jsonl` beside it. Times
//!   are `%Y-%m-%d-%H-%M-%S` (Zeek's `Log::default_rotation_date_format`)
//!   in **local time**, like `#open`/`#close` (Zeek uses local time; with
//!   `TZ` unset or UTC, as on the sensors, that is UTC). `<open>` is the
//!   file's `#open` time (its first row: files are opened lazily), `<close>`
//!   its `#close` time (when it was rotated). If the name exists, `-1`,
//!   `-2`... go before the extension; nothing is ever replaced (atomic
//!   `renameat2(RENAME_NOREPLACE)` on Linux).
//! - **Rotating** a file: `#close` (Zeek format), buffer written out, file
//!   closed, then renamed, then the post-rotation command started. The
//!   next row opens a new file at the plain name with a fresh header.
//! - **By interval** ([`LogSet::tick`], on the caller's wall clock, also
//!   when no rows come): at multiples of the interval counted from local
//!   midnight (Zeek's `calc_next_rotate` with base time 0:00; hourly = on
//!   the hour), computed when a file is opened. A file is rotated by the
//!   first `tick(now)` at or after that time and closed at `now`. Rows
//!   written between the boundary and that tick still go to the old file.
//!   An interval without rows leaves no file.
//! - **By size**: after a row that takes a file past `max_bytes` (header
//!   included), the file is rotated; a row is never split, so a file can
//!   exceed `max_bytes` by up to one row (plus `#close`). Sizes are
//!   counted, not `stat`ed.
//! - **Post-rotation command**: `sh -c '<post_rotate>' mailtap-post-rotate
//!   <rotated path>`, i.e. the rotated file is `$1`; stdin is /dev/null,
//!   stdout goes to mailtap's stderr. It runs in the background; finished
//!   commands are reaped by [`LogSet::tick`] (and at each rotation), and
//!   counted in [`RotationStats`]: started, and failed (could not start,
//!   non-zero exit, signal). Failure messages are kept for the caller to
//!   log ([`LogSet::take_rotation_errors`]; this crate does not log).
//! - **Reopen** ([`LogSet::reopen`], what SIGHUP does for logrotate):
//!   every open file is closed (`#close`) without renaming; the next row
//!   (event) opens a new file at the same name. A file still at the name
//!   is appended to (new header block), never truncated; so is every file
//!   opened after the first one of a run.
//! - **Finish**: every file is closed (`#close`). With rotation configured
//!   (interval or size) the final files are then renamed with their
//!   open/close times and the command run for them, as Zeek does at
//!   termination; finish waits up to [`POST_ROTATE_FINISH_WAIT`] for running
//!   commands so the stats are complete. Without rotation the files keep
//!   their plain names.
//! - The event stream file is created at start even without events (as
//!   before). A stream file with no events is not rotated (neither by
//!   interval nor at finish); after a rotation or reopen the next one is
//!   opened with the next event.

mod escape;
mod file;
mod format;
mod rotate;
mod values;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rotate_tests;

#[cfg(test)]
mod disk_full_tests;

pub use file::{
    EventFile, LogFile, LogSet, LogStats, BUFFER_BYTES, POST_ROTATE_FINISH_WAIT, RETRY_INTERVAL,
};
pub use format::{
    format_event, format_json_row, format_zeek_close, format_zeek_header, format_zeek_row,
};
pub use rotate::{RotationConfig, RotationStats, MIN_ROTATE_MAX_BYTES};

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Zeek ASCII (TSV with `#` header lines).
    Zeek,
    /// Zeek JSON (`LogAscii::use_json=T`): one object per line, no header.
    Json,
}

/// Zeek's log writer limits (`Log::default_max_*`). 0 disables a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes per string value, also per set/vector element (4096).
    pub max_string_bytes: usize,
    /// Elements per set/vector field (100).
    pub max_container_elements: usize,
    /// Set/vector elements per record (500); once used up, further
    /// containers are written empty.
    pub max_total_container_elements: usize,
    /// String bytes per record (256000); once used up, further strings are
    /// written empty.
    pub max_total_string_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_string_bytes: 4096,
            max_container_elements: 100,
            max_total_container_elements: 500,
            max_total_string_bytes: 256_000,
        }
    }
}

impl LogLimits {
    /// No limits at all.
    pub const UNLIMITED: LogLimits = LogLimits {
        max_string_bytes: 0,
        max_container_elements: 0,
        max_total_container_elements: 0,
        max_total_string_bytes: 0,
    };
}

/// Which log writer limits cut something in one row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Truncations {
    /// A string was cut (weird `log_string_field_truncated`).
    pub string: bool,
    /// A set/vector was cut (weird `log_container_field_truncated`).
    pub container: bool,
}

impl Truncations {
    /// True if anything was cut.
    pub fn any(self) -> bool {
        self.string || self.container
    }
}
