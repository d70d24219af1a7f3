//! `mailtap ace-collect`: ACE session transcripts (from mailtap's
//! `--ace-dir` or from Zeek with ACE's scripts) turned into per-message
//! `<uid>-<n>.eml` + `<uid>-<n>.json` pairs, like `--extract-dir` writes.
//!
//! The parser follows ACE's collector (`saq/bro.py: parse_bro_smtp`) but
//! fixes its defects (docs/outputs.md lists each):
//!
//! * **IPv6 header**: the port is the digits after the *last* colon, so
//!   `2001:db8::5:40312/tcp` gives `2001:db8::5` and 40312 (ACE splits at
//!   the first colon and either turns the whole dialogue into "email 0" or
//!   reports IP `2001`, port `db8`...).
//! * **Pipelined RSET**: the envelope is reset by the RSET *command*; its
//!   reply is ignored (ACE also resets on `< RSET`, which in a pipelined
//!   session arrives after the next MAIL/RCPT and wipes them).
//! * **Lower-case verbs and addresses**: `mail from:`, `Rcpt To:` and a
//!   space after the colon are accepted (ACE matches `> MAIL FROM:<`
//!   exactly).
//! * **Null sender**: `MAIL FROM:<>` gives `"mailfrom": ""`, distinct from
//!   no MAIL at all (`null`); ACE treats it as "no sender".
//! * Also: a new MAIL or a refused DATA starts a new envelope (ACE carries
//!   refused recipients into the next message); refused recipients are
//!   listed apart with their code; the reply to end-of-data is recorded;
//!   a header-less file keeps its first message line (ACE drops it);
//!   bytes are kept exactly (ACE decodes as UTF-8 and drops what does not
//!   decode); a file that is neither a header nor a transcript goes to
//!   `review/` (ACE submits it as an empty email).
//!
//! Files are handled safely: a session file is opened with `O_NOFOLLOW`
//! and must be a regular file (checked on the open descriptor), so a link
//! planted in the ACE directory is never followed; a warning quotes at most
//! 80 bytes of an unparsable file, escaped; recipients are capped
//! ([`RCPT_MAX`]) with the cap and the number dropped in the JSON; distinct
//! session names give distinct output names ([`safe_stem`]).
//!
//! `transcript` parses one session file; this file scans the directory and
//! writes each message's `.eml`/`.json` pair.

mod transcript;

pub use transcript::*;

use crate::files::{create_new, ensure_writable_dir, named, open_regular, safe_stem, write_atomic};
use crate::json::{message_json_with, JsonOptions, Origin, RcptLimit};
use mailtap_core::mail::{Attachment, EmailHeaders, EmailMeta, MailProtocol};
use mailtap_core::{Bytes, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How `ace-collect` runs.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub ace_dir: PathBuf,
    pub extract_dir: PathBuf,
    /// Longest transcript line handled in one piece.
    pub max_line: usize,
}

impl CollectorConfig {
    pub fn new(ace_dir: PathBuf, extract_dir: PathBuf) -> Self {
        CollectorConfig {
            ace_dir,
            extract_dir,
            max_line: 16 << 20,
        }
    }
}

/// What the collector did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorCounters {
    /// Session files parsed and removed.
    pub sessions: u64,
    /// Message pairs written.
    pub messages: u64,
    /// Of those, cut short (the file ended inside the message).
    pub incomplete: u64,
    /// Session files moved to `review/`.
    pub review: u64,
    /// Markers whose session file was missing (marker removed).
    pub missing_session: u64,
    /// Sessions left in place after an I/O error (retried next scan).
    pub errors: u64,
    /// Markers whose session is a symbolic link or not a regular file:
    /// not read, left in place, marker removed.
    pub not_regular: u64,
}

