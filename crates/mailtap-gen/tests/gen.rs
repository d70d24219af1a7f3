//! End-to-end checks of the generator: the pcap is parsed, checksummed and
//! reassembled here, independently of the generator's own code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mailtap_gen::{
    extraction_test_config, generate, generate_with_truth, sample_config, sample_pop3_config,
    GenConfig, Mix, Protocol, Shape, TrafficMix,
};

type Endpoint = (IpAddr, u16);

#[derive(Debug, Clone)]
struct Pkt {
    ts_us: u64,
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

const FIN: u8 = 1;
const SYN: u8 = 2;
const ACK: u8 = 16;

fn csum(data: &[u8], mut s: u32) -> u32 {
    for c in data.chunks(2) {
        s += if c.len() == 2 {
            (c[0] as u32) << 8 | c[1] as u32
        } else {
            (c[0] as u32) << 8
        };
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

fn u16be(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn u32be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses the whole capture, asserting well-formedness and checksums.
fn parse(pcap: &[u8]) -> Vec<Pkt> {
    assert!(pcap.len() >= 24);
    assert_eq!(u32le(&pcap[0..]), 0xa1b2_c3d4, "magic (LE, microseconds)");
    assert_eq!(u16::from_le_bytes([pcap[4], pcap[5]]), 2);
    assert_eq!(u16::from_le_bytes([pcap[6], pcap[7]]), 4);
    let snaplen = u32le(&pcap[16..]) as usize;
    assert_eq!(u32le(&pcap[20..]), 1, "linktype ethernet");
    let mut off = 24;
    let mut out = Vec::new();
    while off < pcap.len() {
        assert!(off + 16 <= pcap.len(), "truncated record header");
        let sec = u32le(&pcap[off..]) as u64;
        let usec = u32le(&pcap[off + 4..]) as u64;
        assert!(usec < 1_000_000);
        let incl = u32le(&pcap[off + 8..]) as usize;
        let orig = u32le(&pcap[off + 12..]) as usize;
        assert_eq!(incl, orig);
        assert!(incl <= snaplen);
        off += 16;
        assert!(off + incl <= pcap.len(), "truncated record");
        let f = &pcap[off..off + incl];
        off += incl;
        let ethertype = u16be(&f[12..]);
        let (src_ip, dst_ip, l4, pseudo): (IpAddr, IpAddr, &[u8], u32) = match ethertype {
            0x0800 => {
                let ip = &f[14..];
                assert_eq!(ip[0], 0x45);
                let tot = u16be(&ip[2..]) as usize;
                assert_eq!(tot, ip.len(), "ipv4 total length");
                assert_eq!(ip[9], 6);
                assert_eq!(csum(&ip[..20], 0), 0xffff, "ipv4 header checksum");
                let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
                let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                let mut p = csum(&ip[12..20], 0);
                p = csum(&[0, 6], p);
                p = csum(&((tot - 20) as u16).to_be_bytes(), p);
                (s.into(), d.into(), &ip[20..], p)
            }
            0x86dd => {
                let ip = &f[14..];
                assert_eq!(ip[0] >> 4, 6);
                let plen = u16be(&ip[4..]) as usize;
                assert_eq!(plen + 40, ip.len(), "ipv6 payload length");
                assert_eq!(ip[6], 6);
                let s = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
                let d = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
                let mut p = csum(&ip[8..40], 0);
                p = csum(&[0, 6], p);
                p = csum(&(plen as u16).to_be_bytes(), p);
                (s.into(), d.into(), &ip[40..], p)
            }
            t => panic!("unexpected ethertype {t:#x}"),
        };
        assert_eq!(csum(l4, pseudo), 0xffff, "tcp checksum");
        let hl = (l4[12] >> 4) as usize * 4;
        assert!(hl >= 20 && hl <= l4.len());
        out.push(Pkt {
            ts_us: sec * 1_000_000 + usec,
            src: (src_ip, u16be(&l4[0..])),
            dst: (dst_ip, u16be(&l4[2..])),
            seq: u32be(&l4[4..]),
            ack: u32be(&l4[8..]),
            flags: l4[13],
            payload: l4[hl..].to_vec(),
        });
    }
    out
}

#[derive(Default)]
struct Flow {
    client: Option<Endpoint>,
    pkts: Vec<Pkt>,
}

fn is_server_port(p: u16) -> bool {
    matches!(p, 25 | 587 | 110)
}

/// Groups packets by connection, keyed by (client, server).
fn flows(pkts: &[Pkt]) -> BTreeMap<(Endpoint, Endpoint), Flow> {
    let mut m: BTreeMap<(Endpoint, Endpoint), Flow> = BTreeMap::new();
    for p in pkts {
        let key = if is_server_port(p.dst.1) {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        let f = m.entry(key).or_default();
        if p.flags & SYN != 0 && p.flags & ACK == 0 {
            assert!(f.client.is_none(), "second SYN on {key:?}");
            f.client = Some(p.src);
        }
        f.pkts.push(p.clone());
    }
    m
}

/// Checks handshake, seq/ack continuity and timestamps; returns the
/// reassembled (client, server) byte streams.
fn reassemble(key: &(Endpoint, Endpoint), f: &Flow) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(
        f.client,
        Some(key.0),
        "flow must start with the client's SYN"
    );
    let p = &f.pkts;
    assert!(p.len() >= 7, "{key:?}: too few packets");
    assert_eq!(p[0].flags, SYN);
    assert_eq!(p[1].flags, SYN | ACK);
    assert_eq!(p[1].ack, p[0].seq.wrapping_add(1));
    assert_eq!(p[2].flags, ACK);
    let mut next = [p[0].seq.wrapping_add(1), p[1].seq.wrapping_add(1)];
    let mut streams = (Vec::new(), Vec::new());
    let mut fins = [false, false];
    for w in p.windows(2) {
        assert!(
            w[1].ts_us > w[0].ts_us,
            "{key:?}: timestamps must increase within a flow"
        );
    }
    for pk in &p[2..] {
        let d = if pk.src == key.0 { 0 } else { 1 };
        assert!(
            !fins[d] || (pk.payload.is_empty() && pk.flags == ACK),
            "data after FIN"
        );
        assert_eq!(pk.seq, next[d], "{key:?}: seq continuity, dir {d}");
        assert!(pk.flags & ACK != 0);
        assert_eq!(
            pk.ack,
            next[1 - d],
            "{key:?}: ack must cover everything the peer sent"
        );
        next[d] = next[d].wrapping_add(pk.payload.len() as u32);
        if d == 0 {
            streams.0.extend_from_slice(&pk.payload);
        } else {
            streams.1.extend_from_slice(&pk.payload);
        }
        if pk.flags & FIN != 0 {
            fins[d] = true;
            next[d] = next[d].wrapping_add(1);
        }
    }
    assert!(fins[0] && fins[1], "{key:?}: both sides must close");
    assert_eq!(p.last().unwrap().flags, ACK, "final ACK");
    (streams.0, streams.1)
}

#[derive(Debug, Default)]
struct Parsed {
    /// (mailfrom, rcpts, message bytes, via_bdat)
    messages: Vec<(String, Vec<String>, Vec<u8>, bool)>,
    commands: Vec<String>,
    starttls: bool,
}

fn bare(arg: &str, prefix: &str) -> String {
    let rest = arg
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{arg:?} lacks {prefix}"));
    let a = rest.find('<').unwrap();
    let b = rest.find('>').unwrap();
    rest[a + 1..b].to_string()
}

/// Parses a client stream as SMTP: commands, DATA bodies (dot-unstuffed)
/// and BDAT chunks.
fn parse_client(s: &[u8]) -> Parsed {
    parse_client_with(s, b"")
}

/// [`parse_client`], told by the server stream `srv` which `DATA` commands
/// were refused (a pipelined `DATA` after a rejected sender or with no
/// accepted recipient is not followed by a message).
fn parse_client_with(s: &[u8], srv: &[u8]) -> Parsed {
    let mut data_ok = srv
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            if l.starts_with(b"354 ") {
                Some(true)
            } else if l.starts_with(b"554 5.5.1 Error: no valid recipients")
                || l.starts_with(b"503 5.5.1 Error: need RCPT command")
            {
                Some(false)
            } else {
                None
            }
        })
        .collect::<std::collections::VecDeque<_>>();
    let mut out = Parsed::default();
    let mut pos = 0;
    let mut from = String::new();
    let mut rcpts = Vec::new();
    let mut bdat = Vec::new();
    let line = |pos: &mut usize| -> Vec<u8> {
        let rest = &s[*pos..];
        let i = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("CRLF-terminated line");
        *pos += i + 2;
        rest[..i].to_vec()
    };
    while pos < s.len() {
        let l = String::from_utf8(line(&mut pos)).expect("command lines are UTF-8");
        let (cmd, arg) = l.split_once(' ').unwrap_or((&l, ""));
        out.commands.push(cmd.to_string());
        match cmd {
            "EHLO" | "RSET" | "QUIT" => {}
            "AUTH" => {
                if arg == "LOGIN" {
                    line(&mut pos);
                    line(&mut pos);
                } else {
                    assert!(arg.starts_with("PLAIN "));
                }
            }
            "MAIL" => {
                from = bare(arg, "FROM:");
                rcpts.clear();
            }
            "RCPT" => rcpts.push(bare(arg, "TO:")),
            "DATA" => {
                if data_ok.pop_front() == Some(false) {
                    continue;
                }
                let mut msg = Vec::new();
                loop {
                    let l = line(&mut pos);
                    if l == b"." {
                        break;
                    }
                    let l = if l.first() == Some(&b'.') {
                        &l[1..]
                    } else {
                        &l[..]
                    };
                    msg.extend_from_slice(l);
                    msg.extend_from_slice(b"\r\n");
                }
                out.messages.push((from.clone(), rcpts.clone(), msg, false));
            }
            "BDAT" => {
                let mut it = arg.split(' ');
                let n: usize = it.next().unwrap().parse().unwrap();
                let last = it.next() == Some("LAST");
                bdat.extend_from_slice(&s[pos..pos + n]);
                pos += n;
                if last {
                    out.messages.push((
                        from.clone(),
                        rcpts.clone(),
                        std::mem::take(&mut bdat),
                        true,
                    ));
                }
            }
            "STARTTLS" => {
                out.starttls = true;
                // everything after is opaque TLS records
                assert_eq!(s[pos], 0x16, "TLS handshake record after STARTTLS");
                break;
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
    out
}

/// Every server line is a reply: three digits then space or hyphen.
fn check_server(s: &[u8], tls: bool) -> Vec<u16> {
    let mut codes = Vec::new();
    let mut pos = 0;
    while pos < s.len() {
        let rest = &s[pos..];
        let i = rest.windows(2).position(|w| w == b"\r\n").expect("CRLF");
        let l = &rest[..i];
        pos += i + 2;
        assert!(
            l.len() >= 4 && l[..3].iter().all(u8::is_ascii_digit) && (l[3] == b' ' || l[3] == b'-'),
            "{l:?}"
        );
        let code: u16 = std::str::from_utf8(&l[..3]).unwrap().parse().unwrap();
        if l[3] == b' ' {
            codes.push(code);
        }
        if tls && code == 220 && l.starts_with(b"220 2.0.0 Ready to start TLS") {
            break;
        }
    }
    codes
}

fn gen(cfg: &GenConfig) -> Vec<u8> {
    let mut v = Vec::new();
    generate(cfg, &mut v).unwrap();
    v
}

/// Truth fields beyond the original six.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Extra {
    protocol: Protocol,
    decoded: String,
    status: Option<u16>,
    user: Option<String>,
    partial: bool,
    complete: bool,
    rejected: Vec<String>,
}

type Truth =
    HashMap<(Endpoint, Endpoint), Vec<(u32, String, Vec<String>, Vec<u8>, bool, String, Extra)>>;

fn gen_truth(cfg: &GenConfig) -> (Vec<u8>, Truth, mailtap_gen::GenStats) {
    let mut v = Vec::new();
    let mut truth: Truth = HashMap::new();
    let stats = generate_with_truth(cfg, &mut v, &mut |t| {
        truth.entry((t.orig, t.resp)).or_default().push((
            t.index_in_session,
            t.mailfrom.to_string(),
            t.rcptto.to_vec(),
            t.bytes.to_vec(),
            t.via_bdat,
            t.subject.to_string(),
            Extra {
                protocol: t.protocol,
                decoded: t.subject_decoded.to_string(),
                status: t.status_code,
                user: t.user.map(str::to_string),
                partial: t.partial,
                complete: t.complete,
                rejected: t.rcptto_rejected.to_vec(),
            },
        ));
    })
    .unwrap();
    (v, truth, stats)
}

fn small_cfg(seed: u64) -> GenConfig {
    GenConfig {
        sessions: 60,
        concurrency: 8,
        seed,
        body_bytes: (200, 20_000),
        ..GenConfig::default()
    }
}

#[test]
fn deterministic() {
    let a = gen(&small_cfg(7));
    let b = gen(&small_cfg(7));
    assert_eq!(a, b);
    let c = gen(&small_cfg(8));
    assert_ne!(a, c);
    // generate and generate_with_truth write the same bytes
    let (d, _, _) = gen_truth(&small_cfg(7));
    assert_eq!(a, d);
    // with every feature (POP3, gaps, rejections, LF-only lines) too
    let all = extraction_test_config(120, 4);
    let e = gen(&all);
    assert_eq!(e, gen(&all));
    let (f, _, st) = gen_truth(&all);
    assert!(e == f, "generate and generate_with_truth differ");
    assert!(st.dropped_packets > 0);
}

#[test]
fn wellformed_reassembles_and_matches_truth() {
    let cfg = GenConfig {
        sessions: 120,
        concurrency: 12,
        seed: 42,
        mss: 536,
        body_bytes: (10, 40_000),
        mix: Mix {
            plain: 34,
            pipelined: 33,
            bdat: 33,
            mime_attachment: 40,
            auth: 30,
            starttls: 10,
            pop3: 0,
            reject: 10,
            lf_only: 10,
            ..Mix::default()
        },
        ipv6_percent: 30,
        ..GenConfig::default()
    };
    let (pcap, truth, stats) = gen_truth(&cfg);
    assert_eq!(stats.bytes as usize, pcap.len());
    let pkts = parse(&pcap);
    assert_eq!(pkts.len() as u64, stats.packets);
    for w in pkts.windows(2) {
        assert!(w[1].ts_us >= w[0].ts_us, "capture timestamps never go back");
    }
    assert!(pkts.iter().all(|p| p.payload.len() <= cfg.mss));
    assert_eq!(pkts[0].ts_us, 1_709_294_400_000_000);
    let fl = flows(&pkts);
    assert_eq!(fl.len() as u64, stats.sessions);
    assert_eq!(stats.sessions, 120);
    let mut n_msgs = 0;
    let mut n_tls = 0;
    let mut n_truth = 0;
    for (key, f) in &fl {
        let (c, s) = reassemble(key, f);
        let parsed = parse_client(&c);
        let codes = check_server(&s, parsed.starttls);
        assert_eq!(codes[0], 220);
        assert_eq!(parsed.commands[0], "EHLO");
        if parsed.starttls {
            n_tls += 1;
            assert!(parsed.messages.is_empty());
            assert!(!truth.contains_key(key));
            continue;
        }
        assert_eq!(parsed.commands.last().unwrap(), "QUIT");
        assert_eq!(*codes.last().unwrap(), 221);
        let t = truth.get(key).map(|v| &v[..]).unwrap_or(&[]);
        assert_eq!(t.len(), parsed.messages.len(), "{key:?}");
        for (i, (tm, pm)) in t.iter().zip(&parsed.messages).enumerate() {
            assert_eq!(tm.0 as usize, i);
            assert_eq!(tm.1, pm.0, "mailfrom");
            assert_eq!(tm.2, pm.1, "rcptto");
            assert_eq!(tm.4, pm.3, "via_bdat");
            assert!(tm.3 == pm.2, "{key:?} message {i}: bytes differ from truth");
            assert!(tm.3.ends_with(b"\r\n"));
            // the subject in the truth is found in the headers
            let hdr_end = tm.3.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let unfolded = String::from_utf8_lossy(&tm.3[..hdr_end]).replace("\r\n", "");
            assert!(unfolded.contains(&format!("Subject: {}", tm.5)), "{}", tm.5);
            assert_eq!(tm.6.protocol, Protocol::Smtp);
            assert!(tm.6.complete && !tm.6.partial && tm.6.user.is_none());
            if !tm.5.contains("=?") {
                assert_eq!(tm.5, tm.6.decoded);
            }
        }
        let rejected = t.iter().filter(|m| m.6.status != Some(250)).count();
        let has = |n: &[u8]| s.windows(n.len()).filter(|w| *w == n).count();
        assert_eq!(
            rejected,
            has(b"5.7.1 Message rejected") + has(b"552 5.3.4"),
            "{key:?}: 5xx replies to the end of data"
        );
        n_msgs += parsed.messages.len();
        n_truth += t.len();
    }
    assert_eq!(n_msgs as u64, stats.messages);
    assert_eq!(n_truth, n_msgs);
    assert!(n_tls > 0);
}

#[test]
fn unique_four_tuples() {
    let cfg = GenConfig {
        sessions: 3000,
        concurrency: 200,
        messages_per_session: (0, 1),
        body_bytes: (10, 200),
        ..GenConfig::default()
    };
    let pcap = gen(&cfg);
    let pkts = parse(&pcap);
    let syns: Vec<_> = pkts
        .iter()
        .filter(|p| p.flags == SYN)
        .map(|p| (p.src, p.dst))
        .collect();
    assert_eq!(syns.len(), 3000);
    let set: HashSet<_> = syns.iter().collect();
    assert_eq!(set.len(), 3000);
    // spread over several client and server /16s
    let nets = |ep: &Endpoint| match ep.0 {
        IpAddr::V4(a) => format!("{}.{}", a.octets()[0], a.octets()[1]),
        IpAddr::V6(a) => format!("{:x}", a.segments()[2]),
    };
    let cnets: HashSet<_> = syns.iter().map(|s| nets(&s.0)).collect();
    let snets: HashSet<_> = syns.iter().map(|s| nets(&s.1)).collect();
    assert!(cnets.len() >= 6, "{cnets:?}");
    assert!(snets.len() >= 4, "{snets:?}");
    let ports: HashSet<_> = syns.iter().map(|s| s.1 .1).collect();
    assert_eq!(ports, HashSet::from([25, 587]));
}

#[test]
fn target_bytes_honoured() {
    for (target, conc) in [(3_000_000u64, 16usize), (6_000_000, 64)] {
        let cfg = GenConfig {
            target_bytes: Some(target),
            concurrency: conc,
            sessions: 1,
            ..GenConfig::default()
        };
        let mut sink = std::io::sink();
        let stats = generate(&cfg, &mut sink).unwrap();
        let ratio = stats.bytes as f64 / target as f64;
        assert!(
            (0.9..1.1).contains(&ratio),
            "target {target}: wrote {} ({ratio:.3})",
            stats.bytes
        );
        assert!(stats.sessions > 1);
    }
}

#[test]
fn concurrency_interleaves() {
    let count_overlap = |conc: usize| {
        let cfg = GenConfig {
            sessions: 40,
            concurrency: conc,
            seed: 3,
            ..GenConfig::default()
        };
        let pkts = parse(&gen(&cfg));
        let key = |p: &Pkt| {
            if is_server_port(p.dst.1) {
                (p.src, p.dst)
            } else {
                (p.dst, p.src)
            }
        };
        let mut last: HashMap<(Endpoint, Endpoint), usize> = HashMap::new();
        for (i, p) in pkts.iter().enumerate() {
            last.insert(key(p), i);
        }
        let mut open: HashSet<(Endpoint, Endpoint)> = HashSet::new();
        let mut max_open = 0;
        let mut switches = 0;
        for (i, p) in pkts.iter().enumerate() {
            let k = key(p);
            open.insert(k);
            max_open = max_open.max(open.len());
            if i > 0 && key(&pkts[i - 1]) != k {
                switches += 1;
            }
            if last[&k] == i {
                open.remove(&k);
            }
        }
        (max_open, switches, pkts.len())
    };
    let (m1, s1, _) = count_overlap(1);
    assert_eq!(m1, 1, "concurrency 1 runs sessions one after another");
    assert_eq!(s1, 39);
    let (m8, s8, n8) = count_overlap(8);
    assert!(m8 >= 6, "max open flows {m8}");
    assert!(
        s8 > n8 / 4,
        "flows alternate: {s8} switches over {n8} packets"
    );
}

#[test]
fn bundled_sample_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samples/sample-smtp.pcap"
    );
    let committed = std::fs::read(path).expect("samples/sample-smtp.pcap exists");
    let now = gen(&sample_config());
    assert!(
        committed == now,
        "samples/sample-smtp.pcap is stale: run `cargo run -p mailtap-gen --example make-sample`"
    );
    assert!(now.len() < 1 << 20);
}

#[test]
fn sample_covers_every_feature() {
    let (pcap, truth, stats) = gen_truth(&sample_config());
    assert_eq!(stats.sessions, 40);
    let pkts = parse(&pcap);
    let fl = flows(&pkts);
    let mut all_client = Vec::new();
    let mut all_server = Vec::new();
    let mut pipelined = false;
    for (key, f) in &fl {
        let (c, s) = reassemble(key, f);
        all_client.extend_from_slice(&c);
        all_server.extend_from_slice(&s);
        for p in &f.pkts {
            let pl = &p.payload;
            let has = |n: &[u8]| pl.windows(n.len()).any(|w| w == n);
            if has(b"MAIL FROM:") && has(b"RCPT TO:") && has(b"DATA\r\n") {
                pipelined = true;
            }
        }
    }
    assert!(pipelined, "a segment with MAIL, RCPT and DATA together");
    let has = |h: &[u8], n: &str| h.windows(n.len()).any(|w| w == n.as_bytes());
    for needle in [
        "BDAT ",
        " LAST\r\n",
        "AUTH PLAIN ",
        "AUTH LOGIN\r\n",
        "STARTTLS\r\n",
        "RSET\r\n",
        "\r\n..",
        "\r\n.\r\n",
    ] {
        assert!(has(&all_client, needle), "client stream lacks {needle:?}");
    }
    for needle in [
        "220-",
        "250-PIPELINING",
        "250-CHUNKING",
        "250-8BITMIME",
        "250-AUTH",
        "354 ",
        "550 5.1.1",
        "334 ",
        "235 ",
        "221 ",
    ] {
        assert!(has(&all_server, needle), "server stream lacks {needle:?}");
    }
    let msgs: Vec<&Vec<u8>> = truth.values().flatten().map(|m| &m.3).collect();
    let any = |n: &str| msgs.iter().any(|m| has(m, n));
    for needle in [
        "multipart/mixed",
        "Content-Transfer-Encoding: base64",
        "Content-Transfer-Encoding: quoted-printable",
        "=?UTF-8?B?",
        "=?UTF-8?Q?",
        "Received: ",
        "Message-ID: <",
        "User-Agent: ",
        "X-Mailer: ",
        "Cc: ",
        "\r\n.\r\n",
    ] {
        assert!(any(needle), "no message contains {needle:?}");
    }
    assert!(
        msgs.iter()
            .any(|m| m.windows(3).any(|w| w == b"\r\n\t") || m.windows(3).any(|w| w == b"\r\n ")),
        "folded header"
    );
    assert!(truth.values().flatten().any(|m| m.4) && truth.values().flatten().any(|m| !m.4));
    assert!(pkts.iter().any(|p| p.src.0.is_ipv6()));
    assert!(pkts.iter().any(|p| p.dst.1 == 587));
    // three Received hops somewhere
    assert!(msgs
        .iter()
        .any(|m| m.windows(10).filter(|w| w == b"Received: ").count() == 3));
}

#[test]
fn degenerate_config_still_valid() {
    let cfg = GenConfig {
        sessions: 30,
        concurrency: 0,               // treated as 1
        messages_per_session: (3, 0), // swapped
        recipients: (0, 0),           // at least one
        body_bytes: (0, 0),           // one pool line
        mss: 10,                      // clamped to 64
        mix: Mix {
            plain: 0,
            pipelined: 0,
            bdat: 1,
            mime_attachment: 50,
            auth: 50,
            starttls: 0,
            ..Mix::default()
        },
        ..GenConfig::default()
    };
    let (pcap, truth, stats) = gen_truth(&cfg);
    let pkts = parse(&pcap);
    assert!(pkts.iter().all(|p| p.payload.len() <= 64));
    let fl = flows(&pkts);
    assert_eq!(fl.len(), 30);
    let mut n = 0;
    for (key, f) in &fl {
        let (c, s) = reassemble(key, f);
        let parsed = parse_client(&c);
        check_server(&s, false);
        let t = truth.get(key).map(|v| &v[..]).unwrap_or(&[]);
        assert_eq!(t.len(), parsed.messages.len());
        for (tm, pm) in t.iter().zip(&parsed.messages) {
            assert!(tm.3 == pm.2 && pm.3);
        }
        n += t.len();
    }
    assert_eq!(n as u64, stats.messages);
}

/// A POP3 server stream split into responses: each is the status line and,
/// for multi-line responses, the dot-unstuffed body without the final `.`.
fn pop3_dialogue(c: &[u8], s: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let line = |b: &[u8], pos: &mut usize| -> Vec<u8> {
        let rest = &b[*pos..];
        let i = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("CRLF-terminated line");
        *pos += i + 2;
        rest[..i].to_vec()
    };
    let (mut cp, mut sp) = (0, 0);
    let mut out = Vec::new();
    let greeting = String::from_utf8(line(s, &mut sp)).unwrap();
    assert!(greeting.starts_with("+OK "), "{greeting}");
    let mut sasl = false;
    while cp < c.len() {
        let cmd = String::from_utf8(line(c, &mut cp)).unwrap();
        let status = String::from_utf8(line(s, &mut sp)).unwrap();
        let verb = cmd.split(' ').next().unwrap().to_string();
        if sasl {
            sasl = false;
        } else if verb == "AUTH" {
            assert_eq!(status, "+ ");
            sasl = true;
        }
        let multi = status.starts_with("+OK")
            && (matches!(verb.as_str(), "CAPA" | "RETR" | "TOP")
                || (matches!(verb.as_str(), "LIST" | "UIDL") && !cmd.contains(' ')));
        let mut body = Vec::new();
        if multi {
            loop {
                let l = line(s, &mut sp);
                if l == b"." {
                    break;
                }
                let l = if l.first() == Some(&b'.') {
                    &l[1..]
                } else {
                    &l[..]
                };
                body.extend_from_slice(l);
                body.extend_from_slice(b"\r\n");
            }
        }
        out.push((cmd, status, body));
    }
    assert_eq!(sp, s.len(), "server stream fully consumed");
    out
}

#[test]
fn pop3_sessions_reassemble_and_match_truth() {
    let cfg = GenConfig {
        sessions: 80,
        concurrency: 10,
        seed: 11,
        mss: 700,
        messages_per_session: (0, 5),
        mix: Mix {
            pop3: 60,
            ..Mix::default()
        },
        ..GenConfig::default()
    };
    let (pcap, truth, stats) = gen_truth(&cfg);
    let pkts = parse(&pcap);
    let fl = flows(&pkts);
    assert_eq!(fl.len(), 80);
    let (mut n_pop3, mut n_msgs, mut tops, mut logins) = (0, 0, 0, HashSet::new());
    for (key, f) in &fl {
        let (c, s) = reassemble(key, f);
        let t = truth.get(key).map(|v| &v[..]).unwrap_or(&[]);
        if key.1 .1 != 110 {
            n_msgs += t.len();
            continue;
        }
        n_pop3 += 1;
        let d = pop3_dialogue(&c, &s);
        assert_eq!(d.last().unwrap().0, "QUIT");
        let fetched: Vec<_> = d
            .iter()
            .filter(|(c, st, _)| {
                (c.starts_with("RETR ") || c.starts_with("TOP ")) && st.starts_with("+OK")
            })
            .collect();
        assert_eq!(fetched.len(), t.len(), "{key:?}");
        d.iter()
            .find(|(c, st, _)| {
                st.starts_with("+OK Logged in")
                    && (c.starts_with("PASS") || c.starts_with("APOP") || !c.contains(' '))
            })
            .expect("a successful login");
        logins.insert(
            d.iter()
                .map(|x| x.0.split(' ').next().unwrap().to_string())
                .filter(|v| matches!(v.as_str(), "USER" | "APOP" | "AUTH"))
                .collect::<Vec<_>>()
                .join("+")
                + if d.iter().any(|x| x.1.starts_with("-ERR")) {
                    "+retry"
                } else {
                    ""
                },
        );
        for (i, (tm, (cmd, st, body))) in t.iter().zip(&fetched).enumerate() {
            assert_eq!(tm.0 as usize, i);
            assert_eq!(tm.6.protocol, Protocol::Pop3);
            assert_eq!(tm.6.partial, cmd.starts_with("TOP "), "{cmd}");
            assert_eq!(tm.6.status, None);
            assert!(tm.6.complete);
            let u = tm.6.user.as_deref().expect("pop3 user");
            assert!(
                d.iter()
                    .any(|x| x.0 == format!("USER {u}") || x.0.starts_with(&format!("APOP {u} ")))
                    || d.iter().any(|x| x.0 == "AUTH PLAIN"),
                "{u}"
            );
            assert!(tm.3 == *body, "{key:?} {cmd}: bytes differ from truth");
            if cmd.starts_with("RETR ") {
                assert_eq!(st, &format!("+OK {} octets", body.len()));
            } else {
                tops += 1;
                let hdr_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let k: usize = cmd.rsplit(' ').next().unwrap().parse().unwrap();
                let lines = body[hdr_end..].windows(2).filter(|w| *w == b"\r\n").count();
                assert!(lines <= k, "{cmd}: {lines} body lines");
            }
        }
        n_msgs += t.len();
    }
    assert_eq!(n_msgs as u64, stats.messages);
    assert!((30..=65).contains(&n_pop3), "{n_pop3} POP3 sessions");
    assert!(tops > 0);
    for l in ["USER", "USER+USER+retry", "APOP", "AUTH"] {
        assert!(logins.contains(l), "no POP3 login {l:?}: {logins:?}");
    }
}

#[test]
fn gaps_drop_one_acknowledged_client_segment() {
    let cfg = GenConfig {
        sessions: 60,
        concurrency: 6,
        seed: 5,
        gap_percent: 50,
        mix: Mix {
            plain: 50,
            pipelined: 50,
            bdat: 0,
            starttls: 0,
            ..Mix::default()
        },
        ..GenConfig::default()
    };
    let (pcap, truth, stats) = gen_truth(&cfg);
    let incomplete: Vec<_> = truth
        .iter()
        .filter(|(_, v)| v.iter().any(|m| !m.6.complete))
        .collect();
    assert!(incomplete.len() >= 15, "{} gap sessions", incomplete.len());
    assert_eq!(incomplete.len() as u64, stats.dropped_packets);
    for (_, v) in &incomplete {
        assert_eq!(v.len(), 1, "a gap session carries one message");
    }
    let pkts = parse(&pcap);
    assert_eq!(pkts.len() as u64, stats.packets);
    let fl = flows(&pkts);
    for (key, f) in &fl {
        let gap = truth.get(key).is_some_and(|v| !v[0].6.complete);
        // count client sequence jumps, and check the server acknowledges
        // beyond each
        let mut next = None::<u32>;
        let mut jumps = 0;
        let mut max_ack = 0u32;
        for p in &f.pkts {
            if p.src == key.0 {
                if let Some(n) = next {
                    if p.seq != n {
                        jumps += 1;
                        assert!(p.seq.wrapping_sub(n) as usize <= cfg.mss);
                        assert!(p.seq.wrapping_sub(n) > 0);
                    }
                }
                let syn_fin = (p.flags & (SYN | FIN) != 0) as u32;
                next = Some(p.seq.wrapping_add(p.payload.len() as u32 + syn_fin));
            } else if p.flags & ACK != 0 {
                max_ack = max_ack.max(p.ack.wrapping_sub(f.pkts[0].seq));
            }
        }
        assert_eq!(jumps, gap as usize, "{key:?}");
        let _ = max_ack;
    }
    // without gaps, the same seed writes every packet
    let no_gap = GenConfig {
        gap_percent: 0,
        ..cfg
    };
    let mut sink = Vec::new();
    let st = generate(&no_gap, &mut sink).unwrap();
    assert_eq!(st.dropped_packets, 0);
}

#[test]
fn smtp_truth_covers_issue_3_features() {
    let (_, truth, _) = gen_truth(&extraction_test_config(300, 3));
    let all: Vec<_> = truth.values().flatten().collect();
    let has = |m: &[u8], n: &str| m.windows(n.len()).any(|w| w == n.as_bytes());
    let smtp: Vec<_> = all
        .iter()
        .filter(|m| m.6.protocol == Protocol::Smtp)
        .collect();
    let pop3: Vec<_> = all
        .iter()
        .filter(|m| m.6.protocol == Protocol::Pop3)
        .collect();
    assert!(
        smtp.len() >= 200 && pop3.len() >= 60,
        "{} {}",
        smtp.len(),
        pop3.len()
    );
    assert!(pop3.iter().any(|m| m.6.partial) && pop3.iter().any(|m| !m.6.partial));
    assert!(smtp.iter().any(|m| m.6.status.is_some_and(|c| c >= 500)));
    assert!(smtp.iter().any(|m| !m.6.complete));
    assert!(smtp.iter().any(|m| m.4) && smtp.iter().any(|m| !m.4));
    assert!(smtp.iter().any(|m| !m.6.rejected.is_empty()));
    // LF-only lines: a bare LF not preceded by CR
    assert!(smtp
        .iter()
        .any(|m| m.3.windows(2).any(|w| w[0] != b'\r' && w[1] == b'\n')));
    for enc in [
        "=?UTF-8?B?",
        "=?UTF-8?Q?",
        "=?ISO-8859-1?Q?",
        "?= =?UTF-8?B?",
    ] {
        assert!(
            all.iter().any(|m| m.5.contains(enc)),
            "no subject with {enc}"
        );
    }
    for needle in [
        "Content-Transfer-Encoding: base64\r\n\r\n",
        "Content-Disposition: attachment; filename=\"notes-",
        "\r\n\t",
    ] {
        assert!(
            all.iter().any(|m| has(&m.3, needle)),
            "no message with {needle:?}"
        );
    }
    // decoded subjects are UTF-8 text without encoded words
    for m in &all {
        assert!(!m.6.decoded.contains("=?"), "{}", m.6.decoded);
    }
    assert!(all.iter().any(|m| m.6.decoded.contains("München")));
    // multi-message sessions
    assert!(truth.values().any(|v| v.len() >= 3));
}

#[test]
fn bundled_pop3_sample_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../samples/sample-pop3.pcap"
    );
    let committed = std::fs::read(path).expect("samples/sample-pop3.pcap exists");
    let now = gen(&sample_pop3_config());
    assert!(
        committed == now,
        "samples/sample-pop3.pcap is stale: run `cargo run -p mailtap-gen --example make-sample`"
    );
    assert!(now.len() < 300 << 10);
    let (_, truth, _) = gen_truth(&sample_pop3_config());
    let all: Vec<_> = truth.values().flatten().collect();
    assert!(all.iter().all(|m| m.6.protocol == Protocol::Pop3));
    assert!(all.iter().any(|m| m.6.partial));
}

