//! The ssl.log row under construction: the state Zeek's
//! `base/protocols/ssl/main.zeek` keeps in `c$ssl` (history letters,
//! version, cipher, resumption hints) and the row it writes.

use crate::x509::{cert_hostnames, hostname_matches};
use mailtap_core::record::SslRecord;
use mailtap_core::{ConnCtx, Record, Timestamp, Weird};

/// Zeek's `SSL::max_ssl_history_length`.
pub const MAX_HISTORY: usize = 100;

#[derive(Default)]
pub struct Session {
    /// Time of the first SSL event (`set_session`); None until then.
    pub ts: Option<Timestamp>,
    pub version_num: Option<u16>,
    pub version: Option<Vec<u8>>,
    pub cipher: Option<Vec<u8>>,
    pub curve: Option<Vec<u8>>,
    pub server_name: Option<Vec<u8>>,
    pub session_id: Option<Vec<u8>>,
    pub resumed: bool,
    pub client_ticket_empty_session_seen: bool,
    pub client_key_exchange_seen: bool,
    pub client_psk_seen: bool,
    pub last_alert: Option<Vec<u8>>,
    pub next_protocol: Option<Vec<u8>>,
    pub established: bool,
    pub logged: bool,
    pub hrr_seen: bool,
    pub history: Vec<u8>,
    pub cert_chain_fps: Option<Vec<Vec<u8>>>,
    pub client_cert_chain_fps: Option<Vec<Vec<u8>>>,
    /// DER of the server's leaf certificate (for `sni_matches_cert`).
    pub leaf: Option<Vec<u8>>,
    pub ja4: Option<Vec<u8>>,
    pub ja4s: Option<Vec<u8>>,
}

impl Session {
    /// Zeek's `set_session`: the row starts at the first SSL event.
    pub fn touch(&mut self, ts: Timestamp) {
        if self.ts.is_none() {
            self.ts = Some(ts);
        }
    }

    /// `add_to_history`: client letters upper case, server lower case,
    /// bounded (a limit weird at the bound).
    pub fn add_history(&mut self, cx: &mut ConnCtx<'_>, is_client: bool, c: u8) {
        self.touch(cx.ts);
        if self.history.len() >= MAX_HISTORY {
            return;
        }
        self.history.push(if is_client {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        if self.history.len() == MAX_HISTORY {
            cx.limit_weird(Weird::SslMaxSslHistoryLengthReached, Some(b"100"), "SSL");
        }
    }

    /// `sni_matches_cert` as Zeek's ssl/files.zeek sets it: only with a
    /// server name and a parsed leaf that has a CN.
    fn sni_matches(&self) -> Option<bool> {
        let sni = std::str::from_utf8(self.server_name.as_deref()?).ok()?;
        let (dns, cn) = cert_hostnames(self.leaf.as_deref()?)?;
        let cn = cn?;
        if dns.is_empty() {
            return Some(hostname_matches(&cn, sni));
        }
        Some(dns.iter().any(|d| hostname_matches(d, sni)))
    }

    /// Writes the row once (Zeek's `log_record`).
    pub fn log(&mut self, cx: &mut ConnCtx<'_>) {
        if self.logged {
            return;
        }
        let Some(ts) = self.ts else {
            return;
        };
        self.logged = true;
        let rec = SslRecord {
            ts,
            uid: cx.uid.to_owned(),
            id: Some(*cx.id),
            version: self.version.take(),
            cipher: self.cipher.take(),
            curve: self.curve.take(),
            sni_matches_cert: self.sni_matches(),
            server_name: self.server_name.take(),
            resumed: self.resumed,
            last_alert: self.last_alert.take(),
            next_protocol: self.next_protocol.take(),
            established: self.established,
            ssl_history: std::mem::take(&mut self.history),
            cert_chain_fps: self.cert_chain_fps.take(),
            client_cert_chain_fps: self.client_cert_chain_fps.take(),
            ja4: self.ja4.take(),
            ja4s: self.ja4s.take(),
        };
        self.leaf = None;
        cx.emit(Record::Ssl(Box::new(rec)));
    }
}
