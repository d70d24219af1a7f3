//! The XDP steering program against the real kernel, on veth pairs between
//! two network namespaces of their own: A (the sensor's end, where the
//! program is attached) and B (the peer that sends traffic).
//!
//! Needs root and `ip netns`; skipped otherwise. Names carry the process id
//! and a counter, so these tests run in parallel with each other and with
//! other veth tests; the namespaces (and so the veths) are deleted on drop,
//! after the program handle, which is created inside the namespace thread,
//! has detached.
//!
//! Code that must run in a namespace runs in a thread that `setns`es into
//! it first (a network namespace is a per-thread attribute), so the test
//! process itself never leaves its own.

mod common;
use common::skip;

use mailtap_capture::bypass::BypassAction;
use mailtap_capture::steering::{
    attached_mailtap_programs, SteeringConfig, SteeringProgram, XdpMode,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const B_IP: &str = "10.199.0.2/24";
const A_CIDR: &str = "10.199.0.1/24";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn have_ip_netns() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

macro_rules! need_root_and_netns {
    () => {
        if !is_root() {
            skip(concat!(file!(), ":", line!()), "needs root");
            return;
        }
        if !have_ip_netns() {
            skip(
                concat!(file!(), ":", line!()),
                "needs `ip netns` (iproute2)",
            );
            return;
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces A and B joined by a veth pair `va` (in A, 10.199.0.1) <->
/// `vb` (in B, 10.199.0.2), one queue each. Deleted on drop, which
/// destroys the veths too.
struct Topo {
    a: String,
    b: String,
    va: String,
    made: Vec<String>,
}

impl Topo {
    fn new() -> Topo {
        let (pid, n) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut t = Topo {
            a: format!("mailtap-steer-{pid}-{n}-a"),
            b: format!("mailtap-steer-{pid}-{n}-b"),
            va: format!("mts{pid}a{n}"),
            made: Vec::new(),
        };
        let vb = format!("mts{pid}b{n}");
        assert!(t.va.len() <= 15 && vb.len() <= 15);
        for ns in [t.a.clone(), t.b.clone()] {
            // A leftover of an earlier process with the same pid.
            ip(&["netns", "del", &ns]);
            let mut out = ip(&["netns", "add", &ns]);
            if !out.status.success() {
                // Concurrent first `ip netns add`s can race on setting up
                // /run/netns; once more.
                std::thread::sleep(Duration::from_millis(50));
                out = ip(&["netns", "add", &ns]);
            }
            assert!(
                out.status.success(),
                "ip netns add {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.made.push(ns);
        }
        ip_ok(&[
            "link",
            "add",
            &t.va,
            "netns",
            &t.a,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &t.b,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ]);
        ip_ok(&["-n", &t.a, "addr", "add", A_CIDR, "dev", &t.va]);
        ip_ok(&["-n", &t.b, "addr", "add", B_IP, "dev", &vb]);
        for (ns, dev) in [(&t.a, &t.va), (&t.b, &vb)] {
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in &self.made {
            ip(&["netns", "del", ns]);
        }
    }
}

/// Runs `f` in a thread that has entered network namespace `ns`; a panic
/// in `f` is re-raised here.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}"))
                .unwrap_or_else(|e| panic!("open /run/netns/{ns}: {e}"));
            // SAFETY: setns on a namespace fd we hold; affects only this
            // thread (network namespaces may be switched per thread).
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        });
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn mail_cfg() -> SteeringConfig {
    SteeringConfig {
        ports: vec![25, 110, 587],
        all_tcp: false,
        max_queues: 0,
        bypass_action: BypassAction::Pass,
        bypass_entries: 0,
    }
}

/// Accepts one connection within 10 s and echoes what it reads.
fn echo_once(l: &TcpListener) -> Result<(), String> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no connection within 10 s".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).map_err(|e| format!("server read: {e}"))?;
    s.write_all(&buf[..n])
        .map_err(|e| format!("server write: {e}"))?;
    Ok(())
}

/// Connects to A's `port`, sends a line and expects it echoed.
fn exchange(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((A_IP, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let msg = format!("hello {port}\n");
    s.write_all(msg.as_bytes())
        .map_err(|e| format!("write {addr}: {e}"))?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("read {addr}: {e}"))?;
    if got != msg.as_bytes() {
        return Err(format!("{addr}: echoed {got:?}"));
    }
    Ok(())
}

fn icmp_checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Pings `dst` from the calling thread's namespace with a raw ICMP socket
/// (no `ping` binary needed): true once an echo reply comes back.
fn ping(dst: Ipv4Addr) -> bool {
    // SAFETY: plain socket(2), checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let id = (std::process::id() & 0xffff) as u16;
    // SAFETY: sockaddr_in is plain data; zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(dst).to_be();
    for seq in 0..5u16 {
        let mut req = vec![8u8, 0, 0, 0];
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend_from_slice(b"mailtap steering test");
        let c = icmp_checksum(&req);
        req[2..4].copy_from_slice(&c.to_be_bytes());
        // SAFETY: req and sa are valid for the lengths passed.
        unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            // A raw socket gets the IP header too.
            let b = &buf[..n as usize];
            let ihl = usize::from(b[0] & 0x0f) * 4;
            if b.len() >= ihl + 8
                && b[12..16] == dst.octets()
                && b[ihl] == 0
                && b[ihl + 4..ihl + 6] == id.to_be_bytes()
            {
                return true;
            }
        }
    }
    false
}

/// The program attached in `mode` on A's end: ping A from B, TCP to a
/// non-mail port, and TCP to port 25 while no AF_XDP socket is registered
/// (the redirect falls back to XDP_PASS) all reach A's kernel.
fn non_mail_traffic_flows(mode: XdpMode) {
    let t = Topo::new();
    let (b, va) = (t.b.clone(), t.va.clone());
    in_netns(&t.a, move || {
        let prog = SteeringProgram::attach(&va, mode, &mail_cfg()).expect("attach");
        assert_eq!(prog.mode(), mode, "attached in the mode asked for");
        assert_eq!(prog.ifname(), va);
        assert_eq!(attached_mailtap_programs(&va).unwrap().len(), 1);
        let l8080 = TcpListener::bind((A_IP, 8080)).expect("bind 8080");
        let l25 = TcpListener::bind((A_IP, 25)).expect("bind 25");

        let before = prog.counters();
        std::thread::scope(|s| {
            let srv8080 = s.spawn(|| echo_once(&l8080));
            let srv25 = s.spawn(|| echo_once(&l25));
            let (pinged, r8080, r25) = in_netns(&b, || (ping(A_IP), exchange(8080), exchange(25)));
            assert!(pinged, "{mode}: no echo reply from A");
            assert_eq!(r8080, Ok(()), "{mode}: TCP to port 8080");
            assert_eq!(srv8080.join().unwrap(), Ok(()), "{mode}: server 8080");
            assert_eq!(r25, Ok(()), "{mode}: TCP to port 25 without a socket");
            assert_eq!(srv25.join().unwrap(), Ok(()), "{mode}: server 25");
        });

        let c = prog.counters();
        eprintln!("{mode}: counters {c:?}");
        // ICMP echo requests and ARP.
        assert!(c.passed_not_tcp > before.passed_not_tcp, "{c:?}");
        // The segments to 8080.
        assert!(c.passed_other_port > before.passed_other_port, "{c:?}");
        // The segments to 25: wanted, but no socket on the queue.
        assert!(c.passed_no_socket > before.passed_no_socket, "{c:?}");
        assert_eq!(c.redirected, 0, "{c:?}");
        assert_eq!(c.passed_fragment, 0, "{c:?}");
        prog.detach().expect("detach");
        assert!(attached_mailtap_programs(&va).unwrap().is_empty());
    });
}

#[test]
fn steering_non_mail_traffic_flows_skb() {
    need_root_and_netns!();
    non_mail_traffic_flows(XdpMode::Skb);
}

#[test]
fn steering_non_mail_traffic_flows_native() {
    need_root_and_netns!();
    non_mail_traffic_flows(XdpMode::Native);
}

/// With an AF_XDP socket registered for the queue, mail traffic goes to
/// the socket (the kernel never sees it) while other TCP still reaches the
/// kernel; once the socket is closed, as after a crash, mail traffic
/// reaches the kernel again.
#[test]
fn steering_redirects_mail_to_registered_socket() {
    use std::num::NonZeroU32;
    use std::str::FromStr;
    use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, SocketConfig, UmemConfig};
    use xsk_rs::{Socket, Umem};

    need_root_and_netns!();
    let t = Topo::new();
    let (b, va) = (t.b.clone(), t.va.clone());
    in_netns(&t.a, move || {
        let prog = SteeringProgram::attach(&va, XdpMode::Skb, &mail_cfg()).expect("attach");
        let l8080 = TcpListener::bind((A_IP, 8080)).expect("bind 8080");
        let l25 = TcpListener::bind((A_IP, 25)).expect("bind 25");

        let (umem, mut descs) =
            Umem::new(UmemConfig::default(), NonZeroU32::new(64).unwrap(), false).expect("umem");
        let sock_cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        let iface = Interface::from_str(&va).unwrap();
        // SAFETY: the UMEM is used by this one socket only.
        let (tx, mut rx, fq_cq) =
            unsafe { Socket::new(sock_cfg, &umem, &iface, 0) }.expect("AF_XDP socket");
        let (mut fill, _comp) = fq_cq.expect("fill and completion rings");
        // SAFETY: the frames are free and belong to this UMEM.
        let filled = unsafe { fill.produce(&descs) };
        assert_eq!(filled, descs.len());

        let err = prog.register_socket(64, rx.fd().as_raw_fd()).unwrap_err();
        assert!(err.to_string().contains(&va), "{err}");
        prog.register_socket(0, rx.fd().as_raw_fd())
            .expect("register");

        std::thread::scope(|s| {
            let srv8080 = s.spawn(|| echo_once(&l8080));
            let (r8080, r25) = in_netns(&b, || {
                let r8080 = exchange(8080);
                // The SYN goes to the socket, so the kernel never answers.
                let r25 = TcpStream::connect_timeout(
                    &SocketAddr::from((A_IP, 25)),
                    Duration::from_millis(1500),
                );
                (r8080, r25.map(|_| ()).map_err(|e| e.kind()))
            });
            assert_eq!(r8080, Ok(()), "TCP to 8080 with a socket registered");
            assert_eq!(srv8080.join().unwrap(), Ok(()));
            assert!(
                r25.is_err(),
                "port 25 should have been steered away from the kernel"
            );
        });

        // The SYN(s) to port 25 are in the socket's RX ring.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.is_empty() && Instant::now() < deadline {
            // SAFETY: descs are ours to overwrite; the frames they will
            // point to are read before they go back to the fill ring.
            let n = unsafe { rx.poll_and_consume(&mut descs, 100) }.expect("poll");
            for d in &descs[..n] {
                // SAFETY: d was just consumed from the RX ring.
                let data = unsafe { umem.data(d) };
                got.push(data.contents().to_vec());
            }
        }
        assert!(!got.is_empty(), "nothing arrived on the AF_XDP socket");
        for f in &got {
            // Ethernet / IPv4 (no options from Linux) / TCP to port 25.
            assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4");
            assert_eq!(f[14 + 9], 6, "TCP");
            let ihl = usize::from(f[14] & 0x0f) * 4;
            assert_eq!(
                &f[14 + ihl + 2..14 + ihl + 4],
                &25u16.to_be_bytes(),
                "dport 25"
            );
        }
        let c = prog.counters();
        eprintln!("with a socket: counters {c:?}");
        assert!(c.redirected >= got.len() as u64, "{c:?}");
        assert!(c.passed_other_port > 0, "{c:?}");

        // The sensor "crashes": its socket closes and the kernel removes
        // it from xsks_map, so mail traffic falls back to the kernel.
        drop((tx, rx, fill, _comp));
        drop(umem);
        let before = prog.counters();
        std::thread::scope(|s| {
            let srv25 = s.spawn(|| echo_once(&l25));
            let r25 = in_netns(&b, || exchange(25));
            assert_eq!(r25, Ok(()), "TCP to port 25 after the socket closed");
            assert_eq!(srv25.join().unwrap(), Ok(()));
        });
        let c = prog.counters();
        assert_eq!(c.redirected, before.redirected, "{c:?}");
        assert!(c.passed_no_socket > before.passed_no_socket, "{c:?}");
    });
}

/// A program left by a "crashed" run (the handle forgotten, never
/// detached) is replaced on the next attach, also when it was attached in
/// the other mode.
fn stale_program_replaced(va: &str) {
    for (first, second) in [
        (XdpMode::Skb, XdpMode::Skb),
        (XdpMode::Native, XdpMode::Skb),
    ] {
        let p1 = SteeringProgram::attach(va, first, &mail_cfg()).expect("first attach");
        let ids1 = attached_mailtap_programs(va).unwrap();
        assert_eq!(ids1.len(), 1, "{ids1:?}");
        // Simulates a crash: nothing detaches.
        std::mem::forget(p1);
        assert_eq!(attached_mailtap_programs(va).unwrap(), ids1);

        let p2 = SteeringProgram::attach(va, second, &mail_cfg()).expect("second attach");
        assert_eq!(p2.mode(), second);
        let ids2 = attached_mailtap_programs(va).unwrap();
        assert_eq!(ids2.len(), 1, "exactly one mailtap_xdp: {ids2:?}");
        assert_ne!(ids2, ids1, "the stale program was replaced");
        p2.detach().expect("detach");
        assert_eq!(attached_mailtap_programs(va).unwrap(), Vec::<u32>::new());
    }
}

#[test]
fn steering_stale_program_replaced() {
    need_root_and_netns!();
    let t = Topo::new();
    let va = t.va.clone();
    in_netns(&t.a, move || stale_program_replaced(&va));
}

/// `ip -d link show` of A's end: shows the XDP program's id and name.
fn link_details(t: &Topo) -> String {
    String::from_utf8_lossy(&ip(&["-n", &t.a, "-d", "link", "show", &t.va]).stdout).into_owned()
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines().any(|l| {
                l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.split(' ').nth(2) == Some("bpf")
            })
        })
        .unwrap_or(false)
}