// ------------------------------------------------------------ traffic mixes

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The attach mix is the original generator, byte for byte: these digests
/// were computed with the code before named mixes existed.
#[test]
fn attach_mix_is_byte_identical_to_the_original_generator() {
    assert_eq!(
        GenConfig::for_mix(TrafficMix::Attach).shape,
        Shape::default()
    );
    let cases = [
        (
            GenConfig::default(),
            "78923ec643d0cd7029a229db688436454f9b64cd5417facec2188b731b1b605b",
            4_278_686,
        ),
        (
            GenConfig {
                target_bytes: Some(4 << 20),
                concurrency: 64,
                seed: 9,
                ..GenConfig::for_mix(TrafficMix::Attach)
            },
            "1c7baecbaf10e23dca751c714b242e36c285aa32f2e9ace5449a1fc964cece0c",
            4_291_494,
        ),
        (
            GenConfig {
                sessions: 80,
                concurrency: 10,
                seed: 11,
                mss: 700,
                messages_per_session: (0, 5),
                mix: Mix {
                    pop3: 60,
                    ..Mix::default()
                },
                ..GenConfig::default()
            },
            "462aec70b071eb176dc16643c26bbc3b4e6cf7191310bc6c8284121971a79020",
            3_722_312,
        ),
        (
            extraction_test_config(120, 4),
            "fa8afce9c0c02dda76c283ba0b61c9f56efbbfebcf24b7d788efad6f3b85ec5b",
            3_857_253,
        ),
    ];
    for (i, (cfg, digest, len)) in cases.iter().enumerate() {
        let v = gen(cfg);
        assert_eq!(v.len(), *len, "case {i}: length");
        assert_eq!(sha256_hex(&v), *digest, "case {i}: SHA-256");
    }
}

