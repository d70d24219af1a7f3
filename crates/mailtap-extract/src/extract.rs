//! `--extract-dir`: one `<uid>-<n>.eml` + `<uid>-<n>.json` pair per message.
//!
//! Chunks are appended to a hidden temporary file with an unpredictable
//! name (`.<uid>-<n>.eml.<random>.tmp`, created `O_EXCL | O_NOFOLLOW`); the
//! message's [`EmailMeta`] renames it to `<uid>-<n>.eml` and then writes
//! the JSON under a temporary name and renames it, so the `.json` appears
//! last and a reader that waits for it always finds a whole message.
//!
//! Write errors (a full disk): a message is complete on disk only if every
//! byte was written. When a write for a message fails, its temporary file
//! is removed, its later chunks are ignored and it is counted in
//! [`ExtractCounters::messages_lost`] when it ends; no `.eml`/`.json`
//! appears for it (a `.json` that cannot be written takes its `.eml` away
//! again). Messages that begin while the sink is failing are lost without
//! a try until the back-off ([`mailtap_core::output::RETRY_INTERVAL`])
//! has passed; the next message written whole ends the failure. The first
//! failure and the resumption are queued as notices
//! ([`ExtractSink::take_notices`]); other messages in progress go on.

use crate::files::{create_new, ensure_writable_dir, named, safe_stem, write_atomic, HandleCache};
use crate::json::{message_json, JsonOptions, Origin};
use mailtap_core::mail::{EmailChunk, EmailMeta};
use mailtap_core::output::{OutputHealth, OutputNotice, OutputReport};
use mailtap_core::Record;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where and how to extract.
#[derive(Clone, Debug)]
pub struct ExtractConfig {
    pub dir: PathBuf,
    /// Temporary message files kept open at once (the rest are reopened
    /// in append mode when their next chunk arrives).
    pub max_open_files: usize,
}

impl ExtractConfig {
    pub fn new(dir: PathBuf) -> Self {
        ExtractConfig {
            dir,
            max_open_files: 64,
        }
    }
}

/// What the extraction sink did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractCounters {
    /// Message pairs written.
    pub messages: u64,
    /// Of those, messages marked incomplete (gap, end of capture, or no
    /// metadata by shutdown).
    pub incomplete: u64,
    /// Messages finished at shutdown because their metadata never came.
    pub finished_without_meta: u64,
    /// Messages whose bytes that reached the sink differ from the size
    /// the analyzer reported (bytes dropped between shard and sink, e.g.
    /// by live overload): written `complete: false` with the shortfall in
    /// `missing_bytes`.
    pub size_mismatch: u64,
    /// Message bytes the analyzers extracted that never reached the sink.
    pub bytes_lost: u64,
    /// Message bytes written.
    pub bytes: u64,
    /// Temporary files reopened after the open-file limit closed them.
    pub reopens: u64,
    /// Messages not extracted because writing them failed (a full disk);
    /// nothing of them is left in the directory.
    pub messages_lost: u64,
}

struct Pending {
    bytes: u64,
    /// The message's temporary file (random name).
    tmp: PathBuf,
    /// A write failed (or the sink was failing when it began): its
    /// chunks are ignored and it is counted lost when it ends.
    lost: bool,
}

/// The collector-side extraction sink.
pub struct ExtractSink {
    dir: PathBuf,
    handles: HandleCache,
    pending: HashMap<(String, u32), Pending>,
    counters: ExtractCounters,
    health: OutputHealth,
}

fn stem(uid: &str, n: u32) -> String {
    format!("{}-{n}", safe_stem(uid))
}

impl ExtractSink {
    /// Creates the directory if needed; fails, naming it, when files cannot
    /// be created there.
    pub fn new(cfg: &ExtractConfig) -> io::Result<Self> {
        ensure_writable_dir(&cfg.dir, "--extract-dir")?;
        Ok(ExtractSink {
            dir: cfg.dir.clone(),
            handles: HandleCache::new(cfg.max_open_files),
            pending: HashMap::new(),
            counters: ExtractCounters::default(),
            health: OutputHealth::new(cfg.dir.display().to_string()),
        })
    }

