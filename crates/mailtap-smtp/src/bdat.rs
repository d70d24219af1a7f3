//! BDAT (RFC 3030 CHUNKING) transfer state: how many chunk bytes are still
//! owed, whether the chunk is the LAST one, and Zeek's dedicated BDAT line
//! splitter that cuts chunk bytes into MIME lines across chunk boundaries
//! (CRLF ends a line; a lone LF ends one *including* the LF; a CR left at
//! the end of a chunk piece without an LF following ends one including the
//! CR; lines are cut at `bdat_max_line_length`).

use mailtap_core::{ConnCtx, Weird};

const SRC: &str = "SMTP_BDAT";

/// Receives the MIME lines cut from chunk data.
pub type LineSink<'f> = dyn FnMut(&mut ConnCtx<'_>, &[u8]) + 'f;

/// Open BDAT transfer of one message.
#[derive(Debug)]
pub struct Bdat {
    remaining: u64,
    last: bool,
    /// Unterminated line carried across chunk pieces (at most
    /// `max_line + 1` bytes).
    buf: Vec<u8>,
    /// Scratch for a line that spans `buf` and new data.
    scratch: Vec<u8>,
    max_line: usize,
    /// Chunk bytes seen in this transfer.
    pub bytes: u64,
}

impl Bdat {
    pub fn new(max_line: usize) -> Self {
        Bdat {
            remaining: 0,
            last: false,
            buf: Vec::new(),
            scratch: Vec::new(),
            max_line: max_line.max(1),
            bytes: 0,
        }
    }

    /// Starts the next chunk.
    pub fn next_chunk(&mut self, size: u64, last: bool) {
        self.remaining = size;
        self.last = last;
    }

    /// The current chunk is the LAST one.
    pub fn is_last(&self) -> bool {
        self.last
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The LAST chunk has been received completely.
    pub fn complete(&self) -> bool {
        self.last && self.remaining == 0
    }

    /// Feeds chunk bytes; complete MIME lines go to `sink`.
    pub fn deliver(&mut self, cx: &mut ConnCtx<'_>, data: &[u8], sink: &mut LineSink<'_>) {
        let mut data = data;
        if data.len() as u64 > self.remaining {
            // More than the chunk holds: a caller bug; truncate like Zeek.
            cx.weird(Weird::SmtpBdatChunkOverflow, None, SRC);
            data = &data[..usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(data.len())];
        }
        self.bytes += data.len() as u64;
        if self.buf.last() == Some(&b'\r') && data.first() != Some(&b'\n') {
            cx.weird(Weird::SmtpBdatLineCrOnly, None, SRC);
            sink(cx, &self.buf);
            self.buf.clear();
        }
        // Zeek reports the size of its whole buffer (old rest + new data).
        let total = self.buf.len() + data.len();
        let s = self.finish_buffered(cx, data, total, sink);
        if let Some(s) = s {
            self.split_slice(cx, data, s, total, sink);
        }
        self.remaining -= data.len() as u64;
        if self.complete() && !self.buf.is_empty() {
            sink(cx, &self.buf);
            self.buf.clear();
        }
    }

    /// Runs Zeek's byte loop over `buf ++ data` while the current line
    /// started inside `buf`. Returns where the next line starts in `data`,
    /// or `None` if everything was absorbed into `buf`.
    fn finish_buffered(
        &mut self,
        cx: &mut ConnCtx<'_>,
        data: &[u8],
        total: usize,
        sink: &mut LineSink<'_>,
    ) -> Option<usize> {
        let a = self.buf.len();
        if a == 0 {
            return Some(0);
        }
        let at = |buf: &[u8], i: usize| if i < a { buf[i] } else { data[i - a] };
        let mut ls = 0usize;
        let mut i = a - 1;
        while i < total && ls < a {
            let c = at(&self.buf, i);
            if c == b'\r' && i + 1 < total && at(&self.buf, i + 1) == b'\n' {
                self.emit_span(cx, data, ls, i, sink);
                ls = i + 2;
                i += 2;
                continue;
            } else if c == b'\n' {
                cx.weird(Weird::SmtpBdatLineLfOnly, None, SRC);
                self.emit_span(cx, data, ls, i + 1, sink);
                ls = i + 1;
            } else if i - ls >= self.max_line {
                cx.weird(
                    Weird::SmtpBdatLineTooLong,
                    Some(total.to_string().as_bytes()),
                    SRC,
                );
                self.emit_span(cx, data, ls, i, sink);
                ls = i;
            }
            i += 1;
        }
        if ls < a {
            // Still inside the buffered line: all of data joins it (the
            // loop above ran to the end, so it is shorter than the limit).
            self.buf.drain(..ls);
            self.buf.extend_from_slice(data);
            None
        } else {
            self.buf.clear();
            Some(ls - a)
        }
    }

    /// Emits `(buf ++ data)[from..to]`, copying only if it spans both.
    fn emit_span(
        &mut self,
        cx: &mut ConnCtx<'_>,
        data: &[u8],
        from: usize,
        to: usize,
        sink: &mut LineSink<'_>,
    ) {
        let a = self.buf.len();
        if to <= a {
            sink(cx, &self.buf[from..to]);
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.buf[from.min(a)..]);
            self.scratch
                .extend_from_slice(&data[from.saturating_sub(a)..to - a]);
            let scratch = std::mem::take(&mut self.scratch);
            sink(cx, &scratch);
            self.scratch = scratch;
        }
    }

