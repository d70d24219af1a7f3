//! Message-level tests of the MIME layer.

use crate::config::FilesConfig;
use crate::message::{MessageAnalyzer, MessageContext, MessageSummary, MimeSink, Source};
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{BufferBudget, ConnCtx, ConnId, FileRecord, Output, Record, Timestamp};
use md5::{Digest, Md5};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

#[derive(Default)]
struct Rec {
    events: Vec<String>,
}

impl MimeSink for Rec {
    fn begin_entity(&mut self, _cx: &mut ConnCtx<'_>, level: usize) {
        self.events.push(format!("begin {level}"));
    }
    fn header(&mut self, _cx: &mut ConnCtx<'_>, level: usize, name: &[u8], value: &[u8]) {
        self.events.push(format!(
            "header {level} {}={}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        ));
    }
    fn end_entity(&mut self, _cx: &mut ConnCtx<'_>, level: usize) {
        self.events.push(format!("end {level}"));
    }
    fn file(&mut self, _cx: &mut ConnCtx<'_>, fuid: &str) {
        self.events.push(format!("file {fuid}"));
    }
}

struct Run {
    summary: MessageSummary,
    files: Vec<FileRecord>,
    weirds: Vec<(String, String)>,
    events: Vec<String>,
    extracted: Vec<u8>,
    chunks: usize,
}

fn run_with(cfg: FilesConfig, msg: &[u8], extract: bool, max_header_bytes: usize) -> Run {
    run_budget(cfg, msg, extract, max_header_bytes, BufferBudget::default())
}

/// [`run_with`] with the shard's input-buffer budget.
fn run_budget(
    cfg: FilesConfig,
    msg: &[u8],
    extract: bool,
    max_header_bytes: usize,
    budget: BufferBudget,
) -> Run {
    let id = ConnId {
        orig_h: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        orig_p: 1234,
        resp_h: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        resp_p: 25,
    };
    let mut out = Output::new(false);
    out.extract_enabled = extract;
    out.buffers = budget;
    let mut ann = ConnAnnotations::default();
    let mut sink = Rec::default();
    let mut m = MessageAnalyzer::new(Arc::new(cfg));
    let summary = {
        let mut cx = ConnCtx {
            ts: Timestamp::from_secs_micros(1, 0),
            uid: "Ctest",
            id: &id,
            out: &mut out,
            conn: &mut ann,
        };
        let ctx = MessageContext {
            source: Source::Smtp,
            is_orig: true,
            local_orig: Some(true),
            conn_start: Timestamp::from_secs_micros(1, 0),
            trans_depth: 1,
            max_header_bytes,
            extract: extract.then_some(1),
        };
        m.begin(&mut cx, ctx, &mut sink);
        let mut rest = msg;
        while !rest.is_empty() {
            let (line, term, n) = match memchr::memchr(b'\n', rest) {
                Some(i) if i > 0 && rest[i - 1] == b'\r' => {
                    (&rest[..i - 1], &rest[i - 1..=i], i + 1)
                }
                Some(i) => (&rest[..i], &rest[i..=i], i + 1),
                None => (rest, &rest[rest.len()..], rest.len()),
            };
            m.line(&mut cx, line, term, &mut sink);
            rest = &rest[n..];
        }
        m.end(&mut cx, &mut sink, true)
    };
    let mut files = Vec::new();
    let mut weirds = Vec::new();
    let mut extracted = Vec::new();
    let mut chunks = 0;
    for r in out.take() {
        match r {
            Record::File(f) => files.push(*f),
            Record::Weird(w) => weirds.push((
                w.name.to_string(),
                String::from_utf8_lossy(w.addl.as_deref().unwrap_or_default()).into_owned(),
            )),
            Record::EmailData(c) => {
                chunks += 1;
                extracted.extend(c.data);
            }
            _ => {}
        }
    }
    Run {
        summary,
        files,
        weirds,
        events: sink.events,
        extracted,
        chunks,
    }
}

fn run(msg: &[u8]) -> Run {
    run_with(FilesConfig::default(), msg, false, 65536)
}

fn md5hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

const NESTED: &[u8] = b"From: =?ISO-8859-1?Q?Andr=E9?= <a@x>\r\n\
Subject: =?UTF-8?B?w6l0w6k=?= report\r\n\
Content-Type: multipart/mixed;\r\n\
\tboundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hello there, world\r\n\
line two\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<html>caf=E9 soft=\r\n\
break</html>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/octet-stream; name=\"x.bin\"\r\n\
Content-Disposition: attachment;\r\n\
\x20filename*0*=UTF-8''r%C3%A9sum;\r\n\
\x20filename*1*=%C3%A9.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
AAEC\r\n\
--outer--\r\n\
epilogue\r\n";

#[test]
fn nested_multiparts_files_and_events() {
    let r = run_with(FilesConfig::default(), NESTED, true, 65536);
    assert_eq!(r.files.len(), 3);
    let depths: Vec<u64> = r.files.iter().map(|f| f.depth).collect();
    assert_eq!(depths, vec![3, 4, 5]);
    // Multipart child, pass-through: the CRLF before the boundary is not content.
    assert_eq!(
        r.files[0].seen_bytes,
        b"Hello there, world\r\nline two".len() as u64
    );
    assert_eq!(r.files[0].mime_type.as_deref(), Some(&b"text/plain"[..]));
    // QP: soft break joins, CRLF after every hard line.
    assert_eq!(
        r.files[1].seen_bytes,
        b"<html>caf\xe9 soft=break</html>\r\n".len() as u64 - 1
    );
    assert_eq!(r.files[1].mime_type.as_deref(), Some(&b"text/html"[..]));
    assert_eq!(r.files[2].seen_bytes, 12);
    assert_eq!(
        r.files[2].mime_type.as_deref(),
        Some(&b"application/pdf"[..])
    );
    // Zeek's filename rule takes the text after the last `name=`.
    // (no `name=` there: Zeek keeps the whole value, URI-unescaped).
    assert_eq!(
        r.files[2].filename.as_deref(),
        Some("attachment; filename*0*=UTF-8''résum; filename*1*=é.pdf".as_bytes())
    );
    let s = &r.summary;
    assert_eq!(
        s.fuids,
        r.files.iter().map(|f| f.fuid.clone()).collect::<Vec<_>>()
    );
    assert_eq!(s.headers.from.as_deref(), Some("André <a@x>"));
    assert_eq!(s.headers.subject.as_deref(), Some("été report"));
    assert_eq!(s.attachments.len(), 1);
    assert_eq!(s.attachments[0].filename.as_deref(), Some("résumé.pdf"));
    assert_eq!(
        s.attachments[0].mime_type.as_deref(),
        Some("application/pdf")
    );
    assert_eq!(s.attachments[0].size, 12);
    assert_eq!(s.size, NESTED.len() as u64);
    assert_eq!(r.extracted, NESTED);
    assert!(s.complete);
    assert_eq!(s.entities, 5);
    assert!(r
        .events
        .contains(&"header 0 CONTENT-TYPE=multipart/mixed;\tboundary=\"outer\"".to_string()));
    assert_eq!(
        r.events.iter().filter(|e| e.starts_with("begin")).count(),
        5
    );
    assert_eq!(r.events.iter().filter(|e| e.starts_with("end")).count(), 5);
}

#[test]
fn extraction_is_byte_exact_and_chunked() {
    let mut msg = b"Subject: big\nX: lf only\r\n\r\n".to_vec();
    for i in 0..20_000 {
        msg.extend_from_slice(format!("line {i} of the body\r\n").as_bytes());
    }
    msg.extend_from_slice(b"last line without terminator");
    let r = run_with(FilesConfig::default(), &msg, true, 65536);
    assert_eq!(r.extracted, msg);
    assert!(r.chunks >= 6, "64 KiB chunks, not one per line");
    let sha: String = sha2::Sha256::digest(&msg)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(r.summary.sha256.as_deref(), Some(sha.as_str()));
    // Without extraction nothing of that is computed.
    let r = run(&msg);
    assert!(r.extracted.is_empty() && r.summary.sha256.is_none());
    assert_eq!(r.summary.size, msg.len() as u64);
}

#[test]
fn folding_keeps_whitespace_and_limit_weird() {
    let mut msg = b"Subject: a\r\n\tb\r\n c\r\n".to_vec();
    for _ in 0..50 {
        msg.extend_from_slice(b" 0123456789\r\n");
    }
    msg.extend_from_slice(b"\r\nbody\r\n");
    let r = run_with(FilesConfig::default(), &msg, false, 100);
    let subj = r.events.iter().find(|e| e.contains("SUBJECT")).unwrap();
    assert!(subj.starts_with("header 0 SUBJECT=a\tb c 0123456789"));
    assert!(subj.len() < 200, "bounded by max_header_bytes");
    assert_eq!(r.weirds[0].0, "exceeded_mime_max_header_bytes");
}

/// A folded header may grow to `max_header_bytes` only while the shard's
/// buffer budget has room; past 4 KiB it is cut when the budget is spent,
/// and its memory goes back to the budget.
#[test]
fn a_spent_buffer_budget_cuts_long_headers() {
    let mut msg = b"Subject: start\r\n".to_vec();
    for _ in 0..2000 {
        msg.extend_from_slice(b" 0123456789 0123456789\r\n");
    }
    msg.extend_from_slice(b"\r\nbody\r\n");
    let roomy = BufferBudget::new(1 << 20);
    let r = run_budget(FilesConfig::default(), &msg, false, 65536, roomy.clone());
    assert!(r.weirds.is_empty(), "{:?}", r.weirds);
    let subj = r.events.iter().find(|e| e.contains("SUBJECT")).unwrap();
    assert!(subj.len() > 40_000);
    assert_eq!(roomy.used(), 0, "the header's buffer went back");
    assert!(roomy.peak() > 40_000);

    let tight = BufferBudget::new(8192);
    tight.charge(8000); // the rest of the shard holds nearly all of it
    let r = run_budget(FilesConfig::default(), &msg, false, 65536, tight.clone());
    assert_eq!(r.weirds[0].0, "exceeded_mime_max_header_bytes");
    let subj = r.events.iter().find(|e| e.contains("SUBJECT")).unwrap();
    // Below the floor the buffer grows as a Vec does (up to twice it).
    assert!(
        subj.len() < 2 * 4096 + 40,
        "cut near the floor: {}",
        subj.len()
    );
    assert!(tight.refused() > 0);
    assert_eq!(tight.used(), 8000, "everything charged came back");
}

#[test]
fn base64_weirds_and_content_hash() {
    let cfg = FilesConfig {
        content_hashes: true,
        ..FilesConfig::default()
    };
    let msg = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVs bG8sIHdvcmxkIQ\r\n";
    let r = run_with(cfg, msg, false, 65536);
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].seen_bytes, 13);
    assert_eq!(r.summary.content_len, 13);
    assert_eq!(
        r.summary.content_md5.as_deref(),
        Some(md5hex(b"Hello, world!").as_str())
    );
    // weird.log keeps the first of a name per connection.
    let names: Vec<&str> = r.weirds.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(names, vec!["character 32 ignored by Base64 decoding"]);
}

