//! Message literals (FETCH bodies, APPEND payloads) through the MIME layer
//! (`mailtap-mime`): files.log rows and byte-exact extraction.
//!
//! A literal's payload is exactly the message's bytes: they are handed to
//! [`MessageAnalyzer::raw`] as they arrive (counted, hashed, streamed as
//! `Record::EmailData`), and a quiet line splitter cuts the same bytes into
//! lines for [`MessageAnalyzer::mime_line`] (entities, files). One stream
//! per direction, since a FETCH response and an APPEND payload may be in
//! flight at once; the message ordinal `n` is the connection's.

use crate::record::{Direction, ImapMessage};
use mailtap_contentline::{LineSplitter, Nuls, Piece};
use mailtap_core::mail::{Attachment, EmailHeaders, EmailMeta, MailProtocol};
use mailtap_core::{ConnCtx, Record};
use mailtap_mime::{FilesConfig, MessageAnalyzer, MessageContext, NoSink, Source};
use std::sync::Arc;

/// A message whose literal has ended, waiting for the rest of its response
/// (FETCH: UID and FLAGS may follow the literal) or for its tagged
/// completion (APPEND: APPENDUID, status).
#[derive(Clone, Debug)]
pub struct Finished {
    pub meta: ImapMessage,
    pub extract: bool,
    pub headers: EmailHeaders,
    pub attachments: Vec<Attachment>,
    /// The end of the message was not seen (connection end).
    pub cut: bool,
    /// Begun where the message does not start (not MIME-parsed).
    pub headless: bool,
}

struct Current {
    meta: ImapMessage,
    extract: bool,
    headless: bool,
}

/// One direction's message stream.
pub struct MsgStream {
    files: Arc<FilesConfig>,
    max_header_bytes: usize,
    is_orig: bool,
    mime: Option<MessageAnalyzer>,
    lines: LineSplitter,
    cur: Option<Current>,
}

impl MsgStream {
    pub fn new(
        files: Arc<FilesConfig>,
        max_header_bytes: usize,
        max_line: usize,
        is_orig: bool,
    ) -> Self {
        let mut lines = LineSplitter::new(max_line, Nuls::Keep);
        // Lines of a message raise no protocol weirds.
        lines.set_quiet(true);
        MsgStream {
            files,
            max_header_bytes,
            is_orig,
            mime: None,
            lines,
            cur: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.cur.is_some()
    }

    /// The open message's record (a run of partial fetches goes on in it).
    pub fn current_mut(&mut self) -> Option<&mut ImapMessage> {
        self.cur.as_mut().map(|c| &mut c.meta)
    }

    /// Starts message `meta.n`; `headless`: its bytes do not start at the
    /// message's start (BODY[TEXT], a partial from an offset): extracted,
    /// not MIME-parsed.
    pub fn begin(
        &mut self,
        cx: &mut ConnCtx<'_>,
        meta: ImapMessage,
        headless: bool,
        local_orig: Option<bool>,
    ) {
        if self.cur.is_some() {
            // Not reachable through the analyzer (one literal at a time
            // per direction); a stale message is closed as cut.
            let _ = self.end(cx, true);
        }
        let extract = cx.extract_enabled();
        let ctx = MessageContext {
            source: Source::Imap,
            is_orig: self.is_orig,
            local_orig,
            conn_start: cx.conn.start_time,
            trans_depth: u64::from(meta.n),
            max_header_bytes: self.max_header_bytes,
            extract: extract.then_some(meta.n),
        };
        let files = &self.files;
        let mime = self
            .mime
            .get_or_insert_with(|| MessageAnalyzer::new(files.clone()));
        if headless {
            mime.begin_headless(cx, ctx);
        } else {
            mime.begin(cx, ctx, &mut NoSink);
        }
        self.lines.discard_partial();
        self.cur = Some(Current {
            meta,
            extract,
            headless,
        });
    }

    /// Payload bytes of the message literal.
    pub fn data(&mut self, cx: &mut ConnCtx<'_>, data: &[u8]) {
        let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) else {
            return;
        };
        cur.meta.size = cur.meta.size.saturating_add(data.len() as u64);
        mime.raw(cx, data);
        if cur.headless {
            return;
        }
        let mut pos = 0;
        while let Some(p) = self.lines.next(cx, data, &mut pos) {
            if let Piece::Line(l, _) = p {
                mime.mime_line(cx, l, &mut NoSink);
            }
        }
    }

    /// `len` bytes of the literal will never arrive.
    pub fn gap(&mut self, cx: &mut ConnCtx<'_>, len: u64) {
        let (Some(cur), Some(mime)) = (self.cur.as_mut(), self.mime.as_mut()) else {
            return;
        };
        cur.meta.missing_bytes = cur.meta.missing_bytes.saturating_add(len);
        self.lines.discard_partial();
        mime.gap(cx, len, &mut NoSink);
    }

    /// Ends the open message: `cut` when its literal did not end (the
    /// connection or the analysis ended first).
    pub fn end(&mut self, cx: &mut ConnCtx<'_>, cut: bool) -> Option<Finished> {
        let cur = self.cur.take()?;
        let mime = self.mime.as_mut()?;
        if !cur.headless && self.lines.has_partial() {
            mime.mime_line(cx, self.lines.partial(), &mut NoSink);
        }
        self.lines.discard_partial();
        let s = mime.end(cx, &mut NoSink, !cut);
        let mut meta = cur.meta;
        meta.sha256 = s.sha256.unwrap_or_default();
        meta.missing_bytes = meta
            .missing_bytes
            .max(s.missing_bytes)
            .max(meta.announced.saturating_sub(meta.size));
        meta.complete = !cut && meta.missing_bytes == 0 && meta.size == meta.announced;
        Some(Finished {
            meta,
            extract: cur.extract,
            headers: s.headers,
            attachments: s.attachments,
            cut,
            headless: cur.headless,
        })
    }
}

/// The extraction record of a finished message (`Record::EmailMeta`), with
/// its IMAP fields (direction, mailbox, UID, section, flags) in
/// `EmailMeta::imap`.
pub fn emit_meta(cx: &mut ConnCtx<'_>, f: &Finished) {
    if !f.extract {
        return;
    }
    let m = &f.meta;
    cx.emit(Record::EmailMeta(Box::new(EmailMeta {
        uid: cx.uid.to_owned(),
        n: m.n,
        ts: m.ts,
        id: Some(*cx.id),
        protocol: Some(MailProtocol::Imap),
        trans_depth: u64::from(m.n),
        user: m.user.clone(),
        size: m.size,
        sha256: m.sha256.clone(),
        complete: m.complete,
        missing_bytes: m.missing_bytes,
        missing_unknown: f.cut,
        partial: m.partial,
        headers: f.headers.clone(),
        attachments: f.attachments.clone(),
        tls: false,
        imap: Some(Box::new(m.to_meta())),
        ..EmailMeta::default()
    })));
}

/// Whether the message travelled from client to server.
pub fn is_append(m: &ImapMessage) -> bool {
    m.direction == Some(Direction::Append)
}
