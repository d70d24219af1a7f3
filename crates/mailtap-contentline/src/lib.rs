//! Zeek's ContentLine splitter for one direction of a connection, shared by
//! the SMTP and POP3 analyzers: turns a byte stream into lines (CR, LF and
//! CRLF all end a line; the exact terminator is reported so that message
//! extraction stays byte-exact), with plain pass-through of the next N
//! bytes (SMTP BDAT chunks), Zeek's first-NUL rule where the protocol asks
//! for it (SMTP, not POP3), and a maximum line length.
//!
//! Complete lines inside a delivered slice are handed out borrowed, without
//! copying; only a partial trailing line is copied into a per-direction
//! buffer bounded by the maximum line length.

use mailtap_core::{BufferBudget, Charge, ConnCtx, Weird, BUFFER_FLOOR};

/// One item produced by the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A line without its terminator, and the exact terminator bytes that
    /// ended it (`\r\n`, `\n`, `\r`, or empty for a line cut at the
    /// length limit).
    Line(&'a [u8], &'static [u8]),
    /// Bytes passed through unsplit (plain delivery).
    Plain(&'a [u8]),
    /// The LF of a CRLF whose CR ended the previous line in an earlier
    /// delivery (byte-exact extraction appends it to that line).
    LateLf,
}

/// Counters of one splitter, for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    pub lines: u64,
    /// Lines handed out straight from the delivered slice.
    pub lines_borrowed: u64,
    /// Bytes copied into the partial-line buffer.
    pub bytes_buffered: u64,
    pub plain_bytes: u64,
    /// Lines cut at the length limit.
    pub lines_cut: u64,
    /// Of `lines_cut`, lines handed out early because the shard's buffer
    /// budget could not hold more of them (no byte lost).
    pub lines_cut_budget: u64,
    /// Partial-line bytes discarded at content gaps.
    pub bytes_discarded: u64,
}

/// What to do with NUL bytes inside lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nuls {
    /// Drop the first NUL of the direction (weird `NUL_in_line`), keep the
    /// later ones: Zeek's SMTP setting.
    DropFirst,
    /// Keep every NUL: Zeek's POP3 setting.
    Keep,
}

/// Partial-line buffer capacity kept between lines; a larger one (left by
/// a long line) is freed once the line has been handed out.
pub const RETAINED_LINE_CAPACITY: usize = 64 * 1024;

/// Per-direction line splitter with Zeek's ContentLine semantics.
#[derive(Debug)]
pub struct LineSplitter {
    /// Partial line carried across deliveries (bounded by `max_line`).
    buf: Vec<u8>,
    /// `buf` holds a line that was handed out and must be cleared first.
    buf_emitted: bool,
    /// The previous line ended with a lone CR (Zeek `last_char == '\r'`).
    last_cr: bool,
    /// Bytes still to pass through unsplit.
    plain_remaining: u64,
    /// The first NUL of this direction is still to be dropped.
    flag_nuls: bool,
    max_line: usize,
    /// No weirds and no NUL dropping: the analyzer is still looking for
    /// where the dialogue is (a connection picked up mid-stream).
    quiet: bool,
    /// The two bytes the last cut at the length limit dropped.
    cut_lost: [u8; 2],
    /// `buf`'s capacity, charged to the shard's buffer budget.
    charge: Charge,
    pub stats: LineStats,
}

impl LineSplitter {
    pub fn new(max_line: usize, nuls: Nuls) -> Self {
        LineSplitter {
            buf: Vec::new(),
            buf_emitted: false,
            last_cr: false,
            plain_remaining: 0,
            flag_nuls: nuls == Nuls::DropFirst,
            max_line: max_line.max(2),
            quiet: false,
            cut_lost: [0; 2],
            charge: Charge::default(),
            stats: LineStats::default(),
        }
    }

