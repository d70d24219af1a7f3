//! The TLS handshake analyzer: what Zeek's SSL analyzer and its base
//! scripts log about a TLS session (ssl.log, x509.log), from the
//! reassembled bytes of a connection that switched to TLS (SMTP STARTTLS,
//! POP3 STLS) or speaks it from the start (implicit-TLS ports, detection).
//!
//! Layers: [`record`] frames each direction into records, this module
//! follows Zeek's record-layer rules (version checks, clear/encrypted
//! state per direction, established), [`handshake`] reassembles and parses
//! handshake messages, [`session`] builds the ssl.log row, [`x509`] the
//! x509.log rows, [`ja4`] the fingerprints; [`X509Dedup`] is for the
//! collector.

mod config;
mod cursor;
mod dedup;
mod handshake;
pub mod ja4;
mod names;
mod record;
mod session;
#[cfg(test)]
mod tests;
pub mod x509;

pub use config::TlsConfig;
pub use dedup::{X509Dedup, RELOG_AFTER_SECS};

use mailtap_core::{ConnCtx, TcpAnalyzer, Weird};
use record::{Framing, Header, RecordReader, Step};
use session::Session;
use std::sync::Arc;

const SSLV2: u16 = 0x0002;

/// Record content types.
const CT_CCS: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;
const CT_HEARTBEAT: u8 = 24;

/// The TLS analyzer of one connection.
pub struct TlsAnalyzer {
    cfg: Arc<TlsConfig>,
    readers: [RecordReader; 2],
    st: State,
}

/// Connection-wide protocol state (shared by both directions).
pub(crate) struct State {
    pub cfg: Arc<TlsConfig>,
    /// Zeek's `record_layer_version_`, fixed by the first TLS record (or an
    /// SSLv2 server hello).
    pub rl_version: Option<u16>,
    /// Per direction (0 = responder, 1 = originator): encryption started.
    pub encrypted: [bool; 2],
    /// Version the server chose (hello or supported_versions).
    pub negotiated: Option<u16>,
    pub cipher: Option<u16>,
    pub established: bool,
    /// Analysis over: violation, gap, established (Zeek disables the
    /// analyzer after logging) or config.
    pub stopped: bool,
    pub hs: [handshake::HsBuf; 2],
    pub sess: Session,
    pub ja4_client: Option<ja4::ClientHelloInfo>,
}

fn di(is_orig: bool) -> usize {
    usize::from(is_orig)
}

impl TlsAnalyzer {
    pub fn new(cfg: Arc<TlsConfig>) -> Self {
        let stopped = !cfg.analyze;
        TlsAnalyzer {
            cfg: cfg.clone(),
            readers: Default::default(),
            st: State {
                cfg,
                rl_version: None,
                encrypted: [false; 2],
                negotiated: None,
                cipher: None,
                established: false,
                stopped,
                hs: Default::default(),
                sess: Session::default(),
                ja4_client: None,
            },
        }
    }

    /// True once nothing more of the session can be analysed (handshake
    /// finished: TLS 1.3 after the first application data in each
    /// direction, older versions after both ChangeCipherSpec; or the
    /// analyzer gave up): later payload may be bypassed.
    pub fn handshake_done(&self) -> bool {
        self.st.stopped
    }

    fn release(&mut self) {
        for r in &mut self.readers {
            r.release();
        }
        self.st.hs = Default::default();
    }
}

impl TcpAnalyzer for TlsAnalyzer {
    fn deliver(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        if self.st.stopped {
            return;
        }
        let st = &mut self.st;
        self.readers[di(is_orig)].feed(data, &mut |step| match step {
            Step::Header(h) => st.on_header(cx, is_orig, h),
            Step::Record(h, body, len) => {
                st.on_record(cx, is_orig, h, body, len);
                (!st.stopped).then_some(Framing::Stop)
            }
        });
        if self.st.stopped {
            self.release();
        }
    }

    fn gap(&mut self, cx: &mut ConnCtx<'_>, _is_orig: bool, _len: u64) {
        // Zeek's SSL analyzer stops parsing both directions after a gap.
        let _ = cx;
        self.st.stopped = true;
        self.release();
    }

    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        self.st.sess.log(cx);
        self.st.stopped = true;
        self.release();
    }

    fn disabled(&self) -> bool {
        self.st.stopped && !self.cfg.analyze
    }
}

impl State {
    /// Zeek's analyzer violation: the row is logged as it is, the service
    /// is no longer reported, nothing more is parsed.
    pub fn violation(&mut self, cx: &mut ConnCtx<'_>) {
        cx.conn.service.retain(|s| *s != "ssl");
        self.sess.log(cx);
        self.stopped = true;
    }

    /// True when the negotiated version gets TLS 1.3 treatment.
    fn tls13(&self) -> bool {
        self.negotiated.is_some_and(|v| !names::is_pre13(v))
    }