/// Writes each parsed message as a pair, atomically, `.json` last.
struct PairWriter<'a> {
    dir: &'a Path,
    /// The session's name (the `uid` in the JSON).
    uid: String,
    stem: String,
    cur: Option<(u32, BufWriter<File>)>,
    /// Temporary files not yet renamed (cleaned up on failure).
    tmps: Vec<(u32, PathBuf)>,
    written: u64,
    incomplete: u64,
}

impl PairWriter<'_> {
    fn tmp(&self, n: u32) -> PathBuf {
        crate::files::tmp_path(self.dir, &format!("{}-{n}.eml", self.stem))
    }
    fn cleanup(&mut self) {
        self.cur = None;
        for (_, p) in self.tmps.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl MessageOut for PairWriter<'_> {
    fn begin(&mut self, n: u32) -> io::Result<()> {
        let p = self.tmp(n);
        let f = create_new(&p).map_err(|e| named(e, &p))?;
        self.tmps.push((n, p));
        self.cur = Some((n, BufWriter::with_capacity(64 << 10, f)));
        Ok(())
    }
    fn body(&mut self, n: u32, bytes: &[u8]) -> io::Result<()> {
        match self.cur.as_mut() {
            Some((m, w)) if *m == n => w.write_all(bytes),
            _ => Ok(()),
        }
    }
    fn end_body(&mut self, n: u32) -> io::Result<()> {
        match self.cur.take() {
            Some((m, mut w)) if m == n => w.flush(),
            other => {
                self.cur = other;
                Ok(())
            }
        }
    }
    fn message(&mut self, info: &SessionInfo, m: TranscriptMessage) -> io::Result<()> {
        let pos = self.tmps.iter().position(|(n, _)| *n == m.n);
        let Some(pos) = pos else { return Ok(()) };
        let (_, tmp) = self.tmps.remove(pos);
        let name = format!("{}-{}", self.stem, m.n);
        let eml = self.dir.join(format!("{name}.eml"));
        if let Err(e) = std::fs::rename(&tmp, &eml) {
            let _ = std::fs::remove_file(&tmp);
            return Err(named(e, &eml));
        }
        let complete = m.complete;
        let dropped = m.rcptto_dropped;
        let meta = EmailMeta {
            uid: self.uid.clone(),
            n: m.n,
            ts: Timestamp::from_secs_nanos(info.epoch, 0),
            id: None,
            protocol: Some(MailProtocol::Smtp),
            trans_depth: m.trans_depth,
            helo: m.helo,
            mailfrom: m.mailfrom,
            rcptto: m.rcptto,
            rcptto_rejected: m.rcptto_rejected,
            status_code: m.status_code,
            status_text: m.status_text,
            user: None,
            size: m.size,
            sha256: m.sha256,
            complete,
            missing_bytes: 0,
            missing_unknown: !complete,
            partial: false,
            headers: parse_headers(&m.head),
            attachments: Vec::<Attachment>::new(),
            tls: false,
            imap: None,
        };
        let json = message_json_with(
            &meta,
            &JsonOptions {
                origin: Origin::AceTranscript { orig: info.orig },
                ts_known: true,
                missing_known: complete,
            },
            RcptLimit {
                limit: RCPT_MAX as u64,
                dropped: Some(dropped),
            },
        );
        write_atomic(self.dir, &format!("{name}.json"), &json)?;
        self.written += 1;
        if !complete {
            self.incomplete += 1;
        }
        Ok(())
    }
}

/// Watches an ACE directory for `<uid>.ready` markers.
pub struct AceCollector {
    cfg: CollectorConfig,
    review: PathBuf,
    counters: CollectorCounters,
}

