//! AF_PACKET TPACKET_V3 rings against the real kernel, on a veth pair of
//! their own: frames are sent from the peer end with a raw AF_PACKET socket
//! and captured on the other end.
//!
//! Needs root (veth creation, AF_PACKET); skipped otherwise. Each test makes
//! its own veth pair (names carry the process id and a counter) with IPv6
//! disabled, so the only traffic on it is ours; every test frame also
//! carries a marker, and anything without it is counted apart.
//!
//! `afpacket_drain_throughput` is a measurement, run with `--ignored`.

mod common;
use common::skip;

use mailtap_capture::afpacket::{Fanout, FanoutMode, PacketRing, PacketRingConfig};
use mailtap_capture::{ifindex, RxPacket};
use std::collections::{BTreeMap, BTreeSet};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            skip(concat!(file!(), ":", line!()), "needs root");
            return;
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique() -> (u32, u32) {
    (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("run ip")
}

/// A veth pair `cap` <-> `snd`, up, IPv6 off; deleted on drop.
struct Veth {
    cap: String,
    snd: String,
}

impl Veth {
    fn new() -> Veth {
        let (pid, n) = unique();
        let cap = format!("mtp{pid}c{n}");
        let snd = format!("mtp{pid}s{n}");
        assert!(cap.len() <= 15 && snd.len() <= 15);
        let mut out = ip(&["link", "add", &cap, "type", "veth", "peer", "name", &snd]);
        if !out.status.success() {
            // A leftover of an earlier process with the same pid.
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
            // No router solicitations, MLD or DAD on the test link. Best
            // effort: without IPv6 there is nothing to disable.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        }
        for i in [&v.cap, &v.snd] {
            let out = ip(&["link", "set", i, "up"]);
            assert!(out.status.success(), "ip link set {i} up");
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
/// interface.
struct Sender {
    fd: OwnedFd,
    ifindex: i32,
}

impl Sender {
    fn new(ifname: &str) -> Sender {
        // SAFETY: plain socket(2); checked below. Protocol 0: send only.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "sender socket: {}",
            std::io::Error::last_os_error()
        );
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
                // The link is still coming up, or the device is busy.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::ENETDOWN) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => panic!("sendto: {e}"),
            }
        }
        panic!("sendto kept failing");
    }
}

const MARK: &[u8; 8] = b"MTAPTEST";
const PROBE: u8 = 0xff;
/// Ethernet + IPv4 + TCP + marker, tag and sequence number.
const MIN_FRAME: usize = 14 + 20 + 20 + 8 + 1 + 4;

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

/// An Ethernet/IPv4/TCP frame of exactly `len` bytes carrying the marker,
/// `tag` and `seq`. The destination MAC is not the capture end's, so the
/// kernel's IP layer ignores the frame after the capture socket saw it.
fn frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    tag: u8,
    seq: u32,
    len: usize,
) -> Vec<u8> {
    assert!(len >= MIN_FRAME);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&[0x02, 0x6d, 0x74, 0x70, 0x00, tag]);
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&ip_len.to_be_bytes());
    iph[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    iph[6] = 0x40; // DF
    iph[8] = 64;
    iph[9] = 6;
    iph[12..16].copy_from_slice(&src);
    iph[16..20].copy_from_slice(&dst);
    let c = csum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(MARK);
    f.push(tag);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u8;
    while f.len() < len {
        f.push(i);
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    f
}

/// (tag, seq) of one of our frames, None for anything else.
fn marker(data: &[u8]) -> Option<(u8, u32)> {
    if data.len() < MIN_FRAME || data[6..10] != [0x02, 0x6d, 0x74, 0x70] || &data[54..62] != MARK {
        return None;
    }
    let seq = u32::from_be_bytes(data[63..67].try_into().unwrap());
    Some((data[62], seq))
}

fn probe_frame(seq: u32) -> Vec<u8> {
    frame([10, 9, 9, 1], [10, 9, 9, 2], 9, 9, PROBE, seq, 100)
}

/// Sends probe frames until one shows up on one of `rings` (the link needs
/// a moment after `ip link set up` before it carries traffic), then drains
/// the rings. Returns the number of probes sent.
fn sync_link(sender: &Sender, rings: &mut [&mut PacketRing]) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    'outer: loop {
        assert!(Instant::now() < deadline, "test link never carried a frame");
        sender.send(&probe_frame(sent));
        sent += 1;
        for r in rings.iter_mut() {
            let mut seen = false;
            r.poll_batch(usize::MAX, Duration::from_millis(30), |p| {
                seen |= marker(p.data).is_some_and(|(t, _)| t == PROBE)
            })
            .unwrap();
            if seen {
                break 'outer;
            }
        }
    }
    drain(rings, |_, _| {});
    sent
}