/// Without libxdp's dispatcher (as when bpffs is not mounted) the program
/// is attached alone; traffic, stale replacement and detach work the same.
/// libxdp skips the dispatcher when `LIBXDP_SKIP_DISPATCHER=1`, a
/// process-wide setting, so this runs the test binary again, with it set,
/// for [`steering_without_dispatcher_child`].
#[test]
fn steering_without_dispatcher() {
    need_root_and_netns!();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "steering_without_dispatcher_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LIBXDP_SKIP_DISPATCHER", "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{stderr}"
    );
}

#[test]
#[ignore = "run by steering_without_dispatcher, with LIBXDP_SKIP_DISPATCHER=1"]
fn steering_without_dispatcher_child() {
    if std::env::var("LIBXDP_SKIP_DISPATCHER").as_deref() != Ok("1") {
        eprintln!("skipped: run by steering_without_dispatcher");
        return;
    }
    need_root_and_netns!();
    non_mail_traffic_flows(XdpMode::Native);
    let t = Topo::new();
    let va = t.va.clone();
    let details = in_netns(&t.a, move || {
        let p = SteeringProgram::attach(&va, XdpMode::Skb, &mail_cfg()).expect("attach");
        let d = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-d", "link", "show", &va])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        drop(p);
        stale_program_replaced(&va);
        d
    });
    assert!(
        details.contains("mailtap_xdp") && !details.contains("xdp_dispatcher"),
        "attached alone: {details}"
    );
}

