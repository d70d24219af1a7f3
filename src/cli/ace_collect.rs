//! `mailtap ace-collect`: ACE SMTP session transcripts into per-message
//! `.eml`/`.json` pairs.

use crate::signals::install_signals;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(clap::Args)]
pub struct AceCollectArgs {
    /// The ACE session directory (mailtap's --ace-dir or Zeek's bro_smtp_dir).
    pub ace_dir: PathBuf,
    /// Where the .eml/.json pairs go (created if missing).
    #[arg(long)]
    pub extract_dir: PathBuf,
    /// Process what is ready now, then exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between directory scans.
    #[arg(long, default_value_t = 1.0)]
    pub poll_interval: f64,
}

pub fn run(a: AceCollectArgs) -> Result<i32> {
    if !(a.poll_interval.is_finite() && a.poll_interval > 0.0 && a.poll_interval <= 86400.0) {
        bail!("--poll-interval must be between 0 and 86400 seconds");
    }
    let mut collector = mailtap_extract::AceCollector::new(mailtap_extract::CollectorConfig::new(
        a.ace_dir.clone(),
        a.extract_dir.clone(),
    ))?;
    let stop = install_signals("stopping after the current session").stop;
    let interval = std::time::Duration::from_secs_f64(a.poll_interval);
    let mut failed = false;
    loop {
        if let Err(e) = collector.scan(&stop) {
            eprintln!("mailtap: error: scanning {}: {e}", a.ace_dir.display());
            failed = true;
            if a.once {
                break;
            }
        }
        if a.once || stop.load(Ordering::Relaxed) {
            break;
        }
        let until = std::time::Instant::now() + interval;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(50).min(interval));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let c = collector.counters();
    eprintln!(
        "mailtap ace-collect: {} sessions, {} messages ({} incomplete), {} to review/, {} markers without a session, {} not regular files (not read), {} errors",
        c.sessions, c.messages, c.incomplete, c.review, c.missing_session, c.not_regular, c.errors
    );
    Ok(if failed || c.errors > 0 { 1 } else { 0 })
}
