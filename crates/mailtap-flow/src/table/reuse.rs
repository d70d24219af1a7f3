//! Whether a SYN on an existing connection's 4-tuple starts a new
//! connection (Zeek's `IsReuse`).

use super::*;

/// Zeek's `tcp_connection_linger`: a SYN that reuses a closed connection's
/// 4-tuple sooner than this after its last packet is a premature reuse.
pub(super) const CONNECTION_LINGER: i64 = 5_000_000_000;

/// Whether a SYN (or SYN-ACK) on an existing connection starts a new one
/// (Zeek's `IsReuse`), and the weird to log on the old one.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reuse {
    No,
    Yes(Option<Weird>),
}

pub(super) fn reuse_of<A>(flow: &Flow<A>, seg: &Segment<'_>) -> Reuse {
    use crate::conn::EndpointState as St;
    let fl = seg.flags;
    if fl & flags::SYN == 0 {
        return Reuse::No;
    }
    let [orig, resp] = &flow.ep;
    // Only an initial SYN reuses a connection, or a SYN-ACK when the
    // originator never sent (a half connection): it is then compared with
    // the responder.
    let first = if fl & flags::ACK != 0 {
        if orig.state != St::Inactive {
            return Reuse::No;
        }
        resp
    } else {
        orig
    };
    let closed = orig.did_close() || resp.did_close();
    let reset = orig.state == St::Reset || resp.state == St::Reset;
    if !closed {
        if first.start_seq == Some(seg.seq) {
            // A retransmission.
            return Reuse::No;
        }
        if fl & flags::ACK == 0
            && first.state == St::SynAckSent
            && resp.state == St::Inactive
            && resp.start_seq == Some(seg.seq)
        {
            // SYN and SYN-ACK seen in reverse order.
            return Reuse::No;
        }
        Reuse::Yes(Some(if first.state == St::SynSent {
            Weird::SynSeqJump
        } else {
            Weird::ActiveConnectionReuse
        }))
    } else if (orig.is_active() || resp.is_active()) && !reset {
        Reuse::Yes(Some(Weird::ActiveConnectionReuse))
    } else if seg.ts.0.saturating_sub(flow.last_ts.0) < CONNECTION_LINGER && !reset {
        Reuse::Yes(Some(Weird::PrematureConnectionReuse))
    } else {
        Reuse::Yes(None)
    }
}
