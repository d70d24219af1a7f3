//! The `mailtap read` contract: inputs (pcap, gzip, stdin, several files as
//! one stream), outputs (Zeek TSV and JSON, events), and identical results
//! whatever the number of workers.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn read(args: &[&str], out: &Path) -> String {
    let mut a = vec!["read", "--no-progress", "-o", out.to_str().unwrap()];
    a.extend_from_slice(args);
    let (o, _) = run(&a);
    assert!(o.status.success(), "mailtap {a:?}: {}", stderr(&o));
    stderr(&o)
}

fn sorted_rows(dir: &Path, log: &str) -> Vec<String> {
    let mut r = rows(dir, log);
    r.sort();
    r
}

#[test]
fn sample_gives_smtp_conn_logs_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let summary = read(&[sample().to_str().unwrap()], dir.path());
    let smtp = rows(dir.path(), "smtp.log");
    let conn = rows(dir.path(), "conn.log");
    assert!(smtp.len() >= 40, "{} smtp rows", smtp.len());
    assert!(conn.len() >= 40, "{} conn rows", conn.len());
    assert!(
        conn.iter().all(|r| r.contains("\tsmtp\t")),
        "every sample connection is confirmed smtp"
    );
    assert!(
        summary.contains("packets") && summary.contains("smtp="),
        "{summary}"
    );
    // How the connections began and ended, one line after the summary.
    let flows = format!("mailtap: flows: {} created", conn.len());
    assert!(summary.contains(&flows), "{flows:?} not in {summary}");
    let text = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#separator \\x09");
    assert_eq!(lines[1], "#set_separator\t,");
    assert_eq!(lines[2], "#empty_field\t(empty)");
    assert_eq!(lines[3], "#unset_field\t-");
    assert_eq!(lines[4], "#path\tsmtp");
    assert!(lines[5].starts_with("#open\t"));
    assert!(lines[6].starts_with(
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\thelo"
    ));
    assert!(lines.last().unwrap().starts_with("#close\t"));
}

#[test]
fn same_rows_with_1_2_and_8_workers() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("gen.pcap");
    let (o, _) = run(&[
        "gen",
        "--mix",
        "attach",
        "-o",
        cap.to_str().unwrap(),
        "--sessions",
        "600",
        "--concurrency",
        "150",
        "--seed",
        "9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut results = Vec::new();
    for w in ["1", "2", "8"] {
        let out = dir.path().join(format!("w{w}"));
        read(
            &[
                cap.to_str().unwrap(),
                "-w",
                w,
                "--events",
                out.join("events.json").to_str().unwrap(),
            ],
            &out,
        );
        let mut ev: Vec<String> = std::fs::read_to_string(out.join("events.json"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        ev.sort();
        results.push((
            sorted_rows(&out, "smtp.log"),
            sorted_rows(&out, "conn.log"),
            sorted_rows(&out, "weird.log"),
            ev,
        ));
    }
    assert!(
        results[0].0.len() >= 600,
        "smtp rows: {}",
        results[0].0.len()
    );
    assert_eq!(results[0].1.len(), 600, "conn rows");
    for r in &results[1..] {
        assert!(
            r.0 == results[0].0,
            "smtp.log differs between worker counts"
        );
        assert!(
            r.1 == results[0].1,
            "conn.log differs between worker counts"
        );
        assert!(
            r.2 == results[0].2,
            "weird.log differs between worker counts"
        );
        assert!(r.3 == results[0].3, "events differ between worker counts");
    }
}

#[test]
fn gzip_stdin_and_several_files_are_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    read(&[sample().to_str().unwrap()], &plain);

    // gzip-compressed copy, detected by content.
    let gz = dir.path().join("sample.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(sample()).unwrap()).unwrap();
    enc.finish().unwrap();
    let gzo = dir.path().join("gz");
    read(&[gz.to_str().unwrap()], &gzo);
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&gzo, "smtp.log")
    );
    assert_eq!(
        sorted_rows(&plain, "conn.log"),
        sorted_rows(&gzo, "conn.log")
    );

    // stdin
    let so = dir.path().join("stdin");
    let mut child = Command::new(bin())
        .args(["read", "--no-progress", "-o", so.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(sample()).unwrap())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&so, "smtp.log")
    );

    // A capture split in two files at a packet boundary reads as one.
    let full = std::fs::read(sample()).unwrap();
    let mut off = 24usize;
    let mut cut = 0;
    while off + 16 <= full.len() {
        let len = u32::from_le_bytes(full[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + len;
        if off >= full.len() / 2 && cut == 0 {
            cut = off;
        }
    }
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    std::fs::write(&a, &full[..cut]).unwrap();
    let mut second = full[..24].to_vec();
    second.extend_from_slice(&full[cut..]);
    std::fs::write(&b, second).unwrap();
    let two = dir.path().join("two");
    read(&[a.to_str().unwrap(), b.to_str().unwrap()], &two);
    assert_eq!(
        sorted_rows(&plain, "smtp.log"),
        sorted_rows(&two, "smtp.log")
    );
    assert_eq!(
        sorted_rows(&plain, "conn.log"),
        sorted_rows(&two, "conn.log")
    );
}

#[test]
fn json_logs_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("events.json");
    read(
        &[
            sample().to_str().unwrap(),
            "--log-format",
            "json",
            "--events",
            ev.to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["ts"].is_f64(), "{first}");
    assert!(
        first["id.orig_h"].is_string() && first["id.resp_p"].is_u64(),
        "{first}"
    );
    assert!(first["rcptto"].is_array(), "{first}");
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for l in std::fs::read_to_string(&ev).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["uid"].as_str().unwrap().starts_with('C'));
        assert!(v["id"]["orig_h"].is_string());
        *names
            .entry(v["event"].as_str().unwrap().to_string())
            .or_default() += 1;
        if v["event"] == "smtp_request" {
            assert!(
                v["args"]["is_orig"].is_boolean()
                    && v["args"]["command"].is_string()
                    && v["args"]["arg"].is_string(),
                "{v}"
            );
        }
    }
    for n in ["smtp_request", "smtp_reply", "smtp_data"] {
        assert!(
            names.get(n).copied().unwrap_or(0) > 0,
            "no {n} events: {names:?}"
        );
    }
}

