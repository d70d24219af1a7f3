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
//! Features (both default): `live` (`run_live`: AF_XDP/AF_PACKET through
//! mailtap-capture, which links libxdp and libbpf) and `kafka` (the
//! collector's Kafka sink, librdkafka). Without them the offline path and
//! every file output are all there.
//!
//! Modules, one job each:
//! - `offline`: `mailtap read` (reader, shards); it uses nothing of `live`.
//! - `live/`: `mailtap live`: `mod.rs` (`run_live`, step by step),
//!   `config`, `capture` (queues, XDP steering, sockets), `worker` (the
//!   worker loop), `handoff` (packets to another shard), `stats_log`
//!   (stats.log), `shutdown` (how a run ends), `summary`.
//! - `shard`: what a shard does with one packet, for both paths.
//! - `outbox`: a worker's bounded, shedding way to the collector (live;
//!   read in a test mode). `budget`: the bytes in flight to the collector.
//! - `collector`: the collector thread and its sinks. `summary`: what a run
//!   counted.
//! - `stats`: the counters workers and shards publish; `metrics`:
//!   `--metrics-listen`, which reads them.
//! - `config`, `factory` (the analyzers of a connection), `bypass` (the
//!   kernel bypass maps seen from a flow table).
//!
//! [`Block`]: mailtap_wire::source::Block

mod budget;
#[cfg(feature = "live")]
mod bypass;
mod collector;
mod config;
mod factory;
#[cfg(feature = "live")]
mod live;
mod metrics;
mod offline;
mod outbox;
mod shard;
mod stats;
mod summary;

pub use config::{EngineConfig, DEFAULT_COLLECTOR_QUEUE_BYTES};
pub use factory::MailAnalyzers;
#[cfg(feature = "live")]
pub use live::{run_live, CaptureKind, LiveBypass, LiveConfig, LiveSummary, QueueSummary, ShardBy};
pub use offline::{run_offline, Progress};
pub use summary::{EngineError, Summary};
