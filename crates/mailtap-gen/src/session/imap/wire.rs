//! What an IMAP session's bytes become on the wire after COMPRESS
//! DEFLATE, and where each transfer lies in the streams (spans for the
//! imperfect-capture truth).

use super::super::{Ctx, Kind, Session, C, S};
use crate::pool::{Pools, Seg, SRC_LOCAL};

impl Session {
    /// The index the next data run of `dir` will have among this step's.
    pub(super) fn im_next_run(&self, dir: usize) -> usize {
        self.plan
            .iter()
            .filter(|i| i.dir as usize == dir && matches!(i.kind, Kind::Data { .. }))
            .count()
    }

    /// Reports where the transfer just reported lies: `cmd` the client
    /// offset of its command, `mark` the (direction, offset) of the line
    /// that announces its literal, `lit` the literal's range in `dir`'s
    /// stream, `run` the data run that carries it. Over COMPRESS the
    /// offsets are only known once the step is deflated: the span then
    /// covers the whole deflated stream from the COMPRESS point to the end
    /// of that run (one byte lost there and the message cannot be
    /// inflated).
    pub(super) fn im_span(
        &mut self,
        ctx: &mut Ctx,
        dir: usize,
        cmd: u64,
        mark: u64,
        lit: (u64, u64),
        run: usize,
    ) {
        if ctx.on_span.is_none() {
            return;
        }
        let mut sp = self.new_span(dir, cmd);
        if self.im().deflate.is_some() {
            let at = self.im().compress_at;
            sp.start = at[C];
            sp.data_mark = (dir, at[dir]);
            self.im().pending_spans.push((sp, dir, run));
        } else {
            sp.data_mark = (dir, mark);
            sp.data.push(lit);
            sp.end = (dir, lit.1);
            self.span = Some(sp);
            self.emit_span(ctx);
        }
    }

    /// Replaces every data run now planned with its deflated bytes: each
    /// run (one write of its sender) becomes one sync-flushed block.
    pub(super) fn im_deflate_queued(&mut self, ctx: &mut Ctx) {
        let pools: &Pools = ctx.pools;
        let mut z = self.im().deflate.take().expect("compressing");
        // the stream offset at the end of each data run, per direction
        let mut run_ends: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for dir in [C, S] {
            let queued: u64 = self.flights[dir].iter().map(|s| s.len() as u64).sum();
            let mut off = self.stream_off(dir) - queued;
            let mut plain = Vec::new();
            for s in std::mem::take(&mut self.flights[dir]) {
                let b = if s.src == SRC_LOCAL {
                    &self.local[s.start as usize..s.end as usize]
                } else {
                    &pools.bytes(s.src)[s.start as usize..s.end as usize]
                };
                plain.extend_from_slice(b);
            }
            let mut at = 0usize;
            for item in self.plan.iter_mut().filter(|i| i.dir as usize == dir) {
                let super::Kind::Data { remaining, .. } = &mut item.kind else {
                    continue;
                };
                let input = &plain[at..at + *remaining as usize];
                at += *remaining as usize;
                let a = self.local.len();
                deflate_into(&mut z[dir], input, &mut self.local);
                *remaining = (self.local.len() - a) as u32;
                off += *remaining as u64;
                run_ends[dir].push(off);
                self.flights[dir].push_back(Seg {
                    src: SRC_LOCAL,
                    start: a as u32,
                    end: self.local.len() as u32,
                });
            }
            debug_assert_eq!(at, plain.len());
        }
        self.im().deflate = Some(z);
        for (mut sp, dir, run) in std::mem::take(&mut self.im().pending_spans) {
            let end = run_ends[dir][run];
            sp.data.push((sp.data_mark.1, end));
            sp.end = (dir, end - 1);
            if let Some(cb) = ctx.on_span.as_mut() {
                cb(&sp);
            }
        }
    }
}

/// Deflates `input` onto `out` and sync-flushes (the block ends on a byte
/// boundary, so the peer can inflate everything sent so far).
fn deflate_into(z: &mut flate2::Compress, input: &[u8], out: &mut Vec<u8>) {
    let mut rest = input;
    loop {
        out.reserve(rest.len() / 2 + 64);
        let before = z.total_in();
        let flush = flate2::FlushCompress::Sync;
        // Compression into a Vec's spare capacity cannot fail.
        let _ = z.compress_vec(rest, out, flush);
        rest = &rest[(z.total_in() - before) as usize..];
        // done when all input is in and the flush did not fill the space
        if rest.is_empty() && out.len() < out.capacity() {
            return;
        }
    }
}
