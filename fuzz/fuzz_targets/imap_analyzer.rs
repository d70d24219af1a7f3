//! Arbitrary bytes as an IMAP conversation: the input is cut into pieces,
//! each delivered to the client or server side (or reported as a gap),
//! with events and extraction on, then the connection ends. Must never
//! panic, and must give back every byte of the shard's buffer budget.
//! An odd first byte starts the analyzer mid-stream; bit 1 of it makes
//! the limits tiny (line, literal, nesting, pending, untagged bounds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{BufferBudget, ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_imap::{ImapAnalyzer, ImapConfig};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 143,
    };
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = if mode & 2 != 0 {
        ImapConfig {
            max_line_length: 64,
            max_command_line_length: 64,
            max_logical_line_bytes: 256,
            max_literal_size: 4096,
            max_kept_literal: 8,
            max_nesting_depth: 4,
            max_tokens_per_line: 16,
            max_pending_commands: 4,
            max_untagged_responses: 8,
            max_held_bytes: 32,
            max_header_bytes: 256,
            ..ImapConfig::default()
        }
    } else {
        ImapConfig::default()
    };
    let mut a = ImapAnalyzer::new(Arc::new(cfg));
    let mut out = Output::new(true);
    out.extract_enabled = true;
    out.buffers = BufferBudget::new(1 << 20);
    let mut ann = ConnAnnotations::default();
    {
        let mut cx = ConnCtx {
            ts: Timestamp(1),
            uid: "Cfuzz",
            id: &id,
            out: &mut out,
            conn: &mut ann,
        };
        if mode & 1 == 1 {
            a.start_midstream();
        }
        // Each piece: one control byte (bit 7 = server side, bit 6 = gap,
        // low 6 bits = length / 4 for gaps), then up to 63 bytes.
        while let Some((&ctl, tail)) = rest.split_first() {
            let is_orig = ctl & 0x80 == 0;
            let n = usize::from(ctl & 0x3f).min(tail.len());
            if ctl & 0x40 != 0 {
                a.gap(&mut cx, is_orig, u64::from(ctl & 0x3f) * 4 + 1);
                rest = tail;
                continue;
            }
            if !a.disabled() {
                a.deliver(&mut cx, is_orig, &tail[..n]);
            }
            rest = &tail[n..];
        }
        a.eof(&mut cx, true);
        a.eof(&mut cx, false);
        a.done(&mut cx);
    }
    drop(a);
    assert_eq!(out.buffers.used(), 0, "buffer budget leaked");
});
