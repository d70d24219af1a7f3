//! Every weird mailtap raises, by Zeek's name.
//!
//! Analyzers raise weirds through [`crate::ConnCtx::weird`] and its
//! siblings, which take a [`Weird`], so a name is spelled once, here, and a
//! misspelt one does not compile. [`Weird::name`] is what weird.log's `name`
//! column holds: Zeek's exact string (its mixed case included), so rows
//! compare with Zeek's.

macro_rules! weirds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A weird's name (weird.log `name`); [`Weird::name`] gives Zeek's
        /// spelling.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Weird {
            $( $(#[$doc])* $variant, )*
        }

        impl Weird {
            /// Every weird, in declaration order.
            pub const ALL: &'static [Weird] = &[$(Weird::$variant),*];

            /// Zeek's name of the weird, as written to weird.log.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Weird::$variant => $name, )*
                }
            }
        }
    };
}

weirds! {
    // ----------------------------------------------------------- TCP (flow)
    /// Reassembly: a retransmission differs from the bytes buffered first.
    RexmitInconsistency = "rexmit_inconsistency",
    /// The flow table evicted a connection with analyzer state.
    ActiveConnectionEvicted = "active_connection_evicted",
    /// A new SYN on a 4-tuple whose SYN is still unanswered.
    SynSeqJump = "SYN_seq_jump",
    /// A new SYN on a 4-tuple whose connection is established.
    ActiveConnectionReuse = "active_connection_reuse",
    /// A new SYN on a 4-tuple closed less than the linger time ago.
    PrematureConnectionReuse = "premature_connection_reuse",

    // ---------------------------------------------------------- ContentLine
    /// A line longer than the splitter's limit.
    ContentlineSizeExceeded = "contentline_size_exceeded",
    /// A line ended by a bare CR.
    LineTerminatedWithSingleCr = "line_terminated_with_single_CR",
    /// A NUL inside a line.
    NulInLine = "NUL_in_line",

    // ----------------------------------------------------------------- SMTP
    /// A command out of sequence for the transaction (Zeek's main.zeek).
    SmtpMailTransactionInvalid = "smtp_mail_transaction_invalid",
    /// More invalid transactions than `smtp.max_invalid_mail_transactions`.
    SmtpExcessiveInvalidMailTransactions = "smtp_excessive_invalid_mail_transactions",
    /// More RCPT TO addresses than `smtp.max_rcptto_addresses`.
    SmtpTooManyRcpttoAddresses = "smtp_too_many_rcptto_addresses",
    /// More To: addresses than `smtp.max_to_addresses`.
    SmtpTooManyToAddresses = "smtp_too_many_to_addresses",
    /// More Cc: addresses than `smtp.max_cc_addresses`.
    SmtpTooManyCcAddresses = "smtp_too_many_cc_addresses",
    /// A message header outside a top-level entity.
    MissingSmtpEntity = "missing_SMTP_entity",
    /// More Received: hops than `smtp.max_path_length`.
    SmtpMaxPathLengthExceeded = "smtp_max_path_length_exceeded",
    /// Too many commands waiting for their replies.
    SmtpExcessivePendingCmds = "smtp_excessive_pending_cmds",
    /// A command after BDAT chunks that did not end with `LAST`.
    SmtpMissingBdatLastChunk = "smtp_missing_bdat_last_chunk",
    /// A BDAT command that does not parse.
    SmtpInvalidBdatCommand = "smtp_invalid_bdat_command",
    /// A BDAT chunk size beyond what Zeek's `int64` holds.
    SmtpHugeBdatChunk = "smtp_huge_bdat_chunk",
    /// DATA or BDAT while a message is still open.
    SmtpNestedMailTransaction = "smtp_nested_mail_transaction",
    /// BDAT bytes still expected when the message ends.
    SmtpBdatRemainingAtEndData = "smtp_bdat_remaining_at_end_data",
    /// The end of a message no DATA or BDAT began.
    SmtpUnmatchedEndOfData = "smtp_unmatched_end_of_data",
    /// More bytes delivered than a BDAT chunk announced.
    SmtpBdatChunkOverflow = "smtp_bdat_chunk_overflow",
    /// A BDAT body line ended by a bare CR.
    SmtpBdatLineCrOnly = "smtp_bdat_line_cr_only",
    /// A BDAT body line ended by a bare LF.
    SmtpBdatLineLfOnly = "smtp_bdat_line_lf_only",
    /// A BDAT body line longer than the line limit.
    SmtpBdatLineTooLong = "smtp_bdat_line_too_long",
    /// A partial BDAT body line still buffered when the transfer ends.
    SmtpBdatUndeliveredAtDone = "smtp_bdat_undelivered_at_done",

    // ------------------------------------------------------- SMTP and POP3
    /// Protocol violations past the analyzer's limit.
    TooManyAnalyzerViolations = "too_many_analyzer_violations",
    /// Base64 that does not decode (MIME bodies, POP3 SASL).
    Base64IllegalEncoding = "base64_illegal_encoding",

    // ----------------------------------------------------------------- MIME
    /// Entities nested deeper than the limit.
    ExceededMimeMaxDepth = "exceeded_mime_max_depth",
    /// More entities in a message than its limit.
    ExceededMimeMaxEntities = "exceeded_mime_max_entities",
    /// A header block larger than its limit.
    ExceededMimeMaxHeaderBytes = "exceeded_mime_max_header_bytes",

    // ----------------------------------------------------------------- POP3
    /// Too many commands waiting for their replies.
    Pop3ClientTooManyPendingCommands = "pop3_client_too_many_pending_commands",
    /// A SASL exchange that is not base64.
    Pop3BadBase64Encoding = "pop3_bad_base64_encoding",
    /// An `AUTH PLAIN` response that is not `authzid\0authcid\0passwd`.
    Pop3MalformedAuthPlain = "pop3_malformed_auth_plain",
    /// A client command POP3 does not have.
    Pop3ClientCommandUnknown = "pop3_client_command_unknown",
    /// The client sends what only a server sends.
    Pop3ClientSendingServerCommands = "pop3_client_sending_server_commands",
    /// A server line that is no POP3 reply.
    Pop3ServerCommandUnknown = "pop3_server_command_unknown",
    /// The server sends what only a client sends.
    Pop3ServerSendingClientCommands = "pop3_server_sending_client_commands",

    // ----------------------------------------------------------------- IMAP
    // mailtap's own (Zeek's IMAP analyzer raises none of these).
    /// A physical line longer than the line limit (not interpreted).
    ImapLineTooLong = "imap_line_too_long",
    /// A logical line (fragments and kept literals) beyond its byte bound.
    ImapLogicalLineTooLarge = "imap_logical_line_too_large",
    /// More tokens in a line than `imap.max_tokens_per_line`.
    ImapTooManyTokens = "imap_too_many_tokens",
    /// Parentheses nested deeper than `imap.max_nesting_depth`.
    ImapNestingTooDeep = "imap_nesting_too_deep",
    /// A `)` without its `(`.
    ImapUnbalancedParenthesis = "imap_unbalanced_parenthesis",
    /// A quoted string without its closing quote.
    ImapUnterminatedQuotedString = "imap_unterminated_quoted_string",
    /// A `BODY[` / `BINARY[` section without its `]`.
    ImapUnterminatedSection = "imap_unterminated_section",
    /// A `{` at a token position that is no literal marker.
    ImapMalformedLiteral = "imap_malformed_literal",
    /// A literal size beyond IMAP4rev2's 63-bit `number64`.
    ImapLiteralTooLarge = "imap_literal_too_large",
    /// A literal size beyond `imap.max_literal_size` (usually a desync).
    ImapLiteralOverLimit = "imap_literal_over_limit",
    /// `{n}` at the end of free text (resp-text): not a literal.
    ImapLiteralInText = "imap_literal_in_text",
    /// `{n+}` from the server (only clients may send it).
    ImapServerNonsyncLiteral = "imap_server_nonsync_literal",
    /// An empty line where a command or a response was expected.
    ImapEmptyLine = "imap_empty_line",
    /// More commands in flight than `max_pending_commands`.
    ImapTooManyPendingCommands = "imap_too_many_pending_commands",
    /// More untagged responses in a row than `max_untagged_responses`.
    ImapExcessiveUntaggedResponses = "imap_excessive_untagged_responses",
    /// A tagged response whose tag no pending command has.
    ImapUnmatchedTaggedResponse = "imap_unmatched_tagged_response",
    /// A server line that is no response.
    ImapServerLineUnknown = "imap_server_line_unknown",
    /// A client line without a command.
    ImapClientCommandMissing = "imap_client_command_missing",
    /// The server refused STARTTLS.
    ImapServerRefusedStarttls = "imap_server_refused_starttls",
    /// A second STARTTLS.
    ImapClientDuplicateStarttls = "imap_client_duplicate_starttls",
    /// Plaintext client bytes after STARTTLS before the server's OK
    /// (command injection, CERT VU#555316 class).
    ImapStarttlsPlaintextInjection = "imap_starttls_plaintext_injection",
    /// Client bytes held for STARTTLS/COMPRESS beyond `max_held_bytes`.
    ImapHeldBytesOverflow = "imap_held_bytes_overflow",
    /// A DEFLATE stream that does not inflate.
    ImapInflateError = "imap_inflate_error",
    /// A content gap in a compressed direction: it is lost.
    ImapGapInCompressedStream = "imap_gap_in_compressed_stream",
    /// COMPRESS accepted while the shard's buffer budget
    /// (`flow.buffer_memory`) cannot hold two inflate states: the rest of
    /// the connection is not analysed.
    ImapCompressOverBudget = "imap_compress_over_budget",
    /// A content gap in line data: framing lost until a command/response.
    ImapGapLostSync = "imap_gap_lost_sync",
    /// Framing lost (a gap, a literal beyond the cap): resynchronised.
    ImapResynchronized = "imap_resynchronized",
    /// STARTTLS accepted inside a COMPRESS stream (no hand-off offset).
    ImapStarttlsUnderCompress = "imap_starttls_under_compress",
    /// A malformed SASL response.
    ImapBadSaslResponse = "imap_bad_sasl_response",

    // ------------------------------------------------------------------ TLS
    /// A stapled OCSP response of length zero.
    SslZeroLengthStapledOcspMessage = "SSL_zero_length_stapled_OCSP_message",
    /// A server_name extension with more than one name.
    SslManyServerNames = "SSL_many_server_names",
    /// Application data before the handshake finished.
    SslEarlyApplicationData = "ssl_early_application_data",
    /// A server_name entry of a type other than host_name.
    SslExtUnknownServerNameType = "ssl_ext_unknown_server_name_type",
    /// `ssl_history` reached its length limit.
    SslMaxSslHistoryLengthReached = "SSL_max_ssl_history_length_reached",

    // ----------------------------------------------------------------- logs
    /// A log row had a string cut by the log writer's limits.
    LogStringFieldTruncated = "log_string_field_truncated",
    /// A log row had a set or vector cut by the log writer's limits.
    LogContainerFieldTruncated = "log_container_field_truncated",
}

