//! Log rotation: configuration, Zeek-style rotated names, the
//! no-overwrite rename and the post-rotation command.

use crate::values::{local_start_of_day, write_log_time};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the logs and the event stream rotate (all off by default).
///
/// See the crate documentation for the rules (names, times, when files
/// are renamed and the command is run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationConfig {
    /// Rotate at multiples of this interval, aligned to local midnight as
    /// Zeek does (`log.rotate_interval`, at least 1 s).
    pub interval: Option<Duration>,
    /// Rotate a file after the row that takes it past this many bytes
    /// (`log.rotate_max_bytes`, at least 4096).
    pub max_bytes: Option<u64>,
    /// Shell command run (`sh -c`, in the background) after each rotation,
    /// with the rotated file's path as `$1` (`log.post_rotate`).
    pub post_rotate: Option<String>,
}

/// Smallest `log.rotate_max_bytes` accepted.
pub const MIN_ROTATE_MAX_BYTES: u64 = 4096;

impl RotationConfig {
    /// True if files are rotated at all (by interval or by size).
    pub fn enabled(&self) -> bool {
        self.interval.is_some() || self.max_bytes.is_some()
    }

    /// Checks the values; the error names the configuration key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(i) = self.interval {
            if i < Duration::from_secs(1) {
                return Err(format!(
                    "log.rotate_interval must be at least 1 s (got {i:?})"
                ));
            }
        }
        if let Some(b) = self.max_bytes {
            if b < MIN_ROTATE_MAX_BYTES {
                return Err(format!(
                    "log.rotate_max_bytes must be at least {MIN_ROTATE_MAX_BYTES} (got {b})"
                ));
            }
        }
        if let Some(c) = &self.post_rotate {
            if c.trim().is_empty() {
                return Err("log.post_rotate must not be empty".to_owned());
            }
            if !self.enabled() {
                return Err(
                    "log.post_rotate needs log.rotate_interval or log.rotate_max_bytes \
                     (without rotation it would never run)"
                        .to_owned(),
                );
            }
        }
        Ok(())
    }
}

/// What rotation did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotationStats {
    /// Files closed and renamed to their rotated name (by interval, by
    /// size, or at [`finish`](crate::LogSet::finish)).
    pub files_rotated: u64,
    /// Post-rotation commands started (processes spawned).
    pub post_rotate_started: u64,
    /// Post-rotation commands that failed: could not be spawned, exited
    /// non-zero, were killed by a signal or could not be waited for.
    pub post_rotate_failed: u64,
}