/// Dropping the handle detaches: no mailtap program, and no XDP program at
/// all, is left on the interface. Auto picks native mode on a veth.
#[test]
fn steering_drop_detaches() {
    need_root_and_netns!();
    let t = Topo::new();
    let va = t.va.clone();
    let attached = in_netns(&t.a, || {
        let p = SteeringProgram::attach(&va, XdpMode::Auto, &mail_cfg()).expect("attach");
        assert_eq!(p.mode(), XdpMode::Native, "veth supports native XDP");
        assert_eq!(attached_mailtap_programs(&va).unwrap().len(), 1);
        let d = link_details(&t);
        drop(p);
        assert!(attached_mailtap_programs(&va).unwrap().is_empty());
        d
    });
    assert!(
        attached.contains("prog/xdp"),
        "ip link shows the program: {attached}"
    );
    // libxdp's dispatcher holds it (so other XDP programs can share the
    // interface) when bpffs is mounted and the kernel lets libxdp load
    // freplace programs; otherwise it is attached alone.
    let alone = attached.contains("name mailtap_xdp");
    let dispatched = attached.contains("name xdp_dispatcher");
    assert!(alone || dispatched, "{attached}");
    eprintln!(
        "attached {} (bpffs mounted: {})",
        if dispatched {
            "behind libxdp's dispatcher"
        } else {
            "alone"
        },
        bpffs_mounted()
    );
    let after = link_details(&t);
    assert!(
        !after.contains("prog/xdp"),
        "an XDP program is left: {after}"
    );
}