/// Splits every Ethernet/IPv4 packet with more than 600 bytes of IP payload
/// into two IP fragments (second one first, to exercise reordering).
fn fragment_ipv4(pcap: &[u8]) -> (Vec<u8>, usize) {
    let mut out = pcap[..24].to_vec();
    let mut off = 24;
    let mut split = 0;
    while off + 16 <= pcap.len() {
        let hdr = &pcap[off..off + 16];
        let len = u32::from_le_bytes(hdr[8..12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..off + 16 + len];
        off += 16 + len;
        let is_v4 = pkt.len() > 34 && pkt[12..14] == [0x08, 0x00];
        let ihl = if is_v4 {
            usize::from(pkt[14] & 0x0f) * 4
        } else {
            0
        };
        let total = if is_v4 {
            usize::from(u16::from_be_bytes([pkt[16], pkt[17]]))
        } else {
            0
        };
        if !is_v4 || total < ihl + 600 {
            out.extend_from_slice(hdr);
            out.extend_from_slice(pkt);
            continue;
        }
        split += 1;
        let payload = &pkt[14 + ihl..14 + total];
        let cut = (payload.len() / 2) & !7;
        let frag = |data: &[u8], offset: usize, more: bool| {
            let mut p = pkt[..14 + ihl].to_vec();
            let tl = (ihl + data.len()) as u16;
            p[16..18].copy_from_slice(&tl.to_be_bytes());
            let fo = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
            p[20..22].copy_from_slice(&fo.to_be_bytes());
            p[24..26].copy_from_slice(&[0, 0]);
            p.extend_from_slice(data);
            let mut rec = hdr.to_vec();
            rec[8..12].copy_from_slice(&(p.len() as u32).to_le_bytes());
            rec[12..16].copy_from_slice(&(p.len() as u32).to_le_bytes());
            rec.extend_from_slice(&p);
            rec
        };
        out.extend_from_slice(&frag(&payload[cut..], cut, false));
        out.extend_from_slice(&frag(&payload[..cut], 0, true));
    }
    (out, split)
}

#[test]
fn ip_fragments_are_reassembled_before_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    read(&[sample().to_str().unwrap(), "-w", "2"], &plain);
    let (frag, split) = fragment_ipv4(&std::fs::read(sample()).unwrap());
    assert!(split > 100, "only {split} packets fragmented");
    let f = dir.path().join("frag.pcap");
    std::fs::write(&f, frag).unwrap();
    let fo = dir.path().join("frag");
    let summary = read(&[f.to_str().unwrap(), "-w", "2"], &fo);
    assert!(summary.contains("drops: none"), "{summary}");
    for log in ["smtp.log", "conn.log"] {
        assert_eq!(
            sorted_rows(&plain, log),
            sorted_rows(&fo, log),
            "{log} differs after fragmentation"
        );
    }
}

/// `mailtap gen --mix attach` writes what the library's attach mix (the
/// original generator, whose bytes mailtap-gen pins by SHA-256) writes;
/// the default mix is `mta`; every mix is deterministic and readable.
#[test]
fn gen_mixes() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |name: &str, extra: &[&str]| -> Vec<u8> {
        let p = dir.path().join(name);
        let mut a = vec!["gen", "-o", p.to_str().unwrap(), "--sessions", "60"];
        a.extend_from_slice(extra);
        let (o, _) = run(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(&p).unwrap()
    };
    let attach = gen("a.pcap", &["--mix", "attach", "--seed", "3"]);
    let mut lib = Vec::new();
    mailtap_gen::generate(
        &mailtap_gen::GenConfig {
            sessions: 60,
            concurrency: 64,
            seed: 3,
            ..mailtap_gen::GenConfig::default()
        },
        &mut lib,
    )
    .unwrap();
    assert!(
        attach == lib,
        "--mix attach differs from GenConfig::default()"
    );
    let default = gen("d.pcap", &["--seed", "3"]);
    assert!(default == gen("m.pcap", &["--mix", "mta", "--seed", "3"]));
    assert!(default != attach);
    let small = gen("s.pcap", &["--mix", "small", "--seed", "3"]);
    assert!(small == gen("s2.pcap", &["--mix", "small", "--seed", "3"]));
    for (name, sessions_min) in [("d.pcap", 60), ("s.pcap", 60)] {
        let out = dir.path().join(format!("out-{name}"));
        read(&[dir.path().join(name).to_str().unwrap()], &out);
        let conn = rows(&out, "conn.log");
        assert_eq!(conn.len(), sessions_min, "{name}: conn rows");
    }
    let (o, _) = run(&["gen", "-o", "/dev/null", "--mix", "bogus"]);
    assert!(!o.status.success());
}
