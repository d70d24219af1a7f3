//! Message extraction from imperfect captures against the generator's
//! per-message truth (issue 11, item 9): captures cut at 10%, 50% and 90%
//! of their packets, with content gaps, lost SYNs, lost handshakes, stray
//! packets before a SYN, reused 4-tuples and over-long AUTH lines, each
//! read with `mailtap read --extract-dir`. Every extracted message is
//! joined with what was sent (by 4-tuple and order within the connection,
//! the bytes telling which message a pair is) and checked:
//!
//! * a message reported `complete: true` is byte-exact and the truth says
//!   all of it, from its data start, was captured (never a wrong message
//!   called complete);
//! * a message the truth says was captured whole from its data start
//!   ([`Expect::Exact`]) is extracted byte-exact and complete;
//! * a message that lost bytes in a gap ([`Expect::Incomplete`]) is
//!   `complete: false` with the truth's `missing_bytes`;
//! * a message whose start was cut off ([`Expect::Tail`]), if reported at
//!   all, is `complete: false`, `partial: true`.
//!
//! Every check records its failure, every case runs, and the figures are
//! printed before the test fails.

mod common;
use common::*;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use mailtap_gen::{
    count_packets, extraction_test_config, generate_imperfect_with_truth, Expect, GenConfig,
    Imperfections, MessageCapture, Quirks,
};
use serde_json::Value;

/// (orig_h, orig_p, resp_h, resp_p) as the JSON prints them.
type Key = (String, u16, String, u16);

struct Truth {
    index: u32,
    bytes: Vec<u8>,
    cap: MessageCapture,
}

struct Pair {
    stem: String,
    eml: Vec<u8>,
    json: Value,
}

/// The mixed SMTP/POP3 capture every case starts from: a few hundred
/// sessions, 40 at a time.
fn base(seed: u64) -> GenConfig {
    GenConfig {
        concurrency: 40,
        gap_percent: 0,
        ..extraction_test_config(300, seed)
    }
}

fn generate(path: &Path, cfg: &GenConfig, imp: &Imperfections) -> HashMap<Key, Vec<Truth>> {
    let mut truth: HashMap<Key, Vec<Truth>> = HashMap::new();
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    generate_imperfect_with_truth(cfg, imp, f, &mut |t| {
        let m = &t.message;
        // connections reusing a 4-tuple come one after the other
        truth.entry(key(m.orig, m.resp)).or_default().push(Truth {
            index: m.index_in_session,
            bytes: m.bytes.to_vec(),
            cap: t.capture.clone(),
        });
    })
    .unwrap();
    truth
}

fn key(orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Key {
    (orig.0.to_string(), orig.1, resp.0.to_string(), resp.1)
}

fn extract(cap: &Path, dir: &Path, extra: &[&str]) -> Vec<Pair> {
    let out = dir.join("logs");
    let ex = dir.join("extract");
    let mut args = vec![
        "read",
        "--no-progress",
        "-w",
        "2",
        "-o",
        out.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(cap.to_str().unwrap());
    let (o, _) = run(&args);
    assert!(o.status.success(), "mailtap read: {}", stderr(&o));
    let mut pairs = Vec::new();
    for e in std::fs::read_dir(&ex).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".json") {
            let json: Value =
                serde_json::from_slice(&std::fs::read(ex.join(&name)).unwrap()).unwrap();
            let eml = std::fs::read(ex.join(format!("{stem}.eml"))).unwrap_or_default();
            pairs.push(Pair {
                stem: stem.to_string(),
                eml,
                json,
            });
        }
    }
    pairs
}