fn mix_cfg(mix: TrafficMix, sessions: u64, seed: u64) -> GenConfig {
    GenConfig {
        sessions,
        concurrency: 12,
        seed,
        ..GenConfig::for_mix(mix)
    }
}

#[test]
fn every_mix_is_deterministic() {
    for mix in [TrafficMix::Mta, TrafficMix::Small, TrafficMix::Attach] {
        let cfg = mix_cfg(mix, 150, 21);
        let a = gen(&cfg);
        assert!(a == gen(&cfg), "{mix:?}: same config, different bytes");
        let (b, _, _) = gen_truth(&cfg);
        assert!(a == b, "{mix:?}: generate and generate_with_truth differ");
        assert!(a != gen(&mix_cfg(mix, 150, 22)), "{mix:?}: seed ignored");
        let sized = GenConfig {
            target_bytes: Some(2 << 20),
            ..cfg.clone()
        };
        assert!(gen(&sized) == gen(&sized), "{mix:?}: sized run");
    }
}

/// TLS records of one direction of a stream: (content type, version,
/// body); asserts that the records tile the stream exactly.
fn tls_records(s: &[u8]) -> Vec<(u8, u16, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < s.len() {
        assert!(pos + 5 <= s.len(), "truncated record header");
        let (t, v, n) = (s[pos], u16be(&s[pos + 1..]), u16be(&s[pos + 3..]) as usize);
        assert!(matches!(t, 20..=23), "content type {t}");
        assert!(v == 0x0303 || v == 0x0301, "record version {v:#06x}");
        assert!(n > 0 && n <= 16_384 + 256, "record length {n}");
        assert!(pos + 5 + n <= s.len(), "record overruns the stream");
        out.push((t, v, &s[pos + 5..pos + 5 + n]));
        pos += 5 + n;
    }
    out
}

