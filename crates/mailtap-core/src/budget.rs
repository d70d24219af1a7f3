//! One shard's budget for the input it holds on to (`flow.buffer_memory`).
//!
//! Everything a shard buffers because of what the wire sent it counts
//! against one budget: out-of-order bytes in reassembly, partial lines in
//! the line splitters, MIME header lines being gathered. Each of them has
//! its own per-connection limit too, but thousands of connections each
//! staying just under their own limit could still hold gigabytes; the
//! shard-wide budget is what bounds the sum. When it is spent, holders
//! give way in the cheapest manner they have: reassembly gives up a hole
//! (a content gap), a line splitter hands out the line it holds as a cut
//! line (no byte is lost: message extraction stays exact), a MIME header
//! longer than a few kilobytes is cut (weird
//! `exceeded_mime_max_header_bytes`).
//!
//! A holder charges what it allocates ([`Charge`]) and gives it back when
//! it frees it or is dropped. The budget is shared by the handles of one
//! shard only, so the atomics are never contended; they are touched only
//! when a buffer changes size, never per packet or per line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A holder that is refused may still keep this much (a line of a few
/// times RFC 5321's 1000 octets), so the protocol goes on working when the
/// budget is spent; its cost is bounded by the flow table's size.
pub const BUFFER_FLOOR: usize = 4096;

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

/// A shard's input-buffer budget; clones share it.
#[derive(Clone, Debug)]
pub struct BufferBudget(Arc<Inner>);

impl Default for BufferBudget {
    /// No limit (unit tests and tools that read one connection).
    fn default() -> Self {
        BufferBudget::new(usize::MAX)
    }
}

impl BufferBudget {
    pub fn new(limit: usize) -> Self {
        BufferBudget(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The most bytes held at once.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Times a holder was refused and had to give way.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// True if `n` more bytes fit.
    pub fn fits(&self, n: usize) -> bool {
        self.used().saturating_add(n) <= self.0.limit
    }

    /// More than three quarters spent: holders free what they keep only to
    /// save an allocation later.
    pub fn under_pressure(&self) -> bool {
        self.used() > self.0.limit / 4 * 3
    }

    /// Records that a holder was refused (it gave way).
    pub fn note_refused(&self) {
        self.0.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Charges `n` bytes whether or not they fit (the holder cannot give
    /// way, or checked [`fits`](Self::fits) first).
    pub fn charge(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.0.used.fetch_add(n, Ordering::Relaxed) + n;
        self.0.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Gives back `n` bytes charged before.
    pub fn refund(&self, n: usize) {
        if n != 0 {
            self.0.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// What one buffer has charged to a budget: kept equal to the buffer's
/// capacity by [`Charge::set`], given back on drop.
#[derive(Debug, Default)]
pub struct Charge {
    budget: Option<BufferBudget>,
    bytes: usize,
}

impl Charge {
    /// Bytes charged now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Makes the charge `bytes` (a buffer's new capacity), to `budget`.
    pub fn set(&mut self, budget: &BufferBudget, bytes: usize) {
        if bytes == self.bytes {
            return;
        }
        match &self.budget {
            Some(b) if Arc::ptr_eq(&b.0, &budget.0) => {}
            _ => {
                self.release();
                self.budget = Some(budget.clone());
            }
        }
        let b = self.budget.as_ref().expect("set above");
        if bytes > self.bytes {
            b.charge(bytes - self.bytes);
        } else {
            b.refund(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// Gives everything back (the buffer was freed).
    pub fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.refund(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_follow_the_buffer_and_come_back_on_drop() {
        let b = BufferBudget::new(10_000);
        let mut c = Charge::default();
        c.set(&b, 4000);
        assert_eq!(b.used(), 4000);
        assert!(b.fits(6000));
        assert!(!b.fits(6001));
        c.set(&b, 1000);
        assert_eq!(b.used(), 1000);
        assert_eq!(b.peak(), 4000);
        {
            let mut d = Charge::default();
            d.set(&b, 8000);
            assert_eq!(b.used(), 9000);
            assert!(b.under_pressure());
        }
        assert_eq!(b.used(), 1000, "a dropped holder gives its bytes back");
        c.release();
        assert_eq!(b.used(), 0);
        drop(c);
        assert_eq!(b.used(), 0, "released bytes are not given back twice");
        assert_eq!(b.peak(), 9000);
    }

    #[test]
    fn a_charge_moved_to_another_budget_leaves_the_first() {
        let a = BufferBudget::new(100);
        let b = BufferBudget::new(100);
        let mut c = Charge::default();
        c.set(&a, 50);
        c.set(&b, 60);
        assert_eq!((a.used(), b.used()), (0, 60));
    }
}
