//! Helpers shared by the integration tests: running the built `mailtap`
//! binary, building small captures by hand, reading Zeek logs.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailtap")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample() -> PathBuf {
    repo().join("samples/sample-smtp.pcap")
}

/// Runs `mailtap` with `args`, returning its output and the peak resident
/// memory seen while it ran (sampled from /proc every few milliseconds).
pub fn run(args: &[&str]) -> (Output, u64) {
    let child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mailtap");
    let pid = child.id();
    let status_path = format!("/proc/{pid}/status");
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(&status_path) {
                    for l in s.lines() {
                        if let Some(v) = l.strip_prefix("VmHWM:") {
                            let kb: u64 =
                                v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
                            peak.fetch_max(kb * 1024, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = child.wait_with_output().expect("wait for mailtap");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Data rows of a Zeek log (comment lines dropped), or empty if absent.
pub fn rows(dir: &Path, log: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(log))
        .map(|t| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A classic pcap (Ethernet, µs) built packet by packet.
pub struct Pcap {
    pub bytes: Vec<u8>,
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH: u8 = 0x08;
pub const FIN: u8 = 0x01;

impl Pcap {
    pub fn new() -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&262_144u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        Pcap { bytes: b }
    }

    /// Appends an Ethernet/IPv4/TCP packet (checksums left zero: mailtap
    /// does not verify them by default).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        &mut self,
        ts_us: u64,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let mut p = Vec::with_capacity(54 + payload.len());
        p.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00]);
        let total = (40 + payload.len()) as u16;
        p.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        self.bytes
            .extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&p);
    }

    pub fn write(&self, path: &Path) {
        std::fs::File::create(path)
            .unwrap()
            .write_all(&self.bytes)
            .unwrap();
    }
}

/// A SplitMix64 stream for deterministic test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A test (or part of one) that cannot run on this machine: it needs root,
/// a tool, or `../shared`. With `MAILTAP_REQUIRE_ALL=1` (CI sets it) that
/// is a failure, so a green run cannot hide a test that never ran;
/// otherwise it is said on stderr and recorded in `$MAILTAP_SKIP_LOG`
/// (scripts/test.sh lists those at the end).
pub fn skip(test: &str, why: &str) {
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
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}
