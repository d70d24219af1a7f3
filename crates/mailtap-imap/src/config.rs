//! Tunables of the IMAP analyzer (the `[imap]` section): ports and every
//! bound an attacker could otherwise push.

use crate::parse::Limits;
use mailtap_mime::FilesConfig;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// IMAP analyzer configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Responder ports the analyzer is attached to without detection.
    pub ports: Vec<u16>,
    /// Longest server physical line (literal payloads are not lines);
    /// longer ones are cut (weird `contentline_size_exceeded`) and the
    /// logical line is not interpreted (`imap_line_too_long`).
    pub max_line_length: usize,
    /// Longest client physical line (commands, SASL responses).
    pub max_command_line_length: usize,
    /// Bytes of one logical line kept for interpretation (its fragments
    /// and kept literals); beyond, it is only framed.
    pub max_logical_line_bytes: usize,
    /// Largest literal honoured; a larger announcement is taken for a
    /// desync (weird `imap_literal_over_limit`) and the direction hunts
    /// for the next command or response.
    pub max_literal_size: u64,
    /// Literal payloads kept whole for interpretation (mailbox names,
    /// user names, ENVELOPE strings); longer ones are skipped.
    pub max_kept_literal: usize,
    /// Deepest parenthesis nesting interpreted.
    pub max_nesting_depth: u16,
    /// Tokens of one logical line kept.
    pub max_tokens_per_line: usize,
    /// Commands waiting for their tagged response; beyond, the oldest is
    /// dropped (weird `imap_too_many_pending_commands`).
    pub max_pending_commands: usize,
    /// Untagged responses in a row (between two tagged ones) before weird
    /// `imap_excessive_untagged_responses` (counted, never stored).
    pub max_untagged_responses: u64,
    /// Client bytes held while STARTTLS or COMPRESS awaits its answer.
    pub max_held_bytes: usize,
    /// Mailbox names kept for imap.log `mailboxes`.
    pub max_mailboxes_logged: usize,
    /// Capabilities kept for imap.log `capabilities`.
    pub max_capabilities_logged: usize,
    /// `MIME::max_header_bytes` for extracted messages.
    pub max_header_bytes: usize,
    /// `site.local_nets`, filled by the caller (files.log `local_orig`).
    #[serde(skip)]
    pub local_nets: Vec<(IpAddr, u8)>,
    /// `[files]`: file analysis of MIME entities, filled by the caller.
    #[serde(skip)]
    pub files: Arc<FilesConfig>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            ports: vec![143],
            max_line_length: 1 << 20,
            max_command_line_length: 64 << 10,
            max_logical_line_bytes: 1 << 20,
            max_literal_size: 1 << 32,
            max_kept_literal: 4096,
            max_nesting_depth: 64,
            max_tokens_per_line: 65536,
            max_pending_commands: 64,
            max_untagged_responses: 1_000_000,
            max_held_bytes: 64 << 10,
            max_mailboxes_logged: 100,
            max_capabilities_logged: 100,
            max_header_bytes: 65536,
            local_nets: Vec::new(),
            files: Arc::new(FilesConfig::default()),
        }
    }
}

impl ImapConfig {
    /// Checks values that would make the analyzer misbehave; the error
    /// names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.ports.contains(&0) {
            return Err("imap.ports: port 0 is not a valid responder port".into());
        }
        for (k, v) in [
            ("imap.max_line_length", self.max_line_length),
            ("imap.max_command_line_length", self.max_command_line_length),
        ] {
            if !(64..=1 << 30).contains(&v) {
                return Err(format!("{k}: must be between 64 and 1073741824"));
            }
        }
        if self.max_logical_line_bytes < self.max_command_line_length.min(self.max_line_length) {
            return Err("imap.max_logical_line_bytes: must be at least the line lengths".into());
        }
        if self.max_logical_line_bytes > 1 << 30 {
            return Err("imap.max_logical_line_bytes: at most 1073741824".into());
        }
        if self.max_literal_size > crate::parse::MAX_NUMBER64 {
            return Err("imap.max_literal_size: at most 9223372036854775807".into());
        }
        if self.max_nesting_depth == 0 || self.max_tokens_per_line == 0 {
            return Err("imap.max_nesting_depth and imap.max_tokens_per_line: at least 1".into());
        }
        if self.max_pending_commands == 0 {
            return Err("imap.max_pending_commands: must be at least 1".into());
        }
        if self.max_header_bytes == 0 {
            return Err("imap.max_header_bytes: must be at least 1".into());
        }
        Ok(())
    }

    /// The parser's bounds.
    pub fn limits(&self) -> Limits {
        Limits {
            max_depth: self.max_nesting_depth,
            max_tokens: self.max_tokens_per_line,
            max_line_bytes: self.max_logical_line_bytes,
            max_literal: self.max_literal_size,
        }
    }

    /// Whether `a` lies in `site.local_nets`.
    pub fn is_local_addr(&self, a: IpAddr) -> bool {
        self.local_nets.iter().any(|&(net, len)| match (a, net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let len = u32::from(len.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                (u32::from(a) & mask) == (u32::from(n) & mask)
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let len = u32::from(len.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                (u128::from(a) & mask) == (u128::from(n) & mask)
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert!(ImapConfig::default().validate().is_ok());
        assert_eq!(ImapConfig::default().ports, vec![143]);
        let c = ImapConfig {
            ports: vec![0],
            ..ImapConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("imap.ports"));
        let c = ImapConfig {
            max_literal_size: u64::MAX,
            ..ImapConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("imap.max_literal_size"));
        let c = ImapConfig {
            max_pending_commands: 0,
            ..ImapConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .contains("imap.max_pending_commands"));
    }

    #[test]
    fn local_nets() {
        let c = ImapConfig {
            local_nets: vec![("10.0.0.0".parse().unwrap(), 8)],
            ..ImapConfig::default()
        };
        assert!(c.is_local_addr("10.9.9.9".parse().unwrap()));
        assert!(!c.is_local_addr("11.0.0.1".parse().unwrap()));
    }
}
