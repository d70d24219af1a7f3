//! `mailtap`: a mail-traffic sensor. See README.md.

mod alloc;
mod config;
mod gen;
mod man;

/// mimalloc instead of glibc malloc: see the comment in Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use config::Config;
use mailtap_engine::{run_offline, EngineConfig, EngineError, MailAnalyzers, Progress, Summary};
use mailtap_flow::LocalNets;
use mailtap_logs::{LogFormat, LogLimits};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "mailtap",
    version,
    about = "Watches SMTP traffic and writes Zeek-compatible logs"
)]
struct Cli {
    /// More diagnostics (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read pcap/pcapng files (gzip allowed, `-` for stdin) in order, as one stream.
    Read(ReadArgs),
    /// Capture live from network interfaces (AF_XDP or AF_PACKET) until
    /// SIGINT/SIGTERM or --duration.
    Live(LiveArgs),
    /// Generate a deterministic capture of SMTP (and POP3) sessions.
    Gen(gen::GenArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Turn ACE SMTP session transcripts (`<uid>` + `<uid>.ready`) into
    /// per-message .eml/.json pairs.
    AceCollect(AceCollectArgs),
    /// Write man pages generated from these definitions (packaging).
    #[command(hide = true)]
    Man(man::ManArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (and --set overrides) and print the
    /// effective configuration, every key with its value, as TOML.
    Check(ConfigCheckArgs),
}

#[derive(clap::Args)]
struct ConfigCheckArgs {
    /// The TOML file; omit it to see the defaults.
    file: Option<PathBuf>,
    /// Override one key, as for read and live.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(clap::Args)]
struct AceCollectArgs {
    /// The ACE session directory (mailtap's --ace-dir or Zeek's bro_smtp_dir).
    ace_dir: PathBuf,
    /// Where the .eml/.json pairs go (created if missing).
    #[arg(long)]
    extract_dir: PathBuf,
    /// Process what is ready now, then exit.
    #[arg(long)]
    once: bool,
    /// Seconds between directory scans.
    #[arg(long, default_value_t = 1.0)]
    poll_interval: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Zeek,
    Json,
}

/// Output options shared by `read` and `live`.
#[derive(clap::Args)]
struct OutputArgs {
    /// Directory for the logs (created if missing).
    #[arg(short, long, default_value = ".")]
    out: PathBuf,
    /// Log format: Zeek's TSV or Zeek's JSON.
    #[arg(long, value_enum, default_value = "zeek")]
    log_format: FormatArg,
    /// Write every SMTP/POP3 event as a JSON line to this file.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set smtp.max_invalid_mail_transactions=2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Write every message as <uid>-<n>.eml + <uid>-<n>.json into this directory.
    #[arg(long)]
    extract_dir: Option<PathBuf>,
    /// Write ACE SMTP session transcripts (<uid>, <uid>.ready) into this directory.
    #[arg(long)]
    ace_dir: Option<PathBuf>,
    /// Serve Prometheus metrics (per-queue/per-shard counters, records by
    /// type, collector queue depth, Kafka, latency summaries) on this
    /// address, e.g. 127.0.0.1:9977.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Also send every record to Kafka (bootstrap servers, e.g. kafka1:9092);
    /// see the [kafka] configuration keys.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    kafka: Option<String>,
}

#[derive(clap::Args)]
struct ReadArgs {
    /// Capture files, read in order as one stream; `-` reads stdin.
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
    /// Shard worker threads [default: cores - 1, at least 1].
    #[arg(short, long)]
    workers: Option<usize>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum CaptureArg {
    AfXdp,
    AfPacket,
}

#[derive(clap::Args)]
struct LiveArgs {
    /// Interface to capture on (repeat for several).
    #[arg(short, long = "interface", required = true)]
    interfaces: Vec<String>,
    /// Capture mechanism.
    #[arg(long, value_enum, default_value = "af-xdp")]
    capture: CaptureArg,
    /// NIC queues to capture, e.g. 0,1,2 or 0-3 [default: every RX queue].
    /// AF_PACKET opens one ring per entry in one fanout group.
    #[arg(long)]
    queues: Option<String>,
    /// Cores for the workers, e.g. 2,3 or 2-5: queue i runs on the i-th
    /// [default: the i-th available core].
    #[arg(long)]
    cores: Option<String>,
    /// XDP attach mode: auto tries native (driver) then skb (generic).
    #[arg(long, default_value = "auto")]
    xdp_mode: String,
    /// AF_XDP zero-copy: auto falls back to copy mode when the driver cannot.
    #[arg(long, default_value = "auto")]
    zero_copy: String,
    /// Stop after this many seconds [default: until SIGINT/SIGTERM].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between stats (log line and stats.log row).
    #[arg(long, default_value_t = 10.0)]
    stats_interval: f64,

    #[command(flatten)]
    output: OutputArgs,
}

fn main() {
    alloc::keep_freed_memory();
    let cli = Cli::parse();
    // A live sensor runs as a service: its periodic stats and start-up
    // facts (XDP mode, zero-copy) belong in its log by default.
    let quiet_default = if matches!(cli.cmd, Command::Live(_)) {
        "info"
    } else {
        "warn"
    };
    init_tracing(cli.verbose, quiet_default);
    let code = match match cli.cmd {
        Command::Read(a) => cmd_read(a),
        Command::Live(a) => cmd_live(a),
        Command::Gen(a) => gen::cmd_gen(a),
        Command::Config(ConfigCommand::Check(a)) => cmd_config_check(a),
        Command::AceCollect(a) => cmd_ace_collect(a),
        Command::Man(a) => man::cmd_man(a),
    } {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailtap: error: {e:#}");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}

fn init_tracing(verbose: u8, quiet_default: &'static str) {
    let default = match verbose {
        0 => quiet_default,
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .max(1)
}

/// Where the installation's random uid salt is kept: `$MAILTAP_STATE_DIR`,
/// else systemd's `$STATE_DIRECTORY` (`StateDirectory=`), else
/// `$XDG_STATE_HOME/mailtap`, else `~/.local/state/mailtap`, else
/// `/var/lib/mailtap`.
fn state_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("MAILTAP_STATE_DIR") {
        return d;
    }
    if let Some(d) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by colons: the first.
        let s = d.to_string_lossy().into_owned();
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return d.join("mailtap");
    }
    match var("HOME") {
        Some(h) => h.join(".local/state/mailtap"),
        None => PathBuf::from("/var/lib/mailtap"),
    }
}

/// 32 random hex digits.
fn random_hex() -> String {
    format!(
        "{:016x}{:016x}",
        mailtap_extract::random_u64(),
        mailtap_extract::random_u64()
    )
}

/// The installation's uid salt in `dir/uid_salt`, made (random) on first
/// use: written under a temporary name and linked into place, so
/// concurrent first runs agree and nobody sees a half-written salt; read
/// without following a link.
fn installation_salt(dir: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let path = dir.join("uid_salt");
    let read = || -> std::io::Result<String> {
        let mut f = mailtap_extract::open_regular(&path)?;
        let mut s = String::new();
        Read::take(&mut f, 4096).read_to_string(&mut s)?;
        let s = s.trim().to_string();
        if s.len() < 16 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "shorter than 16 characters",
            ));
        }
        Ok(s)
    };
    match read() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        r => return r,
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".uid_salt.{:016x}.tmp",
        mailtap_extract::random_u64()
    ));
    let mut f = mailtap_extract::create_new(&tmp)?;
    let r = {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
    }
    .and_then(|()| {
        f.write_all(format!("{}\n", random_hex()).as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| match std::fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                r => r,
            })
    });
    let _ = std::fs::remove_file(&tmp);
    r?;
    read()
}

