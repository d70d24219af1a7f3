//! TCP stream reassembly for one direction.
//!
//! In-order payload is handed on straight from the packet (no copy). Only
//! segments that arrive ahead of a hole are copied, into a per-stream map of
//! non-overlapping ranges, bounded per stream and by a shard-wide
//! [`MemBudget`].
//!
//! Policy (documented in docs/architecture.md):
//! * **First arrival wins.** Bytes already delivered or already buffered are
//!   never replaced by a later copy. Overlapping buffered bytes that differ
//!   are counted as inconsistent (Zeek's `rexmit_inconsistency`); bytes that
//!   were already delivered are not kept, so they cannot be compared.
//! * **Gaps.** A hole is declared lost, and delivered to the analyzer as a
//!   [`Chunk::Gap`], when the receiver acknowledges data beyond it (Zeek's
//!   content-gap rule), when buffering the next segment would exceed a limit
//!   (counted), or when the stream is flushed at connection end.
//! * Sequence numbers are unwrapped to 64 bits relative to the next expected
//!   byte, so wrap-around at 2^32 is transparent.

use mailtap_core::BufferBudget;
use std::collections::BTreeMap;

/// What the stream hands to the analyzer, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes are missing.
    Gap(u64),
    /// The sender's FIN has been reached: no more data.
    Eof,
}

/// Shard-wide accounting of bytes held in out-of-order buffers.
#[derive(Clone, Debug)]
pub struct MemBudget {
    pub used: usize,
    pub limit: usize,
    pub peak: usize,
    /// The shard's budget for every input buffer (`flow.buffer_memory`),
    /// which reassembly shares with the analyzers' line and header
    /// buffers.
    pub shared: BufferBudget,
}

impl MemBudget {
    pub fn new(limit: usize) -> Self {
        MemBudget {
            used: 0,
            limit,
            peak: 0,
            shared: BufferBudget::default(),
        }
    }

    /// True if `n` more bytes fit both reassembly's own limit and the
    /// shard's.
    fn fits(&self, n: usize) -> bool {
        self.used + n <= self.limit && self.shared.fits(n)
    }

    fn charge(&mut self, n: usize) {
        self.used += n;
        self.peak = self.peak.max(self.used);
        self.shared.charge(n);
    }

    fn refund(&mut self, n: usize) {
        self.used -= n;
        self.shared.refund(n);
    }
}

/// What one segment turned out to be, for conn.log history and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentOutcome {
    /// Some or all of the payload had been seen before.
    pub retransmission: bool,
    /// Overlapping bytes differed from the first copy.
    pub inconsistent: bool,
    /// A limit forced a hole to be given up.
    pub forced_gap: bool,
    /// The segment could not be kept at all and was dropped (counted).
    pub dropped: bool,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct Stream {
    started: bool,
    /// Absolute (unwrapped) sequence number of the first payload byte.
    base: u64,
    /// Absolute sequence number of the next byte to deliver.
    next: u64,
    /// Highest absolute sequence number seen (end of the furthest segment).
    max_end: u64,
    /// Absolute sequence number where the FIN sits.
    fin: Option<u64>,
    eof_sent: bool,
    /// Out-of-order ranges beyond `next`, keyed by start, never overlapping.
    ooo: BTreeMap<u64, Box<[u8]>>,
    ooo_bytes: usize,
    /// Bytes declared missing.
    pub gap_bytes: u64,
    pub delivered_bytes: u64,
    pub inconsistent_overlaps: u64,
    pub forced_gaps: u64,
    pub dropped_segments: u64,
}

const WRAP_OFFSET: u64 = 1 << 32;

impl Stream {
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the stream's end (its FIN) has been delivered in order:
    /// no later segment can add to what the application saw.
    pub fn finished(&self) -> bool {
        self.eof_sent
    }

    /// Whether a segment starting at `seq` cannot belong to this stream
    /// because the stream has ended: its FIN was delivered in order and the
    /// segment starts at or beyond the FIN, or before the stream's first
    /// byte. (A retransmission lies inside the stream; a new connection on
    /// the same 4-tuple, with its own initial sequence number, almost never
    /// does.)
    pub fn after_end(&self, seq: u32) -> bool {
        let Some(fin) = self.fin else { return false };
        if !self.eof_sent {
            return false;
        }
        let abs = self.unwrap_seq(seq);
        abs >= fin || abs < self.base
    }

