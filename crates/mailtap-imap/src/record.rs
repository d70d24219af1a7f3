//! What the IMAP analyzer produces besides files.log rows and extraction
//! chunks: the IMAP metadata of each extracted message ([`ImapMessage`])
//! and the analyzer's weirds ([`ImapWeird`], each one of core's
//! [`Weird`]s). The imap.log row is core's [`ImapRecord`] (re-exported
//! here), its events are core's `Event::Imap*`.

use mailtap_core::mail::ImapMeta;
pub use mailtap_core::ImapRecord;
use mailtap_core::{Bytes, Timestamp, Weird};

/// Which way an extracted message travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A FETCH response (server to client).
    Fetch,
    /// An APPEND payload (client to server).
    Append,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Fetch => "fetch",
            Direction::Append => "append",
        }
    }
}

/// The IMAP metadata of one extracted message: what the extraction JSON
/// adds for IMAP (issue 15 item 4) beyond `mailtap_core::mail::EmailMeta`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImapMessage {
    /// The message's number on the connection (`<uid>-<n>.eml`).
    pub n: u32,
    pub ts: Timestamp,
    pub direction: Option<Direction>,
    /// Selected mailbox (FETCH) or APPEND's target mailbox.
    pub mailbox: Option<Bytes>,
    pub uidvalidity: Option<u64>,
    /// Message sequence number (FETCH).
    pub seq: Option<u64>,
    /// IMAP UID: FETCH's `UID n`, or APPEND's `APPENDUID` when it names
    /// one UID per appended message.
    pub imap_uid: Option<u64>,
    /// The FETCH label (`BODY[]`, `BODY[HEADER]`, `RFC822`, `BINARY[]`,
    /// `BODY[]<1024>`), or `APPEND`.
    pub section: String,
    /// Only part of the message (header, text, `<o.n>`).
    pub partial: bool,
    /// FETCH `FLAGS` or APPEND's flag list.
    pub flags: Vec<Bytes>,
    /// APPEND's date-time (or FETCH `INTERNALDATE`).
    pub internal_date: Option<Bytes>,
    pub user: Option<Bytes>,
    /// The literal's announced size and the bytes seen of it.
    pub announced: u64,
    pub size: u64,
    pub sha256: String,
    /// All announced bytes arrived.
    pub complete: bool,
    pub missing_bytes: u64,
    /// APPEND: the server's tagged status (`OK`, `NO`, `BAD`).
    pub status: Option<Bytes>,
}

impl ImapMessage {
    /// What the extraction JSON and the Kafka emails topic add for IMAP.
    pub fn to_meta(&self) -> ImapMeta {
        ImapMeta {
            direction: self.direction.map(Direction::as_str),
            mailbox: self.mailbox.clone(),
            uidvalidity: self.uidvalidity,
            seq: self.seq,
            imap_uid: self.imap_uid,
            section: (!self.section.is_empty()).then(|| self.section.clone()),
            flags: self.flags.clone(),
            internal_date: self.internal_date.clone(),
            status: self.status.clone(),
        }
    }
}

