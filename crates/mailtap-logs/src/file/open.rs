//! Opening log files safely: never following a link planted at the name,
//! temporary files under random names, errors that name the file.

use super::*;

/// `e` with `path` in its message, unless it names it already.
pub(crate) fn named(e: io::Error, path: &Path) -> io::Error {
    let msg = e.to_string();
    if msg.contains(&*path.to_string_lossy()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {msg}", path.display()))
}

/// 64 random bits from the OS (getrandom(2), through the getrandom
/// crate); std's randomly keyed hasher if that fails.
pub(crate) fn random_u64() -> u64 {
    if let Ok(v) = getrandom::u64() {
        return v;
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
pub(crate) fn create_tmp_beside(path: &Path) -> io::Result<(File, PathBuf)> {
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
pub(crate) enum AtPath {
    Nothing,
    Regular,
    Link,
    /// A device, FIFO or socket.
    Special,
}

pub(crate) fn at_path(path: &Path) -> io::Result<AtPath> {
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
pub(crate) fn open_special(path: &Path) -> io::Result<File> {
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
pub(crate) fn open_output(path: &Path, append: bool, special: bool) -> io::Result<(File, u64)> {
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
