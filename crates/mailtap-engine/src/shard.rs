//! What a shard does with one packet, the same for files and live capture.

use crate::factory::MailAnalyzers;
use mailtap_core::{Output, Timestamp};
use mailtap_flow::{FlowTable, Segment};
use mailtap_wire::decode::{decode, Decoded, TcpPacket};
use mailtap_wire::source::LinkType;

/// Decodes a packet the shard owns and feeds its TCP segment to the flow
/// table. `verify` checks IPv4/TCP checksums; a bad one is marked on the
/// segment (the flow table counts and ignores it, as Zeek does).
#[inline]
pub(crate) fn process_packet(
    table: &mut FlowTable<MailAnalyzers>,
    out: &mut Output,
    ts: Timestamp,
    link: LinkType,
    data: &[u8],
    verify: bool,
) {
    let (t, bad) = match decode(link, data, verify) {
        Ok(Decoded::Tcp(t)) => {
            let bad = t.checksum_ok == Some(false);
            (t, bad)
        }
        // A bad checksum found by verification, or a packet that is not
        // TCP after all (the caller decoded it once already).
        _ => match decode(link, data, false) {
            Ok(Decoded::Tcp(t)) => (t, true),
            _ => return,
        },
    };
    process_tcp(table, out, ts, &t, bad);
}

/// Feeds an already decoded TCP segment to the flow table.
#[inline]
pub(crate) fn process_tcp(
    table: &mut FlowTable<MailAnalyzers>,
    out: &mut Output,
    ts: Timestamp,
    t: &TcpPacket<'_>,
    bad_checksum: bool,
) {
    let seg = Segment {
        ts,
        src: t.src,
        dst: t.dst,
        src_port: t.src_port,
        dst_port: t.dst_port,
        seq: t.seq,
        ack: t.ack,
        flags: t.flags.bits(),
        window: t.window,
        ip_len: t.ip_len,
        payload: t.payload,
        bad_checksum,
    };
    table.process(&seg, out);
}
