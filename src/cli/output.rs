//! The output options `read` and `live` share, and the check that every
//! output can be written before anything is read.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Zeek,
    Json,
}

/// Output options shared by `read` and `live`.
#[derive(clap::Args)]
pub struct OutputArgs {
    /// Directory for the logs (created if missing).
    #[arg(short, long, default_value = ".")]
    pub out: PathBuf,
    /// Log format: Zeek's TSV or Zeek's JSON.
    #[arg(long, value_enum, default_value = "zeek")]
    pub log_format: FormatArg,
    /// Write every SMTP/POP3 event as a JSON line to this file.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set smtp.max_invalid_mail_transactions=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Write every message as <uid>-<n>.eml + <uid>-<n>.json into this directory.
    #[arg(long)]
    pub extract_dir: Option<PathBuf>,
    /// Write ACE SMTP session transcripts (<uid>, <uid>.ready) into this directory.
    #[arg(long)]
    pub ace_dir: Option<PathBuf>,
    /// Serve Prometheus metrics (per-queue/per-shard counters, records by
    /// type, collector queue depth, Kafka, latency summaries) on this
    /// address, e.g. 127.0.0.1:9977.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Also send every record to Kafka (bootstrap servers, e.g. kafka1:9092);
    /// see the [kafka] configuration keys.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    pub kafka: Option<String>,
}

/// Checks, before anything is read, that every output can be written:
/// `-o` and the `--extract-dir`/`--ace-dir` directories are created if
/// missing and a file is created and removed in each; the `--events`
/// file's directory must exist and take a file (a device or FIFO named by
/// `--events` is left alone). Errors name the option and the path.
pub fn check_outputs(o: &OutputArgs) -> Result<()> {
    mailtap_extract::ensure_writable_dir(&o.out, "-o")?;
    if let Some(ev) = &o.events {
        use std::os::unix::fs::FileTypeExt;
        let special = std::fs::symlink_metadata(ev)
            .is_ok_and(|m| m.file_type().is_char_device() || m.file_type().is_fifo());
        if !special {
            if std::fs::symlink_metadata(ev).is_ok_and(|m| m.is_dir()) {
                bail!("--events {}: is a directory", ev.display());
            }
            if std::fs::symlink_metadata(ev).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!(
                    "--events {}: is a symbolic link (not followed; name the file itself)",
                    ev.display()
                );
            }
            let parent = match ev.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            if !parent.is_dir() {
                bail!(
                    "--events {}: directory {} does not exist",
                    ev.display(),
                    parent.display()
                );
            }
            mailtap_extract::ensure_writable_dir(parent, "--events directory")
                .with_context(|| format!("--events {}", ev.display()))?;
        }
    }
    if let Some(d) = &o.extract_dir {
        mailtap_extract::ensure_writable_dir(d, "--extract-dir")?;
    }
    if let Some(d) = &o.ace_dir {
        mailtap_extract::ensure_writable_dir(d, "--ace-dir")?;
    }
    Ok(())
}
