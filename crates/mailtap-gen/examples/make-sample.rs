//! Regenerates the bundled sample captures `samples/sample-smtp.pcap` and
//! `samples/sample-pop3.pcap`.
//!
//! `cargo run -p mailtap-gen --example make-sample [DIR]`
//!
//! The configurations live in `mailtap_gen::sample_config()` and
//! `mailtap_gen::sample_pop3_config()`; tests check the committed files
//! still equal what the generator produces.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples").to_string());
    for (name, cfg) in [
        ("sample-smtp.pcap", mailtap_gen::sample_config()),
        ("sample-pop3.pcap", mailtap_gen::sample_pop3_config()),
    ] {
        let out = format!("{dir}/{name}");
        let f = std::fs::File::create(&out)?;
        let stats = mailtap_gen::generate(&cfg, f)?;
        eprintln!(
            "{out}: {} sessions, {} messages, {} packets, {} bytes",
            stats.sessions, stats.messages, stats.packets, stats.bytes
        );
    }
    Ok(())
}
