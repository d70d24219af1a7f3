//! `--ace-dir`: SMTP session transcripts in the format of ACE's Zeek
//! scripts (`ace_smtp.zeek`), so that an unchanged ACE SMTP collector reads
//! them. One file per recorded connection, named by its uid:
//!
//! ```text
//! 198.51.100.7:51514/tcp          <- originator address ':' port '/tcp'
//! 1700000000                      <- whole epoch seconds
//! < > 220 mx.example.test ESMTP   <- smtp_reply: '< ' cmd ' ' code ' ' msg
//! > EHLO client.example.test      <- smtp_request: '> ' command ' ' arg
//! Subject: hello                  <- smtp_data: the line, then LF
//! ```
//!
//! A transcript is written under a hidden temporary name with a random
//! part (created `O_EXCL | O_NOFOLLOW`) and renamed to `<uid>` when the
//! connection is removed (its conn.log record arrives); then `<uid>.ready`
//! (empty) appears, written the same way. A connection whose STARTTLS succeeds
//! (`smtp_starttls`) has its file deleted and gets no marker. Recorded are
//! connections whose originator or responder port is in `ports`
//! (default 25, as ACE's `record_smtp_stream`).
//!
//! Write errors (a full disk): a transcript is only ever made ready whole.
//! When a write for a session fails, its temporary file is removed, its
//! later lines are ignored, and it is counted in
//! [`AceCounters::sessions_lost`] (no file, no marker; a marker that
//! cannot be written takes its transcript away again; a lost session that
//! then switches to TLS counts as deleted after STARTTLS instead, as it
//! would have been). Sessions that begin while the sink is failing are lost without
//! a try until the back-off has passed; the next session made ready ends
//! the failure. The first failure and the resumption are queued as notices
//! ([`AceSink::take_notices`]).

use crate::files::{named, safe_stem, write_atomic, HandleCache};
use mailtap_core::output::{OutputHealth, OutputNotice, OutputReport};
use mailtap_core::{ConnId, Event, Record, Timestamp};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

/// Where transcripts go and which connections are recorded.
#[derive(Clone, Debug)]
pub struct AceConfig {
    pub dir: PathBuf,
    /// A connection is recorded when either port is in this list.
    pub ports: Vec<u16>,
    /// Session files kept open at once.
    pub max_open_files: usize,
}

impl AceConfig {
    pub fn new(dir: PathBuf) -> Self {
        AceConfig {
            dir,
            ports: vec![25],
            max_open_files: 64,
        }
    }
}

/// What the ACE sink did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AceCounters {
    /// Session files finished with a `.ready` marker.
    pub sessions: u64,
    /// Records (lines after the header) written.
    pub records: u64,
    /// Session files deleted because the connection switched to TLS.
    pub starttls_deleted: u64,
    /// Files reopened after the open-file limit closed them.
    pub reopens: u64,
    /// Sessions not written because writing failed (a full disk); nothing
    /// of them is left in the directory.
    pub sessions_lost: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Recording,
    /// STARTTLS succeeded: file deleted, nothing more is recorded.
    Tls,
    /// A write failed: file deleted, nothing more is recorded, counted
    /// lost when the connection ends.
    Lost,
}

/// The collector-side ACE transcript writer.
pub struct AceSink {
    dir: PathBuf,
    ports: Vec<u16>,
    handles: HandleCache,
    conns: HashMap<String, State>,
    /// Temporary file of each connection being recorded.
    tmps: HashMap<String, PathBuf>,
    counters: AceCounters,
    line: Vec<u8>,
    health: OutputHealth,
}

/// `addr:port/tcp` then LF, then whole epoch seconds then LF: the header
/// ACE's `connection_established` handler writes. IPv6 addresses are bare,
/// as Zeek prints them.
pub fn header(id: &ConnId, ts: Timestamp) -> Vec<u8> {
    format!(
        "{}:{}/tcp\n{}\n",
        crate::json::zeek_addr(id.orig_h),
        id.orig_p,
        ts.0.div_euclid(1_000_000_000)
    )
    .into_bytes()
}

