//! Imperfect captures: what a sensor really sees. [`generate_imperfect`]
//! runs the ordinary generator and passes its packets through a filter
//! that loses handshake packets, injects stray packets from "earlier
//! connections" before a session's SYN, or cuts the capture's beginning
//! (a sensor started mid-traffic), and reports for every connection what
//! was lost ([`FlowTruth`]).
//!
//! Sessions are chosen per connection by a hash of its 4-tuple and the
//! seed, so the same configuration always damages the same connections.
//!
//! This file holds what a caller sees (the options, the truth, the entry
//! points); `filter` is the packet filter itself.

mod filter;

use filter::imperfect;

use crate::session::Span;
use crate::{pcap, GenConfig, GenStats, MessageTruth, Protocol};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::IpAddr;
use std::rc::Rc;

/// What to do to the capture. Percentages are of connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imperfections {
    /// Drop the client's SYN (and its retransmissions); the SYN-ACK and
    /// everything after stay. A sensor (and Zeek) analyse such sessions in
    /// full.
    pub drop_syn_percent: u8,
    /// Drop both the SYN and the SYN-ACK: no handshake at all.
    pub drop_handshake_percent: u8,
    /// Before the SYN, a packet from an earlier connection on the same
    /// 4-tuple: a pure ACK, or (every other chosen session) a 6-byte data
    /// segment, from the client, whose sequence number does not fit the
    /// new connection. The session itself is complete.
    pub stray_before_syn_percent: u8,
    /// Leave out the capture's first this many packets (a sensor started
    /// mid-traffic); see [`count_packets`] to cut at a fraction.
    pub skip_packets: u64,
}

/// What the capture holds of one connection (one per connection, in the
/// order of their first packet in the uncut traffic; a 4-tuple reused by a
/// later session ([`crate::Quirks`]) gives one per session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTruth {
    /// Client (originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server (responder) address and port.
    pub resp: (IpAddr, u16),
    /// The client's SYN is in the capture.
    pub syn_captured: bool,
    /// The server's SYN-ACK is in the capture.
    pub syn_ack_captured: bool,
    /// A stray packet was injected before the SYN.
    pub stray_before_syn: bool,
    /// Packets of the connection in the capture (stray packet excluded).
    pub packets_captured: u64,
    /// Client payload bytes sent before the first client payload byte in
    /// the capture (cut away): the head of the client's stream a sensor
    /// never sees. 0 when nothing was cut. All of it when no client data
    /// is in the capture.
    pub orig_bytes_unseen: u64,
    /// Likewise for the server's stream.
    pub resp_bytes_unseen: u64,
    /// Client payload bytes sent in total.
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    /// Packets of the connection cut away with the capture's beginning.
    pub packets_cut: u64,
}

/// What a sensor can know of one message of an imperfect capture, and so
/// what it should report in the extraction JSON (see
/// [`MessageCapture::expect`]).
///
/// A message's *data start* is the point from which a sensor can attribute
/// every following byte to it: for SMTP `DATA` the server's `354` reply and
/// the first data byte; for `BDAT` the transaction's `MAIL FROM` and the
/// first chunk (a `BDAT n LAST` seen mid-stream may follow chunks that were
/// cut off, so a chunk alone is not a start); for POP3 the `RETR`/`TOP`
/// command, the `+OK` status line and the first data byte. Missing bytes are counted on the wire: the bytes of the
/// message's transfer (dot-stuffed lines before the final `.` line; BDAT
/// chunk payloads) in no captured packet. That is what a sensor can count
/// (TCP sequence numbers); for DATA and POP3 a lost line that began with a
/// `.` had one more byte on the wire than in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The data start and every byte up to the end of the transfer are in
    /// the capture: the message is extracted byte for byte (the `.eml`
    /// equals [`MessageTruth::bytes`]), `complete: true`,
    /// `missing_bytes: 0`. (Its envelope may still be unknown when the
    /// `MAIL FROM` was cut: [`MessageCapture::start_captured`].)
    Exact,
    /// The data start is in the capture, but `missing_bytes` bytes of the
    /// data were in packets left out (content gaps): `complete: false`,
    /// `missing_bytes` equal to this.
    Incomplete { missing_bytes: u64 },
    /// The data start was cut off (before the capture began) but some later
    /// data byte is in the capture: the sensor cannot know where the
    /// message began nor how much of it it missed. If it reports the
    /// message at all, then as a tail: `complete: false`, `partial: true`
    /// (`missing_bytes` unknown, `null` or a lower bound). Never
    /// `complete: true`.
    Tail,
    /// No data byte is in the capture: there is nothing to extract.
    NotCaptured,
}

