//! File plumbing shared by the sinks: a small LRU of open append handles,
//! safe file creation (`O_EXCL | O_NOFOLLOW` under an unpredictable
//! temporary name, then a rename), safe and injective file-name stems and a
//! writability check for output directories.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Buffer per open handle: small, as many handles may be open.
const HANDLE_BUF: usize = 32 << 10;

/// At most `cap` files open for appending; the least recently used one is
/// flushed and closed to make room and reopened (append mode) when needed.
/// A file whose flush fails when it is closed to make room is not an
/// error of the file being opened: it is kept in
/// [`take_evict_failures`](Self::take_evict_failures) for the owner.
pub(crate) struct HandleCache {
    cap: usize,
    tick: u64,
    /// Keyed by the path's bytes: `Path`'s own hash walks its components,
    /// which cost more than the write itself for a transcript's short
    /// lines (one lookup per line).
    open: HashMap<std::ffi::OsString, (BufWriter<File>, u64)>,
    /// Times a file had to be opened again after eviction.
    pub(crate) reopens: u64,
    /// Files closed to make room whose buffered bytes could not be
    /// written, with the error.
    evict_failures: Vec<(PathBuf, io::Error)>,
}

impl HandleCache {
    pub(crate) fn new(cap: usize) -> Self {
        HandleCache {
            cap: cap.max(1),
            tick: 0,
            open: HashMap::new(),
            reopens: 0,
            evict_failures: Vec::new(),
        }
    }

    /// The handle for `path`. `truncate` creates the file anew (first use
    /// of a name); otherwise it is opened for appending (created if
    /// missing).
    pub(crate) fn get(&mut self, path: &Path, truncate: bool) -> io::Result<&mut BufWriter<File>> {
        self.tick += 1;
        let tick = self.tick;
        if truncate {
            // A stale handle for the same name must not survive.
            if let Some((mut w, _)) = self.open.remove(path.as_os_str()) {
                let _ = w.flush();
            }
        }
        if !self.open.contains_key(path.as_os_str()) {
            if self.open.len() >= self.cap {
                self.evict_one();
            }
            let f = if truncate {
                create_new(path)
            } else {
                self.reopens += 1;
                open_append(path)
            }
            .map_err(|e| named(e, path))?;
            self.open.insert(
                path.as_os_str().to_owned(),
                (BufWriter::with_capacity(HANDLE_BUF, f), tick),
            );
        }
        match self.open.get_mut(path.as_os_str()) {
            Some((w, t)) => {
                *t = tick;
                Ok(w)
            }
            None => Err(io::Error::other("handle vanished")),
        }
    }

    fn evict_one(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, (_, t))| *t)
            .map(|(p, _)| p.clone());
        if let Some(p) = oldest {
            let p = PathBuf::from(p);
            if let Err(e) = self.close(&p) {
                self.evict_failures.push((p, e));
            }
        }
    }

    /// Files closed to make room whose data could not be written (the
    /// owner loses what they held), since the last call.
    pub(crate) fn take_evict_failures(&mut self) -> Vec<(PathBuf, io::Error)> {
        std::mem::take(&mut self.evict_failures)
    }

    /// Flushes and closes `path` if it is open. When the flush fails the
    /// unwritten bytes are dropped with the handle (not written later by
    /// its destructor).
    pub(crate) fn close(&mut self, path: &Path) -> io::Result<()> {
        match self.open.remove(path.as_os_str()) {
            Some((mut w, _)) => w.flush().map_err(|e| {
                let _ = w.into_parts();
                named(e, path)
            }),
            None => Ok(()),
        }
    }

    /// Closes `path` without caring about buffered data (the file is about
    /// to be deleted).
    pub(crate) fn discard(&mut self, path: &Path) {
        if let Some((w, _)) = self.open.remove(path.as_os_str()) {
            // Drop the buffered bytes: into_parts gives the file back
            // without writing them.
            let _ = w.into_parts();
        }
    }

    /// Flushes and closes everything; the first error is returned.
    pub(crate) fn close_all(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        for (p, (mut w, _)) in self.open.drain() {
            if let Err(e) = w.flush() {
                let _ = w.into_parts();
                if res.is_ok() {
                    res = Err(named(e, Path::new(&p)));
                }
            }
        }
        res
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

/// A random 64-bit value from the OS (getrandom(2), through the getrandom
/// crate), or, should that fail, from std's randomly keyed hasher. Never
/// predictable from outside.
pub fn random_u64() -> u64 {
    if let Ok(v) = getrandom::u64() {
        return v;
    }
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// `<dir>/.<name>.<16 random hex digits>.tmp`: a hidden temporary name
/// nobody can guess in advance (so nobody can plant a link there).
pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{:016x}.tmp", random_u64()))
}

/// Creates a new file at `path` for writing: `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, so an existing file, symbolic link or anything else at the
/// name is an error and never written through. The mode is 0666 less the
/// umask, as before (readers such as ACE's collector may run as another
/// user; restrict with the umask).
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens an existing regular file for appending without following a
/// symbolic link (`O_NOFOLLOW`) or blocking on a FIFO (`O_NONBLOCK`); a
/// missing file is created with [`create_new`].
pub fn open_append(path: &Path) -> io::Result<File> {
    let f = match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create_new(path),
        r => r?,
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// Opens a regular file for reading without following a symbolic link and
/// without blocking on a FIFO; anything but a regular file is an error.
/// The check is on the opened descriptor, so nothing can be swapped in
/// between.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Writes `data` under a fresh unpredictable temporary name in `dir`
/// (created with `O_EXCL | O_NOFOLLOW`), then renames it to `<dir>/<name>`:
/// a reader never sees a partial file under the final name, and a link
/// planted at either name is replaced, never followed.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(dir, name);
    let res = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(data)?;
        f.flush()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| named(e, &dir.join(name)))
}

