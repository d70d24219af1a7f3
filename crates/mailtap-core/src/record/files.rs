//! files.log (Zeek's `Files::Info`, with the hashes of `hash-all-files`).

use super::*;

/// One row of files.log (Zeek `Files::Info`). The hash columns are present
/// only when hashing is configured (`hashes` is `Some`), as in Zeek when the
/// hash analyzers are loaded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileRecord {
    pub ts: Timestamp,
    pub fuid: String,
    pub uid: Option<String>,
    pub id: Option<ConnId>,
    /// `SMTP` or `POP3`.
    pub source: Option<&'static str>,
    pub depth: u64,
    /// Analyzers attached (`MD5`, `SHA1`, `SHA256`, `EXTRACT`...).
    pub analyzers: Vec<Bytes>,
    pub mime_type: Option<Bytes>,
    pub filename: Option<Bytes>,
    pub duration: Interval,
    pub local_orig: Option<bool>,
    pub is_orig: Option<bool>,
    pub seen_bytes: u64,
    pub total_bytes: Option<u64>,
    pub missing_bytes: u64,
    pub overflow_bytes: u64,
    pub timedout: bool,
    pub parent_fuid: Option<String>,
    /// Hex digests (`md5`, `sha1`, `sha256`), each `None` when not computed.
    pub hashes: Option<FileHashes>,
}

/// The hash columns of files.log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileHashes {
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

zeek_record! {
    impl ZeekRecord for FileRecord as r {
        path: "files";
        "ts": "time" => Value::Time(r.ts),
        "fuid": "string" => Value::Str(r.fuid.as_bytes()),
        "uid": "string" => opt_string(&r.uid),
        "id.orig_h": "addr" => orig_h(&r.id),
        "id.orig_p": "port" => orig_p(&r.id),
        "id.resp_h": "addr" => resp_h(&r.id),
        "id.resp_p": "port" => resp_p(&r.id),
        "source": "string" => opt_static(r.source),
        "depth": "count" => Value::Count(r.depth),
        "analyzers": "set[string]" => Value::StrSet(&r.analyzers),
        "mime_type": "string" => Value::opt_str(&r.mime_type),
        "filename": "string" => Value::opt_str(&r.filename),
        "duration": "interval" => Value::Interval(r.duration),
        "local_orig": "bool" => Value::or_unset(r.local_orig.map(Value::Bool)),
        "is_orig": "bool" => Value::or_unset(r.is_orig.map(Value::Bool)),
        "seen_bytes": "count" => Value::Count(r.seen_bytes),
        "total_bytes": "count" => Value::opt_count(r.total_bytes),
        "missing_bytes": "count" => Value::Count(r.missing_bytes),
        "overflow_bytes": "count" => Value::Count(r.overflow_bytes),
        "timedout": "bool" => Value::Bool(r.timedout),
        "parent_fuid": "string" => opt_string(&r.parent_fuid),
        // With the hash analyzers loaded (`files.hashes`).
        if let Some(h) = &r.hashes => {
            "md5": "string" => opt_string(&h.md5),
            "sha1": "string" => opt_string(&h.sha1),
            "sha256": "string" => opt_string(&h.sha256),
            // Zeek's base/files/extract columns, always there in Zeek 8's
            // files.log; mailtap extracts messages, not files: unset.
            "extracted": "string" => Value::Unset,
            "extracted_cutoff": "bool" => Value::Unset,
            "extracted_size": "count" => Value::Unset,
        }
    }
}
