//! The streaming message analyzer: one per connection, driven line by line
//! by SMTP (DATA, BDAT) and POP3 (RETR/TOP) with one message open at a time.

use crate::config::{FilesConfig, HashKind};
use crate::decode::{qp_line, Base64};
use crate::fuid::{file_handle, FuidKey};
use crate::header::{
    decode_words, params, parse_content_type, parse_cte, split_header, zeek_filename, ContentType,
    Cte, TypeClass,
};
use crate::sniff::sniff;
use mailtap_core::mail::{Attachment, EmailChunk, EmailHeaders};
use mailtap_core::{
    Charge, ConnCtx, FileHashes, FileRecord, Interval, Record, Timestamp, Weird, BUFFER_FLOOR,
};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Extracted message bytes are emitted in chunks of at most this size.
pub const EXTRACT_CHUNK: usize = 64 * 1024;

/// Which protocol carries the message (files.log `source`, FUID handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Smtp,
    Pop3,
    Imap,
}

impl Source {
    /// files.log `source` and the weird source.
    pub fn name(self) -> &'static str {
        match self {
            Source::Smtp => "SMTP",
            Source::Pop3 => "POP3",
            Source::Imap => "IMAP",
        }
    }
    /// The analyzer tag at the start of the file handle.
    pub fn tag(self) -> &'static str {
        match self {
            Source::Smtp => "Analyzer::ANALYZER_SMTP",
            Source::Pop3 => "Analyzer::ANALYZER_POP3",
            Source::Imap => "Analyzer::ANALYZER_IMAP",
        }
    }
}

/// Everything the MIME layer needs to know about a message when it starts.
#[derive(Clone, Debug)]
pub struct MessageContext {
    pub source: Source,
    /// Direction the message travels in (files.log `is_orig`).
    pub is_orig: bool,
    /// files.log `local_orig` (whether the sending host is local).
    pub local_orig: Option<bool>,
    /// Connection start time (first packet), part of the FUID handle.
    pub conn_start: Timestamp,
    /// The transaction's depth (SMTP `trans_depth`), part of the handle.
    pub trans_depth: u64,
    /// `MIME::max_header_bytes`.
    pub max_header_bytes: usize,
    /// `Some(n)`: extract this message as message number `n` of the
    /// connection: its exact bytes are streamed as `Record::EmailData`,
    /// hashed (SHA-256) and the summary gets decoded headers and
    /// attachments. `None`: nothing of that is computed.
    pub extract: Option<u32>,
}