/// `e` with `path` in its message (every I/O error names its file).
pub fn named(e: io::Error, path: &Path) -> io::Error {
    let msg = e.to_string();
    if msg.contains(&*path.to_string_lossy()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {msg}", path.display()))
}

/// Longest stem kept as is; longer ones end in a hash of the whole name.
const STEM_MAX: usize = 200;

/// A file-name stem from a uid or session name: ASCII letters, digits, `_`
/// and `-` are kept, every other byte becomes `%XX` (so a name can never
/// leave the directory or hide itself with a leading dot), and distinct
/// names always give distinct stems (`a.b`, `a_b`, `a b` and `a:b` stay
/// apart). A stem longer than 200 bytes is cut and ends in `~` and the
/// SHA-256 of the whole name (`~` is escaped elsewhere, so this cannot
/// meet an uncut stem). Zeek and mailtap uids are unchanged.
pub fn safe_stem(uid: &str) -> String {
    let mut s = String::with_capacity(uid.len().min(STEM_MAX + 8));
    for &b in uid.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.is_empty() {
        return "%".to_string();
    }
    if s.len() > STEM_MAX {
        use sha2::{Digest, Sha256};
        let h = crate::extract::hex(&Sha256::digest(uid.as_bytes()));
        let mut cut = STEM_MAX - 65;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('~');
        s.push_str(&h);
    }
    s
}

/// Creates `dir` if needed and checks that files can be created in it.
/// The error names the directory.
pub fn ensure_writable_dir(dir: &Path, what: &str) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(named)?;
    let meta = std::fs::metadata(dir).map_err(named)?;
    if !meta.is_dir() {
        return Err(named(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory",
        )));
    }
    let probe = tmp_path(dir, "mailtap-probe");
    create_new(&probe).map_err(named)?;
    std::fs::remove_file(&probe).map_err(named)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_bounds_open_files_and_reopens_in_append_mode() {
        let d = tempfile::tempdir().unwrap();
        let mut c = HandleCache::new(2);
        let p: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("f{i}"))).collect();
        for (i, p) in p.iter().enumerate() {
            c.get(p, true)
                .unwrap()
                .write_all(format!("{i}a").as_bytes())
                .unwrap();
            assert!(c.len() <= 2);
        }
        // f0 was evicted (flushed); writing again appends.
        c.get(&p[0], false).unwrap().write_all(b"b").unwrap();
        assert_eq!(c.reopens, 1);
        c.close_all().unwrap();
        assert_eq!(std::fs::read(&p[0]).unwrap(), b"0ab");
        assert_eq!(std::fs::read(&p[2]).unwrap(), b"2a");
    }

    #[test]
    fn stems_stay_in_the_directory() {
        assert_eq!(safe_stem("CyEkdLKUYIgTyYhAl"), "CyEkdLKUYIgTyYhAl");
        assert_eq!(safe_stem("../x"), "%2E%2E%2Fx");
        assert_eq!(safe_stem(".hidden"), "%2Ehidden");
        assert_eq!(safe_stem(""), "%");
    }

    #[test]
    fn distinct_names_give_distinct_stems() {
        // Issue 12: all four became `a_b`.
        let names = [
            "a.b", "a_b", "a b", "a:b", "a%2Eb", "a%b", "", "%", "é", "a~b",
        ];
        let stems: std::collections::HashSet<String> = names.iter().map(|n| safe_stem(n)).collect();
        assert_eq!(stems.len(), names.len(), "{stems:?}");
        for s in &stems {
            assert!(!s.starts_with('.') && !s.contains('/'), "{s}");
        }
        // Long names: bounded, still distinct when only the end differs.
        let a = format!("{}a", "x".repeat(300));
        let b = format!("{}b", "x".repeat(300));
        assert_ne!(safe_stem(&a), safe_stem(&b));
        assert!(safe_stem(&a).len() <= 200);
        assert_ne!(safe_stem(&"y".repeat(200)), safe_stem(&"y".repeat(201)));
    }

    #[test]
    fn planted_links_at_the_output_name_are_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("m.json")).unwrap();
        write_atomic(&out, "m.json", b"{}").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(out.join("m.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(out.join("m.json")).unwrap(), b"{}");
        // create_new refuses a link (and anything else) at the name.
        std::os::unix::fs::symlink(&outside, out.join("l")).unwrap();
        assert!(create_new(&out.join("l")).is_err());
        // open_append does not follow one either.
        assert!(open_append(&out.join("l")).is_err());
        assert!(open_regular(&out.join("l")).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        // Temporary names are not predictable: two are never equal.
        assert_ne!(tmp_path(&out, "x"), tmp_path(&out, "x"));
    }

    #[test]
    fn unwritable_dir_is_named() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = ensure_writable_dir(&file.join("sub"), "--extract-dir").unwrap_err();
        assert!(e.to_string().contains("--extract-dir"), "{e}");
        assert!(e.to_string().contains("plain"), "{e}");
    }
}
