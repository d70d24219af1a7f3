//! Writes a large benchmark capture and reports the generation speed.
//!
//! `cargo run --release -p mailtap-gen --example gen-big -- OUT [MB] [CONCURRENCY] [SEED]`
//! (OUT `-` discards the output.)

use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "-".into());
    let mb: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let conc: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = mailtap_gen::GenConfig {
        target_bytes: Some(mb << 20),
        concurrency: conc,
        seed,
        ..Default::default()
    };
    let t = Instant::now();
    let stats = if out == "-" {
        mailtap_gen::generate(&cfg, std::io::sink())?
    } else {
        mailtap_gen::generate(&cfg, std::fs::File::create(&out)?)?
    };
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{out}: {} sessions, {} messages, {} packets, {} bytes in {secs:.2}s = {:.0} MB/s",
        stats.sessions,
        stats.messages,
        stats.packets,
        stats.bytes,
        stats.bytes as f64 / secs / 1e6
    );
    Ok(())
}
