//! The lines printed at the end of `read` and `live`, from the run's
//! typed counters ([`Summary`], [`mailtap_engine::LiveSummary`]).

use super::output::OutputArgs;
use mailtap_engine::Summary;
use std::collections::BTreeMap;

/// The first lines: packets, flows, records, events and drops (`drops`:
/// the run's drop counters by name, [`Summary::drops`] or, live,
/// [`mailtap_engine::LiveSummary::drops`], which adds the capture's);
/// how the connections began and ended; what the TLS bypass spared.
pub fn print_totals(s: &Summary, drops: &BTreeMap<String, u64>) {
    eprintln!("{}", summary_line(s, drops));
    eprintln!("mailtap: {}", s.flow_line());
    if let Some(l) = bypass_line(s) {
        eprintln!("{l}");
    }
}

/// The last lines: Kafka, rotation, extraction, ACE, outputs that met
/// write errors, sinks that stopped.
pub fn print_outputs(s: &Summary, o: &OutputArgs) {
    report_outputs(s, o);
    for (sink, e) in &s.sink_errors {
        eprintln!("mailtap: error: {sink} output stopped: {e}");
    }
}

/// `mailtap live`'s lines between the two: one per queue, the AF_PACKET
/// socket filter, the XDP program on each interface.
#[cfg(feature = "live")]
pub fn print_capture(summary: &mailtap_engine::LiveSummary) {
    for q in &summary.queues {
        eprintln!(
            "mailtap: {} queue {} (core {}{}): {} packets, {} bytes, kernel drops {}, ring full {}, handed off {}, received {}, handoff drops {}, {} flows, {} records dropped",
            q.interface,
            q.queue,
            q.core.map_or("-".to_string(), |c| c.to_string()),
            if q.zero_copy { ", zero-copy" } else { "" },
            q.capture.packets,
            q.capture.bytes,
            q.capture.kernel_drops,
            q.capture.ring_full,
            q.handed_off,
            q.handoff_received,
            q.handoff_dropped,
            q.flows_created,
            q.records_dropped,
        );
    }
    if let Some((p, b)) = summary.socket_bypass {
        eprintln!("mailtap: AF_PACKET socket filter: {p} packets ({b} bytes) of bypassed connections kept from the rings");
    }
    for (ifname, mode, c) in &summary.steering {
        eprintln!(
            "mailtap: XDP on {ifname} ({mode:?} mode): {} redirected to mailtap; passed to the kernel: {} not TCP, {} other ports, {} fragments, {} malformed, {} mail on a queue without a socket; {} packets ({} bytes) of bypassed connections kept from mailtap",
            c.redirected, c.passed_not_tcp, c.passed_other_port, c.passed_fragment, c.passed_malformed, c.passed_no_socket, c.bypassed_packets, c.bypassed_bytes
        );
    }
}

/// The extraction, ACE and rotation lines of the final summary.
fn report_outputs(summary: &Summary, o: &OutputArgs) {
    #[cfg(feature = "kafka")]
    if let Some(k) = &summary.kafka {
        eprintln!(
            "mailtap: Kafka: {} records, {} messages produced, {} delivered, {} spilled to disk, {} replayed, {} still spilled, {} dropped (spill full), {} failed permanently",
            k.records, k.produced, k.delivered, k.spilled, k.replayed, k.spill_records, k.spill_dropped, k.failed_permanent
        );
    }
    let r = &summary.log_rotation;
    if r.files_rotated > 0 || r.post_rotate_started > 0 {
        eprintln!(
            "mailtap: logs rotated {} times; post-rotation commands: {} started, {} failed",
            r.files_rotated, r.post_rotate_started, r.post_rotate_failed
        );
    }
    if let Some(x) = &summary.extract {
        eprintln!(
            "mailtap: extracted {} messages ({} incomplete, {} bytes) into {}{}",
            x.messages,
            x.incomplete,
            x.bytes,
            o.extract_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"))
                .display(),
            if x.messages_lost > 0 {
                format!("; {} lost to write errors", x.messages_lost)
            } else {
                String::new()
            }
        );
    }
    if let Some(c) = &summary.ace {
        eprintln!(
            "mailtap: ACE transcripts: {} sessions ready, {} deleted after STARTTLS{}",
            c.sessions,
            c.starttls_deleted,
            if c.sessions_lost > 0 {
                format!(", {} lost to write errors", c.sessions_lost)
            } else {
                String::new()
            }
        );
    }
    // One line per output that met write errors: what it wrote and lost.
    for f in summary.failed_outputs() {
        eprintln!(
            "mailtap: error: output {} ({}): {} written, {} lost to write errors in {} outage{}; first error: {}; {}",
            f.path,
            f.output,
            f.written,
            f.lost,
            f.failures,
            if f.failures == 1 { "" } else { "s" },
            f.first_error.as_deref().unwrap_or("?"),
            if f.failing {
                "still failing at the end"
            } else {
                "writing resumed"
            }
        );
    }
}

/// What the TLS bypass spared, when it bypassed anything.
fn bypass_line(s: &Summary) -> Option<String> {
    let f = &s.flow;
    (f.bypassed_flows > 0).then(|| {
        format!(
            "mailtap: bypass: {} connections after their TLS handshake ({} in the kernel, {} refused by a full kernel table); {} packets, {} bytes not analysed ({} reached user space before the kernel took over)",
            f.bypassed_flows,
            f.bypassed_kernel_flows,
            f.bypass_kernel_refused,
            f.bypassed_packets,
            f.bypassed_bytes,
            f.bypass_leaked_packets,
        )
    })
}

/// The first line; `drops` as for [`print_totals`].
fn summary_line(s: &Summary, drops: &BTreeMap<String, u64>) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let rows: Vec<String> = s.log_rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let drops: Vec<String> = drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "mailtap: {} packets ({} bytes, {:.3} Gbit/s, {:.0} pkt/s) in {:.2}s; {} flows; records: {}; events: {}; drops: {}",
        s.packets,
        s.bytes,
        s.bytes as f64 * 8.0 / secs / 1e9,
        s.packets as f64 / secs,
        secs,
        s.flow.flows_created,
        if rows.is_empty() { "none".into() } else { rows.join(" ") },
        s.output.events,
        if drops.is_empty() { "none".into() } else { drops.join(" ") },
    )
}
