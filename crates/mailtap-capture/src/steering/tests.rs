//! The program's packet decisions, run in the kernel with
//! BPF_PROG_TEST_RUN on crafted frames (root only): VLAN tags, IPv4
//! options, IPv6 extension headers, fragments and truncation, which the
//! veth tests in `tests/steering.rs` do not reach.

/// A test that cannot run here: a failure with `MAILTAP_REQUIRE_ALL=1`
/// (CI), otherwise said and recorded in `$MAILTAP_SKIP_LOG` (as the
/// workspace tests' `common::skip`).
fn skip(test: &str, why: &str) {
    if std::env::var("MAILTAP_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "{test} cannot run here ({why}), and MAILTAP_REQUIRE_ALL=1 requires every test to run"
        );
    }
    eprintln!("SKIPPED {test}: {why}");
    if let Some(p) = std::env::var_os("MAILTAP_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
        {
            use std::io::Write;
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

use super::*;

#[test]
fn steering_mode_parses_and_lists_choices() {
    assert_eq!("auto".parse::<XdpMode>(), Ok(XdpMode::Auto));
    assert_eq!("native".parse::<XdpMode>(), Ok(XdpMode::Native));
    assert_eq!("skb".parse::<XdpMode>(), Ok(XdpMode::Skb));
    let e = "drv".parse::<XdpMode>().unwrap_err();
    assert!(e.contains("drv") && e.contains("auto, native, skb"), "{e}");
    for m in [XdpMode::Auto, XdpMode::Native, XdpMode::Skb] {
        assert_eq!(m.to_string().parse::<XdpMode>(), Ok(m));
    }
}

/// [`os_code`] reads the errno back out of libbpf-rs's errors (which do
/// not hand it out), with or without context layered on; the bypass map
/// and the load hints decide on it.
#[test]
fn steering_libbpf_rs_errors_keep_the_errno() {
    use libbpf_rs::ErrorExt as _;
    for code in [
        libc::EEXIST,
        libc::E2BIG,
        libc::ENOENT,
        libc::EPERM,
        524,
        4007,
    ] {
        let e = libbpf_rs::Error::from_raw_os_error(code);
        assert_eq!(os_code(&e), Some(code));
        let e = Err::<(), _>(e)
            .context("failed to open object from memory")
            .unwrap_err();
        assert_eq!(os_code(&e), Some(code));
    }
    assert_eq!(
        bpf_error(libbpf_rs::Error::from_raw_os_error(libc::EEXIST)).raw_os_error(),
        Some(libc::EEXIST)
    );
    assert!(bpf_error(libbpf_rs::Error::from_raw_os_error(4007))
        .to_string()
        .starts_with("libbpf error 4007: "));
    let e = libbpf_rs::Error::from(io::Error::new(
        io::ErrorKind::InvalidData,
        "key_size 3 != 4",
    ));
    assert_eq!(os_code(&e), None);
    let io = bpf_error(e);
    assert_eq!(
        (io.kind(), io.raw_os_error()),
        (io::ErrorKind::InvalidData, None)
    );
    assert!(io.to_string().contains("key_size 3 != 4"), "{io}");
}

#[test]
fn steering_port_bitmap_sets_one_bit_per_port() {
    let b = port_bitmap(&[0, 25, 110, 587, 65535, 25]);
    assert_eq!(b.len(), PORT_BITMAP_BYTES);
    let set: Vec<u16> = (0..=u16::MAX)
        .filter(|&p| b[usize::from(p >> 3)] >> (p & 7) & 1 == 1)
        .collect();
    assert_eq!(set, vec![0, 25, 110, 587, 65535]);
}

/// The embedded object loaded as a plain XDP program (not attached),
/// with its maps filled from `cfg`.
struct TestProg {
    obj: Object,
    stats: MapHandle,
    bypass: Option<BypassMap>,
}

impl TestProg {
    fn load(cfg: &SteeringConfig) -> TestProg {
        route_library_logs();
        let entries = bypass::map_entries(cfg.bypass_entries).expect("bypass entries");
        // SEC("xdp") makes it a BPF_PROG_TYPE_XDP program.
        let obj = open_object(4, entries)
            .expect("open embedded object")
            .load()
            .unwrap_or_else(|e| panic!("loading: {}", bpf_error(e)));
        assert!(find_program(&obj, PROG_NAME).is_some());
        let maps = fill_maps(&obj, cfg).expect("fill maps");
        let bypass = (cfg.bypass_entries > 0)
            .then(|| BypassMap::new(maps.bypass, cfg.bypass_entries, "test".into()));
        TestProg {
            obj,
            stats: maps.stats,
            bypass,
        }
    }

    /// Runs the program on `frame`; its XDP action.
    fn run(&self, frame: &[u8]) -> u32 {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == PROG_NAME)
            .expect("mailtap_xdp");
        let mut out = vec![0u8; frame.len() + 256];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..Default::default()
        };
        prog.test_run(input)
            .unwrap_or_else(|e| panic!("test run: {}", bpf_error(e)))
            .return_value
    }

    fn counters(&self) -> SteeringCounters {
        read_stats(&self.stats).expect("read stats")
    }
}