impl AceCollector {
    /// Checks the directories: the ACE directory must exist; the extract
    /// directory and `<ACE_DIR>/review/` are created if needed. Errors name
    /// the directory.
    pub fn new(cfg: CollectorConfig) -> io::Result<Self> {
        if !cfg.ace_dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("ACE directory {}: not a directory", cfg.ace_dir.display()),
            ));
        }
        ensure_writable_dir(&cfg.extract_dir, "--extract-dir")?;
        let review = cfg.ace_dir.join("review");
        ensure_writable_dir(&review, "review directory")?;
        Ok(AceCollector {
            cfg,
            review,
            counters: CollectorCounters::default(),
        })
    }

    pub fn counters(&self) -> &CollectorCounters {
        &self.counters
    }

    /// Processes every session whose marker is present, in name order.
    /// Returns how many markers were handled. Stops early when `stop` is
    /// set.
    pub fn scan(&mut self, stop: &AtomicBool) -> io::Result<usize> {
        let mut uids: Vec<String> = Vec::new();
        for e in std::fs::read_dir(&self.cfg.ace_dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(uid) = name.strip_suffix(".ready") {
                uids.push(uid.to_string());
            }
        }
        uids.sort();
        let mut done = 0;
        for uid in uids {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.process(&uid);
            done += 1;
        }
        Ok(done)
    }

    /// One session: parse, write its messages, remove the pair (or move the
    /// file to `review/`).
    pub fn process(&mut self, uid: &str) {
        let dir = &self.cfg.ace_dir;
        let marker = dir.join(format!("{uid}.ready"));
        let session = dir.join(uid);
        if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') {
            tracing::warn!(uid, "marker without a session file; marker removed");
            let _ = std::fs::remove_file(&marker);
            self.counters.missing_session += 1;
            return;
        }
        // Never follows a link, never blocks on a FIFO, reads only a
        // regular file (checked on the descriptor it reads).
        let file = match open_regular(&session) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(uid, "marker without a session file; marker removed");
                let _ = std::fs::remove_file(&marker);
                self.counters.missing_session += 1;
                return;
            }
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput
                    || e.raw_os_error() == Some(libc::ELOOP)
                    || e.raw_os_error() == Some(libc::ENXIO) =>
            {
                tracing::warn!(
                    uid,
                    "session {} is a symbolic link or not a regular file: not read, left in place; marker removed",
                    session.display()
                );
                let _ = std::fs::remove_file(&marker);
                self.counters.not_regular += 1;
                return;
            }
            Err(e) => {
                tracing::error!(uid, "cannot open session file {}: {e}", session.display());
                self.counters.errors += 1;
                return;
            }
        };
        let mtime = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut w = PairWriter {
            dir: &self.cfg.extract_dir,
            uid: uid.to_string(),
            stem: safe_stem(uid),
            cur: None,
            tmps: Vec::new(),
            written: 0,
            incomplete: 0,
        };
        let res = parse_transcript(
            BufReader::with_capacity(64 << 10, file),
            mtime,
            self.cfg.max_line,
            &mut w,
        );
        w.cleanup();
        self.counters.messages += w.written;
        self.counters.incomplete += w.incomplete;
        match res {
            Ok(_) => {
                tracing::info!(uid, messages = w.written, "session collected");
                let _ = std::fs::remove_file(&session);
                let _ = std::fs::remove_file(&marker);
                self.counters.sessions += 1;
            }
            Err(ParseError::Io(e)) => {
                tracing::error!(uid, "I/O error, session left for the next scan: {e}");
                self.counters.errors += 1;
            }
            Err(e) => {
                tracing::warn!(uid, "unparsable session moved to review/: {e}");
                let to = self.review.join(safe_stem(uid));
                let review_ok = std::fs::symlink_metadata(&self.review).is_ok_and(|m| m.is_dir());
                if !review_ok {
                    tracing::error!(
                        uid,
                        "{} is not a directory (a link?): session left in place",
                        self.review.display()
                    );
                    self.counters.errors += 1;
                    return;
                }
                if let Err(e) = std::fs::rename(&session, &to) {
                    tracing::error!(uid, "moving to review/ failed: {e}");
                    self.counters.errors += 1;
                    return;
                }
                let _ = std::fs::remove_file(&marker);
                self.counters.review += 1;
            }
        }
    }
}