/// `general.uid_salt` when set, else the installation's random salt; if
/// that cannot be kept, a random salt for this run (uids then differ
/// between runs), with a warning.
fn uid_salt(cfg: &Config) -> String {
    if !cfg.general.uid_salt.is_empty() {
        return cfg.general.uid_salt.clone();
    }
    let d = state_dir();
    let r = installation_salt(&d).map_err(|e| format!("{}: {e}", d.join("uid_salt").display()));
    match r {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mailtap: warning: cannot keep the installation's uid salt ({e}); using a random one for this run (set general.uid_salt for stable uids)"
            );
            random_hex()
        }
    }
}

/// The shard-selection key: `general.flow_hash_key` when set, else random.
fn flow_hash_key(cfg: &Config) -> mailtap_wire::decode::FlowHashKey {
    if cfg.general.flow_hash_key.is_empty() {
        mailtap_wire::decode::FlowHashKey::random()
    } else {
        mailtap_wire::decode::FlowHashKey::from_str_key(&cfg.general.flow_hash_key)
    }
}

/// Checks, before anything is read, that every output can be written:
/// `-o` and the `--extract-dir`/`--ace-dir` directories are created if
/// missing and a file is created and removed in each; the `--events`
/// file's directory must exist and take a file (a device or FIFO named by
/// `--events` is left alone). Errors name the option and the path.
fn check_outputs(o: &OutputArgs) -> Result<()> {
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

/// The engine settings for `read` and `live` from the configuration and
/// the output options (creates the output directories and checks that
/// every output can be written, before anything is read).
fn engine_config(
    cfg: &Config,
    o: &OutputArgs,
    workers: usize,
    reopen_logs: Arc<AtomicBool>,
) -> Result<EngineConfig> {
    check_outputs(o)?;
    let local = LocalNets::new(
        cfg.site
            .local_nets
            .iter()
            .map(|n| mailtap_flow::site::parse_cidr(n).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?,
        cfg.site.private_address_space_is_local,
    );
    let mut smtp = cfg.smtp.clone();
    smtp.local_nets = local.effective_nets();
    smtp.files = Arc::new(cfg.files.clone());
    let mut pop3 = cfg.pop3.clone();
    pop3.local_nets = local.effective_nets();
    pop3.files = Arc::new(cfg.files.clone());
    Ok(EngineConfig {
        rotation: cfg.log.rotation()?,
        reopen_logs,
        workers,
        flow: cfg.flow.clone(),
        analyzers: MailAnalyzers {
            smtp: Arc::new(smtp),
            pop3: Arc::new(pop3),
            tls: Arc::new(cfg.ssl.clone()),
            dpd: cfg.dpd.enabled,
        },
        local,
        uid_salt: uid_salt(cfg),
        flow_hash_key: flow_hash_key(cfg),
        verify_checksums: cfg.capture.verify_checksums,
        block_bytes: cfg.capture.block_bytes,
        blocks_per_worker: cfg.capture.blocks_per_worker,
        collector_queue_bytes: cfg.general.collector_queue_bytes,
        defrag: mailtap_wire::defrag::DefragConfig {
            max_datagrams: cfg.defrag.max_datagrams,
            max_bytes: cfg.defrag.max_bytes,
            timeout: mailtap_core::Interval((cfg.defrag.timeout * 1e9) as i64),
        },
        out_dir: o.out.clone(),
        log_format: match o.log_format {
            FormatArg::Zeek => LogFormat::Zeek,
            FormatArg::Json => LogFormat::Json,
        },
        log_limits: LogLimits {
            max_string_bytes: cfg.log.max_field_string_bytes,
            max_container_elements: cfg.log.max_field_container_elements,
            max_total_container_elements: cfg.log.max_total_container_elements,
            max_total_string_bytes: cfg.log.max_total_string_bytes,
        },
        events: o.events.clone(),
        extract: o
            .extract_dir
            .clone()
            .map(|dir| mailtap_extract::ExtractConfig {
                dir,
                max_open_files: cfg.extract.max_open_files,
            }),
        metrics_listen: o.metrics_listen.clone(),
        kafka_events: cfg.kafka.events,
        kafka_emails: cfg.kafka.emails_on(),
        kafka: cfg.kafka.sink(
            o.kafka.as_deref(),
            &o.out,
            o.extract_dir.as_deref(),
            LogLimits {
                max_string_bytes: cfg.log.max_field_string_bytes,
                max_container_elements: cfg.log.max_field_container_elements,
                max_total_container_elements: cfg.log.max_total_container_elements,
                max_total_string_bytes: cfg.log.max_total_string_bytes,
            },
        )?,
        ace: o.ace_dir.clone().map(|dir| mailtap_extract::AceConfig {
            dir,
            ports: cfg.ace.ports.clone(),
            max_open_files: cfg.ace.max_open_files,
        }),
    })
}

/// What the signals ask for: `stop` (SIGINT/SIGTERM: stop reading and
/// flush everything; a second one gives the flush two more seconds, then
/// exits; a third exits at once) and `reopen` (SIGHUP:
/// close every log and open it again at its name, after logrotate moved
/// it). A thread waits for the signals, so no work runs in a handler.
struct SignalFlags {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
}

/// How long a second SIGINT/SIGTERM leaves the flush under way.
const FORCED_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn install_signals(stopping: &'static str) -> SignalFlags {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flags = SignalFlags {
        stop: Arc::new(AtomicBool::new(false)),
        reopen: Arc::new(AtomicBool::new(false)),
    };
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            let stop = flags.stop.clone();
            let reopen = flags.reopen.clone();
            let _ = std::thread::Builder::new()
                .name("mailtap-signals".into())
                .spawn(move || {
                    let mut forced = false;
                    for sig in signals.forever() {
                        if sig == SIGHUP {
                            reopen.store(true, Ordering::SeqCst);
                            continue;
                        }
                        if !stop.swap(true, Ordering::SeqCst) {
                            eprintln!("mailtap: {stopping}");
                            continue;
                        }
                        if forced {
                            eprintln!("mailtap: third signal, exiting now");
                            std::process::exit(130);
                        }
                        // Second signal: the flush under way gets a last
                        // short chance, then the process ends anyway.
                        forced = true;
                        eprintln!(
                            "mailtap: second signal: exiting in {} s whether or not the flush is done (signal again to exit now)",
                            FORCED_EXIT_GRACE.as_secs()
                        );
                        let _ = std::thread::Builder::new().name("mailtap-forced-exit".into()).spawn(|| {
                            std::thread::sleep(FORCED_EXIT_GRACE);
                            eprintln!("mailtap: forced exit");
                            std::process::exit(130);
                        });
                    }
                });
        }
        Err(e) => eprintln!("mailtap: warning: cannot handle signals: {e}"),
    }
    flags
}

