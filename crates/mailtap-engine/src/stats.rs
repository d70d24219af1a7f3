//! The counters each worker (live) or shard (read) publishes for the
//! readers beside the packet path: the live run's `stats.log` rows and
//! the `--metrics-listen` endpoint. Its own module so that the metrics,
//! the live capture and the offline path all use it without depending on
//! each other.

use std::sync::atomic::AtomicU64;

/// Counters a live worker publishes for `stats.log` and the metrics
/// endpoint, and a `mailtap read` shard for the metrics endpoint (the
/// ones it has: packets, flows, events, records). Relaxed atomics; each
/// worker writes only its own.
#[derive(Default)]
pub(crate) struct SharedStats {
    /// When the worker last published (ms since the Unix epoch; 0: never,
    /// as in `mailtap read`, whose shards are not watched): `/healthz`.
    pub(crate) heartbeat_ms: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) kernel_drops: AtomicU64,
    pub(crate) ring_full: AtomicU64,
    pub(crate) handed_off: AtomicU64,
    pub(crate) handoff_received: AtomicU64,
    pub(crate) handoff_dropped: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) non_tcp: AtomicU64,
    pub(crate) flows_active: AtomicU64,
    pub(crate) flows_created: AtomicU64,
    pub(crate) reassembly_bytes: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bypassed_flows: AtomicU64,
    pub(crate) bypassed_packets: AtomicU64,
    pub(crate) bypassed_bytes: AtomicU64,
}
