//! Arbitrary bytes as the physical lines of one direction, through the
//! IMAP line parser: fragments, literal payloads kept or skipped, cut
//! lines, tight bounds. Must never panic; token ranges stay in the arena.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_core::BufferBudget;
use mailtap_imap::parse::{Frag, Limits, LineParser};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lim = Limits {
        max_depth: 1 + u16::from(mode & 7),
        max_tokens: 8 + usize::from(mode >> 4),
        max_line_bytes: 512,
        max_literal: 64,
    };
    let server = mode & 8 != 0;
    let budget = BufferBudget::new(1 << 16);
    let mut p = LineParser::new();
    // Lines split at LF; a line starting with 0xff is "cut", one with
    // 0xfe raw. After a literal marker, its payload is the next bytes.
    let mut it = rest.split(|&c| c == b'\n').peekable();
    while let Some(line) = it.next() {
        let (cut, raw, text) = match line.first() {
            Some(0xff) => (true, false, &line[1..]),
            Some(0xfe) => (false, true, &line[1..]),
            _ => (false, false, line),
        };
        match p.fragment(text, cut, raw, server, &lim, &budget) {
            Frag::Literal(m) => {
                if let Some(payload) = it.peek() {
                    let n = (m.len as usize).min(payload.len());
                    p.keep(&payload[..n], 16, &lim, &budget);
                }
            }
            Frag::Done | Frag::Desync(_) => {
                for t in p.toks() {
                    let _ = p.value(t);
                }
                p.reset(true);
            }
            Frag::Cut => {}
        }
    }
    p.release();
    assert_eq!(budget.used(), 0);
});
