//! A worker's way to the collector when it must not wait for it: a
//! bounded backlog that sheds records by class ([`RecordOutbox`]). Live
//! workers always use it; `mailtap read` shards only in a test mode
//! (`MAILTAP_TEST_READ_OVERFLOW`), otherwise they wait for the collector.

use crate::budget::QueueBudget;
use crate::collector::RecordBatch;
use crossbeam_channel::{Sender, TrySendError};
use mailtap_core::Record;
use std::sync::Arc;

/// Records sent to the collector at once when traffic is fast (live
/// workers), and the most a coalesced backlog batch holds.
pub(crate) const RECORD_BATCH: usize = 512;

/// Record classes in the order a full backlog sheds them (see
/// [`RecordOutbox`] and docs/outputs.md): the first class goes first.
pub(crate) const SHED_CLASSES: [&str; 6] = [
    "event",
    "weird",
    "files_ssl_x509",
    "email_data",
    "smtp_pop3_conn",
    "email_meta",
];

/// The class of `r` in [`SHED_CLASSES`].
fn shed_class(r: &Record) -> usize {
    match r {
        Record::Event(_) => 0,
        Record::Weird(_) => 1,
        Record::File(_) | Record::Ssl(_) | Record::X509(_) => 2,
        Record::EmailData(_) => 3,
        Record::Smtp(_) | Record::Pop3(_) | Record::Imap(_) | Record::Conn(_) => 4,
        Record::EmailMeta(_) => 5,
    }
}

/// A worker's way to the collector. It never waits on the collector
/// (unless told to block, `live.collector_overflow = "block"`, and in
/// [`RecordOutbox::flush`] at shutdown): batches the collector cannot take yet (its
/// channel is full, or the bytes in flight to it are at the
/// [`QueueBudget`]'s bound) wait in a bounded backlog (`max_backlog`
/// batches and `max_backlog_bytes`). When the backlog is over either
/// bound, records are shed from all of it, class by class in
/// [`SHED_CLASSES`] order (events first, message metadata last), until the
/// remaining records fit again; record order is kept. A message whose bytes (`EmailData`) are shed has its
/// `EmailMeta` marked `complete: false` (the sinks then count the missing
/// bytes). A worker that waited would stop reading its ring, and the
/// kernel would drop packets instead, which costs more and says less.
pub(crate) struct RecordOutbox {
    backlog: std::collections::VecDeque<RecordBatch>,
    max_backlog: usize,
    /// Approximate bytes of the backlog's records, and their bound.
    backlog_bytes: u64,
    max_backlog_bytes: u64,
    /// Coalesced batches stay within this many bytes.
    batch_bytes: u64,
    /// The bytes in flight to the collector.
    budget: Arc<QueueBudget>,
    block: bool,
    /// Records dropped so far.
    pub(crate) dropped: u64,
    /// Records dropped so far, by [`SHED_CLASSES`] class.
    pub(crate) dropped_by_class: [u64; SHED_CLASSES.len()],
    /// Message bytes shed so far.
    pub(crate) email_bytes_dropped: u64,
    /// Messages marked incomplete because their bytes were shed.
    pub(crate) messages_marked: u64,
    /// Messages that lost bytes here and whose metadata has not been
    /// marked yet (it is still to come from the shard).
    lost: std::collections::HashSet<(String, u32)>,
}

impl RecordOutbox {
    pub(crate) fn new(
        max_backlog: usize,
        block: bool,
        budget: Arc<QueueBudget>,
        max_backlog_bytes: u64,
        batch_bytes: usize,
    ) -> Self {
        RecordOutbox {
            backlog: std::collections::VecDeque::with_capacity(max_backlog.min(4096)),
            max_backlog: max_backlog.max(1),
            backlog_bytes: 0,
            max_backlog_bytes: max_backlog_bytes.max(1),
            batch_bytes: batch_bytes as u64,
            budget,
            block,
            dropped: 0,
            dropped_by_class: [0; SHED_CLASSES.len()],
            email_bytes_dropped: 0,
            messages_marked: 0,
            lost: std::collections::HashSet::new(),
        }
    }

    /// Marks the metadata of messages that lost bytes here.
    fn mark(&mut self, records: &mut [Record]) {
        if self.lost.is_empty() {
            return;
        }
        for r in records {
            if let Record::EmailMeta(m) = r {
                // Rare (only after a shed), so the key copy does not matter.
                if self.lost.remove(&(m.uid.clone(), m.n)) {
                    self.messages_marked += 1;
                    m.complete = false;
                }
            }
        }
    }

