//! The `<uid>-<n>.json` document that describes one extracted message.
//!
//! Field names and order follow the issue: uid, ts, id, protocol, n,
//! trans_depth, helo, mailfrom, rcptto, rcptto_rejected, rcptto_limit,
//! rcptto_dropped (the recipient cap and how many it dropped), status_code,
//! status_text, user, size, sha256, complete, missing_bytes, partial,
//! headers, attachments, tls, for IMAP messages only direction, mailbox,
//! uidvalidity, seq, imap_uid, section, flags, internal_date and
//! imap_status, then `line_endings` and `source` (where the bytes came
//! from). Byte strings taken from the wire (helo, addresses,
//! reply text, user) are JSON strings when they are valid UTF-8 and
//! otherwise `{"base64": "..."}` holding the exact bytes, so nothing is
//! lost or guessed.

use mailtap_core::mail::{Attachment, EmailHeaders, EmailMeta, ImapMeta};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Serialize as DeriveSerialize;
use std::net::IpAddr;

/// Where the message bytes came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Reassembled from the capture: bytes exactly as transferred
    /// (after SMTP dot-unstuffing), original line endings.
    Capture,
    /// Rebuilt from an ACE session transcript: every line ends in LF, and
    /// only the originator's address and port are known.
    AceTranscript { orig: Option<(IpAddr, u16)> },
}

/// Bytes as a JSON string when UTF-8, else `{"base64": ...}`.
pub struct JBytes<'a>(pub &'a [u8]);

impl Serialize for JBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(t) => s.serialize_str(t),
            Err(_) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("base64", &base64(self.0))?;
                m.end()
            }
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An address as Zeek prints it (IPv4-mapped IPv6 addresses are IPv4).
pub fn zeek_addr(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[derive(DeriveSerialize)]
struct IdJson {
    orig_h: Option<String>,
    orig_p: Option<u16>,
    resp_h: Option<String>,
    resp_p: Option<u16>,
}

#[derive(DeriveSerialize)]
struct Rejected<'a> {
    address: JBytes<'a>,
    code: u32,
}

#[derive(DeriveSerialize)]
struct HeadersJson<'a> {
    date: &'a Option<String>,
    from: &'a Option<String>,
    to: &'a Option<String>,
    cc: &'a Option<String>,
    reply_to: &'a Option<String>,
    subject: &'a Option<String>,
    msg_id: &'a Option<String>,
    in_reply_to: &'a Option<String>,
    user_agent: &'a Option<String>,
}

#[derive(DeriveSerialize)]
struct AttachmentJson<'a> {
    filename: &'a Option<String>,
    mime_type: &'a Option<String>,
    size: u64,
    sha256: &'a str,
}

/// One message's metadata document, ready to serialize: the fields of
/// [`message_json`] in its order. The Kafka sink serializes it with its own
/// members after it (`#[serde(flatten)]`).
#[derive(DeriveSerialize)]
pub struct MessageJson<'a> {
    uid: &'a str,
    ts: Option<f64>,
    id: Option<IdJson>,
    protocol: Option<&'static str>,
    n: u32,
    trans_depth: u64,
    helo: Option<JBytes<'a>>,
    mailfrom: Option<JBytes<'a>>,
    rcptto: Vec<JBytes<'a>>,
    rcptto_rejected: Vec<Rejected<'a>>,
    rcptto_limit: u64,
    rcptto_dropped: Option<u64>,
    status_code: Option<u32>,
    status_text: Option<JBytes<'a>>,
    user: Option<JBytes<'a>>,
    size: u64,
    sha256: &'a str,
    complete: bool,
    missing_bytes: Option<u64>,
    partial: bool,
    headers: HeadersJson<'a>,
    attachments: Vec<AttachmentJson<'a>>,
    tls: bool,
    /// IMAP messages only: absent for SMTP and POP3.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    imap: Option<ImapJson<'a>>,
    line_endings: &'static str,
    source: &'static str,
}

