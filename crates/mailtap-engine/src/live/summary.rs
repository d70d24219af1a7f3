//! What `mailtap live` reports at the end: the engine's summary, one
//! entry per queue, and the XDP program's and socket filter's counters.

use crate::outbox::SHED_CLASSES;
use crate::summary::Summary;
use mailtap_capture::steering::{SteeringCounters, XdpMode};
use mailtap_capture::QueueCounters;
use std::collections::BTreeMap;

/// Counters of one worker (its queue and its shard), as of the end.
#[derive(Clone, Debug, Default)]
pub struct QueueSummary {
    pub interface: String,
    pub queue: u32,
    pub core: Option<usize>,
    /// AF_XDP bound in zero-copy mode.
    pub zero_copy: bool,
    pub capture: QueueCounters,
    pub handed_off: u64,
    pub handoff_received: u64,
    pub handoff_dropped: u64,
    /// Records dropped because the collector could not keep up.
    pub records_dropped: u64,
    /// Of those, by class in [`SHED_CLASSES`] order (events, weird,
    /// files/ssl/x509, message bytes, smtp/pop3/conn, message metadata).
    pub records_dropped_by_class: [u64; 6],
    /// Message bytes dropped because the collector could not keep up.
    pub email_bytes_dropped: u64,
    /// Messages marked `complete: false` because their bytes were dropped.
    pub messages_marked_incomplete: u64,
    pub flows_created: u64,
    pub events: u64,
}

/// What `mailtap live` did: the engine summary plus per-queue and XDP
/// counters.
#[derive(Clone, Debug, Default)]
pub struct LiveSummary {
    pub engine: Summary,
    pub queues: Vec<QueueSummary>,
    /// Per interface, when AF_XDP steering was used.
    pub steering: Vec<(String, XdpMode, SteeringCounters)>,
    /// Packets and bytes the AF_PACKET socket filter kept from the rings
    /// (bypassed connections), when it was loaded.
    pub socket_bypass: Option<(u64, u64)>,
}

impl LiveSummary {
    /// Every drop, by cause: the engine's plus the capture's.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let mut d = self.engine.drops();
        let mut add = |k: &str, v: u64| {
            if v > 0 {
                *d.entry(k.to_string()).or_default() += v;
            }
        };
        for q in &self.queues {
            add("capture.kernel_drops", q.capture.kernel_drops);
            add("capture.ring_full", q.capture.ring_full);
            add("capture.invalid_descs", q.capture.invalid_descs);
            add("capture.truncated", q.capture.truncated);
            add("handoff.dropped", q.handoff_dropped);
            add("collector.records_dropped", q.records_dropped);
            for (class, v) in SHED_CLASSES.iter().zip(q.records_dropped_by_class) {
                add(&format!("collector.dropped.{class}"), v);
            }
            add("collector.email_bytes_dropped", q.email_bytes_dropped);
            add(
                "collector.messages_marked_incomplete",
                q.messages_marked_incomplete,
            );
        }
        // Mail the XDP program had to give to the kernel because its
        // queue had no socket: traffic mailtap should have seen.
        for (_, _, c) in &self.steering {
            add("xdp.mail_on_queue_without_socket", c.passed_no_socket);
        }
        d
    }
}