impl std::fmt::Display for Weird {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Weird;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique() {
        let mut seen = BTreeSet::new();
        for w in Weird::ALL {
            assert!(seen.insert(w.name()), "{} named twice", w.name());
        }
        assert_eq!(seen.len(), Weird::ALL.len());
    }

    /// Each variant is its name in CamelCase (case aside, the same letters),
    /// so no name is attached to the wrong variant.
    #[test]
    fn variants_spell_their_names() {
        for w in Weird::ALL {
            let variant = format!("{w:?}").to_ascii_lowercase();
            let name = w.name().replace('_', "").to_ascii_lowercase();
            assert_eq!(variant, name, "{w:?} is named {}", w.name());
        }
    }

    /// The names as weird.log has always written them, Zeek's spelling
    /// (mixed case included). A name in this list changes only if Zeek's
    /// does; mailtap's own (IMAP) are listed apart.
    #[test]
    fn names_are_zeeks() {
        const ZEEK: &[&str] = &[
            "NUL_in_line",
            "SSL_many_server_names",
            "SSL_max_ssl_history_length_reached",
            "SSL_zero_length_stapled_OCSP_message",
            "SYN_seq_jump",
            "active_connection_evicted",
            "active_connection_reuse",
            "base64_illegal_encoding",
            "contentline_size_exceeded",
            "exceeded_mime_max_depth",
            "exceeded_mime_max_entities",
            "exceeded_mime_max_header_bytes",
            "line_terminated_with_single_CR",
            "log_container_field_truncated",
            "log_string_field_truncated",
            "missing_SMTP_entity",
            "pop3_bad_base64_encoding",
            "pop3_client_command_unknown",
            "pop3_client_sending_server_commands",
            "pop3_client_too_many_pending_commands",
            "pop3_malformed_auth_plain",
            "pop3_server_command_unknown",
            "pop3_server_sending_client_commands",
            "premature_connection_reuse",
            "rexmit_inconsistency",
            "smtp_bdat_chunk_overflow",
            "smtp_bdat_line_cr_only",
            "smtp_bdat_line_lf_only",
            "smtp_bdat_line_too_long",
            "smtp_bdat_remaining_at_end_data",
            "smtp_bdat_undelivered_at_done",
            "smtp_excessive_invalid_mail_transactions",
            "smtp_excessive_pending_cmds",
            "smtp_huge_bdat_chunk",
            "smtp_invalid_bdat_command",
            "smtp_mail_transaction_invalid",
            "smtp_max_path_length_exceeded",
            "smtp_missing_bdat_last_chunk",
            "smtp_nested_mail_transaction",
            "smtp_too_many_cc_addresses",
            "smtp_too_many_rcptto_addresses",
            "smtp_too_many_to_addresses",
            "smtp_unmatched_end_of_data",
            "ssl_early_application_data",
            "ssl_ext_unknown_server_name_type",
            "too_many_analyzer_violations",
        ];
        // mailtap's own names, for what Zeek does not analyse (IMAP).
        const MAILTAP: &[&str] = &[
            "imap_bad_sasl_response",
            "imap_client_command_missing",
            "imap_client_duplicate_starttls",
            "imap_compress_over_budget",
            "imap_empty_line",
            "imap_excessive_untagged_responses",
            "imap_gap_in_compressed_stream",
            "imap_gap_lost_sync",
            "imap_held_bytes_overflow",
            "imap_inflate_error",
            "imap_line_too_long",
            "imap_literal_in_text",
            "imap_literal_over_limit",
            "imap_literal_too_large",
            "imap_logical_line_too_large",
            "imap_malformed_literal",
            "imap_nesting_too_deep",
            "imap_resynchronized",
            "imap_server_line_unknown",
            "imap_server_nonsync_literal",
            "imap_server_refused_starttls",
            "imap_starttls_plaintext_injection",
            "imap_starttls_under_compress",
            "imap_too_many_pending_commands",
            "imap_too_many_tokens",
            "imap_unbalanced_parenthesis",
            "imap_unmatched_tagged_response",
            "imap_unterminated_quoted_string",
            "imap_unterminated_section",
        ];
        let ours: BTreeSet<&str> = Weird::ALL.iter().map(|w| w.name()).collect();
        let zeek: BTreeSet<&str> = ZEEK.iter().chain(MAILTAP).copied().collect();
        assert_eq!(ours, zeek);
        for w in Weird::ALL {
            assert!(
                w.name()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{}",
                w.name()
            );
            assert_eq!(w.to_string(), w.name());
        }
    }
}
