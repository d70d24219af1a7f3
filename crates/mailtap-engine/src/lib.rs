//! The mailtap pipeline for capture files.
//!
//! ```text
//! reader (caller's thread)          shard workers (N threads)         collector thread
//! CaptureReader -> Block ---------> decode -> FlowTable -> analyzers -> Vec<Record> --> LogSet
//!   symmetric flow hash picks        (each shard owns its flows,       (logs, events)
//!   the shard; batches of packet     reassembly and analyzer state;
//!   indices into a shared Block      no locks)
//! ```
//!
//! Packets are read once into large recycled [`Block`]s that all shards
//! share read-only; what crosses a thread is always a batch (a block plus
//! the indices of the packets a shard owns, or a vector of records).

mod collector;
mod config;
mod factory;
mod offline;
mod shard;
mod summary;

pub use config::EngineConfig;
pub use factory::MailAnalyzers;
pub use offline::{run_offline, Progress};
pub use summary::{EngineError, Summary};
