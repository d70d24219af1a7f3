//! Regenerates the bundled sample capture `samples/sample-smtp.pcap`.
//!
//! `cargo run -p mailtap-gen --example make-sample [OUT]`
//!
//! The configuration lives in `mailtap_gen::sample_config()`; a test checks
//! the committed file still equals what the generator produces.

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../samples/sample-smtp.pcap"
        )
        .to_string()
    });
    let f = std::fs::File::create(&out)?;
    let stats = mailtap_gen::generate(&mailtap_gen::sample_config(), f)?;
    eprintln!(
        "{out}: {} sessions, {} messages, {} packets, {} bytes",
        stats.sessions, stats.messages, stats.packets, stats.bytes
    );
    Ok(())
}
