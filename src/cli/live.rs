//! `mailtap live`: capture from network interfaces (AF_XDP or AF_PACKET)
//! until SIGINT/SIGTERM or `--duration`. Without the `live` feature the
//! command is still parsed and says the build cannot capture.

use super::output::OutputArgs;
use anyhow::{bail, Result};
use clap::ValueEnum;
#[cfg(feature = "live")]
use {
    super::exit_code,
    super::output::check_outputs,
    super::summary::{print_capture, print_outputs, print_totals},
    crate::config::{engine_config, live_config, Config},
    crate::signals::install_signals,
};

#[derive(Clone, Copy, ValueEnum)]
pub enum CaptureArg {
    AfXdp,
    AfPacket,
}

/// `--xdp-mode`.
#[derive(Clone, Copy, ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Native,
    Skb,
}

/// `--zero-copy`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ZeroCopyArg {
    Auto,
    On,
    Off,
}

#[derive(clap::Args)]
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub struct LiveArgs {
    /// Interface to capture on (repeat for several).
    #[arg(short, long = "interface", required = true)]
    pub interfaces: Vec<String>,
    /// Capture mechanism.
    #[arg(long, value_enum, default_value = "af-xdp")]
    pub capture: CaptureArg,
    /// NIC queues to capture, e.g. 0,1,2 or 0-3 [default: every RX queue].
    /// AF_PACKET opens one ring per entry in one fanout group.
    #[arg(long)]
    pub queues: Option<String>,
    /// Cores for the workers, e.g. 2,3 or 2-5: queue i runs on the i-th
    /// [default: the i-th available core].
    #[arg(long)]
    pub cores: Option<String>,
    /// XDP attach mode: auto tries native (driver) then skb (generic).
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeArg,
    /// AF_XDP zero-copy: auto falls back to copy mode when the driver cannot.
    #[arg(long, value_enum, default_value = "auto")]
    pub zero_copy: ZeroCopyArg,
    /// Stop after this many seconds [default: until SIGINT/SIGTERM].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds between stats (log line and stats.log row).
    #[arg(long, default_value_t = 10.0)]
    pub stats_interval: f64,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses `0,1,4-7` into a list; the error names the option.
#[cfg(feature = "live")]
fn parse_list(opt: &str, s: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || anyhow::anyhow!("{opt} {s}: expected numbers or ranges like 0,1,4-7");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b - a > 4096 {
                    bail!("{opt} {s}: range {part} is empty or too large");
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        bail!("{opt} {s}: empty list");
    }
    let mut seen = out.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != out.len() {
        bail!("{opt} {s}: an entry is repeated");
    }
    Ok(out)
}

/// `mailtap live` in a build without the `live` feature.
#[cfg(not(feature = "live"))]
pub fn run(_: LiveArgs) -> Result<i32> {
    bail!("this mailtap was built without live capture (the `live` feature: AF_XDP and AF_PACKET); `mailtap read` works, and a build with default features has `mailtap live` (README.md, \"Building without live capture or Kafka\")")
}

#[cfg(feature = "live")]
pub fn run(a: LiveArgs) -> Result<i32> {
    let cfg = Config::load(a.output.config.as_deref(), &a.output.sets)?;
    let capture = match a.capture {
        CaptureArg::AfXdp => mailtap_engine::CaptureKind::AfXdp,
        CaptureArg::AfPacket => mailtap_engine::CaptureKind::AfPacket,
    };
    let zero_copy = match a.zero_copy {
        ZeroCopyArg::Auto => mailtap_capture::afxdp::ZeroCopy::Auto,
        ZeroCopyArg::On => mailtap_capture::afxdp::ZeroCopy::On,
        ZeroCopyArg::Off => mailtap_capture::afxdp::ZeroCopy::Off,
    };
    let mut live = live_config(&cfg, a.interfaces.clone(), capture, zero_copy);
    live.queues = a
        .queues
        .as_deref()
        .map(|q| parse_list("--queues", q))
        .transpose()?;
    live.cores = a
        .cores
        .as_deref()
        .map(|c| parse_list("--cores", c).map(|v| v.into_iter().map(|x| x as usize).collect()))
        .transpose()?;
    if let Some(cores) = &live.cores {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if let Some(c) = cores.iter().find(|&&c| c >= n) {
            bail!(
                "--cores: core {c} does not exist (this machine has {n}: 0-{})",
                n - 1
            );
        }
    }
    live.xdp_mode = match a.xdp_mode {
        XdpModeArg::Auto => mailtap_capture::steering::XdpMode::Auto,
        XdpModeArg::Native => mailtap_capture::steering::XdpMode::Native,
        XdpModeArg::Skb => mailtap_capture::steering::XdpMode::Skb,
    };
    if let Some(d) = a.duration {
        if !(d.is_finite() && d > 0.0 && d <= 1e9) {
            bail!("--duration {d}: must be a positive number of seconds");
        }
        live.duration = Some(std::time::Duration::from_secs_f64(d));
    }
    if !(a.stats_interval.is_finite() && a.stats_interval >= 0.1 && a.stats_interval <= 86400.0) {
        bail!(
            "--stats-interval {}: must be between 0.1 and 86400 seconds",
            a.stats_interval
        );
    }
    live.stats_interval = std::time::Duration::from_secs_f64(a.stats_interval);
    let mut seen = a.interfaces.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != a.interfaces.len() {
        bail!("--interface: an interface is given twice");
    }
    let signals = install_signals("stopping, flushing logs (signal again to abort)");
    check_outputs(&a.output)?;
    let engine = engine_config(&cfg, &a.output, 1, signals.reopen.clone())?;
    let stop = signals.stop;
    let (summary, result) = mailtap_engine::run_live(&engine, &live, &stop);
    print_totals(&summary.engine, &summary.drops());
    print_capture(&summary);
    print_outputs(&summary.engine, &a.output);
    if let Err(e) = &result {
        eprintln!("mailtap: error: {e}");
    }
    Ok(exit_code(&result, &summary.engine))
}
