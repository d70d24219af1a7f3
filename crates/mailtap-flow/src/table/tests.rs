//! Unit tests of the flow table: orientation, reuse, detection, bypass,
//! expiry and eviction.

use super::*;
use crate::KernelCounts;
use mailtap_core::Record;
use std::sync::{Arc, Mutex};

/// Records what the flow layer hands to an analyzer.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl TcpAnalyzer for Recorder {
    fn deliver(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool, data: &[u8]) {
        self.0.lock().unwrap().push(format!(
            "{}:{}",
            if is_orig { "o" } else { "r" },
            String::from_utf8_lossy(data)
        ));
    }
    fn gap(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool, len: u64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{}:gap{len}", if is_orig { "o" } else { "r" }));
    }
    fn eof(&mut self, _cx: &mut ConnCtx<'_>, is_orig: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{}:eof", if is_orig { "o" } else { "r" }));
    }
    fn done(&mut self, cx: &mut ConnCtx<'_>) {
        cx.confirm("test");
        self.0.lock().unwrap().push("done".into());
    }
    fn start_midstream(&mut self) {
        self.0.lock().unwrap().push("midstream".into());
    }
    /// Done with the payload once it saw a line `BYPASS`.
    fn bypass_ready(&self) -> bool {
        self.0.lock().unwrap().iter().any(|c| c.contains("BYPASS"))
    }
}

struct Factory {
    rec: Recorder,
    port: u16,
}

impl AnalyzerFactory for Factory {
    type Analyzer = Recorder;
    fn by_port(&self, id: &ConnId) -> Option<Recorder> {
        (id.resp_p == self.port).then(|| self.rec.clone())
    }
    fn detect(&self, _id: &ConnId, o: &[u8], r: &[u8]) -> Detect<Recorder> {
        if o.starts_with(b"EHLO") && r.starts_with(b"220") {
            Detect::Attach(self.rec.clone())
        } else if !o.is_empty() && !o.starts_with(b"EHLO") {
            Detect::GiveUp
        } else {
            Detect::NeedMore
        }
    }
}

const C: &str = "10.0.0.1";
const S: &str = "192.0.2.25";

fn seg(
    ts: i64,
    from_client: bool,
    sport: u16,
    fl: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Segment<'_> {
    let (c, s): (IpAddr, IpAddr) = (C.parse().unwrap(), S.parse().unwrap());
    let (src, dst, sp, dp) = if from_client {
        (c, s, 40000, sport)
    } else {
        (s, c, sport, 40000)
    };
    Segment {
        ts: Timestamp(ts * 1_000_000_000),
        src,
        dst,
        src_port: sp,
        dst_port: dp,
        seq,
        ack,
        flags: fl,
        window: 1000,
        ip_len: 40 + payload.len() as u32,
        payload,
        bad_checksum: false,
    }
}

fn table(port: u16, cfg: FlowConfig) -> (FlowTable<Factory>, Recorder) {
    let rec = Recorder::default();
    let t = FlowTable::new(
        cfg,
        Factory {
            rec: rec.clone(),
            port,
        },
        UidGenerator::new(""),
        LocalNets::default(),
    );
    (t, rec)
}

fn conns(out: &Output) -> Vec<&ConnRecord> {
    out.records
        .iter()
        .filter_map(|r| {
            if let Record::Conn(c) = r {
                Some(&**c)
            } else {
                None
            }
        })
        .collect()
}

use flags::{ACK, FIN, PSH, SYN};

fn session(t: &mut FlowTable<Factory>, out: &mut Output, port: u16) {
    t.process(&seg(1, true, port, SYN, 100, 0, b""), out);
    t.process(&seg(2, false, port, SYN | ACK, 500, 101, b""), out);
    t.process(&seg(3, true, port, ACK, 101, 501, b""), out);
    t.process(
        &seg(4, false, port, ACK | PSH, 501, 101, b"220 hi\r\n"),
        out,
    );
    t.process(&seg(5, true, port, ACK | PSH, 101, 509, b"EHLO x\r\n"), out);
    t.process(&seg(6, true, port, FIN | ACK, 109, 509, b""), out);
    t.process(&seg(7, false, port, FIN | ACK, 509, 110, b""), out);
    t.process(&seg(8, true, port, ACK, 110, 510, b""), out);
}

