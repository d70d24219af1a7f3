//! Writes a large benchmark capture and reports the generation speed and
//! the capture's shape.
//!
//! `cargo run --release -p mailtap-gen --example gen-big -- OUT [MB] [CONCURRENCY] [SEED] [MIX]`
//! (OUT `-` discards the output; MIX `attach` (default), `small` or `mta`.)

use std::time::Instant;

use mailtap_gen::TrafficMix;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "-".into());
    let mb: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let conc: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mix = match args.get(5).map(String::as_str) {
        None | Some("attach") => TrafficMix::Attach,
        Some("small") => TrafficMix::Small,
        Some("mta") => TrafficMix::Mta,
        Some(m) => panic!("unknown mix {m}"),
    };
    let cfg = mailtap_gen::GenConfig {
        target_bytes: Some(mb << 20),
        concurrency: conc,
        seed,
        ..mailtap_gen::GenConfig::for_mix(mix)
    };
    let t = Instant::now();
    let stats = if out == "-" {
        mailtap_gen::generate(&cfg, std::io::sink())?
    } else {
        mailtap_gen::generate(&cfg, std::fs::File::create(&out)?)?
    };
    let secs = t.elapsed().as_secs_f64();
    let frames = stats.bytes - 24 - 16 * stats.packets;
    eprintln!(
        "{out} ({}): {} sessions ({} TLS), {} messages (+{} in TLS), {} packets \
         (avg frame {:.1}, {:.1}/session), {} bytes ({:.1}% TLS) in {secs:.2}s = {:.0} MB/s",
        mix.as_str(),
        stats.sessions,
        stats.tls_sessions,
        stats.messages,
        stats.tls_messages,
        stats.packets,
        frames as f64 / stats.packets as f64,
        stats.packets as f64 / stats.sessions as f64,
        stats.bytes,
        100.0 * stats.tls_bytes as f64 / stats.bytes as f64,
        stats.bytes as f64 / secs / 1e6
    );
    Ok(())
}
