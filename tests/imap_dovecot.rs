//! IMAP against a real server: Debian's Dovecot imapd, started by the test
//! in a network namespace of its own, driven by tests/imap_dovecot/client.py
//! from a second namespace over a veth pair, captured with tcpdump on the
//! server's end, then read by `mailtap read`. What mailtap logged and
//! extracted is compared with what the client sent and received.
//!
//! The client runs four sessions (one connection each): Python's imaplib
//! (CREATE; APPEND of six messages of 100 B to 200 kB with flags and
//! internal dates, synchronizing literals; SELECT; FETCH BODY[],
//! BODY.PEEK[], RFC822, BODY[HEADER], BODY[TEXT], BODY[]<0.100>, BODY[1],
//! BODY[HEADER.FIELDS (FROM SUBJECT)]; UID FETCH; a FETCH of every
//! message in one response; the 200 kB message in 64 KiB pieces, as
//! Thunderbird fetches large ones; EXAMINE; LOGOUT); a raw socket client (a
//! refused LOGIN; LITERAL+ APPEND and MULTIAPPEND; SELECT, three FETCHes,
//! one of them BINARY[], and NOOP pipelined in one write, which Dovecot
//! answers out of order; IDLE, during which a second imaplib connection
//! appends a message with raw UTF-8 headers and the server says EXISTS,
//! DONE; a FETCH with ENVELOPE, whose strings Dovecot sends as literals
//! that are not messages, and BODYSTRUCTURE before the body; LOGOUT); and
//! a raw client that turns on COMPRESS=DEFLATE (Dovecot's imap_zlib
//! plugin) and then fetches and appends through raw deflate both ways.
//!
//! Checked: every whole-message FETCH literal and every APPEND payload is
//! extracted byte-exact, with protocol imap, direction, mailbox, section,
//! sequence number, UID, UIDVALIDITY, flags, internal date and APPEND
//! status as the client saw them; header-only, text-only and `<o.n>`
//! fetches are extracted and flagged partial, but a run of `<o.n>` pieces
//! of one message is joined into the whole message (one record, BODY[],
//! not partial); a one-part fetch (BODY[1])
//! and a header-fields fetch are not extracted; imap.log has one row per
//! session (user, login, failures, mailboxes, commands, message and byte
//! counts, COMPRESS, IDLE, capabilities, NO responses, last response);
//! conn.log says imap, with every connection whole (SF, nothing missed);
//! files.log has the attachments both ways; no weirds.
//!
//! A second test runs Dovecot with TLS (a fresh self-signed certificate):
//! imaplib sessions that STARTTLS (TLS 1.2 and 1.3), log in, append and
//! fetch inside TLS; mailtap must hand them to its TLS analyzer (conn.log
//! `imap,ssl`, ssl.log version, IANA cipher, certificate fingerprint,
//! x509.log) and extract nothing.
//!
//! Needs root (namespaces), Dovecot (`dovecot-imapd`), tcpdump,
//! python3 and openssl; scripts/setup.sh installs them. Without them the test is
//! skipped, which `MAILTAP_REQUIRE_ALL=1` turns into a failure.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USER: &str = "alice";
const PASSWORD: &str = "Dv-pw-91c4e";
const CLIENT_IP: &str = "10.143.0.1";
const SERVER_IP: &str = "10.143.0.2";
/// The test's name, for `common::skip`.
const TEST: &str = "imap_dovecot::dovecot_session_is_logged_and_extracted_as_the_client_saw_it";

