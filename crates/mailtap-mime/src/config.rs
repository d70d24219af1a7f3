//! `[files]`: file analysis of MIME entities (files.log) and the MIME
//! layer's limits.

use serde::{Deserialize, Serialize};

/// A hash computed over every file's bytes (Zeek's hash analyzers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
}

/// File-analysis configuration. `Default` computes SHA-256 only: with
/// SHA-NI it is the cheap one, extraction metadata needs it, and it is what
/// indicator feeds use. `["md5", "sha1", "sha256"]` matches a Zeek with
/// `frameworks/files/hash-all-files` loaded (MD5 alone costs more than all
/// of TCP and SMTP on attachment-heavy traffic: docs/benchmarks.md);
/// `hashes = []` reproduces Zeek's bare mode, where files.log has no hash
/// columns.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Digests written to files.log (`md5`, `sha1`, `sha256`); the hash
    /// columns appear only when the list is not empty.
    pub hashes: Vec<HashKind>,
    /// Zeek's `digest_salt`: SHA-256 of it keys the FUID HighwayHash.
    pub digest_salt: String,
    /// Zeek's `MIME::max_depth`: deeper nested entities are dropped.
    pub max_depth: usize,
    /// Entities per message; later ones are not created (weird
    /// `mailtap_mime_max_entities`).
    pub max_entities_per_message: u64,
    /// Bytes kept from a file's start for type sniffing
    /// (Zeek's `default_file_bof_buffer_size`).
    pub bof_buffer_size: usize,
    /// Compute Zeek's `mime_content_hash` values (MD5 and SHA-256 of all
    /// decoded entity bytes of a message) into the message summary.
    pub content_hashes: bool,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            hashes: vec![HashKind::Sha256],
            digest_salt: "Please change this value.".to_string(),
            max_depth: 100,
            max_entities_per_message: 10_000,
            bof_buffer_size: 4096,
            content_hashes: false,
        }
    }
}

impl FilesConfig {
    /// Checks values that would make the MIME layer misbehave; the error
    /// names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_depth == 0 || self.max_depth > 10_000 {
            return Err("files.max_depth: must be between 1 and 10000".into());
        }
        if self.max_entities_per_message == 0 {
            return Err("files.max_entities_per_message: must be at least 1".into());
        }
        if self.bof_buffer_size > 1 << 20 {
            return Err("files.bof_buffer_size: at most 1048576".into());
        }
        Ok(())
    }

    pub fn wants(&self, h: HashKind) -> bool {
        self.hashes.contains(&h)
    }
}
