//! Moving packets to the worker that owns their flow.
//!
//! When the capture does not keep both directions of a flow on one queue,
//! a worker copies each packet of another shard's flow into a handoff
//! buffer for that shard's worker. A buffer goes over the owner's bounded
//! inbox when it is full and at the end of every receive batch; the owner
//! processes its packets and sends the buffer back to its sender's pool.
//! Each worker has at most `live.handoff_buffers` buffers of
//! `live.handoff_buffer_bytes`: when all are in flight it waits up to
//! [`HANDOFF_WAIT`] for one to come back, then drops the packet
//! (`handoff_dropped`). A worker whose destination inbox is full works
//! through its own inbox while it waits, so two workers can never wait on
//! each other.

use crate::live::worker::Worker;
use crate::outbox::RECORD_BATCH;
use crate::shard::process_packet;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use mailtap_core::Timestamp;
use mailtap_wire::source::LinkType;
use std::thread;
use std::time::{Duration, Instant};

/// How long a worker waits for a handoff buffer to come back before it
/// drops the packet (`handoff_dropped`): longer than an owner's poll.
const HANDOFF_WAIT: Duration = Duration::from_millis(30);

/// Packets for another shard, copied into one buffer.
pub(super) struct Handoff {
    data: Vec<u8>,
    pkts: Vec<HandoffPacket>,
    /// The pool of the worker that filled it; the receiver sends it back.
    home: Sender<Handoff>,
}

#[derive(Clone, Copy)]
pub(super) struct HandoffPacket {
    ts: Timestamp,
    link: LinkType,
    off: u32,
    len: u32,
}

/// Handoff channels: worker i receives on the i-th receiver; every other
/// worker holds a sender to it. Each holds `buffers` (every sender's whole
/// pool) per worker.
pub(super) fn inboxes(n: usize, buffers: usize) -> (Vec<Sender<Handoff>>, Vec<Receiver<Handoff>>) {
    let mut inbox_tx = Vec::with_capacity(n);
    let mut inbox_rx = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = bounded::<Handoff>(buffers.max(1) * n);
        inbox_tx.push(tx);
        inbox_rx.push(rx);
    }
    (inbox_tx, inbox_rx)
}

impl Worker {
    /// Copies a packet into the handoff batch for `owner`.
    pub(super) fn hand_off(&mut self, owner: usize, ts: Timestamp, link: LinkType, data: &[u8]) {
        if self.to[owner].is_none() {
            self.local.handoff_dropped += 1;
            return;
        }
        let full = self.outbox[owner]
            .as_ref()
            .is_some_and(|h| h.data.len() + data.len() > h.data.capacity());
        if full {
            self.send_outbox(owner);
        }
        if self.outbox[owner].is_none() {
            match self.take_buffer() {
                Some(h) => self.outbox[owner] = Some(h),
                None => {
                    self.local.handoff_dropped += 1;
                    return;
                }
            }
        }
        let h = self.outbox[owner].as_mut().expect("outbox filled above");
        if h.data.len() + data.len() > h.data.capacity() {
            // Larger than a whole buffer (jumbo beyond the buffer size).
            self.local.handoff_dropped += 1;
            return;
        }
        let off = h.data.len() as u32;
        h.data.extend_from_slice(data);
        h.pkts.push(HandoffPacket {
            ts,
            link,
            off,
            len: data.len() as u32,
        });
        self.local.handed_off += 1;
    }

    /// A free handoff buffer: a returned one, or a new one while under the
    /// limit. When every buffer is in flight, waits up to [`HANDOFF_WAIT`]
    /// for an owner to return one (working through our own inbox
    /// meanwhile, so two workers waiting on each other both progress)
    /// rather than drop the packet: an owner returns buffers only after
    /// its capture poll, which may wait [`POLL_TIMEOUT`](super::worker::POLL_TIMEOUT) on a quiet queue.
    fn take_buffer(&mut self) -> Option<Handoff> {
        if let Some(h) = self.free_buffer() {
            return Some(h);
        }
        let deadline = Instant::now() + HANDOFF_WAIT;
        loop {
            self.drain_inbox();
            match self.pool_rx.recv_timeout(Duration::from_micros(500)) {
                Ok(mut h) => {
                    h.data.clear();
                    h.pkts.clear();
                    return Some(h);
                }
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => {}
            }
        }
    }

    /// A returned buffer, or a new one while under the limit.
    fn free_buffer(&mut self) -> Option<Handoff> {
        if let Ok(mut h) = self.pool_rx.try_recv() {
            h.data.clear();
            h.pkts.clear();
            return Some(h);
        }
        if self.allocated < self.max_buffers {
            self.allocated += 1;
            return Some(Handoff {
                data: Vec::with_capacity(self.buffer_bytes),
                pkts: Vec::with_capacity(self.buffer_bytes / 64),
                home: self.pool_tx.clone(),
            });
        }
        None
    }

    pub(super) fn send_outboxes(&mut self) {
        for owner in 0..self.n {
            if self.outbox[owner].is_some() {
                self.send_outbox(owner);
            }
        }
    }

    /// Sends one outbox. When the owner's inbox is full, works through our
    /// own inbox while waiting, so two workers sending to each other can
    /// never wait on each other.
    fn send_outbox(&mut self, owner: usize) {
        let Some(mut h) = self.outbox[owner].take() else {
            return;
        };
        loop {
            let Some(tx) = self.to[owner].as_ref() else {
                self.local.handoff_dropped += h.pkts.len() as u64;
                return;
            };
            match tx.try_send(h) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    h = back;
                    if !self.drain_inbox() {
                        thread::yield_now();
                    }
                }
                Err(TrySendError::Disconnected(back)) => {
                    // The owner's thread is gone (it panicked).
                    self.local.handoff_dropped += back.pkts.len() as u64;
                    self.to[owner] = None;
                    return;
                }
            }
        }
    }

    /// Processes every handoff waiting in our inbox; true if there was one.
    pub(super) fn drain_inbox(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.inbox.try_recv() {
                Ok(h) => {
                    any = true;
                    self.take_handoff(h);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return any,
            }
        }
    }

    pub(super) fn take_handoff(&mut self, h: Handoff) {
        for p in &h.pkts {
            let data = &h.data[p.off as usize..(p.off + p.len) as usize];
            self.last_ts = self.last_ts.max(p.ts);
            process_packet(
                &mut self.table,
                &mut self.out,
                p.ts,
                p.link,
                data,
                self.verify,
            );
            if self.out.bytes >= self.batch_bytes {
                self.send_records();
            }
        }
        self.local.handoff_received += h.pkts.len() as u64;
        let home = h.home.clone();
        // The sender may have finished already; then the buffer is freed.
        let _ = home.try_send(h);
        if self.out.records.len() >= RECORD_BATCH || self.out.bytes >= self.batch_bytes {
            self.send_records();
        }
    }
}
