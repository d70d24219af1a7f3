//! What the generator reports about what it wrote, for tests to check an
//! analyzer against: every plaintext message as its receiver sees it, and
//! every TLS session's recorded handshake.

use std::net::IpAddr;

/// Which protocol carried a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Smtp,
    Pop3,
    Imap,
}

impl Protocol {
    /// `smtp`, `pop3` or `imap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
        }
    }
}

/// Ground truth of one message, as reported by [`generate_with_truth`].
#[derive(Debug)]
pub struct MessageTruth<'a> {
    pub protocol: Protocol,
    /// Client (connection originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server (responder) address and port (25 or 587 for SMTP, 110 for
    /// POP3).
    pub resp: (IpAddr, u16),
    /// 0-based message number within the session, in transfer order (for
    /// POP3: the number of the `RETR`/`TOP` response, not the maildrop
    /// message number).
    pub index_in_session: u32,
    /// The bare address of `MAIL FROM:<…>` (POP3: the `From:` address).
    pub mailfrom: &'a str,
    /// SMTP: the bare address of every `RCPT TO:<…>` sent, in order,
    /// including a recipient the server rejected with 550 (Zeek logs those
    /// too). POP3: the envelope the message was composed with (not on the
    /// wire).
    pub rcptto: &'a [String],
    /// SMTP: the recipients the server rejected (a subset of `rcptto`).
    pub rcptto_rejected: &'a [String],
    /// The Subject header value as Zeek reports it: raw (encoded words are
    /// not decoded), folded lines joined by dropping the CRLF only.
    pub subject: &'a str,
    /// The Subject with RFC 2047 encoded words decoded to UTF-8 (and the
    /// whitespace between adjacent encoded words removed).
    pub subject_decoded: &'a str,
    /// The exact message bytes transferred, after dot-unstuffing (DATA,
    /// RETR, TOP) or chunk concatenation (BDAT); always ends in CRLF. May
    /// contain LF-only lines (see [`Mix::lf_only`]).
    pub bytes: &'a [u8],
    pub via_bdat: bool,
    /// SMTP: the server's reply code to the end of data (250, or 5xx when
    /// the message was rejected). POP3: `None`.
    pub status_code: Option<u16>,
    /// POP3 and IMAP: the user that logged in. SMTP: `None`.
    pub user: Option<&'a str>,
    /// POP3 `TOP` response: only the headers and the first lines of the
    /// body. IMAP: a fetch of a header, a text or an `<o.n>` piece (the
    /// `bytes` are that piece; `subject` is empty when the piece does not
    /// start at the message's start).
    pub partial: bool,
    /// False when the generator left a segment of this message out of the
    /// capture (see [`GenConfig::gap_percent`]); `bytes` is then what was
    /// sent, not what a receiver of the capture can see.
    pub complete: bool,
    /// IMAP: what the transfer was (`None` for SMTP and POP3).
    pub imap: Option<ImapTruth>,
}

/// What an IMAP message transfer was: a FETCH response's literal or an
/// APPEND's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImapTruth {
    /// An APPEND (client to server); else a FETCH response.
    pub append: bool,
    /// The selected mailbox (fetch) or APPEND's mailbox.
    pub mailbox: &'static str,
    /// The response's item without its origin (`BODY[]`, `RFC822`,
    /// `BODY[HEADER]`, `RFC822.HEADER`, `BODY[TEXT]`), or `APPEND`.
    pub section: &'static str,
    /// The `<o>` of a partial fetch's response.
    pub origin: Option<u64>,
    /// The message sequence number of a fetch.
    pub seq: Option<u32>,
    /// The IMAP UID: UID FETCH's (in the response), or APPENDUID's.
    pub uid: Option<u32>,
    /// The transfer went over COMPRESS DEFLATE (the `bytes` are the
    /// inflated message, as for every other transfer).
    pub compressed: bool,
    /// The FETCH responses that carried it: more than one for a message
    /// fetched in pieces (`BODY.PEEK[]<o.n>` until one comes back short),
    /// which a sensor joins into the whole message.
    pub pieces: u32,
}

impl ImapTruth {
    /// The section as the response labels it (`BODY[]<1024>`).
    pub fn label(&self) -> String {
        match self.origin {
            Some(o) => format!("{}<{o}>", self.section),
            None => self.section.to_string(),
        }
    }
}

/// One certificate of a recorded handshake (see [`HandshakeTruth`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertTruth {
    /// SHA-256 of the DER certificate, lowercase hex (Zeek's
    /// `fingerprint`).
    pub fingerprint: &'static str,
    /// The subject as OpenSSL prints it in RFC 2253 form (what Zeek logs as
    /// `certificate.subject`).
    pub subject: &'static str,
    pub issuer: &'static str,
}

/// What one recorded TLS handshake negotiated, as the real peers reported
/// it when it was recorded (`scripts/record-tls-handshakes.py`; the
/// fixtures and their notes are in `crates/mailtap-gen/tls/`). Field names
/// and values follow Zeek's ssl.log; `None` is Zeek's unset (`-`).
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeTruth {
    /// The fixture's name (`t13_rsa_sni`, `alert_unknown_ca`, ...).
    pub name: &'static str,
    /// `TLSv12` or `TLSv13`; `None` when the server sent no ServerHello.
    pub version: Option<&'static str>,
    /// The IANA name (`TLS_AES_256_GCM_SHA384`).
    pub cipher: Option<&'static str>,
    /// The key-exchange group (`x25519`, `secp256r1`); `None` when there
    /// was no key exchange (a resumed TLS 1.2 handshake) or no ServerHello.
    pub curve: Option<&'static str>,
    /// The SNI the client sent; `None`: no SNI.
    pub server_name: Option<&'static str>,
    pub resumed: bool,
    /// The handshake completed (both peers said so).
    pub established: bool,
    /// The fatal alert that ended a failed handshake (`unknown_ca`,
    /// `protocol_version`); `None` for an established one (its
    /// close_notify is encrypted).
    pub last_alert: Option<&'static str>,
    /// The ALPN protocol the server selected.
    pub next_protocol: Option<&'static str>,
    /// SHA-256 fingerprints of the certificates the server sent in the
    /// clear, leaf first: empty in TLS 1.3 (the Certificate message is
    /// encrypted) and in a resumed TLS 1.2 handshake.
    pub cert_chain_fps: &'static [&'static str],
    /// Likewise for the client's certificates.
    pub client_cert_chain_fps: &'static [&'static str],
    /// Every certificate of the two lists above (server's first).
    pub certs: &'static [CertTruth],
}

/// Ground truth of one TLS session (STARTTLS after `220 Ready to start
/// TLS`), as reported by [`generate_with_tls_truth`]: the session's
/// endpoints and the recorded handshake it replays.
#[derive(Clone, Copy, Debug)]
pub struct TlsTruth {
    /// Client (connection originator) address and port.
    pub orig: (IpAddr, u16),
    /// Server address and port.
    pub resp: (IpAddr, u16),
    pub handshake: &'static HandshakeTruth,
}
