//! Records to Kafka messages: topic, key, JSON value.

use crate::{KafkaConfig, Topics};
use mailtap_core::mail::{EmailChunk, EmailMeta};
use mailtap_core::Record;
use mailtap_extract::json::{message_doc, JsonOptions, MessageJson, Origin, RcptLimit};
use mailtap_logs::{format_event, format_json_row, LogLimits};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which topic of [`Topics`] a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Smtp,
    Pop3,
    Imap,
    Conn,
    Files,
    Weird,
    Events,
    Emails,
    Ssl,
    X509,
}

impl Kind {
    pub fn topic(self, t: &Topics) -> &str {
        match self {
            Kind::Smtp => &t.smtp,
            Kind::Pop3 => &t.pop3,
            Kind::Imap => &t.imap,
            Kind::Conn => &t.conn,
            Kind::Files => &t.files,
            Kind::Weird => &t.weird,
            Kind::Events => &t.events,
            Kind::Emails => &t.emails,
            Kind::Ssl => &t.ssl,
            Kind::X509 => &t.x509,
        }
    }
}

/// An `emails` value: the `--extract-dir` document, then the message
/// (`data_base64`) or, over the cap, `data_truncated` and `eml_path`.
#[derive(serde::Serialize)]
struct EmailValue<'a> {
    #[serde(flatten)]
    meta: MessageJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    data_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    eml_path: Option<Cow<'a, str>>,
}

/// `bytes` as a JSON string of their base64 (RFC 4648, padded). The
/// alphabet needs no JSON escaping, and a raw value is written as it is:
/// serde_json checks it once on creation (a word at a time) instead of
/// escaping it byte by byte while serializing.
fn base64_value(bytes: &[u8]) -> Box<RawValue> {
    use base64::Engine as _;
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
    s.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
    s.push('"');
    RawValue::from_string(s).expect("a base64 string is a JSON string")
}

/// One message ready to produce.
pub(crate) struct Outgoing {
    pub kind: Kind,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

/// A message whose bytes are still arriving.
struct Pending {
    data: Vec<u8>,
    seen: u64,
    truncated: bool,
}

pub(crate) struct Encoder {
    limits: LogLimits,
    inline_max: usize,
    buffer_max: usize,
    extract_dir: Option<PathBuf>,
    emails: HashMap<(String, u32), Pending>,
    buffered: usize,
    pub emails_inline: u64,
    pub emails_truncated: u64,
    /// Messages whose received bytes differed from their size.
    pub emails_size_mismatch: u64,
    /// Message bytes the analyzers extracted that never reached the sink.
    pub email_bytes_lost: u64,
}

impl Encoder {
    pub fn new(cfg: &KafkaConfig) -> Self {
        Encoder {
            limits: cfg.log_limits,
            inline_max: cfg.email_inline_max,
            buffer_max: cfg.email_buffer_max_bytes,
            extract_dir: cfg.extract_dir.clone(),
            emails: HashMap::new(),
            buffered: 0,
            emails_inline: 0,
            emails_truncated: 0,
            emails_size_mismatch: 0,
            email_bytes_lost: 0,
        }
    }

    /// The message for `r`, or `None` for an email chunk (buffered until its
    /// metadata comes).
    pub fn encode(&mut self, r: &Record) -> Option<Outgoing> {
        let (kind, key) = match r {
            Record::Conn(c) => (Kind::Conn, Some(c.uid.clone())),
            Record::Smtp(s) => (Kind::Smtp, Some(s.uid.clone())),
            Record::Weird(w) => (Kind::Weird, w.uid.clone()),
            Record::Pop3(p) => (Kind::Pop3, Some(p.uid.clone())),
            Record::Imap(p) => (Kind::Imap, Some(p.uid.clone())),
            Record::File(f) => (Kind::Files, f.uid.clone()),
            Record::Ssl(r) => (Kind::Ssl, Some(r.uid.clone())),
            // x509.log has no uid: certificates are keyed by fingerprint.
            Record::X509(r) => (
                Kind::X509,
                Some(String::from_utf8_lossy(&r.fingerprint).into_owned()),
            ),
            Record::Event(e) => {
                let mut value = Vec::with_capacity(256);
                format_event(e, &mut value);
                strip_lf(&mut value);
                return Some(Outgoing {
                    kind: Kind::Events,
                    key: Some(e.uid.clone()),
                    value,
                });
            }
            Record::EmailData(c) => {
                self.chunk(c);
                return None;
            }
            Record::EmailMeta(m) => return Some(self.meta(m, true)),
        };
        let log = r.as_log()?;
        let mut value = Vec::with_capacity(512);
        // Truncations are not turned into weirds here: the log sink, which
        // sees the same records, already does that once.
        format_json_row(log, &self.limits, &mut value);
        strip_lf(&mut value);
        Some(Outgoing { kind, key, value })
    }

