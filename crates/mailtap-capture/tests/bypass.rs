//! Kernel bypass against the real kernel, on veth pairs: crafted TCP
//! segments of a "bypassed" connection and of others are sent with a raw
//! AF_PACKET socket from the peer end, and what reaches user space is
//! compared with what the kernel counted.
//!
//! - XDP: the steering program with a bypass map (drop) on the sensor's end
//!   of a veth between two network namespaces of their own, an AF_XDP
//!   socket registered for the queue (as in tests/steering.rs).
//! - AF_PACKET: a TPACKET_V3 ring with the bypass socket filter attached,
//!   on a veth pair in the test's namespace (as in tests/afpacket.rs).
//!
//! Needs root and `ip netns`; skipped otherwise (with the reason printed).

mod common;
use common::skip;

use mailtap_capture::afpacket::{PacketRing, PacketRingConfig};
use mailtap_capture::bypass::{BypassAction, BypassCounters, BypassKey, SocketBypass};
use mailtap_capture::ifindex;
use mailtap_capture::steering::{SteeringConfig, SteeringProgram, XdpMode};
use std::collections::BTreeMap;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Namespaces A and B joined by a veth pair `va` (in A) <-> `vb` (in B),
/// one queue each, IPv6 off. Deleted on drop, which destroys the veths.
struct Topo {
    a: String,
    b: String,
    va: String,
    vb: String,
    made: Vec<String>,
}

impl Topo {
    fn new() -> Topo {
        let (pid, n) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut t = Topo {
            a: format!("mailtap-byp-{pid}-{n}-a"),
            b: format!("mailtap-byp-{pid}-{n}-b"),
            va: format!("mtb{pid}a{n}"),
            vb: format!("mtb{pid}b{n}"),
            made: Vec::new(),
        };
        assert!(t.va.len() <= 15 && t.vb.len() <= 15);
        for ns in [t.a.clone(), t.b.clone()] {
            ip(&["netns", "del", &ns]);
            let mut out = ip(&["netns", "add", &ns]);
            if !out.status.success() {
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
            &t.vb,
            "netns",
            &t.b,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ]);
        for (ns, dev) in [(&t.a, &t.va), (&t.b, &t.vb)] {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{dev}.disable_ipv6=1"))
                .output();
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

/// Runs `f` in a thread that has entered network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}"))
                .unwrap_or_else(|e| panic!("open /run/netns/{ns}: {e}"));
            // SAFETY: setns on a namespace fd we hold; affects only this
            // thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        });
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A veth pair `cap` <-> `snd` in the test's namespace, up, IPv6 off;
/// deleted on drop.
struct Veth {
    cap: String,
    snd: String,
}

impl Veth {
    fn new() -> Veth {
        let (pid, n) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let cap = format!("mtq{pid}c{n}");
        let snd = format!("mtq{pid}s{n}");
        assert!(cap.len() <= 15 && snd.len() <= 15);
        let mut out = ip(&["link", "add", &cap, "type", "veth", "peer", "name", &snd]);
        if !out.status.success() {
            ip(&["link", "del", &cap]);
            out = ip(&["link", "add", &cap, "type", "veth", "peer", "name", &snd]);
        }
        assert!(
            out.status.success(),
            "ip link add {cap}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = Veth { cap, snd };
        for i in [&v.cap, &v.snd] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        }
        for i in [&v.cap, &v.snd] {
            ip_ok(&["link", "set", i, "up"]);
        }
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        ip(&["link", "del", &self.cap]);
    }
}

/// A raw AF_PACKET socket that sends whole Ethernet frames out of one
/// interface (of the calling thread's namespace).
struct Sender {
    fd: OwnedFd,
    ifindex: i32,
}

impl Sender {
    fn new(ifname: &str) -> Sender {
        // SAFETY: plain socket(2); checked below. Protocol 0: send only.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "sender: {}", std::io::Error::last_os_error());
        Sender {
            // SAFETY: a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            ifindex: ifindex(ifname).unwrap() as i32,
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data; zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        for _ in 0..1000 {
            // SAFETY: frame and sll are valid for the lengths passed.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc == frame.len() as isize {
                return;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::ENETDOWN) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => panic!("sendto: {e}"),
            }
        }
        panic!("sendto kept failing");
    }
}

const SYN: u8 = 0x02;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// One TCP segment to send: its direction, seq, flags and payload length.
#[derive(Clone, Copy, Debug)]
struct Seg {
    key: BypassKey,
    seq: u32,
    flags: u8,
    payload: usize,
    /// Sent with an 802.1Q tag.
    vlan: bool,
    window: u16,
}

fn seg(key: BypassKey, seq: u32, flags: u8, payload: usize) -> Seg {
    Seg {
        key,
        seq,
        flags,
        payload,
        vlan: false,
        window: 65535,
    }
}

impl Seg {
    /// IP bytes: what the kernel counts.
    fn ip_bytes(&self) -> u64 {
        let l3 = if self.key.src.is_ipv4() { 20 } else { 40 };
        (l3 + 20 + self.payload) as u64
    }

    /// The Ethernet frame. The destination MAC is not the receiving end's,
    /// so a frame passed to its kernel is ignored there.
    fn frame(&self) -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&self.key.src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.key.dst_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = self.flags;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        tcp.extend((0..self.payload).map(|i| (i * 7) as u8));
        let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0x6d, 0x74, 0x70, 0, 0x02];
        if self.vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        match (self.key.src, self.key.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut h = [0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
                h[6] = 0x40;
                h[8] = 64;
                h[9] = 6;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = csum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                let mut h = [0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
                h[6] = 6;
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&h);
            }
            _ => panic!("mixed families"),
        }
        f.extend_from_slice(&tcp);
        f
    }
}

