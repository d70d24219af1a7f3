//! Tunables of the POP3 analyzer, named and defaulted like Zeek's script
//! options (`POP3::max_pending_commands`, `POP3::max_unknown_client_commands`,
//! `max_analyzer_violations`, `DPD::ignore_violations_after`), plus
//! mailtap's own (`ports`, `log_passwords`, buffer bounds).

use mailtap_mime::FilesConfig;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// POP3 analyzer configuration. `Default` is Zeek's default, except that
/// port 110 is registered (Zeek attaches POP3 by its DPD signature only).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// Responder ports the analyzer is attached to without detection.
    pub ports: Vec<u16>,
    /// `POP3::max_pending_commands`: queued client commands before the
    /// oldest is dropped (weird `pop3_client_too_many_pending_commands`);
    /// 0 = unlimited (still bounded by `max_pending_bytes`).
    pub max_pending_commands: usize,
    /// `POP3::max_unknown_client_commands`: unknown client commands
    /// tolerated before an analyzer violation; 0 = unlimited.
    pub max_unknown_client_commands: u64,
    /// Put passwords into events (`pop3_request` PASS argument, AUTH
    /// initial responses, login events). pop3.log never carries them.
    pub log_passwords: bool,
    /// Longest server line (responses carry the messages); longer ones are
    /// cut (weird `contentline_size_exceeded`), extraction stays
    /// byte-exact. Zeek uses 16 MiB - 100 for every line.
    pub max_line_length: usize,
    /// Longest client line (commands, AUTH continuations), mailtap's bound
    /// (RFC 1939 allows 255 octets for a command). Zeek uses
    /// `max_line_length` for every line.
    pub max_command_line_length: usize,
    /// Bytes of queued (not yet processed) client command lines; beyond
    /// it the oldest queued lines are dropped and counted. mailtap's own
    /// bound: Zeek has none.
    pub max_pending_bytes: usize,
    /// `DPD::ignore_violations_after`: a violation disables the analyzer
    /// only while the connection carried at most this many payload bytes
    /// (0 = always).
    pub dpd_ignore_violations_after: u64,
    /// Zeek's `DPD::ignore_violations` containing `ANALYZER_POP3`:
    /// violations never disable the analyzer.
    pub dpd_ignore_violations: bool,
    /// `max_analyzer_violations`: violations reported per analyzer; the
    /// next one raises weird `too_many_analyzer_violations`.
    pub max_analyzer_violations: u64,
    /// `MIME::max_header_bytes` for retrieved messages.
    pub max_header_bytes: usize,
    /// `site.local_nets`, filled by the caller (files.log `local_orig`).
    #[serde(skip)]
    pub local_nets: Vec<(IpAddr, u8)>,
    /// `[files]`: file analysis of MIME entities, filled by the caller.
    #[serde(skip)]
    pub files: Arc<FilesConfig>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            ports: vec![110],
            max_pending_commands: 10,
            max_unknown_client_commands: 10,
            log_passwords: false,
            max_line_length: 1 << 20,
            max_command_line_length: 16 << 10,
            max_pending_bytes: 1 << 20,
            dpd_ignore_violations_after: 10240,
            dpd_ignore_violations: false,
            max_analyzer_violations: 1000,
            max_header_bytes: 65536,
            local_nets: Vec::new(),
            files: Arc::new(FilesConfig::default()),
        }
    }
}

impl Pop3Config {
    /// Checks values that would make the analyzer misbehave; the error
    /// names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.ports.contains(&0) {
            return Err("pop3.ports: port 0 is not a valid responder port".into());
        }
        if self.max_line_length < 2 || self.max_line_length > 1 << 30 {
            return Err("pop3.max_line_length: must be between 2 and 1073741824".into());
        }
        if self.max_command_line_length < 2 || self.max_command_line_length > 1 << 30 {
            return Err("pop3.max_command_line_length: must be between 2 and 1073741824".into());
        }
        if self.max_pending_bytes == 0 {
            return Err("pop3.max_pending_bytes: must be at least 1".into());
        }
        if self.max_header_bytes == 0 {
            return Err("pop3.max_header_bytes: must be at least 1".into());
        }
        Ok(())
    }

    /// Whether `a` lies in `site.local_nets`.
    pub fn is_local_addr(&self, a: IpAddr) -> bool {
        self.local_nets
            .iter()
            .any(|&(net, len)| in_subnet(a, net, len))
    }
}

/// True if `a` lies in `net/len` (same address family only).
fn in_subnet(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Pop3Config::default();
        assert_eq!(c.ports, vec![110]);
        assert_eq!(c.max_pending_commands, 10);
        assert_eq!(c.max_unknown_client_commands, 10);
        assert!(!c.log_passwords);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_names_key() {
        let c = Pop3Config {
            max_line_length: 1,
            ..Pop3Config::default()
        };
        assert!(c.validate().unwrap_err().contains("pop3.max_line_length"));
        let c = Pop3Config {
            ports: vec![0],
            ..Pop3Config::default()
        };
        assert!(c.validate().unwrap_err().contains("pop3.ports"));
        let c = Pop3Config {
            max_pending_bytes: 0,
            ..Pop3Config::default()
        };
        assert!(c.validate().unwrap_err().contains("pop3.max_pending_bytes"));
    }

    #[test]
    fn local_addr() {
        let c = Pop3Config {
            local_nets: vec![("10.0.0.0".parse().unwrap(), 8), ("::".parse().unwrap(), 0)],
            ..Pop3Config::default()
        };
        assert!(c.is_local_addr("10.1.2.3".parse().unwrap()));
        assert!(!c.is_local_addr("11.1.2.3".parse().unwrap()));
        assert!(c.is_local_addr("2001:db8::1".parse().unwrap()));
        assert!(!Pop3Config::default().is_local_addr("10.1.2.3".parse().unwrap()));
    }
}
