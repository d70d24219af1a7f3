//! The mailtap pipeline: packets from capture files (`run_offline`) or
//! live queues (`run_live`) through flow shards to the collector.
//!
//! Offline:
//! ```text
//! reader (caller's thread)          shard workers (N threads)         collector thread
//! CaptureReader -> Block ---------> decode -> FlowTable -> analyzers -> Vec<Record> --> LogSet
//!   symmetric flow hash picks        (each shard owns its flows,       (logs, events,
//!   the shard; batches of packet     reassembly and analyzer state;    extraction, ACE)
//!   indices into a shared Block      no locks)
//! ```
//!
//! Live: each worker thread, pinned to a core, owns one receive queue
//! *and* one shard; packets of flows owned by another shard move there in
//! batches (see the `live` module).
//!
//! Packets are read once into large recycled [`Block`]s (offline) or
//! straight from the kernel's ring (live); what crosses a thread is always
//! a batch (block indices, a handoff buffer, or a vector of records).
//!
//! [`Block`]: mailtap_wire::source::Block

mod budget;
mod bypass;
mod collector;
mod config;
mod factory;
mod live;
mod metrics;
mod offline;
mod shard;
mod summary;

pub use config::{EngineConfig, DEFAULT_COLLECTOR_QUEUE_BYTES};
pub use factory::MailAnalyzers;
pub use live::{run_live, CaptureKind, LiveBypass, LiveConfig, LiveSummary, QueueSummary, ShardBy};
pub use offline::{run_offline, Progress};
pub use summary::{EngineError, Summary};