/// (src port, dst port, seq, flags) of a TCP segment.
type TcpId = (u16, u16, u32, u8);

/// The [`TcpId`] of a received TCP frame (untagged, or with one 802.1Q
/// tag), None for anything else.
fn tcp_id(d: &[u8]) -> Option<TcpId> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]);
    if et == 0x8100 {
        off += 4;
        et = u16::from_be_bytes([*d.get(off)?, *d.get(off + 1)?]);
    }
    let l3 = off + 2;
    let l4 = match et {
        0x0800 if *d.get(l3 + 9)? == 6 => l3 + usize::from(d[l3] & 0x0f) * 4,
        0x86dd if *d.get(l3 + 6)? == 6 => l3 + 40,
        _ => return None,
    };
    let t = d.get(l4..l4 + 14)?;
    Some((
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
        u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        t[13],
    ))
}

fn id_of(s: &Seg) -> TcpId {
    (s.key.src_port, s.key.dst_port, s.seq, s.flags)
}

fn v4key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> BypassKey {
    BypassKey {
        src: Ipv4Addr::from(src).into(),
        src_port: sport,
        dst: Ipv4Addr::from(dst).into(),
        dst_port: dport,
    }
}

/// The traffic of every test: a bypassed connection (client -> server
/// direction inserted; the server -> client one too where `both`), and
/// another connection that is not bypassed. Returns the segments in
/// sending order and which of them the kernel must keep from user space.
fn traffic(fwd: BypassKey, other: BypassKey, v6: BypassKey) -> Vec<(Seg, bool)> {
    let rev = fwd.reversed();
    let mut tagged = seg(fwd, 0x0000_0100, PSH_ACK, 30);
    tagged.vlan = true;
    let mut zero_window = seg(rev, 7100, ACK, 0);
    zero_window.window = 0;
    vec![
        (seg(fwd, 0xffff_fe00, SYN, 0), false),
        (seg(fwd, 0xffff_fe01, ACK, 0), true),
        (seg(fwd, 0xffff_fe01, PSH_ACK, 300), true),
        // Crosses the sequence-number wrap.
        (seg(fwd, 0xffff_ff2d, PSH_ACK, 1000), true),
        (seg(rev, 7000, PSH_ACK, 100), true),
        (zero_window, true),
        (seg(other, 5, PSH_ACK, 900), false),
        (tagged, true),
        // A retransmission from before the wrap: counted, seq_end stays.
        (seg(fwd, 0xffff_fe01, PSH_ACK, 300), true),
        (seg(v6, 1, PSH_ACK, 64), true),
        (seg(v6.reversed(), 1, ACK, 0), false),
        (seg(fwd, 0x0000_011e, FIN_ACK, 0), false),
        (seg(rev, 7100, RST, 0), false),
        (seg(other, 905, FIN_ACK, 0), false),
    ]
}

