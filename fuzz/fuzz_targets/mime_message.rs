//! Arbitrary bytes as one message for the MIME layer: cut into lines at LF
//! (CR/LF kept as the terminator), with a control byte choosing extraction
//! and tight limits; a 0xff byte at a line start reports a gap. Must never
//! panic, and the extracted bytes must equal the bytes fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, Record, Timestamp};
use mailtap_mime::{FilesConfig, MessageAnalyzer, MessageContext, NoSink, Source};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else { return };
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 25,
    };
    let cfg = FilesConfig {
        max_depth: 8,
        max_entities_per_message: 64,
        content_hashes: ctl & 2 != 0,
        ..FilesConfig::default()
    };
    let extract = ctl & 1 != 0;
    let mut m = MessageAnalyzer::new(Arc::new(cfg));
    let mut out = Output::new(false);
    out.extract_enabled = extract;
    let mut ann = ConnAnnotations::default();
    let mut cx = ConnCtx { ts: Timestamp(1), uid: "Cfuzz", id: &id, out: &mut out, conn: &mut ann };
    let ctx = MessageContext {
        source: if ctl & 4 != 0 { Source::Pop3 } else { Source::Smtp },
        is_orig: true,
        local_orig: None,
        conn_start: Timestamp(0),
        trans_depth: 1,
        max_header_bytes: 256,
        extract: extract.then_some(1),
    };
    let mut sink = NoSink;
    m.begin(&mut cx, ctx, &mut sink);
    let mut fed = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest[0] == 0xff {
            m.gap(&mut cx, 10, &mut sink);
            rest = &rest[1..];
            continue;
        }
        let end = rest.iter().position(|&c| c == b'\n').map_or(rest.len(), |i| i + 1);
        let (chunk, tail) = rest.split_at(end);
        let t = chunk.iter().rev().take_while(|&&c| c == b'\n' || c == b'\r').count().min(2);
        let (line, term) = chunk.split_at(chunk.len() - t);
        m.line(&mut cx, line, term, &mut sink);
        fed.extend_from_slice(chunk);
        rest = tail;
    }
    let s = m.end(&mut cx, &mut sink, true);
    assert_eq!(s.size, fed.len() as u64);
    if extract {
        let got: Vec<u8> = out
            .take()
            .into_iter()
            .filter_map(|r| match r {
                Record::EmailData(c) => Some(c.data),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(got, fed);
    }
});