    /// The back-off between tries while failing (tests shorten it).
    pub fn set_retry_interval(&mut self, d: std::time::Duration) {
        self.health.set_retry_interval(d);
    }

    /// A write failed: the error when it starts a failure (to report
    /// once), `Ok` while the sink was failing already.
    fn fail(&mut self, e: io::Error) -> io::Result<()> {
        if self.health.failed(Instant::now(), &e) {
            Err(e)
        } else {
            Ok(())
        }
    }

    /// One more message lost (counted when it is given up, not when it
    /// ends, so that a resumption reports the messages lost meanwhile).
    fn count_lost(&mut self) {
        self.counters.messages_lost += 1;
        self.health.lose(1);
    }

    /// Drops a message whose write failed: its temporary file goes, its
    /// later chunks are ignored.
    fn lose(&mut self, key: &(String, u32)) {
        if let Some(p) = self.pending.get_mut(key) {
            if !p.lost {
                p.lost = true;
                self.counters.bytes -= p.bytes;
                p.bytes = 0;
                self.handles.discard(&p.tmp);
                let _ = std::fs::remove_file(&p.tmp);
                self.count_lost();
            }
        }
    }

    /// Messages whose files were closed to make room and could not be
    /// written are lost; the first such error is returned when it starts a
    /// failure.
    fn evict_failures(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        for (path, e) in self.handles.take_evict_failures() {
            let key = self
                .pending
                .iter()
                .find(|(_, p)| p.tmp == path)
                .map(|(k, _)| k.clone());
            if let Err(e) = self.fail(e) {
                res = Err(e);
            }
            if let Some(k) = key {
                self.lose(&k);
            }
        }
        res
    }

    fn tmp_path(&self, stem: &str) -> PathBuf {
        crate::files::tmp_path(&self.dir, &format!("{stem}.eml"))
    }

