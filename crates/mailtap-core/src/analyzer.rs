//! The seam between the flow layer and protocol analyzers.
//!
//! The flow layer owns each connection and calls a [`TcpAnalyzer`] with
//! reassembled, in-order bytes per direction, content gaps, end-of-stream and
//! connection end. The analyzer answers through a [`ConnCtx`]: records and
//! events go to the shard's [`Output`] batch, weirds are deduplicated per
//! connection, and service confirmation and the `X` history marker land in
//! the connection's [`ConnAnnotations`] for conn.log.

use crate::{ConnId, Event, EventRecord, Record, Timestamp, Weird, WeirdRecord};

/// A protocol analyzer attached to one TCP connection.
pub trait TcpAnalyzer: Send {
    /// In-order payload of one direction. `data` is borrowed from the
    /// packet or the reassembly buffer and must not be kept.
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]);
    /// `len` bytes of one direction will never arrive (Zeek content gap).
    fn gap(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, len: u64);
    /// One direction has ended (FIN or RST); no more data will follow on it.
    fn eof(&mut self, _cx: &mut ConnCtx<'_>, _is_orig: bool) {}
    /// The connection is over (closed, timed out, evicted or end of input):
    /// flush everything pending. Called exactly once.
    fn done(&mut self, cx: &mut ConnCtx<'_>);
    /// True once the analyzer has given up on the connection; the flow
    /// layer then stops delivering to it (but still calls `done`).
    fn disabled(&self) -> bool {
        false
    }
    /// Called once, right after the analyzer is attached, when the flow
    /// layer did not see the connection's start (neither SYN nor SYN-ACK:
    /// the capture began in the middle of the connection) and
    /// `flow.analyze_partial` is on. The first bytes delivered in each
    /// direction may then begin in the middle of a line, a command, a reply
    /// or a message: the analyzer must find a point where it can be sure of
    /// the dialogue's state before it analyses (and say what it could not
    /// see). Default: nothing.
    fn start_midstream(&mut self) {}
    /// True once nothing more can be learned from the connection's payload
    /// (a TLS handshake is over, or the session switched to TLS that is not
    /// analysed) while the analyzer still has its log rows to write at
    /// `done`. The flow layer may then bypass the rest of the payload: it
    /// stops delivering and, in live capture, asks the kernel to count the
    /// connection's packets instead of handing them over.
    fn bypass_ready(&self) -> bool {
        false
    }
}

/// What an analyzer leaves on its connection for conn.log.
#[derive(Clone, Debug, Default)]
pub struct ConnAnnotations {
    /// Confirmed services, in confirmation order.
    pub service: Vec<&'static str>,
    /// A "limit reached" weird was raised: conn.log history gets an `X`.
    pub limit_reached: bool,
    /// Weirds already logged for this connection (Zeek logs a name once
    /// per connection).
    pub weirds_seen: Vec<Weird>,
    /// Time of the connection's first packet (Zeek `c$start_time`; part of
    /// file handles). Set by the flow layer.
    pub start_time: crate::Timestamp,
}

/// Counters every shard keeps about what it produced or dropped.
#[derive(Clone, Debug, Default)]
pub struct OutputCounters {
    pub records: u64,
    pub events: u64,
    pub weirds: u64,
    pub weirds_suppressed: u64,
}

/// A shard's batch of records on its way to the collector.
#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<Record>,
    /// When false, events are not built at all (no allocation per line).
    pub events_enabled: bool,
    /// When true, analyzers stream every message's bytes as
    /// `Record::EmailData` and end it with `Record::EmailMeta`.
    pub extract_enabled: bool,
    pub counters: OutputCounters,
    /// Approximate heap bytes of `records` ([`Record::approx_bytes`]), so
    /// that a shard can hand its batch over before it grows large.
    pub bytes: usize,
    /// The shard's budget for the input its analyzers buffer (partial
    /// lines, MIME headers), shared with its flow table's reassembly.
    pub buffers: crate::BufferBudget,
}

impl Output {
    pub fn new(events_enabled: bool) -> Self {
        Output {
            records: Vec::with_capacity(256),
            events_enabled,
            extract_enabled: false,
            counters: OutputCounters::default(),
            bytes: 0,
            buffers: crate::BufferBudget::default(),
        }
    }
    pub fn push(&mut self, r: Record) {
        self.bytes += r.approx_bytes();
        match r {
            Record::Event(_) => self.counters.events += 1,
            Record::Weird(_) => self.counters.weirds += 1,
            _ => self.counters.records += 1,
        }
        self.records.push(r);
    }
    /// Takes the batch, leaving an empty one with the same capacity class.
    pub fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        std::mem::replace(&mut self.records, Vec::with_capacity(256))
    }
}

/// Everything an analyzer may read or touch while handling one call.
pub struct ConnCtx<'a> {
    /// Time of the packet being processed (network time).
    pub ts: Timestamp,
    pub uid: &'a str,
    pub id: &'a ConnId,
    pub out: &'a mut Output,
    pub conn: &'a mut ConnAnnotations,
}

impl ConnCtx<'_> {
    pub fn events_enabled(&self) -> bool {
        self.out.events_enabled
    }

    /// Whether messages are to be extracted (see [`crate::mail`]).
    pub fn extract_enabled(&self) -> bool {
        self.out.extract_enabled
    }

    /// Raises an event; build it lazily so nothing is allocated when the
    /// event stream is off.
    pub fn event(&mut self, make: impl FnOnce() -> Event) {
        if self.out.events_enabled {
            let event = make();
            self.out.push(Record::Event(Box::new(EventRecord {
                ts: self.ts,
                uid: self.uid.to_owned(),
                id: *self.id,
                event,
            })));
        }
    }

    /// Raises a weird tied to this connection; a name is logged once per
    /// connection, as Zeek's weird framework does by default.
    pub fn weird(&mut self, name: Weird, addl: Option<&[u8]>, source: &'static str) {
        self.push_weird(name, addl, Some(source));
    }

    /// A weird without a `source` column, as Zeek's script-level
    /// `Reporter::conn_weird(name, c)` writes it (deduplicated like
    /// [`ConnCtx::weird`]).
    pub fn weird_unsourced(&mut self, name: Weird, addl: Option<&[u8]>) {
        self.push_weird(name, addl, None);
    }

    fn push_weird(&mut self, name: Weird, addl: Option<&[u8]>, source: Option<&'static str>) {
        if self.conn.weirds_seen.contains(&name) {
            self.out.counters.weirds_suppressed += 1;
            return;
        }
        self.conn.weirds_seen.push(name);
        self.out.push(Record::Weird(Box::new(WeirdRecord {
            ts: self.ts,
            uid: Some(self.uid.to_owned()),
            id: Some(*self.id),
            name: name.name(),
            addl: addl.map(<[u8]>::to_vec),
            source,
        })));
    }

    /// A "limit reached" weird: also marks the conn.log history with `X`.
    pub fn limit_weird(&mut self, name: Weird, addl: Option<&[u8]>, source: &'static str) {
        self.conn.limit_reached = true;
        self.weird(name, addl, source);
    }

    /// Confirms a protocol on this connection (conn.log `service`).
    pub fn confirm(&mut self, service: &'static str) {
        if !self.conn.service.contains(&service) {
            self.conn.service.push(service);
        }
    }

    /// Emits a log record.
    pub fn emit(&mut self, r: Record) {
        self.out.push(r);
    }
}
