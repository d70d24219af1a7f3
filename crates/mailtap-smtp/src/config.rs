//! Tunables of the SMTP analyzer, named and defaulted exactly like Zeek's
//! script options (`SMTP::*`, `MIME::max_header_bytes`, ...), so a user can
//! carry settings over with `--set smtp.<name>=...` or a `[smtp]` table.

use mailtap_mime::FilesConfig;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Zeek's `Host` enum as used by `SMTP::mail_path_capture`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum MailPathCapture {
    /// Always keep following Received headers.
    #[default]
    #[serde(rename = "ALL_HOSTS")]
    AllHosts,
    /// Matches addresses inside `site.local_nets`.
    #[serde(rename = "LOCAL_HOSTS")]
    LocalHosts,
    /// Matches addresses outside `site.local_nets`.
    #[serde(rename = "REMOTE_HOSTS")]
    RemoteHosts,
    /// Never matches.
    #[serde(rename = "NO_HOSTS")]
    NoHosts,
}

/// SMTP analyzer configuration. `Default` is Zeek's default.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Responder ports the analyzer is attached to (`SMTP::ports`).
    pub ports: Vec<u16>,
    /// `SMTP::mail_transaction_validation`.
    pub mail_transaction_validation: bool,
    /// `SMTP::max_invalid_mail_transactions`; 0 = never disable.
    pub max_invalid_mail_transactions: u64,
    /// `SMTP::mail_path_capture`.
    pub mail_path_capture: MailPathCapture,
    /// `SMTP::max_rcptto_addresses`; 0 = unlimited.
    pub max_rcptto_addresses: u64,
    /// `SMTP::max_to_addresses`; 0 = unlimited.
    pub max_to_addresses: u64,
    /// `SMTP::max_cc_addresses`; 0 = unlimited.
    pub max_cc_addresses: u64,
    /// `SMTP::max_path_length`; 0 = unlimited.
    pub max_path_length: u64,
    /// Adds the `is_webmail` column (Zeek's `policy/protocols/smtp/software`).
    pub log_is_webmail: bool,
    /// `SMTP::bdat_max_line_length`: BDAT data lines are cut at this length.
    pub bdat_max_line_length: usize,
    /// `MIME::max_header_bytes`: bytes one header may accumulate.
    pub max_header_bytes: usize,
    /// Length of the un-replied command queue before it is cleared
    /// (`smtp_excessive_pending_cmds`).
    pub max_pending_commands: usize,
    /// Longest line inside a message (DATA, and while resynchronising or
    /// following data past a gap); longer ones are cut (weird
    /// `contentline_size_exceeded`), extraction stays byte-exact. Zeek uses
    /// 16 MiB - 100 for every line.
    pub max_line_length: usize,
    /// Longest command or reply line outside a message (mailtap's bound:
    /// RFC 5321 allows 512 octets for a command and 1000 for a text line;
    /// this leaves room for long AUTH tokens). Zeek uses `max_line_length`
    /// for every line.
    pub max_command_line_length: usize,
    /// Zeek's `max_find_all_string_length`: longer To/Cc/MAIL/RCPT values
    /// yield no addresses.
    pub max_find_all_string_length: usize,
    /// `DPD::ignore_violations_after`: an analyzer violation disables the
    /// analyzer only while the connection carried at most this many bytes
    /// (0 = always).
    pub dpd_ignore_violations_after: u64,
    /// `max_analyzer_violations`: violations reported per analyzer.
    pub max_analyzer_violations: u64,
    /// `site.local_nets`, filled by the caller; used by `mail_path_capture`.
    #[serde(skip)]
    pub local_nets: Vec<(IpAddr, u8)>,
    /// `[files]`: file analysis of MIME entities, filled by the caller.
    #[serde(skip)]
    pub files: Arc<FilesConfig>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            ports: vec![25, 587],
            mail_transaction_validation: true,
            max_invalid_mail_transactions: 25,
            mail_path_capture: MailPathCapture::AllHosts,
            max_rcptto_addresses: 1000,
            max_to_addresses: 1000,
            max_cc_addresses: 1000,
            max_path_length: 1000,
            log_is_webmail: false,
            bdat_max_line_length: 4096,
            max_header_bytes: 65536,
            max_pending_commands: 1000,
            max_line_length: 1 << 20,
            max_command_line_length: 16 << 10,
            max_find_all_string_length: 10000,
            dpd_ignore_violations_after: 10240,
            max_analyzer_violations: 1000,
            local_nets: Vec::new(),
            files: Arc::new(FilesConfig::default()),
        }
    }
}