// ---------------------------------------------------------------------------
// Prerequisites

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn runs(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for (args, what) in [
        (&["ip", "-V"][..], "`ip` (iproute2)"),
        (&["dovecot", "--version"][..], "`dovecot` (dovecot-imapd)"),
        (&["tcpdump", "--version"][..], "`tcpdump`"),
        (
            &["python3", "-c", "import imaplib, zlib"][..],
            "`python3` with imaplib and zlib",
        ),
    ] {
        if !runs(args) {
            return Some(format!("{what} not found"));
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Commands and processes

fn cmd(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let o = cmd(args);
    assert!(
        o.status.success(),
        "{args:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn signal(pid: u32, sig: &str) {
    let _ = cmd(&["kill", sig, &pid.to_string()]);
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) and
/// reaped when dropped, so a failing test leaves nothing running.
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn exited(&mut self) -> bool {
        !matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Sends `sig` and waits for the process to end (SIGKILL after 5 s).
    fn stop(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("stopped once");
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        signal(child.id(), sig);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().expect("reap")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop("-TERM");
        }
    }
}

// ---------------------------------------------------------------------------
// Two namespaces and a veth pair

/// The server's and the client's network namespaces, joined by a veth
/// pair (10.143.0.1 client, 10.143.0.2 server), names unique to this
/// process (`mtd` + pid; tests/live.rs uses `mtl`). Dropping it kills
/// whatever still runs inside and deletes both (the pair goes with them).
struct Lab {
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
}

impl Lab {
    /// Two namespaces joined by a veth pair; `tag` tells apart the labs of
    /// the tests of this file, which run at once in one process.
    fn new(tag: char) -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            server_ns: format!("mtd{pid}{tag}s"),
            client_ns: format!("mtd{pid}{tag}c"),
            server_if: format!("mtd{pid}{tag}s0"),
            client_if: format!("mtd{pid}{tag}c0"),
        };
        assert!(lab.server_if.len() <= 15, "{} too long", lab.server_if);
        // A namespace left by an earlier run with the same pid: gone.
        let _ = cmd(&["ip", "netns", "del", &lab.server_ns]);
        let _ = cmd(&["ip", "netns", "del", &lab.client_ns]);
        must(&["ip", "netns", "add", &lab.server_ns]);
        // From here on Drop cleans up.
        let lab = lab;
        must(&["ip", "netns", "add", &lab.client_ns]);
        must(&[
            "ip",
            "-n",
            &lab.client_ns,
            "link",
            "add",
            &lab.client_if,
            "type",
            "veth",
            "peer",
            "name",
            &lab.server_if,
            "netns",
            &lab.server_ns,
        ]);
        for (ns, dev, ip) in [
            (&lab.client_ns, &lab.client_if, CLIENT_IP),
            (&lab.server_ns, &lab.server_if, SERVER_IP),
        ] {
            // No IPv6 chatter (router solicitations, DAD) on the wire.
            let _ = cmd(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ]);
            // Segments as a NIC would send them (MTU-sized, checksummed),
            // not 64 kB offload super-packets: literals are then spread
            // over many packets. Best effort: ethtool may be missing.
            let _ = cmd(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro",
                "off", "tx", "off",
            ]);
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn spawn(&self, ns: &str, args: &[&str], stderr: Stdio) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"));
        Proc { child: Some(child) }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            // Only what runs in our own namespaces: Dovecot's children if
            // its master was killed, a client that hung.
            let pids = cmd(&["ip", "netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = cmd(&["kill", "-KILL", pid]);
            }
            let _ = cmd(&["ip", "netns", "del", ns]);
        }
    }
}

// ---------------------------------------------------------------------------
// Dovecot

