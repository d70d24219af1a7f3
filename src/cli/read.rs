//! `mailtap read`: capture files through the offline pipeline.

use super::output::{check_outputs, OutputArgs};
use super::summary::{print_outputs, print_totals};
use super::{exit_code, EXIT_INTERRUPTED, EXIT_OK};
use crate::config::{engine_config, Config};
use crate::signals::install_signals;
use anyhow::{bail, Result};
use mailtap_engine::{run_offline, Progress};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Capture files, read in order as one stream; `-` reads stdin.
    #[arg(required = true)]
    pub pcaps: Vec<PathBuf>,
    /// Shard worker threads [default: cores - 1, at least 1].
    #[arg(short, long)]
    pub workers: Option<usize>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .max(1)
}

pub fn run(a: ReadArgs) -> Result<i32> {
    let cfg = Config::load(a.output.config.as_deref(), &a.output.sets)?;
    let workers = a.workers.unwrap_or_else(default_workers);
    if workers == 0 || workers > 1024 {
        bail!("--workers must be between 1 and 1024");
    }
    let signals = install_signals("stopping, flushing logs (signal again to abort)");
    check_outputs(&a.output)?;
    let engine = engine_config(&cfg, &a.output, workers, signals.reopen.clone())?;
    let stop = signals.stop;
    let bar = (!a.no_progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = std::time::Instant::now();
    let n_files = a.pcaps.len();
    let mut on_progress = |p: &Progress| {
        if let Some(b) = &bar {
            if let Some(t) = p.file_size {
                b.set_length(t);
            }
            b.set_position(p.file_bytes_read);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!(
                "file {}/{} · {} packets · {:.0} pkt/s · {} flows",
                p.file_index + 1,
                n_files,
                p.packets,
                p.packets as f64 / secs,
                p.flows
            ));
        }
    };
    let (summary, result) = run_offline(&engine, &a.pcaps, &stop, &mut on_progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_totals(&summary, &summary.drops());
    print_outputs(&summary, &a.output);
    let code = exit_code(&result, &summary);
    if let Err(e) = &result {
        eprintln!("mailtap: error: {e}");
    }
    if code == EXIT_OK && summary.interrupted {
        eprintln!(
            "mailtap: interrupted: the input was not read to the end (the logs hold what was read)"
        );
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(code)
}