#[test]
fn full_connection_by_port() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 25);
    assert_eq!(t.len(), 1, "kept during the close delay");
    t.advance(Timestamp(20_000_000_000), &mut out);
    assert_eq!(t.len(), 0);
    let c = conns(&out);
    assert_eq!(c.len(), 1);
    let c = c[0];
    assert_eq!(c.conn_state, "SF");
    assert_eq!(c.history, "ShAdDFf");
    assert_eq!((c.orig_bytes, c.resp_bytes), (Some(8), Some(8)));
    assert_eq!((c.orig_pkts, c.resp_pkts), (5, 3));
    assert_eq!(c.service, vec!["test"]);
    assert_eq!(c.id.resp_p, 25);
    // The last ACK comes after both FINs: not part of the duration (Zeek).
    assert_eq!(c.duration, Some(mailtap_core::Interval(6_000_000_000)));
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec!["r:220 hi\r\n", "o:EHLO x\r\n", "o:eof", "r:eof", "done"]
    );
}

/// A session whose analyzer is done after the client's `BYPASS` line;
/// then 6 bytes from the server, 2 from the client after a hole, and
/// the close.
fn bypassed_session(t: &mut FlowTable<Factory>, out: &mut Output) {
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), out);
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), out);
    t.process(&seg(3, true, 25, ACK, 101, 501, b""), out);
    t.process(&seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"), out);
    t.process(&seg(5, true, 25, ACK | PSH, 101, 509, b"BYPASS\r\n"), out);
    t.process(&seg(6, false, 25, ACK | PSH, 509, 109, b"secret"), out);
    t.process(&seg(7, true, 25, ACK | PSH, 120, 515, b"zz"), out);
    t.process(&seg(8, true, 25, FIN | ACK, 122, 515, b""), out);
    t.process(&seg(9, false, 25, FIN | ACK, 515, 123, b""), out);
    t.process(&seg(10, true, 25, ACK, 123, 516, b""), out);
}

#[test]
fn bypassed_payload_is_not_delivered_but_counted() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    bypassed_session(&mut t, &mut out);
    assert_eq!(t.reassembly_bytes(), 0, "nothing buffered after the hole");
    t.advance(Timestamp(20_000_000_000), &mut out);
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec!["r:220 hi\r\n", "o:BYPASS\r\n", "done"]
    );
    let c = conns(&out)[0];
    assert_eq!(c.history, "ShAdDFf");
    assert_eq!(c.conn_state, "SF");
    assert_eq!((c.orig_bytes, c.resp_bytes), (Some(21), Some(14)));
    assert_eq!(c.missed_bytes, 0);
    assert_eq!((c.orig_pkts, c.resp_pkts), (6, 4));
    assert_eq!(c.orig_ip_bytes, 40 * 6 + 8 + 2);
    let k = t.counters();
    assert_eq!(k.bypassed_flows, 1);
    assert_eq!(k.bypassed_kernel_flows, 0);
    assert_eq!(k.bypassed_packets, 3);
    assert_eq!(k.bypassed_bytes, 46 + 42 + 40);
}

#[test]
fn bypass_off_analyses_everything() {
    let cfg = FlowConfig {
        bypass: false,
        ..FlowConfig::default()
    };
    let (mut t, rec) = table(25, cfg);
    let mut out = Output::new(false);
    bypassed_session(&mut t, &mut out);
    t.advance(Timestamp(20_000_000_000), &mut out);
    assert!(rec.0.lock().unwrap().contains(&"r:secret".to_string()));
    assert_eq!(t.counters().bypassed_flows, 0);
    assert_eq!(conns(&out)[0].missed_bytes, 11);
}

/// Stands in for the capture's BPF map: what the kernel would have
/// counted is given by the test.
struct FakeKernel {
    started: Arc<Mutex<Vec<ConnId>>>,
    counts: [KernelCounts; 2],
    accept: bool,
}

impl KernelBypass for FakeKernel {
    fn start(&mut self, id: &ConnId) -> bool {
        self.started.lock().unwrap().push(*id);
        self.accept
    }
    fn peek(&mut self, _id: &ConnId) -> Option<[KernelCounts; 2]> {
        Some(self.counts)
    }
    fn finish(&mut self, _id: &ConnId) -> [KernelCounts; 2] {
        self.counts
    }
}