/// A self-contained configuration in `dir`: IMAP only on port 143,
/// plaintext LOGIN without TLS, one passwd-file user whose mail (maildir)
/// is stored as `nobody` under `dir/home`, runtime and state directories
/// and the log in `dir`, no authentication failure delay, and the
/// imap_zlib plugin (COMPRESS=DEFLATE) when `compress`.
fn dovecot_conf(dir: &Path, compress: bool) -> PathBuf {
    let d = dir.display();
    for sub in ["run", "state", "home"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // The mail processes run as nobody: they must reach dir/home.
    must(&["chmod", "711", &dir.display().to_string()]);
    must(&["chown", "65534:65534", &format!("{d}/home")]);
    std::fs::write(
        dir.join("passwd"),
        format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
    )
    .unwrap();
    let plugins = if compress {
        "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"
    } else {
        ""
    };
    let conf = format!(
        "protocols = imap\n\
         listen = {SERVER_IP}\n\
         base_dir = {d}/run\n\
         state_dir = {d}/state\n\
         log_path = {d}/dovecot.log\n\
         ssl = no\n\
         disable_plaintext_auth = no\n\
         auth_mechanisms = plain login\n\
         auth_failure_delay = 0\n\
         mail_location = maildir:~/Maildir\n\
         mail_fsync = never\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/home/%u\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = 143\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         {plugins}"
    );
    let path = dir.join("dovecot.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// Starts Dovecot with `conf` in the lab's server namespace and waits
/// until it listens on 143 (its log is `dir/dovecot.log`).
fn start_dovecot(lab: &Lab, conf: &Path, dir: &Path) -> Proc {
    let mut dovecot = lab.spawn(
        &lab.server_ns,
        &["dovecot", "-F", "-c", conf.to_str().unwrap()],
        Stdio::inherit(),
    );
    wait_for("Dovecot to listen on 143", 15, || {
        let log = std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();
        assert!(!dovecot.exited(), "Dovecot exited: {log}");
        let o = cmd(&[
            "ip",
            "netns",
            "exec",
            &lab.server_ns,
            "ss",
            "-Hltn",
            "sport = :143",
        ]);
        !o.stdout.is_empty()
    });
    dovecot
}

/// Waits for the last FIN/ACK exchange: until the capture file has not
/// grown for 400 ms.
fn wait_until_settled(pcap: &Path) {
    let mut last = (0, Instant::now());
    wait_for("the capture to settle", 10, || {
        let len = std::fs::metadata(pcap).map_or(0, |m| m.len());
        if len != last.0 {
            last = (len, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(400)
    });
}

/// Whether Debian's Dovecot has the imap_zlib plugin (dovecot-imapd
/// ships it with Dovecot 2.3).
fn has_imap_zlib() -> bool {
    let o = cmd(&["doveconf", "-c", "/dev/null", "-h", "mail_plugin_dir"]);
    let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let dir = if dir.is_empty() {
        "/usr/lib/dovecot/modules".to_string()
    } else {
        dir
    };
    Path::new(&dir).join("lib30_imap_zlib_plugin.so").exists()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// tcpdump

/// tcpdump writing `pcap`, started and listening.
struct Capture {
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl Capture {
    fn start(lab: &Lab, pcap: &Path) -> Capture {
        let mut proc = lab.spawn(
            &lab.server_ns,
            &[
                "tcpdump",
                "-i",
                &lab.server_if,
                "-n",
                // Each packet to the file as it comes: without immediate
                // mode packets wait in the ring buffer for a block to
                // fill, and are lost when tcpdump is stopped.
                "--immediate-mode",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
                pcap.to_str().unwrap(),
                "tcp port 143",
            ],
            Stdio::piped(),
        );
        let stderr = proc.child.as_mut().unwrap().stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // tcpdump says "listening on" once the capture is open.
        let until = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("listening on") => break,
                Ok(l) => seen.push(l),
                Err(_) => panic!("tcpdump did not start listening: {seen:?}"),
            }
        }
        Capture { proc, lines: rx }
    }

    /// Stops tcpdump (SIGINT: it flushes and closes the file) and returns
    /// (packets captured, packets dropped by the kernel).
    fn stop(mut self) -> (u64, u64) {
        let st = self.proc.stop("-INT");
        let rest: Vec<String> = self.lines.iter().collect();
        let count = |label: &str| {
            rest.iter()
                .find_map(|l| l.strip_suffix(label))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {label:?} from tcpdump ({st}): {rest:?}"))
        };
        (
            count(" packets captured"),
            count(" packets dropped by kernel"),
        )
    }
}

// ---------------------------------------------------------------------------
// Reading results

/// The rows of a Zeek TSV log as column name -> value.
fn table(dir: &Path, log: &str) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(dir.join(log)) else {
        return Vec::new();
    };
    let fields: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .map(|f| f.split('\t').map(str::to_string).collect())
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            fields
                .iter()
                .cloned()
                .zip(l.split('\t').map(str::to_string))
                .collect()
        })
        .collect()
}

/// Standard base64 (the client's encoding of message bytes).
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// How mailtap should treat a FETCH literal labelled `section`: `None`
/// not extracted (one MIME part), else extracted with `partial`.
fn expected_partial(section: &str) -> Option<bool> {
    match section {
        "BODY[]" | "RFC822" | "BINARY[]" => Some(false),
        "BODY[HEADER]" | "BODY[TEXT]" | "RFC822.HEADER" | "RFC822.TEXT" => Some(true),
        s if s.starts_with("BODY[]<") => Some(true),
        _ => None,
    }
}

/// One message as the client saw it.
struct Seen {
    rec: Value,
    data: Vec<u8>,
    fetch: bool,
    partial: bool,
    /// The UID mailtap should report.
    uid: Option<u64>,
}

/// The messages of a session mailtap should extract, in wire order.
fn expected_messages(session: &Value) -> Vec<Seen> {
    let mut out = Vec::new();
    let msgs = session["messages"].as_array().unwrap();
    for (i, m) in msgs.iter().enumerate() {
        let data = unbase64(m["data"].as_str().unwrap());
        if m["direction"] == "fetch" {
            let Some(partial) = expected_partial(m["section"].as_str().unwrap()) else {
                continue;
            };
            out.push(Seen {
                rec: m.clone(),
                data,
                fetch: true,
                partial,
                uid: m["uid"].as_u64(),
            });
        } else {
            // APPENDUID's uid-set names the messages of one APPEND in
            // order (MULTIAPPEND: "2:3"); this message is its k-th.
            let set = m["uid_set"].as_str().unwrap();
            let uids: Vec<u64> = set
                .split(',')
                .flat_map(|r| {
                    let (a, b) = r.split_once(':').unwrap_or((r, r));
                    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                    a.min(b)..=a.max(b)
                })
                .collect();
            let k = msgs[..i]
                .iter()
                .rev()
                .take_while(|p| p["direction"] == "append" && p["uid_set"] == m["uid_set"])
                .count();
            out.push(Seen {
                rec: m.clone(),
                data,
                fetch: false,
                partial: false,
                uid: uids.get(k).copied(),
            });
        }
    }
    out
}

/// A Zeek TSV vector: comma-separated, `(empty)` when empty.
fn zeek_vector(v: &[String]) -> String {
    if v.is_empty() {
        "(empty)".into()
    } else {
        v.join(",")
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// imap.log's `commands`: `NAME:count` in order of first use.
fn command_counts(commands: &[String]) -> String {
    let mut order: Vec<(String, usize)> = Vec::new();
    for c in commands {
        match order.iter_mut().find(|(n, _)| n == c) {
            Some((_, k)) => *k += 1,
            None => order.push((c.clone(), 1)),
        }
    }
    order
        .iter()
        .map(|(n, k)| format!("{n}:{k}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------
// The test

#[test]
fn dovecot_session_is_logged_and_extracted_as_the_client_saw_it() {
    if let Some(why) = missing_prerequisite() {
        skip(TEST, &why);
        return;
    }
    let compress = has_imap_zlib();
    if !compress {
        // Part of the test cannot run: with MAILTAP_REQUIRE_ALL=1 a failure.
        skip(
            &format!("{TEST} (COMPRESS=DEFLATE part)"),
            "Dovecot's imap_zlib plugin not found",
        );
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let conf = dovecot_conf(dir, compress);
    let pcap = dir.join("imap.pcap");
    let record = dir.join("client.json");
    let dovecot_log = || std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();

    let lab = Lab::new('a');
    let mut dovecot = start_dovecot(&lab, &conf, dir);
    let capture = Capture::start(&lab, &pcap);

    let script = repo().join("tests/imap_dovecot/client.py");
    let mut client = vec![
        "ip",
        "netns",
        "exec",
        &lab.client_ns,
        "timeout",
        "60",
        "python3",
        // no __pycache__ in the source tree
        "-B",
        script.to_str().unwrap(),
        SERVER_IP,
        "143",
        USER,
        PASSWORD,
        record.to_str().unwrap(),
    ];
    if compress {
        client.push("--compress");
    }
    let o = cmd(&client);
    assert!(
        o.status.success(),
        "client failed ({}): {}{}\nDovecot's log:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        dovecot_log()
    );
    // The last FIN/ACK exchange: wait until the file stops growing, then
    // stop the capture (SIGINT: flushed and closed).
    wait_until_settled(&pcap);
    let (captured, dropped) = capture.stop();
    assert!(captured > 100, "only {captured} packets captured");
    assert_eq!(
        dropped, 0,
        "tcpdump lost packets: the capture is incomplete"
    );
    let st = dovecot.stop("-TERM");
    assert!(st.success(), "Dovecot ({st}): {}", dovecot_log());
    drop(lab);

    // For a look at a failure: MAILTAP_IMAP_DOVECOT_KEEP=DIR keeps the
    // capture and the client's record there.
    if let Some(keep) = std::env::var_os("MAILTAP_IMAP_DOVECOT_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&pcap, keep.join("imap.pcap")).unwrap();
        std::fs::copy(&record, keep.join("client.json")).unwrap();
    }
    let record: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let sessions = record["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), if compress { 4 } else { 3 });

    // mailtap reads the capture.
    let out = dir.join("out");
    let ex = dir.join("extract");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        out.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mailtap read: {}", stderr(&o));

    let conn = table(&out, "conn.log");
    let imap = table(&out, "imap.log");
    assert_eq!(
        conn.len(),
        sessions.len(),
        "one connection per session: {conn:?}"
    );
    assert_eq!(
        imap.len(),
        sessions.len(),
        "one imap.log row per session: {imap:?}"
    );
    let mut files_expected = 0;
    let mut checked_subject = false;
    for s in sessions {
        let name = s["name"].as_str().unwrap();
        let port = s["client_port"].as_u64().unwrap().to_string();
        let c: Vec<_> = conn.iter().filter(|r| r["id.orig_p"] == port).collect();
        assert_eq!(
            c.len(),
            1,
            "{name}: conn.log rows for port {port}: {conn:?}"
        );
        let c = c[0];
        assert_eq!(c["service"], "imap", "{name}: {c:?}");
        // The whole connection is in the capture, FINs and all.
        assert_eq!(c["conn_state"], "SF", "{name}: {c:?}");
        assert_eq!(c["missed_bytes"], "0", "{name}: {c:?}");
        assert_eq!(c["id.orig_h"], CLIENT_IP);
        assert_eq!(c["id.resp_h"], SERVER_IP);
        let uid = c["uid"].clone();

        // What the client sent and received.
        let want = expected_messages(s);
        let sum = |f: &dyn Fn(&Seen) -> bool| {
            let m: Vec<_> = want.iter().filter(|m| f(m)).collect();
            (m.len(), m.iter().map(|m| m.data.len()).sum::<usize>())
        };
        let whole = sum(&|m| m.fetch && !m.partial);
        let partial = sum(&|m| m.fetch && m.partial);
        let appended = sum(&|m| !m.fetch);
        assert!(!want.is_empty(), "{name}: the client did too little");

        // imap.log.
        let rows: Vec<_> = imap.iter().filter(|r| r["uid"] == uid).collect();
        assert_eq!(rows.len(), 1, "{name}: imap.log rows for {uid}: {imap:?}");
        let r = rows[0];
        let ctx = format!("{name}: {r:?}");
        assert_eq!(r["id.orig_p"], port, "{ctx}");
        assert_eq!(r["user"], USER, "{ctx}");
        assert_eq!(r["auth_method"], "LOGIN", "{ctx}");
        assert_eq!(r["login"], "success", "{ctx}");
        assert_eq!(
            r["login_failures"],
            s["login_failures"].to_string(),
            "{ctx}"
        );
        assert_eq!(
            r["mailboxes"],
            zeek_vector(&strings(&s["mailboxes"])),
            "{ctx}"
        );
        assert_eq!(
            r["commands"],
            command_counts(&strings(&s["commands"])),
            "{ctx}"
        );
        assert_eq!(r["messages_fetched"], whole.0.to_string(), "{ctx}");
        assert_eq!(r["bytes_fetched"], whole.1.to_string(), "{ctx}");
        assert_eq!(r["partial_fetched"], partial.0.to_string(), "{ctx}");
        assert_eq!(r["partial_bytes_fetched"], partial.1.to_string(), "{ctx}");
        assert_eq!(r["messages_appended"], appended.0.to_string(), "{ctx}");
        assert_eq!(r["bytes_appended"], appended.1.to_string(), "{ctx}");
        assert_eq!(r["starttls"], "F", "{ctx}");
        let tf = |b: bool| if b { "T" } else { "F" };
        assert_eq!(r["compress"], tf(s["compress"] == true), "{ctx}");
        assert_eq!(r["idle"], tf(s["idle"] == true), "{ctx}");
        if s["raw"] == true {
            // The raw clients saw every response.
            assert_eq!(
                r["capabilities"],
                strings(&s["capabilities"]).join(","),
                "{ctx}"
            );
            assert_eq!(r["no_responses"], s["no_responses"].to_string(), "{ctx}");
            assert_eq!(r["bad_responses"], s["bad_responses"].to_string(), "{ctx}");
            assert_eq!(
                r["last_response"],
                s["last_response"].as_str().unwrap(),
                "{ctx}"
            );
        }
        if s["compress"] == true {
            assert!(
                r["capabilities"]
                    .split(',')
                    .any(|c| c == "COMPRESS=DEFLATE"),
                "{ctx}"
            );
            // The wire carried deflated bytes: the message's marker is not
            // in the capture, yet mailtap extracted it (checked below).
            let marker = s["marker"].as_str().unwrap().as_bytes();
            let raw = std::fs::read(&pcap).unwrap();
            assert!(
                !raw.windows(marker.len()).any(|w| w == marker),
                "{name}: the marker travelled uncompressed"
            );
            assert!(
                want.iter()
                    .any(|m| m.data.windows(marker.len()).any(|w| w == marker)),
                "{name}: no message carries the marker"
            );
        }

        // Extraction: one .eml/.json pair per message, in wire order.
        for (i, m) in want.iter().enumerate() {
            let n = i + 1;
            let eml_path = ex.join(format!("{uid}-{n}.eml"));
            let eml = std::fs::read(&eml_path).unwrap_or_else(|e| {
                panic!(
                    "{name}: message {n} ({} {}): {e}",
                    m.rec["direction"], m.rec["section"]
                )
            });
            let doc: Value =
                serde_json::from_slice(&std::fs::read(ex.join(format!("{uid}-{n}.json"))).unwrap())
                    .unwrap();
            let ctx = format!(
                "{name} message {n}: client {} {} {}, mailtap {doc}",
                m.rec["direction"],
                m.rec["mailbox"],
                m.rec.get("section").unwrap_or(&Value::Null)
            );
            assert!(
                eml == m.data,
                "{ctx}: .eml differs ({} bytes, want {})",
                eml.len(),
                m.data.len()
            );
            assert_eq!(doc["protocol"], "imap", "{ctx}");
            assert_eq!(doc["user"], USER, "{ctx}");
            assert_eq!(doc["size"], m.data.len() as u64, "{ctx}");
            assert_eq!(doc["complete"], true, "{ctx}");
            assert_eq!(doc["missing_bytes"], 0, "{ctx}");
            assert_eq!(doc["partial"], m.partial, "{ctx}");
            assert_eq!(doc["tls"], false, "{ctx}");
            assert_eq!(doc["mailbox"], m.rec["mailbox"], "{ctx}");
            let mailbox = m.rec["mailbox"].as_str().unwrap();
            assert_eq!(doc["imap_uid"], Value::from(m.uid), "{ctx}");
            if m.fetch {
                assert_eq!(doc["direction"], "fetch", "{ctx}");
                assert_eq!(doc["section"], m.rec["section"], "{ctx}");
                assert_eq!(doc["seq"], m.rec["seq"], "{ctx}");
                assert_eq!(doc["uidvalidity"], s["uidvalidity"][mailbox], "{ctx}");
                assert_eq!(doc["imap_status"], Value::Null, "{ctx}");
                assert_eq!(doc["internal_date"], m.rec["internal_date"], "{ctx}");
                // FLAGS in the same response, or none.
                let flags = match &m.rec["flags"] {
                    Value::Null => Value::Array(Vec::new()),
                    f => f.clone(),
                };
                assert_eq!(doc["flags"], flags, "{ctx}");
            } else {
                assert_eq!(doc["direction"], "append", "{ctx}");
                assert_eq!(doc["section"], "APPEND", "{ctx}");
                assert_eq!(doc["imap_status"], "OK", "{ctx}");
                assert_eq!(doc["flags"], m.rec["flags"], "{ctx}");
                assert_eq!(doc["internal_date"], m.rec["date"], "{ctx}");
                assert_eq!(doc["uidvalidity"], m.rec["uidvalidity"], "{ctx}");
            }
            // The header as parsed (RFC 2047 decoded) for the one with
            // an encoded subject.
            if m.data.starts_with(b"From: carol@") && m.rec["section"] != "BODY[TEXT]" {
                assert_eq!(doc["headers"]["subject"], "medium \u{e9}t\u{e9}", "{ctx}");
                checked_subject = true;
            }
        }
        let n = want.len() + 1;
        assert!(
            !ex.join(format!("{uid}-{n}.eml")).exists(),
            "{name}: more messages extracted than the client saw"
        );
        files_expected += 2 * want.len();
    }
    assert!(checked_subject, "no message with the encoded subject");
    // Nothing else in the directory: no stray or temporary files.
    let names: Vec<String> = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), files_expected, "{names:?}");

    // files.log: the attachments, fetched (is_orig F) and appended (T).
    let files = table(&out, "files.log");
    assert!(files.iter().all(|f| f["source"] == "IMAP"), "{files:?}");
    for (file, dir) in [
        ("random-1.bin", "T"),
        ("random-1.bin", "F"),
        ("random-2.bin", "T"),
    ] {
        assert!(
            files
                .iter()
                .any(|f| f["filename"] == file && f["is_orig"] == dir),
            "no files.log row for {file} is_orig {dir}: {files:?}"
        );
    }

    // A real server's traffic is nothing odd.
    let weird = table(&out, "weird.log");
    assert!(weird.is_empty(), "{weird:?}");
    let logs = ["imap.log", "conn.log", "files.log"]
        .map(|l| std::fs::read_to_string(out.join(l)).unwrap_or_default());
    assert!(
        logs.iter().all(|l| !l.contains(PASSWORD)),
        "the password is in a log"
    );
    eprintln!(
        "imap_dovecot: {} sessions, {captured} packets, {:.1} s",
        sessions.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Dovecot with TLS: two sessions that turn on STARTTLS (imaplib's
/// `starttls()`, one limited to TLS 1.2 so the certificate crosses in the
/// clear, one with TLS 1.3), log in and fetch inside TLS. mailtap hands
/// each connection to its TLS analyzer after the server's OK: conn.log
/// says `imap,ssl`, imap.log says STARTTLS and knows nothing of what
/// followed (the login and the fetch are encrypted: no user, nothing
/// extracted), ssl.log has the version and cipher the client negotiated,
/// and for TLS 1.2 the certificate's fingerprint, which x509.log
/// describes.
#[test]
fn dovecot_starttls_sessions_go_to_the_tls_analyzer() {
    const TEST: &str = "imap_dovecot::dovecot_starttls_sessions_go_to_the_tls_analyzer";
    if let Some(why) = missing_prerequisite() {
        skip(TEST, &why);
        return;
    }
    if !runs(&["openssl", "version"]) {
        skip(TEST, "`openssl` not found");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let conf = dovecot_conf(dir, false);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    must(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=imap.mailtap.test/O=mailtap test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&conf).unwrap().replace(
        "ssl = no\n",
        &format!(
            "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
            cert.display(),
            key.display()
        ),
    );
    std::fs::write(&conf, text).unwrap();
    let pcap = dir.join("tls.pcap");
    let dovecot_log = || std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();

    let lab = Lab::new('t');
    let mut dovecot = start_dovecot(&lab, &conf, dir);
    let capture = Capture::start(&lab, &pcap);
    // One JSON line per session: the client port, the TLS version and
    // cipher it negotiated, the server certificate's SHA-256.
    let script = format!(
        r#"
import hashlib, imaplib, json, ssl
for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maxv
    M = imaplib.IMAP4("{SERVER_IP}", 143)
    port = M.sock.getsockname()[1]
    M.starttls(ssl_context=ctx)
    M.login("{USER}", "{PASSWORD}")
    M.select("INBOX")
    M.append("INBOX", None, None, b"Subject: inside TLS\r\n\r\nsecret body\r\n")
    M.fetch("1", "(BODY.PEEK[])")
    der = M.sock.getpeercert(binary_form=True)
    name = M.sock.cipher()[0]
    suite = [c["id"] & 0xffff for c in ctx.get_ciphers() if c["name"] == name]
    print(json.dumps({{"port": port, "version": M.sock.version(), "cipher": name,
                      "suite": suite[0] if suite else None,
                      "cert": hashlib.sha256(der).hexdigest()}}))
    M.logout()
"#
    );
    let o = cmd(&[
        "ip",
        "netns",
        "exec",
        &lab.client_ns,
        "timeout",
        "60",
        "python3",
        "-B",
        "-c",
        &script,
    ]);
    assert!(
        o.status.success(),
        "client failed ({}): {}{}\nDovecot's log:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        dovecot_log()
    );
    let seen: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seen.len(), 2);
    wait_until_settled(&pcap);
    let (captured, dropped) = capture.stop();
    assert!(
        captured > 20 && dropped == 0,
        "{captured} captured, {dropped} dropped"
    );
    let st = dovecot.stop("-TERM");
    assert!(st.success(), "Dovecot ({st}): {}", dovecot_log());
    drop(lab);

    let out = dir.join("out");
    let ex = dir.join("extract");
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        out.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mailtap read: {}", stderr(&o));
    let conn = table(&out, "conn.log");
    let imap = table(&out, "imap.log");
    let ssl = table(&out, "ssl.log");
    let x509 = table(&out, "x509.log");
    assert_eq!((conn.len(), imap.len(), ssl.len()), (2, 2, 2), "{conn:?}");
    // nothing of what went inside TLS
    let extracted = std::fs::read_dir(&ex).map_or(0, |d| d.count());
    assert_eq!(extracted, 0, "a message extracted from inside TLS");
    for s in &seen {
        let port = s["port"].as_u64().unwrap().to_string();
        let ctx = format!("session {s}");
        let by_port = |t: &[BTreeMap<String, String>]| {
            t.iter()
                .find(|r| r["id.orig_p"] == port)
                .cloned()
                .unwrap_or_else(|| panic!("{ctx}: no row for port {port}"))
        };
        let (c, i, l) = (by_port(&conn), by_port(&imap), by_port(&ssl));
        assert_eq!(c["service"], "imap,ssl", "{ctx}");
        assert_eq!(i["starttls"], "T", "{ctx}");
        assert_eq!(i["user"], "-", "{ctx}: the login was encrypted");
        assert_eq!(
            (
                i["messages_fetched"].as_str(),
                i["messages_appended"].as_str()
            ),
            ("0", "0")
        );
        assert!(
            i["commands"].contains("STARTTLS:1"),
            "{ctx}: {}",
            i["commands"]
        );
        let version = s["version"].as_str().unwrap().replace('.', "");
        assert_eq!(l["version"], version, "{ctx}");
        // Zeek logs IANA names; Python says OpenSSL's (the same in TLS
        // 1.3). The suites OpenSSL 3 picks here, from RFC 5289 / 7905.
        let iana = match s["suite"].as_u64() {
            Some(0xC02F) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Some(0xC030) => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Some(0xCCA8) => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Some(0x1301) => "TLS_AES_128_GCM_SHA256",
            Some(0x1302) => "TLS_AES_256_GCM_SHA384",
            Some(0x1303) => "TLS_CHACHA20_POLY1305_SHA256",
            other => panic!("{ctx}: suite {other:?} not in the test's table"),
        };
        assert_eq!(l["cipher"], iana, "{ctx}");
        assert_eq!(l["established"], "T", "{ctx}");
        assert_eq!(l["uid"], c["uid"], "{ctx}");
        let cert = s["cert"].as_str().unwrap();
        if version == "TLSv12" {
            assert_eq!(l["cert_chain_fps"], cert, "{ctx}");
            let x = x509
                .iter()
                .find(|r| r["fingerprint"] == cert)
                .unwrap_or_else(|| panic!("{ctx}: no x509.log row for {cert}: {x509:?}"));
            assert!(
                x["certificate.subject"].contains("CN=imap.mailtap.test"),
                "{x:?}"
            );
            assert_eq!(x["certificate.key_alg"], "rsaEncryption");
            assert_eq!(x["certificate.key_length"], "2048");
        } else {
            assert_eq!(version, "TLSv13", "{ctx}");
            // TLS 1.3 encrypts the Certificate message: unset, as Zeek
            // 8.2.2 logs it (its out/tls TLS 1.3 rows)
            assert_eq!(l["cert_chain_fps"], "-", "{ctx}");
        }
    }
    let weirds = rows(&out, "weird.log");
    assert!(weirds.is_empty(), "{weirds:?}");
}
