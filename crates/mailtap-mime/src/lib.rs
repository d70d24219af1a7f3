//! mailtap's MIME layer, shared by the SMTP and POP3 analyzers: it turns one
//! message's lines into MIME entities (Zeek's `MIME_Mail`), decodes their
//! bodies (base64, quoted-printable, pass-through), and makes each entity
//! with at least one body byte a *file*: a files.log record with Zeek's FUID,
//! sniffed MIME type, filename, sizes and MD5/SHA1/SHA256. It also keeps what
//! message extraction needs (exact bytes, their SHA-256, decoded headers,
//! attachments), all on the streaming path: nothing is read twice.
//!
//! # API
//!
//! One [`MessageAnalyzer`] per connection (it owns the connection's MIME
//! entity counter, Zeek's `mime_depth`, which FUIDs depend on):
//!
//! ```text
//! let mut mime = MessageAnalyzer::new(Arc<FilesConfig>);
//! mime.begin(cx, MessageContext { source: Source::Smtp, is_orig, local_orig,
//!            conn_start, trans_depth, max_header_bytes, extract: Some(n) }, sink);
//! mime.line(cx, line, b"\r\n", sink);   // DATA / RETR line, dot-unstuffed,
//!                                       // with its exact terminator bytes
//! mime.raw(cx, chunk);                  // BDAT: exact bytes (size/hash/extract)
//! mime.mime_line(cx, line, sink);       // BDAT: the lines cut from the chunks
//! mime.gap(cx, len, sink);              // content gap inside the message
//! let summary: MessageSummary = mime.end(cx, sink, complete);
//! ```
//!
//! * `sink` is a [`MimeSink`] (or [`NoSink`]): the protocol's script layer
//!   gets `begin_entity`, `header` (upper-cased name, raw value), `end_entity`
//!   and `file` (a new FUID, for smtp.log `fuids`) in Zeek's order.
//! * files.log records are emitted through `cx.emit(Record::File(..))` when
//!   each entity ends; weirds (`base64_illegal_encoding`,
//!   `exceeded_mime_max_header_bytes`, `exceeded_mime_max_depth`, ...) go
//!   through `cx` with the protocol's name as source.
//! * With `extract: Some(n)` the exact bytes are emitted as
//!   `Record::EmailData` chunks of at most [`EXTRACT_CHUNK`] bytes, and the
//!   summary carries their size and SHA-256, the RFC 2047-decoded top-level
//!   headers and the attachments; the caller adds its protocol fields and
//!   emits `Record::EmailMeta`. With `None` none of that is computed.
//! * [`MessageSummary::fuids`] lists the message's files in creation order.
//!
//! FUIDs are Zeek's: HighwayHash-128 keyed by SHA-256 of
//! `files.digest_salt` over the handle `Analyzer::ANALYZER_SMTP` + connection
//! start time + trans_depth + mime_depth (POP3: `Analyzer::ANALYZER_POP3`
//! + start + message ordinal + mime_depth; Zeek itself logs no POP3 files).

pub mod config;
pub mod decode;
pub mod fuid;
pub mod header;
pub mod message;
pub mod sniff;

#[cfg(test)]
mod tests;

pub use config::{FilesConfig, HashKind};
pub use fuid::FuidKey;
pub use message::{
    MessageAnalyzer, MessageContext, MessageSummary, MimeSink, NoSink, Source, EXTRACT_CHUNK,
};
