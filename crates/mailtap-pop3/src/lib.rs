//! mailtap's POP3 analyzer: a re-implementation of Zeek's POP3 analyzer
//! that turns reassembled TCP payload into `pop3_*` events, weirds, analyzer
//! confirmation/violations, RETR/TOP messages for the MIME layer, and one
//! pop3.log row per session (mailtap's addition; Zeek has no POP3 log).
//!
//! Layers, bottom up: `mailtap_contentline` splits each direction into lines (Zeek's
//! ContentLine, NULs kept), [`parse`] handles single lines (C-string view,
//! whitespace normalisation, keywords, SASL base64), [`analyzer`] is the
//! protocol state machine, [`message`] is the seam to the MIME layer, and
//! [`session`] builds the pop3.log record.

pub mod analyzer;
pub mod config;
pub mod message;
pub mod parse;
pub mod session;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use analyzer::{
    dpd_orig_matches, dpd_resp_matches, dpd_resp_possible, Master, Pop3Analyzer, Pop3Stats, State,
};
pub use config::Pop3Config;
pub use message::MessageInfo;