#[test]
fn kernel_counts_are_added_to_conn_log() {
    let (mut t, _rec) = table(25, FlowConfig::default());
    let started = Arc::new(Mutex::new(Vec::new()));
    t.set_kernel_bypass(Box::new(FakeKernel {
        started: started.clone(),
        counts: [
            KernelCounts {
                packets: 10,
                ip_bytes: 5000,
                last_seen: Some(Timestamp(7_000_000_000)),
                seq_end: Some(2109),
                payload_packets: 9,
                pure_acks: 1,
                zero_windows: 0,
                retransmissions: 2,
            },
            KernelCounts {
                packets: 5,
                ip_bytes: 200,
                last_seen: Some(Timestamp(7_000_000_000)),
                seq_end: None,
                pure_acks: 5,
                ..KernelCounts::default()
            },
        ],
        accept: true,
    }));
    let mut out = Output::new(false);
    // The kernel takes the data; only the close reaches the shard.
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    t.process(&seg(3, true, 25, ACK, 101, 501, b""), &mut out);
    t.process(
        &seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
        &mut out,
    );
    t.process(
        &seg(5, true, 25, ACK | PSH, 101, 509, b"BYPASS\r\n"),
        &mut out,
    );
    assert_eq!(started.lock().unwrap().len(), 1);
    assert_eq!(started.lock().unwrap()[0].resp_p, 25);
    t.process(&seg(8, true, 25, FIN | ACK, 2109, 509, b""), &mut out);
    t.process(&seg(9, false, 25, FIN | ACK, 509, 2110, b""), &mut out);
    t.advance(Timestamp(20_000_000_000), &mut out);
    let c = conns(&out)[0];
    assert_eq!((c.orig_pkts, c.resp_pkts), (4 + 10, 3 + 5));
    assert_eq!(c.orig_ip_bytes, 40 * 4 + 8 + 5000);
    assert_eq!(c.resp_ip_bytes, 40 * 3 + 8 + 200);
    assert_eq!((c.orig_bytes, c.resp_bytes), (Some(2008), Some(8)));
    assert_eq!(c.missed_bytes, 0);
    // The kernel's retransmissions and the server's pure ACKs come
    // before the FIN that made the shard look.
    assert_eq!(c.history, "ShAdDTaFf");
    let k = t.counters();
    assert_eq!((k.bypassed_kernel_flows, k.bypassed_packets), (1, 15));
    assert_eq!(k.bypass_leaked_packets, 0);
}

#[test]
fn kernel_activity_keeps_a_bypassed_connection_alive() {
    let cfg = FlowConfig {
        tcp_inactivity_timeout: 10.0,
        ..FlowConfig::default()
    };
    let (mut t, _rec) = table(25, cfg);
    t.set_kernel_bypass(Box::new(FakeKernel {
        started: Default::default(),
        counts: [
            KernelCounts {
                packets: 1,
                ip_bytes: 100,
                last_seen: Some(Timestamp(15_000_000_000)),
                pure_acks: 1,
                ..KernelCounts::default()
            },
            KernelCounts::default(),
        ],
        accept: true,
    }));
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    t.process(
        &seg(3, true, 25, ACK | PSH, 101, 501, b"BYPASS\r\n"),
        &mut out,
    );
    // Idle for the shard since t=3, but the kernel saw a packet at 15.
    t.advance(Timestamp(20_000_000_000), &mut out);
    assert_eq!(t.len(), 1);
    t.advance(Timestamp(26_000_000_000), &mut out);
    assert_eq!(t.len(), 0);
    assert_eq!(
        conns(&out)[0].duration,
        Some(mailtap_core::Interval(14_000_000_000))
    );
}

#[test]
fn a_full_kernel_table_leaves_the_bypass_to_the_shard() {
    let (mut t, _rec) = table(25, FlowConfig::default());
    t.set_kernel_bypass(Box::new(FakeKernel {
        started: Default::default(),
        counts: Default::default(),
        accept: false,
    }));
    let mut out = Output::new(false);
    bypassed_session(&mut t, &mut out);
    t.advance(Timestamp(20_000_000_000), &mut out);
    let k = t.counters();
    assert_eq!((k.bypassed_flows, k.bypass_kernel_refused), (1, 1));
    assert_eq!(k.bypassed_packets, 3);
    assert_eq!(conns(&out)[0].orig_pkts, 6);
}

