//! Developer tool: replays a connection transcript through the analyzer
//! and prints smtp.log rows, weirds and (with `-e`) events.
//!
//! Transcript lines: `C orig_h orig_p resp_h resp_p start` starts a
//! connection; `D ts is_orig hex` delivers payload; `G ts is_orig len` is a
//! content gap; `E ts is_orig 0` ends a direction.

use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, Record, TcpAnalyzer, Timestamp};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use std::sync::Arc;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn ts(s: &str) -> Timestamp {
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    Timestamp::from_secs_micros(a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Conn {
    a: SmtpAnalyzer,
    id: ConnId,
    uid: String,
    ann: ConnAnnotations,
}

fn finish(c: &mut Conn, out: &mut Output, t: Timestamp) {
    let mut cx = ConnCtx {
        ts: t,
        uid: &c.uid,
        id: &c.id,
        out,
        conn: &mut c.ann,
    };
    c.a.done(&mut cx);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = args.iter().any(|a| a == "-e");
    let mut cfg = SmtpConfig::default();
    for a in &args {
        if let Some(v) = a.strip_prefix("--max-invalid=") {
            cfg.max_invalid_mail_transactions = v.parse().unwrap_or(25);
        }
    }
    let cfg = Arc::new(cfg);
    let Some(path) = args.iter().skip(1).find(|a| !a.starts_with('-')) else {
        eprintln!("usage: replay [-e] <transcript>");
        return;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Output::new(events);
    let mut cur: Option<Conn> = None;
    let mut n = 0;
    let mut last = Timestamp::ZERO;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f[0] == "C" {
            if let Some(mut c) = cur.take() {
                finish(&mut c, &mut out, last);
            }
            n += 1;
            let id = ConnId {
                orig_h: f[1].parse().unwrap_or([0, 0, 0, 0].into()),
                orig_p: f[2].parse().unwrap_or(0),
                resp_h: f[3].parse().unwrap_or([0, 0, 0, 0].into()),
                resp_p: f[4].parse().unwrap_or(0),
            };
            cur = Some(Conn {
                a: SmtpAnalyzer::new(cfg.clone()),
                id,
                uid: format!("C{n}"),
                ann: ConnAnnotations::default(),
            });
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        let t = ts(f[1]);
        last = t;
        let is_orig = f[2] == "1";
        if c.a.disabled() {
            continue;
        }
        let mut cx = ConnCtx {
            ts: t,
            uid: &c.uid,
            id: &c.id,
            out: &mut out,
            conn: &mut c.ann,
        };
        match f[0] {
            "D" => c.a.deliver(&mut cx, is_orig, &hex(f[3])),
            "G" => c.a.gap(&mut cx, is_orig, f[3].parse().unwrap_or(0)),
            "E" => c.a.eof(&mut cx, is_orig),
            _ => {}
        }
    }
    if let Some(mut c) = cur.take() {
        finish(&mut c, &mut out, last);
    }
    for r in out.records {
        match r {
            Record::Smtp(s) => {
                let set = |v: &Option<Vec<Vec<u8>>>| {
                    v.as_ref().map_or("-".into(), |v| {
                        v.iter().map(|x| show(x)).collect::<Vec<_>>().join(",")
                    })
                };
                let o = |v: &Option<Vec<u8>>| v.as_ref().map_or("-".into(), |v| show(v));
                println!(
                    "SMTP\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.ts,
                    s.uid,
                    s.trans_depth,
                    o(&s.helo),
                    o(&s.mailfrom),
                    set(&s.rcptto),
                    o(&s.date),
                    o(&s.from),
                    set(&s.to),
                    set(&s.cc),
                    o(&s.reply_to),
                    o(&s.msg_id),
                    o(&s.in_reply_to),
                    o(&s.subject),
                    s.x_originating_ip.map_or("-".into(), |i| i.to_string()),
                    o(&s.first_received),
                    o(&s.second_received),
                    o(&s.last_reply),
                    s.path.as_ref().map_or("-".into(), |p| p.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")),
                    o(&s.user_agent),
                    if s.tls { "T" } else { "F" }
                );
            }
            Record::Weird(w) => println!(
                "WEIRD\t{}\t{}\t{}\t{}\t{}",
                w.ts,
                w.uid.unwrap_or_default(),
                w.name,
                w.addl.as_deref().map_or("-".into(), show),
                w.source.unwrap_or("-")
            ),
            Record::Event(e) => {
                let mut args = Vec::new();
                e.event.args(&mut |_, v| {
                    args.push(match v {
                        mailtap_core::event::ArgValue::Bool(b) => {
                            if b {
                                "T".into()
                            } else {
                                "F".into()
                            }
                        }
                        mailtap_core::event::ArgValue::Count(c) => c.to_string(),
                        mailtap_core::event::ArgValue::Str(s) => show(s),
                    })
                });
                println!(
                    "EV\t{}\t{}\t{}\t{}",
                    e.ts,
                    e.uid,
                    e.event.name(),
                    args.join(", ")
                );
            }
            Record::Conn(_) => {}
        }
    }
}
