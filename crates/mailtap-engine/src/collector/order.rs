//! The record batches the shards send, and the stable order `mailtap
//! read` writes them in whatever the shard count (capture block by
//! block, and within a block a key of each record's connection and time).

use super::*;

/// Records on their way to the collector, with the time the shard sent
/// them (for the emitted-to-written latency).
pub(crate) struct RecordBatch {
    pub(crate) emitted: Instant,
    pub(crate) records: Vec<Record>,
    /// Approximate bytes the batch holds (the records'
    /// [`Record::approx_bytes`], summed as they were made, and the order
    /// keys): what it counts against the [`QueueBudget`].
    pub(crate) bytes: u64,
    /// `mailtap read`: where the batch belongs in the run's stable order
    /// (see [`Merger`]); `None` (live) writes it as it comes.
    pub(crate) order: Option<BatchOrder>,
}

impl RecordBatch {
    /// `bytes`: the records' approximate size ([`mailtap_core::Output::bytes`]).
    pub(crate) fn now(records: Vec<Record>, bytes: usize) -> Self {
        RecordBatch {
            emitted: Instant::now(),
            records,
            bytes: bytes as u64,
            order: None,
        }
    }

    /// The records `shard` produced for capture block `seq` ([`FINAL`]
    /// for the end of its input), put in their stable order; `bytes` is
    /// their approximate size. `part`: only a part of the block's records,
    /// sent early because they grew large; more follow.
    pub(crate) fn ordered(
        shard: usize,
        seq: u64,
        records: Vec<Record>,
        bytes: usize,
        part: bool,
    ) -> Self {
        let (records, keys) = order_records(records);
        let bytes = (bytes + keys.capacity() * std::mem::size_of::<OrderKey>()) as u64;
        RecordBatch {
            emitted: Instant::now(),
            records,
            bytes,
            order: Some(BatchOrder {
                shard,
                seq,
                keys,
                part,
            }),
        }
    }

    fn part(&self) -> bool {
        self.order.as_ref().is_some_and(|o| o.part)
    }
}

/// The block sequence number of a shard's last batch: what it flushed at
/// the end of input (or nothing, if it panicked).
pub(crate) const FINAL: u64 = u64::MAX;

/// A batch's place in the stable order of a `mailtap read`.
pub(crate) struct BatchOrder {
    pub(crate) shard: usize,
    /// The capture block the records came from (every shard sends one
    /// batch per block, empty or not, then one [`FINAL`] batch).
    pub(crate) seq: u64,
    /// One key per record, ascending.
    pub(crate) keys: Vec<OrderKey>,
    /// A part of the block's records sent early (they grew past the batch
    /// size in bytes); the shard's last batch for the block has `false`.
    pub(crate) part: bool,
}

/// A record's sort key within one block: its connection's earliest
/// record time in the block and a hash of the connection's uid (of the
/// record's content when it has no uid). Every record of a connection is
/// made by one shard, in an order that does not depend on the shard count,
/// so the key does not either.
pub(crate) type OrderKey = (Timestamp, u64);

fn record_uid(r: &Record) -> Option<&str> {
    match r {
        Record::Conn(c) => Some(&c.uid),
        Record::Smtp(c) => Some(&c.uid),
        Record::Weird(c) => c.uid.as_deref(),
        Record::Event(c) => Some(&c.uid),
        Record::Pop3(c) => Some(&c.uid),
        Record::Imap(c) => Some(&c.uid),
        Record::File(c) => c.uid.as_deref(),
        Record::Ssl(c) => Some(&c.uid),
        Record::X509(_) => None,
        Record::EmailData(c) => Some(&c.uid),
        Record::EmailMeta(c) => Some(&c.uid),
    }
}

fn record_ts(r: &Record) -> Option<Timestamp> {
    Some(match r {
        Record::Conn(c) => c.ts,
        Record::Smtp(c) => c.ts,
        Record::Weird(c) => c.ts,
        Record::Event(c) => c.ts,
        Record::Pop3(c) => c.ts,
        Record::Imap(c) => c.ts,
        Record::File(c) => c.ts,
        Record::Ssl(c) => c.ts,
        Record::X509(c) => c.ts,
        Record::EmailMeta(c) => c.ts,
        Record::EmailData(_) => return None,
    })
}

