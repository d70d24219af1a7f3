//! One mail message as the MIME layer sees it: lines are streamed in, the
//! top-level header block is parsed (bounded by `max_header_bytes`), and
//! body lines are only counted. This is the place where MIME entities will
//! be handed to file analysis later (see [`Message::body_line`]).

use crate::headers::HeaderBlock;
use mailtap_core::ConnCtx;

/// Callback for completed top-level headers: (upper-cased name, value).
pub type HeaderSink<'f> = dyn FnMut(&mut ConnCtx<'_>, &[u8], &[u8]) + 'f;

/// A message in transfer (Zeek's `MIME_Mail`).
#[derive(Debug)]
pub struct Message {
    /// Direction the message was sent in (the sender's side).
    pub is_orig: bool,
    headers: HeaderBlock,
    /// Body lines and bytes seen (statistics; no content is kept).
    pub body_lines: u64,
    pub body_bytes: u64,
    /// Bytes lost to content gaps inside the message.
    pub gap_bytes: u64,
}

impl Message {
    pub fn new(is_orig: bool, max_header_bytes: usize) -> Self {
        Message {
            is_orig,
            headers: HeaderBlock::new(max_header_bytes),
            body_lines: 0,
            body_bytes: 0,
            gap_bytes: 0,
        }
    }

    /// One line of the message (without its line break).
    pub fn line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], sink: &mut HeaderSink<'_>) {
        if self.headers.done {
            self.body_line(line);
            return;
        }
        self.headers
            .line(cx, line, &mut |cx, h| sink(cx, h.name, h.value));
    }

    /// Body of the top-level entity. File analysis (MIME entity splitting,
    /// decoding, fuids) plugs in here; for now only counted.
    fn body_line(&mut self, line: &[u8]) {
        self.body_lines += 1;
        self.body_bytes += line.len() as u64 + 2;
    }

    /// Content gap inside the message.
    pub fn gap(&mut self, len: u64) {
        self.gap_bytes = self.gap_bytes.saturating_add(len);
    }

    /// End of message: a pending header is completed.
    pub fn finish(&mut self, cx: &mut ConnCtx<'_>, sink: &mut HeaderSink<'_>) {
        self.headers
            .finish(cx, &mut |cx, h| sink(cx, h.name, h.value));
    }
}