/// What an IMAP message's document adds (`EmailMeta::imap`).
#[derive(DeriveSerialize)]
struct ImapJson<'a> {
    /// `fetch` or `append`.
    direction: Option<&'static str>,
    mailbox: Option<JBytes<'a>>,
    uidvalidity: Option<u64>,
    /// Message sequence number (FETCH).
    seq: Option<u64>,
    imap_uid: Option<u64>,
    section: Option<&'a str>,
    flags: Vec<JBytes<'a>>,
    internal_date: Option<JBytes<'a>>,
    /// APPEND: the server's tagged status.
    imap_status: Option<JBytes<'a>>,
}

fn imap_json(m: &ImapMeta) -> ImapJson<'_> {
    ImapJson {
        direction: m.direction,
        mailbox: m.mailbox.as_deref().map(JBytes),
        uidvalidity: m.uidvalidity,
        seq: m.seq,
        imap_uid: m.imap_uid,
        section: m.section.as_deref(),
        flags: m.flags.iter().map(|f| JBytes(f)).collect(),
        internal_date: m.internal_date.as_deref().map(JBytes),
        imap_status: m.status.as_deref().map(JBytes),
    }
}

fn headers_json(h: &EmailHeaders) -> HeadersJson<'_> {
    HeadersJson {
        date: &h.date,
        from: &h.from,
        to: &h.to,
        cc: &h.cc,
        reply_to: &h.reply_to,
        subject: &h.subject,
        msg_id: &h.msg_id,
        in_reply_to: &h.in_reply_to,
        user_agent: &h.user_agent,
    }
}

fn attachment_json(a: &Attachment) -> AttachmentJson<'_> {
    AttachmentJson {
        filename: &a.filename,
        mime_type: &a.mime_type,
        size: a.size,
        sha256: &a.sha256,
    }
}

/// Epoch seconds with Zeek's six decimals, as a JSON number.
fn secs(ts: mailtap_core::Timestamp) -> f64 {
    ts.to_string().parse().unwrap_or(0.0)
}

/// Options for [`message_json`].
pub struct JsonOptions {
    pub origin: Origin,
    /// False when the message's start time is unknown (a message finished
    /// at shutdown without its metadata): `ts` is then null.
    pub ts_known: bool,
    /// False when how much is missing is unknown: `missing_bytes` is null.
    pub missing_known: bool,
}

/// Recipients per list the SMTP analyzer keeps for a captured message
/// (mailtap-smtp's `MAX_META_RCPTS`).
pub const CAPTURE_RCPT_LIMIT: u64 = 1000;

/// The recipient cap that applied to a message and how many recipients it
/// dropped (`None`: unknown, only that the cap was reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcptLimit {
    pub limit: u64,
    pub dropped: Option<u64>,
}

impl RcptLimit {
    /// A captured message: the analyzer keeps [`CAPTURE_RCPT_LIMIT`] per
    /// list and does not count what it drops, so a list at the cap gives
    /// `dropped: None` (some may be missing), else 0.
    pub fn capture(m: &EmailMeta) -> Self {
        let full = m.rcptto.len() as u64 >= CAPTURE_RCPT_LIMIT
            || m.rcptto_rejected.len() as u64 >= CAPTURE_RCPT_LIMIT;
        RcptLimit {
            limit: CAPTURE_RCPT_LIMIT,
            dropped: if full { None } else { Some(0) },
        }
    }
}

/// The JSON document for one message, pretty-printed, with a final LF
/// (recipient cap as [`RcptLimit::capture`]).
pub fn message_json(m: &EmailMeta, opt: &JsonOptions) -> Vec<u8> {
    message_json_with(m, opt, RcptLimit::capture(m))
}

