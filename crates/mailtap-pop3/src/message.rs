//! The seam between the POP3 state machine and the MIME layer for RETR and
//! TOP responses.
//!
//! The analyzer hands over the response body after the `+OK` line, one line
//! at a time without its terminator and with dot-stuffing already removed
//! (the final `.` is not part of it), plus content gaps, and ends the
//! message at the terminating `.`, a `-ERR`, analyzer removal or connection
//! end. [`MessageInfo`] carries the POP3 context the MIME layer needs for
//! extraction metadata (user, partial for TOP, TLS).

use mailtap_core::{Bytes, ConnCtx, Timestamp};

/// POP3 context of one retrieved message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// Time of the `+OK` that started the message.
    pub ts: Timestamp,
    /// The POP3 user at that time (USER, APOP or SASL), if any.
    pub user: Option<Bytes>,
    /// A TOP response: only part of the message.
    pub partial: bool,
    /// Whether the session had switched to TLS (always false today: after
    /// STLS nothing is analysed).
    pub tls: bool,
}

/// One message being retrieved.
#[derive(Debug)]
pub struct Message {
    pub info: MessageInfo,
    /// Body bytes delivered so far (each line plus CRLF).
    pub bytes: u64,
    pub lines: u64,
    /// Bytes lost in content gaps.
    pub missing: u64,
}

impl Message {
    pub fn begin(_cx: &mut ConnCtx<'_>, info: MessageInfo) -> Message {
        Message {
            info,
            bytes: 0,
            lines: 0,
            missing: 0,
        }
    }

    /// One body line, unstuffed, without its line terminator.
    pub fn line(&mut self, _cx: &mut ConnCtx<'_>, line: &[u8]) {
        self.lines += 1;
        self.bytes += line.len() as u64 + 2;
    }

    /// `len` bytes of the response will never arrive.
    pub fn gap(&mut self, _cx: &mut ConnCtx<'_>, len: u64) {
        self.missing = self.missing.saturating_add(len);
    }

    /// The message is over; `complete` is false when it was cut (connection
    /// end or analyzer removal before the terminating `.`).
    pub fn end(self, _cx: &mut ConnCtx<'_>, _complete: bool) {}
}
