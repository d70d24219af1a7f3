//! `[ssl]`: where TLS is analysed and the analyzer's limits.

use serde::{Deserialize, Serialize};

/// TLS analyzer configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Implicit-TLS ports: connections to them are TLS from the first byte
    /// (SMTPS 465, IMAPS 993, POP3S 995).
    pub ports: Vec<u16>,
    /// Analyse the TLS handshake after STARTTLS/STLS and on `ports`; when
    /// false the encrypted part is skipped without analysis.
    pub analyze: bool,
    /// Largest handshake message buffered for parsing (a certificate chain
    /// is one message); larger ones are skipped (weird).
    pub max_handshake_message: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ports: vec![465, 993, 995],
            analyze: true,
            max_handshake_message: 256 * 1024,
        }
    }
}

impl TlsConfig {
    /// Checks values that would make the analyzer misbehave; the error
    /// names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_handshake_message < 1024 || self.max_handshake_message > 16 * 1024 * 1024 {
            return Err(format!(
                "ssl.max_handshake_message = {}: must be between 1024 and 16777216",
                self.max_handshake_message
            ));
        }
        Ok(())
    }
}
