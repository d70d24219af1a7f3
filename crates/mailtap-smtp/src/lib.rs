//! mailtap's SMTP analyzer: a re-implementation of Zeek's SMTP analyzer and
//! SMTP scripts that turns reassembled TCP payload into Zeek-compatible
//! smtp.log records, weirds and `smtp_*` events.
//!
//! Layers, bottom up: `mailtap_contentline` splits each direction into lines (Zeek's
//! ContentLine), [`parser`] parses single lines, [`bdat`] handles CHUNKING
//! data, [`headers`] holds the header text helpers (the MIME layer itself is
//! `mailtap-mime`),
//! [`analyzer`] is the protocol state machine, and [`record`] is the
//! script layer that builds smtp.log records.

pub mod analyzer;
pub mod bdat;
pub mod config;
pub mod headers;
pub mod parser;
pub mod record;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_imperfect;
#[cfg(test)]
mod testutil;

pub use analyzer::{dpd_orig_matches, dpd_resp_matches, SmtpAnalyzer, SmtpStats, State};
pub use config::{MailPathCapture, SmtpConfig};