/// What the kernel must have counted per direction.
fn expected(segs: &[(Seg, bool)]) -> BTreeMap<[u8; 40], BypassCounters> {
    let mut m: BTreeMap<[u8; 40], BypassCounters> = BTreeMap::new();
    for (s, bypassed) in segs {
        if !bypassed {
            continue;
        }
        let c = m.entry(s.key.to_bytes()).or_default();
        c.packets += 1;
        c.ip_bytes += s.ip_bytes();
        c.zero_windows += u32::from(s.window == 0);
        if s.payload == 0 && s.flags & ACK != 0 {
            c.pure_acks += 1;
        }
        if s.payload > 0 {
            c.payload_packets += 1;
            if c.seq_end
                .is_some_and(|e| (s.seq.wrapping_sub(e) as i32) < 0)
            {
                c.retransmissions += 1;
            }
            let end = s.seq.wrapping_add(s.payload as u32);
            if c.seq_end
                .is_none_or(|e| mailtap_capture::bypass::seq_after(end, e))
            {
                c.seq_end = Some(end);
            }
        }
    }
    m
}

fn mono_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// XDP with an AF_XDP socket on the queue and bypass action drop: the
/// bypassed connection's ordinary packets never reach the socket (nor the
/// kernel) and are counted in the map; its SYN, FIN and RST and the other
/// connection's packets reach the socket; take() removes the entries.
#[test]
fn bypass_xdp_drop_on_veth() {
    use std::num::NonZeroU32;
    use std::str::FromStr;
    use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, SocketConfig, UmemConfig};
    use xsk_rs::{Socket, Umem};

    need_root_and_netns!();
    let t = Topo::new();
    let (b, va, vb) = (t.b.clone(), t.va.clone(), t.vb.clone());
    const CLIENT: [u8; 4] = [10, 198, 0, 2];
    const SERVER: [u8; 4] = [10, 198, 0, 1];
    let fwd = v4key(CLIENT, 40000, SERVER, 25);
    let other = v4key(CLIENT, 40001, SERVER, 25);
    let probe = v4key(CLIENT, 39999, SERVER, 25);
    let v6 = BypassKey {
        src: "fd00:198::2".parse::<Ipv6Addr>().unwrap().into(),
        src_port: 50000,
        dst: "fd00:198::1".parse::<Ipv6Addr>().unwrap().into(),
        dst_port: 587,
    };
    let segs = traffic(fwd, other, v6);
    in_netns(&t.a, move || {
        let cfg = SteeringConfig {
            ports: vec![25, 587],
            all_tcp: false,
            max_queues: 1,
            bypass_action: BypassAction::Drop,
            bypass_entries: 16,
        };
        let prog = SteeringProgram::attach(&va, XdpMode::Skb, &cfg).expect("attach");
        let map = prog.bypass_map().expect("a bypass map");
        assert_eq!(map.capacity(), 16);

        let (umem, mut descs) =
            Umem::new(UmemConfig::default(), NonZeroU32::new(64).unwrap(), false).expect("umem");
        let sock_cfg = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        let iface = Interface::from_str(&va).unwrap();
        // SAFETY: the UMEM is used by this one socket only.
        let (_tx, mut rx, fq_cq) =
            unsafe { Socket::new(sock_cfg, &umem, &iface, 0) }.expect("AF_XDP socket");
        let (mut fill, _comp) = fq_cq.expect("fill and completion rings");
        // SAFETY: the frames are free and belong to this UMEM.
        assert_eq!(unsafe { fill.produce(&descs) }, descs.len());
        prog.register_socket(0, rx.fd().as_raw_fd())
            .expect("register");

        // Reads the socket until it has been quiet for 300 ms.
        let mut recv = |descs: &mut Vec<_>, fill: &mut xsk_rs::FillQueue| {
            let mut got = Vec::new();
            let mut quiet = Instant::now();
            while quiet.elapsed() < Duration::from_millis(300) {
                // SAFETY: descs are ours to overwrite; the frames are read
                // before they go back to the fill ring.
                let n = unsafe { rx.poll_and_consume(descs, 50) }.expect("poll");
                for d in &descs[..n] {
                    // SAFETY: d was just consumed from the RX ring.
                    got.push(unsafe { umem.data(d) }.contents().to_vec());
                }
                if n > 0 {
                    // SAFETY: the frames were copied out above.
                    unsafe { fill.produce(&descs[..n]) };
                    quiet = Instant::now();
                }
            }
            got
        };

        // The link carries traffic once a probe arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0.. {
            assert!(
                Instant::now() < deadline,
                "no probe reached the AF_XDP socket"
            );
            in_netns(&b, || {
                Sender::new(&vb).send(&seg(probe, i, PSH_ACK, 10).frame())
            });
            if !recv(&mut descs, &mut fill).is_empty() {
                break;
            }
        }

        for k in [fwd, fwd.reversed(), v6] {
            map.insert(&k).expect("insert");
        }
        let before = prog.counters();
        let t0 = mono_now();
        in_netns(&b, || {
            let s = Sender::new(&vb);
            for (sg, _) in &segs {
                s.send(&sg.frame());
            }
        });
        let got = recv(&mut descs, &mut fill);
        let got_ids: Vec<_> = got.iter().filter_map(|f| tcp_id(f)).collect();
        let want_ids: Vec<_> = segs
            .iter()
            .filter(|(_, b)| !b)
            .map(|(s, _)| id_of(s))
            .collect();
        assert_eq!(
            got_ids, want_ids,
            "the socket got exactly the segments not bypassed, in order"
        );

        let c = prog.counters();
        eprintln!("counters {c:?}");
        let exp = expected(&segs);
        let (ep, eb) = exp
            .values()
            .fold((0, 0), |(p, b), c| (p + c.packets, b + c.ip_bytes));
        assert_eq!(c.bypassed_packets - before.bypassed_packets, ep, "{c:?}");
        assert_eq!(c.bypassed_bytes - before.bypassed_bytes, eb, "{c:?}");
        assert_eq!(
            c.redirected - before.redirected,
            want_ids.len() as u64,
            "{c:?}"
        );

        for k in [fwd, fwd.reversed(), v6] {
            let got = map.take(&k).expect("in the map");
            let want = exp[&k.to_bytes()];
            assert_eq!(
                (got.packets, got.ip_bytes, got.seq_end),
                (want.packets, want.ip_bytes, want.seq_end),
                "{k}"
            );
            assert_eq!(
                (
                    got.payload_packets,
                    got.pure_acks,
                    got.zero_windows,
                    got.retransmissions
                ),
                (
                    want.payload_packets,
                    want.pure_acks,
                    want.zero_windows,
                    want.retransmissions
                ),
                "{k}"
            );
            assert!(got.last_seen_ns >= t0 && got.last_seen_ns <= mono_now());
            assert!(map.peek(&k).is_none(), "take() removed {k}");
        }
        assert!(map.take(&other).is_none());

        // Taken: the connection's packets reach the socket again.
        in_netns(&b, || {
            Sender::new(&vb).send(&seg(fwd, 0x200, PSH_ACK, 10).frame())
        });
        let got = recv(&mut descs, &mut fill);
        assert_eq!(
            got.iter().filter_map(|f| tcp_id(f)).collect::<Vec<_>>(),
            vec![(40000, 25, 0x200, PSH_ACK)]
        );
        assert_eq!(prog.counters().bypassed_packets, c.bypassed_packets);
    });
}