/// Reads all rings until none has handed over anything for 100 ms.
fn drain(rings: &mut [&mut PacketRing], mut f: impl FnMut(usize, RxPacket<'_>)) {
    let mut idle = 0;
    while idle < 3 {
        let mut got = 0;
        for (i, r) in rings.iter_mut().enumerate() {
            got += r
                .poll_batch(usize::MAX, Duration::from_millis(35), |p| f(i, p))
                .unwrap();
        }
        idle = if got == 0 { idle + 1 } else { 0 };
    }
}

fn small_ring() -> PacketRingConfig {
    PacketRingConfig {
        block_size: 1 << 16,
        block_count: 16,
        ..PacketRingConfig::default()
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn afpacket_every_frame_once_in_order() {
    need_root!();
    let veth = Veth::new();
    let mut ring = PacketRing::open(&veth.cap, &small_ring()).unwrap();
    assert_eq!(ring.ifname(), veth.cap);
    let sender = Sender::new(&veth.snd);
    sync_link(&sender, &mut [&mut ring]);
    let before = ring.counters();

    const N: u32 = 500;
    const TAG: u8 = 1;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let len = MIN_FRAME + (i as usize * 37) % (1514 - MIN_FRAME);
            frame([10, 0, 0, 1], [10, 0, 0, 2], 40000, 25, TAG, i, len)
        })
        .collect();
    let t0 = now_ns();
    for f in &frames {
        sender.send(f);
    }
    let t1 = now_ns();

    let mut got: Vec<(u32, Vec<u8>, i64, u32)> = Vec::new();
    let (mut all_pkts, mut all_bytes, mut others) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut batches = 0;
    while got.len() < N as usize && Instant::now() < deadline {
        ring.poll_batch(64, Duration::from_millis(100), |p| {
            all_pkts += 1;
            all_bytes += p.data.len() as u64;
            match marker(p.data) {
                Some((TAG, seq)) => got.push((seq, p.data.to_vec(), p.ts.0, p.wire_len)),
                _ => others += 1,
            }
        })
        .unwrap();
        batches += 1;
    }
    // Nothing arrives twice: the ring stays quiet afterwards.
    ring.poll_batch(usize::MAX, Duration::from_millis(100), |p| {
        all_pkts += 1;
        all_bytes += p.data.len() as u64;
        match marker(p.data) {
            Some((TAG, seq)) => got.push((seq, p.data.to_vec(), p.ts.0, p.wire_len)),
            _ => others += 1,
        }
    })
    .unwrap();
    eprintln!(
        "{} frames in {batches} batches, {others} other packets",
        got.len()
    );

    assert_eq!(got.len(), N as usize, "every frame exactly once");
    let mut prev_ts = 0;
    for (i, (seq, data, ts, wire_len)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u32, "in order");
        assert_eq!(data, &frames[i], "frame {i} byte-identical");
        assert_eq!(*wire_len as usize, frames[i].len(), "frame {i} wire_len");
        assert!(
            *ts > 0 && *ts >= prev_ts,
            "frame {i}: ts {ts} after {prev_ts}"
        );
        assert!(
            *ts >= t0 - 1_000_000_000 && *ts <= t1 + 1_000_000_000,
            "frame {i}: ts {ts} not near send time {t0}..{t1}"
        );
        prev_ts = *ts;
    }
    let c = ring.counters();
    assert_eq!(c.packets - before.packets, all_pkts);
    assert_eq!(c.bytes - before.bytes, all_bytes);
    if others == 0 {
        assert_eq!(
            all_bytes,
            frames.iter().map(|f| f.len() as u64).sum::<u64>()
        );
    }
    assert_eq!(c.kernel_drops, 0);
    assert_eq!(c.truncated, 0);
    assert_eq!(c.invalid_descs, 0);
}