#[test]
fn analyzer_finishes_when_both_directions_end_in_order() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 25);
    // Before the close delay is over: the analyzer is done and freed,
    // the connection itself is still kept for its conn.log fields.
    assert_eq!(t.len(), 1);
    assert_eq!(
        rec.0.lock().unwrap().last().map(String::as_str),
        Some("done")
    );
    assert!(conns(&out).is_empty());
    t.advance(Timestamp(20_000_000_000), &mut out);
    assert_eq!(conns(&out).len(), 1);
    assert_eq!(conns(&out)[0].service, vec!["test"]);
    let calls = rec.0.lock().unwrap();
    assert_eq!(calls.iter().filter(|c| *c == "done").count(), 1);
}

#[test]
fn analyzer_waits_for_a_hole_before_the_fin() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    let p = 25;
    t.process(&seg(1, true, p, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, p, SYN | ACK, 500, 101, b""), &mut out);
    t.process(
        &seg(3, false, p, ACK | PSH, 501, 101, b"220 hi\r\n"),
        &mut out,
    );
    // The client's data segment is late: its FIN arrives first (the
    // server has not acknowledged the data either, so it is a hole
    // still to be filled, not a gap).
    t.process(&seg(4, true, p, FIN | ACK, 109, 509, b""), &mut out);
    t.process(&seg(5, false, p, FIN | ACK, 509, 101, b""), &mut out);
    assert!(!rec.0.lock().unwrap().contains(&"done".to_string()));
    // The retransmission fills the hole within the close delay.
    t.process(
        &seg(6, true, p, ACK | PSH, 101, 510, b"EHLO x\r\n"),
        &mut out,
    );
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec!["r:220 hi\r\n", "r:eof", "o:EHLO x\r\n", "o:eof", "done"]
    );
}

#[test]
fn detection_replays_in_arrival_order() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 2525);
    t.finish(&mut out);
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec!["r:220 hi\r\n", "o:EHLO x\r\n", "o:eof", "r:eof", "done"]
    );
    assert_eq!(t.counters().flows_flushed_at_end, 1);
}

#[test]
fn detection_gives_up_on_other_protocols() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 80, SYN, 1, 0, b""), &mut out);
    t.process(
        &seg(2, true, 80, ACK, 2, 0, b"GET / HTTP/1.1\r\n"),
        &mut out,
    );
    t.finish(&mut out);
    assert!(rec.0.lock().unwrap().is_empty());
    assert_eq!(conns(&out)[0].service, Vec::<&str>::new());
}

#[test]
fn partial_connection_not_analyzed() {
    let cfg = FlowConfig {
        analyze_partial: false,
        ..FlowConfig::default()
    };
    let (mut t, rec) = table(25, cfg);
    let mut out = Output::new(false);
    t.process(
        &seg(1, true, 25, ACK, 1000, 1, b"MAIL FROM:<a@b>\r\n"),
        &mut out,
    );
    t.finish(&mut out);
    assert!(rec.0.lock().unwrap().is_empty());
    let c = conns(&out);
    assert_eq!(c[0].conn_state, "OTH");
    assert_eq!(
        c[0].id.orig_p, 40000,
        "sender of the first packet is the originator"
    );
    assert_eq!(t.counters().flows_partial, 1);
}

#[test]
fn partial_connection_analyzed_midstream() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, false, 25, ACK, 7000, 1000, b"354 go\r\n"), &mut out);
    t.process(&seg(2, true, 25, ACK, 1000, 7008, b"data\r\n"), &mut out);
    t.process(&seg(3, true, 25, ACK, 1006, 7008, b".\r\n"), &mut out);
    t.finish(&mut out);
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec!["midstream", "r:354 go\r\n", "o:data\r\n", "o:.\r\n", "done"]
    );
    let c = conns(&out);
    assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (40000, 25));
    assert_eq!(
        c[0].missed_bytes, 0,
        "bytes before the first seen are no gap"
    );
    assert_eq!((c[0].orig_bytes, c[0].resp_bytes), (Some(9), Some(8)));
    let k = t.counters();
    assert_eq!((k.flows_partial, k.flows_midstream), (1, 1));
}

