//! Extracted messages on their way to the extraction sink.
//!
//! A shard streams each message it extracts as [`EmailChunk`]s (in order,
//! already dot-unstuffed, byte-exact) and ends it with one [`EmailMeta`].
//! The collector appends chunks to `<uid>-<n>.eml` under a temporary name
//! and, at the meta record, renames it and writes `<uid>-<n>.json` (see
//! docs/outputs.md).

use crate::{Bytes, ConnId, Timestamp};

/// Which protocol carried the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailProtocol {
    Smtp,
    Pop3,
    Imap,
}

impl MailProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            MailProtocol::Smtp => "smtp",
            MailProtocol::Pop3 => "pop3",
            MailProtocol::Imap => "imap",
        }
    }
}

/// Bytes of message `n` of connection `uid`, to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailChunk {
    pub uid: String,
    pub n: u32,
    pub data: Bytes,
}

/// The end of message `n` of connection `uid`: everything for its JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmailMeta {
    pub uid: String,
    pub n: u32,
    /// When the message started (DATA/BDAT/RETR time).
    pub ts: Timestamp,
    pub id: Option<ConnId>,
    pub protocol: Option<MailProtocol>,
    pub trans_depth: u64,
    pub helo: Option<Bytes>,
    pub mailfrom: Option<Bytes>,
    /// Recipients the server accepted.
    pub rcptto: Vec<Bytes>,
    /// Recipients the server refused, with its reply code.
    pub rcptto_rejected: Vec<(Bytes, u32)>,
    /// The server's reply to the end of data (SMTP).
    pub status_code: Option<u32>,
    pub status_text: Option<Bytes>,
    /// POP3 or IMAP user.
    pub user: Option<Bytes>,
    pub size: u64,
    /// Hex SHA-256 of the extracted bytes.
    pub sha256: String,
    /// False when a gap or the end of the capture cut the message.
    pub complete: bool,
    pub missing_bytes: u64,
    /// How much is missing is not known: the message's start was not seen
    /// (picked up mid-stream) or its end was not (the connection ended, a
    /// gap swallowed the end of data or a BDAT chunk with chunks after
    /// it). `missing_bytes` then counts only the losses seen, and the JSON
    /// says `null`.
    pub missing_unknown: bool,
    /// Only part of the message: a POP3 TOP response, an IMAP header-only,
    /// text-only or `<o.n>` fetch.
    pub partial: bool,
    pub headers: EmailHeaders,
    pub attachments: Vec<Attachment>,
    pub tls: bool,
    /// What IMAP adds (`None` for SMTP and POP3): boxed, so that the many
    /// SMTP and POP3 messages carry one pointer for it, not a dozen fields.
    pub imap: Option<Box<ImapMeta>>,
}

/// The IMAP side of an extracted message (`EmailMeta::imap`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImapMeta {
    /// `fetch` (a FETCH response, server to client) or `append` (an APPEND
    /// payload, client to server).
    pub direction: Option<&'static str>,
    /// The selected mailbox (FETCH) or APPEND's target mailbox.
    pub mailbox: Option<Bytes>,
    /// The mailbox's UIDVALIDITY (SELECT/EXAMINE, or APPENDUID).
    pub uidvalidity: Option<u64>,
    /// Message sequence number (FETCH).
    pub seq: Option<u64>,
    /// IMAP UID: FETCH's `UID n`, or APPEND's `APPENDUID` when it names one
    /// UID per appended message.
    pub imap_uid: Option<u64>,
    /// The FETCH label (`BODY[]`, `BODY[HEADER]`, `RFC822`, `BINARY[]`,
    /// `BODY[]<1024>`), or `APPEND`.
    pub section: Option<String>,
    /// FETCH `FLAGS` or APPEND's flag list.
    pub flags: Vec<Bytes>,
    /// APPEND's date-time, or FETCH `INTERNALDATE`.
    pub internal_date: Option<Bytes>,
    /// APPEND: the server's tagged status (`OK`, `NO`, `BAD`).
    pub status: Option<Bytes>,
}

/// Top-level headers, RFC 2047 words decoded to UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailHeaders {
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cc: Option<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub msg_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub user_agent: Option<String>,
}

/// A MIME entity that carried a named or non-text body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    pub filename: Option<String>,
    pub mime_type: Option<String>,
    pub size: u64,
    pub sha256: String,
}
