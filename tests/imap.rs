//! IMAP end to end (issue 15): a hand-built capture of a realistic session
//! (greeting, CAPABILITY, LOGIN, SELECT, two pipelined `UID FETCH n
//! BODY.PEEK[]` whose `{n}` literals are split across many segments, an
//! APPEND with a `{n+}` literal, LOGOUT) read by `mailtap read`: imap.log,
//! conn.log's service, files.log rows with source IMAP, Zeek's IMAP events,
//! and every fetched and appended message extracted byte for byte. On a
//! port that is not `imap.ports` the session is found only by detection.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

const CLIENT: [u8; 4] = [192, 168, 1, 20];
const SERVER: [u8; 4] = [10, 0, 0, 143];
const CPORT: u16 = 51_000;

const MSG1: &[u8] = b"From: Alice <alice@example.com>\r\n\
To: bob@example.com\r\n\
Subject: first\r\n\
Message-ID: <one@example.com>\r\n\
\r\n\
Hello Bob,\r\n\
this line mentions a1 OK and {12} inside a literal.\r\n\
.\r\n\
Bye.\r\n";

const MSG2: &[u8] = b"From: carol@example.com\r\n\
To: alice@example.com\r\n\
Subject: with attachment\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
See the file.\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n\
--b1--\r\n";

const MSG3: &[u8] = b"From: alice@example.com\r\n\
To: dave@example.com\r\n\
Subject: sent copy\r\n\
\r\n\
Appended to Sent; no CRLF at the very end";

/// The session: `(from_client, bytes, segment size)`; each part goes out
/// in segments of at most that size.
fn session() -> Vec<(bool, Vec<u8>, usize)> {
    let mut fetch = Vec::new();
    fetch.extend_from_slice(format!("* 1 FETCH (UID 41 BODY[] {{{}}}\r\n", MSG1.len()).as_bytes());
    fetch.extend_from_slice(MSG1);
    fetch.extend_from_slice(b" FLAGS (\\Seen))\r\na4 OK Fetch completed.\r\n");
    fetch.extend_from_slice(format!("* 2 FETCH (UID 42 BODY[] {{{}}}\r\n", MSG2.len()).as_bytes());
    fetch.extend_from_slice(MSG2);
    fetch.extend_from_slice(b")\r\na5 OK Fetch completed.\r\n");
    let mut append = format!("a6 APPEND Sent (\\Seen) {{{}+}}\r\n", MSG3.len()).into_bytes();
    append.extend_from_slice(MSG3);
    append.extend_from_slice(b"\r\n");
    let s = |b: &[u8]| (false, b.to_vec(), 1400);
    let c = |b: &[u8]| (true, b.to_vec(), 1400);
    vec![
        s(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE STARTTLS AUTH=PLAIN] Dovecot ready.\r\n"),
        c(b"a1 CAPABILITY\r\n"),
        s(b"* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ IDLE STARTTLS AUTH=PLAIN\r\na1 OK Pre-login capabilities listed.\r\n"),
        c(b"a2 LOGIN alice s3cret\r\n"),
        s(b"a2 OK Logged in\r\n"),
        c(b"a3 SELECT INBOX\r\n"),
        s(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n* OK [UIDNEXT 43] Predicted next UID\r\na3 OK [READ-WRITE] Select completed.\r\n"),
        // Pipelined: both commands in one segment.
        c(b"a4 UID FETCH 41 BODY.PEEK[]\r\na5 UID FETCH 42 BODY.PEEK[]\r\n"),
        // Both responses, literals included, in small segments.
        (false, fetch, 53),
        (true, append, 31),
        s(b"a6 OK [APPENDUID 1700000001 7] Append completed.\r\n"),
        c(b"a7 LOGOUT\r\n"),
        s(b"* BYE Logging out\r\na7 OK Logout completed.\r\n"),
    ]
}

fn pcap(port: u16) -> Pcap {
    let mut p = Pcap::new();
    let mut ts = 1_700_000_000_000_000u64;
    let mut t = || {
        ts += 1_000;
        ts
    };
    let (mut cs, mut ss) = (1_001u32, 9_001u32);
    p.tcp(t(), CLIENT, CPORT, SERVER, port, 1_000, 0, SYN, b"");
    p.tcp(t(), SERVER, port, CLIENT, CPORT, 9_000, cs, SYN | ACK, b"");
    p.tcp(t(), CLIENT, CPORT, SERVER, port, cs, ss, ACK, b"");
    for (from_client, data, seg) in session() {
        for part in data.chunks(seg) {
            if from_client {
                p.tcp(t(), CLIENT, CPORT, SERVER, port, cs, ss, ACK | PSH, part);
                cs += part.len() as u32;
            } else {
                p.tcp(t(), SERVER, port, CLIENT, CPORT, ss, cs, ACK | PSH, part);
                ss += part.len() as u32;
            }
        }
    }
    p.tcp(t(), CLIENT, CPORT, SERVER, port, cs, ss, FIN | ACK, b"");
    p.tcp(t(), SERVER, port, CLIENT, CPORT, ss, cs + 1, FIN | ACK, b"");
    p.tcp(t(), CLIENT, CPORT, SERVER, port, cs + 1, ss + 1, ACK, b"");
    p
}

/// The rows of a Zeek TSV log as column name -> value.
fn table(dir: &Path, log: &str) -> Vec<BTreeMap<String, String>> {
    let Ok(text) = std::fs::read_to_string(dir.join(log)) else {
        return Vec::new();
    };
    let fields: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .map(|f| f.split('\t').map(str::to_string).collect())
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            fields
                .iter()
                .cloned()
                .zip(l.split('\t').map(str::to_string))
                .collect()
        })
        .collect()
}

