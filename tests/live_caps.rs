//! `mailtap live` with the capabilities a deployment grants, not root's:
//! the Kubernetes DaemonSet's AF_XDP set (read from
//! `deploy/kubernetes/daemonset-af-xdp.yaml`) and nothing else,
//! once as uid 0 with that bounding set (a container) and once as a
//! non-root user with them as ambient capabilities (the systemd unit).
//!
//! - AF_XDP attaches, captures, and on SIGTERM leaves no XDP program on
//!   the interface; a restart on the same interface works; after SIGKILL
//!   nothing is left either, and the next start works (issue 13: libxdp
//!   needs CAP_SYS_ADMIN to find its program again, so it stayed attached
//!   and the next start failed).
//! - A program left by an older mailtap (attached through libxdp) is named
//!   in a clear error, with the command that removes it.
//! - AF_XDP refuses to take the mail ports of an interface where the host
//!   itself listens on them, unless allowed.
//!
//! Root, `ip` and `setpriv` are needed (skipped without, saying so);
//! `tcpreplay` for the capture check.

mod common;
use common::*;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not root (namespaces, XDP and setpriv need it)".into());
    }
    if !tool_runs("ip", "-V") {
        return Some("`ip` (iproute2) not found".into());
    }
    if !tool_runs("setpriv", "--version") {
        return Some("`setpriv` (util-linux) not found".into());
    }
    None
}

macro_rules! require_env {
    () => {
        if let Some(why) = missing_prerequisite() {
            common::skip(concat!(file!(), ":", line!()), &why);
            return;
        }
    };
}

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

/// The capabilities the AF_XDP DaemonSet grants, as the manifest lists
/// them (`add: [NET_RAW, ...]`), lower-case for setpriv.
fn daemonset_caps() -> Vec<String> {
    let path = repo().join("deploy/kubernetes/daemonset-af-xdp.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .unwrap_or_else(|| panic!("no `add:` line in {}", path.display()));
    let caps: Vec<String> = line
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    assert!(
        caps.iter().any(|c| c == "bpf") && !caps.iter().any(|c| c == "sys_admin"),
        "unexpected AF_XDP capability set in {}: {caps:?}",
        path.display()
    );
    caps
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A veth pair, our end in the root namespace, the peer in a namespace.
struct Veth {
    ns: String,
    ours: String,
    peer: String,
}

impl Veth {
    fn new(addr: Option<(Ipv4Addr, Ipv4Addr)>) -> Veth {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("mtc{}x{n}", std::process::id());
        let v = Veth {
            ns: base.clone(),
            ours: format!("{base}a"),
            peer: format!("{base}b"),
        };
        assert!(v.ours.len() <= 15);
        must(&["ip", "netns", "add", &v.ns]);
        must(&[
            "ip", "link", "add", &v.ours, "type", "veth", "peer", "name", &v.peer, "netns", &v.ns,
        ]);
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.ours),
            "1",
        );
        if let Some((ours, peer)) = addr {
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
        }
        must(&["ip", "link", "set", &v.ours, "up"]);
        must(&["ip", "-n", &v.ns, "link", "set", &v.peer, "up"]);
        v
    }

    /// `ip -d link show` of our end.
    fn details(&self) -> String {
        must(&["ip", "-d", "link", "show", &self.ours])
    }

    fn has_xdp(&self) -> bool {
        self.details().contains("prog/xdp")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = cmd(&["ip", "link", "del", &self.ours]);
        let _ = cmd(&["ip", "netns", "del", &self.ns]);
    }
}

/// Who runs mailtap.
#[derive(Clone, Copy, Debug)]
enum As {
    /// uid 0 with only the DaemonSet's capabilities (bounding set): a
    /// container with `--cap-drop all --cap-add ...`.
    RootReduced,
    /// uid 65534 with them as ambient capabilities: the systemd unit.
    NonRoot,
    /// Plain root (all capabilities).
    Root,
}

fn command(who: As, args: &[&str], dir: &Path) -> Command {
    let caps: String = daemonset_caps().iter().map(|c| format!(",+{c}")).collect();
    let mut c = match who {
        As::Root => Command::new(bin()),
        As::RootReduced | As::NonRoot => {
            let mut c = Command::new("setpriv");
            if let As::NonRoot = who {
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            }
            c.arg(format!("--inh-caps=-all{caps}"))
                .arg(format!("--ambient-caps=-all{caps}"))
                .arg(format!("--bounding-set=-all{caps}"))
                .arg("--")
                .arg(match who {
                    As::NonRoot => world_binary(dir),
                    _ => PathBuf::from(bin()),
                });
            c
        }
    };
    c.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    c
}

