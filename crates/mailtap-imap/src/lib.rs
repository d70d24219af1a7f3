//! mailtap's IMAP analyzer (IMAP4rev1, RFC 3501, and IMAP4rev2, RFC 9051,
//! as they appear on the wire), for a passive sensor that reads both
//! directions of a connection and never talks to a server.
//!
//! Layers, bottom up: `mailtap_contentline` splits each direction into
//! physical lines and passes literal payloads through unsplit (plain
//! mode: literals of any size are streamed, never buffered); [`parse`]
//! tokenises logical lines (tags, atoms, quoted strings, parenthesised
//! lists, literals `{n}` `{n+}` `~{n}`) within bounds and with named
//! errors; [`analyzer`] frames each direction (synchronizing literals,
//! gaps, STARTTLS, COMPRESS=DEFLATE with flate2); `proto` pairs commands
//! and responses by tag and follows the session (login, mailbox, FETCH
//! and APPEND messages); [`message`] is the seam to the MIME layer
//! (files.log, byte-exact extraction); [`record`] holds the IMAP message
//! metadata and the weirds (imap.log's row, `ImapRecord`, and the IMAP
//! events are core's: `Record::Imap`, `Event::Imap*`).

pub mod analyzer;
pub mod config;
pub mod message;
pub mod parse;
mod proto;
pub mod record;

#[cfg(test)]
mod tests;

pub use analyzer::{resync_candidate, ImapAnalyzer, ImapStats};
pub use config::ImapConfig;
pub use proto::Cmd;
pub use record::{Direction, ImapMessage, ImapRecord, ImapWeird};

/// DPD server half: the greeting starts with `* OK ` or `* PREAUTH `
/// (case-insensitive).
pub fn dpd_resp_matches(payload: &[u8]) -> bool {
    let up = |n: usize| payload.get(..n).map(<[u8]>::to_ascii_uppercase);
    up(5).as_deref() == Some(b"* OK ") || up(10).as_deref() == Some(b"* PREAUTH ")
}

/// DPD client half: a tagged command (`tag SP known-command`) at a line
/// start.
pub fn dpd_orig_matches(payload: &[u8]) -> bool {
    std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', payload).map(|i| i + 1))
        .any(|s| {
            let rest = &payload[s.min(payload.len())..];
            let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
            resync_candidate(&rest[..end], true)
        })
}
