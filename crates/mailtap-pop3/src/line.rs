//! Zeek's ContentLine splitter as POP3 configures it, for one direction:
//! CR, LF and CRLF end a line, NUL bytes are kept, lines longer than the
//! limit are cut (weird `contentline_size_exceeded`).
//!
//! Complete lines inside a delivered slice are handed out borrowed; only a
//! trailing partial line is copied, into a buffer bounded by the maximum
//! line length.

use mailtap_core::ConnCtx;

/// One item produced by the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A line without its terminator, and the exact terminator bytes that
    /// ended it (`\r\n`, `\n`, `\r`, or empty for a line cut at the limit).
    Line(&'a [u8], &'static [u8]),
    /// The LF of a CRLF whose CR ended the previous line in an earlier
    /// delivery (byte-exact extraction appends it to that line).
    LateLf,
}

/// Counters of one splitter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    pub lines: u64,
    /// Lines handed out straight from the delivered slice.
    pub lines_borrowed: u64,
    /// Bytes copied into the partial-line buffer.
    pub bytes_buffered: u64,
    /// Lines cut at the length limit.
    pub lines_cut: u64,
    /// Partial-line bytes discarded at content gaps.
    pub bytes_discarded: u64,
}

/// Per-direction line splitter.
#[derive(Debug)]
pub struct LineSplitter {
    /// Partial line carried across deliveries (at most `max_line` bytes).
    buf: Vec<u8>,
    /// `buf` holds a line already handed out; clear it first.
    buf_emitted: bool,
    /// The previous line ended with a CR not yet followed by anything.
    last_cr: bool,
    max_line: usize,
    pub stats: LineStats,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            buf_emitted: false,
            last_cr: false,
            max_line: max_line.max(2),
            stats: LineStats::default(),
        }
    }

    /// True if bytes of an unterminated line are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf_emitted && !self.buf.is_empty()
    }

    /// Forgets a partial line (content gap): its bytes are counted.
    pub fn discard_partial(&mut self) {
        if self.has_partial() {
            self.stats.bytes_discarded += self.buf.len() as u64;
        }
        self.buf.clear();
        self.buf_emitted = false;
        self.last_cr = false;
    }

    /// Returns the next piece starting at `data[*pos..]`, advancing `pos`;
    /// `None` once the slice is used up (a trailing partial line is then
    /// buffered).
    pub fn next<'s>(
        &'s mut self,
        cx: &mut ConnCtx<'_>,
        data: &'s [u8],
        pos: &mut usize,
    ) -> Option<Piece<'s>> {
        if self.buf_emitted {
            self.buf.clear();
            self.buf_emitted = false;
        }
        let rest = data.get(*pos..).unwrap_or(&[]);
        let first = *rest.first()?;
        if self.last_cr {
            self.last_cr = false;
            if first == b'\n' {
                // CR at the end of one delivery, LF at the start of the next.
                *pos += 1;
                return Some(Piece::LateLf);
            }
            if first != b'\r' {
                cx.weird("line_terminated_with_single_CR", None, "CONTENTLINE");
            }
        }
        let room = self.max_line.saturating_sub(self.buf.len());
        let window = &rest[..rest.len().min(room)];
        match memchr::memchr2(b'\r', b'\n', window) {
            Some(i) => {
                let (consumed, term): (usize, &'static [u8]) = if window[i] == b'\r' {
                    if rest.get(i + 1) == Some(&b'\n') {
                        (i + 2, b"\r\n")
                    } else {
                        self.last_cr = true;
                        (i + 1, b"\r")
                    }
                } else {
                    (i + 1, b"\n")
                };
                *pos += consumed;
                self.stats.lines += 1;
                if self.buf.is_empty() {
                    self.stats.lines_borrowed += 1;
                    return Some(Piece::Line(&rest[..i], term));
                }
                self.buf.extend_from_slice(&rest[..i]);
                self.stats.bytes_buffered += i as u64;
                self.buf_emitted = true;
                Some(Piece::Line(&self.buf, term))
            }
            None if window.len() == rest.len() => {
                self.buf.extend_from_slice(rest);
                self.stats.bytes_buffered += rest.len() as u64;
                *pos += rest.len();
                None
            }
            None => {
                // The buffer is full: the line is cut, and the last
                // buffered byte and the current one are lost (Zeek).
                self.buf.extend_from_slice(window);
                self.stats.bytes_buffered += window.len() as u64;
                let c = rest.get(window.len()).copied().unwrap_or(0);
                *pos += window.len() + 1;
                cx.weird("contentline_size_exceeded", None, "CONTENTLINE");
                self.last_cr = c == b'\r';
                self.buf.truncate(self.max_line - 1);
                self.buf_emitted = true;
                self.stats.lines += 1;
                self.stats.lines_cut += 1;
                Some(Piece::Line(&self.buf, b""))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Harness;

    fn split_all(h: &mut Harness, sp: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in chunks {
            let mut pos = 0;
            let mut cx = h.cx();
            while let Some(p) = sp.next(&mut cx, c, &mut pos) {
                if let Piece::Line(l, _) = p {
                    out.push(l.to_vec());
                }
            }
        }
        out
    }

    #[test]
    fn terminators_and_nuls_kept() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000);
        let l = split_all(&mut h, &mut sp, &[b"a\0b\r\nc\nd\re\r\n"]);
        assert_eq!(
            l,
            vec![
                b"a\0b".to_vec(),
                b"c".to_vec(),
                b"d".to_vec(),
                b"e".to_vec()
            ]
        );
        assert_eq!(h.weird_names(), vec!["line_terminated_with_single_CR"]);
    }

    #[test]
    fn split_crlf_and_partial_lines() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000);
        let l = split_all(&mut h, &mut sp, &[b"+O", b"K hi\r", b"\nUSER x\r\n"]);
        assert_eq!(l, vec![b"+OK hi".to_vec(), b"USER x".to_vec()]);
        assert!(h.weird_names().is_empty());
        assert_eq!(sp.stats.lines_borrowed, 1);
    }

    #[test]
    fn terminators_are_reported_exactly() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000);
        let mut got = Vec::new();
        for c in [&b"a\r\nb\nc\r"[..], b"\nd\re\r\n"] {
            let mut pos = 0;
            let mut cx = h.cx();
            while let Some(p) = sp.next(&mut cx, c, &mut pos) {
                match p {
                    Piece::Line(l, t) => {
                        got.extend_from_slice(l);
                        got.extend_from_slice(t);
                    }
                    Piece::LateLf => got.push(b'\n'),
                }
            }
        }
        assert_eq!(got, b"a\r\nb\nc\r\nd\re\r\n");
    }

    #[test]
    fn cr_cr_lf_gives_empty_line() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000);
        let l = split_all(&mut h, &mut sp, &[b"x\r\r\ny\n"]);
        assert_eq!(l, vec![b"x".to_vec(), b"".to_vec(), b"y".to_vec()]);
        assert!(h.weird_names().is_empty());
    }

    #[test]
    fn limit_cuts_line() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(8);
        let l = split_all(&mut h, &mut sp, &[b"0123", b"456789ab\r\n"]);
        assert_eq!(l, vec![b"0123456".to_vec(), b"9ab".to_vec()]);
        assert_eq!(h.weird_names(), vec!["contentline_size_exceeded"]);
        assert_eq!(sp.stats.lines_cut, 1);
    }

    #[test]
    fn discard_partial_counts() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(100);
        assert!(split_all(&mut h, &mut sp, &[b"abc"]).is_empty());
        assert!(sp.has_partial());
        sp.discard_partial();
        assert_eq!(sp.stats.bytes_discarded, 3);
        assert_eq!(split_all(&mut h, &mut sp, &[b"d\n"]), vec![b"d".to_vec()]);
    }
}
