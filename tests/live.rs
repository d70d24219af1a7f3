//! `mailtap live` on real (virtual) links: each test makes a network
//! namespace and a veth pair (one or two queues), replays one of the
//! project's generated captures with tcpreplay from the namespace into our
//! end, captures it with AF_PACKET or AF_XDP (SKB and native mode) and
//! checks that
//!
//! - the logs hold the same rows (in any order) as `mailtap read` of the
//!   same capture, apart from the columns derived from the capture time
//!   (ts, uid, duration, fuid, fuids, parent_fuid): live timestamps are the
//!   capture times;
//! - the counters add up: tcpreplay's count = the summary = the sum over
//!   the queues = the sum of stats.log, no kernel drops, and for AF_XDP
//!   everything the XDP program redirected was captured;
//! - the XDP program leaves non-mail traffic to the host.
//!
//! They need root (namespaces, XDP), `ip` and `tcpreplay`; without them
//! they skip, saying so. Names carry the pid and a counter, so the tests
//! run in parallel with each other and with other test binaries.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds `mailtap live --duration` runs: start-up (~0.3 s) + the
/// longest replay (sample-smtp.pcap, 1.7 s at its own pace) + exchanges
/// and generous slack for a loaded machine.
const DURATION: f64 = 7.0;

/// Columns that depend on the capture time, so differ between live and read.
const TIME_DERIVED: &[&str] = &["ts", "uid", "duration", "fuid", "fuids", "parent_fuid"];

/// The logs compared with `mailtap read` (when either run wrote them).
const LOGS: &[&str] = &["conn.log", "smtp.log", "files.log", "weird.log", "pop3.log"];

fn smtp_pcap() -> PathBuf {
    sample()
}

fn pop3_pcap() -> PathBuf {
    repo().join("samples/sample-pop3.pcap")
}

// ---------------------------------------------------------------------------
// Skipping

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

fn tool_runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why these tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces and XDP need it)".into());
    }
    if !tool_runs("ip", "-V") {
        return Some("`ip` (iproute2) not found".into());
    }
    if !tool_runs("tcpreplay", "--version") {
        return Some("`tcpreplay` not found".into());
    }
    None
}

/// Returns from the test, saying why, when it cannot run here.
macro_rules! require_env {
    () => {
        if let Some(why) = missing_prerequisite() {
            common::skip(concat!(file!(), ":", line!()), &why);
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// Commands

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

// ---------------------------------------------------------------------------
// Namespace + veth

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace holding the peer end of a veth pair whose other end
/// (`ours`) is in the root namespace; both ends up, IPv6 off (no router
/// solicitations or DAD in the capture). Dropping it deletes both.
struct Veth {
    ns: String,
    ours: String,
    peer: String,
    /// IPv4 addresses (ours, peer) when given.
    addrs: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl Veth {
    /// `queues` RX and TX queues on each end; with `addressed`, a /30 from
    /// 198.19.0.0/16 (benchmarking space; `mailtap gen` uses 198.18/16) on the pair.
    fn new(queues: u32, addressed: bool) -> Veth {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // "mtl" + up to 7 pid digits + "x" + counter + "a"/"b": <= 15 bytes.
        let base = format!("mtl{pid}x{n}");
        let v = Veth {
            ns: base.clone(),
            ours: format!("{base}a"),
            peer: format!("{base}b"),
            addrs: None,
        };
        assert!(v.ours.len() <= 15, "interface name {} too long", v.ours);
        must(&["ip", "netns", "add", &v.ns]);
        // From here on Drop cleans up.
        let q = queues.to_string();
        let mut add = vec!["ip", "link", "add", &v.ours];
        if queues > 1 {
            add.extend(["numtxqueues", &q, "numrxqueues", &q]);
        }
        add.extend(["type", "veth", "peer", "name", &v.peer]);
        if queues > 1 {
            add.extend(["numtxqueues", &q, "numrxqueues", &q]);
        }
        add.extend(["netns", &v.ns]);
        must(&add);
        // Absent when IPv6 is off altogether: fine.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.ours),
            "1",
        );
        let _ = cmd(&[
            "ip",
            "netns",
            "exec",
            &v.ns,
            "sh",
            "-c",
            &format!("echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6", v.peer),
        ]);
        let mut v = v;
        if addressed {
            let third = (pid % 256) as u8;
            let fourth = ((n % 64) * 4) as u8;
            let ours = Ipv4Addr::new(198, 19, third, fourth + 1);
            let peer = Ipv4Addr::new(198, 19, third, fourth + 2);
            must(&["ip", "addr", "add", &format!("{ours}/30"), "dev", &v.ours]);
            must(&[
                "ip",
                "-n",
                &v.ns,
                "addr",
                "add",
                &format!("{peer}/30"),
                "dev",
                &v.peer,
            ]);
            v.addrs = Some((ours, peer));
        }
        must(&["ip", "link", "set", &v.ours, "up"]);
        must(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        v
    }

    /// Runs `args` inside the namespace.
    fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["ip", "netns", "exec", &self.ns];
        a.extend_from_slice(args);
        cmd(&a)
    }

    /// Replays `pcap` from the peer end at the capture's own pace.
    fn replay(&self, pcap: &Path) -> Replay {
        self.replay_with(pcap, &[])
    }

    /// Replays `pcap` from the peer end with extra tcpreplay options
    /// (e.g. `--topspeed`).
    fn replay_with(&self, pcap: &Path, opts: &[&str]) -> Replay {
        let mut a = vec!["timeout", "120", "tcpreplay", "-i", &self.peer];
        a.extend_from_slice(opts);
        a.push(pcap.to_str().unwrap());
        let o = self.exec(&a);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "tcpreplay failed ({}): {text}",
            o.status
        );
        let actual = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Actual: "))
            .unwrap_or_else(|| panic!("no 'Actual:' line from tcpreplay: {text}"));
        let packets = num_before(actual, " packets").expect("tcpreplay packet count");
        let bytes = num_after(actual, "(").expect("tcpreplay byte count");
        let failed = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Failed packets:"))
            .map(|v| v.trim().parse::<u64>().expect("failed packet count"))
            .unwrap_or_else(|| panic!("no 'Failed packets:' line from tcpreplay: {text}"));
        assert_eq!(failed, 0, "tcpreplay could not send every packet: {text}");
        assert_eq!(
            packets,
            pcap_packets(pcap),
            "tcpreplay sent a different number of packets than the capture holds: {text}"
        );
        Replay { packets, bytes }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes after.
        let _ = cmd(&["ip", "link", "del", &self.ours]);
        let _ = cmd(&["ip", "netns", "del", &self.ns]);
    }
}

struct Replay {
    packets: u64,
    bytes: u64,
}

/// Packets in a classic pcap (either byte order).
fn pcap_packets(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap();
    let le = match &b[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => panic!("{}: not a classic pcap ({m:02x?})", path.display()),
    };
    let (mut off, mut n) = (24usize, 0u64);
    while off + 16 <= b.len() {
        let f: [u8; 4] = b[off + 8..off + 12].try_into().unwrap();
        let caplen = if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        };
        off += 16 + caplen as usize;
        n += 1;
    }
    n
}

/// Writes the first `n` packets of the classic pcap `src` to `dst`.
fn pcap_head(src: &Path, n: usize, dst: &Path) {
    let b = std::fs::read(src).unwrap();
    let le = b[0] == 0xd4 || b[0] == 0x4d;
    let mut off = 24usize;
    for _ in 0..n {
        let f: [u8; 4] = b[off + 8..off + 12].try_into().unwrap();
        let caplen = if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        };
        off += 16 + caplen as usize;
        assert!(
            off <= b.len(),
            "{} has fewer than {n} packets",
            src.display()
        );
    }
    std::fs::write(dst, &b[..off]).unwrap();
}

