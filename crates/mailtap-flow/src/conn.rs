//! Per-connection TCP state for conn.log: endpoint states, the `history`
//! string and Zeek's `conn_state` summary.

/// Zeek's TCP endpoint states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EndpointState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// TCP flag bits as on the wire.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Per-endpoint counters and state.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    pub state: EndpointState,
    pub pkts: u64,
    pub ip_bytes: u64,
    /// The endpoint's initial sequence number as Zeek keeps it: a SYN's
    /// sequence number, or one before the first packet's when that packet
    /// was not a SYN (for connection reuse checks). `None` until the
    /// endpoint sends.
    pub start_seq: Option<u32>,
}

impl Endpoint {
    /// Whether the endpoint has closed (FIN) or reset (Zeek's `did_close`).
    pub fn did_close(&self) -> bool {
        matches!(self.state, EndpointState::Closed | EndpointState::Reset)
    }

    /// Whether the endpoint has sent and not closed (Zeek's `IsActive`).
    pub fn is_active(&self) -> bool {
        self.state != EndpointState::Inactive && !self.did_close()
    }
}

/// The conn.log `history` string: upper case for the originator, lower
/// case for the responder; each letter once per direction, except the
/// counted ones (C, G, T, W, I) which repeat at 1, 10, 100, ... occurrences.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub s: String,
    seen: u64,
    counts: [[u32; 5]; 2],
}

const COUNTED: [u8; 5] = [b'c', b'g', b't', b'w', b'i'];

impl History {
    pub fn add(&mut self, letter: u8, is_orig: bool) {
        let l = letter.to_ascii_lowercase();
        let ch = if is_orig { l.to_ascii_uppercase() } else { l };
        if let Some(k) = COUNTED.iter().position(|&c| c == l) {
            let n = &mut self.counts[usize::from(!is_orig)][k];
            *n = n.saturating_add(1);
            let mut t = 1u32;
            while t < *n && t <= u32::MAX / 10 {
                t *= 10;
            }
            if t == *n {
                self.s.push(ch as char);
            }
            return;
        }
        let bit = match l {
            b'a'..=b'z' => u32::from(l - b'a') + if is_orig { 0 } else { 32 },
            _ => {
                // '^' and other markers are recorded once.
                if !self.s.as_bytes().contains(&ch) {
                    self.s.push(ch as char);
                }
                return;
            }
        };
        if self.seen & (1 << bit) == 0 {
            self.seen |= 1 << bit;
            self.s.push(ch as char);
        }
    }

    /// Adds `letter` as if it occurred `n` times.
    pub fn add_n(&mut self, letter: u8, is_orig: bool, n: u64) {
        let l = letter.to_ascii_lowercase();
        if !COUNTED.contains(&l) {
            if n > 0 {
                self.add(letter, is_orig);
            }
            return;
        }
        // Counted letters: at most one push per power of ten crossed.
        let mut left = n;
        while left > 0 {
            let k = COUNTED.iter().position(|&c| c == l).unwrap_or(0);
            let have = self.counts[usize::from(!is_orig)][k];
            if have == u32::MAX {
                return;
            }
            // The next count at which a letter is written.
            let mut t = 1u64;
            while t <= u64::from(have) {
                t *= 10;
            }
            let step = (t - u64::from(have)).min(left);
            if step > 1 {
                let n = &mut self.counts[usize::from(!is_orig)][k];
                *n = n.saturating_add((step - 1).min(u64::from(u32::MAX)) as u32);
            }
            self.add(letter, is_orig);
            left -= step;
        }
    }

    /// Adds a marker letter (such as `X`, `^`) once, without case folding.
    pub fn mark(&mut self, ch: char) {
        if !self.s.contains(ch) {
            self.s.push(ch);
        }
    }
}

/// Zeek's `conn_state` from both endpoints' states and sizes.
pub fn conn_state(
    orig: EndpointState,
    resp: EndpointState,
    orig_size: u64,
    resp_size: u64,
) -> &'static str {
    use EndpointState::*;
    let o_inactive = matches!(orig, Inactive | Partial);
    let r_inactive = matches!(resp, Inactive | Partial);
    if resp == Reset {
        if matches!(orig, SynSent | SynAckSent)
            || (orig == Reset && orig_size == 0 && resp_size == 0)
        {
            "REJ"
        } else if o_inactive {
            "RSTRH"
        } else {
            "RSTR"
        }
    } else if orig == Reset {
        if r_inactive {
            "RSTOS0"
        } else {
            "RSTO"
        }
    } else if orig == Closed && resp == Closed {
        "SF"
    } else if orig == Closed {
        if r_inactive {
            "SH"
        } else {
            "S2"
        }
    } else if resp == Closed {
        if o_inactive {
            "SHR"
        } else {
            "S3"
        }
    } else if orig == SynSent && resp == Inactive {
        "S0"
    } else if orig == Established && resp == Established {
        "S1"
    } else {
        "OTH"
    }
}