#[test]
fn message_rfc822_nested_and_depth_limit() {
    let msg = b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body text\r\n";
    let r = run(msg);
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].depth, 2);
    assert_eq!(r.files[0].seen_bytes, 17);
    // A chain of message/rfc822 deeper than max_depth stops creating entities.
    let mut deep = Vec::new();
    for _ in 0..10 {
        deep.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    deep.extend_from_slice(b"\r\nbody\r\n");
    let cfg = FilesConfig {
        max_depth: 4,
        ..FilesConfig::default()
    };
    let r = run_with(cfg, &deep, false, 65536);
    assert_eq!(r.summary.entities, 4);
    assert!(r.weirds.iter().any(|w| w.0 == "exceeded_mime_max_depth"));
}

#[test]
fn gap_creates_file_with_missing_bytes_and_no_hashes() {
    let id = ConnId {
        orig_h: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        orig_p: 1,
        resp_h: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        resp_p: 25,
    };
    let mut out = Output::new(false);
    let mut ann = ConnAnnotations::default();
    let mut m = MessageAnalyzer::new(Arc::new(FilesConfig::default()));
    let mut cx = ConnCtx {
        ts: Timestamp::from_secs_micros(1, 0),
        uid: "C1",
        id: &id,
        out: &mut out,
        conn: &mut ann,
    };
    let ctx = MessageContext {
        source: Source::Pop3,
        is_orig: false,
        local_orig: None,
        conn_start: Timestamp::ZERO,
        trans_depth: 1,
        max_header_bytes: 65536,
        extract: None,
    };
    let mut sink = crate::NoSink;
    m.begin(&mut cx, ctx, &mut sink);
    m.line(&mut cx, b"AAAA", b"", &mut sink);
    m.gap(&mut cx, 1000, &mut sink);
    let s = m.end(&mut cx, &mut sink, true);
    assert!(!s.complete);
    assert_eq!(s.missing_bytes, 1000);
    let files: Vec<FileRecord> = out
        .take()
        .into_iter()
        .filter_map(|r| match r {
            Record::File(f) => Some(*f),
            _ => None,
        })
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].missing_bytes, 1000);
    assert_eq!(files[0].source, Some("POP3"));
    let h = files[0].hashes.as_ref().unwrap();
    assert!(h.md5.is_none() && h.sha1.is_none() && h.sha256.is_none());
    assert!(files[0].mime_type.is_none());
}