/// The connection of a pair, client first: a connection picked up without
/// its SYN may have the server as originator (Zeek's orientation rule; POP3
/// registers no likely server port), which is not what is checked here.
fn json_key(j: &Value) -> Key {
    let id = &j["id"];
    let k = (
        id["orig_h"].as_str().unwrap_or("?").to_string(),
        id["orig_p"].as_u64().unwrap_or(0) as u16,
        id["resp_h"].as_str().unwrap_or("?").to_string(),
        id["resp_p"].as_u64().unwrap_or(0) as u16,
    );
    let server = |p: u16| matches!(p, 25 | 587 | 110);
    if server(k.1) && !server(k.3) {
        (k.2, k.3, k.0, k.1)
    } else {
        k
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn kind(e: Expect) -> &'static str {
    match e {
        Expect::Exact => "exact",
        Expect::Incomplete { .. } => "gap",
        Expect::Tail => "tail",
        Expect::NotCaptured => "not captured",
    }
}

/// What happened to the messages of one case.
#[derive(Default, Debug)]
struct Figures {
    /// Messages of sessions already running at the cut (their connection
    /// lost packets to the cut and kept some).
    running: usize,
    /// ... of which some data byte is in the capture.
    running_visible: usize,
    running_exact: usize,
    running_incomplete: usize,
    running_missed: usize,
    /// Truth kinds over all messages.
    kinds: BTreeMap<&'static str, usize>,
    /// Extracted messages that match no message sent (complete: false).
    unattributed: usize,
}

/// Joins `pairs` with `truth`, records failures, returns the figures.
fn check(
    case: &str,
    truth: &HashMap<Key, Vec<Truth>>,
    pairs: &[Pair],
    fails: &mut Vec<String>,
) -> Figures {
    let mut fig = Figures::default();
    let mut by_conn: HashMap<Key, Vec<&Pair>> = HashMap::new();
    for p in pairs {
        by_conn.entry(json_key(&p.json)).or_default().push(p);
    }
    let empty = Vec::new();
    let mut keys: Vec<&Key> = truth.keys().chain(by_conn.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let msgs = truth.get(k).unwrap_or(&empty);
        let mut got = by_conn.get(k).cloned().unwrap_or_default();
        // connection order (reused 4-tuples), then message order
        got.sort_by(|a, b| {
            let t = |p: &Pair| p.json["ts"].as_f64().unwrap_or(0.0);
            t(a).total_cmp(&t(b))
                .then(a.json["n"].as_u64().cmp(&b.json["n"].as_u64()))
        });
        // match[i]: the pair extracted for msgs[i]
        let mut matched: Vec<Option<&Pair>> = vec![None; msgs.len()];
        let mut j = 0;
        for p in &got {
            let complete = p.json["complete"] == Value::Bool(true);
            let found = (j..msgs.len()).find(|&i| {
                let t = &msgs[i].bytes;
                if complete {
                    p.eml == *t
                } else {
                    !p.eml.is_empty()
                        && p.eml.len() <= t.len()
                        && contains(t, &p.eml[..p.eml.len().min(256)])
                }
            });
            match found {
                Some(i) => {
                    matched[i] = Some(p);
                    j = i + 1;
                }
                None if complete => fails.push(format!(
                    "{case}: {} ({k:?}) complete: true but equals no message sent",
                    p.stem
                )),
                None => fig.unattributed += 1,
            }
        }
        for (t, p) in msgs.iter().zip(&matched) {
            *fig.kinds.entry(kind(t.cap.expect)).or_default() += 1;
            let what = format!("{case}: {k:?} message {}", t.index);
            let running = t.cap.session_cut;
            if running {
                fig.running += 1;
                if t.cap.expect != Expect::NotCaptured {
                    fig.running_visible += 1;
                }
            }
            let Some(p) = p else {
                if running && t.cap.expect != Expect::NotCaptured {
                    fig.running_missed += 1;
                }
                if matches!(t.cap.expect, Expect::Exact | Expect::Incomplete { .. }) {
                    fails.push(format!(
                        "{what}: not extracted ({:?}, {} bytes, start captured {})",
                        t.cap.expect,
                        t.bytes.len(),
                        t.cap.start_captured
                    ));
                }
                continue;
            };
            let j = &p.json;
            let complete = j["complete"] == Value::Bool(true);
            if running {
                if complete && p.eml == t.bytes {
                    fig.running_exact += 1;
                } else {
                    fig.running_incomplete += 1;
                }
            }
            match t.cap.expect {
                Expect::Exact => {
                    if !complete || p.eml != t.bytes {
                        fails.push(format!(
                            "{what} ({}): captured whole from its data start, extracted complete: \
                             {} with {} of {} bytes{}",
                            p.stem,
                            j["complete"],
                            p.eml.len(),
                            t.bytes.len(),
                            if p.eml == t.bytes {
                                " (byte-exact)"
                            } else {
                                ""
                            }
                        ));
                    }
                }
                Expect::Incomplete { missing_bytes } => {
                    if complete || j["missing_bytes"].as_u64() != Some(missing_bytes) {
                        fails.push(format!(
                            "{what} ({}): lost {missing_bytes} bytes in a gap, extracted \
                             complete: {}, missing_bytes {}",
                            p.stem, j["complete"], j["missing_bytes"]
                        ));
                    }
                }
                Expect::Tail | Expect::NotCaptured => {
                    if complete || j["partial"] != Value::Bool(true) {
                        fails.push(format!(
                            "{what} ({}): its start was cut off ({} of {} bytes), extracted \
                             complete: {}, partial: {}",
                            p.stem, t.cap.bytes_cut, t.cap.data_bytes, j["complete"], j["partial"]
                        ));
                    }
                }
            }
        }
    }
    fig
}

#[test]
fn every_message_of_imperfect_captures_is_exact_or_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let root = if std::env::var_os("MAILTAP_TEST_KEEP").is_some() {
        let p = tmp.keep();
        eprintln!("keeping {}", p.display());
        p
    } else {
        tmp.path().to_path_buf()
    };
    let started = std::time::Instant::now();
    let cfg = base(31);
    let total = count_packets(&cfg).unwrap();
    let long_auth = {
        let mut c = GenConfig {
            quirks: Quirks {
                long_auth_percent: 60,
                long_auth_len: 3_000,
                ..Quirks::default()
            },
            ..base(37)
        };
        c.mix.auth = 60;
        c
    };
    let none = Imperfections::default();
    let cases: Vec<(String, GenConfig, Imperfections, Vec<&str>)> = vec![
        (
            "cut at 10%".into(),
            cfg.clone(),
            Imperfections {
                skip_packets: total / 10,
                ..none.clone()
            },
            vec![],
        ),
        (
            "cut at 50%".into(),
            cfg.clone(),
            Imperfections {
                skip_packets: total / 2,
                ..none.clone()
            },
            vec![],
        ),
        (
            "cut at 90%".into(),
            cfg.clone(),
            Imperfections {
                skip_packets: total * 9 / 10,
                ..none.clone()
            },
            vec![],
        ),
        (
            "gaps".into(),
            GenConfig {
                gap_percent: 15,
                ..base(32)
            },
            none.clone(),
            vec![],
        ),
        (
            "SYNs dropped".into(),
            base(33),
            Imperfections {
                drop_syn_percent: 40,
                ..none.clone()
            },
            vec![],
        ),
        (
            "handshakes dropped".into(),
            base(34),
            Imperfections {
                drop_handshake_percent: 40,
                ..none.clone()
            },
            vec![],
        ),
        (
            "stray packets before SYN".into(),
            base(35),
            Imperfections {
                stray_before_syn_percent: 40,
                ..none.clone()
            },
            vec![],
        ),
        (
            "reused 4-tuples".into(),
            GenConfig {
                quirks: Quirks {
                    reuse_closed_percent: 30,
                    reuse_open_percent: 15,
                    ..Quirks::default()
                },
                ..base(36)
            },
            none.clone(),
            vec![],
        ),
        (
            "long AUTH lines".into(),
            long_auth,
            none.clone(),
            vec!["--set", "smtp.max_command_line_length=1024"],
        ),
    ];
    let mut fails: Vec<String> = Vec::new();
    let mut report = Vec::new();
    for (i, (case, cfg, imp, extra)) in cases.iter().enumerate() {
        let dir = root.join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let cap = dir.join("capture.pcap");
        let truth = generate(&cap, cfg, imp);
        let n: usize = truth.values().map(Vec::len).sum();
        assert!(n >= 200, "{case}: {n} messages");
        let pairs = extract(&cap, &dir, extra);
        let before = fails.len();
        let fig = check(case, &truth, &pairs, &mut fails);
        let line = if case.starts_with("cut") {
            format!(
                "{case}: {} messages of sessions running at the cut, {} with data in the \
                 capture: {} recovered exactly, {} flagged incomplete, {} missed; all messages \
                 by truth {:?}; {} pairs, {} unattributed; {} failed checks",
                fig.running,
                fig.running_visible,
                fig.running_exact,
                fig.running_incomplete,
                fig.running_missed,
                fig.kinds,
                pairs.len(),
                fig.unattributed,
                fails.len() - before
            )
        } else {
            format!(
                "{case}: {n} messages by truth {:?}; {} pairs, {} unattributed; {} failed checks",
                fig.kinds,
                pairs.len(),
                fig.unattributed,
                fails.len() - before
            )
        };
        eprintln!("{line}");
        report.push(line);
    }
    eprintln!("{:.1}s", started.elapsed().as_secs_f64());
    if !fails.is_empty() {
        let mut by_kind = BTreeMap::<String, usize>::new();
        for f in &fails {
            let case = f.split(':').next().unwrap_or("?");
            let what = if f.contains("not extracted") {
                "not extracted"
            } else if f.contains("captured whole") {
                "exact message not exact/complete"
            } else if f.contains("in a gap") {
                "gap message: complete or missing_bytes"
            } else if f.contains("cut off") {
                "tail: complete or not partial"
            } else {
                "complete but wrong"
            };
            *by_kind.entry(format!("{case}: {what}")).or_default() += 1;
        }
        panic!(
            "{} failed checks\n{}\nby case and kind: {by_kind:#?}\nthe first 40:\n{}",
            fails.len(),
            report.join("\n"),
            fails
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The same checks from the command line, as a user would run them:
/// `mailtap gen` with every imperfection at once (including a lost
/// handshake on a reused 4-tuple) and `--truth`, then `mailtap read
/// --extract-dir`, joined on the SHA-256 the truth file and the extraction
/// JSON both give.
#[test]
fn gen_truth_file_checks_an_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cap, truth, logs, ex) = (
        d.join("c.pcap"),
        d.join("truth.jsonl"),
        d.join("logs"),
        d.join("ex"),
    );
    let (o, _) = run(&[
        "gen",
        "-o",
        cap.to_str().unwrap(),
        "--mix",
        "small",
        "--sessions",
        "300",
        "--concurrency",
        "40",
        "--pop3-percent",
        "30",
        "--imap-percent",
        "30",
        "--cut",
        "50%",
        "--drop-syn",
        "10",
        "--drop-handshake",
        "10",
        "--stray-before-syn",
        "5",
        "--gaps",
        "5",
        "--reuse-closed",
        "5",
        "--reuse-open",
        "5",
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mailtap gen: {}", stderr(&o));
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        logs.to_str().unwrap(),
        "--extract-dir",
        ex.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "mailtap read: {}", stderr(&o));

    let truth: Vec<Value> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut got: Vec<Value> = Vec::new();
    for e in std::fs::read_dir(&ex).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            got.push(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
        }
    }
    let count = |e: &str| truth.iter().filter(|t| t["expect"] == e).count();
    eprintln!(
        "truth: {} messages ({} exact, {} incomplete, {} tail, {} not captured); {} extracted",
        truth.len(),
        count("exact"),
        count("incomplete"),
        count("tail"),
        count("not_captured"),
        got.len()
    );
    assert!(count("exact") >= 100 && count("incomplete") >= 1 && count("not_captured") >= 50);
    // IMAP sessions picked up mid-stream too, some over COMPRESS
    let imap_exact = truth
        .iter()
        .filter(|t| t["protocol"] == "imap" && t["expect"] == "exact")
        .count();
    assert!(imap_exact >= 30, "{imap_exact} exact IMAP messages");
    let exact: std::collections::HashSet<&str> = truth
        .iter()
        .filter(|t| t["expect"] == "exact")
        .map(|t| t["sha256"].as_str().unwrap())
        .collect();
    let complete: std::collections::HashSet<&str> = got
        .iter()
        .filter(|g| g["complete"] == true)
        .map(|g| g["sha256"].as_str().unwrap())
        .collect();
    let missed: Vec<&&str> = exact.difference(&complete).collect();
    assert!(
        missed.is_empty(),
        "exact messages not extracted complete: {missed:?}"
    );
    let wrong: Vec<&&str> = complete.difference(&exact).collect();
    assert!(
        wrong.is_empty(),
        "complete: true but not an exact message: {wrong:?}"
    );
    // A message that lost bytes in a gap: incomplete, with the count.
    let tuple = |h: &Value, a: &str, b: &str| (h[a].as_str().unwrap().to_string(), h[b].as_u64());
    for t in truth.iter().filter(|t| t["expect"] == "incomplete") {
        let ends = [tuple(t, "orig_h", "orig_p"), tuple(t, "resp_h", "resp_p")];
        let found = got.iter().any(|g| {
            let id = &g["id"];
            let (o, r) = (tuple(id, "orig_h", "orig_p"), tuple(id, "resp_h", "resp_p"));
            ends.contains(&o)
                && ends.contains(&r)
                && g["complete"] == false
                && g["missing_bytes"] == t["missing_bytes"]
        });
        assert!(
            found,
            "no incomplete extraction with the missing bytes of {t}"
        );
    }
    // Out-of-range imperfections are refused, naming the option.
    for (flag, v, says) in [
        ("--cut", "101%", "--cut 101%"),
        ("--cut", "half", "--cut half"),
        ("--drop-syn", "200", "--drop-syn 200"),
    ] {
        let (o, _) = run(&["gen", "-o", cap.to_str().unwrap(), flag, v]);
        assert_eq!(o.status.code(), Some(2), "{flag} {v}");
        assert!(stderr(&o).contains(says), "{flag} {v}: {}", stderr(&o));
    }
}