/// The committed object is what bpf/build.sh makes from the source.
#[test]
fn steering_bpf_object_is_up_to_date() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !have("clang") || !have("llvm-strip") {
        skip(concat!(file!(), ":", line!()), "needs clang and llvm-strip");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/build.sh");
    let out = Command::new("bash")
        .args([script, "--check"])
        .output()
        .expect("run bpf/build.sh");
    assert!(
        out.status.success(),
        "bpf/build.sh --check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Errors name the interface. No root needed: the lookup fails first.
#[test]
fn steering_bad_interface_is_named() {
    let name = format!("nosuch{}", std::process::id());
    let cfg = mail_cfg();
    let err = SteeringProgram::attach(&name, XdpMode::Auto, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&name), "{msg}");
    assert!(
        msg.contains("no such interface") || msg.contains("No such device"),
        "{msg}"
    );

    let err = SteeringProgram::attach("bad\0name", XdpMode::Skb, &cfg).unwrap_err();
    assert!(err.to_string().contains("bad\\0name"), "{err}");

    let err = attached_mailtap_programs(&name).unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
}

/// Auto falls back to SKB mode where the driver has no native XDP
/// (loopback); asking for native there fails with an error naming the
/// interface and the mode.
#[test]
fn steering_auto_falls_back_to_skb() {
    need_root_and_netns!();
    let t = Topo::new();
    in_netns(&t.a, || {
        let err = SteeringProgram::attach("lo", XdpMode::Native, &mail_cfg()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("lo") && msg.contains("native"), "{msg}");
        assert!(attached_mailtap_programs("lo").unwrap().is_empty());

        let p = SteeringProgram::attach("lo", XdpMode::Auto, &mail_cfg()).expect("attach");
        assert_eq!(p.mode(), XdpMode::Skb);
        assert_eq!(attached_mailtap_programs("lo").unwrap().len(), 1);
        drop(p);
        assert!(attached_mailtap_programs("lo").unwrap().is_empty());
    });
}

/// A nonsense queue count is refused before anything is loaded.
#[test]
fn steering_bad_config_is_rejected() {
    let cfg = SteeringConfig {
        max_queues: u32::MAX,
        ..mail_cfg()
    };
    let err = SteeringProgram::attach("lo", XdpMode::Skb, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("lo") && msg.contains("max_queues"), "{msg}");
    assert_eq!(err.source.kind(), std::io::ErrorKind::InvalidInput);
}