/// The number just before `label` in `s` ("1797 packets" -> 1797).
fn num_before(s: &str, label: &str) -> Option<u64> {
    let i = s.find(label)?;
    s[..i].split_whitespace().last()?.parse().ok()
}

/// The number just after `label` in `s` ("kernel drops 0" -> 0).
fn num_after(s: &str, label: &str) -> Option<u64> {
    let i = s.find(label)? + label.len();
    s[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Running `mailtap live`

/// A running `mailtap live`; killed if dropped while still running (a
/// failed test), so it never outlives the test.
struct Live {
    child: Option<Child>,
    err: PathBuf,
}

impl Live {
    /// Starts `mailtap live -i <iface> <args> -o <out>` and returns once it
    /// captures: stats.log is written one stats interval after the sockets
    /// and workers are up, so its existence means the capture is ready.
    fn start(iface: &str, args: &[&str], out: &Path) -> Live {
        std::fs::create_dir_all(out).unwrap();
        let err = out.with_extension("stderr");
        let mut a = vec!["live", "-i", iface, "--stats-interval", "0.2", "-o"];
        a.push(out.to_str().unwrap());
        a.extend_from_slice(args);
        let child = Command::new(bin())
            .args(&a)
            // Some tests steer ports the host listens on, on purpose
            // (tests/live_caps.rs checks the refusal without this).
            .env("MAILTAP_XDP_HOST_SERVICES", "allow")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("spawn mailtap live");
        let mut live = Live {
            child: Some(child),
            err,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !out.join("stats.log").exists() {
            if let Some(st) = live.child.as_mut().unwrap().try_wait().unwrap() {
                live.child = None;
                panic!(
                    "mailtap {a:?} exited ({st}) before capturing: {}",
                    live.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mailtap {a:?} not capturing after 30 s (no stats.log): {}",
                live.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        live
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the exit (the run's --duration, or a signal sent), then
    /// parses the summary.
    fn finish(mut self) -> Summary {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs_f64(DURATION + 30.0);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mailtap live did not exit in time: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = self.stderr();
        assert!(
            status.success(),
            "mailtap live exited with {status}: {text}"
        );
        Summary::parse(&text)
    }

    /// SIGTERM, then [`Live::finish`].
    fn terminate(self) -> Summary {
        must(&["kill", "-TERM", &self.pid().to_string()]);
        self.finish()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Default)]
struct QueueLine {
    interface: String,
    queue: u32,
    packets: u64,
    bytes: u64,
    kernel_drops: u64,
    ring_full: u64,
    handed_off: u64,
    received: u64,
    handoff_drops: u64,
    flows: u64,
}

#[derive(Debug, Default)]
struct XdpLine {
    interface: String,
    mode: String,
    redirected: u64,
    not_tcp: u64,
    other_ports: u64,
    fragments: u64,
    malformed: u64,
}

/// "P packets (B bytes) of bypassed connections kept from ..." at the
/// end of the XDP or AF_PACKET socket filter line.
fn kept_from(r: &str) -> Option<(u64, u64)> {
    let tail = &r[r.rfind(": ").map_or(0, |i| i + 2)..];
    let tail = &tail[tail.rfind("; ").map_or(0, |i| i + 2)..];
    let (p, rest) = tail.split_once(" packets (")?;
    let (b, _) = rest.split_once(" bytes) of bypassed connections kept from")?;
    Some((p.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// mailtap's stderr summary.
#[derive(Debug, Default)]
struct Summary {
    packets: u64,
    bytes: u64,
    flows: u64,
    /// "conn=40 files=101 smtp=72"
    records: String,
    queues: Vec<QueueLine>,
    xdp: Vec<XdpLine>,
    /// Packets and IP bytes the kernel kept from mailtap (bypassed
    /// connections), XDP and socket filter together.
    kernel_bypassed: (u64, u64),
    /// Connections bypassed after their TLS handshake, of them in the
    /// kernel, and packets that reached mailtap after the kernel took
    /// their connection.
    bypassed_conns: u64,
    bypassed_kernel_conns: u64,
    bypass_leaked: u64,
    text: String,
}

impl Summary {
    fn parse(text: &str) -> Summary {
        let bad = |l: &str| -> ! { panic!("unexpected summary line {l:?} in:\n{text}") };
        let mut s = Summary {
            text: text.to_string(),
            ..Default::default()
        };
        let mut main = false;
        for l in text.lines() {
            let Some(r) = l.strip_prefix("mailtap: ") else {
                continue;
            };
            if r.starts_with("XDP on ") || r.starts_with("AF_PACKET socket filter: ") {
                let (p, b) = kept_from(r).unwrap_or_else(|| bad(l));
                s.kernel_bypassed.0 += p;
                s.kernel_bypassed.1 += b;
            }
            if let Some(b) = r.strip_prefix("bypass: ") {
                s.bypassed_conns = num_before(b, " connections").unwrap_or_else(|| bad(l));
                s.bypassed_kernel_conns = num_after(b, "(").unwrap_or_else(|| bad(l));
                let (_, leak) = b
                    .rsplit_once("bytes not analysed (")
                    .unwrap_or_else(|| bad(l));
                s.bypass_leaked = num_after(leak, "").unwrap_or_else(|| bad(l));
            }
            if let Some(x) = r.strip_prefix("XDP on ") {
                let (iface, rest) = x.split_once(" (").unwrap_or_else(|| bad(l));
                let (mode, _) = rest.split_once(" mode)").unwrap_or_else(|| bad(l));
                let n = |label| num_before(rest, label).unwrap_or_else(|| bad(l));
                s.xdp.push(XdpLine {
                    interface: iface.to_string(),
                    mode: mode.to_string(),
                    redirected: n(" redirected"),
                    not_tcp: n(" not TCP"),
                    other_ports: n(" other ports"),
                    fragments: n(" fragments"),
                    malformed: n(" malformed"),
                });
            } else if r.contains(" queue ") && r.contains(" flows") && r.contains("(core ") {
                let (iface, rest) = r.split_once(" queue ").unwrap();
                let (_, counts) = rest.split_once("): ").unwrap_or_else(|| bad(l));
                let n = |f: fn(&str, &str) -> Option<u64>, label| {
                    f(counts, label).unwrap_or_else(|| bad(l))
                };
                s.queues.push(QueueLine {
                    interface: iface.to_string(),
                    queue: num_after(rest, "").unwrap_or_else(|| bad(l)) as u32,
                    packets: n(num_before, " packets"),
                    bytes: n(num_before, " bytes"),
                    kernel_drops: n(num_after, "kernel drops"),
                    ring_full: n(num_after, "ring full"),
                    handed_off: n(num_after, "handed off"),
                    received: n(num_after, "received"),
                    handoff_drops: n(num_after, "handoff drops"),
                    flows: n(num_before, " flows"),
                });
            } else if r.contains(" packets (") && !main {
                main = true;
                s.packets = num_before(r, " packets").unwrap_or_else(|| bad(l));
                s.bytes = num_after(r, "(").unwrap_or_else(|| bad(l));
                s.flows = num_before(r, " flows").unwrap_or_else(|| bad(l));
                s.records = records_of(r).unwrap_or_else(|| bad(l));
            }
        }
        assert!(main, "no summary line in mailtap's stderr:\n{text}");
        assert!(!s.queues.is_empty(), "no queue lines in:\n{text}");
        s
    }

    fn total(&self, f: fn(&QueueLine) -> u64) -> u64 {
        self.queues.iter().map(f).sum()
    }

    /// Packets that reached mailtap or were counted for it by the kernel
    /// (bypassed connections).
    fn seen_packets(&self) -> u64 {
        self.packets + self.kernel_bypassed.0
    }

    /// The same in frame bytes: the kernel counts IP bytes, the frames of
    /// these captures have a 14-byte Ethernet header and no VLAN tag.
    fn seen_bytes(&self) -> u64 {
        self.bytes + self.kernel_bypassed.1 + 14 * self.kernel_bypassed.0
    }
}

/// "records: conn=40 files=101 smtp=72;" from a summary line.
fn records_of(line: &str) -> Option<String> {
    let i = line.find("records: ")? + "records: ".len();
    Some(line[i..].split(';').next()?.trim().to_string())
}

/// Checks that the counters agree with each other: the sum over the queue
/// lines is the summary, stats.log adds up to the same, nothing was
/// dropped, and (AF_XDP) the XDP program redirected exactly what the
/// queues captured.
fn check_counters(s: &Summary, out: &Path) {
    let t = &s.text;
    assert_eq!(
        s.total(|q| q.packets),
        s.packets,
        "queue packets vs summary:\n{t}"
    );
    assert_eq!(
        s.total(|q| q.bytes),
        s.bytes,
        "queue bytes vs summary:\n{t}"
    );
    assert_eq!(
        s.total(|q| q.flows),
        s.flows,
        "queue flows vs summary:\n{t}"
    );
    let kd = s.total(|q| q.kernel_drops);
    assert_eq!(
        kd, 0,
        "the kernel dropped {kd} packets at a replay rate of ~1000 packets/s: \
         the capture is too slow or the machine overloaded:\n{t}"
    );
    let rf = s.total(|q| q.ring_full);
    assert_eq!(rf, 0, "ring full {rf} times at ~1000 packets/s:\n{t}");
    assert_eq!(s.total(|q| q.handoff_drops), 0, "handoff drops:\n{t}");
    assert_eq!(
        s.total(|q| q.handed_off),
        s.total(|q| q.received),
        "every packet handed off is received by its shard:\n{t}"
    );
    assert!(!t.contains("mailtap: error"), "errors reported:\n{t}");
    if !s.xdp.is_empty() {
        let redirected: u64 = s.xdp.iter().map(|x| x.redirected).sum();
        assert_eq!(
            redirected, s.packets,
            "the XDP program redirected {redirected} packets but the queues captured {}:\n{t}",
            s.packets
        );
    }

    // stats.log: per-interval deltas plus a final row per queue.
    let st = ZeekLog::read(&out.join("stats.log")).expect("stats.log");
    let sum = |col: &str| -> u64 {
        st.column(col)
            .iter()
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("stats.log {col} {v:?}"))
            })
            .sum()
    };
    assert_eq!(
        sum("pkts_proc"),
        s.packets,
        "stats.log pkts_proc vs summary:\n{t}"
    );
    assert_eq!(
        sum("bytes_recv"),
        s.bytes,
        "stats.log bytes_recv vs summary:\n{t}"
    );
    assert_eq!(
        sum("pkts_dropped"),
        kd,
        "stats.log pkts_dropped vs summary:\n{t}"
    );
    assert_eq!(sum("ring_full"), rf, "stats.log ring_full vs summary:\n{t}");
    assert_eq!(
        sum("handed_off"),
        s.total(|q| q.handed_off),
        "stats.log handed_off vs summary:\n{t}"
    );
    assert_eq!(
        sum("handoff_received"),
        s.total(|q| q.received),
        "stats.log handoff_received vs summary:\n{t}"
    );
    let mut st_queues: Vec<(String, String)> = st
        .column("interface")
        .into_iter()
        .zip(st.column("queue"))
        .map(|(i, q)| (i.to_string(), q.to_string()))
        .collect();
    st_queues.sort();
    st_queues.dedup();
    let mut sum_queues: Vec<(String, String)> = s
        .queues
        .iter()
        .map(|q| (q.interface.clone(), q.queue.to_string()))
        .collect();
    sum_queues.sort();
    assert_eq!(st_queues, sum_queues, "stats.log queues vs summary");
    let per_queue = st.rows.len() / s.queues.len().max(1);
    assert!(
        st.rows.len() == per_queue * s.queues.len() && per_queue >= 2,
        "stats.log: {} rows for {} queues (a row per queue per 0.2 s interval, and a final one)",
        st.rows.len(),
        s.queues.len()
    );
}

// ---------------------------------------------------------------------------
// Logs

/// Picks rows (by column name) to leave out of a comparison.
type RowFilter<'a> = dyn Fn(&BTreeMap<&str, &str>) -> bool + 'a;

struct ZeekLog {
    fields: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl ZeekLog {
    fn read(path: &Path) -> Option<ZeekLog> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut fields = Vec::new();
        let mut rows = Vec::new();
        for l in text.lines() {
            if let Some(f) = l.strip_prefix("#fields\t") {
                fields = f.split('\t').map(str::to_string).collect();
            } else if !l.starts_with('#') {
                rows.push(l.split('\t').map(str::to_string).collect());
            }
        }
        assert!(!fields.is_empty(), "{}: no #fields line", path.display());
        Some(ZeekLog { fields, rows })
    }

    fn column(&self, name: &str) -> Vec<&str> {
        let i = self
            .fields
            .iter()
            .position(|f| f == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.fields));
        self.rows.iter().map(|r| r[i].as_str()).collect()
    }

    /// The rows without the time-derived columns, sorted; `drop_row`
    /// leaves rows out (by field name).
    fn comparable(&self, drop_row: &RowFilter<'_>) -> (String, Vec<String>) {
        let keep: Vec<usize> = (0..self.fields.len())
            .filter(|&i| !TIME_DERIVED.contains(&self.fields[i].as_str()))
            .collect();
        let header = keep
            .iter()
            .map(|&i| self.fields[i].as_str())
            .collect::<Vec<_>>()
            .join("\t");
        let mut rows: Vec<String> = self
            .rows
            .iter()
            .filter(|r| {
                let named: BTreeMap<&str, &str> = self
                    .fields
                    .iter()
                    .map(String::as_str)
                    .zip(r.iter().map(String::as_str))
                    .collect();
                !drop_row(&named)
            })
            .map(|r| {
                keep.iter()
                    .map(|&i| r.get(i).map_or("<missing>", |v| v.as_str()))
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect();
        rows.sort();
        (header, rows)
    }
}

/// Runs `mailtap read` on `pcap` (with `sets`) into `out`; returns its
/// summary's records.
fn read_reference(pcap: &Path, sets: &[&str], out: &Path) -> String {
    let mut a = vec!["read", "--no-progress", "-o", out.to_str().unwrap()];
    a.extend_from_slice(sets);
    a.push(pcap.to_str().unwrap());
    let (o, _) = run(&a);
    let text = stderr(&o);
    assert!(o.status.success(), "mailtap {a:?}: {text}");
    text.lines()
        .find(|l| l.starts_with("mailtap: ") && l.contains(" packets ("))
        .and_then(records_of)
        .unwrap_or_else(|| panic!("no summary from mailtap read: {text}"))
}

/// Asserts that `live` holds the same log files as `reference` and the
/// same rows in each (sorted, time-derived columns left out); rows of
/// `live` for which `extra` holds are left out first.
fn assert_same_logs(reference: &Path, live: &Path, extra: &RowFilter<'_>) {
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log") && n != "stats.log")
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(live),
        names(reference),
        "log files of mailtap live ({}) vs mailtap read ({})",
        live.display(),
        reference.display()
    );
    assert!(
        reference.join("conn.log").exists(),
        "mailtap read wrote no conn.log"
    );
    let mut failures = Vec::new();
    for log in LOGS {
        let want = ZeekLog::read(&reference.join(log));
        let got = ZeekLog::read(&live.join(log));
        let (want, got) = match (want, got) {
            (None, None) => continue,
            (Some(w), Some(g)) => (w, g),
            (w, _) => {
                failures.push(format!(
                    "{log}: only {} has it",
                    if w.is_some() { "read" } else { "live" }
                ));
                continue;
            }
        };
        let (wh, wr) = want.comparable(&|_| false);
        let (gh, gr) = got.comparable(extra);
        if wh != gh {
            failures.push(format!(
                "{log}: columns differ:\n  read: {wh}\n  live: {gh}"
            ));
            continue;
        }
        if wr != gr {
            failures.push(diff(log, &wh, &wr, &gr));
        }
        assert!(!wr.is_empty() || *log != "conn.log", "empty conn.log");
    }
    assert!(
        failures.is_empty(),
        "mailtap live ({}) differs from mailtap read ({}):\n{}",
        live.display(),
        reference.display(),
        failures.join("\n")
    );
}

/// The rows only in one side (as multisets), at most 10 of each.
fn diff(log: &str, header: &str, want: &[String], got: &[String]) -> String {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for r in want {
        *count.entry(r).or_default() += 1;
    }
    for r in got {
        *count.entry(r).or_default() -= 1;
    }
    let only_read: Vec<&str> = count
        .iter()
        .filter(|(_, &c)| c > 0)
        .map(|(r, _)| *r)
        .collect();
    let only_live: Vec<&str> = count
        .iter()
        .filter(|(_, &c)| c < 0)
        .map(|(r, _)| *r)
        .collect();
    let mut s = format!(
        "{log}: {} rows from read, {} from live; {} only in read, {} only in live\n  columns: {header}\n",
        want.len(),
        got.len(),
        only_read.len(),
        only_live.len()
    );
    for r in only_read.iter().take(10) {
        s.push_str(&format!("  - read: {r}\n"));
    }
    for r in only_live.iter().take(10) {
        s.push_str(&format!("  + live: {r}\n"));
    }
    s
}

fn no_rows(_: &BTreeMap<&str, &str>) -> bool {
    false
}

// ---------------------------------------------------------------------------
// The common scenario

/// Replays `pcap` into a fresh `queues`-queue veth while `mailtap live
/// --duration` runs with `args`, and checks logs and counters against
/// `mailtap read` of the same capture. Returns the summary.
fn replay_and_compare(queues: u32, pcap: &Path, args: &[&str]) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(queues, false);
    let d = DURATION.to_string();
    let mut a = vec!["--duration", &d];
    a.extend_from_slice(args);
    let mut live = Live::start(&veth.ours, &a, &dir.path().join("live"));
    let sent = veth.replay(pcap);
    assert!(
        live.running(),
        "mailtap's --duration {DURATION} ended before the replay did; raise DURATION: {}",
        live.stderr()
    );
    let s = live.finish();
    let want = read_reference(pcap, &[], &dir.path().join("read"));
    check_counters(&s, &dir.path().join("live"));
    assert_eq!(
        s.seen_packets(),
        sent.packets,
        "captured vs sent:\n{}",
        s.text
    );
    assert_eq!(
        s.seen_bytes(),
        sent.bytes,
        "bytes captured vs sent:\n{}",
        s.text
    );
    assert_eq!(s.records, want, "records: live vs read:\n{}", s.text);
    assert_same_logs(&dir.path().join("read"), &dir.path().join("live"), &no_rows);
    assert_eq!(s.queues.len(), queues as usize, "queue lines:\n{}", s.text);
    assert!(
        s.queues.iter().all(|q| q.interface == veth.ours),
        "{}",
        s.text
    );
    s
}

fn assert_xdp_mode(s: &Summary, mode: &str) {
    assert_eq!(s.xdp.len(), 1, "one XDP line:\n{}", s.text);
    assert_eq!(s.xdp[0].mode, mode, "XDP mode:\n{}", s.text);
    assert_eq!(s.xdp[0].interface, s.queues[0].interface, "{}", s.text);
    assert_eq!(s.xdp[0].malformed + s.xdp[0].fragments, 0, "{}", s.text);
}

// ---------------------------------------------------------------------------
// Tests: captures match `mailtap read`

#[test]
fn af_packet_single_queue_matches_read() {
    require_env!();
    let s = replay_and_compare(1, &smtp_pcap(), &["--capture", "af-packet"]);
    assert!(s.xdp.is_empty(), "no XDP with AF_PACKET:\n{}", s.text);
}

#[test]
fn af_xdp_skb_single_queue_matches_read() {
    require_env!();
    let s = replay_and_compare(
        1,
        &smtp_pcap(),
        &["--capture", "af-xdp", "--xdp-mode", "skb"],
    );
    assert_xdp_mode(&s, "Skb");
}

#[test]
fn af_xdp_native_single_queue_matches_read() {
    require_env!();
    let s = replay_and_compare(
        1,
        &smtp_pcap(),
        &["--capture", "af-xdp", "--xdp-mode", "native"],
    );
    assert_xdp_mode(&s, "Native");
}

#[test]
fn af_xdp_native_two_queues_hand_off_and_match_read() {
    require_env!();
    let s = replay_and_compare(
        2,
        &smtp_pcap(),
        &[
            "--capture",
            "af-xdp",
            "--xdp-mode",
            "native",
            "--queues",
            "0,1",
        ],
    );
    assert_xdp_mode(&s, "Native");
    let queues: Vec<u32> = s.queues.iter().map(|q| q.queue).collect();
    assert_eq!(queues, [0, 1], "{}", s.text);
    let (off, rcv) = (s.total(|q| q.handed_off), s.total(|q| q.received));
    assert!(
        off == rcv && off > 0,
        "two workers must hand packets of each other's flows over (handed off {off}, received {rcv}):\n{}",
        s.text
    );
}

#[test]
fn af_packet_two_fanout_rings_match_read() {
    require_env!();
    let s = replay_and_compare(
        2,
        &smtp_pcap(),
        &["--capture", "af-packet", "--queues", "0,1"],
    );
    assert!(s.xdp.is_empty(), "{}", s.text);
    assert!(
        s.queues.iter().all(|q| q.packets > 0),
        "the fanout group spreads flows over both rings:\n{}",
        s.text
    );
}

#[test]
fn pop3_capture_matches_read() {
    require_env!();
    let s = replay_and_compare(
        1,
        &pop3_pcap(),
        &["--capture", "af-xdp", "--xdp-mode", "native"],
    );
    assert_xdp_mode(&s, "Native");
    assert!(s.records.contains("pop3="), "{}", s.text);
}

/// A STARTTLS-heavy capture from the generator's `mta` mix: 200 sessions
/// with recorded TLS handshakes, about 11 k packets over 2.5 s.
fn starttls_pcap(dir: &Path) -> PathBuf {
    let pcap = dir.join("mta.pcap");
    let o = cmd(&[
        bin(),
        "gen",
        "-o",
        pcap.to_str().unwrap(),
        "--mix",
        "mta",
        "--sessions",
        "200",
        "--concurrency",
        "20",
        "--seed",
        "5",
    ]);
    assert!(o.status.success(), "mailtap gen: {}", stderr(&o));
    pcap
}

/// Replays STARTTLS sessions into a veth: once a session's TLS handshake
/// is analysed the kernel keeps its packets from mailtap (XDP_DROP or the
/// AF_PACKET socket filter) and counts them, and conn.log, ssl.log,
/// x509.log and the rest still equal `mailtap read` of the capture, with
/// every packet and byte accounted for.
/// `max_leak_percent`: of the kernel-kept packets, how many more may
/// reach mailtap before the kernel took their connection over.
fn kernel_bypass_matches_read(args: &[&str], max_leak_percent: u64) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let pcap = starttls_pcap(dir.path());
    let s = replay_and_compare(1, &pcap, args);
    let t = &s.text;
    assert!(s.records.contains("ssl="), "{t}");
    assert!(
        s.bypassed_conns >= 100,
        "most of 155 TLS sessions bypassed:\n{t}"
    );
    assert_eq!(
        s.bypassed_kernel_conns, s.bypassed_conns,
        "every bypassed connection in the kernel:\n{t}"
    );
    // The bulk of the encrypted dialogue never reached user space.
    assert!(
        s.kernel_bypassed.0 * 3 >= s.seen_packets(),
        "the kernel kept at least a third of all packets from mailtap:\n{t}"
    );
    // Packets of a connection that the kernel queued for mailtap before
    // the worker put the connection into the map reach user space (they
    // are handled as bypassed there).
    assert!(
        s.bypass_leaked * 100 <= s.kernel_bypassed.0 * max_leak_percent,
        "at most {max_leak_percent}% of the bypassed packets reached mailtap:\n{t}"
    );
    s
}

#[test]
fn af_xdp_skb_kernel_bypass_after_tls_handshake_matches_read() {
    require_env!();
    // AF_XDP hands each packet over at once: the worker updates the map
    // microseconds after the handshake's last packet (5 of 6,400 leaked
    // when measured on an idle machine; 73 of 6,343, 1.15%, with the
    // suite's other tests and a build sharing the 2 cores). A bypass that
    // did not work would leak nearly all of them.
    let s = kernel_bypass_matches_read(&["--capture", "af-xdp", "--xdp-mode", "skb"], 5);
    assert_xdp_mode(&s, "Skb");
}

#[test]
fn af_packet_socket_filter_bypass_after_tls_handshake_matches_read() {
    require_env!();
    // TPACKET_V3 hands packets over a block at a time (after up to
    // live.afpacket_block_timeout_ms, 10 ms): the packets of a connection
    // that arrived in that block after its handshake reach mailtap (401
    // of 6,400 when measured at 4,400 packets/s).
    let s = kernel_bypass_matches_read(&["--capture", "af-packet"], 15);
    assert!(
        s.text.contains("AF_PACKET socket filter: "),
        "the socket filter was loaded:\n{}",
        s.text
    );
}

#[test]
fn sigterm_flushes_the_logs() {
    require_env!();
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(1, false);
    // The first 1000 of the sample's 1797 packets: most sessions are still
    // open when the signal comes, so their rows come from the flush at
    // exit (as `mailtap read` flushes them at the end of the file).
    let pcap = dir.path().join("first-1000.pcap");
    pcap_head(&smtp_pcap(), 1000, &pcap);
    // No --duration: runs until signalled. AF_XDP in auto mode.
    let mut live = Live::start(
        &veth.ours,
        &["--capture", "af-xdp"],
        &dir.path().join("live"),
    );
    let sent = veth.replay(&pcap);
    assert_eq!(sent.packets, 1000);
    // Let the last packets through the softirq and the ring.
    std::thread::sleep(Duration::from_millis(500));
    assert!(live.running(), "mailtap exited unasked: {}", live.stderr());
    let s = live.terminate();
    assert_eq!(s.xdp.len(), 1, "AF_XDP auto mode attached:\n{}", s.text);
    let want = read_reference(&pcap, &[], &dir.path().join("read"));
    let conn = ZeekLog::read(&dir.path().join("read/conn.log")).unwrap();
    let open = conn
        .column("conn_state")
        .iter()
        .filter(|c| **c != "SF")
        .count();
    assert!(open >= 5, "only {open} sessions open at the cut");
    check_counters(&s, &dir.path().join("live"));
    assert_eq!(s.seen_packets(), sent.packets, "{}", s.text);
    assert_eq!(s.seen_bytes(), sent.bytes, "{}", s.text);
    assert_eq!(s.records, want, "{}", s.text);
    assert_same_logs(&dir.path().join("read"), &dir.path().join("live"), &no_rows);
    for log in ["conn.log", "smtp.log", "files.log", "stats.log"] {
        let text = std::fs::read_to_string(dir.path().join("live").join(log)).unwrap();
        assert!(
            text.lines().last().unwrap_or("").starts_with("#close\t"),
            "{log} closed on SIGTERM"
        );
    }
}

#[test]
fn bad_interface_fails_naming_it() {
    // Needs no root: the interface is looked up first.
    let dir = tempfile::tempdir().unwrap();
    let name = format!("mtnone{}", std::process::id());
    for capture in ["af-packet", "af-xdp"] {
        let (o, _) = run(&[
            "live",
            "-i",
            &name,
            "--capture",
            capture,
            "--duration",
            "1",
            "-o",
            dir.path().to_str().unwrap(),
        ]);
        let e = stderr(&o);
        assert!(
            !o.status.success(),
            "{capture}: exit {} for a missing interface",
            o.status
        );
        assert!(
            e.contains(&name),
            "{capture}: stderr does not name {name}: {e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Tests: the XDP program and the host's other traffic

/// A TCP echo server (one line per connection) and a UDP sink on our
/// address, run in this process in the root namespace.
struct HostServices {
    tcp_port: u16,
    udp_port: u16,
    accepted: Arc<AtomicUsize>,
    udp_received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HostServices {
    fn start(ip: Ipv4Addr) -> HostServices {
        // 8080 unless something on the host holds it; any non-mail port
        // will do.
        let listener = TcpListener::bind((ip, 8080))
            .or_else(|_| TcpListener::bind((ip, 0)))
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp_port = listener.local_addr().unwrap().port();
        let udp_port = udp.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let udp_received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let t1 = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut line = String::new();
                            if BufReader::new(&s).read_line(&mut line).is_ok() {
                                let _ = (&s).write_all(format!("echo {line}").as_bytes());
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        let t2 = {
            let (udp_received, stop) = (udp_received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = udp.recv_from(&mut buf) {
                        udp_received.fetch_add(1, Ordering::Relaxed);
                        let _ = udp.send_to(&buf[..n], from);
                    }
                }
            })
        };
        HostServices {
            tcp_port,
            udp_port,
            accepted,
            udp_received,
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// From the namespace: one line over TCP to `ip:port`, within `secs`;
/// returns what came back (or the failure).
fn tcp_exchange(veth: &Veth, ip: Ipv4Addr, port: u16, secs: u32) -> Result<String, String> {
    let script = format!(
        "exec 3<>/dev/tcp/{ip}/{port} && echo hello-{ns} >&3 && read -r l <&3 && echo \"$l\"",
        ns = veth.ns
    );
    let o = veth.exec(&["timeout", &secs.to_string(), "bash", "-c", &script]);
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if o.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{} {out} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// From the namespace: one UDP datagram to `ip:port`.
fn udp_send(veth: &Veth, ip: Ipv4Addr, port: u16) {
    let script = format!("echo ping >/dev/udp/{ip}/{port}");
    let o = veth.exec(&["timeout", "5", "bash", "-c", &script]);
    assert!(
        o.status.success(),
        "udp send: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn wait_for(what: &str, secs: u64, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With the XDP program steering only the mail ports (dpd off), TCP to
/// another port and non-TCP traffic reach the host while the mail capture
/// goes on and still matches `mailtap read`.
/// `sets` must keep the XDP program to the mail ports.
fn non_mail_traffic_flows(mode: &str, mode_name: &str, sets: [&str; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(1, true);
    let (ours, _) = veth.addrs.unwrap();
    let host = HostServices::start(ours);
    let pcap = smtp_pcap();
    let d = DURATION.to_string();
    let mut live = Live::start(
        &veth.ours,
        &[
            "--capture",
            "af-xdp",
            "--xdp-mode",
            mode,
            "--duration",
            &d,
            sets[0],
            sets[1],
        ],
        &dir.path().join("live"),
    );
    let before = tcp_exchange(&veth, ours, host.tcp_port, 10)
        .unwrap_or_else(|e| panic!("TCP to port {} while XDP runs: {e}", host.tcp_port));
    assert_eq!(before, format!("echo hello-{}", veth.ns));
    udp_send(&veth, ours, host.udp_port);
    wait_for("the UDP datagram", 5, || {
        host.udp_received.load(Ordering::Relaxed) >= 1
    });
    let sent = veth.replay(&pcap);
    let after = tcp_exchange(&veth, ours, host.tcp_port, 10)
        .unwrap_or_else(|e| panic!("TCP to port {} after the replay: {e}", host.tcp_port));
    assert_eq!(after, before);
    assert!(live.running(), "--duration too short: {}", live.stderr());
    let s = live.finish();
    assert_eq!(host.accepted.load(Ordering::Relaxed), 2);
    assert_xdp_mode(&s, mode_name);
    let x = &s.xdp[0];
    assert!(
        x.other_ports >= 8,
        "two TCP connections to port {} passed to the host (>= 8 packets):\n{}",
        host.tcp_port,
        s.text
    );
    assert!(
        x.not_tcp >= 2,
        "ARP and UDP passed to the host:\n{}",
        s.text
    );
    // Only the replayed mail was redirected and captured.
    check_counters(&s, &dir.path().join("live"));
    assert_eq!(
        x.redirected + s.kernel_bypassed.0,
        sent.packets,
        "{}",
        s.text
    );
    assert_eq!(s.seen_packets(), sent.packets, "{}", s.text);
    let want = read_reference(&pcap, &sets, &dir.path().join("read"));
    assert_eq!(s.records, want, "{}", s.text);
    assert_same_logs(&dir.path().join("read"), &dir.path().join("live"), &no_rows);
}

#[test]
fn xdp_skb_leaves_non_mail_traffic_to_the_host() {
    require_env!();
    non_mail_traffic_flows("skb", "Skb", ["--set", "dpd.enabled=false"]);
}

#[test]
fn xdp_native_leaves_non_mail_traffic_to_the_host() {
    require_env!();
    // DPD stays on; only the steering is limited to the mail ports (the
    // setting for a DaemonSet on a node's own NIC).
    non_mail_traffic_flows("native", "Native", ["--set", "live.xdp_steer=mail-ports"]);
}

/// With dpd on (the default) the XDP program takes all TCP: a connection
/// to another port never reaches the host (mailtap sees its SYNs), while
/// non-TCP still does and the mail capture still matches `mailtap read`.
#[test]
fn xdp_all_tcp_takes_other_ports_from_the_host() {
    require_env!();
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(1, true);
    let (ours, peer) = veth.addrs.unwrap();
    let host = HostServices::start(ours);
    let pcap = smtp_pcap();
    let d = DURATION.to_string();
    let mut live = Live::start(
        &veth.ours,
        &[
            "--capture",
            "af-xdp",
            "--xdp-mode",
            "native",
            "--duration",
            &d,
        ],
        &dir.path().join("live"),
    );
    udp_send(&veth, ours, host.udp_port);
    wait_for("the UDP datagram", 5, || {
        host.udp_received.load(Ordering::Relaxed) >= 1
    });
    let r = tcp_exchange(&veth, ours, host.tcp_port, 2);
    assert!(
        r.is_err(),
        "TCP to port {} got through: {r:?}",
        host.tcp_port
    );
    let sent = veth.replay(&pcap);
    assert!(live.running(), "--duration too short: {}", live.stderr());
    let s = live.finish();
    assert_eq!(
        host.accepted.load(Ordering::Relaxed),
        0,
        "the host accepted"
    );
    assert_xdp_mode(&s, "Native");
    let x = &s.xdp[0];
    assert_eq!(x.other_ports, 0, "{}", s.text);
    assert!(
        x.not_tcp >= 2,
        "ARP and UDP passed to the host:\n{}",
        s.text
    );
    check_counters(&s, &dir.path().join("live"));
    assert!(
        x.redirected + s.kernel_bypassed.0 > sent.packets,
        "the SYNs to port {} were redirected too:\n{}",
        host.tcp_port,
        s.text
    );
    // mailtap logged the stolen connection; apart from it, the same logs.
    let port = host.tcp_port.to_string();
    let conn = ZeekLog::read(&dir.path().join("live/conn.log")).unwrap();
    let stolen: Vec<_> = conn
        .column("id.resp_p")
        .into_iter()
        .zip(conn.column("id.orig_h"))
        .filter(|(p, h)| *p == port && *h == peer.to_string())
        .collect();
    assert_eq!(
        stolen.len(),
        1,
        "conn.log row for the port {port} connection"
    );
    read_reference(&pcap, &[], &dir.path().join("read"));
    let ns_ip = peer.to_string();
    assert_same_logs(
        &dir.path().join("read"),
        &dir.path().join("live"),
        &|r: &BTreeMap<&str, &str>| r.get("id.orig_h") == Some(&ns_ip.as_str()),
    );
}

/// `GET /metrics` on `addr`, the body.
/// `GET path` on the metrics endpoint: (status line, body).
fn probe(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.to_string()
}

/// The value of one sample line `name{labels} value` (labels as written).
fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing from:\n{body}"))
        .parse()
        .unwrap()
}

/// `--metrics-listen` serves the live counters in Prometheus text format
/// while capture runs, and they agree with what was replayed; with
/// `--kafka` (librdkafka's mock cluster) the Kafka counters too.
#[test]
fn metrics_endpoint_reports_the_live_counters() {
    require_env!();
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(1, false);
    let mc = mailtap_kafka::rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let bs = mc.bootstrap_servers();
    let spill = format!(
        "kafka.spill_dir={:?}",
        dir.path().join("spill").to_str().unwrap()
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let d = DURATION.to_string();
    let mut live = Live::start(
        &veth.ours,
        &[
            "--capture",
            "af-packet",
            "--duration",
            &d,
            "--metrics-listen",
            &addr,
            "--kafka",
            &bs,
            "--set",
            &spill,
            // Every packet reaches the queue counters (no kernel bypass).
            "--set",
            "live.bypass=off",
        ],
        &dir.path().join("live"),
    );
    let pcap = smtp_pcap();
    let sent = veth.replay(&pcap);
    // Workers publish every 100 ms; records reach the collector within it.
    let labels = format!(
        "{{interface=\"{}\",queue=\"0\",capture=\"af_packet\"}}",
        veth.ours
    );
    let mut body = String::new();
    let value = |body: &str, n: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(n)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    for _ in 0..100 {
        body = scrape(&addr);
        if metric(&body, &format!("mailtap_queue_packets_total{labels}")) as u64 == sent.packets
            && value(&body, "mailtap_kafka_records_total").is_some_and(|r| r > 0.0)
            && value(&body, "mailtap_kafka_delivered_total")
                == value(&body, "mailtap_kafka_produced_total")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(live.running(), "{}", live.stderr());
    // The Kubernetes probes: workers and collector alive, capturing.
    let (status, text) = probe(&addr, "/healthz");
    assert!(status.contains(" 200 "), "/healthz: {status}\n{text}");
    assert_eq!(text, "ok\n");
    let (status, text) = probe(&addr, "/readyz");
    assert!(status.contains(" 200 "), "/readyz: {status}\n{text}");
    assert_eq!(
        metric(&body, &format!("mailtap_queue_packets_total{labels}")) as u64,
        sent.packets,
        "{body}"
    );
    assert_eq!(
        metric(&body, &format!("mailtap_queue_bytes_total{labels}")) as u64,
        sent.bytes
    );
    assert_eq!(
        metric(&body, &format!("mailtap_queue_kernel_drops_total{labels}")),
        0.0
    );
    assert_eq!(
        metric(&body, &format!("mailtap_queue_flows_total{labels}")),
        40.0
    );
    assert!(
        metric(&body, "mailtap_collector_records_total{type=\"smtp\"}") > 0.0,
        "{body}"
    );
    assert!(
        metric(&body, "mailtap_collector_batches_total") > 0.0,
        "{body}"
    );
    assert!(
        metric(&body, "mailtap_record_emit_latency_seconds_count") > 0.0,
        "{body}"
    );
    assert!(
        metric(
            &body,
            "mailtap_record_write_latency_seconds_bucket{le=\"+Inf\"}"
        ) > 0.0,
        "{body}"
    );
    assert!(metric(&body, "mailtap_kafka_records_total") > 0.0, "{body}");
    assert_eq!(
        metric(&body, "mailtap_kafka_delivered_total"),
        metric(&body, "mailtap_kafka_produced_total"),
        "{body}"
    );
    assert_eq!(metric(&body, "mailtap_kafka_spill_dropped_total"), 0.0);
    assert!(
        metric(&body, "mailtap_kafka_delivery_latency_seconds_count") > 0.0,
        "{body}"
    );
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {l:?}"));
        assert!(v.parse::<f64>().is_ok(), "bad value in {l:?}");
    }
    let s = live.finish();
    assert_eq!(s.packets, sent.packets, "{}", s.text);
}

// ---------------------------------------------------------------------------
// Bursts: the default rings absorb a stalled worker

/// Packets of a burst: more than 50 ms of 1 Gbit/s of small frames
/// (143-byte frames plus 20 bytes of preamble and gap: 767 k frames/s, so
/// 38,344 in 50 ms), which the default rings must hold with the worker
/// stopped.
const BURST: usize = 40_000;

/// A capture of exactly [`BURST`] small-frame mail packets
/// (`mailtap gen --mix small`), cut at [`BURST`].
fn burst_pcap(dir: &Path) -> PathBuf {
    let full = dir.join("small-full.pcap");
    let o = cmd(&[
        bin(),
        "gen",
        "-o",
        full.to_str().unwrap(),
        "--mix",
        "small",
        "--size",
        "12M",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "mailtap gen: {}", stderr(&o));
    let pcap = dir.join("burst.pcap");
    pcap_head(&full, BURST, &pcap);
    pcap
}

/// Stops mailtap (SIGSTOP: no thread reads its rings), replays [`BURST`]
/// small-frame packets at tcpreplay's top speed, resumes it, and checks
/// that every packet was captured with zero kernel drops and zero
/// ring-full events, and that the logs are those of `mailtap read`. This
/// is the burst property itself, independent of how fast the machine is:
/// whatever the worker's speed, the rings alone hold the burst.
fn stalled_worker_absorbs_a_burst(args: &[&str]) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let pcap = burst_pcap(dir.path());
    let veth = Veth::new(1, false);
    // Default rings: no ring setting in args.
    let mut live = Live::start(&veth.ours, args, &dir.path().join("live"));
    let pid = live.pid().to_string();
    must(&["kill", "-STOP", &pid]);
    let sent = veth.replay_with(&pcap, &["--topspeed"]);
    // Let the softirq finish copying the tail into the ring.
    std::thread::sleep(Duration::from_millis(200));
    must(&["kill", "-CONT", &pid]);
    // Wait until stats.log shows every packet (it is written every 0.2 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The file is created a moment before its first rows are
        // written out: read it only once its header is there.
        let stats = dir.path().join("live/stats.log");
        let ready = std::fs::read_to_string(&stats).is_ok_and(|t| t.contains("\n#fields\t"));
        let got: u64 = ready
            .then(|| ZeekLog::read(&stats))
            .flatten()
            .map(|l| {
                l.column("pkts_proc")
                    .iter()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        if got >= sent.packets || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(live.running(), "mailtap exited unasked: {}", live.stderr());
    let s = live.terminate();
    check_counters(&s, &dir.path().join("live"));
    assert_eq!(
        s.seen_packets(),
        sent.packets,
        "a stalled worker's rings must hold a burst of {BURST} small packets:\n{}",
        s.text
    );
    assert_eq!(s.seen_bytes(), sent.bytes, "{}", s.text);
    let want = read_reference(&pcap, &[], &dir.path().join("read"));
    assert_eq!(s.records, want, "records: live vs read:\n{}", s.text);
    if s.xdp.is_empty() {
        // AF_XDP stamps a whole batch with one time, and after the stall a
        // batch holds whole short connections: their duration is 0, so
        // conn.log leaves orig_bytes/resp_bytes unset, as Zeek does. Only
        // AF_PACKET, with the kernel's time per packet, matches read exactly.
        assert_same_logs(&dir.path().join("read"), &dir.path().join("live"), &no_rows);
    }
    s
}

#[test]
fn af_xdp_skb_default_rings_absorb_a_burst_with_the_worker_stopped() {
    require_env!();
    let s = stalled_worker_absorbs_a_burst(&["--capture", "af-xdp", "--xdp-mode", "skb"]);
    assert_xdp_mode(&s, "Skb");
}

#[test]
fn af_xdp_native_default_rings_absorb_a_burst_with_the_worker_stopped() {
    require_env!();
    let s = stalled_worker_absorbs_a_burst(&["--capture", "af-xdp", "--xdp-mode", "native"]);
    assert_xdp_mode(&s, "Native");
}

#[test]
fn af_packet_default_ring_absorbs_a_burst_with_the_worker_stopped() {
    require_env!();
    let s = stalled_worker_absorbs_a_burst(&["--capture", "af-packet"]);
    assert!(s.xdp.is_empty(), "{}", s.text);
}

#[test]
fn af_xdp_old_small_rings_lose_the_burst_and_count_it() {
    // The counterpart: with the pre-issue-9 rings (2048 fill entries) the
    // same burst overflows, and the counters say so.
    require_env!();
    let dir = tempfile::tempdir().unwrap();
    let pcap = burst_pcap(dir.path());
    let veth = Veth::new(1, false);
    let live = Live::start(
        &veth.ours,
        &[
            "--capture",
            "af-xdp",
            "--xdp-mode",
            "skb",
            "--set",
            "live.xdp_rx_ring=2048",
            "--set",
            "live.xdp_fill_ring=2048",
            "--set",
            "live.xdp_frame_count=4096",
        ],
        &dir.path().join("live"),
    );
    let pid = live.pid().to_string();
    must(&["kill", "-STOP", &pid]);
    let sent = veth.replay_with(&pcap, &["--topspeed"]);
    std::thread::sleep(Duration::from_millis(200));
    must(&["kill", "-CONT", &pid]);
    std::thread::sleep(Duration::from_millis(500));
    let s = live.terminate();
    let lost = sent.packets - s.packets;
    assert!(
        s.packets <= 2048 && lost > 0,
        "2048 fill entries hold at most 2048 packets:\n{}",
        s.text
    );
    assert_eq!(
        s.total(|q| q.kernel_drops),
        lost,
        "kernel drops = packets sent and not captured:\n{}",
        s.text
    );
    assert!(s.total(|q| q.ring_full) >= lost, "{}", s.text);
}

#[test]
fn af_xdp_memlock_too_low_names_the_limit_and_the_keys() {
    require_env!();
    if !tool_runs("setpriv", "--version") || !tool_runs("prlimit", "--version") {
        common::skip(concat!(file!(), ":", line!()), "setpriv/prlimit not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let veth = Veth::new(1, false);
    // Root without CAP_IPC_LOCK (dropped from the inheritable and bounding
    // sets, so the exec does not get it back) and an 8 MiB RLIMIT_MEMLOCK.
    let o = cmd(&[
        "prlimit",
        "--memlock=8388608:8388608",
        "setpriv",
        "--inh-caps=-ipc_lock",
        "--bounding-set=-ipc_lock",
        bin(),
        "live",
        "-i",
        &veth.ours,
        "--capture",
        "af-xdp",
        "--xdp-mode",
        "skb",
        "--duration",
        "1",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    let e = stderr(&o);
    assert!(!o.status.success(), "must fail: {e}");
    for want in [
        "RLIMIT_MEMLOCK is 8 MiB",
        "live.xdp_frame_count (65536)",
        "live.xdp_frame_size (2048)",
        "128 MiB",
        "CAP_IPC_LOCK",
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    // Nothing left attached.
    let link = must(&["ip", "-d", "link", "show", &veth.ours]);
    assert!(!link.contains("prog/xdp"), "{link}");
}
