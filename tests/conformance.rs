//! Zeek conformance: runs `mailtap read` on Zeek's own SMTP test traces with
//! the settings each btest used (see shared/conformance/zeek/MANIFEST.md)
//! and compares smtp.log field by field (ignoring ts and uid; sets
//! compared as sets), weird.log rows (name, addl, source), and the
//! smtp_request/smtp_reply event sequence of the dump-events test.
//!
//! Deviations kept on purpose are listed in `DEVIATIONS` and in
//! docs/conformance.md. The test skips, saying so, when ../shared is absent.

mod common;
use common::skip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek");
    p.is_dir().then_some(p)
}

struct Case {
    /// Baseline directory (btest name without the common prefix).
    test: &'static str,
    trace: &'static str,
    sets: &'static [&'static str],
    /// Whether the baseline expects no weird.log at all.
    expect_no_weirds: bool,
}

const P: &str = "scripts.base.protocols.smtp.";

const CASES: &[Case] = &[
    Case {
        test: "basic",
        trace: "smtp.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "attachment",
        trace: "smtp.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "attachment-msg",
        trace: "smtp-attachment-msg.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "one-side",
        trace: "smtp-one-side-only.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "starttls",
        trace: "tls/smtp-starttls.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "mail-transactions-invalid",
        trace: "smtp-mail-transactions-invalid.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "mail-transactions-invalid-disable-analyzer",
        trace: "smtp-mail-transactions-invalid.pcap",
        sets: &["smtp.max_invalid_mail_transactions=2"],
        expect_no_weirds: false,
    },
    Case {
        test: "bdat",
        trace: "smtp/rfc3030-bdat-example1.pcap",
        sets: &[],
        expect_no_weirds: true,
    },
    Case {
        test: "bdat-0-last",
        trace: "smtp/rfc3030-bdat-0-last.pcap",
        sets: &[],
        expect_no_weirds: true,
    },
    Case {
        test: "bdat-multipart",
        trace: "smtp/rfc3030-bdat-multipart.pcap",
        sets: &[],
        expect_no_weirds: true,
    },
    Case {
        test: "bdat-multipart-chunked",
        trace: "smtp/rfc3030-bdat-multipart-chunked.pcap",
        sets: &[],
        expect_no_weirds: true,
    },
    Case {
        test: "bdat-pipeline-8bitmime",
        trace: "smtp/smtp-bdat-pipeline-8bitmime.pcap",
        sets: &[],
        expect_no_weirds: true,
    },
    Case {
        test: "bdat-gap",
        trace: "smtp/smtp-bdat-gap.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "bdat-cmd-invalid",
        trace: "smtp/smtp-bdat-cmd-invalid.pcapng",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "bdat-chunk-size-overflow",
        trace: "smtp/smtp-bdat-cmd-chunk-size-overflow.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "bdat-chunk-size-overflow2",
        trace: "smtp/smtp-bdat-cmd-chunk-size-overflow2.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
    Case {
        test: "bdat-negative-chunk-size",
        trace: "smtp/smtp-bdat-cmd-negative-chunk-size.pcap",
        sets: &[],
        expect_no_weirds: false,
    },
];

/// smtp.log fields we deliberately do not compare, per test, with the
/// reason (mirrored in docs/conformance.md).
const DEVIATIONS: &[(&str, &str, &str)] = &[];

/// Weird names Zeek logs from analyzers mailtap does not have (SSL, the
/// log writer's string limits in non-bare mode, ...), per test.
const WEIRDS_NOT_OURS: &[&str] = &[];

struct Log {
    fields: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn parse_log(text: &str) -> Log {
    let mut fields = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !line.starts_with('#') && !line.is_empty() {
            rows.push(line.split('\t').map(str::to_string).collect());
        }
    }
    Log { fields, rows }
}

fn run_mailtap(trace: &Path, sets: &[&str], out: &Path, events: Option<&Path>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtap"));
    cmd.arg("read")
        .arg(trace)
        .arg("-o")
        .arg(out)
        .arg("-w")
        .arg("1")
        .arg("--no-progress");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    if let Some(e) = events {
        cmd.arg("--events").arg(e);
    }
    let o = cmd.output().expect("run mailtap");
    assert!(
        o.status.success(),
        "mailtap read {} failed: {}",
        trace.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Normalises one smtp.log row to the compared fields, sets sorted.
fn canon_smtp(log: &Log, row: &[String], skip: &[&str]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (i, name) in log.fields.iter().enumerate() {
        if ["ts", "uid"].contains(&name.as_str()) || skip.contains(&name.as_str()) {
            continue;
        }
        let mut v = row.get(i).cloned().unwrap_or_default();
        if ["rcptto", "to", "cc"].contains(&name.as_str()) && v != "-" && v != "(empty)" {
            let mut parts: Vec<&str> = v.split(',').collect();
            parts.sort_unstable();
            v = parts.join(",");
        }
        m.insert(name.clone(), v);
    }
    m
}

fn sorted_rows(rows: Vec<BTreeMap<String, String>>) -> Vec<BTreeMap<String, String>> {
    let mut r = rows;
    r.sort_by_key(|m| format!("{m:?}"));
    r
}

fn weird_rows(log: &Log) -> Vec<(String, String, String)> {
    let col = |n: &str| {
        log.fields
            .iter()
            .position(|f| f == n)
            .expect("weird column")
    };
    let (n, a, s) = (col("name"), col("addl"), col("source"));
    let mut v: Vec<_> = log
        .rows
        .iter()
        .filter(|r| !WEIRDS_NOT_OURS.contains(&r[n].as_str()))
        .map(|r| (r[n].clone(), r[a].clone(), r[s].clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn zeek_smtp_conformance() {
    let Some(root) = shared() else {
        skip(
            "zeek_smtp_conformance",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    let mut failures = Vec::new();
    for case in CASES {
        let base = root.join("baselines").join(format!("{P}{}", case.test));
        let trace = root.join("traces").join(case.trace);
        let dir = tempfile::tempdir().unwrap();
        run_mailtap(&trace, case.sets, dir.path(), None);

        let skip: Vec<&str> = DEVIATIONS
            .iter()
            .filter(|d| d.0 == case.test)
            .map(|d| d.1)
            .collect();
        let want = parse_log(&std::fs::read_to_string(base.join("smtp.log")).unwrap());
        let got_text = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap_or_default();
        let got = parse_log(&got_text);
        if !got.rows.is_empty() && got.fields != want.fields {
            failures.push(format!(
                "{}: smtp.log columns differ:\n  want {:?}\n  got  {:?}",
                case.test, want.fields, got.fields
            ));
        }
        let w = sorted_rows(
            want.rows
                .iter()
                .map(|r| canon_smtp(&want, r, &skip))
                .collect(),
        );
        let g = sorted_rows(
            got.rows
                .iter()
                .map(|r| canon_smtp(&got, r, &skip))
                .collect(),
        );
        if w.len() != g.len() {
            failures.push(format!(
                "{}: {} smtp.log rows, want {}:\n  got {g:#?}",
                case.test,
                g.len(),
                w.len()
            ));
        } else {
            for (a, b) in w.iter().zip(&g) {
                for (k, v) in a {
                    let gv = b.get(k).cloned().unwrap_or_default();
                    if &gv != v {
                        failures.push(format!(
                            "{}: smtp.log field {k}: want {v:?}, got {gv:?}",
                            case.test
                        ));
                    }
                }
            }
        }

        let want_w = std::fs::read_to_string(base.join("weird.log"))
            .ok()
            .map(|t| weird_rows(&parse_log(&t)));
        let got_w = std::fs::read_to_string(dir.path().join("weird.log"))
            .ok()
            .map(|t| weird_rows(&parse_log(&t)))
            .unwrap_or_default();
        match want_w {
            Some(w) if w != got_w => failures.push(format!(
                "{}: weird.log (name, addl, source): want {w:?}, got {got_w:?}",
                case.test
            )),
            None if case.expect_no_weirds && !got_w.is_empty() => {
                failures.push(format!("{}: expected no weirds, got {got_w:?}", case.test))
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One smtp_request/smtp_reply event, reduced to what both sides share.
fn event_key(name: &str, args: &serde_json::Value) -> String {
    let s = |k: &str| args.get(k).map(|v| v.to_string()).unwrap_or_default();
    match name {
        "smtp_request" => format!("request {} {} {}", s("is_orig"), s("command"), s("arg")),
        _ => format!(
            "reply {} {} {} {} {}",
            s("is_orig"),
            s("code"),
            s("cmd"),
            s("msg"),
            s("cont_resp")
        ),
    }
}

#[test]
fn zeek_smtp_event_sequence() {
    let Some(root) = shared() else {
        skip(
            "zeek_smtp_event_sequence",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    let text = std::fs::read_to_string(
        root.join("baselines/scripts.policy.misc.dump-events-json/smtp-events.json"),
    )
    .unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("###"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut want: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for v in serde_json::Deserializer::from_str(&body).into_iter::<serde_json::Value>() {
        let v = v.unwrap();
        let name = v["event"].as_str().unwrap().to_string();
        let args = &v["args"];
        let port = args["c"]["id"]["orig_p"]["port"].as_u64().unwrap();
        want.entry(port).or_default().push(event_key(&name, args));
    }

    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("events.json");
    run_mailtap(&root.join("traces/smtp.pcap"), &[], dir.path(), Some(&ev));
    let mut got: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(&ev).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["event"].as_str().unwrap();
        if name != "smtp_request" && name != "smtp_reply" {
            continue;
        }
        let port = v["id"]["orig_p"].as_u64().unwrap();
        got.entry(port)
            .or_default()
            .push(event_key(name, &v["args"]));
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "connections with SMTP events"
    );
    for (port, w) in &want {
        let g = &got[port];
        for (i, (a, b)) in w.iter().zip(g).enumerate() {
            assert_eq!(a, b, "connection from port {port}, event #{i}");
        }
        assert_eq!(
            w.len(),
            g.len(),
            "number of events of the connection from port {port}"
        );
    }
}

/// conn.log: every column but ts and uid for the POP3 traces (TCP-level
/// behaviour; `service` is left out until the POP3 analyzer exists), and
/// the `conn.log.cut` columns the SMTP BDAT baselines keep.
#[test]
fn zeek_conn_conformance() {
    let Some(root) = shared() else {
        skip(
            "zeek_conn_conformance",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    let mut failures = Vec::new();
    let full: &[(&str, &str)] = &[
        ("scripts.base.protocols.pop3.basic", "pop3/pop3.pcap"),
        (
            "scripts.base.protocols.pop3.redis",
            "pop3/redis-50-pings.pcap",
        ),
        (
            "scripts.base.protocols.pop3.bad-list-retr-crafted",
            "pop3/bad-list-retr-crafted.pcap",
        ),
        (
            "scripts.base.protocols.pop3.starttls",
            "tls/pop3-starttls.pcap",
        ),
    ];
    // (baseline dir, trace, settings, only port-25 connections: the btest
    // applied the BPF filter `tcp port 25`)
    let cut: &[(&str, &str, &[&str], bool)] = &[
        (
            "scripts.base.protocols.smtp.bdat",
            "smtp/rfc3030-bdat-example1.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.bdat-0-last",
            "smtp/rfc3030-bdat-0-last.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.bdat-multipart",
            "smtp/rfc3030-bdat-multipart.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.bdat-multipart-chunked",
            "smtp/rfc3030-bdat-multipart-chunked.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.bdat-pipeline-8bitmime",
            "smtp/smtp-bdat-pipeline-8bitmime.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.bdat-gap",
            "smtp/smtp-bdat-gap.pcap",
            &[],
            false,
        ),
        (
            "scripts.base.protocols.smtp.mime-header-size-limit",
            "smtp/mime-header-size-limit.pcap.gz",
            &["log.max_field_string_bytes=0"],
            false,
        ),
        (
            "scripts.base.files.mime.mime-content-hash",
            "smtp.pcap",
            &[],
            true,
        ),
    ];
    let project = |log: &Log, cols: &[String]| -> Vec<String> {
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| log.fields.iter().position(|f| f == c).expect(c))
            .collect();
        let mut rows: Vec<String> = log
            .rows
            .iter()
            .map(|r| {
                idx.iter()
                    .map(|&i| r[i].as_str())
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect();
        rows.sort();
        rows
    };
    let mut check =
        |name: &str, want_text: &str, trace: &str, sets: &[&str], skip: &[&str], port25: bool| {
            let dir = tempfile::tempdir().unwrap();
            run_mailtap(&root.join("traces").join(trace), sets, dir.path(), None);
            let mut got = parse_log(
                &std::fs::read_to_string(dir.path().join("conn.log")).unwrap_or_default(),
            );
            if port25 {
                let (op, rp) = (
                    got.fields.iter().position(|f| f == "id.orig_p").unwrap(),
                    got.fields.iter().position(|f| f == "id.resp_p").unwrap(),
                );
                got.rows.retain(|r| r[op] == "25" || r[rp] == "25");
            }
            // A cut baseline is a header line of names, then rows.
            let want = if want_text.contains("#fields") {
                parse_log(want_text)
            } else {
                let mut lines = want_text.lines().filter(|l| !l.starts_with("###"));
                let fields: Vec<String> = lines
                    .next()
                    .unwrap_or("")
                    .split('\t')
                    .map(str::to_string)
                    .collect();
                Log {
                    fields,
                    rows: lines
                        .map(|l| l.split('\t').map(str::to_string).collect())
                        .collect(),
                }
            };
            let cols: Vec<String> = want
                .fields
                .iter()
                .filter(|f| !["ts", "uid"].contains(&f.as_str()) && !skip.contains(&f.as_str()))
                .cloned()
                .collect();
            let (w, g) = (project(&want, &cols), project(&got, &cols));
            if w != g {
                failures.push(format!(
                    "{name}: conn.log columns {cols:?}\n  want {w:#?}\n  got  {g:#?}"
                ));
            }
        };
    for (test, trace) in full {
        let text =
            std::fs::read_to_string(root.join("baselines").join(test).join("conn.log")).unwrap();
        check(test, &text, trace, &[], &["service"], false);
    }
    for (test, trace, sets, port25) in cut {
        let dir = root.join("baselines").join(test);
        let text = std::fs::read_to_string(dir.join("conn.log.cut"))
            .or_else(|_| std::fs::read_to_string(dir.join("conn.log")))
            .unwrap();
        check(test, &text, trace, sets, &[], *port25);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