struct Run {
    _tmp: tempfile::TempDir,
    out: std::path::PathBuf,
    extract: std::path::PathBuf,
    events: std::path::PathBuf,
}

fn read(port: u16, extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("imap.pcap");
    pcap(port).write(&cap);
    let out = tmp.path().join("out");
    let extract = tmp.path().join("x");
    let events = tmp.path().join("events.json");
    let mut args = vec![
        "read",
        "--no-progress",
        "-o",
        out.to_str().unwrap(),
        "--extract-dir",
        extract.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(cap.to_str().unwrap());
    let (o, _) = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    Run {
        _tmp: tmp,
        out,
        extract,
        events,
    }
}

/// A string field of a pretty-printed extraction JSON document (`"k": v`).
fn json_field(doc: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\": ");
    let at = doc.find(&pat)? + pat.len();
    let rest = &doc[at..];
    let end = rest.find(",\n").or_else(|| rest.find('\n'))?;
    Some(rest[..end].trim().to_string())
}

#[test]
fn imap_session_is_logged_and_every_message_extracted_byte_exact() {
    let r = read(143, &[]);

    // imap.log: one row for the session.
    let imap = table(&r.out, "imap.log");
    assert_eq!(imap.len(), 1, "{imap:?}");
    let row = &imap[0];
    assert_eq!(row["id.resp_p"], "143");
    assert_eq!(row["user"], "alice");
    assert_eq!(row["auth_method"], "LOGIN");
    assert_eq!(row["login"], "success");
    assert_eq!(row["mailboxes"], "INBOX");
    assert_eq!(row["messages_fetched"], "2");
    assert_eq!(row["bytes_fetched"], (MSG1.len() + MSG2.len()).to_string());
    assert_eq!(row["messages_appended"], "1");
    assert_eq!(row["bytes_appended"], MSG3.len().to_string());
    assert_eq!(
        row["commands"],
        "CAPABILITY:1,LOGIN:1,SELECT:1,UID FETCH:2,APPEND:1,LOGOUT:1"
    );
    assert_eq!(row["starttls"], "F");
    assert_eq!(row["last_response"], "OK Logout completed.");
    let all = std::fs::read_to_string(r.out.join("imap.log")).unwrap();
    assert!(!all.contains("s3cret"), "no password in imap.log");

    // conn.log: the service.
    let conn = table(&r.out, "conn.log");
    assert_eq!(conn.len(), 1);
    assert_eq!(conn[0]["service"], "imap");
    let uid = conn[0]["uid"].clone();
    assert_eq!(row["uid"], uid);

    // Extraction: the literals' bytes exactly, fetches first, then the
    // append.
    for (n, want) in [(1, MSG1), (2, MSG2), (3, MSG3)] {
        let eml = std::fs::read(r.extract.join(format!("{uid}-{n}.eml"))).unwrap();
        assert_eq!(eml, want, "message {n}");
        let doc = std::fs::read_to_string(r.extract.join(format!("{uid}-{n}.json"))).unwrap();
        let f = |k: &str| json_field(&doc, k).unwrap_or_else(|| panic!("{k} in {doc}"));
        assert_eq!(f("protocol"), "\"imap\"", "{doc}");
        assert_eq!(f("user"), "\"alice\"");
        assert_eq!(f("complete"), "true");
        assert_eq!(f("partial"), "false");
        assert_eq!(f("size"), want.len().to_string());
        if n < 3 {
            assert_eq!(f("direction"), "\"fetch\"");
            assert_eq!(f("mailbox"), "\"INBOX\"");
            assert_eq!(f("uidvalidity"), "1700000000");
            assert_eq!(f("seq"), n.to_string());
            assert_eq!(f("imap_uid"), (40 + n).to_string());
            assert_eq!(f("section"), "\"BODY[]\"");
        } else {
            assert_eq!(f("direction"), "\"append\"");
            assert_eq!(f("mailbox"), "\"Sent\"");
            assert_eq!(f("imap_uid"), "7");
            assert_eq!(f("section"), "\"APPEND\"");
            assert_eq!(f("imap_status"), "\"OK\"");
            assert!(doc.contains("\"\\\\Seen\""), "{doc}");
        }
    }
    let files = std::fs::read_dir(&r.extract).unwrap().count();
    assert_eq!(files, 6, "three .eml + .json pairs");

    // files.log: every entity with a body, source IMAP.
    let rows = table(&r.out, "files.log");
    assert!(rows.len() >= 4, "{rows:?}");
    assert!(rows.iter().all(|f| f["source"] == "IMAP"), "{rows:?}");
    assert!(rows.iter().all(|f| f["uid"] == uid));
    assert!(rows.iter().any(|f| f["filename"] == "data.bin"));
    // The appended message travelled from the client.
    assert!(rows.iter().any(|f| f["is_orig"] == "T"));
    assert!(rows.iter().any(|f| f["is_orig"] == "F"));

    // Events: Zeek's imap_capabilities with its string_vec, and mailtap's own.
    let ev = std::fs::read_to_string(&r.events).unwrap();
    let caps: Vec<&str> = ev
        .lines()
        .filter(|l| l.contains("\"event\":\"imap_capabilities\""))
        .collect();
    assert_eq!(caps.len(), 1, "{ev}");
    assert!(
        caps[0].contains("\"capabilities\":[\"IMAP4rev1\",\"SASL-IR\",\"LITERAL+\",\"IDLE\",\"STARTTLS\",\"AUTH=PLAIN\"]"),
        "{}",
        caps[0]
    );
    assert!(ev.contains("\"event\":\"imap_request\""));
    assert!(ev.contains("\"event\":\"imap_response\""));
    assert_eq!(ev.matches("\"event\":\"imap_data\"").count(), 3);
    assert!(!ev.contains("s3cret"), "no password in events");

    // Nothing odd about this session.
    let weird = table(&r.out, "weird.log");
    assert!(weird.is_empty(), "{weird:?}");
}