fn ring_cfg(snaplen: u32) -> PacketRingConfig {
    PacketRingConfig {
        block_size: 1 << 16,
        block_count: 8,
        block_timeout_ms: 5,
        snaplen,
        ..PacketRingConfig::default()
    }
}

/// Reads the ring until it has been quiet for 300 ms: (tcp id, captured
/// length, wire length) of every TCP frame.
fn drain_ring(ring: &mut PacketRing) -> Vec<(TcpId, usize, u32)> {
    let mut got = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        let n = ring
            .poll_batch(usize::MAX, Duration::from_millis(30), |p| {
                if let Some(id) = tcp_id(p.data) {
                    got.push((id, p.data.len(), p.wire_len));
                }
            })
            .unwrap();
        if n > 0 {
            quiet = Instant::now();
        }
    }
    got
}

/// AF_PACKET with the bypass socket filter: bypassed packets never appear
/// in poll_batch, the others do, cut at the snap length; the counters
/// match; after take() the connection's packets appear again.
#[test]
fn bypass_afpacket_socket_filter() {
    need_root_and_netns!();
    let veth = Veth::new();
    const SNAPLEN: u32 = 128;
    let mut ring = PacketRing::open(&veth.cap, &ring_cfg(SNAPLEN)).unwrap();
    assert_eq!(ring.snaplen(), SNAPLEN);
    let sb = SocketBypass::load(ring.snaplen(), 8).expect("load the socket filter");
    assert_eq!(sb.snaplen(), SNAPLEN);

    // A filter loaded with another snap length is refused; the ring keeps
    // its classic filter.
    let other_snap = SocketBypass::load(SNAPLEN + 1, 1).unwrap();
    let err = ring.attach_bypass(&other_snap).unwrap_err();
    assert!(
        err.to_string().contains(&veth.cap) && err.to_string().contains("snaplen"),
        "{err}"
    );
    drop(other_snap);
    ring.attach_bypass(&sb).expect("attach");

    const CLIENT: [u8; 4] = [10, 197, 0, 2];
    const SERVER: [u8; 4] = [10, 197, 0, 1];
    let fwd = v4key(CLIENT, 40000, SERVER, 25);
    let other = v4key(CLIENT, 40001, SERVER, 25);
    let probe = v4key(CLIENT, 39999, SERVER, 25);
    let v6 = BypassKey {
        src: "fd00:197::2".parse::<Ipv6Addr>().unwrap().into(),
        src_port: 50000,
        dst: "fd00:197::1".parse::<Ipv6Addr>().unwrap().into(),
        dst_port: 587,
    };
    let sender = Sender::new(&veth.snd);
    // The link carries traffic once a probe arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        assert!(Instant::now() < deadline, "the link never carried a frame");
        sender.send(&seg(probe, i, PSH_ACK, 10).frame());
        i += 1;
        if !drain_ring(&mut ring).is_empty() {
            break;
        }
    }

    let map = sb.map();
    assert_eq!(map.capacity(), 8);
    for k in [fwd, fwd.reversed(), v6] {
        map.insert(&k).expect("insert");
    }
    let segs = traffic(fwd, other, v6);
    let t0 = mono_now();
    for (s, _) in &segs {
        sender.send(&s.frame());
    }
    let got = drain_ring(&mut ring);
    let want: Vec<_> = segs
        .iter()
        .filter(|(_, b)| !b)
        .map(|(s, _)| {
            let wire = s.frame().len() as u32;
            (id_of(s), wire.min(SNAPLEN) as usize, wire)
        })
        .collect();
    assert_eq!(
        got, want,
        "the ring got exactly the segments not bypassed, cut at the snap length"
    );
    assert!(
        want.iter().any(|(_, cap, wire)| (*cap as u32) < *wire),
        "a frame was longer than the snap length"
    );

    let exp = expected(&segs);
    let (ep, eb) = exp
        .values()
        .fold((0, 0), |(p, b), c| (p + c.packets, b + c.ip_bytes));
    assert_eq!(sb.counters(), (ep, eb));
    for k in [fwd, fwd.reversed(), v6] {
        let got = map.take(&k).expect("in the map");
        let want = exp[&k.to_bytes()];
        assert_eq!(
            (got.packets, got.ip_bytes, got.seq_end),
            (want.packets, want.ip_bytes, want.seq_end),
        );
        assert_eq!(
            (
                got.payload_packets,
                got.pure_acks,
                got.zero_windows,
                got.retransmissions
            ),
            (
                want.payload_packets,
                want.pure_acks,
                want.zero_windows,
                want.retransmissions
            ),
            "{k}"
        );
        assert!(got.last_seen_ns >= t0 && got.last_seen_ns <= mono_now());
    }
    assert!(map.take(&fwd).is_none());
    // Bypassed packets are not ring drops.
    assert_eq!(ring.counters().kernel_drops, 0);

    // Taken: the connection's packets appear again.
    sender.send(&seg(fwd, 0x300, PSH_ACK, 10).frame());
    let got = drain_ring(&mut ring);
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![(40000, 25, 0x300, PSH_ACK)]
    );
    assert_eq!(sb.counters(), (ep, eb));
}