/// Updates both endpoints' states for a packet from `sender` (Zeek's TCP
/// state machine, reduced to what conn_state needs).
pub fn update_states(sender: &mut Endpoint, peer: &mut Endpoint, fl: u8, payload_len: usize) {
    use EndpointState::*;
    let syn = fl & flags::SYN != 0;
    let ack = fl & flags::ACK != 0;
    if fl & flags::RST != 0 {
        // A reset after both sides closed changes nothing (Zeek logs SF).
        if !(sender.state == Closed && peer.state == Closed) {
            sender.state = Reset;
        }
        return;
    }
    if syn {
        if sender.state == Inactive {
            sender.state = if ack { SynAckSent } else { SynSent };
        } else if ack && sender.state == SynSent {
            sender.state = SynAckSent;
        }
    } else if fl & flags::FIN == 0 {
        match sender.state {
            Inactive if ack || payload_len > 0 => sender.state = Partial,
            SynSent | SynAckSent => {
                if matches!(peer.state, SynSent | SynAckSent) {
                    sender.state = Established;
                    peer.state = Established;
                } else if peer.state == Established {
                    sender.state = Established;
                }
            }
            _ => {}
        }
    }
    if fl & flags::FIN != 0 {
        if matches!(sender.state, SynSent | SynAckSent)
            && matches!(peer.state, SynSent | SynAckSent)
        {
            peer.state = Established;
        }
        sender.state = Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_n_equals_n_adds() {
        for n in [0u64, 1, 2, 9, 10, 11, 99, 100, 1234] {
            for start in [0u64, 1, 5, 10] {
                let (mut a, mut b) = (History::default(), History::default());
                for _ in 0..start {
                    a.add(b't', true);
                    b.add(b't', true);
                }
                for _ in 0..n {
                    a.add(b't', true);
                }
                for _ in 0..n {
                    a.add(b'a', false);
                }
                b.add_n(b't', true, n);
                b.add_n(b'a', false, n);
                assert_eq!(a.s, b.s, "n={n} start={start}");
            }
        }
    }

    #[test]
    fn history_letters_and_repeats() {
        let mut h = History::default();
        h.add(b's', true);
        h.add(b'h', false);
        h.add(b'a', true);
        h.add(b'd', true);
        h.add(b'd', true);
        h.add(b'd', false);
        for _ in 0..10 {
            h.add(b't', true);
        }
        h.mark('X');
        h.mark('X');
        assert_eq!(h.s, "ShADdTTX");
    }

    #[test]
    fn states() {
        use EndpointState::*;
        let mut o = Endpoint::default();
        let mut r = Endpoint::default();
        update_states(&mut o, &mut r, flags::SYN, 0);
        assert_eq!(conn_state(o.state, r.state, 0, 0), "S0");
        update_states(&mut r, &mut o, flags::SYN | flags::ACK, 0);
        update_states(&mut o, &mut r, flags::ACK, 0);
        assert_eq!((o.state, r.state), (Established, Established));
        assert_eq!(conn_state(o.state, r.state, 0, 0), "S1");
        update_states(&mut o, &mut r, flags::FIN | flags::ACK, 0);
        assert_eq!(conn_state(o.state, r.state, 0, 0), "S2");
        update_states(&mut r, &mut o, flags::FIN | flags::ACK, 0);
        assert_eq!(conn_state(o.state, r.state, 0, 0), "SF");

        let mut o = Endpoint::default();
        let mut r = Endpoint::default();
        update_states(&mut o, &mut r, flags::SYN, 0);
        update_states(&mut r, &mut o, flags::RST | flags::ACK, 0);
        assert_eq!(conn_state(o.state, r.state, 0, 0), "REJ");

        let mut o = Endpoint::default();
        let mut r = Endpoint::default();
        update_states(&mut o, &mut r, flags::ACK, 10);
        update_states(&mut r, &mut o, flags::ACK, 10);
        assert_eq!(conn_state(o.state, r.state, 10, 10), "OTH");
    }
}
