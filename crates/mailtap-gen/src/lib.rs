//! Deterministic SMTP and POP3 traffic generator writing classic pcap files.
//!
//! Used for the bundled sample capture (`samples/sample-smtp.pcap`), for
//! tests, and for multi-hundred-megabyte benchmark captures. The same
//! [`GenConfig`] (including `seed`) always produces a byte-identical file.
//!
//! Each session is a complete TCP connection (handshake, SMTP dialogue, FIN
//! teardown) with a unique 4-tuple. `concurrency` sessions are in flight at
//! once; their packets are interleaved by a time-ordered scheduler, so the
//! capture's timestamps are globally non-decreasing and every flow's are
//! strictly increasing. Message bodies are slices of pre-generated text,
//! quoted-printable and base64 pools, so output runs at several hundred MB/s.
//!
//! [`generate_with_truth`] additionally reports every message as the
//! receiving MTA (SMTP) or the mail client (POP3 `RETR`/`TOP`) sees it,
//! after dot-unstuffing / BDAT reassembly, so tests can check an analyzer
//! or the message extraction byte for byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};

pub use mailtap_core::Timestamp;

mod config;
mod imperfect;
mod pcap;
mod pool;
mod rng;
mod session;
mod text;
mod truth;

pub use config::{BodySizes, GenConfig, Mix, Quirks, Shape, TlsStyle, TrafficMix};
pub use imperfect::{
    count_packets, generate_imperfect, generate_imperfect_with_truth, Expect, FlowTruth,
    ImperfectMessageTruth, ImperfectStats, Imperfections, MessageCapture,
};
use session::{Ctx, Session};
pub use truth::{CertTruth, HandshakeTruth, ImapTruth, MessageTruth, Protocol, TlsTruth};

/// Totals of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    pub sessions: u64,
    /// Plaintext messages transferred (STARTTLS sessions carry none): one
    /// per SMTP transaction with data, one per POP3 `RETR` or `TOP` response;
    /// the number of [`MessageTruth`] reports.
    pub messages: u64,
    /// Packets left out of the capture (see [`GenConfig::gap_percent`]);
    /// not counted in `packets`.
    pub dropped_packets: u64,
    pub packets: u64,
    /// Bytes written, including the pcap global header.
    pub bytes: u64,
    /// Sessions that switched to TLS (STARTTLS accepted).
    pub tls_sessions: u64,
    /// Pcap bytes (record headers included) of the packets whose payload
    /// is TLS records.
    pub tls_bytes: u64,
    /// Messages transferred inside TLS (not in `messages`, no truth).
    pub tls_messages: u64,
    /// Sessions started on the 4-tuple of the session that ended just
    /// before (see [`Quirks`]).
    pub reused: u64,
}

/// Every recorded handshake the generator can replay
/// ([`TlsStyle::Realistic`]), in a fixed order.
pub fn tls_handshakes() -> impl Iterator<Item = &'static HandshakeTruth> {
    session::tls_fixture_truths()
}

/// Writes a classic pcap (Ethernet, microsecond, little-endian) to `w`.
pub fn generate<W: Write>(cfg: &GenConfig, w: W) -> io::Result<GenStats> {
    run(cfg, w, None, None, None)
}

/// Like [`generate`], calling `on_message` once per plaintext message (when
/// the message is composed, before its packets are written).
pub fn generate_with_truth<W: Write>(
    cfg: &GenConfig,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
) -> io::Result<GenStats> {
    run(cfg, w, Some(on_message), None, None)
}

/// Like [`generate_with_truth`], also calling `on_tls` once per TLS session
/// of the [`TlsStyle::Realistic`] style (when its handshake is queued,
/// before its packets are written). The output is the same as
/// [`generate`]'s.
pub fn generate_with_tls_truth<W: Write>(
    cfg: &GenConfig,
    w: W,
    on_message: &mut dyn FnMut(&MessageTruth),
    on_tls: &mut dyn FnMut(&TlsTruth),
) -> io::Result<GenStats> {
    run(cfg, w, Some(on_message), Some(on_tls), None)
}

