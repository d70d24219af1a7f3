//! `mailtap gen`: a deterministic capture of SMTP and POP3 sessions, with
//! the imperfections a sensor meets on real links (lost SYNs and
//! handshakes, a capture started mid-traffic, content gaps, stray packets,
//! reused 4-tuples, over-long AUTH lines) and, on request, one line of
//! ground truth per message to check a sensor's extraction against.

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use mailtap_gen::{Expect, GenConfig, ImperfectMessageTruth, Imperfections};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct GenArgs {
    /// Output pcap file (`-` for stdout).
    #[arg(short, long)]
    out: PathBuf,
    /// Number of SMTP sessions.
    #[arg(long, default_value_t = 100)]
    sessions: u64,
    /// Stop after about this many bytes instead (e.g. 500M, 1G); overrides --sessions.
    #[arg(long)]
    size: Option<String>,
    /// Sessions in flight at once (interleaved).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Random seed; the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Percentage of sessions over IPv6.
    #[arg(long)]
    ipv6_percent: Option<u8>,
    /// Traffic mix: `mta` (an MX link: mostly STARTTLS with realistic TLS,
    /// heavy-tailed message sizes), `small` (many short plaintext SMTP and
    /// POP3 sessions with small segments: the worst case per byte) or
    /// `attach` (the original attachment-heavy mix). See
    /// docs/benchmarks.md, "Traffic mixes".
    #[arg(long, value_enum, default_value_t = MixArg::Mta)]
    mix: MixArg,
    /// Percentage of sessions that are POP3 (port 110) instead of SMTP
    /// (default: the mix's share; attach 0, small 12, mta 0).
    #[arg(long)]
    pop3_percent: Option<u8>,
    /// Percentage of sessions that are IMAP (port 143; of those that are
    /// not POP3): login, SELECT, FETCH of whole messages and of parts
    /// (some pipelined), APPEND with both kinds of literal, IDLE (default
    /// 0 in every mix).
    #[arg(long)]
    imap_percent: Option<u8>,
    /// Percentage of plain/pipelined SMTP sessions with one client segment
    /// left out of the capture (a content gap: the message is incomplete).
    #[arg(long, default_value_t = 0)]
    gaps: u8,
    /// Leave out the capture's first packets, as a sensor started while
    /// sessions run sees it: a packet count (`5000`) or a share of all
    /// packets (`50%`).
    #[arg(long, value_name = "N|P%")]
    cut: Option<String>,
    /// Percentage of sessions whose SYN is not in the capture (the SYN-ACK
    /// and everything after are).
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    drop_syn: u8,
    /// Percentage of sessions with neither SYN nor SYN-ACK in the capture.
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    drop_handshake: u8,
    /// Percentage of sessions preceded by a stray packet of an earlier
    /// connection on the same 4-tuple (an ACK or a small data segment).
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    stray_before_syn: u8,
    /// Percentage of closed sessions whose 4-tuple the next session takes
    /// over within Zeek's 5 s linger (`premature_connection_reuse`).
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    reuse_closed: u8,
    /// Percentage of sessions abandoned open whose 4-tuple the next
    /// session takes over (`active_connection_reuse`).
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    reuse_open: u8,
    /// Percentage of authenticating SMTP sessions that send their
    /// credentials as one over-long continuation line.
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    long_auth: u8,
    /// Length in bytes of such a line (rounded up to a multiple of 4).
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    long_auth_len: usize,
    /// Write one JSON line per message to this file: what was sent (its
    /// envelope, size and SHA-256) and what the capture holds of it, with
    /// what a sensor should report (`expect`: exact, incomplete, tail,
    /// not_captured). See docs/imperfect-traffic.md.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum MixArg {
    Mta,
    Small,
    Attach,
}

impl From<MixArg> for mailtap_gen::TrafficMix {
    fn from(m: MixArg) -> Self {
        match m {
            MixArg::Mta => mailtap_gen::TrafficMix::Mta,
            MixArg::Small => mailtap_gen::TrafficMix::Small,
            MixArg::Attach => mailtap_gen::TrafficMix::Attach,
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("--size {s}: expected a number with optional K, M or G"))?;
    if !(n.is_finite() && n > 0.0) {
        bail!("--size {s}: must be positive");
    }
    Ok((n * mult as f64) as u64)
}

/// Where the capture starts: `--cut N` or `--cut P%` of `cfg`'s packets.
fn parse_cut(s: &str, cfg: &GenConfig) -> Result<u64> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| anyhow!("--cut {s}: expected a packet count or a percentage"))?;
        if !(0.0..=100.0).contains(&p) {
            bail!("--cut {s}: the percentage must be 0..=100");
        }
        let total =
            mailtap_gen::count_packets(cfg).context("--cut: counting the packets to cut")?;
        return Ok((total as f64 * p / 100.0).round() as u64);
    }
    s.parse()
        .map_err(|_| anyhow!("--cut {s}: expected a packet count or a percentage"))
}

fn percent(name: &str, v: u8) -> Result<u8> {
    if v > 100 {
        bail!("--{name} {v}: must be 0..=100");
    }
    Ok(v)
}

