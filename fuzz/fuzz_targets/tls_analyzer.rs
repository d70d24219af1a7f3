//! Arbitrary bytes as a TLS connection: the input is cut into pieces, each
//! delivered to the client or server side (or reported as a gap), then
//! both directions end and the connection is done. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::analyzer::ConnAnnotations;
use mailtap_core::{ConnCtx, ConnId, Output, TcpAnalyzer, Timestamp};
use mailtap_tls::{TlsAnalyzer, TlsConfig};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let id = ConnId {
        orig_h: "10.0.0.1".parse().unwrap(),
        orig_p: 40000,
        resp_h: "10.0.0.2".parse().unwrap(),
        resp_p: 465,
    };
    let cfg = TlsConfig { max_handshake_message: 4096, ..TlsConfig::default() };
    let mut a = TlsAnalyzer::new(Arc::new(cfg));
    let mut out = Output::new(true);
    let mut ann = ConnAnnotations::default();
    let mut cx = ConnCtx { ts: Timestamp(1), uid: "Cfuzz", id: &id, out: &mut out, conn: &mut ann };
    let mut rest = data;
    // Each piece: one control byte (bit 7 = server side, bit 6 = gap,
    // low 6 bits = length), then up to 63 bytes.
    while let Some((&ctl, tail)) = rest.split_first() {
        let is_orig = ctl & 0x80 == 0;
        let n = usize::from(ctl & 0x3f).min(tail.len());
        if ctl & 0x40 != 0 && ctl & 0x3f == 0x3f {
            a.gap(&mut cx, is_orig, 100);
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
