//! mailtap's message outputs, all on the collector side:
//!
//! * [`ExtractSink`] (`--extract-dir`): every message as `<uid>-<n>.eml`
//!   (bytes as transferred) plus `<uid>-<n>.json` (envelope, replies,
//!   headers, attachments), written atomically with the `.json` last.
//! * [`AceSink`] (`--ace-dir`): SMTP session transcripts in the exact
//!   format of ACE's Zeek scripts, with `<uid>.ready` markers, for an
//!   unchanged ACE SMTP collector.
//! * [`AceCollector`] (`mailtap ace-collect`): reads such transcripts
//!   (ours or Zeek's) back into `.eml`/`.json` pairs, fixing the defects of
//!   ACE's own collector.
//!
//! docs/outputs.md describes every format with examples.

pub mod ace;
pub mod collect;
pub mod extract;
mod files;
pub mod json;

pub use ace::{AceConfig, AceCounters, AceSink};
pub use collect::{AceCollector, CollectorConfig, CollectorCounters};
pub use extract::{ExtractConfig, ExtractCounters, ExtractSink};
pub use files::{
    create_new, ensure_writable_dir, named, open_append, open_regular, random_u64, safe_stem,
};

#[cfg(test)]
mod collect_tests;
