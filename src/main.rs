//! `mailtap`: a mail-traffic sensor. See README.md.
//!
//! This file parses the command line and dispatches; each subcommand is
//! in `cli/` (one file each), the configuration and its mapping to the
//! engine in `config/`, signal handling in `signals.rs`.

mod alloc;
mod cli;
mod config;
mod signals;

/// mimalloc instead of glibc malloc: see the comment in Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use cli::config::ConfigCommand;
use std::io::IsTerminal;

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
    Read(cli::read::ReadArgs),
    /// Capture live from network interfaces (AF_XDP or AF_PACKET) until
    /// SIGINT/SIGTERM or --duration.
    Live(cli::live::LiveArgs),
    /// Generate a deterministic capture of SMTP (and POP3) sessions.
    Gen(cli::gen::GenArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Turn ACE SMTP session transcripts (`<uid>` + `<uid>.ready`) into
    /// per-message .eml/.json pairs.
    AceCollect(cli::ace_collect::AceCollectArgs),
    /// Write man pages generated from these definitions (packaging).
    #[command(hide = true)]
    Man(cli::man::ManArgs),
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
        Command::Read(a) => cli::read::run(a),
        Command::Live(a) => cli::live::run(a),
        Command::Gen(a) => cli::gen::cmd_gen(a),
        Command::Config(ConfigCommand::Check(a)) => cli::config::check(a),
        Command::AceCollect(a) => cli::ace_collect::run(a),
        Command::Man(a) => cli::man::cmd_man(a),
    } {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailtap: error: {e:#}");
            cli::EXIT_USAGE
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
