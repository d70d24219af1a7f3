//! Collector back-pressure in bytes (issue 12, item 3): one SMTP session
//! whose DATA is a flood of empty lines raises one `smtp_data` event per
//! line. With `--events` and `--ace-dir` those events cross from the shards
//! to the collector; the queues between them are bounded in bytes
//! (`general.collector_queue_bytes`), so peak memory stays under that
//! budget plus a fixed overhead whatever the flood's size, and nothing is
//! lost (a read waits for the collector instead).

mod common;

use common::{run, stderr, Pcap, ACK, FIN, PSH, SYN};
use std::io::BufRead;
use std::path::Path;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];

/// Bytes of empty lines (`\r\n`) in the message body: 8 M lines, 1.5 GB
/// of events. Before the byte bound this took 1,249 MB (24 MiB flood,
/// `-w 1`) and grew with the flood.
const FLOOD_BYTES: usize = 16 << 20;
/// Empty lines per full-size segment.
const LINES_PER_SEGMENT: usize = 730;

/// The budget the test sets: far below what the flood's events take.
const BUDGET: u64 = 16 << 20;

/// What the process takes besides the records in the queues: the binary,
/// the capture blocks in flight (`capture.blocks_per_worker` × workers ×
/// 2 MiB), the shards' and the collector's own buffers, mimalloc's
/// retained pages, and the batches that may go past the budget (one
/// channel's worth, 16 per worker, of a 64th of the budget each). Measured
/// with a 1,000-line flood: 35 MB peak with `-w 1`, 51 MB with `-w 2`;
/// the flood itself, bounded, peaked at 45 and 61 MB.
const OVERHEAD: u64 = 80 << 20;

struct Session {
    pcap: Pcap,
    ts: u64,
    cseq: u32,
    sseq: u32,
}

impl Session {
    fn client(&mut self, flags: u8, payload: &[u8]) {
        self.ts += 10;
        self.pcap.tcp(
            self.ts, CLIENT, 40000, SERVER, 25, self.cseq, self.sseq, flags, payload,
        );
        self.cseq = self.cseq.wrapping_add(payload.len() as u32);
        if flags & (SYN | FIN) != 0 {
            self.cseq = self.cseq.wrapping_add(1);
        }
    }
    fn server(&mut self, flags: u8, payload: &[u8]) {
        self.ts += 10;
        self.pcap.tcp(
            self.ts, SERVER, 25, CLIENT, 40000, self.sseq, self.cseq, flags, payload,
        );
        self.sseq = self.sseq.wrapping_add(payload.len() as u32);
        if flags & (SYN | FIN) != 0 {
            self.sseq = self.sseq.wrapping_add(1);
        }
    }
}

/// One SMTP session whose body is `lines` empty lines; returns the number
/// of `smtp_data` events it must raise (header, blank separator, body).
fn flood_capture(path: &Path, lines: usize) -> usize {
    let mut s = Session {
        pcap: Pcap::new(),
        ts: 1_700_000_000_000_000,
        cseq: 1000,
        sseq: 5000,
    };
    s.client(SYN, b"");
    s.server(SYN | ACK, b"");
    s.client(ACK, b"");
    s.server(PSH | ACK, b"220 mx.example.test ESMTP\r\n");
    s.client(PSH | ACK, b"EHLO client.example.test\r\n");
    s.server(PSH | ACK, b"250 mx.example.test\r\n");
    s.client(PSH | ACK, b"MAIL FROM:<a@example.test>\r\n");
    s.server(PSH | ACK, b"250 OK\r\n");
    s.client(PSH | ACK, b"RCPT TO:<b@example.test>\r\n");
    s.server(PSH | ACK, b"250 OK\r\n");
    s.client(PSH | ACK, b"DATA\r\n");
    s.server(PSH | ACK, b"354 go ahead\r\n");
    s.client(PSH | ACK, b"Subject: empty lines\r\n");
    let segment = b"\r\n".repeat(LINES_PER_SEGMENT);
    let mut left = lines;
    while left > 0 {
        let n = left.min(LINES_PER_SEGMENT);
        s.client(ACK, &segment[..2 * n]);
        left -= n;
        if left.is_multiple_of(LINES_PER_SEGMENT * 64) {
            s.server(ACK, b"");
        }
    }
    s.client(PSH | ACK, b".\r\n");
    s.server(PSH | ACK, b"250 OK queued\r\n");
    s.client(PSH | ACK, b"QUIT\r\n");
    s.server(PSH | ACK, b"221 bye\r\n");
    s.client(FIN | ACK, b"");
    s.server(FIN | ACK, b"");
    s.client(ACK, b"");
    s.pcap.write(path);
    // The Subject line and every empty line (the first one ends the header).
    1 + lines
}

fn read_flood(lines: usize, workers: &str, budget: Option<u64>) -> (u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("flood.pcap");
    let expected = flood_capture(&pcap, lines);
    let out = dir.path().join("out");
    let ace = dir.path().join("ace");
    let events = dir.path().join("events.json");
    let set = budget.map(|b| format!("general.collector_queue_bytes={b}"));
    let mut args = vec![
        "read",
        pcap.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--ace-dir",
        ace.to_str().unwrap(),
        "-w",
        workers,
        "--set",
        "general.uid_salt=hostile-queues",
    ];
    if let Some(s) = &set {
        args.extend(["--set", s.as_str()]);
    }
    let (o, peak) = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every line's event is in the events file (read line by line: it is
    // large).
    let mut data_events = 0;
    let mut line = Vec::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&events).unwrap());
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        if line.windows(11).any(|w| w == b"\"smtp_data\"") {
            data_events += 1;
        }
    }
    assert_eq!(data_events, expected, "smtp_data events (-w {workers})");
    // The transcript is complete: header, 6 commands and replies before
    // DATA's reply, the data lines, then the rest; and marked ready.
    let mut names: Vec<_> = std::fs::read_dir(&ace)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "one transcript and its marker: {names:?}");
    assert!(names[1].ends_with(".ready"), "{names:?}");
    let transcript = std::fs::read(ace.join(&names[0])).unwrap();
    let empty = transcript
        .split(|&b| b == b'\n')
        .filter(|l| l.is_empty())
        .count();
    // `split` yields one empty piece after the final LF.
    assert_eq!(empty, lines + 1, "empty lines in the transcript");
    assert!(
        transcript.ends_with(b"< QUIT 221 bye\n"),
        "transcript ends with the QUIT reply: {:?}",
        String::from_utf8_lossy(&transcript[transcript.len().saturating_sub(80)..])
    );
    let smtp = common::rows(&out, "smtp.log");
    assert_eq!(smtp.len(), 1, "one smtp.log row: {smtp:?}");
    assert!(smtp[0].contains("empty lines"), "{}", smtp[0]);
    (peak, data_events)
}

#[test]
fn empty_line_flood_stays_within_the_collector_byte_budget() {
    let lines = FLOOD_BYTES / 2;
    for workers in ["1", "2"] {
        let (peak, n) = read_flood(lines, workers, Some(BUDGET));
        eprintln!(
            "-w {workers}: {n} smtp_data events, peak RSS {} MiB (budget {} MiB + overhead {} MiB)",
            peak >> 20,
            BUDGET >> 20,
            OVERHEAD >> 20
        );
        assert!(
            peak < BUDGET + OVERHEAD,
            "-w {workers}: peak RSS {} MiB over budget {} MiB + overhead {} MiB",
            peak >> 20,
            BUDGET >> 20,
            OVERHEAD >> 20
        );
    }
}