const XDP_PASS: u32 = 2;

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn vlan(tpid: u16, inner: &[u8]) -> Vec<u8> {
    // inner is a frame; insert the tag after the MAC addresses.
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x64]); // TCI: VLAN 100
    f.extend_from_slice(&inner[12..]);
    f
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t
}

/// A TCP segment with `flags`, `seq` and `payload` bytes of payload.
fn tcp_seg(sport: u16, dport: u16, seq: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut t = tcp(sport, dport);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[13] = flags;
    t.extend(std::iter::repeat_n(0x41, payload));
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

/// An IPv4 header with `opt_words` 4-byte option words and the given
/// flags/fragment-offset field.
fn ipv4(proto: u8, opt_words: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + 4 * usize::from(opt_words);
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | (5 + opt_words);
    h[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[10, 0, 0, 2]);
    for b in &mut h[20..] {
        *b = 1; // NOP options
    }
    h.extend_from_slice(payload);
    h
}

/// An IPv6 header followed by extension headers `(type, 8-byte units
/// beyond the first 8)` chained to `last`.
fn ipv6(exts: &[(u8, u8)], last: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, &(_, units)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(last, |e| e.0);
        let mut e = vec![0u8; 8 * (usize::from(units) + 1)];
        e[0] = next;
        e[1] = units;
        body.extend_from_slice(&e);
    }
    body.extend_from_slice(payload);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    h[6] = exts.first().map_or(last, |e| e.0);
    h[7] = 64;
    h[8] = 0xfd;
    h[24] = 0xfd;
    h[23] = 1;
    h[39] = 2;
    h.extend_from_slice(&body);
    h
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn steering_program_decisions() {
    if !root() {
        skip(concat!(file!(), ":", line!()), "needs root");
        return;
    }
    let cfg = SteeringConfig {
        ports: vec![25, 110, 587],
        all_tcp: false,
        max_queues: 4,
        bypass_action: BypassAction::Pass,
        bypass_entries: 0,
    };
    let p = TestProg::load(&cfg);
    const IP: u16 = 0x0800;
    const IP6: u16 = 0x86dd;
    let wanted = |c: &mut SteeringCounters| c.passed_no_socket += 1;
    let not_tcp = |c: &mut SteeringCounters| c.passed_not_tcp += 1;
    let other = |c: &mut SteeringCounters| c.passed_other_port += 1;
    let frag = |c: &mut SteeringCounters| c.passed_fragment += 1;
    let bad = |c: &mut SteeringCounters| c.passed_malformed += 1;
    type Case<'a> = (&'a str, Vec<u8>, &'a dyn Fn(&mut SteeringCounters));
    let cases: Vec<Case> = vec![
        (
            "v4 to 25",
            eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25))),
            &wanted,
        ),
        (
            "v4 from 110",
            eth(IP, &ipv4(6, 0, 0, &tcp(110, 40000))),
            &wanted,
        ),
        (
            "v4 DF set",
            eth(IP, &ipv4(6, 0, 0x4000, &tcp(1, 587))),
            &wanted,
        ),
        (
            "v4 options",
            eth(IP, &ipv4(6, 10, 0, &tcp(40000, 587))),
            &wanted,
        ),
        (
            "v4 other port",
            eth(IP, &ipv4(6, 0, 0, &tcp(40000, 8080))),
            &other,
        ),
        (
            "v4 options other",
            eth(IP, &ipv4(6, 3, 0, &tcp(26, 24))),
            &other,
        ),
        (
            "v4 udp 25",
            eth(IP, &ipv4(17, 0, 0, &udp(40000, 25))),
            &not_tcp,
        ),
        (
            "v4 icmp",
            eth(IP, &ipv4(1, 0, 0, &[8, 0, 0, 0, 0, 0, 0, 0])),
            &not_tcp,
        ),
        ("arp", eth(0x0806, &[0u8; 28]), &not_tcp),
        (
            "v4 MF",
            eth(IP, &ipv4(6, 0, 0x2000, &tcp(40000, 25))),
            &frag,
        ),
        (
            "v4 offset",
            eth(IP, &ipv4(6, 0, 0x0010, &tcp(40000, 25))),
            &frag,
        ),
        (
            "vlan v4 25",
            vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25)))),
            &wanted,
        ),
        (
            "qinq v4 25",
            vlan(
                0x88a8,
                &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(40000, 25)))),
            ),
            &wanted,
        ),
        (
            "3 tags",
            vlan(
                0x8100,
                &vlan(0x8100, &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(1, 25))))),
            ),
            &not_tcp,
        ),
        (
            "vlan v4 other",
            vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &tcp(1, 2)))),
            &other,
        ),
        (
            "v6 to 587",
            eth(IP6, &ipv6(&[], 6, &tcp(40000, 587))),
            &wanted,
        ),
        (
            "v6 hbh+dst",
            eth(IP6, &ipv6(&[(0, 0), (60, 1)], 6, &tcp(25, 40000))),
            &wanted,
        ),
        (
            "v6 routing other",
            eth(IP6, &ipv6(&[(43, 2)], 6, &tcp(80, 40000))),
            &other,
        ),
        ("v6 udp", eth(IP6, &ipv6(&[], 17, &udp(1, 25))), &not_tcp),
        (
            "v6 frag",
            eth(IP6, &ipv6(&[(44, 0)], 6, &tcp(40000, 25))),
            &frag,
        ),
        (
            "v6 hbh frag",
            eth(IP6, &ipv6(&[(0, 0), (44, 0)], 6, &tcp(1, 25))),
            &frag,
        ),
        (
            "v6 4 ext",
            eth(
                IP6,
                &ipv6(&[(0, 0), (60, 0), (43, 0), (60, 0)], 6, &tcp(1, 25)),
            ),
            &wanted,
        ),
        (
            "v6 5 ext",
            eth(
                IP6,
                &ipv6(
                    &[(0, 0), (60, 0), (43, 0), (60, 0), (60, 0)],
                    6,
                    &tcp(1, 25),
                ),
            ),
            &bad,
        ),
        ("eth only", eth(IP, &[]), &bad),
        ("v4 short", eth(IP, &ipv4(6, 0, 0, &[])[..19]), &bad),
        (
            "v4 ihl 4",
            {
                let mut f = eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)));
                f[14] = 0x44;
                f
            },
            &bad,
        ),
        (
            "v4 version 6",
            {
                let mut f = eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)));
                f[14] = 0x65;
                f
            },
            &bad,
        ),
        (
            "v4 tcp short",
            eth(IP, &ipv4(6, 0, 0, &tcp(1, 25)[..10])),
            &bad,
        ),
        ("v4 options past end", eth(IP, &ipv4(6, 10, 0, &[])), &bad),
        ("v6 short", eth(IP6, &ipv6(&[], 6, &[])[..30]), &bad),
        (
            "v6 ext past end",
            eth(IP6, &ipv6(&[(0, 0)], 6, &[])[..44]),
            &bad,
        ),
    ];
    let mut expect = SteeringCounters::default();
    for (name, frame, count) in &cases {
        assert_eq!(p.run(frame), XDP_PASS, "{name}: no socket, so XDP_PASS");
        count(&mut expect);
        assert_eq!(p.counters(), expect, "{name}");
    }

    // all_tcp: any TCP is wanted, the rest unchanged.
    let p = TestProg::load(&SteeringConfig {
        ports: vec![],
        all_tcp: true,
        max_queues: 1,
        bypass_action: BypassAction::Pass,
        bypass_entries: 0,
    });
    p.run(&eth(IP, &ipv4(6, 0, 0, &tcp(40000, 8080))));
    p.run(&eth(IP6, &ipv6(&[], 6, &tcp(443, 40000))));
    p.run(&eth(IP, &ipv4(17, 0, 0, &udp(40000, 25))));
    p.run(&eth(IP, &ipv4(6, 0, 0x2000, &tcp(40000, 25))));
    let c = p.counters();
    assert_eq!(
        c,
        SteeringCounters {
            passed_no_socket: 2,
            passed_not_tcp: 1,
            passed_fragment: 1,
            ..Default::default()
        }
    );
}