#[test]
fn imap_on_another_port_is_found_only_by_detection() {
    let on = read(1430, &[]);
    let imap = table(&on.out, "imap.log");
    assert_eq!(imap.len(), 1, "{imap:?}");
    assert_eq!(imap[0]["messages_fetched"], "2");
    assert_eq!(imap[0]["messages_appended"], "1");
    assert_eq!(table(&on.out, "conn.log")[0]["service"], "imap");
    let uid = imap[0]["uid"].clone();
    let eml = std::fs::read(on.extract.join(format!("{uid}-1.eml"))).unwrap();
    assert_eq!(eml, MSG1);

    // Detection off, but the port configured: found by port.
    let by_port = read(
        1430,
        &["--set", "dpd.enabled=false", "--set", "imap.ports=[1430]"],
    );
    assert_eq!(table(&by_port.out, "imap.log").len(), 1);

    let off = read(1430, &["--set", "dpd.enabled=false"]);
    assert!(table(&off.out, "imap.log").is_empty());
    assert_eq!(table(&off.out, "conn.log")[0]["service"], "-");
    assert!(table(&off.out, "files.log").is_empty());
    assert_eq!(
        std::fs::read_dir(&off.extract).map_or(0, |d| d.count()),
        0,
        "nothing extracted"
    );
}

/// COMPRESS costs each session two inflate states (about 150 KB): they
/// count against the shard's input budget (`flow.buffer_memory`), so a
/// crowd of COMPRESS sessions cannot take the sensor's memory. With a tiny
/// budget the sessions that do not fit are left unanalysed after COMPRESS
/// (weird `imap_compress_over_budget`, counted in the summary) while the
/// others are still extracted byte for byte; with the default budget all
/// of them are.
#[test]
fn compress_sessions_count_against_the_buffer_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("compress.pcap");
    let mut cfg = mailtap_gen::GenConfig {
        sessions: 600,
        concurrency: 400,
        seed: 31,
        ..mailtap_gen::GenConfig::for_mix(mailtap_gen::TrafficMix::Small)
    };
    cfg.mix.imap = 100;
    cfg.mix.pop3 = 0;
    let mut truth = Vec::new();
    let f = std::io::BufWriter::new(std::fs::File::create(&cap).unwrap());
    mailtap_gen::generate_with_truth(&cfg, f, &mut |t| {
        truth.push((t.imap.is_some_and(|i| i.compressed), t.bytes.len()));
    })
    .unwrap();
    let compressed = truth.iter().filter(|t| t.0).count();
    assert!(compressed >= 50, "{compressed} messages over COMPRESS");
    let extract = |budget: &str| {
        let (logs, ex) = (
            tmp.path().join(format!("l{budget}")),
            tmp.path().join(format!("e{budget}")),
        );
        let (o, _) = run(&[
            "read",
            "--no-progress",
            "-o",
            logs.to_str().unwrap(),
            "--extract-dir",
            ex.to_str().unwrap(),
            "--set",
            &format!("flow.buffer_memory={budget}"),
            cap.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let emls = std::fs::read_dir(&ex)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "eml")
            })
            .count();
        let refused = rows(&logs, "weird.log")
            .iter()
            .filter(|r| r.contains("\timap_compress_over_budget\t"))
            .count();
        (emls, refused, stderr(&o))
    };
    let (all, refused, _) = extract("1073741824");
    assert_eq!((all, refused), (truth.len(), 0));
    let (some, refused, summary) = extract("1048576");
    assert!(refused > 0, "no session refused with a 1 MiB budget");
    assert!(some < all && some >= all - compressed, "{some} of {all}");
    assert!(
        summary.contains("IMAP COMPRESS sessions left unanalysed"),
        "{summary}"
    );
}