/// Where one message's transfer is in an imperfect capture (delivered with
/// the message by [`generate_imperfect_with_truth`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageCapture {
    /// The command that starts the transaction is in the capture: SMTP
    /// `MAIL FROM`, POP3 `RETR`/`TOP`.
    pub start_captured: bool,
    /// The data start is in the capture (see [`Expect`]).
    pub data_start_captured: bool,
    /// What ends the transfer is in the capture: the server's reply to
    /// the end of data (SMTP), the terminating `.` line (POP3).
    pub end_captured: bool,
    /// The whole transfer, from the starting command to its end, is in the
    /// capture (start, data start, every data byte, end).
    pub fully_captured: bool,
    /// Bytes of the message's transfer on the wire (see [`Expect`]).
    pub data_bytes: u64,
    /// Of those, bytes sent before the capture's first packet of the
    /// connection's carrying direction (cut off).
    pub bytes_cut: u64,
    /// Of those, bytes in packets left out after the capture began
    /// (content gaps, [`GenConfig::gap_percent`]).
    pub bytes_in_gaps: u64,
    /// The capture begins inside this message's session: packets of its
    /// connection were cut away ([`Imperfections::skip_packets`]).
    pub session_cut: bool,
    /// What the sensor should report.
    pub expect: Expect,
}

/// One message of [`generate_imperfect_with_truth`]: what was sent and what
/// the capture holds of it.
#[derive(Debug)]
pub struct ImperfectMessageTruth<'a> {
    pub message: MessageTruth<'a>,
    pub capture: MessageCapture,
}

/// Totals and per-connection truth of [`generate_imperfect`].
#[derive(Clone, Debug, Default)]
pub struct ImperfectStats {
    /// The generator's own totals (of the traffic before the filter).
    pub gen: GenStats,
    pub packets_written: u64,
    pub packets_dropped: u64,
    pub stray_packets: u64,
    pub flows: Vec<FlowTruth>,
}

impl ImperfectStats {
    /// The truth of the connection `orig` → `resp` (the first, when the
    /// 4-tuple was reused).
    pub fn flow(&self, orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Option<&FlowTruth> {
        self.flows.iter().find(|f| f.orig == orig && f.resp == resp)
    }

    /// Whether a message of the connection (`MessageTruth::orig`/`resp`)
    /// can be complete in the capture: the head of the stream that carries
    /// it (the client's for SMTP, the server's for POP3) was not cut.
    pub fn message_fully_captured(&self, m: &MessageTruth<'_>) -> bool {
        self.flow(m.orig, m.resp).is_some_and(|f| match m.protocol {
            crate::Protocol::Smtp => f.orig_bytes_unseen == 0,
            crate::Protocol::Pop3 => f.resp_bytes_unseen == 0,
            crate::Protocol::Imap if m.imap.is_some_and(|i| i.append) => f.orig_bytes_unseen == 0,
            crate::Protocol::Imap => f.resp_bytes_unseen == 0,
        })
    }
}

/// Packets [`crate::generate`] writes for `cfg` (to cut a capture at a
/// fraction of its packets).
pub fn count_packets(cfg: &GenConfig) -> io::Result<u64> {
    Ok(crate::generate(cfg, io::sink())?.packets)
}

/// Generates `cfg`'s traffic with `imp` applied, writing a classic pcap to
/// `w`; `on_message` is called for every message as in
/// [`crate::generate_with_truth`] (what was sent; see
/// [`ImperfectStats::message_fully_captured`] for what the capture holds,
/// and [`generate_imperfect_with_truth`] for each message's exact fate).
pub fn generate_imperfect<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
) -> io::Result<ImperfectStats> {
    imperfect(cfg, imp, w, Some(on_message), None)
}

/// Like [`generate_imperfect`] (the same capture), but `on_message` gets
/// each message with what the capture holds of it
/// ([`ImperfectMessageTruth`]). It is called once every packet of the
/// message's connection has passed the filter (at the connection's close,
/// at the next connection on its 4-tuple, or at the end), so in the order
/// the connections end; within a connection in message order. The bytes of
/// the messages of running connections are held until then.
pub fn generate_imperfect_with_truth<W: Write>(
    cfg: &GenConfig,
    imp: &Imperfections,
    w: W,
    on_message: &mut dyn FnMut(&ImperfectMessageTruth),
) -> io::Result<ImperfectStats> {
    imperfect(cfg, imp, w, None, Some(on_message))
}