#[test]
fn hostile_message_stays_bounded() {
    // Thousands of boundaries, huge folded headers and garbage: entity
    // count and header bytes stay within their limits.
    let mut msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..30_000 {
        msg.extend_from_slice(b"--b\r\nX: y\r\n");
        msg.extend_from_slice(b" ");
        msg.extend_from_slice(&[b'z'; 100]);
        msg.extend_from_slice(b"\r\n\r\n=\xff\r\n");
    }
    let cfg = FilesConfig {
        max_entities_per_message: 1000,
        ..FilesConfig::default()
    };
    let r = run_with(cfg, &msg, false, 65536);
    assert_eq!(r.summary.entities, 1000);
    assert!(r.weirds.iter().any(|w| w.0 == "exceeded_mime_max_entities"));
    assert!(r.files.len() < 1000);
}

#[test]
fn no_file_for_empty_bodies_and_plain_default() {
    let r = run(b"Subject: x\r\n\r\n");
    assert!(r.files.is_empty());
    let r = run(b"Subject: x\r\n\r\nshort\r\n");
    assert_eq!(r.files.len(), 1);
    // Top-level pass-through: CRLF kept; under 10 bytes: no type.
    assert_eq!(r.files[0].seen_bytes, 7);
    assert!(r.files[0].mime_type.is_none());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics_and_extracts_exactly(body in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let mut msg = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
            msg.extend_from_slice(&body);
            let r = run_with(FilesConfig::default(), &msg, true, 1000);
            prop_assert_eq!(r.extracted, msg);
        }
    }
}