/// Opens two rings on `ifname` in a fresh fanout group. Group ids are global
/// in the network namespace, so an id some other test or process holds on
/// another interface is refused (EINVAL) and the next one is tried.
fn fanout_pair(ifname: &str) -> (PacketRing, PacketRing, u16) {
    let (pid, n) = unique();
    let base = (pid.wrapping_mul(2654435761) ^ (n << 7)) as u16;
    for k in 0..64u16 {
        let id = base.wrapping_add(k.wrapping_mul(7919));
        let cfg = PacketRingConfig {
            fanout: Some(Fanout {
                group_id: id,
                mode: FanoutMode::Hash,
                defrag: true,
            }),
            ..small_ring()
        };
        match PacketRing::open(ifname, &cfg) {
            Ok(a) => {
                let b = PacketRing::open(ifname, &cfg).expect("second ring joins the group");
                return (a, b, id);
            }
            Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) => {
                assert!(e.to_string().contains("PACKET_FANOUT"), "{e}");
                continue;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free fanout group id");
}

#[test]
fn afpacket_fanout_hash_keeps_flows_together() {
    need_root!();
    let veth = Veth::new();
    let (mut r0, mut r1, id) = fanout_pair(&veth.cap);
    let sender = Sender::new(&veth.snd);
    sync_link(&sender, &mut [&mut r0, &mut r1]);

    const FLOWS: u32 = 50;
    const PER_DIR: u32 = 3;
    const TAG: u8 = 2;
    let mut seq = 0u32;
    // seq -> (flow, direction)
    let mut what = BTreeMap::new();
    for round in 0..PER_DIR {
        for flow in 0..FLOWS {
            let client = [10, 1, (flow / 200) as u8, (flow % 200) as u8 + 1];
            let server = [10, 2, 0, (flow % 7) as u8 + 1];
            let cport = 30000 + flow as u16 * 13;
            let sport = [25u16, 110, 587][flow as usize % 3];
            for dir in 0..2u8 {
                let f = if dir == 0 {
                    frame(client, server, cport, sport, TAG, seq, 120 + round as usize)
                } else {
                    frame(server, client, sport, cport, TAG, seq, 140 + round as usize)
                };
                sender.send(&f);
                what.insert(seq, (flow, dir));
                seq += 1;
            }
        }
    }

    // flow -> rings it was seen on; (flow, dir) -> packets
    let mut rings_of: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let mut count: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut seen = 0;
    drain(&mut [&mut r0, &mut r1], |ring, p| {
        if let Some((TAG, s)) = marker(p.data) {
            let (flow, dir) = what[&s];
            rings_of.entry(flow).or_default().insert(ring);
            *count.entry((flow, dir)).or_default() += 1;
            seen += 1;
        }
    });
    let per_ring: Vec<usize> = (0..2)
        .map(|r| rings_of.values().filter(|s| s.contains(&r)).count())
        .collect();
    eprintln!("fanout group {id}: flows per ring {per_ring:?}");
    assert_eq!(seen, FLOWS * PER_DIR * 2, "every frame arrived once");
    for flow in 0..FLOWS {
        assert_eq!(count[&(flow, 0)], PER_DIR, "flow {flow} client->server");
        assert_eq!(count[&(flow, 1)], PER_DIR, "flow {flow} server->client");
        assert_eq!(
            rings_of[&flow].len(),
            1,
            "flow {flow}: both directions on one ring, got {:?}",
            rings_of[&flow]
        );
    }
    assert!(
        per_ring[0] > 0 && per_ring[1] > 0,
        "both rings got flows: {per_ring:?}"
    );
    let (c0, c1) = (r0.counters(), r1.counters());
    assert_eq!(c0.kernel_drops + c1.kernel_drops, 0);
}

#[test]
fn afpacket_kernel_drops_counted() {
    need_root!();
    let veth = Veth::new();
    let cfg = PacketRingConfig {
        block_size: 4096,
        block_count: 2,
        frame_size: 2048,
        ..PacketRingConfig::default()
    };
    let mut ring = PacketRing::open(&veth.cap, &cfg).unwrap();
    let sender = Sender::new(&veth.snd);

    let mut probes_seen = 0u64;
    let mut others = 0u64;
    // Count every probe ever received, including during sync.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probes_sent = 0u32;
    while probes_seen == 0 {
        assert!(Instant::now() < deadline, "test link never carried a frame");
        sender.send(&probe_frame(probes_sent));
        probes_sent += 1;
        ring.poll_batch(usize::MAX, Duration::from_millis(30), |p| {
            match marker(p.data) {
                Some((PROBE, _)) => probes_seen += 1,
                _ => others += 1,
            }
        })
        .unwrap();
    }

    const N: u32 = 400;
    const TAG: u8 = 3;
    for i in 0..N {
        sender.send(&frame([10, 3, 0, 1], [10, 3, 0, 2], 1234, 25, TAG, i, 200));
    }
    // The kernel retires the (full) blocks; nobody reads them.
    std::thread::sleep(Duration::from_millis(50));

    let mut got = 0u64;
    let mut seqs = Vec::new();
    drain(&mut [&mut ring], |_, p| match marker(p.data) {
        Some((TAG, s)) => {
            got += 1;
            seqs.push(s)
        }
        Some((PROBE, _)) => probes_seen += 1,
        _ => others += 1,
    });
    let c = ring.counters();
    eprintln!(
        "sent {N} (+{probes_sent} probes): received {got} (+{probes_seen} probes, {others} others), \
         kernel_drops {}, ring_full {}",
        c.kernel_drops, c.ring_full
    );
    assert!(c.kernel_drops > 0, "a 2 x 4 KiB ring must overflow");
    assert!(c.ring_full > 0, "the queue froze at least once");
    assert_eq!(others, 0, "stray packets on the test link");
    assert_eq!(
        got + probes_seen + c.kernel_drops,
        u64::from(N + probes_sent),
        "every frame either received or counted as dropped"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "received in order");
    assert_eq!(c.packets, got + probes_seen);
    // Counters accumulate: a second read adds nothing new.
    let c2 = ring.counters();
    assert_eq!(c2.kernel_drops, c.kernel_drops);
    assert_eq!(c2.ring_full, c.ring_full);
}

#[test]
fn afpacket_snaplen_truncates() {
    need_root!();
    let veth = Veth::new();
    let cfg = PacketRingConfig {
        snaplen: 128,
        ..small_ring()
    };
    let mut ring = PacketRing::open(&veth.cap, &cfg).unwrap();
    let sender = Sender::new(&veth.snd);
    sync_link(&sender, &mut [&mut ring]); // probes are 100 bytes: not truncated
    assert_eq!(ring.counters().truncated, 0);

    const TAG: u8 = 4;
    let f = frame([10, 4, 0, 1], [10, 4, 0, 2], 5555, 110, TAG, 7, 1000);
    sender.send(&f);
    let mut got = Vec::new();
    drain(&mut [&mut ring], |_, p| {
        if let Some((TAG, 7)) = marker(p.data) {
            got.push((p.data.to_vec(), p.wire_len));
        }
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.len(), 128);
    assert_eq!(got[0].0[..], f[..128]);
    assert_eq!(got[0].1, 1000);
    assert_eq!(ring.counters().truncated, 1);
}

#[test]
fn afpacket_config_errors_name_the_field() {
    let ok = PacketRingConfig::default();
    ok.validate().unwrap();
    let bad = |f: &dyn Fn(&mut PacketRingConfig)| {
        let mut c = PacketRingConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    let e = bad(&|c| c.block_size = 4096 * 3);
    assert!(
        e.contains("block_size") && e.contains("power of two"),
        "{e}"
    );
    let e = bad(&|c| c.block_size = 5000);
    assert!(e.contains("block_size") && e.contains("page size"), "{e}");
    let e = bad(&|c| c.block_size = 0);
    assert!(e.contains("block_size"), "{e}");
    let e = bad(&|c| c.block_count = 0);
    assert!(e.contains("block_count"), "{e}");
    let e = bad(&|c| {
        c.block_size = 4096;
        c.frame_size = 8192
    });
    assert!(e.contains("frame_size") && e.contains("block_size"), "{e}");
    let e = bad(&|c| c.frame_size = 1000);
    assert!(
        e.contains("frame_size") && e.contains("multiple of 16"),
        "{e}"
    );
    let e = bad(&|c| c.frame_size = 16);
    assert!(e.contains("frame_size"), "{e}");
    let e = bad(&|c| c.snaplen = 10);
    assert!(e.contains("snaplen"), "{e}");

    // Rejected before any socket is made: no root needed.
    let c = PacketRingConfig {
        block_count: 0,
        ..PacketRingConfig::default()
    };
    let e = PacketRing::open("lo", &c).unwrap_err().to_string();
    assert!(e.contains("lo") && e.contains("block_count"), "{e}");

    let name = format!("mtpx{}", std::process::id());
    let e = PacketRing::open(&name, &PacketRingConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&name), "{e}");
}

#[test]
fn afpacket_fanout_mode_from_str() {
    assert_eq!("hash".parse::<FanoutMode>(), Ok(FanoutMode::Hash));
    assert_eq!("qm".parse::<FanoutMode>(), Ok(FanoutMode::QueueMapping));
    assert_eq!("cpu".parse::<FanoutMode>(), Ok(FanoutMode::Cpu));
    let e = "rollover".parse::<FanoutMode>().unwrap_err();
    assert!(
        e.contains("\"hash\"") && e.contains("\"qm\"") && e.contains("\"cpu\""),
        "{e}"
    );
}

/// Measures the receive path alone: fills a 64 MiB ring without reading,
/// then times draining it. Run with
/// `cargo test --release -p mailtap-capture --test afpacket -- --ignored --nocapture`.
#[test]
#[ignore]
fn afpacket_drain_throughput() {
    need_root!();
    let veth = Veth::new();
    let cfg = PacketRingConfig {
        // Blocks retire when full, not half empty: 64 x 1 MiB hold ~340k
        // 100-byte packets.
        block_timeout_ms: 1000,
        ..PacketRingConfig::default()
    };
    let mut ring = PacketRing::open(&veth.cap, &cfg).unwrap();
    let sender = Sender::new(&veth.snd);
    sync_link(&sender, &mut [&mut ring]);
    const N: u32 = 200_000;
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| frame([10, 5, 0, 1], [10, 5, 0, 2], 2000 + i, 25, 5, i as u32, 100))
        .collect();
    let t = Instant::now();
    for i in 0..N {
        sender.send(&frames[i as usize % frames.len()]);
    }
    let send = t.elapsed();
    // Let the last, partly filled block retire.
    std::thread::sleep(Duration::from_millis(1100));
    let mut n = 0u64;
    let mut sum = 0u64;
    let mut batches = 0u64;
    let t = Instant::now();
    loop {
        let got = ring
            .poll_batch(4096, Duration::ZERO, |p| {
                n += 1;
                sum = sum.wrapping_add(u64::from(p.data[p.data.len() - 1]) + p.ts.0 as u64);
            })
            .unwrap();
        if got == 0 {
            break;
        }
        batches += 1;
    }
    let drain = t.elapsed();
    let c = ring.counters();
    eprintln!(
        "sent {N} x 100 B in {send:?} ({:.0} pkt/s); drained {n} in {batches} batches in {drain:?}: \
         {:.1} ns/packet, {:.1} Mpkt/s; kernel_drops {} (checksum {sum})",
        f64::from(N) / send.as_secs_f64(),
        drain.as_nanos() as f64 / n as f64,
        n as f64 / drain.as_secs_f64() / 1e6,
        c.kernel_drops
    );
}

/// Receives on another thread (the ring is `Send`) while frames are being
/// sent: reports drops and packets per `poll_batch` call. Run with
/// `cargo test --release -p mailtap-capture --test afpacket -- --ignored --nocapture`.
#[test]
#[ignore]
fn afpacket_live_receive() {
    need_root!();
    let veth = Veth::new();
    let mut ring = PacketRing::open(&veth.cap, &PacketRingConfig::default()).unwrap();
    let sender = Sender::new(&veth.snd);
    sync_link(&sender, &mut [&mut ring]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rx = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut n, mut calls, mut empty) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let got = ring
                    .poll_batch(4096, Duration::from_millis(50), |p| {
                        n += 1;
                        std::hint::black_box(p.data);
                    })
                    .unwrap();
                calls += 1;
                empty += u64::from(got == 0);
            }
            (n, calls, empty, ring.counters())
        })
    };
    const N: u32 = 300_000;
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|i| frame([10, 6, 0, 1], [10, 6, 0, 2], 2000 + i, 25, 6, i as u32, 100))
        .collect();
    let t = Instant::now();
    for i in 0..N {
        sender.send(&frames[i as usize % frames.len()]);
    }
    let send = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (n, calls, empty, c) = rx.join().unwrap();
    eprintln!(
        "sent {N} x 100 B at {:.0} pkt/s; received {n} in {} non-empty poll_batch calls \
         ({:.0} packets per call, {empty} empty), kernel_drops {}, ring_full {}",
        f64::from(N) / send.as_secs_f64(),
        calls - empty,
        n as f64 / (calls - empty).max(1) as f64,
        c.kernel_drops,
        c.ring_full
    );
    assert_eq!(n + c.kernel_drops, u64::from(N));
}
