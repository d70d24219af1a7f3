//! Imperfect traffic at the flow level (issue 11): lost SYNs, stray packets
//! before a SYN, reused 4-tuples, local_orig/local_resp, the orientation of
//! connections picked up mid-stream, and reproducible output. Generated
//! captures are checked against each other and against what the generator
//! did; the Zeek 8.2.2 baselines in `../shared/conformance/zeek-8.2.2` are
//! used where present (those parts are skipped, saying so, without them).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailtap_gen::{generate_imperfect, sample_config, GenConfig, Imperfections};

fn zeek() -> Option<PathBuf> {
    let p = repo().join("../shared/conformance/zeek-8.2.2");
    if p.is_dir() {
        Some(p)
    } else {
        skip(
            "imperfect_flow Zeek baseline comparison",
            &format!("{} is absent", p.display()),
        );
        None
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mailtap-imperfect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `mailtap read -w 1` on `cap` into `out`.
fn read(cap: &Path, out: &Path, extra: &[&str]) {
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
    let (o, _) = run(&args);
    assert!(o.status.success(), "mailtap read failed: {}", stderr(&o));
}

/// A Zeek TSV log as rows of named fields, without the columns in `drop`.
fn table(path: &Path, drop: &[&str]) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut fields: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for l in text.lines() {
        if let Some(f) = l.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !l.starts_with('#') {
            rows.push(
                fields
                    .iter()
                    .zip(l.split('\t'))
                    .filter(|(f, _)| !drop.contains(&f.as_str()))
                    .map(|(f, v)| (f.clone(), v.to_string()))
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

const NO_IDS: &[&str] = &["uid", "fuid", "conn_uids", "parent_fuid", "fuids"];

fn gen(cfg: &GenConfig, imp: &Imperfections, path: &Path) -> mailtap_gen::ImperfectStats {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    generate_imperfect(cfg, imp, f, &mut |_| {}).unwrap()
}

/// Counts how many rows of `a` and `b` (sorted) are equal.
fn report(what: &str, a: &[BTreeMap<String, String>], b: &[BTreeMap<String, String>]) -> usize {
    let eq = a.iter().filter(|r| b.contains(r)).count();
    eprintln!(
        "{what}: {eq} of {} rows equal ({} on the other side)",
        a.len(),
        b.len()
    );
    eq
}

#[test]
fn lost_syns_change_nothing_but_conn_log() {
    let dir = tmp("nosyn");
    let cfg = sample_config();
    let full = dir.join("full.pcap");
    let nosyn = dir.join("nosyn.pcap");
    gen(&cfg, &Imperfections::default(), &full);
    let st = gen(
        &cfg,
        &Imperfections {
            drop_syn_percent: 100,
            ..Imperfections::default()
        },
        &nosyn,
    );
    assert!(st
        .flows
        .iter()
        .all(|f| !f.syn_captured && f.syn_ack_captured));
    read(&full, &dir.join("a"), &[]);
    read(&nosyn, &dir.join("b"), &[]);
    for log in ["smtp.log", "files.log"] {
        let a = table(&dir.join("a").join(log), NO_IDS);
        let b = table(&dir.join("b").join(log), NO_IDS);
        assert!(!a.is_empty());
        assert_eq!(a, b, "{log} differs without SYNs");
    }
    // conn.log: the same connections, oriented the same way, marked `^h`.
    let a = table(&dir.join("a/conn.log"), NO_IDS);
    let b = table(&dir.join("b/conn.log"), NO_IDS);
    assert_eq!(a.len(), b.len());
    assert!(b.iter().all(|r| r["history"].starts_with("^h")), "{b:?}");
    let services = |t: &[BTreeMap<String, String>]| -> Vec<String> {
        t.iter().map(|r| r["service"].clone()).collect()
    };
    assert_eq!(services(&a), services(&b));

    let Some(z) = zeek() else { return };
    for (name, extra) in [
        ("sample-smtp-nosyn", &[][..]),
        (
            "sample-smtp-nohandshake",
            &["--set", "flow.analyze_partial=false"][..],
        ),
    ] {
        let out = dir.join(name);
        read(&z.join(format!("traces/mail/{name}.pcap")), &out, extra);
        for log in ["conn.log", "smtp.log"] {
            let want = table(&z.join(format!("out/mail/{name}/{log}")), NO_IDS);
            let got = table(&out.join(log), NO_IDS);
            report(&format!("{name} {log}"), &want, &got);
            if log == "conn.log" {
                assert_eq!(
                    got.iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.remove("ip_proto");
                            r.remove("tunnel_parents");
                            r
                        })
                        .collect::<Vec<_>>(),
                    want.iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.remove("ip_proto");
                            r.remove("tunnel_parents");
                            r
                        })
                        .collect::<Vec<_>>(),
                    "{name} conn.log differs from Zeek's"
                );
            } else {
                assert_eq!(got.len(), want.len(), "{name} smtp.log rows");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stray_packet_before_syn_does_not_hide_the_session() {
    let dir = tmp("stray");
    let cfg = GenConfig {
        sessions: 30,
        concurrency: 6,
        seed: 5,
        ..sample_config()
    };
    gen(&cfg, &Imperfections::default(), &dir.join("clean.pcap"));
    let st = gen(
        &cfg,
        &Imperfections {
            stray_before_syn_percent: 100,
            ..Imperfections::default()
        },
        &dir.join("stray.pcap"),
    );
    assert_eq!(st.stray_packets, 30);
    read(&dir.join("clean.pcap"), &dir.join("a"), &[]);
    read(&dir.join("stray.pcap"), &dir.join("b"), &[]);
    for log in ["smtp.log", "files.log"] {
        assert_eq!(
            table(&dir.join("a").join(log), NO_IDS),
            table(&dir.join("b").join(log), NO_IDS),
            "{log}"
        );
    }
    // One extra conn.log row per stray packet, and Zeek's weird on it.
    let conns = table(&dir.join("b/conn.log"), &[]);
    assert_eq!(conns.len(), 60);
    let weirds = table(&dir.join("b/weird.log"), &[]);
    let reuse: Vec<_> = weirds
        .iter()
        .filter(|w| w["name"] == "active_connection_reuse")
        .collect();
    assert_eq!(reuse.len(), 30);
    for w in reuse {
        let c = conns
            .iter()
            .find(|c| c["uid"] == w["uid"])
            .expect("conn row");
        assert!(matches!(c["history"].as_str(), "A" | "D"), "{c:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One SMTP session on the 4-tuple, starting at `t` µs with client ISN
/// `isn`; `close` ends it with FINs.
fn smtp_session(p: &mut Pcap, t: u64, isn: u32, close: bool) {
    let (c, s) = ([10, 0, 0, 1], [192, 0, 2, 25]);
    let srv = 5000u32;
    let mut cs = isn + 1;
    let mut ss = srv + 1;
    p.tcp(t, c, 40000, s, 25, isn, 0, SYN, b"");
    p.tcp(t + 1, s, 25, c, 40000, srv, cs, SYN | ACK, b"");
    p.tcp(t + 2, c, 40000, s, 25, cs, ss, ACK, b"");
    let mut n = 3;
    let mut say = |p: &mut Pcap, client: bool, data: &[u8]| {
        if client {
            p.tcp(t + n, c, 40000, s, 25, cs, ss, ACK | PSH, data);
            cs += data.len() as u32;
        } else {
            p.tcp(t + n, s, 25, c, 40000, ss, cs, ACK | PSH, data);
            ss += data.len() as u32;
        }
        n += 1;
    };
    say(p, false, b"220 mx ESMTP\r\n");
    say(p, true, b"HELO c\r\n");
    say(p, false, b"250 mx\r\n");
    say(p, true, b"MAIL FROM:<a@example.com>\r\n");
    say(p, false, b"250 ok\r\n");
    say(p, true, b"RCPT TO:<b@example.com>\r\n");
    say(p, false, b"250 ok\r\n");
    say(p, true, b"DATA\r\n");
    say(p, false, b"354 go\r\n");
    say(p, true, b"Subject: hi\r\n\r\nhello\r\n.\r\n");
    say(p, false, b"250 queued\r\n");
    if close {
        say(p, true, b"QUIT\r\n");
        say(p, false, b"221 bye\r\n");
        p.tcp(t + 20, c, 40000, s, 25, cs, ss, FIN | ACK, b"");
        p.tcp(t + 21, s, 25, c, 40000, ss, cs + 1, FIN | ACK, b"");
        p.tcp(t + 22, c, 40000, s, 25, cs + 1, ss + 1, ACK, b"");
    }
}

#[test]
fn reused_four_tuples_are_new_connections() {
    let dir = tmp("reuse");
    let mut p = Pcap::new();
    let t0 = 1_709_294_400_000_000u64;
    // Closed, then reused 1 s later (premature: within 5 s), then reused
    // 60 s later while the second is still open (active reuse).
    smtp_session(&mut p, t0, 1000, true);
    smtp_session(&mut p, t0 + 1_000_000, 900_000, false);
    smtp_session(&mut p, t0 + 60_000_000, 5_000_000, true);
    let cap = dir.join("reuse.pcap");
    p.write(&cap);
    read(&cap, &dir.join("o"), &[]);
    let conns = table(&dir.join("o/conn.log"), &[]);
    assert_eq!(conns.len(), 3);
    assert!(
        conns.iter().all(|c| c["history"].starts_with("ShAdD")),
        "{conns:?}"
    );
    let smtp = table(&dir.join("o/smtp.log"), &[]);
    assert_eq!(smtp.len(), 3);
    let mut names: Vec<_> = table(&dir.join("o/weird.log"), &[])
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["active_connection_reuse", "premature_connection_reuse"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs every Zeek mail baseline with analyze_partial off and returns, per
/// capture, the conn.log rows (without uid) of Zeek and of mailtap.
/// A capture's name, Zeek's conn.log rows and mailtap's.
type ConnLogs = (
    String,
    Vec<BTreeMap<String, String>>,
    Vec<BTreeMap<String, String>>,
);

fn zeek_conn_logs(z: &Path, dir: &Path) -> Vec<ConnLogs> {
    let mut v = Vec::new();
    for name in [
        "sample-smtp",
        "sample-smtp-nosyn",
        "sample-smtp-nohandshake",
        "sample-pop3",
        "gen-mixed-gaps",
        "gen-mixed-gaps-from30pct",
        "mime-types",
    ] {
        let mut cap = z.join(format!("traces/mail/{name}.pcap"));
        if !cap.exists() {
            cap = z.join(format!("traces/mail/{name}.pcap.gz"));
        }
        let out = dir.join(name);
        read(&cap, &out, &["--set", "flow.analyze_partial=false"]);
        let drop = ["uid", "ip_proto", "tunnel_parents"];
        v.push((
            name.to_string(),
            table(&z.join(format!("out/mail/{name}/conn.log")), &drop),
            table(&out.join("conn.log"), &drop),
        ));
    }
    v
}

#[test]
fn conn_log_equals_zeek_local_flags_and_orientation() {
    let Some(z) = zeek() else { return };
    let dir = tmp("zeek");
    for (name, want, got) in zeek_conn_logs(&z, &dir) {
        let pick = |t: &[BTreeMap<String, String>], f: &[&str]| -> Vec<Vec<String>> {
            let mut v: Vec<Vec<String>> = t
                .iter()
                .map(|r| f.iter().map(|k| r[*k].clone()).collect())
                .collect();
            v.sort();
            v
        };
        // local_orig/local_resp (Site::private_address_space of 8.2.2).
        let local = ["ts", "id.orig_h", "id.resp_h", "local_orig", "local_resp"];
        assert_eq!(
            pick(&got, &local),
            pick(&want, &local),
            "{name}: local flags"
        );
        // Orientation (mid-stream connections: likely_server_ports).
        let orient = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"];
        assert_eq!(
            pick(&got, &orient),
            pick(&want, &orient),
            "{name}: orientation"
        );
        let eq = report(&format!("{name} conn.log"), &want, &got);
        assert_eq!(eq, want.len(), "{name}: conn.log differs from Zeek's");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn orientation_does_not_depend_on_analyze_partial() {
    let Some(z) = zeek() else { return };
    let dir = tmp("orient");
    let cap = z.join("traces/mail/gen-mixed-gaps-from30pct.pcap.gz");
    read(&cap, &dir.join("on"), &[]);
    read(
        &cap,
        &dir.join("off"),
        &["--set", "flow.analyze_partial=false"],
    );
    let ids = |d: &str| -> Vec<Vec<String>> {
        table(&dir.join(d).join("conn.log"), &[])
            .iter()
            .map(|r| {
                ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"]
                    .iter()
                    .map(|k| r[*k].clone())
                    .collect()
            })
            .collect()
    };
    assert_eq!(ids("on"), ids("off"));
    let want = table(&z.join("out/mail/gen-mixed-gaps-from30pct/conn.log"), &[]);
    assert_eq!(ids("on").len(), want.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_runs_give_identical_logs() {
    let dir = tmp("repro");
    let cfg = GenConfig {
        sessions: 60,
        concurrency: 20,
        seed: 9,
        ..sample_config()
    };
    gen(
        &cfg,
        &Imperfections {
            drop_syn_percent: 20,
            drop_handshake_percent: 20,
            stray_before_syn_percent: 20,
            skip_packets: 300,
        },
        &dir.join("c.pcap"),
    );
    read(&dir.join("c.pcap"), &dir.join("1"), &[]);
    read(&dir.join("c.pcap"), &dir.join("2"), &[]);
    let mut logs = 0;
    for e in std::fs::read_dir(dir.join("1")).unwrap() {
        let name = e.unwrap().file_name();
        let a = std::fs::read_to_string(dir.join("1").join(&name)).unwrap();
        let b = std::fs::read_to_string(dir.join("2").join(&name)).unwrap();
        let strip = |s: &str| -> String {
            s.lines()
                .filter(|l| !l.starts_with("#open") && !l.starts_with("#close"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&a), strip(&b), "{name:?} differs between runs");
        logs += 1;
    }
    assert!(logs >= 3);
    let _ = std::fs::remove_dir_all(&dir);
}