    fn queue(&mut self, mut batch: Vec<Record>, bytes: usize) {
        if !batch.is_empty() {
            self.mark(&mut batch);
            self.backlog_bytes += bytes as u64;
            self.backlog.push_back(RecordBatch::now(batch, bytes));
        }
    }

    fn over_bound(&self) -> bool {
        self.backlog.len() > self.max_backlog || self.backlog_bytes > self.max_backlog_bytes
    }

    /// Sends `b` within the byte budget (waiting for it only when
    /// `wait`); gives it back when it must wait in the backlog.
    fn try_deliver(
        &mut self,
        b: RecordBatch,
        to: &Sender<RecordBatch>,
        wait: bool,
    ) -> Option<RecordBatch> {
        let bytes = b.bytes;
        if self.budget.over(bytes) {
            if !wait {
                return Some(b);
            }
            self.budget.wait(bytes);
        }
        self.budget.add(bytes);
        let r = if wait {
            to.send(b).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            to.try_send(b)
        };
        match r {
            Ok(()) => None,
            Err(TrySendError::Full(b)) => {
                self.budget.undo(bytes);
                Some(b)
            }
            // The collector is gone (it panicked); the run reports it.
            Err(TrySendError::Disconnected(b)) => {
                self.budget.undo(bytes);
                self.lose(&b);
                None
            }
        }
    }

    /// Counts a whole batch that could not be delivered.
    fn lose(&mut self, b: &RecordBatch) {
        for r in &b.records {
            self.dropped += 1;
            self.dropped_by_class[shed_class(r)] += 1;
        }
    }

    /// Sheds records class by class until the backlog fits its bounds.
    fn shed(&mut self) {
        for class in 0..SHED_CLASSES.len() {
            if !self.over_bound() {
                return;
            }
            let mut backlog = std::mem::take(&mut self.backlog);
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut newly_lost = Vec::new();
            let lost = &mut self.lost;
            let mut freed = 0u64;
            for b in backlog.iter_mut() {
                let mut shed_bytes = 0u64;
                b.records.retain(|r| {
                    if shed_class(r) != class {
                        return true;
                    }
                    shed_bytes += r.approx_bytes() as u64;
                    match r {
                        Record::EmailData(c) => {
                            bytes += c.data.len() as u64;
                            newly_lost.push((c.uid.clone(), c.n));
                        }
                        Record::EmailMeta(m) => {
                            lost.remove(&(m.uid.clone(), m.n));
                        }
                        _ => {}
                    }
                    n += 1;
                    false
                });
                let shed_bytes = shed_bytes.min(b.bytes);
                b.bytes -= shed_bytes;
                freed += shed_bytes;
            }
            self.backlog_bytes -= freed.min(self.backlog_bytes);
            self.dropped += n;
            self.dropped_by_class[class] += n;
            self.email_bytes_dropped += bytes;
            if !newly_lost.is_empty() {
                self.lost.extend(newly_lost);
                // Metadata already waiting behind the lost bytes.
                for b in backlog.iter_mut() {
                    self.mark(&mut b.records);
                }
            }
            self.backlog = backlog;
            self.coalesce();
        }
    }

    /// Joins neighbouring batches while they fit in [`RECORD_BATCH`]
    /// records and the batch size in bytes (order kept; the older batch's
    /// send time stays).
    fn coalesce(&mut self) {
        let mut out: std::collections::VecDeque<RecordBatch> =
            std::collections::VecDeque::with_capacity(self.backlog.len());
        for b in self.backlog.drain(..) {
            if b.records.is_empty() {
                self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
                continue;
            }
            match out.back_mut() {
                Some(last)
                    if last.records.len() + b.records.len() <= RECORD_BATCH
                        && last.bytes + b.bytes <= self.batch_bytes =>
                {
                    last.records.extend(b.records);
                    last.bytes += b.bytes;
                }
                _ => out.push_back(b),
            }
        }
        self.backlog = out;
    }

