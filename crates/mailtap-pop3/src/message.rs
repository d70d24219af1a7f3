//! RETR and TOP responses through the MIME layer (`mailtap-mime`):
//! entities, files.log rows, and message extraction.
//!
//! The analyzer hands over the response body after the `+OK` line, one
//! line at a time with its exact terminator and with dot-stuffing removed
//! (the final `.` is not part of it), plus content gaps, and ends the
//! message at the terminating `.`, a new message, analyzer removal or
//! connection end. When extraction is on (`cx.extract_enabled()`), the MIME
//! layer streams the bytes as `Record::EmailData` and this module ends each
//! message with a `Record::EmailMeta` carrying the POP3 context (user,
//! `partial` for TOP, TLS).

use mailtap_core::mail::{EmailMeta, MailProtocol};
use mailtap_core::{Bytes, ConnCtx, Record, Timestamp};
use mailtap_mime::{FilesConfig, MessageAnalyzer, MessageContext, NoSink, Source};
use std::sync::Arc;

/// POP3 context of one retrieved message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// Time of the `+OK` that started the message.
    pub ts: Timestamp,
    /// The POP3 user at that time (USER, APOP or SASL), if any.
    pub user: Option<Bytes>,
    /// A TOP response: only part of the message.
    pub partial: bool,
    /// Whether the session had switched to TLS (always false today: after
    /// STLS nothing is analysed).
    pub tls: bool,
    /// files.log `local_orig`: whether the server (the sender) is local.
    pub local_orig: Option<bool>,
}

/// The messages of one connection (the MIME analyzer is created with the
/// first one: it owns the connection's MIME entity counter).
pub struct Messages {
    files: Arc<FilesConfig>,
    max_header_bytes: usize,
    mime: Option<MessageAnalyzer>,
    /// Messages begun on this connection (the FUID handle's ordinal).
    count: u32,
    cur: Option<Current>,
}

struct Current {
    info: MessageInfo,
    n: u32,
    extract: bool,
    /// The last line handed over ended with a lone CR (a late LF belongs
    /// to it).
    open_cr: bool,
    /// Begun after its start (mid-stream pickup): what is missing is not
    /// known.
    headless: bool,
}

impl Messages {
    pub fn new(files: Arc<FilesConfig>, max_header_bytes: usize) -> Self {
        Messages {
            files,
            max_header_bytes,
            mime: None,
            count: 0,
            cur: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.cur.is_some()
    }

    /// Messages begun so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn begin(&mut self, cx: &mut ConnCtx<'_>, info: MessageInfo) {
        self.end(cx, false);
        self.count = self.count.saturating_add(1);
        let n = self.count;
        let extract = cx.extract_enabled();
        let ctx = MessageContext {
            source: Source::Pop3,
            is_orig: false,
            local_orig: info.local_orig,
            conn_start: cx.conn.start_time,
            trans_depth: u64::from(n),
            max_header_bytes: self.max_header_bytes,
            extract: extract.then_some(n),
        };
        let files = &self.files;
        let mime = self
            .mime
            .get_or_insert_with(|| MessageAnalyzer::new(files.clone()));
        mime.begin(cx, ctx, &mut NoSink);
        self.cur = Some(Current {
            info,
            n,
            extract,
            open_cr: false,
            headless: false,
        });
    }

    /// The tail of a message whose start was not seen (a connection
    /// picked up mid-stream): extracted as one incomplete, partial message,
    /// not parsed.
    pub fn headless(
        &mut self,
        cx: &mut ConnCtx<'_>,
        mut info: MessageInfo,
        lines: &[(Vec<u8>, &[u8])],
    ) {
        self.end(cx, false);
        self.count = self.count.saturating_add(1);
        let n = self.count;
        let extract = cx.extract_enabled();
        let ctx = MessageContext {
            source: Source::Pop3,
            is_orig: false,
            local_orig: info.local_orig,
            conn_start: cx.conn.start_time,
            trans_depth: u64::from(n),
            max_header_bytes: self.max_header_bytes,
            extract: extract.then_some(n),
        };
        let files = &self.files;
        let mime = self
            .mime
            .get_or_insert_with(|| MessageAnalyzer::new(files.clone()));
        mime.begin_headless(cx, ctx);
        for (l, t) in lines {
            let body = l.strip_prefix(b".").unwrap_or(l);
            mime.raw(cx, body);
            mime.raw(cx, t);
        }
        info.partial = true;
        self.cur = Some(Current {
            info,
            n,
            extract,
            open_cr: false,
            headless: true,
        });
        self.end(cx, false);
    }

