//! The `<uid>-<n>.json` document that describes one extracted message.
//!
//! Field names and order follow the issue: uid, ts, id, protocol, n,
//! trans_depth, helo, mailfrom, rcptto, rcptto_rejected, rcptto_limit,
//! rcptto_dropped (the recipient cap and how many it dropped), status_code,
//! status_text, user, size, sha256, complete, missing_bytes, partial,
//! headers, attachments, tls, then `line_endings` and `source` (where the
//! bytes came from). Byte strings taken from the wire (helo, addresses,
//! reply text, user) are JSON strings when they are valid UTF-8 and
//! otherwise `{"base64": "..."}` holding the exact bytes, so nothing is
//! lost or guessed.

use mailtap_core::mail::{Attachment, EmailHeaders, EmailMeta};
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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(B64[((v >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

#[derive(DeriveSerialize)]
struct MessageJson<'a> {
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
    line_endings: &'static str,
    source: &'static str,
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
    let doc = MessageJson {
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
        line_endings,
        source,
    };
    let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
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
    fn mapped_addresses_print_as_ipv4() {
        assert_eq!(zeek_addr("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(zeek_addr("2001:db8::5".parse().unwrap()), "2001:db8::5");
    }
}
