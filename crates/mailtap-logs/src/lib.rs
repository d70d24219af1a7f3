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

mod escape;
mod file;
mod format;
mod values;

#[cfg(test)]
mod tests;

pub use file::{
    EventFile, LogFile, LogSet, LogStats, WEIRD_CONTAINER_TRUNCATED, WEIRD_STRING_TRUNCATED,
};
pub use format::{
    format_event, format_json_row, format_zeek_close, format_zeek_header, format_zeek_row,
};

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
