//! File plumbing shared by the sinks: a small LRU of open append handles,
//! atomic "temporary name, then rename" writes, safe file-name stems and a
//! writability check for output directories.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Buffer per open handle: small, as many handles may be open.
const HANDLE_BUF: usize = 32 << 10;

/// At most `cap` files open for appending; the least recently used one is
/// flushed and closed to make room and reopened (append mode) when needed.
pub(crate) struct HandleCache {
    cap: usize,
    tick: u64,
    open: HashMap<PathBuf, (BufWriter<File>, u64)>,
    /// Times a file had to be opened again after eviction.
    pub(crate) reopens: u64,
}

impl HandleCache {
    pub(crate) fn new(cap: usize) -> Self {
        HandleCache {
            cap: cap.max(1),
            tick: 0,
            open: HashMap::new(),
            reopens: 0,
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
            if let Some((mut w, _)) = self.open.remove(path) {
                let _ = w.flush();
            }
        }
        if !self.open.contains_key(path) {
            if self.open.len() >= self.cap {
                self.evict_one()?;
            }
            let f = if truncate {
                File::create(path)?
            } else {
                self.reopens += 1;
                OpenOptions::new().create(true).append(true).open(path)?
            };
            self.open.insert(
                path.to_owned(),
                (BufWriter::with_capacity(HANDLE_BUF, f), tick),
            );
        }
        match self.open.get_mut(path) {
            Some((w, t)) => {
                *t = tick;
                Ok(w)
            }
            None => Err(io::Error::other("handle vanished")),
        }
    }

    fn evict_one(&mut self) -> io::Result<()> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, (_, t))| *t)
            .map(|(p, _)| p.clone());
        if let Some(p) = oldest {
            self.close(&p)?;
        }
        Ok(())
    }

    /// Flushes and closes `path` if it is open.
    pub(crate) fn close(&mut self, path: &Path) -> io::Result<()> {
        match self.open.remove(path) {
            Some((mut w, _)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Closes `path` without caring about buffered data (the file is about
    /// to be deleted).
    pub(crate) fn discard(&mut self, path: &Path) {
        if let Some((w, _)) = self.open.remove(path) {
            // Drop the buffered bytes: into_parts gives the file back
            // without writing them.
            let _ = w.into_parts();
        }
    }

    /// Flushes and closes everything; the first error is returned.
    pub(crate) fn close_all(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        for (_, (mut w, _)) in self.open.drain() {
            if let Err(e) = w.flush() {
                if res.is_ok() {
                    res = Err(e);
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

/// Writes `data` to `<dir>/.<name>.tmp`, then renames it to `<dir>/<name>`:
/// a reader never sees a partial file under the final name.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.flush()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A file-name stem from a uid: ASCII letters, digits, `_` and `-` are
/// kept, anything else becomes `_`, so a name can never leave the directory
/// or hide itself with a leading dot. Zeek and mailtap uids are unchanged.
pub fn safe_stem(uid: &str) -> String {
    let s: String = uid
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".to_string()
    } else {
        s
    }
}

/// Creates `dir` if needed and checks that files can be created in it.
/// The error names the directory.
pub fn ensure_writable_dir(dir: &Path, what: &str) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(named)?;
    let probe = dir.join(format!(".mailtap-probe-{}", std::process::id()));
    File::create(&probe).map_err(named)?;
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
        assert_eq!(safe_stem("../x"), "___x");
        assert_eq!(safe_stem(".hidden"), "_hidden");
        assert_eq!(safe_stem(""), "_");
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
