//! The byte budget of the records in flight from the shards (or live
//! workers) to the collector (`general.collector_queue_bytes`).
//!
//! The channel to the collector is bounded in batches, but one batch can
//! hold any number of records: a message of empty lines raises one event
//! per line, about 200 bytes of records for every two bytes of input. So
//! the bytes are counted too: a sender adds a batch's approximate size
//! ([`mailtap_core::Record::approx_bytes`], summed as the records were
//! made) before it sends the batch, and the collector subtracts it when it
//! has written the batch to every sink. A `mailtap read` shard waits while
//! the budget is spent (back-pressure, nothing lost); a live worker keeps
//! the batch in its backlog instead, which sheds by class when it is full.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Longest a waiting sender sleeps before it looks again (a wake-up is
/// normally sent; this only bounds the cost of a missed one).
const RECHECK: Duration = Duration::from_millis(50);

/// Bytes of records between the senders and the collector.
pub(crate) struct QueueBudget {
    /// The bound (`general.collector_queue_bytes`).
    pub(crate) limit: u64,
    /// Bytes sent and not yet written.
    inflight: AtomicU64,
    /// The most `inflight` has been.
    peak: AtomicU64,
    /// `mailtap read`: the lowest capture block the collector has not
    /// written yet (the block the stable order waits for).
    current: AtomicU64,
    /// `mailtap read`: bytes the collector holds back for the stable order.
    held: AtomicU64,
    /// The collector is gone: nobody waits any more.
    closed: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl QueueBudget {
    pub(crate) fn new(limit: u64) -> Self {
        QueueBudget {
            limit: limit.max(1),
            inflight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            current: AtomicU64::new(0),
            held: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Bytes in flight now.
    pub(crate) fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// The most bytes that were in flight at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Whether `bytes` more would go over the bound. A batch always fits
    /// into an empty budget, so that one larger than the bound still goes.
    #[inline]
    pub(crate) fn over(&self, bytes: u64) -> bool {
        let f = self.inflight.load(Ordering::Relaxed);
        bytes > 0 && f > 0 && f + bytes > self.limit
    }

    /// Counts `bytes` as sent.
    #[inline]
    pub(crate) fn add(&self, bytes: u64) {
        if bytes > 0 {
            let now = self.inflight.fetch_add(bytes, Ordering::Relaxed) + bytes;
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Takes back `bytes` that were sent and not delivered (the collector
    /// is gone).
    pub(crate) fn undo(&self, bytes: u64) {
        self.release(bytes);
    }

    /// The collector wrote `bytes`: wakes the senders that wait.
    pub(crate) fn release(&self, bytes: u64) {
        if bytes > 0 {
            self.inflight.fetch_sub(bytes, Ordering::Relaxed);
            self.notify();
        }
    }

    /// The collector's stable order (`mailtap read`): the lowest block not
    /// written yet and the bytes held back for it.
    pub(crate) fn set_order(&self, current: u64, held: u64) {
        let was = self.held.swap(held, Ordering::Relaxed);
        let cur = self.current.swap(current, Ordering::Relaxed);
        if (was == 0) != (held == 0) || cur != current {
            self.notify();
        }
    }

    /// The collector stopped: senders stop waiting.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify();
    }

    fn notify(&self) {
        // Taking the lock orders this after a waiter's check, so a
        // wake-up is not lost between its check and its wait.
        drop(self.lock.lock());
        self.wake.notify_all();
    }

    /// Waits until `bytes` fit (live, `live.collector_overflow = "block"`).
    pub(crate) fn wait(&self, bytes: u64) {
        self.wait_until(|| !self.over(bytes));
    }

    /// `mailtap read`: waits until a batch of `bytes` for capture block
    /// `seq` may go. It may go when it fits, and also when the collector
    /// holds records back waiting for block `seq` (or an earlier one)
    /// from this shard: waiting then could never end. What goes that way
    /// is written as it arrives (see `Merger`), so it stays bounded by
    /// the channel's length in batches.
    pub(crate) fn wait_ordered(&self, bytes: u64, seq: u64) {
        self.wait_until(|| {
            !self.over(bytes)
                || (self.held.load(Ordering::Relaxed) > 0
                    && seq <= self.current.load(Ordering::Relaxed))
        });
    }

    fn wait_until(&self, ok: impl Fn() -> bool) {
        if ok() {
            return;
        }
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !ok() && !self.closed.load(Ordering::Relaxed) {
            g = match self.wake.wait_timeout(g, RECHECK) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_sender_waits_until_the_collector_writes() {
        let b = Arc::new(QueueBudget::new(100));
        assert!(!b.over(500), "an empty budget takes any batch");
        b.add(60);
        assert!(!b.over(40));
        assert!(b.over(41));
        let t = {
            let b = b.clone();
            std::thread::spawn(move || {
                b.wait(50);
                b.add(50);
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.inflight(), 60, "still waiting");
        b.release(60);
        t.join().unwrap();
        assert_eq!(b.inflight(), 50);
        assert_eq!(b.peak(), 60);
    }

    #[test]
    fn the_block_the_collector_waits_for_goes_over_the_budget() {
        let b = QueueBudget::new(100);
        b.add(100);
        b.set_order(3, 100);
        // Block 3 is what the collector waits for: it goes.
        b.wait_ordered(10, 3);
        // Nothing held back: everything in flight will be written, so
        // even block 3 waits (here until the collector closes).
        b.set_order(3, 0);
        b.close();
        b.wait_ordered(10, 3);
    }
}