#[test]
fn midstream_detection_tells_the_analyzer() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    // Neither port is a likely server port: the first sender is the
    // originator.
    t.process(&seg(1, true, 2525, ACK, 100, 500, b"EHLO x\r\n"), &mut out);
    t.process(&seg(2, false, 2525, ACK, 500, 108, b"220 hi\r\n"), &mut out);
    t.finish(&mut out);
    assert_eq!(
        rec.0.lock().unwrap()[..2],
        ["midstream".to_string(), "o:EHLO x\r\n".to_string()]
    );
}

#[test]
fn lost_syn_analysed_from_the_syn_ack() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    // The SYN (seq 100) was not captured. The client's first data
    // segment is late: its stream still starts at the ISN the SYN-ACK
    // acknowledges, so nothing is lost or skipped.
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    t.process(&seg(3, true, 25, ACK, 101, 501, b""), &mut out);
    t.process(
        &seg(4, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
        &mut out,
    );
    t.process(
        &seg(5, true, 25, ACK | PSH, 109, 509, b"MAIL\r\n"),
        &mut out,
    );
    t.process(
        &seg(6, true, 25, ACK | PSH, 101, 509, b"EHLO x\r\n"),
        &mut out,
    );
    t.process(&seg(7, true, 25, FIN | ACK, 115, 509, b""), &mut out);
    t.process(&seg(8, false, 25, FIN | ACK, 509, 116, b""), &mut out);
    t.process(&seg(9, true, 25, ACK, 116, 510, b""), &mut out);
    t.finish(&mut out);
    assert_eq!(
        *rec.0.lock().unwrap(),
        vec![
            "r:220 hi\r\n",
            "o:EHLO x\r\n",
            "o:MAIL\r\n",
            "o:eof",
            "r:eof",
            "done"
        ]
    );
    let c = conns(&out)[0];
    assert_eq!((c.id.orig_p, c.id.resp_p), (40000, 25));
    assert_eq!(c.history, "^hAdDFf");
    assert_eq!(c.conn_state, "SF");
    assert_eq!((c.orig_bytes, c.resp_bytes), (Some(14), Some(8)));
    assert_eq!(c.missed_bytes, 0);
    assert_eq!(t.counters().flows_midstream, 0);
}

#[test]
fn likely_server_ports_orient_midstream_connections() {
    let cfg = FlowConfig {
        analyze_partial: false,
        ..FlowConfig::default()
    };
    let (mut t, _) = table(25, cfg);
    let mut out = Output::new(false);
    // From a likely server port (587) to an ephemeral one: swapped.
    t.process(&seg(1, false, 587, ACK, 1, 1, b"250 ok\r\n"), &mut out);
    // From POP3's 110 (not a likely server port in Zeek): as seen.
    t.process(&seg(2, false, 110, ACK, 1, 1, b"+OK\r\n"), &mut out);
    // A SYN-ACK from 110: as seen too.
    t.process(&seg(3, false, 995, SYN | ACK, 1, 1, b""), &mut out);
    t.process(&seg(3, false, 1110, SYN | ACK, 1, 1, b""), &mut out);
    t.finish(&mut out);
    let c = conns(&out);
    let ids: Vec<(u16, u16, bool)> = c
        .iter()
        .map(|c| (c.id.orig_p, c.id.resp_p, c.history.starts_with('^')))
        .collect();
    assert_eq!(
        ids,
        vec![
            (40000, 587, true),
            (110, 40000, false),
            (40000, 995, true),
            (40000, 1110, true)
        ]
    );
    // Both ports likely: swapped only towards the higher port.
    let mut out = Output::new(false);
    let mut s = seg(1, true, 25, ACK, 1, 1, b"x");
    s.src_port = 443;
    t.process(&s, &mut out);
    let mut s = seg(2, true, 443, ACK, 1, 1, b"x");
    s.src_port = 25;
    t.process(&s, &mut out);
    t.finish(&mut out);
    let c = conns(&out);
    assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (443, 25));
    assert_eq!((c[1].id.orig_p, c[1].id.resp_p), (443, 25));
}

fn weirds(out: &Output) -> Vec<(String, &'static str)> {
    out.records
        .iter()
        .filter_map(|r| match r {
            Record::Weird(w) => Some((w.uid.clone().unwrap_or_default(), w.name)),
            _ => None,
        })
        .collect()
}