macro_rules! imap_weirds {
    ($( $(#[$doc:meta])* $variant:ident = $weird:ident, )*) => {
        /// Weirds of the IMAP analyzer, each one of core's [`Weird`]s
        /// (where its weird.log name is spelled).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ImapWeird {
            $( $(#[$doc])* $variant, )*
        }
        impl ImapWeird {
            pub const ALL: &'static [ImapWeird] = &[$(ImapWeird::$variant),*];
            /// Core's weird.
            pub const fn weird(self) -> Weird {
                match self { $( ImapWeird::$variant => Weird::$weird, )* }
            }
            /// The weird.log name.
            pub const fn name(self) -> &'static str {
                self.weird().name()
            }
        }
    };
}

imap_weirds! {
    /// A parser error (see `parse::ParseError::name` for the detail).
    LineTooLong = ImapLineTooLong,
    LogicalLineTooLarge = ImapLogicalLineTooLarge,
    TooManyTokens = ImapTooManyTokens,
    NestingTooDeep = ImapNestingTooDeep,
    UnbalancedParenthesis = ImapUnbalancedParenthesis,
    UnterminatedQuotedString = ImapUnterminatedQuotedString,
    UnterminatedSection = ImapUnterminatedSection,
    MalformedLiteral = ImapMalformedLiteral,
    LiteralTooLarge = ImapLiteralTooLarge,
    LiteralOverLimit = ImapLiteralOverLimit,
    LiteralInText = ImapLiteralInText,
    ServerNonsyncLiteral = ImapServerNonsyncLiteral,
    EmptyLine = ImapEmptyLine,
    /// More commands in flight than `max_pending_commands`.
    TooManyPendingCommands = ImapTooManyPendingCommands,
    /// More untagged responses in a row than `max_untagged_responses`.
    ExcessiveUntaggedResponses = ImapExcessiveUntaggedResponses,
    /// A tagged response whose tag no pending command has.
    UnmatchedTaggedResponse = ImapUnmatchedTaggedResponse,
    /// A server line that is no response.
    ServerLineUnknown = ImapServerLineUnknown,
    /// A client line without a command.
    ClientCommandMissing = ImapClientCommandMissing,
    /// The server refused STARTTLS.
    ServerRefusedStarttls = ImapServerRefusedStarttls,
    /// A second STARTTLS.
    DuplicateStarttls = ImapClientDuplicateStarttls,
    /// Plaintext client bytes after STARTTLS before the server's OK
    /// (command injection, CERT VU#555316 class).
    StarttlsInjection = ImapStarttlsPlaintextInjection,
    /// Client bytes held for STARTTLS/COMPRESS beyond `max_held_bytes`.
    HeldBytesOverflow = ImapHeldBytesOverflow,
    /// A DEFLATE stream that does not inflate.
    InflateError = ImapInflateError,
    /// A content gap in a compressed direction: it is lost.
    GapInCompressedStream = ImapGapInCompressedStream,
    /// COMPRESS while the shard's buffer budget cannot hold the inflate
    /// states: the rest of the connection is not analysed.
    CompressOverBudget = ImapCompressOverBudget,
    /// A content gap in line data: framing lost until a command/response.
    GapLostSync = ImapGapLostSync,
    /// Framing lost (a gap, a literal beyond the cap): resynchronised.
    Resynchronized = ImapResynchronized,
    /// STARTTLS accepted inside a COMPRESS stream (no hand-off offset).
    StarttlsUnderCompress = ImapStarttlsUnderCompress,
    /// A malformed SASL response.
    BadSaslResponse = ImapBadSaslResponse,
}

impl std::fmt::Display for ImapWeird {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<crate::parse::ParseError> for ImapWeird {
    fn from(e: crate::parse::ParseError) -> Self {
        use crate::parse::ParseError as P;
        match e {
            P::LineTooLong => ImapWeird::LineTooLong,
            P::LineTooLarge => ImapWeird::LogicalLineTooLarge,
            P::TooManyTokens => ImapWeird::TooManyTokens,
            P::NestingTooDeep => ImapWeird::NestingTooDeep,
            P::UnbalancedParen => ImapWeird::UnbalancedParenthesis,
            P::UnterminatedQuoted => ImapWeird::UnterminatedQuotedString,
            P::UnterminatedSection => ImapWeird::UnterminatedSection,
            P::MalformedLiteral => ImapWeird::MalformedLiteral,
            P::LiteralTooLarge => ImapWeird::LiteralTooLarge,
            P::LiteralOverLimit => ImapWeird::LiteralOverLimit,
            P::LiteralInText => ImapWeird::LiteralInText,
            P::NonSyncLiteralFromServer => ImapWeird::ServerNonsyncLiteral,
            P::EmptyLine => ImapWeird::EmptyLine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weird_names_match_parse_errors_and_are_unique() {
        for e in crate::parse::ParseError::ALL {
            assert_eq!(ImapWeird::from(e).name(), e.name());
        }
        let mut n: Vec<_> = ImapWeird::ALL.iter().map(|w| w.name()).collect();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), ImapWeird::ALL.len());
    }
}