    /// Takes the records this sink cares about; ignores the rest.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::EmailData(c) => self.chunk(c),
            Record::EmailMeta(m) => self.meta(m),
            _ => Ok(()),
        }
    }

    /// Appends bytes of a message. An error only when a write failure
    /// starts (the message is lost, see the module documentation).
    pub fn chunk(&mut self, c: &EmailChunk) -> io::Result<()> {
        let key = (c.uid.clone(), c.n);
        let first = !self.pending.contains_key(&key);
        if first {
            let tmp = self.tmp_path(&stem(&c.uid, c.n));
            // While failing, a message begun before the next try is due
            // is lost at once (no file is tried for it).
            let lost = !self.health.due_now();
            if lost {
                self.count_lost();
            }
            self.pending.insert(
                key.clone(),
                Pending {
                    bytes: 0,
                    tmp,
                    lost,
                },
            );
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return Ok(());
        };
        if p.lost {
            return Ok(());
        }
        let path = p.tmp.clone();
        let res = self
            .handles
            .get(&path, first)
            .and_then(|w| w.write_all(&c.data).map_err(|e| named(e, &path)));
        let evicted = self.evict_failures();
        if let Err(e) = res {
            let r = self.fail(e);
            self.lose(&key);
            return evicted.and(r);
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.bytes += c.data.len() as u64;
        }
        self.counters.bytes += c.data.len() as u64;
        evicted
    }

    /// Ends a message: `.eml` under its final name, then the `.json`.
    ///
    /// The bytes that arrived are checked against the size the analyzer
    /// reported: when they differ (chunks lost on the way), the JSON
    /// describes the `.eml` as written (its size and SHA-256) and says
    /// `complete: false` with the shortfall added to `missing_bytes`.
    pub fn meta(&mut self, m: &EmailMeta) -> io::Result<()> {
        let stem = stem(&m.uid, m.n);
        let (written, tmp) = match self.pending.remove(&(m.uid.clone(), m.n)) {
            // Counted when it was given up.
            Some(p) if p.lost => return Ok(()),
            Some(p) => {
                if let Err(e) = self.handles.close(&p.tmp) {
                    let _ = std::fs::remove_file(&p.tmp);
                    return self.lost_at_end(p.bytes, e);
                }
                (p.bytes, p.tmp)
            }
            None => {
                // An empty message, or one whose every chunk was lost.
                if !self.health.due_now() {
                    self.count_lost();
                    return Ok(());
                }
                let tmp = self.tmp_path(&stem);
                if let Err(e) = create_new(&tmp) {
                    return self.lost_at_end(0, named(e, &tmp));
                }
                (0, tmp)
            }
        };
        let mut fixed;
        let m = if written != m.size {
            fixed = m.clone();
            let (size, sha256) = match hash_file(&tmp) {
                Ok(h) => h,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return self.lost_at_end(written, named(e, &tmp));
                }
            };
            self.counters.size_mismatch += 1;
            self.counters.bytes_lost += m.size.saturating_sub(size);
            fixed.missing_bytes += m.size.saturating_sub(size);
            fixed.size = size;
            fixed.sha256 = sha256;
            fixed.complete = false;
            tracing::debug!(
                uid = %m.uid,
                n = m.n,
                expected = m.size,
                written = size,
                "message bytes lost before the extraction sink"
            );
            &fixed
        } else {
            m
        };
        let json = message_json(
            m,
            &JsonOptions {
                origin: Origin::Capture,
                ts_known: true,
                missing_known: !m.missing_unknown,
            },
        );
        if let Err(e) = self.finish_pair(&stem, &tmp, &json) {
            return self.lost_at_end(written, e);
        }
        if !m.complete {
            self.counters.incomplete += 1;
        }
        Ok(())
    }

    /// A message whose end could not be written (its files are gone):
    /// lost, its `bytes` no longer counted as written.
    fn lost_at_end(&mut self, bytes: u64, e: io::Error) -> io::Result<()> {
        self.counters.bytes -= bytes;
        let r = self.fail(e);
        self.count_lost();
        r
    }

    /// The `.eml` under its final name, then the `.json`; when either
    /// fails nothing of the message stays (the `.json` is what tells
    /// readers it is whole, so an `.eml` without it goes).
    fn finish_pair(&mut self, stem: &str, tmp: &Path, json: &[u8]) -> io::Result<()> {
        let eml = self.dir.join(format!("{stem}.eml"));
        if let Err(e) = std::fs::rename(tmp, &eml) {
            let _ = std::fs::remove_file(tmp);
            return Err(named(e, &eml));
        }
        if let Err(e) = write_atomic(&self.dir, &format!("{stem}.json"), json) {
            let _ = std::fs::remove_file(&eml);
            return Err(e);
        }
        self.counters.messages += 1;
        self.health.succeeded(Instant::now());
        Ok(())
    }

    /// Write-error notices since the last call, for the caller to log.
    pub fn take_notices(&mut self) -> Vec<OutputNotice> {
        let mut v = Vec::new();
        self.health.take_notices(&mut v);
        v
    }

    /// Whether notices are waiting (cheap).
    pub fn has_notices(&self) -> bool {
        self.health.has_notices()
    }

    /// Messages written and lost so far (`extract`).
    pub fn report(&self) -> OutputReport {
        self.health.report("extract", self.counters.messages)
    }

    /// Messages whose bytes differed from their size, and the bytes lost
    /// (cheap: for metrics after every batch).
    pub fn lost(&self) -> (u64, u64) {
        (self.counters.size_mismatch, self.counters.bytes_lost)
    }

    /// Messages in progress.
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    pub fn counters(&self) -> ExtractCounters {
        ExtractCounters {
            reopens: self.handles.reopens,
            ..self.counters.clone()
        }
    }

    /// Finishes every message whose metadata never came as incomplete,
    /// with what arrived (no temporary file is left behind), and returns
    /// the counters. All messages are attempted; a message that cannot be
    /// written is lost (counted), and the error that started a failure is
    /// returned after.
    pub fn finish(mut self) -> (ExtractCounters, io::Result<()>) {
        let res = self.finish_all();
        (self.counters(), res)
    }

    /// [`finish`](Self::finish), then the report of what was written and
    /// lost, and the write-error notices not taken yet (for the caller to
    /// log).
    pub fn finish_reporting(mut self) -> (ExtractCounters, OutputReport, Vec<OutputNotice>) {
        let _ = self.finish_all();
        (self.counters(), self.report(), self.take_notices())
    }

    fn finish_all(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        let mut keys: Vec<(String, u32)> = self.pending.keys().cloned().collect();
        keys.sort();
        for (uid, n) in keys {
            let Some(p) = self.pending.remove(&(uid.clone(), n)) else {
                continue;
            };
            if p.lost {
                continue;
            }
            let stem = stem(&uid, n);
            let tmp = p.tmp;
            let mut r = self.finish_orphan(&uid, n, &stem, &tmp);
            if let Err(e) = r {
                self.handles.discard(&tmp);
                let _ = std::fs::remove_file(&tmp);
                r = self.lost_at_end(p.bytes, e);
            }
            if let (Ok(()), Err(e)) = (&res, r) {
                res = Err(e);
            }
        }
        if let Err(e) = self.handles.close_all() {
            if res.is_ok() {
                res = Err(e);
            }
        }
        res
    }

    fn finish_orphan(&mut self, uid: &str, n: u32, stem: &str, tmp: &Path) -> io::Result<()> {
        self.handles.close(tmp)?;
        let (size, sha256) = hash_file(tmp).map_err(|e| named(e, tmp))?;
        let m = EmailMeta {
            uid: uid.to_string(),
            n,
            size,
            sha256,
            complete: false,
            ..EmailMeta::default()
        };
        let json = message_json(
            &m,
            &JsonOptions {
                origin: Origin::Capture,
                ts_known: false,
                missing_known: false,
            },
        );
        self.finish_pair(stem, tmp, &json)?;
        self.counters.incomplete += 1;
        self.counters.finished_without_meta += 1;
        Ok(())
    }
}