/// The client and server bytes of a recorded handshake, read from its
/// fixture file (`direction | u32 BE length | bytes` flights).
fn fixture_streams(name: &str) -> (Vec<u8>, Vec<u8>) {
    let path = format!("{}/tls/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&path).unwrap();
    let (mut c, mut s) = (Vec::new(), Vec::new());
    let mut p = 0;
    while p < b.len() {
        let n = u32be(&b[p + 1..]) as usize;
        let body = &b[p + 5..p + 5 + n];
        match b[p] {
            b'C' => c.extend_from_slice(body),
            b'S' => s.extend_from_slice(body),
            x => panic!("{path}: direction {x}"),
        }
        p += 5 + n;
    }
    (c, s)
}

fn gen_tls_truth(
    cfg: &GenConfig,
) -> (
    Vec<u8>,
    HashMap<(Endpoint, Endpoint), &'static mailtap_gen::HandshakeTruth>,
) {
    let mut v = Vec::new();
    let mut tls = HashMap::new();
    mailtap_gen::generate_with_tls_truth(cfg, &mut v, &mut |_| {}, &mut |t| {
        assert!(tls.insert((t.orig, t.resp), t.handshake).is_none());
    })
    .unwrap();
    (v, tls)
}

#[test]
fn mta_mix_tls_sessions_replay_recorded_handshakes() {
    let cfg = GenConfig {
        mss: 1200,
        ..mix_cfg(TrafficMix::Mta, 400, 5)
    };
    let (pcap, truth, stats) = gen_truth(&cfg);
    let (pcap2, tls_truth) = gen_tls_truth(&cfg);
    assert!(pcap == pcap2, "the TLS truth run writes the same capture");
    let pkts = parse(&pcap);
    assert_eq!(pkts.len() as u64, stats.packets);
    assert!(pkts.iter().all(|p| p.payload.len() <= 1200));
    let fl = flows(&pkts);
    assert_eq!(fl.len(), 400);
    let (mut n_tls, mut v13, mut v12, mut failed, mut big_records) = (0, 0, 0, 0, 0);
    let (mut plain_msgs, mut probes) = (0usize, 0);
    let mut seen = HashSet::new();
    for (key, f) in &fl {
        let (c, s) = reassemble(key, f);
        let parsed = parse_client_with(&c, &s);
        let codes = check_server(&s, parsed.starttls);
        assert_eq!(codes[0], 220);
        if !parsed.starttls {
            assert!(!tls_truth.contains_key(key));
            let t = truth.get(key).map(|v| &v[..]).unwrap_or(&[]);
            assert_eq!(t.len(), parsed.messages.len(), "{key:?}");
            for (tm, pm) in t.iter().zip(&parsed.messages) {
                assert!(tm.3 == pm.2, "{key:?}: bytes differ from truth");
            }
            plain_msgs += t.len();
            if !parsed.commands.iter().any(|c| c == "MAIL") {
                probes += 1;
            }
            continue;
        }
        n_tls += 1;
        assert!(!truth.contains_key(key));
        let h = tls_truth[key];
        seen.insert(h.name);
        let at = c.windows(10).position(|w| w == b"STARTTLS\r\n").unwrap() + 10;
        let sat = s
            .windows(30)
            .position(|w| w == b"220 2.0.0 Ready to start TLS\r\n")
            .unwrap()
            + 30;
        // the recorded handshake, byte for byte, then generated records
        let (fc, fs) = fixture_streams(h.name);
        assert!(
            c[at..].starts_with(&fc),
            "{key:?} {}: client flights",
            h.name
        );
        assert!(
            s[sat..].starts_with(&fs),
            "{key:?} {}: server flights",
            h.name
        );
        let cr = tls_records(&c[at + fc.len()..]);
        let sr = tls_records(&s[sat + fs.len()..]);
        tls_records(&fc);
        tls_records(&fs);
        assert_eq!(fc[0], 22, "ClientHello record");
        if !h.established {
            failed += 1;
            assert!(h.last_alert.is_some());
            assert!(
                cr.is_empty() && sr.is_empty(),
                "no data after a fatal alert"
            );
            continue;
        }
        if h.version == Some("TLSv13") {
            v13 += 1;
        } else {
            v12 += 1;
        }
        // close_notify: an alert record in TLS 1.2, application data in 1.3
        let last = |r: &[(u8, u16, &[u8])]| r.last().unwrap().0;
        let close = if h.version == Some("TLSv13") { 23 } else { 21 };
        assert_eq!(last(&cr), close, "close_notify");
        assert_eq!(last(&sr), close, "close_notify");
        assert!(cr.iter().chain(&sr).all(|r| r.1 == 0x0303));
        big_records += cr.iter().filter(|r| r.2.len() > 16_384).count();
        let app = cr.iter().filter(|r| r.0 == 23).count();
        assert!(app >= 2, "EHLO and QUIT (and the mail)");
    }
    assert_eq!(n_tls as u64, stats.tls_sessions);
    assert_eq!(n_tls, tls_truth.len());
    assert!((240..=370).contains(&n_tls), "{n_tls} TLS sessions of 400");
    assert!(v13 > v12 && v12 > 0, "{v13} TLS 1.3, {v12} TLS 1.2");
    assert!(seen.len() >= 10, "fixtures used: {seen:?}");
    assert!(failed < n_tls / 10, "{failed} failed handshakes");
    assert!(big_records > 0, "16 KiB records");
    assert!(stats.tls_messages > 100, "{}", stats.tls_messages);
    assert_eq!(plain_msgs as u64, stats.messages);
    assert!(probes > 0 || plain_msgs > 0);
    assert!(stats.tls_bytes * 2 > stats.bytes, "TLS dominates the bytes");
}

#[test]
fn recorded_handshakes_are_complete_and_consistent() {
    let all: Vec<_> = mailtap_gen::tls_handshakes().collect();
    assert!(all.len() >= 12, "{} fixtures", all.len());
    let mut names = HashSet::new();
    for h in &all {
        assert!(names.insert(h.name), "{}: name twice", h.name);
        let (c, s) = fixture_streams(h.name);
        assert!(!c.is_empty() && !s.is_empty(), "{}", h.name);
        if h.version == Some("TLSv13") {
            assert!(h.cert_chain_fps.is_empty() && h.client_cert_chain_fps.is_empty());
        }
        if h.established {
            assert!(h.version.is_some() && h.cipher.is_some() && h.last_alert.is_none());
        } else {
            assert!(h.last_alert.is_some() && !h.resumed);
        }
        let fps: Vec<_> = h.certs.iter().map(|c| c.fingerprint).collect();
        let want: Vec<_> = h
            .cert_chain_fps
            .iter()
            .chain(h.client_cert_chain_fps)
            .copied()
            .collect();
        assert_eq!(fps, want, "{}", h.name);
        for fp in fps {
            assert!(fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let has = |f: &dyn Fn(&mailtap_gen::HandshakeTruth) -> bool| all.iter().any(|h| f(h));
    assert!(has(&|h| h.version == Some("TLSv12") && h.resumed));
    assert!(has(&|h| h.version == Some("TLSv13") && h.resumed));
    assert!(has(&|h| h.server_name.is_none()));
    assert!(has(&|h| h.next_protocol.is_some()));
    assert!(has(&|h| !h.client_cert_chain_fps.is_empty()));
    assert!(has(&|h| h.last_alert == Some("unknown_ca")));
    assert!(has(&|h| h.version.is_none() && h.last_alert.is_some()));
}

#[test]
fn small_mix_is_small_and_matches_truth() {
    let cfg = mix_cfg(TrafficMix::Small, 400, 8);
    let (pcap, truth, stats) = gen_truth(&cfg);
    let pkts = parse(&pcap);
    let fl = flows(&pkts);
    assert_eq!(fl.len(), 400);
    assert_eq!(stats.tls_sessions, 0);
    let avg_frame = (stats.bytes - 24 - 16 * stats.packets) / stats.packets;
    let per_conn = stats.packets / stats.sessions;
    assert!(
        (120..=170).contains(&avg_frame),
        "average frame {avg_frame}"
    );
    assert!(
        (18..=40).contains(&per_conn),
        "{per_conn} packets per connection"
    );
    let (mut pop3, mut rejected_mail, mut no_rcpt, mut pipelined, mut msgs) = (0, 0, 0, 0, 0);
    let mut pure_acks = 0;
    for (key, f) in &fl {
        pure_acks += f.pkts[3..]
            .iter()
            .filter(|p| p.payload.is_empty() && p.flags == ACK)
            .count();
        let (c, s) = reassemble(key, f);
        let t = truth.get(key).map(|v| &v[..]).unwrap_or(&[]);
        if key.1 .1 == 110 {
            pop3 += 1;
            let d = pop3_dialogue(&c, &s);
            let fetched = d
                .iter()
                .filter(|(c, st, _)| {
                    (c.starts_with("RETR ") || c.starts_with("TOP ")) && st.starts_with("+OK")
                })
                .count();
            assert_eq!(fetched, t.len());
            msgs += t.len();
            continue;
        }
        let parsed = parse_client_with(&c, &s);
        check_server(&s, false);
        assert_eq!(t.len(), parsed.messages.len(), "{key:?}");
        for (tm, pm) in t.iter().zip(&parsed.messages) {
            assert!(tm.3 == pm.2, "{key:?}: bytes differ from truth");
            assert!((700..=6_000).contains(&tm.3.len()), "{} bytes", tm.3.len());
        }
        msgs += t.len();
        let text = String::from_utf8_lossy(&s);
        rejected_mail += text.matches("Sender address rejected").count()
            + text.matches("Bad sender address").count();
        no_rcpt += text.matches("no valid recipients").count();
        pipelined += f.pkts.iter().any(|p| {
            let has = |n: &[u8]| p.payload.windows(n.len()).any(|w| w == n);
            has(b"MAIL FROM:") && has(b"RCPT TO:")
        }) as usize;
    }
    assert_eq!(msgs as u64, stats.messages);
    assert!((25..=80).contains(&pop3), "{pop3} POP3 sessions");
    assert!(rejected_mail > 0 && no_rcpt > 0 && pipelined > 50);
    assert!(
        pure_acks as u64 * 5 > stats.packets,
        "{pure_acks} pure ACKs"
    );
}