    /// One body line as the server sent it (`raw`, dot-stuffed) and
    /// unstuffed (`body`), with its terminator. The extracted message gets
    /// the unstuffed bytes; the MIME parser (files.log) gets the line as
    /// sent, since Zeek's POP3 does not remove dot-stuffing.
    pub fn line(&mut self, cx: &mut ConnCtx<'_>, raw: &[u8], body: &[u8], term: &[u8]) {
        let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) else {
            return;
        };
        cur.open_cr = term == b"\r";
        mime.raw(cx, body);
        mime.raw(cx, term);
        mime.mime_line(cx, raw, &mut NoSink);
    }

    /// Message bytes that are not a line (bytes a cut line dropped).
    pub fn raw(&mut self, cx: &mut ConnCtx<'_>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) {
            cur.open_cr = data.last() == Some(&b'\r');
            mime.raw(cx, data);
        }
    }

    /// A line the MIME parser sees but that is not part of the message
    /// (Zeek hands the `+OK` line of RETR/TOP to the MIME layer first).
    pub fn mime_only(&mut self, cx: &mut ConnCtx<'_>, line: &[u8]) {
        if let (Some(_), Some(mime)) = (self.cur.as_ref(), self.mime.as_mut()) {
            mime.mime_line(cx, line, &mut NoSink);
        }
    }

    /// The LF of a CRLF split across deliveries; true if it belonged to the
    /// message's last line.
    pub fn late_lf(&mut self, cx: &mut ConnCtx<'_>) -> bool {
        let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) else {
            return false;
        };
        if !cur.open_cr {
            return false;
        }
        cur.open_cr = false;
        mime.raw(cx, b"\n");
        true
    }

    /// A line that is not part of the body arrived (the `.`): a late LF
    /// after it is not the body's.
    pub fn not_body(&mut self) {
        if let Some(cur) = self.cur.as_mut() {
            cur.open_cr = false;
        }
    }

    /// `len` bytes of the response will never arrive.
    pub fn gap(&mut self, cx: &mut ConnCtx<'_>, len: u64) {
        let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) else {
            return;
        };
        cur.open_cr = false;
        mime.gap(cx, len, &mut NoSink);
    }

    /// Ends the open message; `complete` is false when it was cut
    /// (connection end or analyzer removal before the terminating `.`).
    pub fn end(&mut self, cx: &mut ConnCtx<'_>, complete: bool) {
        let Some(cur) = self.cur.take() else { return };
        let Some(mime) = self.mime.as_mut() else {
            return;
        };
        let s = mime.end(cx, &mut NoSink, complete);
        if !cur.extract {
            return;
        }
        let info = cur.info;
        cx.emit(Record::EmailMeta(Box::new(EmailMeta {
            uid: cx.uid.to_owned(),
            n: cur.n,
            ts: info.ts,
            id: Some(*cx.id),
            protocol: Some(MailProtocol::Pop3),
            trans_depth: u64::from(cur.n),
            user: info.user,
            size: s.size,
            sha256: s.sha256.unwrap_or_default(),
            complete: s.complete,
            missing_bytes: s.missing_bytes,
            // Cut before its `.`, or begun after its `+OK`.
            missing_unknown: !complete || cur.headless,
            partial: info.partial,
            headers: s.headers,
            attachments: s.attachments,
            tls: info.tls,
            ..EmailMeta::default()
        })));
    }
}