#[test]
fn stray_packet_before_syn_does_not_hide_the_session() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    // A retransmission from an earlier connection on the 4-tuple.
    t.process(
        &seg(0, true, 25, ACK | PSH, 9000, 3000, b"QUIT\r\n"),
        &mut out,
    );
    session(&mut t, &mut out, 25);
    t.finish(&mut out);
    let c = conns(&out);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].history, "D");
    assert_eq!(c[1].history, "ShAdDFf");
    assert_eq!(c[1].service, vec!["test"]);
    assert_eq!(
        weirds(&out),
        vec![(c[0].uid.clone(), "active_connection_reuse")]
    );
    let calls = rec.0.lock().unwrap();
    assert!(calls.ends_with(&[
        "r:220 hi\r\n".to_string(),
        "o:EHLO x\r\n".to_string(),
        "o:eof".to_string(),
        "r:eof".to_string(),
        "done".to_string()
    ]));
    assert_eq!(t.counters().flows_reused, 1);
}

#[test]
fn reuse_rules() {
    // A retransmitted SYN is not a reuse; one with another sequence
    // number while the first is unanswered is (SYN_seq_jump).
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, true, 25, SYN, 100, 0, b""), &mut out);
    assert_eq!(t.len(), 1);
    assert!(conns(&out).is_empty());
    t.process(&seg(3, true, 25, SYN, 900, 0, b""), &mut out);
    let first = conns(&out)[0].uid.clone();
    assert_eq!(weirds(&out), vec![(first, "SYN_seq_jump")]);

    // A new SYN soon after both sides closed: premature reuse.
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 25);
    t.process(&seg(10, true, 25, SYN, 7000, 0, b""), &mut out);
    let c = conns(&out);
    assert_eq!((c.len(), c[0].conn_state), (1, "SF"));
    assert_eq!(
        weirds(&out),
        vec![(c[0].uid.clone(), "premature_connection_reuse")]
    );
    assert_eq!(t.counters().flows_closed, 1);

    // Later than the linger time, or after a reset: no weird.
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, 25, flags::RST | ACK, 0, 101, b""), &mut out);
    t.process(&seg(3, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(4, true, 25, flags::RST, 101, 0, b""), &mut out);
    t.process(&seg(5, true, 25, SYN, 200, 0, b""), &mut out);
    assert_eq!(conns(&out).len(), 2);
    assert!(weirds(&out).is_empty());

    // One side closed, the other still sending: active reuse.
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    t.process(&seg(3, true, 25, FIN | ACK, 101, 501, b""), &mut out);
    t.process(&seg(4, true, 25, SYN, 100, 0, b""), &mut out);
    assert_eq!(weirds(&out)[0].1, "active_connection_reuse");
    assert_eq!(t.len(), 1);
}

#[test]
fn data_after_both_fins_outside_the_streams_is_a_new_connection() {
    // A retransmission after the close belongs to the old connection.
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 25);
    t.process(
        &seg(9, true, 25, ACK | PSH, 101, 510, b"EHLO x\r\n"),
        &mut out,
    );
    assert!(conns(&out).is_empty());
    assert_eq!(t.len(), 1);

    // Server data far from the old stream, 4-tuple reused without a
    // captured handshake: the old connection ends, a new one begins
    // (oriented by the server port, as any partial connection).
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    session(&mut t, &mut out, 25);
    t.process(
        &seg(10, false, 25, ACK | PSH, 90_000, 7_000, b"220 again\r\n"),
        &mut out,
    );
    let c = conns(&out);
    assert_eq!((c.len(), c[0].conn_state), (1, "SF"));
    assert!(weirds(&out).is_empty());
    assert_eq!(t.counters().flows_closed, 1);
    assert_eq!(t.counters().flows_partial, 1);
    t.finish(&mut out);
    let c = conns(&out);
    assert_eq!(c.len(), 2);
    assert_eq!((c[1].id.resp_p, c[1].history.as_str()), (25, "^d"));

    // Only one side closed: not yet.
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(2, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    t.process(&seg(3, true, 25, FIN | ACK, 101, 501, b""), &mut out);
    t.process(&seg(4, true, 25, ACK | PSH, 9_000, 501, b"x"), &mut out);
    assert_eq!(t.len(), 1);
    assert!(conns(&out).is_empty());
}