const XDP_DROP: u32 = 1;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

fn key4(sport: u16, dport: u16) -> crate::bypass::BypassKey {
    crate::bypass::BypassKey {
        src: std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
        src_port: sport,
        dst: std::net::Ipv4Addr::new(10, 0, 0, 2).into(),
        dst_port: dport,
    }
}

fn bypass_cfg(action: BypassAction, entries: u32) -> SteeringConfig {
    SteeringConfig {
        ports: vec![25, 587],
        all_tcp: false,
        max_queues: 1,
        bypass_action: action,
        bypass_entries: entries,
    }
}

fn mono_now() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The bypass path on crafted frames: ordinary packets of an inserted
/// direction are counted and dropped; SYN, FIN and RST, the other
/// direction and other connections are not; seq_end is wrap-aware;
/// VLAN and IPv6 (with extension headers) keys match; take() removes.
#[test]
fn steering_bypass_counts_and_drops() {
    if !root() {
        skip(concat!(file!(), ":", line!()), "needs root");
        return;
    }
    const IP: u16 = 0x0800;
    const IP6: u16 = 0x86dd;
    let p = TestProg::load(&bypass_cfg(BypassAction::Drop, 4));
    let map = p.bypass.clone().expect("bypass map");
    assert_eq!(map.capacity(), 4);
    let k = key4(40000, 25);
    map.insert(&k).expect("insert");
    assert!(matches!(
        map.insert(&k),
        Err(crate::bypass::BypassInsertError::Exists)
    ));
    assert_eq!(map.peek(&k), Some(Default::default()));
    let t0 = mono_now();

    let v4 = |seq: u32, flags: u8, len: usize| {
        eth(IP, &ipv4(6, 0, 0, &tcp_seg(40000, 25, seq, flags, len)))
    };
    // (frame, action, counted ip bytes)
    let cases: Vec<(&str, Vec<u8>, u32, Option<u64>)> = vec![
        ("syn", v4(0xffff_feff, 0x02, 0), XDP_PASS, None),
        ("ack", v4(0xffff_ff00, ACK, 0), XDP_DROP, Some(40)),
        ("data", v4(0xffff_ff00, PSH_ACK, 100), XDP_DROP, Some(140)),
        (
            "data wraps",
            v4(0x0000_0010, PSH_ACK, 50),
            XDP_DROP,
            Some(90),
        ),
        (
            "retransmit",
            v4(0xffff_ff00, PSH_ACK, 100),
            XDP_DROP,
            Some(140),
        ),
        (
            "ip options",
            eth(IP, &ipv4(6, 2, 0, &tcp_seg(40000, 25, 0x30, ACK, 0))),
            XDP_DROP,
            Some(48),
        ),
        (
            "vlan",
            vlan(0x8100, &v4(0x0000_0042, PSH_ACK, 10)),
            XDP_DROP,
            Some(50),
        ),
        ("fin", v4(0x0000_004c, 0x11, 0), XDP_PASS, None),
        ("rst", v4(0x0000_004d, 0x14, 0), XDP_PASS, None),
        (
            "reverse direction",
            eth(IP, &ipv4(6, 0, 0, &tcp_seg(25, 40000, 1, ACK, 0))),
            XDP_PASS,
            None,
        ),
        (
            "other connection",
            eth(IP, &ipv4(6, 0, 0, &tcp_seg(40001, 25, 1, ACK, 0))),
            XDP_PASS,
            None,
        ),
    ];
    let (mut pk, mut by) = (0u64, 0u64);
    for (name, frame, act, counted) in &cases {
        assert_eq!(p.run(frame), *act, "{name}");
        if let Some(b) = counted {
            pk += 1;
            by += b;
        }
        let c = p.counters();
        assert_eq!((c.bypassed_packets, c.bypassed_bytes), (pk, by), "{name}");
    }
    let c = p.counters();
    // SYN, FIN, RST, reverse and other: wanted, no socket.
    assert_eq!(c.passed_no_socket, 5, "{c:?}");
    assert_eq!(c.redirected, 0);
    let got = map.peek(&k).expect("still there");
    assert_eq!(got.packets, pk);
    assert_eq!(got.ip_bytes, by);
    // 0x42 + 10: the vlan frame's payload end; the retransmission
    // (before the wrap) did not move it back.
    assert_eq!(got.seq_end, Some(0x4c));
    assert!(got.last_seen_ns >= t0 && got.last_seen_ns <= mono_now());
    assert_eq!(map.peek(&k.reversed()), None);

    // take() returns the counters and removes the entry: the next
    // ordinary packet goes to the sensor again.
    assert_eq!(map.take(&k), Some(got));
    assert_eq!(map.take(&k), None);
    assert_eq!(map.peek(&k), None);
    assert_eq!(p.run(&v4(0x60, ACK, 0)), XDP_PASS);
    assert_eq!(p.counters().bypassed_packets, pk);

    // IPv6 with extension headers, both directions inserted.
    let s6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let d6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    let k6 = crate::bypass::BypassKey {
        src: s6.into(),
        src_port: 40000,
        dst: d6.into(),
        dst_port: 587,
    };
    map.insert(&k6).unwrap();
    map.insert(&k6.reversed()).unwrap();
    let f6 = eth(
        IP6,
        &ipv6(&[(0, 0), (60, 1)], 6, &tcp_seg(40000, 587, 1000, ACK, 20)),
    );
    assert_eq!(p.run(&f6), XDP_DROP);
    let c6 = map.take(&k6).unwrap();
    assert_eq!(c6.packets, 1);
    // 40 + 8 + 16 (extension headers) + 20 (TCP) + 20 (payload).
    assert_eq!(c6.ip_bytes, 104);
    assert_eq!(c6.seq_end, Some(1020));
    assert_eq!(map.take(&k6.reversed()).unwrap().packets, 0);

    // Full at 2 x 4 entries.
    for port in 0..8 {
        map.insert(&key4(1000 + port, 25)).unwrap();
    }
    assert!(matches!(
        map.insert(&key4(2000, 25)),
        Err(crate::bypass::BypassInsertError::Full)
    ));
    for port in 0..8 {
        assert!(map.take(&key4(1000 + port, 25)).is_some());
    }
    map.insert(&key4(2000, 25)).unwrap();

    // Pass: counted the same, but XDP_PASS.
    let p = TestProg::load(&bypass_cfg(BypassAction::Pass, 1));
    let map = p.bypass.clone().unwrap();
    map.insert(&k).unwrap();
    assert_eq!(p.run(&v4(5, PSH_ACK, 10)), XDP_PASS);
    let c = p.counters();
    assert_eq!(
        (c.bypassed_packets, c.bypassed_bytes, c.passed_no_socket),
        (1, 50, 0)
    );
    assert_eq!(map.take(&k).unwrap().packets, 1);

    // No bypass map: never consulted.
    let p = TestProg::load(&bypass_cfg(BypassAction::Drop, 0));
    assert!(p.bypass.is_none());
    assert_eq!(p.run(&v4(5, PSH_ACK, 10)), XDP_PASS);
    assert_eq!(p.counters().bypassed_packets, 0);
}