    fn chunk(&mut self, c: &EmailChunk) {
        let p = self
            .emails
            .entry((c.uid.clone(), c.n))
            .or_insert_with(|| Pending {
                data: Vec::new(),
                seen: 0,
                truncated: false,
            });
        p.seen += c.data.len() as u64;
        if p.truncated {
            return;
        }
        if p.data.len() + c.data.len() > self.inline_max
            || self.buffered + c.data.len() > self.buffer_max
        {
            // Over the cap (or too many big messages at once): stop
            // buffering this one and free what it held.
            p.truncated = true;
            self.buffered -= p.data.len();
            p.data = Vec::new();
            return;
        }
        p.data.extend_from_slice(&c.data);
        self.buffered += c.data.len();
    }

    fn meta(&mut self, m: &EmailMeta, known: bool) -> Outgoing {
        let p = self.emails.remove(&(m.uid.clone(), m.n));
        // The bytes that arrived against the size the analyzer reported:
        // when chunks were lost on the way, the message is described as
        // received (its size; its SHA-256 when buffered whole, else empty)
        // and marked incomplete with the shortfall in `missing_bytes`.
        let seen = p.as_ref().map_or(0, |p| p.seen);
        let fixed;
        let m = if known && seen != m.size {
            let mut f = m.clone();
            self.emails_size_mismatch += 1;
            self.email_bytes_lost += m.size.saturating_sub(seen);
            f.missing_bytes += m.size.saturating_sub(seen);
            f.size = seen;
            f.complete = false;
            f.sha256 = match &p {
                Some(p) if !p.truncated => hex(&Sha256::digest(&p.data)),
                Some(_) => String::new(),
                None => hex(&Sha256::digest(b"")),
            };
            fixed = f;
            &fixed
        } else {
            m
        };
        let (data, truncated) = match p {
            Some(p) => {
                self.buffered -= p.data.len();
                (p.data, p.truncated)
            }
            None => (Vec::new(), false),
        };
        let eml_path = match (&self.extract_dir, truncated) {
            (Some(dir), true) => Some(dir.join(format!(
                "{}-{}.eml",
                mailtap_extract::safe_stem(&m.uid),
                m.n
            ))),
            _ => None,
        };
        if truncated {
            self.emails_truncated += 1;
        } else {
            self.emails_inline += 1;
        }
        let doc = EmailValue {
            meta: message_doc(
                m,
                &JsonOptions {
                    origin: Origin::Capture,
                    ts_known: known,
                    missing_known: known && !m.missing_unknown,
                },
                RcptLimit::capture(m),
            ),
            data_base64: (!truncated).then(|| base64_value(&data)),
            data_truncated: truncated,
            eml_path: eml_path.as_deref().map(Path::to_string_lossy),
        };
        // The metadata takes well under a KiB unless the recipient lists
        // are long; base64 makes 4 bytes of every 3.
        let mut value = Vec::with_capacity(1024 + data.len().div_ceil(3) * 4);
        serde_json::to_writer(&mut value, &doc).expect("serializing to a Vec does not fail");
        Outgoing {
            kind: Kind::Emails,
            key: Some(m.uid.clone()),
            value,
        }
    }

