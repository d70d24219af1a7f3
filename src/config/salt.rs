//! Uid salt: `general.uid_salt`, else one random salt kept per
//! installation in the state directory.

use super::Config;
use std::path::PathBuf;

/// Where the installation's random uid salt is kept: `$MAILTAP_STATE_DIR`,
/// else systemd's `$STATE_DIRECTORY` (`StateDirectory=`), else
/// `$XDG_STATE_HOME/mailtap`, else `~/.local/state/mailtap`, else
/// `/var/lib/mailtap`.
fn state_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("MAILTAP_STATE_DIR") {
        return d;
    }
    if let Some(d) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by colons: the first.
        let s = d.to_string_lossy().into_owned();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return d.join("mailtap");
    }
    match var("HOME") {
        Some(h) => h.join(".local/state/mailtap"),
        None => PathBuf::from("/var/lib/mailtap"),
    }
}

/// 32 random hex digits.
fn random_hex() -> String {
    format!(
        "{:016x}{:016x}",
        mailtap_extract::random_u64(),
        mailtap_extract::random_u64()
    )
}

/// The installation's uid salt in `dir/uid_salt`, made (random) on first
/// use: written under a temporary name and linked into place, so
/// concurrent first runs agree and nobody sees a half-written salt; read
/// without following a link.
fn installation_salt(dir: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let path = dir.join("uid_salt");
    let read = || -> std::io::Result<String> {
        let mut f = mailtap_extract::open_regular(&path)?;
        let mut s = String::new();
        Read::take(&mut f, 4096).read_to_string(&mut s)?;
        let s = s.trim().to_string();
        if s.len() < 16 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "shorter than 16 characters",
            ));
        }
        Ok(s)
    };
    match read() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => return r,
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".uid_salt.{:016x}.tmp",
        mailtap_extract::random_u64()
    ));
    let mut f = mailtap_extract::create_new(&tmp)?;
    let r = {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
    }
    .and_then(|()| {
        f.write_all(format!("{}\n", random_hex()).as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| match std::fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                r => r,
            })
    });
    let _ = std::fs::remove_file(&tmp);
    r?;
    read()
}

/// `general.uid_salt` when set, else the installation's random salt; if
/// that cannot be kept, a random salt for this run (uids then differ
/// between runs), with a warning.
pub fn uid_salt(cfg: &Config) -> String {
    if !cfg.general.uid_salt.is_empty() {
        return cfg.general.uid_salt.clone();
    }
    let d = state_dir();
    let r = installation_salt(&d).map_err(|e| format!("{}: {e}", d.join("uid_salt").display()));
    match r {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mailtap: warning: cannot keep the installation's uid salt ({e}); using a random one for this run (set general.uid_salt for stable uids)"
            );
            random_hex()
        }
    }
}