fn hash_of(f: impl FnOnce(&mut std::hash::DefaultHasher)) -> u64 {
    use std::hash::Hasher;
    // DefaultHasher::new() has fixed keys: the same in every run.
    let mut h = std::hash::DefaultHasher::new();
    f(&mut h);
    h.finish()
}

/// Sorts one shard's records of one block by [`OrderKey`], keeping the
/// production order of each connection's records (a stable sort on a key
/// shared by the whole connection), and returns the keys.
pub(crate) fn order_records(records: Vec<Record>) -> (Vec<Record>, Vec<OrderKey>) {
    use std::hash::Hash;
    if records.is_empty() {
        return (records, Vec::new());
    }
    let mut groups: Vec<OrderKey> = Vec::new();
    let mut group_of: Vec<u32> = Vec::with_capacity(records.len());
    {
        let mut index: ahash::AHashMap<&str, u32> = ahash::AHashMap::default();
        let mut prev: Option<(&str, u32)> = None;
        for r in &records {
            let g = match record_uid(r) {
                Some(u) => match prev {
                    Some((p, g)) if p == u => g,
                    _ => {
                        let g = *index.entry(u).or_insert_with(|| {
                            groups.push((Timestamp(i64::MAX), hash_of(|h| u.hash(h))));
                            groups.len() as u32 - 1
                        });
                        prev = Some((u, g));
                        g
                    }
                },
                None => {
                    let h = hash_of(|h| match r {
                        Record::X509(x) => x.fingerprint.hash(h),
                        Record::Weird(w) => (w.name, &w.addl, w.id).hash(h),
                        Record::File(f) => f.fuid.hash(h),
                        _ => {}
                    });
                    groups.push((Timestamp(i64::MAX), h));
                    groups.len() as u32 - 1
                }
            };
            if let Some(ts) = record_ts(r) {
                let k = &mut groups[g as usize].0;
                *k = (*k).min(ts);
            }
            group_of.push(g);
        }
    }
    // Groups in key order (few per block), then every record placed at
    // its group's next slot: linear in the records, no comparison sort.
    let mut order: Vec<u32> = (0..groups.len() as u32).collect();
    order.sort_unstable_by_key(|&g| (groups[g as usize], g));
    if order.iter().enumerate().all(|(i, &g)| i as u32 == g)
        && group_of.windows(2).all(|w| w[0] <= w[1])
    {
        let keys = group_of.iter().map(|&g| groups[g as usize]).collect();
        return (records, keys);
    }
    let mut count = vec![0u32; groups.len()];
    for &g in &group_of {
        count[g as usize] += 1;
    }
    let mut start = vec![0u32; groups.len()];
    let mut at = 0u32;
    for &g in &order {
        start[g as usize] = at;
        at += count[g as usize];
    }
    let mut slots: Vec<Option<Record>> = (0..records.len()).map(|_| None).collect();
    for (r, &g) in records.into_iter().zip(&group_of) {
        let s = &mut start[g as usize];
        slots[*s as usize] = Some(r);
        *s += 1;
    }
    let records = slots
        .into_iter()
        .map(|r| r.expect("every slot filled once"))
        .collect();
    let keys = order
        .iter()
        .flat_map(|&g| std::iter::repeat_n(groups[g as usize], count[g as usize] as usize))
        .collect();
    (records, keys)
}

/// Puts the shards' batches of a `mailtap read` into one stable order:
/// block by block (every shard sends one batch per capture block, in
/// order), and within a block by [`OrderKey`], the shards' sorted runs
/// merged. A block is written once every shard has sent its batch for it.
///
/// A block whose records grew large in bytes comes in parts (batches
/// with `part` set, then the shard's last batch for the block): the parts
/// of the block being written (the lowest block some shard has not sent
/// whole) are written as they arrive, so a shard's huge block streams
/// through instead of piling up here; that block's rows are then in
/// arrival order (each connection's own records still in the order they
/// were made), the only departure from the stable order.
///
/// Memory: a shard can be ahead of the slowest by at most the capture
/// blocks in flight (`capture.blocks_per_worker` × workers + 1; the reader
/// waits for a block to come back before reading on), and what it sends
/// counts against the [`QueueBudget`], which makes it wait once the
/// budget is spent (the shard the order waits for never waits while
/// records are held back for it, and its parts are written as they come).
/// A shard that panics sends its [`FINAL`] batch as it unwinds, so it
/// holds nothing back.
pub(crate) struct Merger {
    queues: Vec<std::collections::VecDeque<RecordBatch>>,
    /// Per shard: the block after the last one it sent whole ([`FINAL`]
    /// once it sent its last batch).
    next: Vec<u64>,
    /// Batches held now (for metrics and tests).
    held: usize,
    /// Their bytes.
    held_bytes: u64,
}