    /// Zeek's record-layer version check on a header; the body framing.
    fn on_header(&mut self, cx: &mut ConnCtx<'_>, is_orig: bool, h: Header) -> Option<Framing> {
        let v = self.record_version(is_orig, h);
        let Some(v) = v else {
            self.violation(cx);
            return None;
        };
        if v == SSLV2 {
            let total = (usize::from(h[0] & 0x7f) << 8 | usize::from(h[1])).checked_sub(3);
            let Some(len) = total else {
                self.violation(cx);
                return None;
            };
            return Some(Framing::Body {
                len,
                keep: !self.encrypted[di(is_orig)],
            });
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        let keep = !self.encrypted[di(is_orig)]
            && matches!(h[0], CT_CCS | CT_ALERT | CT_HANDSHAKE | CT_HEARTBEAT);
        Some(Framing::Body { len, keep })
    }

    fn record_version(&mut self, is_orig: bool, h: Header) -> Option<u16> {
        let tls_ok = |v: u16| (0x0300..=0x0303).contains(&v);
        if let Some(rl) = self.rl_version {
            if rl == SSLV2 {
                return Some(SSLV2);
            }
            let v = u16::from_be_bytes([h[1], h[2]]);
            return tls_ok(v).then_some(rl);
        }
        if h[0] & 0x80 != 0 {
            if h[2] == 0x01 && is_orig {
                let v = u16::from_be_bytes([h[3], h[4]]);
                return (v == SSLV2 || tls_ok(v)).then_some(SSLV2);
            }
            if h[2] == 0x04 && h[4] < 2 && !is_orig {
                self.rl_version = Some(SSLV2);
                return Some(SSLV2);
            }
            return None;
        }
        let v = u16::from_be_bytes([h[1], h[2]]);
        if tls_ok(v) && (20..=30).contains(&h[0]) {
            self.rl_version = Some(v);
            return Some(v);
        }
        None
    }

    fn start_encryption(&mut self, is_orig: bool) {
        self.encrypted[di(is_orig)] = true;
    }

    /// A complete record: Zeek's `determine_state`, then the ciphertext or
    /// plaintext handling.
    fn on_record(
        &mut self,
        cx: &mut ConnCtx<'_>,
        is_orig: bool,
        h: Header,
        body: &[u8],
        len: usize,
    ) {
        let sslv2 =
            self.rl_version == Some(SSLV2) || (h[0] & 0x80 != 0 && self.rl_version.is_none());
        let ct = if sslv2 {
            300 + u16::from(h[2])
        } else {
            u16::from(h[0])
        };
        let d = di(is_orig);
        if !self.encrypted[d] && ct == u16::from(CT_APPDATA) && !sslv2 {
            let v = self.negotiated.unwrap_or(0);
            if !names::is_pre13(v) {
                self.start_encryption(is_orig);
            }
        }
        if self.encrypted[d] {
            if self.encrypted[0] && self.encrypted[1] && !self.established {
                self.establish(cx);
            }
            return;
        }
        // ssl_plaintext_data
        self.sess.touch(cx.ts);
        if ct == u16::from(CT_APPDATA) && self.sess.version.is_some() && !self.sess.established {
            cx.weird_unsourced(Weird::SslEarlyApplicationData, None);
        }
        let _ = len;
        match ct {
            20 => {
                for _ in body {
                    self.sess.add_history(cx, is_orig, b'i');
                    if is_orig
                        && self.sess.client_ticket_empty_session_seen
                        && !self.sess.client_key_exchange_seen
                    {
                        self.sess.resumed = true;
                    }
                    if !self.tls13() {
                        self.start_encryption(is_orig);
                    }
                }
            }
            21 => {
                for a in body.chunks_exact(2) {
                    self.sess.add_history(cx, is_orig, b'l');
                    self.sess.last_alert = Some(names::alert_name(a[1]));
                }
            }
            22 => self.handshake_data(cx, is_orig, body),
            23 => {}
            24 => {
                if body.len() < 3 {
                    self.violation(cx);
                    return;
                }
                self.sess.add_history(cx, is_orig, b'b');
            }
            300 => {
                // SSLv2 error: Zeek raises it as an alert with the code.
                self.sess.add_history(cx, is_orig, b'l');
                let code = u16::from_be_bytes([h[3], h[4]]);
                self.sess.last_alert = Some(match u8::try_from(code) {
                    Ok(c) => names::alert_name(c),
                    Err(_) => format!("unknown-{code}").into_bytes(),
                });
            }
            301 => self.v2_client_hello(cx, h, body),
            302 => {
                // SSLv2 client master key: both sides encrypt from here.
                self.start_encryption(true);
                self.start_encryption(false);
                self.establish(cx);
            }
            304 => self.v2_server_hello(cx, h, body),
            _ => self.violation(cx),
        }
    }

    /// Zeek's `ssl_established`: the row is logged and the analyzer is
    /// removed.
    fn establish(&mut self, cx: &mut ConnCtx<'_>) {
        self.established = true;
        self.sess.touch(cx.ts);
        self.sess.established = true;
        self.sess.log(cx);
        self.stopped = true;
    }
}

/// Dynamic protocol detection, client side: the first bytes the
/// originator sent look like a TLS/SSL ClientHello.
pub fn dpd_orig_matches(data: &[u8]) -> bool {
    // TLS record: handshake, version 3.x, then a client_hello.
    if data.len() >= 6 && data[0] == 22 && data[1] == 3 && data[2] <= 4 {
        return data[5] == 1;
    }
    // SSLv2 (or v2-compatible) client hello: 2-byte length, type 1,
    // version 2 or 3.x.
    data.len() >= 5
        && data[0] & 0x80 != 0
        && data[2] == 1
        && (data[3] == 0 || data[3] == 3)
        && data[4] <= 4
}

/// Dynamic protocol detection, server side: the first bytes the responder
/// sent look like a TLS/SSL server hello (or alert).
pub fn dpd_resp_matches(data: &[u8]) -> bool {
    if data.len() >= 6 && data[0] == 22 && data[1] == 3 && data[2] <= 4 {
        return data[5] == 2;
    }
    if data.len() >= 3 && data[0] == 21 && data[1] == 3 && data[2] <= 4 {
        return true;
    }
    data.len() >= 7 && data[0] & 0x80 != 0 && data[2] == 4 && data[5] == 0 && data[6] == 2
}