    /// Changes the longest line from now on (an analyzer allows longer
    /// lines inside a message than in its commands).
    #[inline]
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line.max(2);
    }

    /// Empties the partial-line buffer; after a long line its memory goes
    /// back to the allocator, so a connection that once sent a line of
    /// megabytes does not keep megabytes for the rest of its life.
    /// While the shard's budget is under pressure every buffer is freed
    /// as soon as its line is out.
    fn release_buf(&mut self, budget: &BufferBudget) {
        if self.buf.capacity() > RETAINED_LINE_CAPACITY
            || (self.buf.capacity() > 0 && budget.under_pressure())
        {
            self.buf = Vec::new();
            self.charge.release();
        } else {
            self.buf.clear();
        }
    }

    /// Bytes of the shard's buffer budget this splitter holds.
    pub fn charged(&self) -> usize {
        self.charge.bytes()
    }

    /// Makes room for a partial line of `need` bytes, charged to `budget`.
    /// False if the budget cannot take it and `need` is over the floor
    /// every splitter may hold ([`BUFFER_FLOOR`]).
    fn reserve(&mut self, budget: &BufferBudget, need: usize) -> bool {
        let cap = self.buf.capacity();
        if need <= cap {
            return true;
        }
        let held = self.charge.bytes();
        // Grow by doubling (as Vec would), never past the line limit.
        let target = need
            .max(cap.saturating_mul(2))
            .max(128)
            .min(self.max_line.max(need));
        let size = if budget.fits(target.saturating_sub(held)) {
            target
        } else if need <= BUFFER_FLOOR || budget.fits(need.saturating_sub(held)) {
            need
        } else {
            budget.note_refused();
            return false;
        };
        self.buf.reserve_exact(size - self.buf.len());
        self.charge.set(budget, self.buf.capacity());
        true
    }

    /// The shard's budget is spent and the partial line cannot grow: hands
    /// out what there is as a cut line, topped up from `rest` to
    /// [`BUFFER_FLOOR`] bytes (so a cut line is never short enough to look
    /// like a command or the end of data), without losing a byte. False
    /// when nothing was buffered: the caller hands out `rest` itself (and
    /// `pos` is already past it).
    fn budget_cut(&mut self, cx: &mut ConnCtx<'_>, rest: &[u8], pos: &mut usize) -> bool {
        if !self.quiet {
            cx.weird(Weird::ContentlineSizeExceeded, None, "CONTENTLINE");
        }
        self.stats.lines += 1;
        self.stats.lines_cut += 1;
        self.stats.lines_cut_budget += 1;
        self.last_cr = false;
        if self.buf.is_empty() {
            *pos += rest.len();
            return false;
        }
        let take = BUFFER_FLOOR.saturating_sub(self.buf.len()).min(rest.len());
        self.buf.extend_from_slice(&rest[..take]);
        self.charge.set(&cx.out.buffers, self.buf.capacity());
        self.stats.bytes_buffered += take as u64;
        *pos += take;
        self.buf_emitted = true;
        true
    }

    /// The two bytes lost by the last line cut at the length limit (the
    /// last one buffered and the one that overflowed), so that a caller
    /// that must stay byte-exact can put them back after the cut line.
    pub fn cut_lost(&self) -> [u8; 2] {
        self.cut_lost
    }

    /// While on, lines raise no weirds and NULs are kept (the first-NUL
    /// rule waits): for an analyzer still hunting for its place in a
    /// dialogue picked up mid-stream.
    pub fn set_quiet(&mut self, on: bool) {
        self.quiet = on;
    }

    /// Forgets a partial line (content gap); its bytes are counted.
    pub fn discard_partial(&mut self) {
        if self.has_partial() {
            self.stats.bytes_discarded += self.buf.len() as u64;
        }
        // A gap is a good moment to give the memory back.
        self.buf = Vec::new();
        self.charge.release();
        self.buf_emitted = false;
        self.last_cr = false;
    }

    /// Passes the next `n` bytes through unsplit (0 cancels).
    pub fn set_plain(&mut self, n: u64) {
        self.plain_remaining = n;
    }

    pub fn plain_remaining(&self) -> u64 {
        self.plain_remaining
    }

    /// The bytes of the unterminated line buffered so far.
    pub fn partial(&self) -> &[u8] {
        if self.buf_emitted {
            &[]
        } else {
            &self.buf
        }
    }

    /// True if bytes of an unterminated line are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf_emitted && !self.buf.is_empty()
    }

    /// Returns the next line or plain piece starting at `data[*pos..]`,
    /// advancing `pos`; `None` once the slice is used up (a trailing
    /// partial line is then buffered).
    pub fn next<'s>(
        &'s mut self,
        cx: &mut ConnCtx<'_>,
        data: &'s [u8],
        pos: &mut usize,
    ) -> Option<Piece<'s>> {
        self.next_cut(cx, data, pos, &mut None)
    }

    /// [`Self::next`], and for a line cut at the length limit the two bytes
    /// the cut dropped in `lost` (set to `None` otherwise).
    pub fn next_cut<'s>(
        &'s mut self,
        cx: &mut ConnCtx<'_>,
        data: &'s [u8],
        pos: &mut usize,
        lost: &mut Option<[u8; 2]>,
    ) -> Option<Piece<'s>> {
        *lost = None;
        if self.buf_emitted {
            let budget = cx.out.buffers.clone();
            self.release_buf(&budget);
            self.buf_emitted = false;
        }
        loop {
            let rest = data.get(*pos..).unwrap_or(&[]);
            let first = *rest.first()?;
            // A CR that ended the previous line plus an LF at the start of
            // this data is one CRLF; checked before plain delivery, as Zeek does.
            if self.last_cr && first == b'\n' {
                self.last_cr = false;
                *pos += 1;
                return Some(Piece::LateLf);
            }
            if self.plain_remaining > 0 {
                let n = usize::try_from(self.plain_remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                self.last_cr = false;
                self.plain_remaining -= n as u64;
                *pos += n;
                self.stats.plain_bytes += n as u64;
                return Some(Piece::Plain(&rest[..n]));
            }
            if self.last_cr {
                // A lone CR followed by anything but CR/LF: Zeek flags it.
                if first != b'\r' && !self.quiet {
                    cx.weird(Weird::LineTerminatedWithSingleCr, None, "CONTENTLINE");
                }
                self.last_cr = false;
            }
            // Bytes that may still join the current line before the limit.
            let room = self.max_line.saturating_sub(self.buf.len());
            let window = &rest[..rest.len().min(room)];
            let hit = if self.flag_nuls && !self.quiet {
                memchr::memchr3(b'\r', b'\n', 0, window)
            } else {
                memchr::memchr2(b'\r', b'\n', window)
            };
            match hit {
                Some(i) => {
                    let c = window[i];
                    if c == 0 {
                        // The first NUL per direction is dropped; later ones kept.
                        self.buf.extend_from_slice(&window[..i]);
                        self.charge.set(&cx.out.buffers, self.buf.capacity());
                        self.stats.bytes_buffered += i as u64;
                        self.flag_nuls = false;
                        cx.weird(Weird::NulInLine, None, "CONTENTLINE");
                        *pos += i + 1;
                        continue;
                    }
                    let (consumed, term): (usize, &'static [u8]) = if c == b'\r' {
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
                    // Completing a buffered line: the growth is charged
                    // but not refused (the line goes out right away).
                    self.buf.extend_from_slice(&rest[..i]);
                    self.charge.set(&cx.out.buffers, self.buf.capacity());
                    self.stats.bytes_buffered += i as u64;
                    self.buf_emitted = true;
                    return Some(Piece::Line(&self.buf, term));
                }
                None if window.len() == rest.len() => {
                    let budget = &cx.out.buffers;
                    if !self.reserve(budget, self.buf.len() + rest.len()) {
                        if self.budget_cut(cx, rest, pos) {
                            return Some(Piece::Line(&self.buf, b""));
                        }
                        return Some(Piece::Line(rest, b""));
                    }
                    self.buf.extend_from_slice(rest);
                    self.stats.bytes_buffered += rest.len() as u64;
                    *pos += rest.len();
                    return None;
                }
                None => {
                    let budget = &cx.out.buffers;
                    if !self.reserve(budget, self.buf.len() + window.len()) {
                        if self.budget_cut(cx, window, pos) {
                            return Some(Piece::Line(&self.buf, b""));
                        }
                        return Some(Piece::Line(window, b""));
                    }
                    // Line limit: the buffer fills up; the line is cut and
                    // the last buffered byte and the current one are lost.
                    self.buf.extend_from_slice(window);
                    self.charge.set(&cx.out.buffers, self.buf.capacity());
                    self.stats.bytes_buffered += window.len() as u64;
                    let c = rest.get(window.len()).copied().unwrap_or(0);
                    *pos += window.len() + 1;
                    if !self.quiet {
                        cx.weird(Weird::ContentlineSizeExceeded, None, "CONTENTLINE");
                    }
                    self.last_cr = c == b'\r';
                    let keep = self.max_line - 1;
                    self.cut_lost = [self.buf.get(keep).copied().unwrap_or(0), c];
                    *lost = Some(self.cut_lost);
                    self.buf.truncate(keep);
                    self.buf_emitted = true;
                    self.stats.lines += 1;
                    self.stats.lines_cut += 1;
                    return Some(Piece::Line(&self.buf, b""));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_core::analyzer::ConnAnnotations;
    use mailtap_core::{ConnId, Output, Record, Timestamp};

    /// A connection context over a local output batch.
    struct Harness {
        out: Output,
        conn: ConnAnnotations,
        id: ConnId,
    }

    impl Harness {
        fn new() -> Self {
            let id = ConnId {
                orig_h: "10.0.0.1".parse().unwrap(),
                orig_p: 40000,
                resp_h: "10.0.0.2".parse().unwrap(),
                resp_p: 25,
            };
            Harness {
                out: Output::new(false),
                conn: ConnAnnotations::default(),
                id,
            }
        }
        fn cx(&mut self) -> ConnCtx<'_> {
            ConnCtx {
                ts: Timestamp(1),
                uid: "Ctest",
                id: &self.id,
                out: &mut self.out,
                conn: &mut self.conn,
            }
        }
        fn weird_names(&self) -> Vec<&'static str> {
            self.out
                .records
                .iter()
                .filter_map(|r| {
                    if let Record::Weird(w) = r {
                        Some(w.name)
                    } else {
                        None
                    }
                })
                .collect()
        }
    }

    #[test]
    fn a_long_line_does_not_keep_its_memory() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1 << 20, Nuls::Keep);
        let mut long = vec![b'a'; 300_000];
        long.extend_from_slice(b"\r\n");
        // Delivered in pieces, so the line is carried in the buffer.
        let lines = split_all(&mut h, &mut sp, &[&long[..1000], &long[1000..], b"x\r\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), 300_000);
        assert!(
            sp.buf.capacity() <= RETAINED_LINE_CAPACITY,
            "{} bytes kept after the long line",
            sp.buf.capacity()
        );
    }

    fn split_all(h: &mut Harness, sp: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in chunks {
            let mut pos = 0;
            let mut cx = h.cx();
            while let Some(p) = sp.next(&mut cx, c, &mut pos) {
                match p {
                    Piece::Line(l, _) => out.push(l.to_vec()),
                    Piece::Plain(p) => out.push([b"<plain>".as_slice(), p].concat()),
                    Piece::LateLf => {}
                }
            }
        }
        out
    }

    #[test]
    fn a_spent_budget_cuts_partial_lines_without_losing_bytes() {
        let mut h = Harness::new();
        h.out.buffers = BufferBudget::new(64 * 1024);
        let mut sp = LineSplitter::new(1 << 20, Nuls::Keep);
        let mut other = LineSplitter::new(1 << 20, Nuls::Keep);
        // Another connection holds most of the budget with a partial line.
        let big = vec![b'b'; 60 * 1024];
        assert!(split_all(&mut h, &mut other, &[&big]).is_empty());
        assert!(other.charged() >= 60 * 1024);
        // This one's line arrives in 10 KB pieces: it can hold the floor,
        // not the whole line, so it is handed out in cut pieces.
        let line: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut chunks: Vec<&[u8]> = line.chunks(10_000).collect();
        chunks.push(b"\r\n");
        let lines = split_all(&mut h, &mut sp, &chunks);
        assert!(lines.len() > 1, "the line was cut");
        assert_eq!(lines.concat(), line, "no byte lost");
        assert!(lines[..lines.len() - 1]
            .iter()
            .all(|l| l.len() >= BUFFER_FLOOR));
        assert!(sp.stats.lines_cut_budget > 0);
        assert!(h.out.buffers.refused() > 0);
        assert!(
            h.out.buffers.peak() <= 64 * 1024 + BUFFER_FLOOR,
            "{}",
            h.out.buffers.peak()
        );
        assert_eq!(h.weird_names(), vec!["contentline_size_exceeded"]);
        // Dropping a splitter gives its bytes back.
        drop(other);
        drop(sp);
        assert_eq!(h.out.buffers.used(), 0);
    }

    #[test]
    fn within_the_budget_nothing_changes() {
        let mut h = Harness::new();
        h.out.buffers = BufferBudget::new(1 << 20);
        let mut sp = LineSplitter::new(1 << 20, Nuls::Keep);
        let line = vec![b'x'; 200_000];
        let lines = split_all(
            &mut h,
            &mut sp,
            &[&line[..70_000], &line[70_000..], b"\r\nend\r\n"],
        );
        assert_eq!(lines, vec![line.clone(), b"end".to_vec()]);
        assert_eq!(sp.stats.lines_cut, 0);
        // The long line's buffer was freed once it was out.
        assert_eq!(h.out.buffers.used(), 0);
    }

    #[test]
    fn crlf_lf_cr_terminators() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"a\r\nb\nc\rd\r\n"]);
        assert_eq!(
            l,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(h.weird_names(), vec!["line_terminated_with_single_CR"]);
    }

    #[test]
    fn terminators_are_reported_exactly() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
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
                    Piece::Plain(p) => got.extend_from_slice(p),
                }
            }
        }
        assert_eq!(got, b"a\r\nb\nc\r\nd\re\r\n");
    }

    #[test]
    fn crlf_split_across_deliveries_is_one_terminator() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"HELO x\r", b"\nQUIT\r\n"]);
        assert_eq!(l, vec![b"HELO x".to_vec(), b"QUIT".to_vec()]);
        assert!(h.weird_names().is_empty());
    }

    #[test]
    fn cr_cr_lf_gives_extra_empty_line_without_weird() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"x\r\r\ny\r\n"]);
        assert_eq!(l, vec![b"x".to_vec(), b"".to_vec(), b"y".to_vec()]);
        assert!(h.weird_names().is_empty());
    }

    #[test]
    fn first_nul_dropped_later_kept() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"a\0b\r\nc\0d\r\n"]);
        assert_eq!(l, vec![b"ab".to_vec(), b"c\0d".to_vec()]);
        assert_eq!(h.weird_names(), vec!["NUL_in_line"]);
    }

    #[test]
    fn partial_lines_are_buffered_and_complete_lines_borrowed() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"EH", b"LO a", b"\r\nQUIT\r\n"]);
        assert_eq!(l, vec![b"EHLO a".to_vec(), b"QUIT".to_vec()]);
        assert_eq!(sp.stats.lines, 2);
        assert_eq!(sp.stats.lines_borrowed, 1);
        assert_eq!(sp.stats.bytes_buffered, 6);
    }

    #[test]
    fn plain_delivery_then_lines() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::DropFirst);
        let mut cx = h.cx();
        let data = b"abc\r\nrest\r\n";
        sp.set_plain(5);
        let mut pos = 0;
        assert_eq!(
            sp.next(&mut cx, data, &mut pos),
            Some(Piece::Plain(b"abc\r\n"))
        );
        assert_eq!(
            sp.next(&mut cx, data, &mut pos),
            Some(Piece::Line(b"rest", b"\r\n"))
        );
        assert_eq!(sp.next(&mut cx, data, &mut pos), None);
    }

    #[test]
    fn line_limit_cuts_and_loses_two_bytes() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(8, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"0123", b"456789ab\r\n"]);
        // 8 bytes buffered, byte '8' triggers the limit: 7 delivered, '7' and '8' lost.
        assert_eq!(l, vec![b"0123456".to_vec(), b"9ab".to_vec()]);
        assert_eq!(h.weird_names(), vec!["contentline_size_exceeded"]);
    }

    #[test]
    fn nuls_kept_when_asked() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(1000, Nuls::Keep);
        let l = split_all(&mut h, &mut sp, &[b"a\0b\r\nc\0d\n"]);
        assert_eq!(l, vec![b"a\0b".to_vec(), b"c\0d".to_vec()]);
        assert!(h.weird_names().is_empty());
    }

    #[test]
    fn cut_reports_the_lost_bytes() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(8, Nuls::DropFirst);
        let l = split_all(&mut h, &mut sp, &[b"0123456789ab\r\n"]);
        assert_eq!(l, vec![b"0123456".to_vec(), b"9ab".to_vec()]);
        assert_eq!(&sp.cut_lost(), b"78");
    }

    #[test]
    fn limit_cut_is_counted() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(8, Nuls::Keep);
        split_all(&mut h, &mut sp, &[b"0123456789\r\n"]);
        assert_eq!(sp.stats.lines_cut, 1);
    }

    #[test]
    fn discard_partial_counts() {
        let mut h = Harness::new();
        let mut sp = LineSplitter::new(100, Nuls::Keep);
        assert!(split_all(&mut h, &mut sp, &[b"abc"]).is_empty());
        assert!(sp.has_partial());
        sp.discard_partial();
        assert_eq!(sp.stats.bytes_discarded, 3);
        assert_eq!(split_all(&mut h, &mut sp, &[b"d\n"]), vec![b"d".to_vec()]);
    }
}