/// The next rotation time after `open` for `interval`, as Zeek's
/// `calc_next_rotate` with base time 0:00: the next multiple of the
/// interval counted from the local midnight of `open`'s day.
pub(crate) fn next_rotation(open: SystemTime, interval: Duration) -> Option<SystemTime> {
    let iv = interval.as_nanos();
    if iv == 0 {
        return None;
    }
    let Ok(since_epoch) = open.duration_since(UNIX_EPOCH) else {
        return open.checked_add(interval);
    };
    let secs = i64::try_from(since_epoch.as_secs()).ok()?;
    let start = u64::try_from(local_start_of_day(secs).clamp(0, secs)).ok()?;
    let start_ns = u128::from(start) * 1_000_000_000;
    let into_day = since_epoch.as_nanos() - start_ns;
    let next_ns = start_ns + iv * (into_day / iv + 1);
    let secs = u64::try_from(next_ns / 1_000_000_000).ok()?;
    // The remainder is below 1e9 and fits.
    let nanos = (next_ns % 1_000_000_000) as u32;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// `<dir>/<stem>.<open>_<close>[-<n>][.<ext>]` for the file at `file`
/// (`smtp.log` -> `smtp.2026-11-23-13-00-00_2026-11-23-14-00-00.log`).
pub(crate) fn rotated_path(file: &Path, open: SystemTime, close: SystemTime, n: u32) -> PathBuf {
    let mut stamp = Vec::with_capacity(48);
    stamp.push(b'.');
    write_log_time(&mut stamp, open);
    stamp.push(b'_');
    write_log_time(&mut stamp, close);
    if n > 0 {
        stamp.push(b'-');
        stamp.extend_from_slice(n.to_string().as_bytes());
    }
    // Only ASCII digits, '-', '_' and '.' were written.
    let stamp = String::from_utf8_lossy(&stamp);
    let mut name = OsString::from(file.file_stem().unwrap_or(file.as_os_str()));
    name.push(&*stamp);
    if let Some(ext) = file.extension() {
        name.push(".");
        name.push(ext);
    }
    file.with_file_name(name)
}

/// Renames the closed file `file` to its rotated name, adding `-1`, `-2`...
/// while that name exists; never replaces a file. Returns the new path.
pub(crate) fn rename_rotated(
    file: &Path,
    open: SystemTime,
    close: SystemTime,
) -> io::Result<PathBuf> {
    for n in 0..10_000 {
        let to = rotated_path(file, open, close, n);
        match rename_noreplace(file, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("rotating {} to {}: {e}", file.display(), to.display()),
                ))
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("rotating {}: every rotated name is taken", file.display()),
    ))
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`:
/// atomic `renameat2(RENAME_NOREPLACE)` on Linux, check-then-rename where
/// the file system does not support it.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        use rustix::io::Errno;
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Not supported by the file system (or the kernel): below.
            Err(e) if e == Errno::INVAL || e == Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(from, to)
}

/// Failure messages kept until taken; further ones are counted, not kept.
const MAX_PENDING_ERRORS: usize = 100;

/// Running post-rotation commands and what rotation did.
#[derive(Default)]
pub(crate) struct PostRotate {
    children: Vec<(Child, PathBuf)>,
    pub(crate) stats: RotationStats,
    errors: Vec<String>,
}

impl PostRotate {
    pub(crate) fn error(&mut self, msg: String) {
        if self.errors.len() < MAX_PENDING_ERRORS {
            self.errors.push(msg);
        }
    }

    pub(crate) fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// Starts `sh -c <script> mailtap-post-rotate <path>` in the
    /// background: stdin from /dev/null, stdout to our stderr, stderr
    /// inherited.
    pub(crate) fn spawn(&mut self, script: &str, path: &Path) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("mailtap-post-rotate")
            .arg(path)
            .stdin(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            if let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() {
                cmd.stdout(Stdio::from(fd));
            }
        }
        match cmd.spawn() {
            Ok(child) => {
                self.stats.post_rotate_started += 1;
                self.children.push((child, path.to_owned()));
            }
            Err(e) => {
                self.stats.post_rotate_failed += 1;
                self.error(format!(
                    "log.post_rotate for {}: could not start sh: {e}",
                    path.display()
                ));
            }
        }
    }

    /// Reaps finished commands (no zombies), counting failures. Cheap when
    /// none is running.
    pub(crate) fn reap(&mut self) {
        let mut i = 0;
        while i < self.children.len() {
            let status = self.children[i].0.try_wait();
            let failure = match status {
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Ok(Some(s)) if s.success() => None,
                Ok(Some(s)) => Some(s.to_string()),
                Err(e) => Some(format!("waiting for it failed: {e}")),
            };
            let (_, path) = self.children.swap_remove(i);
            if let Some(why) = failure {
                self.stats.post_rotate_failed += 1;
                self.error(format!("log.post_rotate for {}: {why}", path.display()));
            }
        }
    }

    /// Waits up to `limit` for the running commands; those still running
    /// then are left to run on (not killed, not counted as failed).
    pub(crate) fn wait_all(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            self.reap();
            if self.children.is_empty() || Instant::now() >= end {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Commands still running.
    pub(crate) fn running(&self) -> usize {
        self.children.len()
    }
}
