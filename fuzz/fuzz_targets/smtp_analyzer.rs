//! Arbitrary bytes as an SMTP conversation: the input is cut into pieces,
//! each delivered to the client or server side (or reported as a gap),
//! with events on, then the connection ends. Must never panic.
//! An odd first byte starts the analyzer mid-stream (a connection picked
//! up without its handshake: the resynchronising hunt mode).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_smtp::{SmtpAnalyzer, SmtpConfig};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 25,
    };
    let cfg = SmtpConfig { max_line_length: 4096, max_header_bytes: 2048, ..SmtpConfig::default() };
    let mut a = SmtpAnalyzer::new(Arc::new(cfg));
    let mut out = Output::new(true);
    let mut ann = ConnAnnotations::default();
    let mut cx = ConnCtx { ts: Timestamp(1), uid: "Cfuzz", id: &id, out: &mut out, conn: &mut ann };
    let Some((&mode, mut rest)) = data.split_first() else { return };
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
});