    /// Splits `data[s..]` (a line starts at `s`) without copying; the
    /// unterminated rest is buffered.
    fn split_slice(
        &mut self,
        cx: &mut ConnCtx<'_>,
        data: &[u8],
        mut s: usize,
        total: usize,
        sink: &mut LineSink<'_>,
    ) {
        let max = self.max_line;
        while s < data.len() {
            let rest = &data[s..];
            match memchr::memchr(b'\n', rest) {
                Some(j) => {
                    let (t, crlf) = if j > 0 && rest[j - 1] == b'\r' {
                        (j - 1, true)
                    } else {
                        (j, false)
                    };
                    if t > max {
                        cx.weird(
                            Weird::SmtpBdatLineTooLong,
                            Some(total.to_string().as_bytes()),
                            SRC,
                        );
                        sink(cx, &rest[..max]);
                        s += max;
                    } else if crlf {
                        sink(cx, &rest[..t]);
                        s += j + 1;
                    } else {
                        cx.weird(Weird::SmtpBdatLineLfOnly, None, SRC);
                        sink(cx, &rest[..=j]);
                        s += j + 1;
                    }
                }
                None if rest.len() > max => {
                    cx.weird(
                        Weird::SmtpBdatLineTooLong,
                        Some(total.to_string().as_bytes()),
                        SRC,
                    );
                    sink(cx, &rest[..max]);
                    s += max;
                }
                None => {
                    self.buf.extend_from_slice(rest);
                    s = data.len();
                }
            }
        }
    }

    /// Closes the transfer: anything still buffered is delivered.
    pub fn close(&mut self, cx: &mut ConnCtx<'_>, sink: &mut LineSink<'_>) {
        if !self.buf.is_empty() {
            cx.weird(Weird::SmtpBdatUndeliveredAtDone, None, SRC);
            sink(cx, &self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::harness;

    fn run(max: usize, deliveries: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<&'static str>) {
        let mut h = harness();
        let mut b = Bdat::new(max);
        let total: usize = deliveries.iter().map(|d| d.len()).sum();
        b.next_chunk(total as u64, true);
        let mut lines = Vec::new();
        {
            let mut cx = h.cx();
            for d in deliveries {
                b.deliver(&mut cx, d, &mut |_, l: &[u8]| lines.push(l.to_vec()));
            }
            b.close(&mut cx, &mut |_, l: &[u8]| lines.push(l.to_vec()));
        }
        (lines, h.weird_names())
    }

    fn v(x: &[&str]) -> Vec<Vec<u8>> {
        x.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn two_lines_split_in_four() {
        let (l, w) = run(
            128,
            &[
                b"MIME-",
                b"Version: 1.0\r\n",
                b"Subject: Zeek",
                b" Logo\r\n",
            ],
        );
        assert_eq!(l, v(&["MIME-Version: 1.0", "Subject: Zeek Logo"]));
        assert!(w.is_empty());
    }

    #[test]
    fn split_on_cr() {
        let (l, w) = run(
            128,
            &[
                b"MIME-",
                b"Version: 1.0\r",
                b"\nSubject: Zeek",
                b" Logo\r",
                b"\n",
            ],
        );
        assert_eq!(l, v(&["MIME-Version: 1.0", "Subject: Zeek Logo"]));
        assert!(w.is_empty());
    }

    #[test]
    fn cr_without_lf() {
        let (l, w) = run(
            128,
            &[b"MIME-Version: 1.0\r", b"Subject: Zeek", b" Logo\r\n"],
        );
        assert_eq!(l, v(&["MIME-Version: 1.0\r", "Subject: Zeek Logo"]));
        assert_eq!(w, vec!["smtp_bdat_line_cr_only"]);
    }

    #[test]
    fn lf_without_cr() {
        let (l, w) = run(
            128,
            &[
                b"MIME-Version: 1.0\n",
                b"Subject: Zeek",
                b" Logo\n",
                b"From: Zeek <zeek@localhost>\r\n",
            ],
        );
        assert_eq!(
            l,
            v(&[
                "MIME-Version: 1.0\n",
                "Subject: Zeek Logo\n",
                "From: Zeek <zeek@localhost>"
            ])
        );
        assert_eq!(w, vec!["smtp_bdat_line_lf_only"]);
    }

    #[test]
    fn max_line_length_10() {
        let (l, w) = run(10, &[b"1234567890123: 45\r\n", b"X-Test: Y\r\n"]);
        assert_eq!(l, v(&["1234567890", "123: 45", "X-Test: Y"]));
        assert_eq!(w, vec!["smtp_bdat_line_too_long"]);
    }

    #[test]
    fn rest_flushed_when_last_chunk_completes() {
        let (l, w) = run(128, &[b"a\r\nno-terminator"]);
        assert_eq!(l, v(&["a", "no-terminator"]));
        assert!(w.is_empty());
    }

    #[test]
    fn long_line_across_pieces() {
        let (l, _) = run(4, &[b"ab", b"cdefgh", b"ij\r\n"]);
        assert_eq!(l, v(&["abcd", "efgh", "ij"]));
    }

    #[test]
    fn undelivered_at_close() {
        let mut h = harness();
        let mut b = Bdat::new(100);
        b.next_chunk(10, false);
        let mut lines = Vec::new();
        {
            let mut cx = h.cx();
            b.deliver(&mut cx, b"abc", &mut |_, l: &[u8]| lines.push(l.to_vec()));
            assert_eq!(b.remaining(), 7);
            b.close(&mut cx, &mut |_, l: &[u8]| lines.push(l.to_vec()));
        }
        assert_eq!(lines, v(&["abc"]));
        assert_eq!(h.weird_names(), vec!["smtp_bdat_undelivered_at_done"]);
    }
}