impl SmtpConfig {
    /// Checks values that would make the analyzer misbehave; the error
    /// names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.ports.contains(&0) {
            return Err("smtp.ports: port 0 is not a valid responder port".into());
        }
        if self.bdat_max_line_length == 0 {
            return Err("smtp.bdat_max_line_length: must be at least 1".into());
        }
        if self.max_header_bytes == 0 {
            return Err("smtp.max_header_bytes: must be at least 1".into());
        }
        if self.max_pending_commands == 0 {
            return Err("smtp.max_pending_commands: must be at least 1".into());
        }
        // The line buffer is allocated up to this size per direction.
        if self.max_line_length < 2 || self.max_line_length > 1 << 30 {
            return Err("smtp.max_line_length: must be between 2 and 1073741824".into());
        }
        if self.max_command_line_length < 2 || self.max_command_line_length > 1 << 30 {
            return Err("smtp.max_command_line_length: must be between 2 and 1073741824".into());
        }
        for (net, len) in &self.local_nets {
            let max = if net.is_ipv4() { 32 } else { 128 };
            if *len > max {
                return Err(format!(
                    "site.local_nets: prefix length /{len} too long for {net}"
                ));
            }
        }
        Ok(())
    }

    /// `Site::is_local_addr`.
    pub fn is_local_addr(&self, a: IpAddr) -> bool {
        self.local_nets
            .iter()
            .any(|&(net, len)| in_subnet(a, net, len))
    }

    /// Zeek's `addr_matches_host(ip, mail_path_capture)`.
    pub fn path_capture_matches(&self, a: IpAddr) -> bool {
        match self.mail_path_capture {
            MailPathCapture::AllHosts => true,
            MailPathCapture::NoHosts => false,
            MailPathCapture::LocalHosts => self.is_local_addr(a),
            MailPathCapture::RemoteHosts => !self.is_local_addr(a),
        }
    }
}

/// True if `a` lies in `net/len` (same address family only).
pub fn in_subnet(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

/// `Site::private_address_space` (Zeek's current default list).
const PRIVATE_SPACE: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("2002::", 24),
    ("10.0.0.0", 8),
    ("2002:a00::", 24),
    ("100.64.0.0", 10),
    ("2002:6440::", 26),
    ("127.0.0.0", 8),
    ("2002:7f00::", 24),
    ("169.254.0.0", 16),
    ("2002:a9fe::", 32),
    ("172.16.0.0", 12),
    ("2002:ac10::", 28),
    ("192.0.0.0", 24),
    ("2002:c000::", 40),
    ("192.0.2.0", 24),
    ("2002:c000:200::", 40),
    ("192.168.0.0", 16),
    ("2002:c0a8::", 32),
    ("198.18.0.0", 15),
    ("2002:c612::", 31),
    ("198.51.100.0", 24),
    ("2002:c633:6400::", 40),
    ("203.0.113.0", 24),
    ("2002:cb00:7100::", 40),
    ("224.0.0.0", 24),
    ("2002:e000::", 40),
    ("239.0.0.0", 8),
    ("2002:ef00::", 24),
    ("240.0.0.0", 4),
    ("2002:f000::", 20),
    ("255.255.255.255", 32),
    ("2002:ffff:ffff::", 48),
    ("::", 128),
    ("::1", 128),
    ("64:ff9b:1::", 48),
    ("100::", 64),
    ("2001::", 23),
    ("2001:2::", 48),
    ("2001:db8::", 32),
    ("fc00::", 7),
    ("fe80::", 10),
    ("fec0::", 10),
];

/// `Site::is_private_addr`.
pub fn is_private_addr(a: IpAddr) -> bool {
    PRIVATE_SPACE
        .iter()
        .any(|&(net, len)| match net.parse::<IpAddr>() {
            Ok(n) => in_subnet(a, n, len),
            Err(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zeeks() {
        let c = SmtpConfig::default();
        assert_eq!(c.ports, vec![25, 587]);
        assert_eq!(c.max_invalid_mail_transactions, 25);
        assert_eq!(c.max_header_bytes, 65536);
        assert_eq!(c.bdat_max_line_length, 4096);
        assert_eq!(c.mail_path_capture, MailPathCapture::AllHosts);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_names_key() {
        let c = SmtpConfig {
            bdat_max_line_length: 0,
            ..SmtpConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("bdat_max_line_length"));
        let c = SmtpConfig {
            local_nets: vec![("10.0.0.0".parse().unwrap(), 33)],
            ..SmtpConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("local_nets"));
    }

    #[test]
    fn capture_semantics() {
        let mut c = SmtpConfig {
            local_nets: vec![("10.0.0.0".parse().unwrap(), 8)],
            ..SmtpConfig::default()
        };
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "8.8.8.8".parse().unwrap();
        c.mail_path_capture = MailPathCapture::LocalHosts;
        assert!(c.path_capture_matches(inside) && !c.path_capture_matches(outside));
        c.mail_path_capture = MailPathCapture::RemoteHosts;
        assert!(!c.path_capture_matches(inside) && c.path_capture_matches(outside));
        c.mail_path_capture = MailPathCapture::NoHosts;
        assert!(!c.path_capture_matches(inside));
        assert!(is_private_addr("192.168.1.1".parse().unwrap()));
        assert!(is_private_addr("::1".parse().unwrap()));
        assert!(!is_private_addr("74.53.140.153".parse().unwrap()));
    }
}