impl Merger {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1);
        Merger {
            queues: (0..n).map(|_| Default::default()).collect(),
            next: vec![0; n],
            held: 0,
            held_bytes: 0,
        }
    }

    pub(crate) fn push(&mut self, b: RecordBatch) {
        let (shard, seq) = b.order.as_ref().map_or((0, FINAL), |o| (o.shard, o.seq));
        let last = self.queues.len() - 1;
        let shard = shard.min(last);
        if !b.part() {
            self.next[shard] = seq.saturating_add(1);
        }
        self.held += 1;
        self.held_bytes += b.bytes;
        self.queues[shard].push_back(b);
    }

    /// The lowest block not written yet: every shard has sent every block
    /// before it whole, and they are written (`pop` is called until it
    /// returns `None` after every `push`).
    pub(crate) fn current(&self) -> u64 {
        self.next.iter().copied().min().unwrap_or(FINAL)
    }

    /// Bytes of the batches held now.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// The next records to write: a part of the block being written, or
    /// the next block's records in order once every shard has sent its
    /// batch for it (`drain`: take what there is, the shards are gone).
    /// Also the batches' send times and bytes.
    pub(crate) fn pop(&mut self, drain: bool) -> Option<(Vec<Record>, Vec<Instant>, u64)> {
        let seq_of = |b: &RecordBatch| b.order.as_ref().map_or(FINAL, |o| o.seq);
        let lowest = self
            .queues
            .iter()
            .filter_map(|q| q.front())
            .map(seq_of)
            .min()?;
        let writable = if drain { lowest } else { self.current() };
        for q in &mut self.queues {
            if q.front().is_some_and(|b| b.part() && seq_of(b) <= writable) {
                let b = q.pop_front().expect("front checked");
                self.held -= 1;
                self.held_bytes -= b.bytes;
                return Some((b.records, vec![b.emitted], b.bytes));
            }
        }
        if !drain && self.queues.iter().any(|q| q.is_empty()) {
            return None;
        }
        let seq = lowest;
        let mut runs: Vec<RecordBatch> = Vec::with_capacity(self.queues.len());
        for q in &mut self.queues {
            if q.front().is_some_and(|b| seq_of(b) == seq && !b.part()) {
                runs.push(q.pop_front().expect("front checked"));
            }
        }
        if runs.is_empty() {
            // Only parts of a later block at the fronts (drain only).
            return None;
        }
        self.held -= runs.len();
        let bytes: u64 = runs.iter().map(|b| b.bytes).sum();
        self.held_bytes -= bytes;
        let emitted = runs.iter().map(|b| b.emitted).collect();
        Some((merge_runs(runs), emitted, bytes))
    }
}

/// Merges sorted runs by key (ties: the lower shard first).
fn merge_runs(mut runs: Vec<RecordBatch>) -> Vec<Record> {
    runs.retain(|b| !b.records.is_empty());
    match runs.len() {
        0 => return Vec::new(),
        1 => return runs.pop().expect("one run").records,
        _ => {}
    }
    let total = runs.iter().map(|b| b.records.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<_> = runs
        .into_iter()
        .map(|b| {
            let keys = b.order.map(|o| o.keys).unwrap_or_default();
            keys.into_iter().zip(b.records).peekable()
        })
        .collect();
    loop {
        // The smallest (key, run) head; runs are in shard order, so a tie
        // goes to the lower shard.
        let mut heads = iters
            .iter_mut()
            .enumerate()
            .filter_map(|(j, it)| it.peek().map(|&(k, _)| (k, j)));
        let Some(mut best) = heads.next() else { break };
        let mut second: Option<(OrderKey, usize)> = None;
        for h in heads {
            if h < best {
                second = Some(best);
                best = h;
            } else if second.is_none_or(|s| h < s) {
                second = Some(h);
            }
        }
        // Take the stretch of the best run that stays before the next
        // run's head (one comparison per record).
        let i = best.1;
        let it = &mut iters[i];
        while let Some(&(k, _)) = it.peek() {
            if second.is_some_and(|s| (k, i) > s) {
                break;
            }
            out.push(it.next().expect("peeked").1);
        }
    }
    out
}