#[test]
fn finish_flushes_in_creation_order() {
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    let ports: Vec<u16> = (0..200u16)
        .map(|i| 1000 + i.wrapping_mul(7919) % 5000)
        .collect();
    for (i, p) in ports.iter().enumerate() {
        t.process(&seg(i as i64, true, *p, SYN, 1, 0, b""), &mut out);
    }
    t.finish(&mut out);
    let got: Vec<u16> = conns(&out).iter().map(|c| c.id.resp_p).collect();
    assert_eq!(got, ports);
}

#[test]
fn responder_first_packet_flips() {
    let (mut t, _) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, false, 25, ACK, 1000, 1, b"250 ok\r\n"), &mut out);
    t.finish(&mut out);
    let c = conns(&out);
    assert_eq!((c[0].id.orig_p, c[0].id.resp_p), (40000, 25));
    assert!(c[0].history.starts_with('^'));
}

#[test]
fn syn_after_reset_is_a_new_connection() {
    let (mut t, _) = table(110, FlowConfig::default());
    let mut out = Output::new(false);
    for i in 0..3 {
        t.process(&seg(i * 2, true, 110, SYN, 7, 0, b""), &mut out);
        t.process(
            &seg(i * 2 + 1, false, 110, flags::RST | ACK, 0, 8, b""),
            &mut out,
        );
    }
    t.finish(&mut out);
    let c = conns(&out);
    assert_eq!(c.len(), 3);
    assert!(c
        .iter()
        .all(|c| c.conn_state == "REJ" && c.history == "Sr" && c.orig_pkts == 1));
}

#[test]
fn table_limit_evicts_oldest_and_logs_it() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let (mut t, _) = table(25, cfg);
    let mut out = Output::new(false);
    for (i, p) in [25u16, 26, 27].iter().enumerate() {
        t.process(&seg(i as i64, true, *p, SYN, 1, 0, b""), &mut out);
    }
    assert_eq!(t.len(), 2);
    assert_eq!(t.counters().flows_evicted, 1);
    assert_eq!(conns(&out)[0].id.resp_p, 25);
}

#[test]
fn inactivity_timeout_expires() {
    let cfg = FlowConfig {
        tcp_inactivity_timeout: 10.0,
        ..FlowConfig::default()
    };
    let (mut t, rec) = table(25, cfg);
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 1, 0, b""), &mut out);
    t.process(&seg(8, true, 25, ACK, 2, 0, b"x"), &mut out);
    t.advance(Timestamp(15_000_000_000), &mut out);
    assert_eq!(t.len(), 1, "last packet at 8 s: not idle for 10 s yet");
    t.advance(Timestamp(19_000_000_000), &mut out);
    assert_eq!(t.len(), 0);
    assert_eq!(t.counters().flows_timed_out, 1);
    assert_eq!(rec.0.lock().unwrap().last().unwrap(), "done");
    assert_eq!(conns(&out)[0].conn_state, "S0");
}

#[test]
fn syn_flood_stays_bounded() {
    let cfg = FlowConfig {
        max_flows: 1000,
        ..FlowConfig::default()
    };
    let (mut t, _) = table(25, cfg);
    let mut out = Output::new(false);
    for i in 0..20_000u32 {
        let mut s = seg(1, true, 25, SYN, i, 0, b"");
        s.src_port = (i % 60000) as u16;
        s.src = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
        t.process(&s, &mut out);
        assert!(t.len() <= 1000);
        if out.records.len() > 1000 {
            out.take();
        }
    }
    assert_eq!(t.counters().flows_evicted, 19_000);
}

/// A SYN from a flood: client 10.9.x.y.
fn flood_syn(i: u32, ts: i64) -> Segment<'static> {
    let mut s = seg(ts, true, 25, SYN, i, 0, b"");
    s.src_port = 1024 + (i % 60000) as u16;
    s.src = IpAddr::from([10, 9, (i >> 8) as u8, i as u8]);
    s
}

