//! The TLS handshake analyzer: what Zeek's SSL analyzer and its base
//! scripts log about a TLS session (ssl.log, x509.log), from the
//! reassembled bytes of a connection that switched to TLS (SMTP STARTTLS,
//! POP3 STLS) or speaks it from the start (implicit-TLS ports, detection).

mod config;

pub use config::TlsConfig;

use mailtap_core::{ConnCtx, TcpAnalyzer};
use std::sync::Arc;

/// The TLS analyzer of one connection.
pub struct TlsAnalyzer {
    #[allow(dead_code)]
    cfg: Arc<TlsConfig>,
    done: bool,
}

impl TlsAnalyzer {
    pub fn new(cfg: Arc<TlsConfig>) -> Self {
        TlsAnalyzer { cfg, done: false }
    }

    /// True once nothing more of the session can be analysed (handshake
    /// finished: TLS 1.3 after the first application data in each
    /// direction, older versions after both ChangeCipherSpec; or the
    /// analyzer gave up): later payload may be bypassed.
    pub fn handshake_done(&self) -> bool {
        false
    }
}

impl TcpAnalyzer for TlsAnalyzer {
    fn deliver(&mut self, _cx: &mut ConnCtx<'_>, _is_orig: bool, _data: &[u8]) {}
    fn gap(&mut self, _cx: &mut ConnCtx<'_>, _is_orig: bool, _len: u64) {}
    fn done(&mut self, _cx: &mut ConnCtx<'_>) {
        self.done = true;
    }
}

/// Dynamic protocol detection, client side: the first bytes the
/// originator sent look like a TLS/SSL ClientHello.
pub fn dpd_orig_matches(_data: &[u8]) -> bool {
    false
}

/// Dynamic protocol detection, server side: the first bytes the responder
/// sent look like a TLS/SSL server hello (or alert).
pub fn dpd_resp_matches(_data: &[u8]) -> bool {
    false
}