pub(crate) fn run<W: Write>(
    cfg: &GenConfig,
    w: W,
    mut on_message: Option<&mut dyn FnMut(&MessageTruth)>,
    mut on_tls: Option<&mut dyn FnMut(&TlsTruth)>,
    mut on_span: Option<&mut dyn FnMut(&session::Span)>,
) -> io::Result<GenStats> {
    let cfg = cfg.normalized();
    let pools = pool::Pools::new(cfg.seed);
    let mut out = BufWriter::with_capacity(1 << 20, w);
    out.write_all(&pcap::global_header())?;
    let mut stats = GenStats {
        bytes: 24,
        ..GenStats::default()
    };

    let mut sched_rng = rng::Rng::derive(cfg.seed, u64::MAX);
    // Reuse decisions have a stream of their own (ordinary output stays).
    let reuse = cfg.quirks.reuse_closed_percent > 0 || cfg.quirks.reuse_open_percent > 0;
    let mut reuse_rng = rng::Rng::derive(cfg.seed, u64::MAX - 1);
    let mut slots: Vec<Option<Session>> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut tiebreak = 0u64;
    let mut truth_buf: Vec<u8> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(cfg.mss + 256);
    // Bytes still expected from active sessions (for `target_bytes`).
    let mut outstanding = 0u64;
    let mut launched = 0u64;
    let mut now = (cfg.start_ts.0.max(0) / 1000) as u64;

    let want_more = |launched: u64, written: u64, outstanding: u64| match cfg.target_bytes {
        Some(t) => launched == 0 || written + outstanding < t,
        None => launched < cfg.sessions,
    };

    // Initial sessions, staggered a little.
    let mut t0 = now;
    while slots.len() < cfg.concurrency && want_more(launched, stats.bytes, outstanding) {
        let s = Session::new(launched, &cfg);
        outstanding += s.est_bytes;
        launched += 1;
        slots.push(Some(s));
        heap.push(Reverse((t0, tiebreak, (slots.len() - 1) as u32)));
        tiebreak += 1;
        t0 += sched_rng.range(0, 400);
    }

    while let Some(Reverse((t, _, slot))) = heap.pop() {
        now = t;
        let sess = slots[slot as usize].as_mut().expect("scheduled session");
        let mut ctx = Ctx {
            pools: &pools,
            cfg: &cfg,
            now_us: now,
            truth_buf: &mut truth_buf,
            on_message: on_message
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&MessageTruth)),
            on_tls: on_tls
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&TlsTruth)),
            messages: &mut stats.messages,
            dropped: &mut stats.dropped_packets,
            on_span: on_span
                .as_mut()
                .map(|f| &mut **f as &mut dyn FnMut(&session::Span)),
        };
        buf.clear();
        let next = sess.emit(&mut ctx, &mut buf);
        if !buf.is_empty() {
            out.write_all(&buf)?;
            let n = buf.len() as u64;
            stats.packets += 1;
            stats.bytes += n;
            let counted = n.min(sess.est_bytes.saturating_sub(sess.written));
            outstanding -= counted;
            sess.written += n;
        }
        match next {
            Some(d) => {
                heap.push(Reverse((now + d as u64, tiebreak, slot)));
                tiebreak += 1;
            }
            None => {
                let s = slots[slot as usize].take().expect("session");
                outstanding -= s.est_bytes.saturating_sub(s.written);
                stats.sessions += 1;
                stats.tls_sessions += s.tls_on as u64;
                stats.tls_bytes += s.tls_bytes;
                stats.tls_messages += s.tls_messages;
                free.push(slot);
                if want_more(launched, stats.bytes, outstanding) {
                    let mut ns = Session::new(launched, &cfg);
                    if reuse
                        && (s.unclosed || reuse_rng.pct(cfg.quirks.reuse_closed_percent as u32))
                        && ns.reuse_endpoints(&s)
                    {
                        stats.reused += 1;
                    }
                    let s = ns;
                    outstanding += s.est_bytes;
                    launched += 1;
                    let slot = free.pop().expect("free slot");
                    slots[slot as usize] = Some(s);
                    let start = now + sched_rng.range(1, 2_000);
                    heap.push(Reverse((start, tiebreak, slot)));
                    tiebreak += 1;
                }
            }
        }
    }
    out.flush()?;
    Ok(stats)
}

/// The configuration of the bundled `samples/sample-smtp.pcap`: 40
/// sessions, 8 concurrent, seed 1, every SMTP feature of the mix present
/// (no POP3, no gaps).
pub fn sample_config() -> GenConfig {
    GenConfig {
        sessions: 40,
        concurrency: 8,
        seed: 1,
        target_bytes: None,
        messages_per_session: (1, 3),
        recipients: (1, 4),
        body_bytes: (300, 12 * 1024),
        mix: Mix {
            plain: 40,
            pipelined: 30,
            bdat: 30,
            mime_attachment: 35,
            auth: 25,
            starttls: 10,
            pop3: 0,
            reject: 8,
            lf_only: 10,
            ..Mix::default()
        },
        ipv6_percent: 15,
        start_ts: Timestamp::from_secs_micros(1_709_294_400, 0),
        mss: 1460,
        gap_percent: 0,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}

/// The configuration of the bundled `samples/sample-pop3.pcap`: 16 POP3
/// sessions, 4 concurrent, seed 2 (every login style, `RETR` and `TOP`).
pub fn sample_pop3_config() -> GenConfig {
    GenConfig {
        sessions: 16,
        concurrency: 4,
        seed: 2,
        target_bytes: None,
        messages_per_session: (0, 4),
        recipients: (1, 3),
        body_bytes: (300, 8 * 1024),
        mix: Mix {
            mime_attachment: 40,
            pop3: 100,
            ..Mix::default()
        },
        ipv6_percent: 15,
        start_ts: Timestamp::from_secs_micros(1_709_298_000, 0),
        mss: 1460,
        gap_percent: 0,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}

/// A configuration with every feature the extraction tests need: SMTP
/// (plain, pipelined, BDAT, attachments in both encodings, encoded-word
/// and folded subjects, dot-stuffed and LF-only lines, rejected messages,
/// multi-message sessions) and POP3 (`RETR`, `TOP`, every login style),
/// plus gap sessions. About `sessions` × 1.5 messages.
pub fn extraction_test_config(sessions: u64, seed: u64) -> GenConfig {
    GenConfig {
        sessions,
        concurrency: 24,
        seed,
        target_bytes: None,
        messages_per_session: (1, 3),
        recipients: (1, 4),
        body_bytes: (200, 24 * 1024),
        mix: Mix {
            plain: 40,
            pipelined: 30,
            bdat: 30,
            mime_attachment: 40,
            auth: 25,
            starttls: 5,
            pop3: 25,
            reject: 10,
            lf_only: 10,
            ..Mix::default()
        },
        ipv6_percent: 20,
        start_ts: Timestamp::from_secs_micros(1_709_294_400, 0),
        mss: 1460,
        gap_percent: 6,
        shape: Shape::default(),
        quirks: Quirks::default(),
    }
}