/// The transcript line for an SMTP event (without the final LF), or None
/// for events ACE does not record.
pub fn record_line(ev: &Event, out: &mut Vec<u8>) -> bool {
    out.clear();
    match ev {
        Event::SmtpRequest { command, arg, .. } => {
            out.extend_from_slice(b"> ");
            out.extend_from_slice(command);
            out.push(b' ');
            out.extend_from_slice(arg);
        }
        Event::SmtpReply { code, cmd, msg, .. } => {
            out.extend_from_slice(b"< ");
            out.extend_from_slice(cmd);
            out.push(b' ');
            out.extend_from_slice(code.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(msg);
        }
        Event::SmtpData { data, .. } => out.extend_from_slice(data),
        _ => return false,
    }
    out.push(b'\n');
    true
}

fn is_recorded(ports: &[u16], id: &ConnId) -> bool {
    ports.contains(&id.orig_p) || ports.contains(&id.resp_p)
}

impl AceSink {
    /// Creates the directory if needed; fails, naming it, when files
    /// cannot be created there.
    pub fn new(cfg: &AceConfig) -> io::Result<Self> {
        crate::files::ensure_writable_dir(&cfg.dir, "--ace-dir")?;
        Ok(AceSink {
            dir: cfg.dir.clone(),
            ports: cfg.ports.clone(),
            handles: HandleCache::new(cfg.max_open_files),
            conns: HashMap::new(),
            tmps: HashMap::new(),
            counters: AceCounters::default(),
            line: Vec::with_capacity(512),
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

    /// One more session lost (counted when it is given up, so that a
    /// resumption reports the sessions lost meanwhile).
    fn count_lost(&mut self) {
        self.counters.sessions_lost += 1;
        self.health.lose(1);
    }

    /// Gives up a session whose write failed: its file goes, its later
    /// lines are ignored.
    fn lose(&mut self, uid: &str) {
        if let Some(p) = self.tmps.remove(uid) {
            self.handles.discard(&p);
            let _ = std::fs::remove_file(&p);
        }
        if self.conns.insert(uid.to_string(), State::Lost) != Some(State::Lost) {
            self.count_lost();
        }
    }

    /// Sessions whose files were closed to make room and could not be
    /// written are lost.
    fn evict_failures(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        for (path, e) in self.handles.take_evict_failures() {
            let uid = self
                .tmps
                .iter()
                .find(|(_, p)| **p == path)
                .map(|(u, _)| u.clone());
            if let Err(e) = self.fail(e) {
                res = Err(e);
            }
            if let Some(u) = uid {
                self.lose(&u);
            }
        }
        res
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

    /// Sessions written and lost so far (`ace`).
    pub fn report(&self) -> OutputReport {
        self.health.report("ace", self.counters.sessions)
    }

    fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(safe_stem(uid))
    }

    /// The temporary file of `uid`: a new random name on first use.
    fn tmp(&mut self, uid: &str) -> (PathBuf, bool) {
        if let Some(p) = self.tmps.get(uid) {
            return (p.clone(), false);
        }
        let p = crate::files::tmp_path(&self.dir, &safe_stem(uid));
        self.tmps.insert(uid.to_string(), p.clone());
        (p, true)
    }

    /// Takes SMTP events and conn.log records; ignores everything else.
    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::Event(ev) => {
                if !is_recorded(&self.ports, &ev.id) {
                    return Ok(());
                }
                match &ev.event {
                    Event::SmtpStarttls => self.starttls(&ev.uid),
                    e @ (Event::SmtpRequest { .. }
                    | Event::SmtpReply { .. }
                    | Event::SmtpData { .. }) => self.append(&ev.uid, &ev.id, ev.ts, e),
                    _ => Ok(()),
                }
            }
            Record::Conn(c) => {
                if !is_recorded(&self.ports, &c.id) {
                    return Ok(());
                }
                match self.conns.remove(&c.uid) {
                    Some(State::Recording) => self.ready(&c.uid),
                    Some(State::Tls) => Ok(()),
                    // Counted when it was given up.
                    Some(State::Lost) => Ok(()),
                    None if c.history.contains('h') && !self.health.due_now() => {
                        self.count_lost();
                        Ok(())
                    }
                    // ACE writes the header at connection_established even
                    // when no SMTP follows (a scanner, a health check): a
                    // completed handshake (responder SYN-ACK, history `h`)
                    // gives a header-only file and a marker.
                    None if c.history.contains('h') => {
                        let (p, _) = self.tmp(&c.uid);
                        let r = self.handles.get(&p, true).and_then(|w| {
                            w.write_all(&header(&c.id, c.ts)).map_err(|e| named(e, &p))
                        });
                        let evicted = self.evict_failures();
                        if let Err(e) = r {
                            let r = self.fail(e);
                            self.lose(&c.uid);
                            self.conns.remove(&c.uid);
                            return evicted.and(r);
                        }
                        evicted.and(self.ready(&c.uid))
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    fn append(&mut self, uid: &str, id: &ConnId, ts: Timestamp, ev: &Event) -> io::Result<()> {
        let state = self.conns.get(uid).copied();
        if matches!(state, Some(State::Tls | State::Lost)) {
            return Ok(());
        }
        if state.is_none() && !self.health.due_now() {
            // Failing: a session that begins now is not tried.
            if record_line(ev, &mut self.line) {
                self.lose(uid);
            }
            return Ok(());
        }
        let mut line = std::mem::take(&mut self.line);
        let res = (|| {
            if !record_line(ev, &mut line) {
                return Ok(());
            }
            // No copy of the path per line (a transcript line can be one
            // byte: a message of empty lines).
            let first = !self.tmps.contains_key(uid);
            if first {
                self.tmp(uid);
            }
            let p = &self.tmps[uid];
            let w = self.handles.get(p, first)?;
            if state.is_none() {
                w.write_all(&header(id, ts)).map_err(|e| named(e, p))?;
                self.conns.insert(uid.to_string(), State::Recording);
            }
            w.write_all(&line).map_err(|e| named(e, p))?;
            self.counters.records += 1;
            Ok(())
        })();
        self.line = line;
        let evicted = self.evict_failures();
        match res {
            Ok(()) => evicted,
            Err(e) => {
                let r = self.fail(e);
                self.lose(uid);
                evicted.and(r)
            }
        }
    }

    fn starttls(&mut self, uid: &str) -> io::Result<()> {
        match self.conns.insert(uid.to_string(), State::Tls) {
            Some(State::Recording) => self.counters.starttls_deleted += 1,
            Some(State::Lost) => {
                // No transcript would have been kept: not lost after all.
                self.counters.starttls_deleted += 1;
                self.counters.sessions_lost -= 1;
                self.health.forgive(1);
            }
            _ => {}
        }
        let Some(p) = self.tmps.remove(uid) else {
            return Ok(());
        };
        self.handles.discard(&p);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(named(e, &p)),
            _ => Ok(()),
        }
    }

    /// The transcript under its final name, then its marker (both renamed
    /// into place: a link planted at either name is replaced, not
    /// followed).
    fn ready(&mut self, uid: &str) -> io::Result<()> {
        let Some(tmp) = self.tmps.remove(uid) else {
            return Ok(());
        };
        let p = self.path(uid);
        let res = self
            .handles
            .close(&tmp)
            .and_then(|()| std::fs::rename(&tmp, &p).map_err(|e| named(e, &p)));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            let r = self.fail(e);
            self.count_lost();
            return r;
        }
        if let Err(e) = write_atomic(&self.dir, &format!("{}.ready", safe_stem(uid)), b"") {
            // No marker, no transcript: ACE's collector never sees a
            // session without its marker, and nothing stale stays.
            let _ = std::fs::remove_file(&p);
            let r = self.fail(e);
            self.count_lost();
            return r;
        }
        self.counters.sessions += 1;
        self.health.succeeded(Instant::now());
        Ok(())
    }

    pub fn counters(&self) -> AceCounters {
        AceCounters {
            reopens: self.handles.reopens,
            ..self.counters.clone()
        }
    }

    /// Connections still being recorded get their marker (as Zeek removes
    /// every connection at shutdown); every file is closed.
    pub fn finish(mut self) -> (AceCounters, io::Result<()>) {
        let res = self.finish_all();
        (self.counters(), res)
    }

    /// [`finish`](Self::finish), then the report of what was written and
    /// lost, and the write-error notices not taken yet (for the caller to
    /// log).
    pub fn finish_reporting(mut self) -> (AceCounters, OutputReport, Vec<OutputNotice>) {
        let _ = self.finish_all();
        (self.counters(), self.report(), self.take_notices())
    }

    fn finish_all(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        let mut open: Vec<String> = self
            .conns
            .iter()
            .filter(|(_, s)| **s == State::Recording)
            .map(|(u, _)| u.clone())
            .collect();
        open.sort();
        for uid in open {
            if let Err(e) = self.ready(&uid) {
                if res.is_ok() {
                    res = Err(e);
                }
            }
        }
        self.conns.clear();
        // Left over only after a write error: no half transcript stays.
        for (_, p) in self.tmps.drain() {
            self.handles.discard(&p);
            let _ = std::fs::remove_file(&p);
        }
        if let Err(e) = self.handles.close_all() {
            if res.is_ok() {
                res = Err(e);
            }
        }
        res
    }
}

/// Parses line 1 of a session header: `addr:port[/proto]`, the address
/// bare (IPv6 too, as Zeek prints it) or in brackets. The port is the
/// digits after the *last* colon, so IPv6 works.
pub fn parse_header_line(line: &[u8]) -> Option<(IpAddr, u16)> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let (addr, port) = s.rsplit_once(':')?;
    let port = port.split('/').next()?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    Some((addr.parse().ok()?, port))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mailtap_core::output::OutputNotice;
    use mailtap_core::{ConnRecord, EventRecord};

    pub(crate) fn id(orig: &str, resp_p: u16) -> ConnId {
        ConnId {
            orig_h: orig.parse().unwrap(),
            orig_p: 51514,
            resp_h: "192.0.2.25".parse().unwrap(),
            resp_p,
        }
    }

    pub(crate) fn ev(uid: &str, id: ConnId, e: Event) -> Record {
        Record::Event(Box::new(EventRecord {
            ts: Timestamp::from_secs_micros(1_700_000_000, 250_000),
            uid: uid.into(),
            id,
            event: e,
        }))
    }

    pub(crate) fn req(c: &str, a: &str) -> Event {
        Event::SmtpRequest {
            is_orig: true,
            command: c.into(),
            arg: a.into(),
        }
    }
    pub(crate) fn rep(cmd: &str, code: u32, msg: &str) -> Event {
        Event::SmtpReply {
            is_orig: false,
            code,
            cmd: cmd.into(),
            msg: msg.into(),
            cont_resp: false,
        }
    }
    pub(crate) fn data(d: &str) -> Event {
        Event::SmtpData {
            is_orig: true,
            data: d.into(),
        }
    }

    pub(crate) fn conn(uid: &str, id: ConnId, history: &str) -> Record {
        Record::Conn(Box::new(ConnRecord {
            ts: Timestamp::from_secs_micros(1_700_000_000, 0),
            uid: uid.into(),
            id,
            service: vec!["smtp"],
            duration: None,
            orig_bytes: None,
            resp_bytes: None,
            conn_state: "SF",
            local_orig: None,
            local_resp: None,
            missed_bytes: 0,
            history: history.into(),
            orig_pkts: 0,
            orig_ip_bytes: 0,
            resp_pkts: 0,
            resp_ip_bytes: 0,
        }))
    }

    /// The spec's illustrative transcript (§1.9), as events.
    pub(crate) fn spec_session() -> Vec<Event> {
        vec![
            rep(">", 220, "mx.example.test ESMTP"),
            req("EHLO", "client.example.test"),
            rep("EHLO", 250, "mx.example.test"),
            rep("EHLO", 250, "PIPELINING"),
            rep("EHLO", 250, "SIZE 10240000"),
            req("MAIL", "FROM:<alice@example.test> SIZE=1234"),
            req("RCPT", "TO:<bob@example.test>"),
            req("RCPT", "TO:<carol@example.test>"),
            req("DATA", ""),
            rep("MAIL", 250, "2.1.0 OK"),
            rep("RCPT", 250, "2.1.5 OK"),
            rep("RCPT", 250, "2.1.5 OK"),
            rep("DATA", 354, "go ahead"),
            data("Subject: hello"),
            data(""),
            data(".this line was sent as \"..this line\" (already unstuffed)"),
            req(".", "."),
            rep(".", 250, "2.0.0 queued"),
            req("QUIT", ""),
            rep("QUIT", 221, "bye"),
        ]
    }

    pub(crate) const SPEC_TRANSCRIPT: &str = "198.51.100.7:51514/tcp
1700000000
< > 220 mx.example.test ESMTP
> EHLO client.example.test
< EHLO 250 mx.example.test
< EHLO 250 PIPELINING
< EHLO 250 SIZE 10240000
> MAIL FROM:<alice@example.test> SIZE=1234
> RCPT TO:<bob@example.test>
> RCPT TO:<carol@example.test>
> DATA 
< MAIL 250 2.1.0 OK
< RCPT 250 2.1.5 OK
< RCPT 250 2.1.5 OK
< DATA 354 go ahead
Subject: hello

.this line was sent as \"..this line\" (already unstuffed)
> . .
< . 250 2.0.0 queued
> QUIT 
< QUIT 221 bye
";

    #[test]
    fn spec_transcript_byte_for_byte_and_ready() {
        let d = tempfile::tempdir().unwrap();
        let mut s = AceSink::new(&AceConfig::new(d.path().into())).unwrap();
        let i = id("198.51.100.7", 25);
        for e in spec_session() {
            s.write(&ev("CyEkdLKUYIgTyYhAl", i, e)).unwrap();
        }
        assert!(!d.path().join("CyEkdLKUYIgTyYhAl.ready").exists());
        s.write(&conn("CyEkdLKUYIgTyYhAl", i, "ShAdDafF")).unwrap();
        assert!(d.path().join("CyEkdLKUYIgTyYhAl.ready").exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("CyEkdLKUYIgTyYhAl")).unwrap(),
            SPEC_TRANSCRIPT
        );
        assert_eq!(
            std::fs::read(d.path().join("CyEkdLKUYIgTyYhAl.ready")).unwrap(),
            b""
        );
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!(c.sessions, 1);
        assert_eq!(c.records, 20);
    }

    #[test]
    fn links_planted_at_session_and_marker_names_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let ace = d.path().join("ace");
        std::fs::create_dir(&ace).unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::os::unix::fs::symlink(&victim, ace.join("Cx")).unwrap();
        std::os::unix::fs::symlink(&victim, ace.join("Cx.ready")).unwrap();
        let mut s = AceSink::new(&AceConfig::new(ace.clone())).unwrap();
        let i = id("198.51.100.7", 25);
        for e in spec_session() {
            s.write(&ev("Cx", i, e)).unwrap();
        }
        // Nothing under the final name while recording.
        assert!(std::fs::symlink_metadata(ace.join("Cx"))
            .unwrap()
            .file_type()
            .is_symlink());
        s.write(&conn("Cx", i, "ShAdDafF")).unwrap();
        let (_, r) = s.finish();
        r.unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(
            std::fs::read_to_string(ace.join("Cx")).unwrap(),
            SPEC_TRANSCRIPT
        );
        for n in ["Cx", "Cx.ready"] {
            assert!(std::fs::symlink_metadata(ace.join(n))
                .unwrap()
                .file_type()
                .is_file());
        }
        // No temporary file left behind.
        let left: Vec<_> = std::fs::read_dir(&ace)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn starttls_deletes_the_file_and_no_marker() {
        let d = tempfile::tempdir().unwrap();
        let mut s = AceSink::new(&AceConfig::new(d.path().into())).unwrap();
        let i = id("198.51.100.7", 25);
        for e in [
            rep(">", 220, "hi"),
            req("EHLO", "x"),
            rep("EHLO", 250, "STARTTLS"),
            req("STARTTLS", ""),
            rep("STARTTLS", 220, "go"),
            Event::SmtpStarttls,
            req("MAIL", "FROM:<late@x>"),
        ] {
            s.write(&ev("Ctls", i, e)).unwrap();
        }
        assert!(!d.path().join("Ctls").exists());
        s.write(&conn("Ctls", i, "ShAdDaFf")).unwrap();
        assert!(!d.path().join("Ctls").exists());
        assert!(!d.path().join("Ctls.ready").exists());
        let (c, _) = s.finish();
        assert_eq!(c.starttls_deleted, 1);
        assert_eq!(c.sessions, 0);
    }

    #[test]
    fn refused_starttls_keeps_recording() {
        let d = tempfile::tempdir().unwrap();
        let mut s = AceSink::new(&AceConfig::new(d.path().into())).unwrap();
        let i = id("198.51.100.7", 25);
        for e in [req("STARTTLS", ""), rep("STARTTLS", 454, "not now")] {
            s.write(&ev("Cr", i, e)).unwrap();
        }
        s.write(&conn("Cr", i, "ShADadFf")).unwrap();
        let t = std::fs::read_to_string(d.path().join("Cr")).unwrap();
        assert!(t.ends_with("> STARTTLS \n< STARTTLS 454 not now\n"), "{t}");
        assert!(d.path().join("Cr.ready").exists());
    }

    #[test]
    fn ports_and_ipv6_header_and_handshake_only() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = AceConfig::new(d.path().into());
        cfg.ports = vec![25, 587];
        let mut s = AceSink::new(&cfg).unwrap();
        // 2525 is not recorded.
        s.write(&ev("Cno", id("192.0.2.1", 2525), req("EHLO", "x")))
            .unwrap();
        s.write(&conn("Cno", id("192.0.2.1", 2525), "ShAdDaFf"))
            .unwrap();
        assert!(!d.path().join("Cno").exists());
        // 587 over IPv6: bare address in the header.
        s.write(&ev("C6", id("2001:db8::5", 587), req("EHLO", "x")))
            .unwrap();
        s.write(&conn("C6", id("2001:db8::5", 587), "ShAdDaFf"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("C6")).unwrap(),
            "2001:db8::5:51514/tcp\n1700000000\n> EHLO x\n"
        );
        // A handshake on port 25 without SMTP: header-only file + marker.
        s.write(&conn("Cscan", id("192.0.2.9", 25), "ShR")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("Cscan")).unwrap(),
            "192.0.2.9:51514/tcp\n1700000000\n"
        );
        assert!(d.path().join("Cscan.ready").exists());
        // No handshake (SYN only): nothing.
        s.write(&conn("Csyn", id("192.0.2.9", 25), "S")).unwrap();
        assert!(!d.path().join("Csyn").exists());
    }

    #[test]
    fn many_sessions_with_few_handles() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = AceConfig::new(d.path().into());
        cfg.max_open_files = 2;
        let mut s = AceSink::new(&cfg).unwrap();
        let uids: Vec<String> = (0..6).map(|i| format!("C{i}")).collect();
        for e in spec_session() {
            for u in &uids {
                s.write(&ev(u, id("198.51.100.7", 25), e.clone())).unwrap();
            }
        }
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!(c.sessions, 6);
        assert!(c.reopens > 0);
        for u in &uids {
            assert_eq!(
                std::fs::read_to_string(d.path().join(u)).unwrap(),
                SPEC_TRANSCRIPT
            );
            assert!(d.path().join(format!("{u}.ready")).exists());
        }
    }

    #[test]
    fn header_line_parsing() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        assert_eq!(
            parse_header_line(b"192.0.2.10:40312/tcp"),
            Some((v4, 40312))
        );
        assert_eq!(
            parse_header_line(b"2001:db8::5:40312/tcp"),
            Some((v6, 40312))
        );
        assert_eq!(parse_header_line(b"[2001:db8::5]:40312"), Some((v6, 40312)));
        assert_eq!(parse_header_line(b"invalid data"), None);
        assert_eq!(parse_header_line(b"> MAIL FROM:<a@b>"), None);
    }

    /// Issue 12 item 4: a write error loses the sessions it touches (no
    /// transcript or marker of them), is reported once, and the sink
    /// resumes by itself.
    #[test]
    fn write_errors_lose_whole_sessions_and_the_sink_resumes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ace");
        let mut s = AceSink::new(&AceConfig::new(dir.clone())).unwrap();
        s.set_retry_interval(std::time::Duration::ZERO);
        let a = id("198.51.100.7", 25);
        s.write(&ev("Ca", a, rep(">", 220, "hi"))).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = s.write(&ev("Cb", a, rep(">", 220, "hi"))).unwrap_err();
        assert!(e.to_string().contains("/ace/"), "{e}");
        s.write(&ev("Cb", a, req("QUIT", ""))).unwrap();
        s.write(&ev("Ca", a, req("QUIT", ""))).unwrap();
        s.write(&conn("Ca", a, "ShAD")).unwrap();
        s.write(&conn("Cb", a, "ShAD")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        for e in spec_session() {
            s.write(&ev("Cc", id("198.51.100.7", 25), e)).unwrap();
        }
        s.write(&conn("Cc", a, "ShAD")).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["Cc", "Cc.ready"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("Cc")).unwrap(),
            SPEC_TRANSCRIPT
        );
        let n = s.take_notices();
        assert!(
            matches!(
                &n[..],
                [
                    OutputNotice::Failed { .. },
                    OutputNotice::Resumed { lost: 2, .. }
                ]
            ),
            "{n:?}"
        );
        // Failing with a back-off: a session that begins is lost untried;
        // one that then switches to TLS counts as deleted, as it would
        // have been.
        s.set_retry_interval(std::time::Duration::from_secs(3600));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(s.write(&ev("Cd", a, rep(">", 220, "hi"))).is_err());
        s.write(&ev("Ce", a, rep(">", 220, "hi"))).unwrap();
        s.write(&ev("Cf", a, rep(">", 220, "hi"))).unwrap();
        s.write(&ev("Cf", a, Event::SmtpStarttls)).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let (c, r) = s.finish();
        r.unwrap();
        assert_eq!((c.sessions, c.sessions_lost, c.starttls_deleted), (1, 4, 1));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