/// An established session with a transaction in progress: client
/// 10.0.0.1:40000.
fn active_session(t: &mut FlowTable<Factory>, out: &mut Output, ts: i64) {
    t.process(&seg(ts, true, 25, SYN, 100, 0, b""), out);
    t.process(&seg(ts, false, 25, SYN | ACK, 500, 101, b""), out);
    t.process(&seg(ts, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"), out);
    t.process(&seg(ts, true, 25, ACK | PSH, 101, 509, b"EHLO x\r\n"), out);
}

#[test]
fn half_open_connection_has_no_analyzer_until_payload() {
    let (mut t, rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    t.process(&seg(1, true, 25, SYN, 100, 0, b""), &mut out);
    t.process(&seg(1, false, 25, SYN | ACK, 500, 101, b""), &mut out);
    assert_eq!(t.counters().analyzers_by_port, 0);
    t.process(
        &seg(2, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n"),
        &mut out,
    );
    assert_eq!(t.counters().analyzers_by_port, 1);
    assert_eq!(*rec.0.lock().unwrap(), vec!["r:220 hi\r\n"]);
}

#[test]
fn unanswered_attempts_expire_after_the_attempt_delay() {
    let (mut t, _rec) = table(25, FlowConfig::default());
    let mut out = Output::new(false);
    active_session(&mut t, &mut out, 0);
    for i in 0..10 {
        t.process(&flood_syn(i, 1), &mut out);
    }
    assert_eq!(t.len(), 11);
    t.advance(Timestamp(5_500_000_000), &mut out);
    assert_eq!(t.len(), 11, "not before tcp_attempt_delay (5 s)");
    t.advance(Timestamp(6_000_000_000), &mut out);
    assert_eq!(t.len(), 1, "the session stays");
    let k = t.counters();
    assert_eq!((k.flows_attempts_expired, k.flows_timed_out), (10, 0));
    assert!(conns(&out).iter().all(|c| c.conn_state == "S0"));
}

#[test]
fn syn_flood_evicts_itself_not_the_active_session() {
    let cfg = FlowConfig {
        max_flows: 100,
        ..FlowConfig::default()
    };
    let (mut t, rec) = table(25, cfg);
    let mut out = Output::new(false);
    for i in 0..50 {
        t.process(&flood_syn(i, 1), &mut out);
    }
    active_session(&mut t, &mut out, 1);
    for i in 50..10_000 {
        t.process(&flood_syn(i, 2), &mut out);
        assert!(t.len() <= 100);
    }
    // The session goes on and ends normally.
    t.process(
        &seg(3, true, 25, ACK | PSH, 109, 509, b"QUIT\r\n"),
        &mut out,
    );
    let k = t.counters();
    assert_eq!((k.flows_evicted, k.flows_evicted_active), (10_001 - 100, 0));
    assert!(weirds(&out).is_empty());
    assert!(rec.0.lock().unwrap().contains(&"o:QUIT\r\n".to_string()));
}

#[test]
fn eviction_takes_the_least_recently_active_and_says_so() {
    let cfg = FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    };
    let (mut t, _rec) = table(25, cfg);
    let mut out = Output::new(false);
    // A (client port 40000) then B (client port 40001), both with
    // analyzer state; A is active again after B.
    active_session(&mut t, &mut out, 1);
    let b = |s: Segment<'static>| {
        let mut s = s;
        if s.src_port == 40000 {
            s.src_port = 40001;
        } else {
            s.dst_port = 40001;
        }
        s
    };
    t.process(&b(seg(2, true, 25, SYN, 100, 0, b"")), &mut out);
    t.process(&b(seg(2, false, 25, SYN | ACK, 500, 101, b"")), &mut out);
    t.process(
        &b(seg(2, false, 25, ACK | PSH, 501, 101, b"220 hi\r\n")),
        &mut out,
    );
    t.process(
        &seg(3, true, 25, ACK | PSH, 109, 509, b"MAIL\r\n"),
        &mut out,
    );
    // C needs room: B is the least recently active.
    let mut c = seg(4, true, 25, SYN, 1, 0, b"");
    c.src_port = 40002;
    t.process(&c, &mut out);
    let evicted: Vec<u16> = conns(&out).iter().map(|c| c.id.orig_p).collect();
    assert_eq!(evicted, vec![40001]);
    assert_eq!(t.counters().flows_evicted_active, 1);
    assert!(weirds(&out)
        .iter()
        .any(|(_, n)| *n == "active_connection_evicted"));
}