    /// Messages whose metadata never came, as the extraction sink finishes
    /// them: incomplete, `ts`/`missing_bytes` unknown (null), size and
    /// SHA-256 of what arrived (SHA-256 empty when not all was buffered).
    pub fn orphans(&mut self) -> Vec<Outgoing> {
        let mut keys: Vec<(String, u32)> = self.emails.keys().cloned().collect();
        keys.sort();
        keys.into_iter()
            .map(|(uid, n)| {
                let p = &self.emails[&(uid.clone(), n)];
                let sha256 = if p.truncated {
                    String::new()
                } else {
                    hex(&Sha256::digest(&p.data))
                };
                let m = EmailMeta {
                    uid,
                    n,
                    size: p.seen,
                    sha256,
                    complete: false,
                    ..EmailMeta::default()
                };
                self.meta(&m, false)
            })
            .collect()
    }
}

fn strip_lf(v: &mut Vec<u8>) {
    while v.last() == Some(&b'\n') {
        v.pop();
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtap_extract::json::{base64, message_json};

    fn enc() -> Encoder {
        Encoder::new(&KafkaConfig::default())
    }

    fn chunk(uid: &str, d: &[u8]) -> Record {
        Record::EmailData(Box::new(EmailChunk {
            uid: uid.into(),
            n: 1,
            data: d.to_vec(),
        }))
    }

    fn meta(uid: &str, body: &[u8]) -> Record {
        Record::EmailMeta(Box::new(EmailMeta {
            uid: uid.into(),
            n: 1,
            size: body.len() as u64,
            sha256: hex(&Sha256::digest(body)),
            complete: true,
            ..EmailMeta::default()
        }))
    }

    fn json(o: Outgoing) -> serde_json::Value {
        serde_json::from_slice(&o.value).unwrap()
    }

    #[test]
    fn received_bytes_are_checked_against_the_size() {
        let mut e = enc();
        let body = b"Subject: x\r\n\r\n0123456789";
        // Whole: complete, as the analyzer said.
        assert!(e.encode(&chunk("Cok", body)).is_none());
        let v = json(e.encode(&meta("Cok", body)).unwrap());
        assert_eq!(v["complete"], true);
        assert_eq!(v["size"], body.len());
        // The first 10 bytes lost on the way.
        assert!(e.encode(&chunk("Clost", &body[10..])).is_none());
        let v = json(e.encode(&meta("Clost", body)).unwrap());
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], body.len() - 10);
        assert_eq!(v["missing_bytes"], 10);
        assert_eq!(v["sha256"], hex(&Sha256::digest(&body[10..])));
        assert_eq!(v["data_base64"], base64(&body[10..]));
        // Nothing arrived.
        let v = json(e.encode(&meta("Cgone", body)).unwrap());
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], 0);
        assert_eq!(v["missing_bytes"], body.len());
        assert_eq!(e.emails_size_mismatch, 2);
        assert_eq!(e.email_bytes_lost, 10 + body.len() as u64);
    }

    #[test]
    fn orphans_at_shutdown_are_incomplete() {
        let mut e = enc();
        assert!(e.encode(&chunk("Corphan", b"half")).is_none());
        let o = e.orphans();
        assert_eq!(o.len(), 1);
        let v = json(o.into_iter().next().unwrap());
        assert_eq!(v["complete"], false);
        assert_eq!(v["size"], 4);
        assert_eq!(v["missing_bytes"], serde_json::Value::Null);
        assert_eq!(e.emails_size_mismatch, 0);
    }

    #[test]
    fn email_value_is_the_document_plus_the_message_on_one_line() {
        let mut e = enc();
        let body = b"Subject: caf\xe9\r\n\r\nx";
        assert!(e.encode(&chunk("Cone", body)).is_none());
        let Record::EmailMeta(m) = meta("Cone", body) else {
            unreachable!()
        };
        let o = e.encode(&Record::EmailMeta(m.clone())).unwrap();
        assert!(!o.value.contains(&b'\n'), "compact, one line");
        let mut want: serde_json::Value = serde_json::from_slice(&message_json(
            &m,
            &JsonOptions {
                origin: Origin::Capture,
                ts_known: true,
                missing_known: true,
            },
        ))
        .unwrap();
        want["data_base64"] = base64(body).into();
        let raw = String::from_utf8(o.value.clone()).unwrap();
        assert_eq!(json(o), want);
        // The document's members first, in its order, then the message.
        assert!(raw.starts_with("{\"uid\":\"Cone\",\"ts\":"), "{raw}");
        let tail = format!(
            ",\"line_endings\":\"original\",\"source\":\"capture\",\"data_base64\":\"{}\"}}",
            base64(body)
        );
        assert!(raw.ends_with(&tail), "{raw}");
    }

    #[test]
    fn imap_messages_carry_their_imap_fields() {
        use mailtap_core::mail::{ImapMeta, MailProtocol};
        let mut e = enc();
        let body = b"Subject: x\r\n\r\ny";
        assert!(e.encode(&chunk("Cimap", body)).is_none());
        let Record::EmailMeta(mut m) = meta("Cimap", body) else {
            unreachable!()
        };
        m.protocol = Some(MailProtocol::Imap);
        m.imap = Some(Box::new(ImapMeta {
            direction: Some("append"),
            mailbox: Some(b"Sent".to_vec()),
            section: Some("APPEND".into()),
            flags: vec![b"\\Seen".to_vec()],
            ..ImapMeta::default()
        }));
        let v = json(e.encode(&Record::EmailMeta(m)).unwrap());
        assert_eq!(v["protocol"], "imap");
        assert_eq!(v["direction"], "append");
        assert_eq!(v["mailbox"], "Sent");
        assert_eq!(v["section"], "APPEND");
        assert_eq!(v["flags"], serde_json::json!(["\\Seen"]));
        assert_eq!(v["data_base64"], base64(body));
    }

    #[test]
    fn over_the_cap_the_value_names_the_eml_file() {
        let mut e = Encoder::new(&KafkaConfig {
            email_inline_max: 4,
            extract_dir: Some(PathBuf::from("/x/\"y")),
            ..KafkaConfig::default()
        });
        assert!(e.encode(&chunk("Cbig", b"0123456789")).is_none());
        let v = json(e.encode(&meta("Cbig", b"0123456789")).unwrap());
        assert!(v.get("data_base64").is_none());
        assert_eq!(v["data_truncated"], true);
        assert_eq!(v["eml_path"], "/x/\"y/Cbig-1.eml");
        assert_eq!(e.emails_truncated, 1);
    }
}
