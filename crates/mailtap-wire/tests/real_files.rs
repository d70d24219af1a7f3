//! Reads the Zeek conformance traces from `../shared` (relative to the
//! repository). Skips, with a message, when that directory is absent.

use std::path::{Path, PathBuf};

use mailtap_wire::{decode, Block, CaptureReader, Decoded, DefragConfig, Defragmenter, LinkType};

/// A test that cannot run here: a failure with `MAILTAP_REQUIRE_ALL=1`
/// (CI), otherwise said and recorded in `$MAILTAP_SKIP_LOG` (as the
/// workspace tests' `common::skip`).
fn skip(test: &str, why: &str) {
    if std::env::var("MAILTAP_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "{test} cannot run here ({why}), and MAILTAP_REQUIRE_ALL=1 requires every test to run"
        );
    }
    eprintln!("SKIPPED {test}: {why}");
    if let Some(p) = std::env::var_os("MAILTAP_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
        {
            use std::io::Write;
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.is_dir() {
        Some(p)
    } else {
        skip("real_files", &format!("{} does not exist", p.display()));
        None
    }
}

struct Summary {
    packets: usize,
    tcp: usize,
    payload_bytes: usize,
    saw_smtp_banner: bool,
    links: Vec<LinkType>,
}

fn read(path: &Path, block_bytes: usize) -> Summary {
    let mut r = CaptureReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut block = Block::with_capacity(block_bytes);
    let mut defrag = Defragmenter::new(DefragConfig::default());
    let mut scratch = Vec::new();
    let mut s = Summary {
        packets: 0,
        tcp: 0,
        payload_bytes: 0,
        saw_smtp_banner: false,
        links: Vec::new(),
    };
    while r.fill(&mut block).unwrap_or_else(|e| panic!("{e}")) {
        for (p, data) in block.iter() {
            s.packets += 1;
            assert_eq!(p.len as usize, data.len());
            if !s.links.contains(&p.link) {
                s.links.push(p.link);
            }
            // Timestamps must be plausible (1970..2100; one trace uses 0); a resolution bug
            // would put them far outside. (Traces may concatenate captures
            // from different years, so no ordering check.)
            assert!(
                (0..4_102_444_800_000_000_000).contains(&p.ts.0),
                "{:?}",
                p.ts
            );
            let decoded = match decode(p.link, data, false).expect("real packets decode") {
                Decoded::Fragment(f) => {
                    if defrag.push(p.ts, &f, &mut scratch) {
                        decode(LinkType::Raw, &scratch, false)
                            .map(|d| matches!(d, Decoded::Tcp(_)))
                            .ok();
                    }
                    continue;
                }
                d => d,
            };
            if let Decoded::Tcp(t) = decoded {
                s.tcp += 1;
                s.payload_bytes += t.payload.len();
                if t.src_port == 25 && t.payload.starts_with(b"220") {
                    s.saw_smtp_banner = true;
                }
            }
        }
        block.clear();
    }
    assert!(r.bytes_read() > 0);
    if let Some(size) = r.file_size() {
        assert_eq!(r.bytes_read(), size, "whole file consumed");
    }
    s
}

#[test]
fn real_smtp_pcap() {
    let Some(sh) = shared() else { return };
    let p = sh.join("conformance/zeek/traces/smtp.pcap");
    let small = read(&p, 2048);
    let big = read(&p, 4 << 20);
    // Cross-checked with tshark: 125 frames, 118 TCP (4 more are ICMP errors quoting TCP), 29126 payload bytes.
    assert_eq!((big.packets, big.tcp, big.payload_bytes), (125, 118, 29126));
    assert_eq!(
        (small.packets, small.tcp, small.payload_bytes),
        (big.packets, big.tcp, big.payload_bytes)
    );
    assert!(big.saw_smtp_banner);
    assert!(big.payload_bytes > 1000);
}

#[test]
fn real_smtp_pcapng() {
    let Some(sh) = shared() else { return };
    let s = read(
        &sh.join("conformance/zeek/traces/smtp/smtp-bdat-cmd-invalid.pcapng"),
        1 << 20,
    );
    // Cross-checked with tshark: 66 frames, all TCP, 1052 payload bytes.
    assert_eq!((s.packets, s.tcp, s.payload_bytes), (66, 66, 1052));
    assert!(s.saw_smtp_banner);
    assert!(!s.links.is_empty());
}

#[test]
fn real_gzipped_pcaps() {
    let Some(sh) = shared() else { return };
    for name in [
        "mime-header-size-limit.pcap.gz",
        "smtp-many-addresses.pcap.gz",
    ] {
        let s = read(&sh.join("conformance/zeek/traces/smtp").join(name), 1 << 20);
        assert!(s.packets > 5, "{name}");
        assert!(s.tcp > 5, "{name}");
        assert!(s.saw_smtp_banner, "{name}");
        if name == "smtp-many-addresses.pcap.gz" {
            // Cross-checked with tshark.
            assert_eq!((s.packets, s.tcp, s.payload_bytes), (2508, 2508, 142672));
        }
    }
}

#[test]
fn every_smtp_trace_reads_cleanly() {
    let Some(sh) = shared() else { return };
    let dir = sh.join("conformance/zeek/traces/smtp");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let s = read(&p, 64 * 1024);
        assert!(s.packets > 0, "{}", p.display());
        n += 1;
    }
    assert!(n > 5);
}