/// Size and hex SHA-256 of a file.
pub(crate) fn hash_file(p: &Path) -> io::Result<(u64, String)> {
    let mut f = crate::files::open_regular(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        size += k as u64;
        h.update(&buf[..k]);
    }
    Ok((size, hex(&h.finalize())))
}

pub(crate) fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_core::mail::{Attachment, EmailHeaders, MailProtocol};
    use mailtap_core::output::OutputNotice;
    use mailtap_core::{ConnId, Timestamp};

    fn chunk(uid: &str, n: u32, d: &[u8]) -> Record {
        Record::EmailData(Box::new(EmailChunk {
            uid: uid.into(),
            n,
            data: d.to_vec(),
        }))
    }

    pub(crate) fn meta(uid: &str, n: u32, body: &[u8]) -> EmailMeta {
        EmailMeta {
            uid: uid.into(),
            n,
            ts: Timestamp::from_secs_micros(1_700_000_000, 123_456),
            id: Some(ConnId {
                orig_h: "198.51.100.7".parse().unwrap(),
                orig_p: 51514,
                resp_h: "2001:db8::25".parse().unwrap(),
                resp_p: 25,
            }),
            protocol: Some(MailProtocol::Smtp),
            trans_depth: 1,
            helo: Some(b"client.example.test".to_vec()),
            mailfrom: Some(b"alice@example.test".to_vec()),
            rcptto: vec![b"bob@example.test".to_vec()],
            rcptto_rejected: vec![(b"nobody@example.test".to_vec(), 550)],
            status_code: Some(250),
            status_text: Some(b"2.0.0 queued".to_vec()),
            user: None,
            size: body.len() as u64,
            sha256: hex(&Sha256::digest(body)),
            complete: true,
            missing_bytes: 0,
            missing_unknown: false,
            partial: false,
            headers: EmailHeaders {
                subject: Some("héllo".into()),
                from: Some("Alice <alice@example.test>".into()),
                ..EmailHeaders::default()
            },
            attachments: vec![Attachment {
                filename: Some("a.pdf".into()),
                mime_type: Some("application/pdf".into()),
                size: 3,
                sha256: "00".repeat(32),
            }],
            tls: false,
            imap: None,
        }
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn visible_json(d: &Path) -> Vec<String> {
        names(d)
            .into_iter()
            .filter(|n| !n.starts_with('.') && n.ends_with(".json"))
            .collect()
    }

    #[test]
    fn pair_appears_only_at_meta_json_last() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ExtractSink::new(&ExtractConfig::new(d.path().into())).unwrap();
        let body = b"Subject: x\r\n\r\nhi\r\n";
        s.write(&chunk("Cabc", 1, &body[..7])).unwrap();
        s.write(&chunk("Cabc", 1, &body[7..])).unwrap();
        // Only a hidden temporary name so far, with a random part: a
        // `*.json` or `*.eml` reader sees nothing.
        let n = names(d.path());
        assert_eq!(n.len(), 1);
        assert!(
            n[0].starts_with(".Cabc-1.eml.")
                && n[0].ends_with(".tmp")
                && n[0].len() == ".Cabc-1.eml.".len() + 20,
            "{n:?}"
        );
        assert!(visible_json(d.path()).is_empty());
        s.write(&Record::EmailMeta(Box::new(meta("Cabc", 1, body))))
            .unwrap();
        assert_eq!(names(d.path()), vec!["Cabc-1.eml", "Cabc-1.json"]);
        assert_eq!(std::fs::read(d.path().join("Cabc-1.eml")).unwrap(), body);
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!(c.messages, 1);
        assert_eq!(c.bytes, body.len() as u64);
    }

    #[test]
    fn planted_links_at_predictable_names_are_not_followed() {
        // Issue 12: a link planted at `.<uid>-1.eml.tmp` made the sink
        // overwrite a file outside the directory.
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        for name in [
            ".Cabc-1.eml.tmp",
            "Cabc-1.eml",
            "Cabc-1.json",
            ".Cabc-1.json.tmp",
        ] {
            std::os::unix::fs::symlink(&victim, out.join(name)).unwrap();
        }
        let mut s = ExtractSink::new(&ExtractConfig::new(out.clone())).unwrap();
        let body = b"Subject: x\r\n\r\nhi\r\n";
        s.write(&chunk("Cabc", 1, body)).unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Cabc", 1, body))))
            .unwrap();
        let (_, r) = s.finish();
        r.unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(out.join("Cabc-1.eml")).unwrap(), body);
        for name in ["Cabc-1.eml", "Cabc-1.json"] {
            let m = std::fs::symlink_metadata(out.join(name)).unwrap();
            assert!(m.file_type().is_file(), "{name}");
        }
    }

    #[test]
    fn json_schema_has_the_issue_fields_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ExtractSink::new(&ExtractConfig::new(d.path().into())).unwrap();
        let body = b"x\r\n";
        s.write(&chunk("Cabc", 2, body)).unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Cabc", 2, body))))
            .unwrap();
        let text = std::fs::read_to_string(d.path().join("Cabc-2.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "uid",
            "ts",
            "id",
            "protocol",
            "n",
            "trans_depth",
            "helo",
            "mailfrom",
            "rcptto",
            "rcptto_rejected",
            "rcptto_limit",
            "rcptto_dropped",
            "status_code",
            "status_text",
            "user",
            "size",
            "sha256",
            "complete",
            "missing_bytes",
            "partial",
            "headers",
            "attachments",
            "tls",
            "line_endings",
            "source",
        ];
        // serde_json without preserve_order sorts keys: compare as sets,
        // and check the written order in the text.
        let mut sorted = keys.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
        let pos = |k: &str| text.find(&format!("\n  \"{k}\":")).unwrap();
        assert!(pos("uid") < pos("ts") && pos("ts") < pos("id") && pos("tls") < pos("source"));
        assert_eq!(v["ts"], serde_json::json!(1700000000.123456));
        assert_eq!(
            v["id"],
            serde_json::json!({"orig_h":"198.51.100.7","orig_p":51514,"resp_h":"2001:db8::25","resp_p":25})
        );
        assert_eq!(v["protocol"], "smtp");
        assert_eq!(v["rcptto_limit"], 1000);
        assert_eq!(v["rcptto_dropped"], 0);
        assert_eq!(
            v["rcptto_rejected"],
            serde_json::json!([{"address":"nobody@example.test","code":550}])
        );
        assert_eq!(v["headers"]["subject"], "héllo");
        assert_eq!(v["headers"]["date"], serde_json::Value::Null);
        assert_eq!(v["attachments"][0]["filename"], "a.pdf");
        assert_eq!(v["complete"], true);
        assert_eq!(v["missing_bytes"], 0);
        assert_eq!(v["line_endings"], "original");
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn interleaved_messages_beyond_the_handle_limit() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = ExtractConfig::new(d.path().into());
        cfg.max_open_files = 2;
        let mut s = ExtractSink::new(&cfg).unwrap();
        for round in 0..3u8 {
            for m in 0..5u32 {
                s.write(&chunk("Cx", m, &[b'a' + round])).unwrap();
            }
        }
        for m in 0..5u32 {
            s.write(&Record::EmailMeta(Box::new(meta("Cx", m, b"abc"))))
                .unwrap();
        }
        for m in 0..5u32 {
            assert_eq!(
                std::fs::read(d.path().join(format!("Cx-{m}.eml"))).unwrap(),
                b"abc"
            );
        }
        let (c, r) = s.finish();
        r.unwrap();
        assert!(c.reopens > 0);
        assert_eq!(c.messages, 5);
    }

    #[test]
    fn shutdown_finishes_orphans_as_incomplete() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ExtractSink::new(&ExtractConfig::new(d.path().into())).unwrap();
        s.write(&chunk("Corphan", 1, b"half a mess")).unwrap();
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!(c.finished_without_meta, 1);
        assert_eq!(names(d.path()), vec!["Corphan-1.eml", "Corphan-1.json"]);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("Corphan-1.json")).unwrap())
                .unwrap();
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], 11);
        assert_eq!(v["missing_bytes"], serde_json::Value::Null);
        assert_eq!(v["sha256"], hex(&Sha256::digest(b"half a mess")));
    }

    #[test]
    fn lost_chunks_make_the_message_incomplete_with_the_shortfall() {
        let d = tempfile::tempdir().unwrap();
        let body = b"Subject: lost\r\n\r\n0123456789";
        // The analyzer sent the message in two chunks; the first (10
        // bytes) was lost on the way and only the second arrives.
        let mut s2 = ExtractSink::new(&ExtractConfig::new(d.path().join("b"))).unwrap();
        s2.write(&chunk("Clost", 1, &body[10..])).unwrap();
        let mut m = meta("Clost", 1, body);
        m.missing_bytes = 3; // a gap the analyzer saw itself
        s2.write(&Record::EmailMeta(Box::new(m))).unwrap();
        let eml = std::fs::read(d.path().join("b/Clost-1.eml")).unwrap();
        assert_eq!(eml, &body[10..]);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("b/Clost-1.json")).unwrap())
                .unwrap();
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], eml.len());
        assert_eq!(v["missing_bytes"], 3 + 10);
        assert_eq!(v["sha256"], hex(&Sha256::digest(&eml)));
        // Every chunk lost: an empty .eml, the whole size missing.
        s2.write(&Record::EmailMeta(Box::new(meta("Cgone", 1, body))))
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("b/Cgone-1.json")).unwrap())
                .unwrap();
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], 0);
        assert_eq!(v["missing_bytes"], body.len());
        let (c, r) = s2.finish();
        r.unwrap();
        assert_eq!(c.size_mismatch, 2);
        assert_eq!(c.bytes_lost, 10 + body.len() as u64);
        assert_eq!(c.incomplete, 2);
    }

    #[test]
    fn empty_and_rejected_messages_are_written() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ExtractSink::new(&ExtractConfig::new(d.path().into())).unwrap();
        let mut m = meta("Cr", 1, b"");
        m.status_code = Some(554);
        m.status_text = Some(b"5.7.1 rejected".to_vec());
        s.write(&Record::EmailMeta(Box::new(m))).unwrap();
        assert_eq!(std::fs::read(d.path().join("Cr-1.eml")).unwrap(), b"");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("Cr-1.json")).unwrap()).unwrap();
        assert_eq!(v["status_code"], 554);
    }

    /// Issue 12 item 4: a write error loses the messages it touches (no
    /// file of them stays), is reported once, and the sink resumes by
    /// itself; every message written is whole.
    #[test]
    fn write_errors_lose_whole_messages_and_the_sink_resumes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("x");
        let mut s = ExtractSink::new(&ExtractConfig::new(dir.clone())).unwrap();
        s.set_retry_interval(std::time::Duration::ZERO);
        let body = b"Subject: x\r\n\r\nhi\r\n";
        s.write(&chunk("Ca", 1, &body[..5])).unwrap();
        // The directory goes away (as good as a full disk for the files
        // not open yet): a message begun now fails, reported once and
        // naming the path.
        std::fs::remove_dir_all(&dir).unwrap();
        let e = s.write(&chunk("Cb", 1, body)).unwrap_err();
        assert!(e.to_string().contains("/x/"), "{e}");
        // The message in progress cannot be put in place: lost too, no
        // second report.
        s.write(&chunk("Ca", 1, &body[5..])).unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Ca", 1, body))))
            .unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Cb", 1, body))))
            .unwrap();
        // Space (here: the directory) is back: the next message is
        // written and ends the failure.
        std::fs::create_dir(&dir).unwrap();
        s.write(&chunk("Cc", 1, body)).unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Cc", 1, body))))
            .unwrap();
        assert_eq!(names(&dir), vec!["Cc-1.eml", "Cc-1.json"]);
        assert_eq!(std::fs::read(dir.join("Cc-1.eml")).unwrap(), body);
        let n = s.take_notices();
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            matches!(&n[1], OutputNotice::Resumed { lost: 2, .. }),
            "{n:?}"
        );
        let r = s.report();
        assert_eq!(
            (r.output.as_str(), r.written, r.lost, r.failing),
            ("extract", 1, 2, false)
        );
        // While failing with a back-off, messages begun are lost untried;
        // those still in progress at the end too.
        s.set_retry_interval(std::time::Duration::from_secs(3600));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(s.write(&chunk("Cd", 1, body)).is_err());
        s.write(&chunk("Ce", 1, body)).unwrap();
        std::fs::create_dir(&dir).unwrap();
        s.write(&chunk("Cf", 1, body)).unwrap();
        s.write(&Record::EmailMeta(Box::new(meta("Cf", 1, body))))
            .unwrap();
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!((c.messages, c.messages_lost), (1, 5));
        assert_eq!(c.bytes, body.len() as u64);
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    }
}