    /// Queues `batch` (if not empty) and sends what the collector takes.
    /// Returns the records dropped by this call.
    /// `bytes`: the batch's approximate size ([`Output::bytes`]).
    pub(crate) fn send(
        &mut self,
        batch: Vec<Record>,
        bytes: usize,
        to: &Sender<RecordBatch>,
    ) -> u64 {
        let before = self.dropped;
        self.queue(batch, bytes);
        while let Some(b) = self.backlog.pop_front() {
            self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
            if let Some(b) = self.try_deliver(b, to, self.block) {
                self.backlog_bytes += b.bytes;
                self.backlog.push_front(b);
                break;
            }
        }
        if self.over_bound() {
            self.shed();
        }
        self.dropped - before
    }

    /// Sends everything, waiting as long as the collector needs.
    pub(crate) fn flush(&mut self, batch: Vec<Record>, bytes: usize, to: &Sender<RecordBatch>) {
        self.queue(batch, bytes);
        while let Some(b) = self.backlog.pop_front() {
            self.backlog_bytes -= b.bytes.min(self.backlog_bytes);
            if let Some(b) = self.try_deliver(b, to, true) {
                // Only a full channel gives it back after waiting.
                self.backlog_bytes += b.bytes;
                self.backlog.push_front(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use mailtap_core::record::WeirdRecord;
    use mailtap_core::Timestamp;
    use std::time::Duration;

    /// An outbox whose byte bounds are out of reach (the tests of the
    /// byte bounds set their own).
    fn outbox(max_backlog: usize, block: bool) -> RecordOutbox {
        RecordOutbox::new(
            max_backlog,
            block,
            Arc::new(QueueBudget::new(u64::MAX / 4)),
            u64::MAX / 4,
            1 << 30,
        )
    }

    fn batch(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::Weird(Box::new(WeirdRecord {
                    ts: Timestamp::from_secs_nanos(i as i64, 0),
                    uid: None,
                    id: None,
                    name: "test",
                    addl: None,
                    source: None,
                }))
            })
            .collect()
    }

    fn event(i: u32) -> Record {
        Record::Event(Box::new(mailtap_core::EventRecord {
            ts: Timestamp::from_secs_nanos(i64::from(i), 0),
            uid: "Cev".into(),
            id: mailtap_core::ConnId {
                orig_h: "192.0.2.1".parse().unwrap(),
                orig_p: 1,
                resp_h: "192.0.2.2".parse().unwrap(),
                resp_p: 25,
            },
            event: mailtap_core::Event::SmtpData {
                is_orig: true,
                data: Vec::new(),
            },
        }))
    }

    fn data(uid: &str, n: u32, len: usize) -> Record {
        Record::EmailData(Box::new(mailtap_core::mail::EmailChunk {
            uid: uid.into(),
            n,
            data: vec![b'x'; len],
        }))
    }

    fn meta(uid: &str, n: u32, size: u64) -> Record {
        Record::EmailMeta(Box::new(mailtap_core::mail::EmailMeta {
            uid: uid.into(),
            n,
            size,
            complete: true,
            ..Default::default()
        }))
    }

    #[test]
    fn outbox_keeps_a_bounded_backlog_then_sheds_by_class() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(2, false);
        assert_eq!(o.send(batch(3), 0, &tx), 0); // into the channel
        assert_eq!(o.send(batch(500), 0, &tx), 0); // backlog 1
        assert_eq!(o.send(batch(500), 0, &tx), 0); // backlog 2
                                                   // Small batches over the bound are joined first: nothing lost.
        assert_eq!(o.send(batch(6), 0, &tx), 0);
        // Over the bound: there are no events to shed, so the weird rows
        // (the only class there) go and the backlog is empty again.
        assert_eq!(o.send(batch(500), 0, &tx), 1506);
        assert_eq!(o.dropped_by_class[1], 1506);
        assert_eq!(rx.recv().unwrap().records.len(), 3);
        drop(rx);
        // Shutdown after the collector is gone counts what could not go.
        o.flush(batch(1), 0, &tx);
        assert_eq!(o.dropped, 1506 + 1);
    }

    #[test]
    fn outbox_sheds_events_first_and_marks_messages_that_lose_bytes() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, false);
        assert_eq!(o.send(batch(1), 0, &tx), 0); // the channel is full now
                                                 // Events and weirds with a message's first chunk.
        let mut b1: Vec<Record> = (0..300).map(event).collect();
        b1.push(data("Cm", 1, 100));
        b1.extend(batch(300));
        o.send(b1, 0, &tx);
        // Its second chunk, another message whole, its end.
        let mut b2: Vec<Record> = (300..600).map(event).collect();
        b2.extend([data("Cm", 1, 50), data("Ck", 1, 10), meta("Ck", 1, 10)]);
        let shed = o.send(b2, 0, &tx);
        // Events alone were enough: 600 gone, everything else kept.
        assert_eq!(shed, 600);
        assert_eq!(o.dropped_by_class[0], 600);
        assert_eq!(o.email_bytes_dropped, 0);
        // More pressure: the weirds go, then message bytes.
        for _ in 0..3 {
            o.send(batch(500), 0, &tx);
        }
        assert!(o.dropped_by_class[1] > 0);
        // A big batch of chunks and rows over the bound forces the message
        // bytes out; the message ends later.
        let mut b3: Vec<Record> = (0..600).map(|_| data("Cm", 1, 1)).collect();
        b3.extend((0..600).map(|_| data("Ck", 2, 1)));
        o.send(b3, 0, &tx);
        assert!(o.email_bytes_dropped > 0);
        o.send(vec![meta("Cm", 1, 750), meta("Ck", 2, 600)], 0, &tx);
        // Ck-1's chunk was still waiting too: its metadata (already
        // queued) is marked as well.
        assert_eq!(o.messages_marked, 3);
        let mut seen = Vec::new();
        let reader = std::thread::spawn(move || {
            rx.iter()
                .flat_map(|b| b.records)
                .filter_map(|r| match r {
                    Record::EmailMeta(m) => Some((m.uid.clone(), m.n, m.complete)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        o.flush(Vec::new(), 0, &tx);
        drop(tx);
        seen.extend(reader.join().unwrap());
        // Every message lost bytes and says so.
        assert_eq!(
            seen,
            vec![
                ("Ck".to_string(), 1, false),
                ("Cm".to_string(), 1, false),
                ("Ck".to_string(), 2, false)
            ]
        );
        assert_eq!(o.dropped_by_class[5], 0, "metadata is shed last");
    }

    #[test]
    fn outbox_flush_waits_and_loses_nothing() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, false);
        o.send(batch(2), 0, &tx);
        o.send(batch(3), 0, &tx);
        let reader =
            std::thread::spawn(move || rx.iter().map(|b| b.records.len()).collect::<Vec<_>>());
        o.flush(batch(4), 0, &tx);
        drop(tx);
        assert_eq!(reader.join().unwrap(), vec![2, 3, 4]);
        assert_eq!(o.dropped, 0);
    }

    #[test]
    fn outbox_bounds_its_backlog_and_the_queue_in_bytes() {
        // The budget takes one batch of 1000 bytes; the backlog 2500.
        let (tx, rx) = bounded::<RecordBatch>(64);
        let budget = Arc::new(QueueBudget::new(1000));
        let mut o = RecordOutbox::new(1000, false, budget.clone(), 2500, 1 << 20);
        assert_eq!(o.send(batch(3), 1000, &tx), 0);
        assert_eq!(budget.inflight(), 1000);
        // The channel has room, the budget has not: into the backlog.
        assert_eq!(o.send(batch(4), 1000, &tx), 0);
        assert_eq!(o.send(batch(5), 1000, &tx), 0);
        assert_eq!(rx.len(), 1);
        // Past 2500 bytes the backlog sheds, class by class.
        let shed = o.send(batch(6), 1000, &tx);
        assert!(shed > 0, "shed by bytes although far below 1000 batches");
        assert_eq!(o.dropped_by_class[1], shed, "weird rows (no events here)");
        // The collector writes the first batch: the next one goes.
        let b = rx.recv().unwrap();
        budget.release(b.bytes);
        assert_eq!(budget.inflight(), 0);
        assert_eq!(o.send(batch(1), 10, &tx), 0);
        assert_eq!(rx.len(), 1, "sent once the budget had room");
    }

    #[test]
    fn outbox_block_policy_waits_instead_of_dropping() {
        let (tx, rx) = bounded::<RecordBatch>(1);
        let mut o = outbox(1, true);
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            rx.iter().map(|b| b.records.len()).sum::<usize>()
        });
        for n in 1..=5 {
            assert_eq!(o.send(batch(n), 0, &tx), 0);
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 15);
        assert_eq!(o.dropped, 0);
    }
}