    /// Bytes held out of order right now.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    /// Size of the stream as Zeek reports it (`orig_bytes`/`resp_bytes`):
    /// the extent of sequence space seen, gaps included.
    pub fn size(&self) -> u64 {
        if !self.started {
            return 0;
        }
        self.max_end.saturating_sub(self.base)
    }

    fn unwrap_seq(&self, seq: u32) -> u64 {
        let delta = seq.wrapping_sub(self.next as u32) as i32 as i64;
        (self.next as i64).saturating_add(delta).max(0) as u64
    }

    /// Starts the stream at `seq` (the SYN's sequence number if `syn`)
    /// unless it has started: for a side whose SYN was not seen, from the
    /// peer's SYN-ACK.
    pub fn start_at(&mut self, seq: u32, syn: bool) {
        if !self.started {
            self.start(seq, syn);
        }
    }

    /// Starts the stream at `seq` (the SYN's sequence number if `syn`).
    fn start(&mut self, seq: u32, syn: bool) {
        let abs = WRAP_OFFSET + u64::from(seq) + u64::from(syn);
        self.started = true;
        self.base = abs;
        self.next = abs;
        self.max_end = abs;
    }

    /// Feeds one segment. `limit` is this stream's out-of-order byte cap.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        limit: usize,
        budget: &mut MemBudget,
        emit: &mut F,
    ) -> SegmentOutcome {
        let mut out = SegmentOutcome::default();
        if !self.started {
            if payload.is_empty() && !syn && !fin {
                return out;
            }
            self.start(seq, syn);
        }
        let abs = self.unwrap_seq(seq).saturating_add(u64::from(syn));
        let end = abs.saturating_add(payload.len() as u64);
        if fin && self.fin.is_none() {
            self.fin = Some(end);
        }
        if !payload.is_empty() {
            self.max_end = self.max_end.max(end);
            if end <= self.next {
                out.retransmission = true;
            } else if abs <= self.next {
                out.retransmission = abs < self.next;
                let skip = (self.next - abs) as usize;
                self.deliver(&payload[skip..], emit);
                self.drain(budget, emit);
            } else {
                self.buffer(abs, payload, limit, budget, &mut out, emit);
            }
        }
        self.maybe_eof(emit);
        out
    }

    /// The peer acknowledged up to `ack`: anything below it that we have
    /// not seen will never be seen (it passed the monitor unobserved).
    pub fn ack<F: FnMut(Chunk<'_>)>(&mut self, ack: u32, budget: &mut MemBudget, emit: &mut F) {
        if !self.started || self.eof_sent {
            return;
        }
        let mut target = self.unwrap_seq(ack);
        if let Some(f) = self.fin {
            target = target.min(f);
        }
        // An ACK for bytes that were never sent in any segment we saw is
        // ordinary only after a hole; bound it by what is plausible.
        if target <= self.next || target - self.next > (1 << 30) {
            return;
        }
        let hole_end = self.ooo.keys().next().map_or(target, |&k| k.min(target));
        if hole_end > self.next {
            self.skip_to(hole_end, emit);
            self.max_end = self.max_end.max(hole_end);
            self.drain(budget, emit);
            self.maybe_eof(emit);
        }
    }

    /// Gives up every hole (connection end): delivers what is buffered,
    /// with gaps between.
    pub fn flush<F: FnMut(Chunk<'_>)>(&mut self, budget: &mut MemBudget, emit: &mut F) {
        while let Some(&start) = self.ooo.keys().next() {
            if start > self.next {
                self.skip_to(start, emit);
            }
            self.drain(budget, emit);
        }
        self.maybe_eof(emit);
    }

    /// Accounts for one segment of a bypassed stream (see
    /// [`crate::table`]): the analyzer has seen all it needs, so nothing is
    /// delivered or buffered. The stream's extent, its FIN and its end are
    /// still tracked for conn.log; a jump forward is not a gap (the bytes
    /// in between may have been counted by the kernel instead). Returns
    /// true when the segment is a retransmission (its payload starts
    /// before the furthest byte seen, as the kernel judges it too).
    pub fn bypassed(&mut self, seq: u32, syn: bool, fin: bool, len: usize) -> bool {
        if !self.started {
            if len == 0 && !syn && !fin {
                return false;
            }
            self.start(seq, syn);
        }
        let abs = self.unwrap_seq(seq).saturating_add(u64::from(syn));
        let end = abs.saturating_add(len as u64);
        if fin && self.fin.is_none() {
            self.fin = Some(end);
        }
        let retransmission = len > 0 && abs < self.max_end;
        if len > 0 || fin {
            // A FIN sits right after the last byte sent: the stream
            // reaches it even when the kernel counted the bytes before it.
            self.max_end = self.max_end.max(end);
        }
        self.next = self.next.max(end);
        if !self.eof_sent && self.fin.is_some_and(|f| self.next >= f) {
            self.eof_sent = true;
        }
        retransmission
    }

    /// Drops what is buffered out of order (the connection is bypassed:
    /// it will never be delivered), returning its memory to the budget.
    pub fn discard(&mut self, budget: &mut MemBudget) {
        budget.refund(self.ooo_bytes);
        self.ooo_bytes = 0;
        self.ooo.clear();
    }

    /// Extends the stream's extent to `seq_end` (the end of the furthest
    /// segment the kernel counted for a bypassed connection).
    pub fn extend_to(&mut self, seq_end: u32) {
        if !self.started {
            return;
        }
        let abs = self.unwrap_seq(seq_end);
        if abs > self.base {
            self.max_end = self.max_end.max(abs);
            self.next = self.next.max(abs);
        }
    }

    fn deliver<F: FnMut(Chunk<'_>)>(&mut self, data: &[u8], emit: &mut F) {
        if data.is_empty() {
            return;
        }
        self.next += data.len() as u64;
        self.delivered_bytes += data.len() as u64;
        emit(Chunk::Data(data));
    }

    fn skip_to<F: FnMut(Chunk<'_>)>(&mut self, to: u64, emit: &mut F) {
        let len = to - self.next;
        self.gap_bytes += len;
        self.next = to;
        emit(Chunk::Gap(len));
    }

    fn maybe_eof<F: FnMut(Chunk<'_>)>(&mut self, emit: &mut F) {
        if !self.eof_sent && self.fin.is_some_and(|f| self.next >= f) && self.ooo.is_empty() {
            self.eof_sent = true;
            emit(Chunk::Eof);
        }
    }

    /// Delivers buffered ranges that have become contiguous.
    fn drain<F: FnMut(Chunk<'_>)>(&mut self, budget: &mut MemBudget, emit: &mut F) {
        while let Some(entry) = self.ooo.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let data = entry.remove();
            self.ooo_bytes -= data.len();
            budget.refund(data.len());
            let end = start + data.len() as u64;
            if end > self.next {
                let skip = (self.next - start) as usize;
                self.deliver(&data[skip..], emit);
            }
        }
    }

    fn buffer<F: FnMut(Chunk<'_>)>(
        &mut self,
        abs: u64,
        payload: &[u8],
        limit: usize,
        budget: &mut MemBudget,
        out: &mut SegmentOutcome,
        emit: &mut F,
    ) {
        // Make room by giving up holes, oldest first, until the new segment
        // fits or it is itself next in line.
        if !budget.shared.fits(payload.len()) {
            budget.shared.note_refused();
        }
        while self.ooo_bytes + payload.len() > limit || !budget.fits(payload.len()) {
            out.forced_gap = true;
            self.forced_gaps += 1;
            match self.ooo.keys().next().copied() {
                Some(start) if start < abs => {
                    if start > self.next {
                        self.skip_to(start, emit);
                    }
                    self.drain(budget, emit);
                }
                _ => {
                    // Nothing buffered before it: skip straight to it and
                    // deliver it without buffering.
                    if abs > self.next {
                        self.skip_to(abs, emit);
                    }
                    let skip = (self.next - abs) as usize;
                    if skip < payload.len() {
                        self.deliver(&payload[skip..], emit);
                    }
                    self.drain(budget, emit);
                    return;
                }
            }
            if abs <= self.next {
                let end = abs + payload.len() as u64;
                if end > self.next {
                    let skip = (self.next - abs) as usize;
                    self.deliver(&payload[skip..], emit);
                    self.drain(budget, emit);
                } else {
                    out.retransmission = true;
                }
                return;
            }
        }
        // Insert only the parts not already covered (first arrival wins),
        // comparing the covered parts.
        let end = abs + payload.len() as u64;
        let mut cursor = abs;
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let prev = self
            .ooo
            .range(..abs)
            .next_back()
            .map(|(&s, d)| (s, s + d.len() as u64));
        let overlapping = prev.into_iter().filter(|&(_, e)| e > abs).chain(
            self.ooo
                .range(abs..end)
                .map(|(&s, d)| (s, s + d.len() as u64)),
        );
        let mut covered: Vec<(u64, u64)> = Vec::new();
        for (s, e) in overlapping {
            if s > cursor {
                pieces.push((cursor, s));
            }
            covered.push((s.max(abs), e.min(end)));
            cursor = cursor.max(e);
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        for (s, e) in covered {
            if let Some((&ks, kd)) = self.ooo.range(..=s).next_back() {
                let old = &kd[(s - ks) as usize..(e - ks) as usize];
                let new = &payload[(s - abs) as usize..(e - abs) as usize];
                if old != new {
                    out.inconsistent = true;
                    self.inconsistent_overlaps += 1;
                }
            }
            out.retransmission = true;
        }
        for (s, e) in pieces {
            let bytes: Box<[u8]> = payload[(s - abs) as usize..(e - abs) as usize].into();
            self.ooo_bytes += bytes.len();
            budget.charge(bytes.len());
            self.ooo.insert(s, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Got {
        Data(Vec<u8>),
        Gap(u64),
        Eof,
    }

    fn collect(v: &mut Vec<Got>) -> impl FnMut(Chunk<'_>) + '_ {
        move |c| match c {
            Chunk::Data(d) => {
                if let Some(Got::Data(last)) = v.last_mut() {
                    last.extend_from_slice(d);
                } else {
                    v.push(Got::Data(d.to_vec()));
                }
            }
            Chunk::Gap(n) => v.push(Got::Gap(n)),
            Chunk::Eof => v.push(Got::Eof),
        }
    }

    #[test]
    fn in_order_and_out_of_order() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        s.segment(1000, true, false, b"", 1 << 16, &mut b, &mut e);
        s.segment(1001, false, false, b"hello ", 1 << 16, &mut b, &mut e);
        s.segment(1012, false, true, b"!", 1 << 16, &mut b, &mut e);
        s.segment(1007, false, false, b"world", 1 << 16, &mut b, &mut e);
        drop(e);
        assert_eq!(got, vec![Got::Data(b"hello world!".to_vec()), Got::Eof]);
        assert_eq!(b.used, 0);
        assert_eq!(s.size(), 12);
    }

    #[test]
    fn wraps_around() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        let isn = u32::MAX - 3;
        s.segment(isn, true, false, b"", 1 << 16, &mut b, &mut e);
        s.segment(
            isn.wrapping_add(5),
            false,
            false,
            b"efgh",
            1 << 16,
            &mut b,
            &mut e,
        );
        s.segment(
            isn.wrapping_add(1),
            false,
            false,
            b"abcd",
            1 << 16,
            &mut b,
            &mut e,
        );
        drop(e);
        assert_eq!(got, vec![Got::Data(b"abcdefgh".to_vec())]);
    }

    #[test]
    fn ack_declares_gap() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        s.segment(0, true, false, b"", 1 << 16, &mut b, &mut e);
        s.segment(1, false, false, b"ab", 1 << 16, &mut b, &mut e);
        s.segment(13, false, false, b"yz", 1 << 16, &mut b, &mut e);
        s.ack(15, &mut b, &mut e);
        drop(e);
        assert_eq!(
            got,
            vec![
                Got::Data(b"ab".to_vec()),
                Got::Gap(10),
                Got::Data(b"yz".to_vec())
            ]
        );
        assert_eq!(s.gap_bytes, 10);
    }

    #[test]
    fn inconsistent_overlap_counted_first_wins() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        s.segment(0, true, false, b"", 1 << 16, &mut b, &mut e);
        s.segment(5, false, false, b"EFGH", 1 << 16, &mut b, &mut e);
        let o = s.segment(5, false, false, b"XFGHIJ", 1 << 16, &mut b, &mut e);
        assert!(o.inconsistent);
        s.segment(1, false, false, b"abcd", 1 << 16, &mut b, &mut e);
        drop(e);
        assert_eq!(got, vec![Got::Data(b"abcdEFGHIJ".to_vec())]);
    }

    #[test]
    fn limit_forces_gap_and_counts() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        s.segment(0, true, false, b"", 8, &mut b, &mut e);
        s.segment(11, false, false, b"12345", 8, &mut b, &mut e);
        let o = s.segment(21, false, false, b"abcde", 8, &mut b, &mut e);
        drop(e);
        assert!(o.forced_gap);
        assert_eq!(got, vec![Got::Gap(10), Got::Data(b"12345".to_vec())]);
        assert_eq!(s.buffered(), 5);
        assert!(s.buffered() <= 8);
    }

    #[test]
    fn bypassed_segments_track_extent_without_gaps() {
        let mut s = Stream::default();
        let mut b = MemBudget::new(1 << 20);
        let mut got = Vec::new();
        let mut e = collect(&mut got);
        s.segment(100, true, false, b"", 1 << 16, &mut b, &mut e);
        s.segment(101, false, false, b"abc", 1 << 16, &mut b, &mut e);
        s.segment(110, false, false, b"zz", 1 << 16, &mut b, &mut e);
        drop(e);
        assert_eq!(b.used, 2);
        s.discard(&mut b);
        assert_eq!((b.used, s.buffered()), (0, 0));
        // 1000 bytes went by in the kernel; then a data packet and the FIN.
        assert!(!s.bypassed(1104, false, false, 1000));
        assert!(s.bypassed(1100, false, false, 10), "a retransmission");
        s.extend_to(2200);
        assert_eq!(s.size(), 2099);
        assert!(!s.bypassed(2300, false, true, 0));
        assert!(s.finished());
        assert_eq!(s.size(), 2199);
        assert_eq!(s.gap_bytes, 0);
        assert_eq!(got, vec![Got::Data(b"abc".to_vec())]);
    }

    #[test]
    fn bypassed_stream_started_by_a_fin() {
        let mut s = Stream::default();
        assert!(!s.bypassed(5, false, false, 0));
        assert!(!s.started());
        s.bypassed(5, false, true, 0);
        assert!(s.finished());
        assert_eq!(s.size(), 0);
    }

    #[test]
    fn global_budget_bounds_memory() {
        let mut b = MemBudget::new(100);
        let mut streams: Vec<Stream> = (0..10).map(|_| Stream::default()).collect();
        let mut sink = |_c: Chunk<'_>| {};
        for (i, s) in streams.iter_mut().enumerate() {
            s.segment(0, true, false, b"", 1 << 20, &mut b, &mut sink);
            for k in 0..10u32 {
                s.segment(
                    100 + k * 50 + i as u32,
                    false,
                    false,
                    &[b'x'; 30],
                    1 << 20,
                    &mut b,
                    &mut sink,
                );
                assert!(b.used <= 100);
            }
        }
    }

    proptest! {
        /// Any permutation and duplication of a stream's segments yields the
        /// same bytes once flushed (when nothing is lost to limits).
        #[test]
        fn permutations_give_same_stream(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(1usize..40, 1..30),
            order in proptest::collection::vec(any::<u32>(), 60),
            isn in any::<u32>(),
        ) {
            let mut segs = Vec::new();
            let mut pos = 0usize;
            for c in cuts.iter().cycle() {
                if pos >= data.len() { break; }
                let end = (pos + c).min(data.len());
                segs.push((pos, end));
                pos = end;
            }
            let mut shuffled: Vec<(usize, usize)> = segs.clone();
            shuffled.extend(segs.iter().take(order.len() % 5)); // duplicates
            for i in (1..shuffled.len()).rev() {
                let j = order[i % order.len()] as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let mut s = Stream::default();
            let mut b = MemBudget::new(1 << 20);
            let mut got = Vec::new();
            let mut e = collect(&mut got);
            s.segment(isn, true, false, b"", 1 << 20, &mut b, &mut e);
            for (a, z) in shuffled {
                s.segment(isn.wrapping_add(1 + a as u32), false, false, &data[a..z], 1 << 20, &mut b, &mut e);
            }
            s.flush(&mut b, &mut e);
            drop(e);
            prop_assert_eq!(got, vec![Got::Data(data.clone())]);
            prop_assert_eq!(b.used, 0);
        }
    }
}
