//! Arbitrary bytes as an ACE session file for `ace-collect`'s transcript
//! parser, with a small line limit so long lines are cut: must never
//! panic, every message begun must end before its metadata, and the bytes
//! of a message are never more than the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_extract::collect::{parse_transcript, MessageOut, SessionInfo, TranscriptMessage};
use std::io;

#[derive(Default)]
struct Check {
    open: Option<u32>,
    bytes: usize,
    ended: Vec<u32>,
}

impl MessageOut for Check {
    fn begin(&mut self, n: u32) -> io::Result<()> {
        assert!(self.open.is_none(), "message {n} begun inside another");
        self.open = Some(n);
        Ok(())
    }
    fn body(&mut self, n: u32, bytes: &[u8]) -> io::Result<()> {
        assert_eq!(self.open, Some(n), "bytes for a message not open");
        self.bytes += bytes.len();
        Ok(())
    }
    fn end_body(&mut self, n: u32) -> io::Result<()> {
        assert_eq!(self.open.take(), Some(n), "end of a message not open");
        self.ended.push(n);
        Ok(())
    }
    fn message(&mut self, _info: &SessionInfo, m: TranscriptMessage) -> io::Result<()> {
        assert!(self.ended.contains(&m.n), "metadata of message {} before its end", m.n);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut out = Check::default();
    let _ = parse_transcript(data, 1_700_000_000, 64, &mut out);
    // Dot-unstuffing and cut lines only remove bytes; line ends may be
    // completed with at most two bytes per line.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(out.bytes <= data.len() + 2 * lines, "{} bytes from {}", out.bytes, data.len());
});