/// The AF_PACKET socket filter's decisions on crafted frames, with
/// BPF_PROG_TEST_RUN (here for the frame builders above). The test run
/// pulls a 14-byte Ethernet header before running a socket filter, so
/// each frame gets a 14-byte dummy header in front: the program then
/// sees the frame from its Ethernet header, as on an AF_PACKET socket.
#[test]
fn sockfilter_bypass_decisions() {
    if !root() {
        skip(concat!(file!(), ":", line!()), "needs root");
        return;
    }
    const IP: u16 = 0x0800;
    const IP6: u16 = 0x86dd;
    const SNAP: u32 = 200;
    let sb = crate::bypass::SocketBypass::load(SNAP, 4).expect("load");
    let map = sb.map();
    let run = |frame: &[u8]| -> u32 {
        let mut data = vec![0x02, 0, 0, 0, 0, 9, 0x02, 0, 0, 0, 0, 8, 0x88, 0xb5];
        data.extend_from_slice(frame);
        // No output buffer.
        let input = libbpf_rs::ProgramInput {
            data_in: Some(&data),
            repeat: 1,
            ..Default::default()
        };
        sb.program()
            .test_run(input)
            .unwrap_or_else(|e| panic!("test run: {}", bpf_error(e)))
            .return_value
    };
    let k = key4(40000, 25);
    map.insert(&k).unwrap();
    let s6: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    let d6: std::net::Ipv6Addr = "fd00::2".parse().unwrap();
    let k6 = crate::bypass::BypassKey {
        src: s6.into(),
        src_port: 40000,
        dst: d6.into(),
        dst_port: 587,
    };
    map.insert(&k6).unwrap();
    let seg4 = |flags: u8, len: usize| tcp_seg(40000, 25, 100, flags, len);
    // (name, frame, bypassed ip bytes or None: snap length returned)
    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        ("v4 ack", eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0))), Some(40)),
        ("v4 syn", eth(IP, &ipv4(6, 0, 0, &seg4(0x02, 0))), None),
        ("v4 fin", eth(IP, &ipv4(6, 0, 0, &seg4(0x11, 0))), None),
        ("v4 rst", eth(IP, &ipv4(6, 0, 0, &seg4(0x04, 0))), None),
        (
            "v4 options",
            eth(IP, &ipv4(6, 10, 0, &seg4(PSH_ACK, 10))),
            // 60-byte IP header, 20 TCP, 10 payload.
            Some(90),
        ),
        (
            "qinq",
            vlan(
                0x88a8,
                &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 5)))),
            ),
            Some(45),
        ),
        (
            "3 tags",
            vlan(
                0x8100,
                &vlan(
                    0x8100,
                    &vlan(0x8100, &eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0)))),
                ),
            ),
            None,
        ),
        (
            "v4 MF fragment",
            eth(IP, &ipv4(6, 0, 0x2000, &seg4(ACK, 0))),
            None,
        ),
        ("v4 udp", eth(IP, &ipv4(17, 0, 0, &seg4(ACK, 0))), None),
        (
            "v4 other port",
            eth(IP, &ipv4(6, 0, 0, &tcp_seg(40000, 26, 1, ACK, 0))),
            None,
        ),
        (
            "v4 truncated tcp",
            eth(IP, &ipv4(6, 0, 0, &seg4(ACK, 0)[..12])),
            None,
        ),
        (
            "v6 hbh+dst",
            eth(
                IP6,
                &ipv6(&[(0, 0), (60, 1)], 6, &tcp_seg(40000, 587, 7, ACK, 3)),
            ),
            Some(40 + 8 + 16 + 20 + 3),
        ),
        (
            "v6 frag",
            eth(IP6, &ipv6(&[(44, 0)], 6, &tcp_seg(40000, 587, 7, ACK, 0))),
            None,
        ),
        (
            "v6 5 ext",
            eth(
                IP6,
                &ipv6(
                    &[(0, 0), (60, 0), (43, 0), (60, 0), (60, 0)],
                    6,
                    &tcp_seg(40000, 587, 7, ACK, 0),
                ),
            ),
            None,
        ),
        ("arp", eth(0x0806, &[0u8; 28]), None),
    ];
    let (mut pk, mut by) = (0u64, 0u64);
    for (name, frame, bypassed) in &cases {
        let want = if bypassed.is_some() { 0 } else { SNAP };
        assert_eq!(run(frame), want, "{name}");
        if let Some(b) = bypassed {
            pk += 1;
            by += b;
        }
        assert_eq!(sb.counters(), (pk, by), "{name}");
    }
    let c4 = map.take(&k).unwrap();
    assert_eq!((c4.packets, c4.ip_bytes), (3, 40 + 90 + 45));
    assert_eq!(c4.seq_end, Some(110));
    let c6 = map.take(&k6).unwrap();
    assert_eq!((c6.packets, c6.seq_end), (1, Some(10)));
}