/// Notifications to the protocol's script layer, in Zeek's event order.
/// `level` is the nesting level (0 = the message's top-level entity).
pub trait MimeSink {
    /// `mime_begin_entity`.
    fn begin_entity(&mut self, _cx: &mut ConnCtx<'_>, _level: usize) {}
    /// `mime_one_header`: name upper-cased, value as Zeek delivers it.
    fn header(&mut self, _cx: &mut ConnCtx<'_>, _level: usize, _name: &[u8], _value: &[u8]) {}
    /// `mime_end_entity`.
    fn end_entity(&mut self, _cx: &mut ConnCtx<'_>, _level: usize) {}
    /// A file was created for an entity (`file_over_new_connection`).
    fn file(&mut self, _cx: &mut ConnCtx<'_>, _fuid: &str) {}
}

/// A [`MimeSink`] that ignores everything.
pub struct NoSink;
impl MimeSink for NoSink {}

/// What a message was, returned by [`MessageAnalyzer::end`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageSummary {
    /// FUIDs of the message's files, in creation order.
    pub fuids: Vec<String>,
    /// Top-level headers, RFC 2047 decoded (only when extracting).
    pub headers: EmailHeaders,
    /// Entities with a file name or a non-text body (only when extracting).
    pub attachments: Vec<Attachment>,
    /// Message bytes seen (as transferred, dot-unstuffed).
    pub size: u64,
    /// Hex SHA-256 of those bytes (only when extracting).
    pub sha256: Option<String>,
    /// False when a gap or the end of the connection cut the message.
    pub complete: bool,
    pub missing_bytes: u64,
    /// Total decoded entity bytes (Zeek's `mime_content_hash` length).
    pub content_len: u64,
    /// MD5 / SHA-256 of all decoded entity bytes (`files.content_hashes`).
    pub content_md5: Option<String>,
    pub content_sha256: Option<String>,
    /// MIME entities begun (including containers).
    pub entities: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Leaf,
    Multipart,
    Message,
}

struct FileState {
    fuid: String,
    ts: Timestamp,
    last: Timestamp,
    depth: u64,
    seen: u64,
    missing: u64,
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    bof: Vec<u8>,
    /// The entity as RFC 2046 defines it, for the extraction JSON: the
    /// CRLF before a boundary belongs to the boundary, so a line break the
    /// decoder added at the end of a multipart child's last line is held
    /// back until more data shows it is content (files.log keeps Zeek's
    /// bytes, which include it).
    rfc: Option<Sha256>,
    rfc_size: u64,
    rfc_hold: bool,
}

/// Capacity of the decoding scratch kept between lines: a few ordinary
/// lines' worth.
const SCRATCH_KEPT: usize = 8 * 1024;

struct Entity {
    level: usize,
    in_header: bool,
    hdr: Vec<u8>,
    /// `hdr`'s capacity, charged to the shard's buffer budget.
    hdr_charge: Charge,
    has_hdr: bool,
    hdr_bytes: usize,
    ct: ContentType,
    cte: Cte,
    body: Body,
    boundary: Vec<u8>,
    /// Closing delimiter seen: the entity has ended.
    ended: bool,
    multipart_child: bool,
    pending_crlf: bool,
    b64: Base64,
    qp_illegal: u64,
    filename: Option<Vec<u8>>,
    attach_name: Option<String>,
    file: Option<FileState>,
}

impl Entity {
    fn new(level: usize, cte: Cte, multipart_child: bool) -> Self {
        Entity {
            level,
            in_header: true,
            hdr: Vec::new(),
            hdr_charge: Charge::default(),
            has_hdr: false,
            hdr_bytes: 0,
            ct: ContentType {
                mime: String::new(),
                class: TypeClass::Text,
                boundary: None,
            },
            cte,
            body: Body::Leaf,
            boundary: Vec::new(),
            ended: false,
            multipart_child,
            pending_crlf: false,
            b64: Base64::new(),
            qp_illegal: 0,
            filename: None,
            attach_name: None,
            file: None,
        }
    }
}

struct Msg {
    ctx: MessageContext,
    stack: Vec<Entity>,
    fuids: Vec<String>,
    headers: EmailHeaders,
    attachments: Vec<Attachment>,
    size: u64,
    sha256: Option<Sha256>,
    missing: u64,
    content_len: u64,
    content_md5: Option<Md5>,
    content_sha256: Option<Sha256>,
    entities: u64,
    ext: Vec<u8>,
    /// `ext`'s capacity, charged to the shard's buffer budget.
    ext_charge: Charge,
    /// Only counted, hashed and extracted: no MIME parsing, no files
    /// (a message whose start was not seen).
    headless: bool,
    /// Known to be incomplete whatever else happens (its start was not
    /// seen, or bytes were dropped without a known count).
    incomplete: bool,
}

/// Streaming MIME analyzer of one connection (see the crate docs).
pub struct MessageAnalyzer {
    cfg: Arc<FilesConfig>,
    key: FuidKey,
    /// The connection's MIME entity counter (Zeek's `mime_depth`).
    mime_depth: u64,
    msg: Option<Msg>,
    /// Decoding scratch, reused across lines (at most [`SCRATCH_KEPT`]
    /// bytes of it kept between lines).
    scratch: Vec<u8>,
    problems: Vec<String>,
    upper: Vec<u8>,
    /// The open message was ended for MIME (its entities and files, as
    /// Zeek ends it at a content gap) but is still being extracted.
    detached: bool,
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

impl MessageAnalyzer {
    pub fn new(cfg: Arc<FilesConfig>) -> Self {
        let key = FuidKey::new(&cfg.digest_salt);
        MessageAnalyzer {
            cfg,
            key,
            mime_depth: 0,
            msg: None,
            scratch: Vec::new(),
            problems: Vec::new(),
            upper: Vec::new(),
            detached: false,
        }
    }

    /// The connection's MIME entity counter so far.
    pub fn mime_depth(&self) -> u64 {
        self.mime_depth
    }

    /// A message is open (for MIME: a detached one is not).
    pub fn in_message(&self) -> bool {
        self.msg.is_some() && !self.detached
    }

    /// The open message was detached: only its extraction goes on.
    pub fn detached(&self) -> bool {
        self.msg.is_some() && self.detached
    }

    /// Ends the open message's entities (their files are logged, as when
    /// the message ends) while its bytes are still counted, hashed and
    /// extracted: Zeek ends the message at a content gap, the extraction
    /// carries on to the end of data. Finish it with [`Self::end`].
    pub fn detach(&mut self, cx: &mut ConnCtx<'_>, sink: &mut dyn MimeSink) {
        if self.msg.is_none() || self.detached {
            return;
        }
        self.end_entities(cx, 0, sink);
        if let Some(m) = self.msg.as_mut() {
            m.headless = true;
        }
        self.detached = true;
    }

    /// A content gap outside the message's bytes (the other direction):
    /// the current entity's file records it, as Zeek's does, but no byte
    /// of the message is missing.
    pub fn gap_file(&mut self, cx: &mut ConnCtx<'_>, len: u64, sink: &mut dyn MimeSink) {
        let before = self.msg.as_ref().map_or(0, |m| m.missing);
        self.gap(cx, len, sink);
        if let Some(m) = self.msg.as_mut() {
            m.missing = before;
        }
    }

    /// Starts a message; its top-level entity begins in header mode. A
    /// message still open is ended first (its summary is dropped).
    pub fn begin(&mut self, cx: &mut ConnCtx<'_>, ctx: MessageContext, sink: &mut dyn MimeSink) {
        if self.msg.is_some() {
            self.end(cx, sink, false);
        }
        let extracting = ctx.extract.is_some();
        let content = self.cfg.content_hashes;
        self.msg = Some(Msg {
            ctx,
            stack: Vec::new(),
            fuids: Vec::new(),
            headers: EmailHeaders::default(),
            attachments: Vec::new(),
            size: 0,
            sha256: extracting.then(Sha256::new),
            missing: 0,
            content_len: 0,
            content_md5: content.then(Md5::new),
            content_sha256: content.then(Sha256::new),
            entities: 0,
            ext: Vec::new(),
            ext_charge: Charge::default(),
            headless: false,
            incomplete: false,
        });
        self.begin_entity(cx, sink, Cte::Identity, false);
    }

    /// Starts a message whose beginning was not seen (a connection picked
    /// up mid-stream): its bytes are counted, hashed and extracted, but
    /// not parsed (no entities, no files), and it ends incomplete.
    pub fn begin_headless(&mut self, cx: &mut ConnCtx<'_>, ctx: MessageContext) {
        if self.msg.is_some() {
            self.end(cx, &mut crate::message::NoSink, false);
        }
        let extracting = ctx.extract.is_some();
        self.detached = false;
        self.msg = Some(Msg {
            ctx,
            stack: Vec::new(),
            fuids: Vec::new(),
            headers: EmailHeaders::default(),
            attachments: Vec::new(),
            size: 0,
            sha256: extracting.then(Sha256::new),
            missing: 0,
            content_len: 0,
            content_md5: None,
            content_sha256: None,
            entities: 0,
            ext: Vec::new(),
            ext_charge: Charge::default(),
            headless: true,
            incomplete: true,
        });
    }

    /// Marks the open message incomplete (bytes were lost in a way that
    /// cannot be counted).
    pub fn mark_incomplete(&mut self) {
        if let Some(m) = self.msg.as_mut() {
            m.incomplete = true;
        }
    }

    /// Counts `len` bytes of the open message as missing without touching
    /// its entities (bytes the extraction lost, e.g. at a cut line).
    pub fn missing(&mut self, len: u64) {
        if let Some(m) = self.msg.as_mut() {
            m.missing = m.missing.saturating_add(len);
        }
    }

    /// One line of the message (dot-unstuffed by the caller) and the exact
    /// terminator bytes that followed it (`\r\n`, `\n`, `\r` or none): the
    /// bytes are counted/hashed/extracted, the line goes to the MIME parser.
    pub fn line(
        &mut self,
        cx: &mut ConnCtx<'_>,
        line: &[u8],
        term: &[u8],
        sink: &mut dyn MimeSink,
    ) {
        self.raw(cx, line);
        self.raw(cx, term);
        self.mime_line(cx, line, sink);
    }

    /// Message bytes that are not given line by line (BDAT chunks): only
    /// counted, hashed and extracted. Feed the lines with [`Self::mime_line`].
    pub fn raw(&mut self, cx: &mut ConnCtx<'_>, data: &[u8]) {
        let Some(m) = self.msg.as_mut() else { return };
        if data.is_empty() {
            return;
        }
        m.size = m.size.saturating_add(data.len() as u64);
        if let Some(h) = m.sha256.as_mut() {
            h.update(data);
        }
        if let Some(n) = m.ctx.extract {
            let mut d = data;
            while !d.is_empty() {
                let room = EXTRACT_CHUNK.saturating_sub(m.ext.len()).max(1);
                let k = room.min(d.len());
                let need = m.ext.len() + k;
                if need > m.ext.capacity()
                    && need > BUFFER_FLOOR
                    && !cx.out.buffers.fits(need - m.ext_charge.bytes())
                {
                    // The shard's buffer budget is spent: hand over what
                    // is gathered now, in a smaller chunk, instead of
                    // growing (thousands of messages in flight would
                    // otherwise hold 64 KiB each).
                    cx.out.buffers.note_refused();
                    flush_ext(cx, m, n);
                }
                m.ext.extend_from_slice(&d[..k]);
                m.ext_charge.set(&cx.out.buffers, m.ext.capacity());
                d = &d[k..];
                if m.ext.len() >= EXTRACT_CHUNK {
                    flush_ext(cx, m, n);
                }
            }
        }
    }

    /// One MIME line (without terminator) that was already accounted for
    /// with [`Self::raw`].
    pub fn mime_line(&mut self, cx: &mut ConnCtx<'_>, line: &[u8], sink: &mut dyn MimeSink) {
        let Some(m) = self.msg.as_ref() else { return };
        if m.headless {
            return;
        }
        let n = m.stack.len();
        let mut lvl = 0usize;
        while lvl < n {
            let Some(m) = self.msg.as_mut() else { return };
            let e = &mut m.stack[lvl];
            if e.ended {
                return;
            }
            if e.in_header {
                self.header_line(cx, lvl, line, sink);
                return;
            }
            match e.body {
                Body::Multipart => {
                    if let Some(closing) = delimiter(line, &e.boundary) {
                        self.end_entities(cx, lvl + 1, sink);
                        if closing {
                            self.end_one(cx, lvl, sink);
                        } else {
                            self.begin_entity(cx, sink, self.cte_at(lvl), true);
                        }
                        return;
                    }
                    lvl += 1;
                }
                Body::Message => lvl += 1,
                Body::Leaf => {
                    self.leaf_line(cx, lvl, line, sink);
                    return;
                }
            }
        }
    }

    /// `len` bytes of the message will never arrive: the current entity's
    /// file records a gap (a file is created if needed, as Zeek does).
    pub fn gap(&mut self, cx: &mut ConnCtx<'_>, len: u64, sink: &mut dyn MimeSink) {
        let Some(m) = self.msg.as_mut() else { return };
        m.missing = m.missing.saturating_add(len);
        if m.headless {
            return;
        }
        let Some(lvl) = m.stack.iter().rposition(|e| !e.ended) else {
            return;
        };
        self.ensure_file(cx, lvl, sink);
        if let Some(f) = self
            .msg
            .as_mut()
            .and_then(|m| m.stack.get_mut(lvl))
            .and_then(|e| e.file.as_mut())
        {
            f.missing = f.missing.saturating_add(len);
            f.md5 = None;
            f.sha1 = None;
            f.sha256 = None;
            f.rfc = None;
            f.last = cx.ts;
        }
    }

    /// Ends the message: open entities end innermost first (their files
    /// are logged), extracted bytes are flushed. `complete` is false when
    /// the message was cut (connection end, analyzer stop).
    pub fn end(
        &mut self,
        cx: &mut ConnCtx<'_>,
        sink: &mut dyn MimeSink,
        complete: bool,
    ) -> MessageSummary {
        if self.msg.is_none() {
            return MessageSummary::default();
        }
        self.detached = false;
        self.end_entities(cx, 0, sink);
        let Some(mut m) = self.msg.take() else {
            return MessageSummary::default();
        };
        if let Some(n) = m.ctx.extract {
            flush_ext(cx, &mut m, n);
        }
        MessageSummary {
            fuids: m.fuids,
            headers: m.headers,
            attachments: m.attachments,
            size: m.size,
            sha256: m.sha256.map(|h| hex(&h.finalize())),
            complete: complete && m.missing == 0 && !m.incomplete,
            missing_bytes: m.missing,
            content_len: m.content_len,
            content_md5: m.content_md5.map(|h| hex(&h.finalize())),
            content_sha256: m.content_sha256.map(|h| hex(&h.finalize())),
            entities: m.entities,
        }
    }

    fn cte_at(&self, lvl: usize) -> Cte {
        self.msg
            .as_ref()
            .and_then(|m| m.stack.get(lvl))
            .map_or(Cte::Identity, |e| e.cte)
    }

    fn begin_entity(
        &mut self,
        cx: &mut ConnCtx<'_>,
        sink: &mut dyn MimeSink,
        cte: Cte,
        multipart_child: bool,
    ) {
        let Some(m) = self.msg.as_mut() else { return };
        let level = m.stack.len();
        let src = m.ctx.source.name();
        if level >= self.cfg.max_depth {
            cx.limit_weird(Weird::ExceededMimeMaxDepth, None, src);
            return;
        }
        if m.entities >= self.cfg.max_entities_per_message {
            cx.limit_weird(Weird::ExceededMimeMaxEntities, None, src);
            return;
        }
        m.entities += 1;
        self.mime_depth = self.mime_depth.saturating_add(1);
        m.stack.push(Entity::new(level, cte, multipart_child));
        sink.begin_entity(cx, level);
    }

    /// Ends the entities at `from` and deeper, innermost first.
    fn end_entities(&mut self, cx: &mut ConnCtx<'_>, from: usize, sink: &mut dyn MimeSink) {
        loop {
            let Some(m) = self.msg.as_ref() else { return };
            if m.stack.len() <= from {
                return;
            }
            let top = m.stack.len() - 1;
            self.end_one(cx, top, sink);
            if let Some(m) = self.msg.as_mut() {
                m.stack.truncate(top);
            }
        }
    }

    /// Ends entity `lvl` (not removed from the stack; marked ended).
    fn end_one(&mut self, cx: &mut ConnCtx<'_>, lvl: usize, sink: &mut dyn MimeSink) {
        let Some(e) = self.msg.as_mut().and_then(|m| m.stack.get_mut(lvl)) else {
            return;
        };
        if e.ended {
            return;
        }
        if e.in_header {
            self.complete_header(cx, lvl, sink);
        }
        let Some(m) = self.msg.as_mut() else { return };
        let e = &mut m.stack[lvl];
        if e.body == Body::Leaf && e.cte == Cte::Base64 && !e.in_header {
            self.scratch.clear();
            self.problems.clear();
            e.b64.finish(&mut self.scratch, &mut self.problems);
            let src = m.ctx.source.name();
            for p in self.problems.drain(..) {
                cx.weird(Weird::Base64IllegalEncoding, Some(p.as_bytes()), src);
            }
            if !self.scratch.is_empty() {
                let data = std::mem::take(&mut self.scratch);
                self.file_data(cx, lvl, &data, false, sink);
                self.scratch = data;
            }
        }
        let Some(m) = self.msg.as_mut() else { return };
        let e = &mut m.stack[lvl];
        e.ended = true;
        let level = e.level;
        if let Some(f) = e.file.take() {
            let declared = (!e.ct.mime.is_empty()).then(|| e.ct.mime.clone());
            let attach_name = e.attach_name.take();
            let filename = e.filename.clone();
            self.close_file(cx, f, filename, attach_name, declared);
        }
        sink.end_entity(cx, level);
    }

    fn close_file(
        &mut self,
        cx: &mut ConnCtx<'_>,
        f: FileState,
        filename: Option<Vec<u8>>,
        attach_name: Option<String>,
        declared: Option<String>,
    ) {
        let Some(m) = self.msg.as_mut() else { return };
        // Zeek's POP3 registers no file-handle function: its files get the
        // fallback handle and files.log shows `depth` 0 and no filename.
        let pop3 = m.ctx.source == Source::Pop3;
        let mime = sniff(&f.bof);
        let sha256 = f.sha256.map(|h| hex(&h.finalize()));
        // A held line break before the boundary is the boundary's.
        let rfc_sha256 = f.rfc.map(|h| hex(&h.finalize()));
        let extracting = m.ctx.extract.is_some();
        if extracting {
            let is_text = match declared.as_deref() {
                None => true,
                Some(m) => m.starts_with("text/"),
            };
            if filename.is_some() || attach_name.is_some() || !is_text {
                m.attachments.push(Attachment {
                    filename: attach_name.or_else(|| {
                        filename
                            .as_ref()
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                    }),
                    mime_type: mime.map(str::to_string).or(declared),
                    size: f.rfc_size,
                    sha256: rfc_sha256.unwrap_or_default(),
                });
            }
        }
        let cfg = &self.cfg;
        let hashes = (!cfg.hashes.is_empty()).then(|| FileHashes {
            md5: f.md5.map(|h| hex(&h.finalize())),
            sha1: f.sha1.map(|h| hex(&h.finalize())),
            sha256: if cfg.wants(HashKind::Sha256) {
                sha256
            } else {
                None
            },
        });
        let mut analyzers: Vec<Vec<u8>> = [
            (HashKind::Md5, "MD5"),
            (HashKind::Sha1, "SHA1"),
            (HashKind::Sha256, "SHA256"),
        ]
        .iter()
        .filter(|(k, _)| cfg.wants(*k))
        .map(|(_, n)| n.as_bytes().to_vec())
        .collect();
        // Zeek attaches its PE analyzer to every Windows executable by
        // mime type (files.log `analyzers` lists it; mailtap writes no
        // pe.log).
        if mime == Some("application/x-dosexec") {
            let at = analyzers
                .iter()
                .position(|a| a.as_slice() > b"PE".as_slice())
                .unwrap_or(analyzers.len());
            analyzers.insert(at, b"PE".to_vec());
        }
        cx.emit(Record::File(Box::new(FileRecord {
            ts: f.ts,
            fuid: f.fuid,
            uid: Some(cx.uid.to_owned()),
            id: Some(*cx.id),
            source: Some(m.ctx.source.name()),
            depth: if pop3 { 0 } else { f.depth },
            analyzers,
            mime_type: mime.map(|s| s.as_bytes().to_vec()),
            filename: if pop3 { None } else { filename },
            duration: Interval(f.last.0.saturating_sub(f.ts.0)),
            local_orig: m.ctx.local_orig,
            is_orig: Some(m.ctx.is_orig),
            seen_bytes: f.seen,
            total_bytes: None,
            missing_bytes: f.missing,
            overflow_bytes: 0,
            timedout: false,
            parent_fuid: None,
            hashes,
        })));
    }

    fn header_line(
        &mut self,
        cx: &mut ConnCtx<'_>,
        lvl: usize,
        line: &[u8],
        sink: &mut dyn MimeSink,
    ) {
        let Some(m) = self.msg.as_mut() else { return };
        let max = m.ctx.max_header_bytes;
        let src = m.ctx.source.name();
        let e = &mut m.stack[lvl];
        if line.is_empty() || line[0] == 0 {
            self.complete_header(cx, lvl, sink);
            self.end_headers(cx, lvl, sink);
            return;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if e.has_hdr {
                let need = e.hdr.len() + line.len();
                // Past the floor, a header grows only while the shard's
                // buffer budget has room (thousands of connections each
                // in a long header would otherwise hold gigabytes).
                let refused = need > e.hdr.capacity()
                    && need > BUFFER_FLOOR
                    && !cx.out.buffers.fits(need - e.hdr_charge.bytes());
                if e.hdr_bytes >= max || refused {
                    if refused {
                        cx.out.buffers.note_refused();
                    }
                    let addl = e.hdr_bytes.to_string();
                    cx.limit_weird(
                        Weird::ExceededMimeMaxHeaderBytes,
                        Some(addl.as_bytes()),
                        src,
                    );
                    return;
                }
                e.hdr.extend_from_slice(line);
                e.hdr_charge.set(&cx.out.buffers, e.hdr.capacity());
                e.hdr_bytes = e.hdr_bytes.saturating_add(line.len());
                return;
            }
            let n = line
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
            let e = &mut m.stack[lvl];
            e.hdr.clear();
            e.hdr.extend_from_slice(&line[n..]);
            e.hdr_charge.set(&cx.out.buffers, e.hdr.capacity());
            e.hdr_bytes = line.len() - n;
            e.has_hdr = true;
            return;
        }
        self.complete_header(cx, lvl, sink);
        let Some(m) = self.msg.as_mut() else { return };
        let e = &mut m.stack[lvl];
        e.hdr.clear();
        e.hdr.extend_from_slice(line);
        e.hdr_charge.set(&cx.out.buffers, e.hdr.capacity());
        e.hdr_bytes = line.len();
        e.has_hdr = true;
    }

    fn complete_header(&mut self, cx: &mut ConnCtx<'_>, lvl: usize, sink: &mut dyn MimeSink) {
        let Some(m) = self.msg.as_mut() else { return };
        let extracting = m.ctx.extract.is_some();
        let e = &mut m.stack[lvl];
        if !e.has_hdr {
            return;
        }
        e.has_hdr = false;
        let raw = std::mem::take(&mut e.hdr);
        if let Some((name, value)) = split_header(&raw) {
            self.upper.clear();
            self.upper.extend(name.iter().map(u8::to_ascii_uppercase));
            let name = self.upper.as_slice();
            match name {
                b"CONTENT-TYPE" => {
                    if let Some(ct) = parse_content_type(value) {
                        e.ct = ct;
                    }
                    if has_name_eq(value) {
                        e.filename = Some(zeek_filename(value));
                        if extracting {
                            if let Some((_, v)) =
                                params(value).into_iter().find(|(n, _)| n == "name")
                            {
                                e.attach_name.get_or_insert(v);
                            }
                        }
                    }
                }
                b"CONTENT-TRANSFER-ENCODING" => e.cte = parse_cte(value),
                b"CONTENT-DISPOSITION"
                    if memchr::memmem::find(&value.to_ascii_lowercase(), b"filename").is_some() =>
                {
                    e.filename = Some(zeek_filename(value));
                    if extracting {
                        if let Some((_, v)) =
                            params(value).into_iter().find(|(n, _)| n == "filename")
                        {
                            e.attach_name = Some(v);
                        }
                    }
                }
                _ => {}
            }
            if extracting && lvl == 0 {
                let h = &mut m.headers;
                let v = || Some(decode_words(value));
                match name {
                    b"DATE" => h.date = v(),
                    b"FROM" => h.from = v(),
                    b"TO" => append_list(&mut h.to, decode_words(value)),
                    b"CC" => append_list(&mut h.cc, decode_words(value)),
                    b"REPLY-TO" => h.reply_to = v(),
                    b"SUBJECT" => h.subject = v(),
                    b"MESSAGE-ID" => h.msg_id = v(),
                    b"IN-REPLY-TO" => h.in_reply_to = v(),
                    b"USER-AGENT" | b"X-MAILER" | b"X-USER-AGENT" => h.user_agent = v(),
                    _ => {}
                }
            }
            sink.header(cx, lvl, name, value);
        }
        if let Some(e) = self.msg.as_mut().and_then(|m| m.stack.get_mut(lvl)) {
            // Keep the allocation for the next header, unless a long
            // header made it large.
            if raw.capacity() <= BUFFER_FLOOR {
                let mut raw = raw;
                raw.clear();
                e.hdr = raw;
            } else {
                e.hdr_charge.release();
            }
        }
    }

    fn end_headers(&mut self, cx: &mut ConnCtx<'_>, lvl: usize, sink: &mut dyn MimeSink) {
        let Some(m) = self.msg.as_mut() else { return };
        let e = &mut m.stack[lvl];
        e.in_header = false;
        e.hdr = Vec::new();
        e.hdr_charge.release();
        match e.ct.class {
            TypeClass::Multipart => match e.ct.boundary.take() {
                Some(b) => {
                    e.body = Body::Multipart;
                    e.boundary = b;
                }
                // Multipart without boundary: an opaque entity.
                None => e.body = Body::Leaf,
            },
            TypeClass::Message => {
                e.body = Body::Message;
                let cte = e.cte;
                self.begin_entity(cx, sink, cte, false);
            }
            _ => e.body = Body::Leaf,
        }
    }

    fn leaf_line(
        &mut self,
        cx: &mut ConnCtx<'_>,
        lvl: usize,
        line: &[u8],
        sink: &mut dyn MimeSink,
    ) {
        let Some(m) = self.msg.as_mut() else { return };
        let src = m.ctx.source.name();
        let e = &mut m.stack[lvl];
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut hold = false;
        match e.cte {
            Cte::Identity => {
                if e.pending_crlf {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(line);
                if e.multipart_child {
                    e.pending_crlf = true;
                } else {
                    out.extend_from_slice(b"\r\n");
                }
            }
            Cte::QuotedPrintable => {
                qp_line(line, &mut out, &mut e.qp_illegal);
                // The hard line break qp_line added (no soft break `=`).
                let t = line
                    .iter()
                    .rposition(|&c| c != b' ' && c != b'\t')
                    .map_or(&line[..0], |i| &line[..=i]);
                hold = e.multipart_child && t.last() != Some(&b'=');
            }
            Cte::Base64 => {
                self.problems.clear();
                e.b64.line(line, &mut out, &mut self.problems);
                for p in self.problems.drain(..) {
                    cx.weird(Weird::Base64IllegalEncoding, Some(p.as_bytes()), src);
                }
            }
        }
        if !out.is_empty() {
            self.file_data(cx, lvl, &out, hold, sink);
        }
        // Every connection has one: after a long line, give the memory
        // back instead of keeping the longest line's size per connection
        // (2,000 connections with cut 60 kB lines held 130 MB this way).
        if out.capacity() > SCRATCH_KEPT {
            out = Vec::new();
        }
        self.scratch = out;
    }

    fn ensure_file(&mut self, cx: &mut ConnCtx<'_>, lvl: usize, sink: &mut dyn MimeSink) {
        let depth = self.mime_depth;
        let Some(m) = self.msg.as_mut() else { return };
        let Some(e) = m.stack.get_mut(lvl) else {
            return;
        };
        if e.file.is_some() {
            return;
        }
        let handle = file_handle(
            m.ctx.source.tag(),
            m.ctx.conn_start,
            m.ctx.trans_depth,
            depth,
        );
        let fuid = self.key.fuid(handle.as_bytes());
        let cfg = &self.cfg;
        let want256 = cfg.wants(HashKind::Sha256) || m.ctx.extract.is_some();
        e.file = Some(FileState {
            fuid: fuid.clone(),
            ts: cx.ts,
            last: cx.ts,
            depth,
            seen: 0,
            missing: 0,
            md5: cfg.wants(HashKind::Md5).then(Md5::new),
            sha1: cfg.wants(HashKind::Sha1).then(Sha1::new),
            sha256: want256.then(Sha256::new),
            bof: Vec::new(),
            rfc: m.ctx.extract.is_some().then(Sha256::new),
            rfc_size: 0,
            rfc_hold: false,
        });
        sink.file(cx, &fuid);
        m.fuids.push(fuid);
    }

    /// Decoded entity bytes; `hold`: they end with a line break the
    /// decoder added, which RFC 2046 gives to a following boundary.
    fn file_data(
        &mut self,
        cx: &mut ConnCtx<'_>,
        lvl: usize,
        data: &[u8],
        hold: bool,
        sink: &mut dyn MimeSink,
    ) {
        self.ensure_file(cx, lvl, sink);
        let bof_max = self.cfg.bof_buffer_size;
        let Some(m) = self.msg.as_mut() else { return };
        m.content_len = m.content_len.saturating_add(data.len() as u64);
        if let Some(h) = m.content_md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = m.content_sha256.as_mut() {
            h.update(data);
        }
        let Some(f) = m.stack.get_mut(lvl).and_then(|e| e.file.as_mut()) else {
            return;
        };
        f.seen = f.seen.saturating_add(data.len() as u64);
        f.last = cx.ts;
        if f.missing == 0 && f.bof.len() < bof_max {
            let k = (bof_max - f.bof.len()).min(data.len());
            f.bof.extend_from_slice(&data[..k]);
        }
        if let Some(h) = f.md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = f.sha1.as_mut() {
            h.update(data);
        }
        if let Some(h) = f.sha256.as_mut() {
            h.update(data);
        }
        if f.rfc_hold {
            if let Some(h) = f.rfc.as_mut() {
                h.update(b"\r\n");
            }
            f.rfc_size += 2;
        }
        let keep = if hold && data.ends_with(b"\r\n") {
            &data[..data.len() - 2]
        } else {
            data
        };
        f.rfc_hold = keep.len() < data.len();
        if let Some(h) = f.rfc.as_mut() {
            h.update(keep);
        }
        f.rfc_size += keep.len() as u64;
    }
}

fn flush_ext(cx: &mut ConnCtx<'_>, m: &mut Msg, n: u32) {
    if m.ext.is_empty() {
        return;
    }
    let data = std::mem::take(&mut m.ext);
    // The bytes now count against the collector's queue budget.
    m.ext_charge.release();
    cx.emit(Record::EmailData(Box::new(EmailChunk {
        uid: cx.uid.to_owned(),
        n,
        data,
    })));
}

fn append_list(dst: &mut Option<String>, v: String) {
    match dst {
        Some(s) => {
            s.push_str(", ");
            s.push_str(&v);
        }
        None => *dst = Some(v),
    }
}

/// `/[nN][aA][mM][eE][:blank:]*=/` occurs in the value.
fn has_name_eq(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    memchr::memmem::find_iter(&lower, b"name").any(|p| {
        let rest = &lower[p + 4..];
        let n = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        rest.get(n) == Some(&b'=')
    })
}

/// `--boundary` at the start of the line: `Some(true)` for the closing
/// delimiter (`--boundary--`), `Some(false)` for a delimiter.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    Some(rest.starts_with(b"--"))
}