fn sha256hex(b: &[u8]) -> String {
    use sha2::Sha256;
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// RFC 2046: the CRLF before a boundary belongs to the boundary. The
/// extraction JSON's attachment hashes follow it for every encoding;
/// files.log keeps Zeek's bytes (a quoted-printable entity's last line
/// break included).
#[test]
fn attachment_hashes_are_rfc2046_files_log_stays_zeek() {
    let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain; name=q.txt\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 line\r\nsoft=\r\nbreak\r\n\r\n\
--b\r\nContent-Type: text/plain; name=s.txt\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
seven\r\nbit\r\n\
--b\r\nContent-Type: application/octet-stream; name=x.bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\
bin\r\n\r\n\
--b\r\nContent-Type: application/octet-stream; name=y.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n\
aGVsbG8K\r\n\
--b--\r\n";
    let cfg = FilesConfig {
        hashes: vec![crate::config::HashKind::Sha256],
        ..FilesConfig::default()
    };
    let r = run_with(cfg, msg, true, 65536);
    let att = &r.summary.attachments;
    assert_eq!(att.len(), 4, "{att:?}");
    let want: [&[u8]; 4] = [
        b"caf\xc3\xa9 line\r\nsoftbreak\r\n",
        b"seven\r\nbit",
        b"bin\r\n",
        b"hello\n",
    ];
    for (a, w) in att.iter().zip(want) {
        assert_eq!(a.size, w.len() as u64, "{a:?}");
        assert_eq!(a.sha256, sha256hex(w), "{a:?}");
    }
    // files.log: Zeek's bytes; the quoted-printable entity keeps its last
    // line break.
    let zeek: [&[u8]; 4] = [
        b"caf\xc3\xa9 line\r\nsoftbreak\r\n\r\n",
        b"seven\r\nbit",
        b"bin\r\n",
        b"hello\n",
    ];
    assert_eq!(r.files.len(), 4);
    for (f, w) in r.files.iter().zip(zeek) {
        assert_eq!(f.seen_bytes, w.len() as u64);
        assert_eq!(
            f.hashes.as_ref().and_then(|h| h.sha256.clone()),
            Some(sha256hex(w))
        );
    }
}