fn cmd_read(a: ReadArgs) -> Result<i32> {
    let cfg = Config::load(a.output.config.as_deref(), &a.output.sets)?;
    let workers = a.workers.unwrap_or_else(default_workers);
    if workers == 0 || workers > 1024 {
        bail!("--workers must be between 1 and 1024");
    }
    let signals = install_signals("stopping, flushing logs (signal again to abort)");
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
    eprintln!("{}", summary_line(&summary));
    eprintln!("mailtap: {}", summary.flow_line());
    if let Some(l) = bypass_line(&summary) {
        eprintln!("{l}");
    }
    report_outputs(&summary, &a.output);
    for (sink, e) in &summary.sink_errors {
        eprintln!("mailtap: error: {sink} output stopped: {e}");
    }
    let code = exit_code(&result, &summary.sink_errors);
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

/// Exit statuses (docs/operations.md#exit-status).
const EXIT_OK: i32 = 0;
/// An input, output or capture error (the logs hold what came before).
const EXIT_ERROR: i32 = 1;
/// Bad command line or configuration: nothing was read.
const EXIT_USAGE: i32 = 2;
/// `mailtap read` stopped by SIGINT/SIGTERM before the end of its input.
const EXIT_INTERRUPTED: i32 = 3;
/// A thread panicked: a bug (the logs hold what the other threads wrote).
const EXIT_PANIC: i32 = 4;

/// The exit status of a run that ended with `result` and `sink_errors`.
fn exit_code(result: &Result<(), EngineError>, sink_errors: &[(&'static str, String)]) -> i32 {
    match result {
        Err(EngineError::Panic(_)) => EXIT_PANIC,
        Err(_) => EXIT_ERROR,
        Ok(()) if !sink_errors.is_empty() => EXIT_ERROR,
        Ok(()) => EXIT_OK,
    }
}

/// The extraction, ACE and rotation lines of the final summary.
fn report_outputs(summary: &Summary, o: &OutputArgs) {
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
            "mailtap: extracted {} messages ({} incomplete, {} bytes) into {}",
            x.messages,
            x.incomplete,
            x.bytes,
            o.extract_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"))
                .display()
        );
    }
    if let Some(c) = &summary.ace {
        eprintln!(
            "mailtap: ACE transcripts: {} sessions ready, {} deleted after STARTTLS",
            c.sessions, c.starttls_deleted
        );
    }
}

/// Parses `0,1,4-7` into a list; the error names the option.
fn parse_list(opt: &str, s: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || anyhow!("{opt} {s}: expected numbers or ranges like 0,1,4-7");
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

fn cmd_live(a: LiveArgs) -> Result<i32> {
    let cfg = Config::load(a.output.config.as_deref(), &a.output.sets)?;
    let capture = match a.capture {
        CaptureArg::AfXdp => mailtap_engine::CaptureKind::AfXdp,
        CaptureArg::AfPacket => mailtap_engine::CaptureKind::AfPacket,
    };
    let mut live = mailtap_engine::LiveConfig::new(a.interfaces.clone(), capture);
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
    live.xdp_mode = a.xdp_mode.parse().map_err(|e| anyhow!("--xdp-mode: {e}"))?;
    let zero_copy: mailtap_capture::afxdp::ZeroCopy = a
        .zero_copy
        .parse()
        .map_err(|e| anyhow!("--zero-copy: {e}"))?;
    live.xdp = cfg.live.xdp(zero_copy);
    live.ring = cfg.live.ring();
    live.fanout_mode = cfg.live.fanout()?;
    live.shard_by = cfg.live.shard_by()?;
    live.xdp_all_tcp = cfg.live.xdp_all_tcp()?.unwrap_or(cfg.dpd.enabled);
    if cfg.live.xdp_host_services_allowed()? {
        mailtap_capture::steering::allow_host_services(true);
    }
    live.batch_packets = cfg.live.batch_packets;
    live.handoff_buffer_bytes = cfg.live.handoff_buffer_bytes;
    live.handoff_buffers = cfg.live.handoff_buffers;
    live.record_backlog = cfg.live.record_backlog;
    live.block_on_collector = cfg.live.block_on_collector()?;
    live.bypass = cfg.live.bypass()?;
    live.bypass_connections = cfg.live.bypass_connections;
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
    let engine = engine_config(&cfg, &a.output, 1, signals.reopen.clone())?;
    let stop = signals.stop;
    let (summary, result) = mailtap_engine::run_live(&engine, &live, &stop);
    let mut line = summary_line(&summary.engine);
    let drops: Vec<String> = summary
        .drops()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(i) = line.find("; drops: ") {
        line.truncate(i);
        line.push_str(&format!(
            "; drops: {}",
            if drops.is_empty() {
                "none".into()
            } else {
                drops.join(" ")
            }
        ));
    }
    eprintln!("{line}");
    eprintln!("mailtap: {}", summary.engine.flow_line());
    if let Some(l) = bypass_line(&summary.engine) {
        eprintln!("{l}");
    }
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
    report_outputs(&summary.engine, &a.output);
    for (sink, e) in &summary.engine.sink_errors {
        eprintln!("mailtap: error: {sink} output stopped: {e}");
    }
    if let Err(e) = &result {
        eprintln!("mailtap: error: {e}");
    }
    Ok(exit_code(&result, &summary.engine.sink_errors))
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

fn summary_line(s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let rows: Vec<String> = s.log_rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let drops: Vec<String> = s.drops().iter().map(|(k, v)| format!("{k}={v}")).collect();
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

fn cmd_config_check(a: ConfigCheckArgs) -> Result<i32> {
    let cfg = Config::load(a.file.as_deref(), &a.sets)?;
    let text = toml::to_string_pretty(&cfg).context("printing the configuration")?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    eprintln!(
        "mailtap: configuration {}ok",
        a.file
            .as_ref()
            .map(|f| format!("{} ", f.display()))
            .unwrap_or_default()
    );
    Ok(0)
}

fn cmd_ace_collect(a: AceCollectArgs) -> Result<i32> {
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