pub fn cmd_gen(a: GenArgs) -> Result<i32> {
    let mut cfg = GenConfig {
        sessions: a.sessions,
        concurrency: a.concurrency.max(1),
        seed: a.seed,
        ..GenConfig::for_mix(a.mix.into())
    };
    if let Some(s) = &a.size {
        cfg.target_bytes = Some(parse_size(s)?);
    }
    if let Some(p) = a.ipv6_percent {
        cfg.ipv6_percent = percent("ipv6-percent", p)?;
    }
    if let Some(p) = a.pop3_percent {
        cfg.mix.pop3 = percent("pop3-percent", p)?;
    }
    if let Some(p) = a.imap_percent {
        cfg.mix.imap = percent("imap-percent", p)?;
    }
    cfg.gap_percent = percent("gaps", a.gaps)?;
    cfg.quirks.reuse_closed_percent = percent("reuse-closed", a.reuse_closed)?;
    cfg.quirks.reuse_open_percent = percent("reuse-open", a.reuse_open)?;
    cfg.quirks.long_auth_percent = percent("long-auth", a.long_auth)?;
    cfg.quirks.long_auth_len = a.long_auth_len;
    let imp = Imperfections {
        drop_syn_percent: percent("drop-syn", a.drop_syn)?,
        drop_handshake_percent: percent("drop-handshake", a.drop_handshake)?,
        stray_before_syn_percent: percent("stray-before-syn", a.stray_before_syn)?,
        skip_packets: match &a.cut {
            Some(c) => parse_cut(c, &cfg)?,
            None => 0,
        },
    };
    let mut truth = match &a.truth {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let imperfect = imp != Imperfections::default() || truth.is_some();
    let out: Box<dyn Write> = if a.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?,
        ))
    };
    let started = std::time::Instant::now();
    let mut truth_error: Option<std::io::Error> = None;
    let (stats, written, left_out) = if imperfect {
        let s = mailtap_gen::generate_imperfect_with_truth(&cfg, &imp, out, &mut |t| {
            if let (Some(w), None) = (truth.as_mut(), &truth_error) {
                if let Err(e) = writeln!(w, "{}", truth_line(t)) {
                    truth_error = Some(e);
                }
            }
        })
        .with_context(|| format!("writing {}", a.out.display()))?;
        (s.gen, s.packets_written, s.packets_dropped)
    } else {
        let s = mailtap_gen::generate(&cfg, out)
            .with_context(|| format!("writing {}", a.out.display()))?;
        let p = s.packets;
        (s, p, 0)
    };
    if let Some(e) = truth_error {
        bail!("writing {}: {e}", a.truth.as_ref().unwrap().display());
    }
    if let (Some(mut w), Some(p)) = (truth, &a.truth) {
        w.flush()
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let frames = stats.bytes.saturating_sub(24 + 16 * stats.packets);
    eprintln!(
        "mailtap gen --mix {}: {} sessions ({} TLS), {} messages (+{} inside TLS), {} packets \
         (average frame {:.0} bytes, {:.1} per session), {} bytes ({:.1}% TLS) in {:.2}s ({:.0} MB/s)",
        mailtap_gen::TrafficMix::from(a.mix).as_str(),
        stats.sessions,
        stats.tls_sessions,
        stats.messages,
        stats.tls_messages,
        stats.packets,
        frames as f64 / stats.packets.max(1) as f64,
        stats.packets as f64 / stats.sessions.max(1) as f64,
        stats.bytes,
        100.0 * stats.tls_bytes as f64 / stats.bytes.max(1) as f64,
        secs,
        stats.bytes as f64 / secs / 1e6
    );
    if imperfect {
        eprintln!(
            "mailtap gen: {written} packets written, {left_out} left out (cut, lost SYNs or \
             handshakes, gaps), {} 4-tuples reused",
            stats.reused
        );
    }
    Ok(0)
}

/// One message's truth as a JSON line (`--truth`).
fn truth_line(t: &ImperfectMessageTruth) -> String {
    let m = &t.message;
    let c = &t.capture;
    let (expect, missing) = match c.expect {
        Expect::Exact => ("exact", Some(0)),
        Expect::Incomplete { missing_bytes } => ("incomplete", Some(missing_bytes)),
        Expect::Tail => ("tail", None),
        Expect::NotCaptured => ("not_captured", None),
    };
    serde_json::json!({
        "protocol": m.protocol.as_str(),
        "orig_h": m.orig.0.to_string(),
        "orig_p": m.orig.1,
        "resp_h": m.resp.0.to_string(),
        "resp_p": m.resp.1,
        "index_in_session": m.index_in_session,
        "mailfrom": m.mailfrom,
        "rcptto": m.rcptto,
        "rcptto_rejected": m.rcptto_rejected,
        "subject": m.subject,
        "user": m.user,
        "via_bdat": m.via_bdat,
        "status_code": m.status_code,
        "top": m.partial,
        "size": m.bytes.len(),
        "sha256": hex(&Sha256::digest(m.bytes)),
        "expect": expect,
        "missing_bytes": missing,
        "start_captured": c.start_captured,
        "data_start_captured": c.data_start_captured,
        "end_captured": c.end_captured,
        "fully_captured": c.fully_captured,
        "data_bytes": c.data_bytes,
        "bytes_cut": c.bytes_cut,
        "bytes_in_gaps": c.bytes_in_gaps,
        "session_cut": c.session_cut,
    })
    .to_string()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}
