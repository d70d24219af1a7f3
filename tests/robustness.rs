//! Hostile and broken input: nothing panics, memory stays bounded, errors
//! name the file and the problem, and what was read before is logged.

mod common;
use common::*;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];

#[test]
fn random_bytes_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("noise.pcap");
    std::fs::write(&f, Rng(7).bytes(100_000)).unwrap();
    let (o, _) = run(&[
        "read",
        f.to_str().unwrap(),
        "-o",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("noise.pcap"), "error names the file: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = run(&[
        "read",
        "/nonexistent/x.pcap",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("/nonexistent/x.pcap"), "{}", stderr(&o));
}

#[test]
fn truncated_file_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(sample()).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() / 2 + 7]).unwrap();
    let out = dir.path().join("out");
    let (o, _) = run(&["read", cut.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("cut.pcap") && e.contains("truncated"), "{e}");
    assert!(
        !rows(&out, "conn.log").is_empty(),
        "connections before the cut are logged"
    );
    let conn = std::fs::read_to_string(out.join("conn.log")).unwrap();
    assert!(
        conn.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("#close"),
        "conn.log is complete"
    );
}

#[test]
fn garbage_on_port_25_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pcap::new();
    p.tcp(1_000_000, CLIENT, 40000, SERVER, 25, 100, 0, SYN, b"");
    p.tcp(
        1_000_100,
        SERVER,
        25,
        CLIENT,
        40000,
        500,
        101,
        SYN | ACK,
        b"",
    );
    p.tcp(1_000_200, CLIENT, 40000, SERVER, 25, 101, 501, ACK, b"");
    let mut rng = Rng(1);
    let mut seq = 101u32;
    // 40 MB of random bytes without a line end, then more with stray CRs
    // and NULs: an endless line must not be buffered without bound.
    for i in 0..30_000u64 {
        let mut chunk = rng.bytes(1400);
        if i < 28_000 {
            for b in chunk.iter_mut() {
                if *b == b'\n' || *b == b'\r' {
                    *b = b'x';
                }
            }
        }
        p.tcp(
            1_000_300 + i,
            CLIENT,
            40000,
            SERVER,
            25,
            seq,
            501,
            ACK | PSH,
            &chunk,
        );
        seq = seq.wrapping_add(1400);
    }
    let f = dir.path().join("garbage.pcap");
    p.write(&f);
    let out = dir.path().join("out");
    let (o, peak) = run(&[
        "read",
        f.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-w",
        "1",
        "--events",
        out.join("ev.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows(&out, "conn.log").len(), 1);
    assert!(
        peak < 200 << 20,
        "peak RSS {} MiB for 42 MB of garbage",
        peak >> 20
    );
}

#[test]
fn syn_flood_is_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pcap::new();
    for i in 0..200_000u32 {
        let src = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        p.tcp(
            1_000_000 + u64::from(i),
            src,
            1024 + (i % 60000) as u16,
            SERVER,
            25,
            i,
            0,
            SYN,
            b"",
        );
    }
    let f = dir.path().join("flood.pcap");
    p.write(&f);
    let out = dir.path().join("out");
    let (o, peak) = run(&[
        "read",
        f.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--set",
        "flow.max_flows=5000",
        "-w",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("flow.evicted=19"),
        "evictions counted in the summary: {e}"
    );
    assert_eq!(
        rows(&out, "conn.log").len(),
        200_000,
        "every connection logged, evicted or not"
    );
    assert!(peak < 300 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = sample();
    let (o, _) = run(&[
        "read",
        s.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--set",
        "smtp.no_such_key=1",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("no_such_key"), "{}", stderr(&o));
    let (o, _) = run(&[
        "read",
        s.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--set",
        "flow.max_flows=lots",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("flow.max_flows"), "{}", stderr(&o));
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[smtp]\nmax_invalid_mail_transactions = \"x\"\n").unwrap();
    let (o, _) = run(&[
        "read",
        s.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "-c",
        cfg.to_str().unwrap(),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("max_invalid_mail_transactions"),
        "{}",
        stderr(&o)
    );
}

/// `mailtap live` refuses bad arguments and settings before touching any
/// interface, with an error that names the option or key (no root needed).
#[test]
#[cfg(feature = "live")]
fn bad_live_arguments_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--queues", "0,x"], "--queues"),
        (&["--queues", "3-1"], "--queues"),
        (&["--queues", "0,0"], "repeated"),
        (&["--cores", "4096"], "--cores"),
        (&["--xdp-mode", "turbo"], "--xdp-mode"),
        (&["--zero-copy", "maybe"], "--zero-copy"),
        (&["--duration=-1"], "--duration"),
        (&["--stats-interval", "0"], "--stats-interval"),
        (&["--set", "live.xdp_rx_ring=1000"], "live.xdp_rx_ring"),
        (
            &["--set", "live.xdp_frame_size=1000"],
            "live.xdp_frame_size",
        ),
        (
            &["--set", "live.afpacket_block_size=1000"],
            "live.afpacket_block_size",
        ),
        (
            &["--set", "live.afpacket_fanout=rr"],
            "live.afpacket_fanout",
        ),
        (&["--set", "live.shard_by=cpu"], "live.shard_by"),
        (&["--set", "live.xdp_steer=some"], "live.xdp_steer"),
        (&["--set", "live.handoff_buffers=0"], "live.handoff_buffers"),
        (&["--set", "live.no_such_key=1"], "no_such_key"),
    ];
    for (args, needle) in cases {
        let mut a = vec!["live", "-i", "lo", "-o", out];
        a.extend_from_slice(args);
        let (o, _) = run(&a);
        assert_eq!(
            o.status.code(),
            Some(2),
            "mailtap {a:?} should fail: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(needle), "mailtap {a:?}: {}", stderr(&o));
    }
    // An interface that does not exist is named (this fails before any
    // privileged step, so it needs no root either).
    let (o, _) = run(&["live", "-i", "mtnosuchif0", "-o", out, "--duration", "1"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("mtnosuchif0"), "{}", stderr(&o));
}

/// `mailtap config check` prints every key with its effective value; its
/// output is itself a valid configuration that prints the same; a bad key
/// or value fails naming it.
#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (o, _) = run(&["config", "check", "--set", "smtp.ports=[25, 2525]"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    let mut keys = vec!["[flow]", "max_flows = 1000000", "2525", "[files]"];
    // Without the `live` feature the [live] section is kept unchecked.
    if cfg!(feature = "live") {
        keys.extend(["[live]", "xdp_rx_ring = 65536"]);
    }
    for key in keys {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    let f = dir.path().join("effective.toml");
    std::fs::write(&f, &text).unwrap();
    let (o2, _) = run(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    assert_eq!(String::from_utf8(o2.stdout.clone()).unwrap(), text);
    assert!(stderr(&o2).contains("effective.toml ok"), "{}", stderr(&o2));

    if cfg!(feature = "live") {
        std::fs::write(&f, "[live]\nxdp_rx_ring = 100\n").unwrap();
        let (o3, _) = run(&["config", "check", f.to_str().unwrap()]);
        assert_eq!(o3.status.code(), Some(2));
        assert!(stderr(&o3).contains("live.xdp_rx_ring"), "{}", stderr(&o3));
    }
    let (o4, _) = run(&["config", "check", "--set", "flow.nope=1"]);
    assert_eq!(o4.status.code(), Some(2));
    assert!(stderr(&o4).contains("nope"), "{}", stderr(&o4));
}

/// SIGTERM in the middle of a large `mailtap read`: exit 0, and every log
/// is complete (header, whole rows, `#close`) with what was read so far.
#[test]
fn sigterm_mid_read_leaves_complete_logs() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("big.pcap");
    let (o, _) = run(&[
        "gen",
        "--mix",
        "attach",
        "-o",
        pcap.to_str().unwrap(),
        "--sessions",
        "3000",
        "--concurrency",
        "500",
        "--seed",
        "9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    let child = std::process::Command::new(bin())
        .args([
            "read",
            "--no-progress",
            "-w",
            "1",
            pcap.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rows are being written, then stop it.
    let smtp = out.join("smtp.log");
    let t0 = std::time::Instant::now();
    while !smtp.exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no smtp.log"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    // An interrupted read exits 3 (docs/operations.md), its logs complete.
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("stopping"), "{err}");
    let packets: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("mailtap: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let total = std::fs::metadata(&pcap).unwrap().len();
    assert!(packets > 0, "{err}");
    let mut logs = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "log") {
            continue;
        }
        logs += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("#separator"), "{}: no header", p.display());
        assert!(text.ends_with('\n'), "{}: a torn last row", p.display());
        let last = text.trim_end().lines().last().unwrap();
        assert!(last.starts_with("#close"), "{}: not closed", p.display());
        let fields = text
            .lines()
            .find(|l| l.starts_with("#fields"))
            .unwrap()
            .split('\t')
            .count()
            - 1;
        for row in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(row.split('\t').count(), fields, "{}: {row}", p.display());
        }
    }
    assert!(logs >= 2, "smtp.log and conn.log at least");
    // It really stopped early: not every packet of the capture was read.
    assert!(
        rows(&out, "conn.log").len() < 3000,
        "stopped before the end ({} bytes of capture, {packets} packets read)",
        total
    );
}

/// `mailtap read --metrics-listen` serves per-shard counters, records by
/// type and latencies while a capture is read (from a pipe kept open, so
/// the run is still going while the test scrapes).
#[test]
fn read_serves_metrics_while_reading() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("g.pcap");
    let (o, _) = run(&[
        "gen",
        "--mix",
        "attach",
        "-o",
        pcap.to_str().unwrap(),
        "--sessions",
        "300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&pcap).unwrap();
    assert!(bytes.len() > 6 << 20, "more than a few 2 MiB blocks");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(bin())
        .args([
            "read",
            "--no-progress",
            "-w",
            "1",
            "-",
            "-o",
            out.to_str().unwrap(),
            "--metrics-listen",
            &addr,
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Every full block is handed to the shard at once; the last partial
    // one waits for more input, so the run stays alive until stdin closes.
    stdin.write_all(&bytes).unwrap();
    stdin.flush().unwrap();
    let scrape = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        Some(r.split_once("\r\n\r\n")?.1.to_string())
    };
    let value = |body: &str, series: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let packets = "mailtap_queue_packets_total{interface=\"file\",queue=\"0\",capture=\"file\"}";
    let ready = |b: &str| {
        value(b, packets).is_some_and(|p| p > 0.0)
            && value(b, "mailtap_collector_records_total{type=\"smtp\"}").is_some_and(|r| r > 0.0)
            && value(b, "mailtap_record_emit_latency_seconds_count").is_some_and(|c| c > 0.0)
            && value(b, "mailtap_record_write_latency_seconds_count").is_some_and(|c| c > 0.0)
    };
    let t0 = std::time::Instant::now();
    let body = loop {
        if let Some(b) = scrape() {
            if ready(&b) {
                break b;
            }
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "metrics never showed the shard's work: {:?}",
            scrape()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        value(&body, "mailtap_kafka_records_total"),
        None,
        "no Kafka here"
    );
    // The probes answer while reading (shards of a read are not watched
    // for heartbeats; the collector is).
    for (path, want) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{path}: {head}"
        );
        assert_eq!(body, want, "{path}");
    }
    assert!(
        value(
            &body,
            "mailtap_queue_flows_total{interface=\"file\",queue=\"0\",capture=\"file\"}"
        )
        .unwrap()
            > 0.0
    );
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Sessions that each send one long `NOOP` line (`len` bytes; completed by
/// CRLF and answered when `complete`) over many segments and stay open.
fn long_line_sessions(conns: u32, len: usize, complete: bool) -> Pcap {
    let mut p = Pcap::new();
    let mut line: Vec<u8> = [&b"NOOP "[..], &vec![b'x'; len]].concat();
    if complete {
        line.extend_from_slice(b"\r\n");
    }
    let mut ts = 1_000_000u64;
    for i in 0..conns {
        let client = [10, 1, (i >> 8) as u8, (i + 1) as u8];
        let port = 20_000 + i as u16;
        let (mut cs, mut ss) = (1_001u32, 5_001u32);
        let mut t = || {
            ts += 10;
            ts
        };
        p.tcp(t(), client, port, SERVER, 25, 1_000, 0, SYN, b"");
        p.tcp(t(), SERVER, 25, client, port, 5_000, cs, SYN | ACK, b"");
        p.tcp(t(), client, port, SERVER, 25, cs, ss, ACK, b"");
        for (from_client, data) in [
            (false, &b"220 mx ESMTP\r\n"[..]),
            (true, &b"EHLO a\r\n"[..]),
            (false, &b"250 ok\r\n"[..]),
        ] {
            if from_client {
                p.tcp(t(), client, port, SERVER, 25, cs, ss, ACK | PSH, data);
                cs += data.len() as u32;
            } else {
                p.tcp(t(), SERVER, 25, client, port, ss, cs, ACK | PSH, data);
                ss += data.len() as u32;
            }
        }
        for seg in line.chunks(1400) {
            p.tcp(t(), client, port, SERVER, 25, cs, ss, ACK, seg);
            cs += seg.len() as u32;
        }
        if complete {
            p.tcp(
                t(),
                SERVER,
                25,
                client,
                port,
                ss,
                cs,
                ACK | PSH,
                b"250 ok\r\n",
            );
        }
    }
    p
}

/// `mailtap read -w 1 EXTRA..` of `p`: (conn.log rows, peak RSS in MB).
fn read_peak(p: &Pcap, extra: &[&str]) -> (usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("c.pcap");
    p.write(&cap);
    let out = dir.path().join("out");
    let mut args = vec![
        "read",
        "--no-progress",
        "-w",
        "1",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(cap.to_str().unwrap());
    let (o, peak) = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    (rows(&out, "conn.log").len(), peak as f64 / (1 << 20) as f64)
}

/// Connections that each sent one long line (2 MB, a complete `NOOP`
/// line carried over many segments) and stay open: the line buffer's
/// memory goes back after the line, so peak RSS stays near one line's
/// worth instead of growing with every such connection (before: each kept
/// its largest line's capacity, 923 MB for 150 connections of 4 MB lines).
/// The line is over the command limit, so it is cut; raising the limit
/// makes the buffer grow for real.
#[test]
fn long_lines_do_not_keep_their_memory() {
    let (conns, mb) = read_peak(
        &long_line_sessions(60, 2_000_000, true),
        &["--set", "smtp.max_command_line_length=4000000"],
    );
    assert_eq!(conns, 60);
    eprintln!("60 connections with a 2 MB line: peak RSS {mb:.0} MB");
    // 60 connections keeping their buffers hold 120-240 MB; released,
    // a few lines' worth plus the process itself (about 30 MB).
    assert!(mb < 100.0, "peak RSS {mb:.0} MB");
}

/// Connections holding an endless command line (2 MB so far, no line
/// end): commands are cut at `smtp.max_command_line_length` (16 KiB), so
/// each holds at most that, not `max_line_length` (Zeek's 16 MiB: 634 MB
/// for 100 connections of 4 MB before the separate command limit).
#[test]
fn endless_command_lines_are_bounded_per_connection() {
    let (conns, mb) = read_peak(&long_line_sessions(100, 2_000_000, false), &[]);
    assert_eq!(conns, 100);
    eprintln!("100 connections with a 2 MB partial command line: peak RSS {mb:.0} MB");
    assert!(mb < 100.0, "peak RSS {mb:.0} MB");
}

/// `conns` SMTP sessions that are all in DATA at once, each sending one
/// body line of `len` bytes in 1400-byte segments, round-robin across the
/// connections (so every connection holds a partial line at the same
/// time), then ending the line and the message.
fn data_line_sessions(conns: u32, len: usize) -> (Pcap, Vec<u8>) {
    let mut p = Pcap::new();
    let line: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut ts = 1_000_000u64;
    let mut seqs = Vec::new();
    let ep = |i: u32| ([10, 2, (i >> 8) as u8, i as u8], 20_000 + i as u16);
    for i in 0..conns {
        let (client, port) = ep(i);
        let (mut cs, mut ss) = (1_001u32, 5_001u32);
        ts += 10;
        p.tcp(ts, client, port, SERVER, 25, 1_000, 0, SYN, b"");
        p.tcp(ts, SERVER, 25, client, port, 5_000, cs, SYN | ACK, b"");
        p.tcp(ts, client, port, SERVER, 25, cs, ss, ACK, b"");
        for (from_client, data) in [
            (false, &b"220 mx ESMTP\r\n"[..]),
            (true, b"EHLO a\r\n"),
            (false, b"250 ok\r\n"),
            (true, b"MAIL FROM:<a@example.com>\r\n"),
            (false, b"250 ok\r\n"),
            (true, b"RCPT TO:<b@example.com>\r\n"),
            (false, b"250 ok\r\n"),
            (true, b"DATA\r\n"),
            (false, b"354 go\r\n"),
            (true, b"Subject: x\r\n\r\n"),
        ] {
            if from_client {
                p.tcp(ts, client, port, SERVER, 25, cs, ss, ACK | PSH, data);
                cs += data.len() as u32;
            } else {
                p.tcp(ts, SERVER, 25, client, port, ss, cs, ACK | PSH, data);
                ss += data.len() as u32;
            }
        }
        seqs.push((cs, ss));
    }
    for seg in line.chunks(1400) {
        ts += 10;
        for i in 0..conns {
            let (client, port) = ep(i);
            let (cs, ss) = &mut seqs[i as usize];
            p.tcp(ts, client, port, SERVER, 25, *cs, *ss, ACK, seg);
            *cs += seg.len() as u32;
        }
    }
    for i in 0..conns {
        let (client, port) = ep(i);
        let (cs, ss) = seqs[i as usize];
        ts += 10;
        p.tcp(
            ts,
            client,
            port,
            SERVER,
            25,
            cs,
            ss,
            ACK | PSH,
            b"\r\n.\r\n",
        );
        p.tcp(
            ts,
            SERVER,
            25,
            client,
            port,
            ss,
            cs + 5,
            ACK | PSH,
            b"250 ok\r\n",
        );
    }
    let mut msg = b"Subject: x\r\n\r\n".to_vec();
    msg.extend_from_slice(&line);
    msg.extend_from_slice(b"\r\n");
    (p, msg)
}

/// Two thousand connections each holding a 60 kB partial line in DATA at
/// the same time: each stays under its own line limit (1 MiB), so only
/// the shard-wide buffer budget (`flow.buffer_memory`) bounds the sum.
/// Set to 16 MiB, peak RSS stays under it plus the process's fixed
/// overhead (without the budget every connection's buffer grows to its
/// line), lines are handed out cut instead, and every message is still
/// extracted byte for byte.
#[test]
fn partial_data_lines_share_one_budget() {
    let (p, msg) = data_line_sessions(2000, 60_000);
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("c.pcap");
    p.write(&cap);
    drop(p);
    let out = dir.path().join("out");
    let ex = dir.path().join("ex");
    let (o, peak) = run(&[
        "read",
        "--no-progress",
        "-w",
        "1",
        "-o",
        out.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        "--set",
        "flow.buffer_memory=16777216",
        // The message bytes on their way to the extraction writer have
        // their own budget (collector back-pressure): small here too.
        "--set",
        "general.collector_queue_bytes=16777216",
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mb = peak as f64 / (1 << 20) as f64;
    eprintln!(
        "2000 connections with a 60 kB partial DATA line, 16 MiB budget: peak RSS {mb:.0} MB"
    );
    // The process with 2,000 connections in DATA and lines cut at 4 KiB
    // (smtp.max_line_length=4096) peaks at about 100 MB.
    assert!(mb < 16.0 + 16.0 + 110.0, "peak RSS {mb:.0} MB");
    assert!(
        stderr(&o).contains("flow.buffer_memory spent"),
        "the summary counts the refusals: {}",
        stderr(&o)
    );
    let mut emls = 0;
    for e in std::fs::read_dir(&ex).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "eml") {
            emls += 1;
            assert!(
                std::fs::read(&path).unwrap() == msg,
                "{} differs",
                path.display()
            );
        }
    }
    assert_eq!(emls, 2000);
    assert_eq!(rows(&out, "smtp.log").len(), 2000);
}