/// The map's kernel memory per connection (two entries), as the kernel
/// accounts it, for a few sizes: printed for docs, and bounded.
#[test]
fn bypass_map_memory_per_entry() {
    if !is_root() {
        skip(concat!(file!(), ":", line!()), "needs root");
        return;
    }
    for conns in [1024u32, 65536, 1 << 20] {
        let sb = SocketBypass::load(65535, conns).expect("load");
        let Some(mem) = sb.map().kernel_memory() else {
            skip(
                concat!(file!(), ":", line!()),
                "the kernel shows no memlock in fdinfo",
            );
            return;
        };
        let per = mem as f64 / f64::from(conns);
        eprintln!("bypass map for {conns} connections: {mem} bytes, {per:.0} bytes per connection");
        assert!(per < 400.0, "{per} bytes per connection");
    }
}

/// Loading is refused for nonsense sizes before anything reaches the
/// kernel (no root needed).
#[test]
fn bypass_bad_sizes_are_rejected() {
    let e = SocketBypass::load(65535, u32::MAX).unwrap_err();
    assert!(e.to_string().contains("bypass_entries"), "{e}");
    assert_eq!(e.source.kind(), std::io::ErrorKind::InvalidInput);
    let e = SocketBypass::load(0, 16).unwrap_err();
    assert!(e.to_string().contains("snaplen"), "{e}");
}