/// A copy of the binary in `dir` (a test's world-readable temporary
/// directory) that uid 65534 can execute: the checkout may sit under a
/// directory only root can enter (e.g. /root).
fn world_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("mailtap");
    if !path.exists() {
        std::fs::copy(bin(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// A running `mailtap live` writing into `out`, stderr into `out/../NAME.err`.
struct Live {
    child: Child,
    err: PathBuf,
}

/// Small rings: these tests need no burst room.
const SMALL: &[&str] = &[
    "--set",
    "live.xdp_frame_count=4096",
    "--set",
    "live.xdp_rx_ring=4096",
    "--set",
    "live.xdp_fill_ring=4096",
];

impl Live {
    fn start(who: As, iface: &str, out: &Path, name: &str, env: &[(&str, &str)]) -> Live {
        let err = out.parent().unwrap().join(format!("{name}.err"));
        let mut args = vec![
            "live",
            "-i",
            iface,
            "--capture",
            "af-xdp",
            "--stats-interval",
            "0.2",
            "-v",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(SMALL);
        let mut c = command(who, &args, out.parent().unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn mailtap live");
        Live { child, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until the capture runs (stats.log written) or mailtap exits.
    fn wait_ready(&mut self, out: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Err(format!("mailtap exited ({st}): {}", self.stderr()));
            }
            if out.join("stats.log").exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not capturing after 30 s: {}", self.stderr()))
    }

    fn signal(&mut self, sig: &str) -> ExitStatus {
        must(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "mailtap still running 30 s after SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(mut self) -> (ExitStatus, String) {
        let st = self.child.wait().unwrap();
        let e = self.stderr();
        (st, e)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory that uid 65534 can write into.
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn out_dir(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    out
}

fn wait_no_xdp(veth: &Veth, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while veth.has_xdp() {
        assert!(
            Instant::now() < deadline,
            "{what}: an XDP program is left on the interface:\n{}",
            veth.details()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn smtp_rows(out: &Path) -> usize {
    std::fs::read_to_string(out.join("smtp.log"))
        .map(|t| t.lines().filter(|l| !l.starts_with('#')).count())
        .unwrap_or(0)
}

/// Start, capture, SIGTERM: detached; start again, SIGKILL: detached;
/// start a third time, SIGTERM: exit 0, detached.
fn lifetime_with_reduced_caps(who: As) {
    let dir = open_tempdir();
    let veth = Veth::new(None);

    // 1. Capture the sample, SIGTERM.
    let out = out_dir(dir.path(), "run1");
    let mut live = Live::start(who, &veth.ours, &out, "run1", &[]);
    live.wait_ready(&out).unwrap();
    let d = veth.details();
    assert!(
        d.contains("prog/xdp") && d.contains("mailtap_xdp"),
        "{who:?}: mailtap_xdp attached:\n{d}\n{}",
        live.stderr()
    );
    let replayed = tool_runs("tcpreplay", "--version");
    if replayed {
        let o = cmd(&[
            "ip",
            "netns",
            "exec",
            &veth.ns,
            "timeout",
            "120",
            "tcpreplay",
            "-i",
            &veth.peer,
            sample().to_str().unwrap(),
        ]);
        assert!(o.status.success(), "tcpreplay: {o:?}");
        std::thread::sleep(Duration::from_millis(500));
    } else {
        skip(
            concat!(file!(), ":", line!()),
            "tcpreplay not found: capture not checked, only the XDP lifetime",
        );
    }
    let st = live.signal("TERM");
    let (_, err) = live.wait();
    assert!(st.success(), "{who:?}: exit after SIGTERM: {st}\n{err}");
    assert!(
        !err.contains("already gone"),
        "{who:?}: the program was not found again at exit:\n{err}"
    );
    wait_no_xdp(&veth, "after SIGTERM");
    if replayed {
        assert!(
            smtp_rows(&out) > 0,
            "{who:?}: no smtp.log rows captured:\n{err}"
        );
    }

    // 2. Restart on the same interface, then SIGKILL.
    let out = out_dir(dir.path(), "run2");
    let mut live = Live::start(who, &veth.ours, &out, "run2", &[]);
    live.wait_ready(&out)
        .unwrap_or_else(|e| panic!("{who:?}: restart after SIGTERM failed: {e}"));
    assert!(veth.has_xdp());
    let st = live.signal("KILL");
    assert!(!st.success());
    drop(live);
    wait_no_xdp(&veth, "after SIGKILL");

    // 3. Start after the kill.
    let out = out_dir(dir.path(), "run3");
    let mut live = Live::start(who, &veth.ours, &out, "run3", &[]);
    live.wait_ready(&out)
        .unwrap_or_else(|e| panic!("{who:?}: restart after SIGKILL failed: {e}"));
    let st = live.signal("TERM");
    let (_, err) = live.wait();
    assert!(st.success(), "{who:?}: third run: {st}\n{err}");
    wait_no_xdp(&veth, "after the third run");
}

#[test]
fn af_xdp_non_root_ambient_caps_detaches_on_sigterm_and_sigkill_and_restarts() {
    require_env!();
    lifetime_with_reduced_caps(As::NonRoot);
}

#[test]
fn af_xdp_root_without_sys_admin_detaches_on_sigterm_and_sigkill_and_restarts() {
    require_env!();
    lifetime_with_reduced_caps(As::RootReduced);
}

/// A program left by an older mailtap that attached through libxdp
/// (reproduced with `MAILTAP_XDP_ATTACH=libxdp` and SIGKILL): without
/// CAP_SYS_ADMIN the start fails naming it and the command that removes
/// it (or, when libxdp's dispatcher pins are readable, replaces it); root
/// replaces it.
#[test]
fn stale_libxdp_program_is_named_without_sys_admin_and_replaced_by_root() {
    require_env!();
    let dir = open_tempdir();
    let veth = Veth::new(None);
    let out = out_dir(dir.path(), "old");
    let mut old = Live::start(
        As::Root,
        &veth.ours,
        &out,
        "old",
        &[("MAILTAP_XDP_ATTACH", "libxdp")],
    );
    old.wait_ready(&out).unwrap();
    old.signal("KILL");
    drop(old);
    assert!(veth.has_xdp(), "libxdp's program stays after SIGKILL");

    for who in [As::NonRoot, As::RootReduced] {
        if !veth.has_xdp() {
            break;
        }
        let out = out_dir(dir.path(), &format!("{who:?}"));
        let mut live = Live::start(who, &veth.ours, &out, &format!("{who:?}"), &[]);
        match live.wait_ready(&out) {
            Ok(()) => {
                // Only through libxdp's dispatcher pins in bpffs.
                assert!(
                    live.stderr().contains("stale"),
                    "{who:?} started over a foreign program:\n{}",
                    live.stderr()
                );
                assert!(live.signal("TERM").success());
                wait_no_xdp(&veth, "after replacing the stale program");
            }
            Err(e) => {
                let (st, err) = live.wait();
                assert_eq!(st.code(), Some(1), "{who:?}: {e}");
                assert!(
                    err.contains("cannot identify")
                        && err.contains(&format!("ip link set dev {} xdp off", veth.ours)),
                    "{who:?}: the error names the stale program and the fix:\n{err}"
                );
                assert!(veth.has_xdp(), "nothing removed blindly");
            }
        }
    }
    if veth.has_xdp() {
        let out = out_dir(dir.path(), "root");
        let mut live = Live::start(As::Root, &veth.ours, &out, "root", &[]);
        live.wait_ready(&out).unwrap();
        assert!(live.stderr().contains("stale"), "{}", live.stderr());
        assert!(live.signal("TERM").success());
        wait_no_xdp(&veth, "root replaced the stale program and detached");
    }
}

/// AF_XDP on an interface where the host listens on a steered port is
/// refused, naming the listener; allowed with
/// MAILTAP_XDP_HOST_SERVICES=allow or live.xdp_host_services = "allow";
/// AF_PACKET is not concerned.
#[test]
fn af_xdp_refuses_to_take_the_hosts_mail_services() {
    require_env!();
    let n = COUNTER.load(Ordering::Relaxed);
    let third = (std::process::id() % 256) as u8;
    let fourth = ((n % 64) * 4) as u8;
    let ours = Ipv4Addr::new(198, 19, third, 128 + (fourth % 128) + 1);
    let peer = Ipv4Addr::new(198, 19, third, 128 + (fourth % 128) + 2);
    let veth = Veth::new(Some((ours, peer)));
    let dir = open_tempdir();
    let run = |name: &str, capture: &str, env: &[(&str, &str)], extra: &[&str]| -> Output {
        let out = out_dir(dir.path(), name);
        let mut c = command(
            As::Root,
            &[
                "live",
                "-i",
                &veth.ours,
                "--capture",
                capture,
                "--set",
                "live.xdp_steer=mail-ports",
                "--duration",
                "0.5",
                "-o",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        c.args(SMALL);
        c.args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stderr(Stdio::piped()).output().unwrap()
    };

    // Nothing listens on a mail port of ours: allowed (with a warning).
    let o = run("free", "af-xdp", &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let _smtp = TcpListener::bind((ours, 25)).expect("bind port 25");
    let o = run("refused", "af-xdp", &[], &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("refusing") && e.contains(&format!("{ours}:25")) && e.contains("af-packet"),
        "the error names the listener and the way out:\n{e}"
    );
    assert!(!veth.has_xdp(), "nothing attached");

    let o = run(
        "allowed",
        "af-xdp",
        &[("MAILTAP_XDP_HOST_SERVICES", "allow")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The same from the configuration.
    let o = run(
        "allowed-by-config",
        "af-xdp",
        &[],
        &["--set", "live.xdp_host_services=allow"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("takes the mail ports from the host"),
        "warns:\n{}",
        stderr(&o)
    );
    let o = run("afpacket", "af-packet", &[], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!veth.has_xdp());
}