/// [`message_json`] with the recipient cap that applied: `rcptto_limit`
/// and `rcptto_dropped` in the document.
pub fn message_json_with(m: &EmailMeta, opt: &JsonOptions, rcpt: RcptLimit) -> Vec<u8> {
    let doc = message_doc(m, opt, rcpt);
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// The document [`message_json_with`] writes, unserialized.
pub fn message_doc<'a>(m: &'a EmailMeta, opt: &JsonOptions, rcpt: RcptLimit) -> MessageJson<'a> {
    let id = match (&opt.origin, m.id) {
        (Origin::Capture, Some(id)) => Some(IdJson {
            orig_h: Some(zeek_addr(id.orig_h)),
            orig_p: Some(id.orig_p),
            resp_h: Some(zeek_addr(id.resp_h)),
            resp_p: Some(id.resp_p),
        }),
        (Origin::AceTranscript { orig: Some((h, p)) }, _) => Some(IdJson {
            orig_h: Some(zeek_addr(*h)),
            orig_p: Some(*p),
            resp_h: None,
            resp_p: None,
        }),
        _ => None,
    };
    let (line_endings, source) = match opt.origin {
        Origin::Capture => ("original", "capture"),
        Origin::AceTranscript { .. } => ("lf", "ace-transcript"),
    };
    MessageJson {
        uid: &m.uid,
        ts: opt.ts_known.then(|| secs(m.ts)),
        id,
        protocol: m.protocol.map(|p| p.as_str()),
        n: m.n,
        trans_depth: m.trans_depth,
        helo: m.helo.as_deref().map(JBytes),
        mailfrom: m.mailfrom.as_deref().map(JBytes),
        rcptto: m.rcptto.iter().map(|r| JBytes(r)).collect(),
        rcptto_rejected: m
            .rcptto_rejected
            .iter()
            .map(|(a, c)| Rejected {
                address: JBytes(a),
                code: *c,
            })
            .collect(),
        rcptto_limit: rcpt.limit,
        rcptto_dropped: rcpt.dropped,
        status_code: m.status_code,
        status_text: m.status_text.as_deref().map(JBytes),
        user: m.user.as_deref().map(JBytes),
        size: m.size,
        sha256: &m.sha256,
        complete: m.complete,
        missing_bytes: opt.missing_known.then_some(m.missing_bytes),
        partial: m.partial,
        headers: headers_json(&m.headers),
        attachments: m.attachments.iter().map(attachment_json).collect(),
        tls: m.tls,
        imap: m.imap.as_deref().map(imap_json),
        line_endings,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn non_utf8_bytes_are_kept_as_base64() {
        let v = serde_json::to_value(JBytes(b"caf\xe9")).unwrap();
        assert_eq!(v, serde_json::json!({"base64": "Y2Fm6Q=="}));
        let v = serde_json::to_value(JBytes("café".as_bytes())).unwrap();
        assert_eq!(v, serde_json::json!("café"));
    }

    #[test]
    fn imap_fields_only_for_imap() {
        use mailtap_core::mail::MailProtocol;
        let opt = JsonOptions {
            origin: Origin::Capture,
            ts_known: true,
            missing_known: true,
        };
        let smtp = EmailMeta {
            protocol: Some(MailProtocol::Smtp),
            ..EmailMeta::default()
        };
        let text = String::from_utf8(message_json(&smtp, &opt)).unwrap();
        // SMTP and POP3 documents are as they were: `tls` then
        // `line_endings`.
        assert!(
            text.contains("\"tls\": false,\n  \"line_endings\""),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("direction").is_none() && v.get("mailbox").is_none());
        let imap = EmailMeta {
            protocol: Some(MailProtocol::Imap),
            user: Some(b"bob".to_vec()),
            partial: true,
            imap: Some(Box::new(ImapMeta {
                direction: Some("fetch"),
                mailbox: Some(b"INBOX".to_vec()),
                uidvalidity: Some(7),
                seq: Some(2),
                imap_uid: Some(42),
                section: Some("BODY[HEADER]".into()),
                flags: vec![b"\\Seen".to_vec()],
                internal_date: None,
                status: None,
            })),
            ..EmailMeta::default()
        };
        let v: serde_json::Value = serde_json::from_slice(&message_json(&imap, &opt)).unwrap();
        assert_eq!(v["protocol"], "imap");
        assert_eq!(v["direction"], "fetch");
        assert_eq!(v["mailbox"], "INBOX");
        assert_eq!(v["uidvalidity"], 7);
        assert_eq!(v["seq"], 2);
        assert_eq!(v["imap_uid"], 42);
        assert_eq!(v["section"], "BODY[HEADER]");
        assert_eq!(v["flags"], serde_json::json!(["\\Seen"]));
        assert_eq!(v["partial"], true);
        assert_eq!(v["user"], "bob");
        assert!(v["internal_date"].is_null() && v["imap_status"].is_null());
    }

    #[test]
    fn mapped_addresses_print_as_ipv4() {
        assert_eq!(zeek_addr("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(zeek_addr("2001:db8::5".parse().unwrap()), "2001:db8::5");
    }
}
