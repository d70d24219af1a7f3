//! files.log conformance: runs `mailtap read` on Zeek's SMTP traces and
//! compares files.log with Zeek's baselines field by field (fuid included;
//! ts and the connection uid are not comparable), the hashes and sizes that
//! the file-analysis test prints (and thereby the decoded bytes of
//! thefile0..2), the `mime_content_hash` lengths/digests, and smtp.log
//! `fuids`. Skips, saying so, when ../shared is absent.

mod common;
use common::skip;

use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/zeek");
    p.is_dir().then_some(p)
}

struct Log {
    fields: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn parse_log(text: &str) -> Log {
    let mut fields = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            fields = f.split('\t').map(str::to_string).collect();
        } else if !line.starts_with('#') && !line.is_empty() {
            rows.push(line.split('\t').map(str::to_string).collect());
        }
    }
    Log { fields, rows }
}

/// A `zeek-cut` output with a header line (btest's `.cut` files).
fn parse_cut(text: &str) -> Log {
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let fields = lines
        .next()
        .unwrap_or("")
        .split('\t')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    Log { fields, rows }
}

impl Log {
    fn col(&self, name: &str) -> usize {
        self.fields
            .iter()
            .position(|f| f == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }
    fn column(&self, name: &str) -> Vec<String> {
        let c = self.col(name);
        self.rows.iter().map(|r| r[c].clone()).collect()
    }
}

fn run(trace: &Path, sets: &[&str], out: &Path) -> Log {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtap"));
    cmd.arg("read")
        .arg(trace)
        .arg("-o")
        .arg(out)
        .args(["-w", "1", "--no-progress"]);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let o = cmd.output().expect("run mailtap");
    assert!(
        o.status.success(),
        "mailtap read {} failed: {}",
        trace.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(out.join("files.log")).unwrap_or_default();
    parse_log(&text)
}

/// What Zeek computes with `frameworks/files/hash-all-files` (and the
/// file-analysis test helper) loaded.
const ALL_HASHES: &str = r#"files.hashes=["md5","sha1","sha256"]"#;

#[test]
fn zeek_files_log_bare_mode() {
    let Some(root) = shared() else {
        skip(
            "zeek_files_log_bare_mode",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    let base = root.join("baselines/scripts.base.protocols.smtp.attachment/files.log");
    let want = parse_log(&std::fs::read_to_string(base).expect("baseline"));
    let dir = tempfile::tempdir().expect("tempdir");
    let got = run(
        &root.join("traces/smtp.pcap"),
        &["files.hashes=[]"],
        dir.path(),
    );
    assert_eq!(got.fields, want.fields, "files.log columns");
    assert_eq!(got.rows.len(), want.rows.len(), "files.log rows");
    for (g, w) in got.rows.iter().zip(&want.rows) {
        for (i, name) in want.fields.iter().enumerate() {
            if name == "ts" || name == "uid" {
                continue;
            }
            assert_eq!(g[i], w[i], "files.log field {name} of {}", w[1]);
        }
    }
}

#[test]
fn zeek_files_log_cut_baselines() {
    let Some(root) = shared() else {
        skip(
            "zeek_files_log_cut_baselines",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    for (test, trace) in [
        ("bdat-multipart", "smtp/rfc3030-bdat-multipart.pcap"),
        (
            "bdat-multipart-chunked",
            "smtp/rfc3030-bdat-multipart-chunked.pcap",
        ),
        (
            "bdat-pipeline-8bitmime",
            "smtp/smtp-bdat-pipeline-8bitmime.pcap",
        ),
        ("bdat-gap", "smtp/smtp-bdat-gap.pcap"),
    ] {
        let base = root.join(format!(
            "baselines/scripts.base.protocols.smtp.{test}/files.log.cut"
        ));
        let want = parse_cut(&std::fs::read_to_string(base).expect("baseline"));
        let dir = tempfile::tempdir().expect("tempdir");
        // The btests loaded hash-all-files.
        let got = run(&root.join("traces").join(trace), &[ALL_HASHES], dir.path());
        assert_eq!(got.rows.len(), want.rows.len(), "{test}: files.log rows");
        for name in &want.fields {
            if name.is_empty() || name == "uid" {
                continue;
            }
            assert_eq!(
                got.column(name),
                want.column(name),
                "{test}: files.log column {name}"
            );
        }
    }
}

/// The file-analysis test prints, per SMTP file, its size and MD5, SHA1 and
/// SHA256; thefile0..2 are the decoded bytes of the first three files.
#[test]
fn zeek_file_analysis_smtp_hashes_and_bytes() {
    let Some(root) = shared() else {
        skip(
            "zeek_file_analysis_smtp_hashes_and_bytes",
            "../shared not found",
        );
        return;
    };
    let dir_b = root.join("baselines/scripts.base.frameworks.file-analysis.smtp");
    let out = std::fs::read_to_string(dir_b.join("out")).expect("baseline out");
    // Blocks start at FILE_NEW; keep those whose source is SMTP.
    let mut want = Vec::new();
    for block in out.split("FILE_NEW").skip(1) {
        if !block.contains("source: SMTP") {
            continue;
        }
        let field = |p: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(p))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let size = block
            .lines()
            .filter(|l| l.starts_with("file #"))
            .nth(1)
            .and_then(|l| l.split(", ").nth(1))
            .unwrap_or_default()
            .to_string();
        let mime = block
            .lines()
            .skip_while(|l| *l != "MIME_TYPE")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        want.push((size, mime, field("MD5:"), field("SHA1:"), field("SHA256:")));
    }
    assert_eq!(want.len(), 4, "SMTP files in the baseline");
    let dir = tempfile::tempdir().expect("tempdir");
    let got = run(&root.join("traces/smtp.pcap"), &[ALL_HASHES], dir.path());
    let rows: Vec<_> = got
        .rows
        .iter()
        .map(|r| {
            (
                r[got.col("seen_bytes")].clone(),
                r[got.col("mime_type")].clone(),
                r[got.col("md5")].clone(),
                r[got.col("sha1")].clone(),
                r[got.col("sha256")].clone(),
            )
        })
        .collect();
    assert_eq!(rows, want);
    // The extracted files are the decoded bytes: their MD5s are ours.
    for (i, w) in want.iter().take(3).enumerate() {
        let bytes = baseline_bytes(&dir_b.join(format!("thefile{i}")));
        assert_eq!(bytes.len().to_string(), w.0, "thefile{i} size");
        assert_eq!(hex(&Md5::digest(&bytes)), w.2, "thefile{i} md5");
    }
}

/// A baseline file's bytes without btest's `### BTest baseline ...` line.
fn baseline_bytes(p: &Path) -> Vec<u8> {
    let b = std::fs::read(p).expect("baseline file");
    match b.strip_prefix(b"### BTest baseline") {
        Some(rest) => match rest.iter().position(|&c| c == b'\n') {
            Some(i) => rest[i + 1..].to_vec(),
            None => Vec::new(),
        },
        None => b,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `mime_content_hash` covers all decoded entity bytes of a message: for
/// smtp.pcap 12754 bytes (thefile0..2 in order) and 204 bytes.
#[test]
fn zeek_mime_content_hash() {
    let Some(root) = shared() else {
        skip(
            "zeek_mime_content_hash",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    let b = root.join("baselines");
    let md5_out = std::fs::read_to_string(b.join("scripts.base.files.mime.mime-content-hash/out"))
        .expect("baseline");
    let want: Vec<(u64, String)> = md5_out
        .lines()
        .filter(|l| l.starts_with("mime_content_hash,"))
        .map(|l| {
            let p: Vec<&str> = l.split(", ").collect();
            (p[2].parse().expect("length"), p[3].to_string())
        })
        .collect();
    assert_eq!(want.len(), 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let got = run(&root.join("traces/smtp.pcap"), &[ALL_HASHES], dir.path());
    // Per connection, in order: total decoded length.
    let (uid, seen) = (got.col("uid"), got.col("seen_bytes"));
    let mut per_conn: Vec<(String, u64)> = Vec::new();
    for r in &got.rows {
        let n: u64 = r[seen].parse().expect("seen_bytes");
        match per_conn.iter_mut().find(|(u, _)| *u == r[uid]) {
            Some(e) => e.1 += n,
            None => per_conn.push((r[uid].clone(), n)),
        }
    }
    let lens: Vec<u64> = per_conn.iter().map(|e| e.1).collect();
    assert_eq!(lens, want.iter().map(|w| w.0).collect::<Vec<_>>());
    // The first message's content is thefile0..2 concatenated.
    let fa = b.join("scripts.base.frameworks.file-analysis.smtp");
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend(baseline_bytes(&fa.join(format!("thefile{i}"))));
    }
    assert_eq!(all.len() as u64, want[0].0);
    assert_eq!(hex(&Md5::digest(&all)), want[0].1);
    // The second message has one file: its MD5 is the content hash.
    assert_eq!(got.rows[3][got.col("md5")], want[1].1);
}

#[test]
fn zeek_smtp_log_fuids() {
    let Some(root) = shared() else {
        skip(
            "zeek_smtp_log_fuids",
            "../shared/conformance/zeek not found",
        );
        return;
    };
    for (test, trace) in [
        ("basic", "smtp.pcap"),
        ("attachment-msg", "smtp-attachment-msg.pcap"),
        ("bdat-multipart", "smtp/rfc3030-bdat-multipart.pcap"),
        ("bdat-gap", "smtp/smtp-bdat-gap.pcap"),
        (
            "bdat-pipeline-8bitmime",
            "smtp/smtp-bdat-pipeline-8bitmime.pcap",
        ),
    ] {
        let base = root.join(format!(
            "baselines/scripts.base.protocols.smtp.{test}/smtp.log"
        ));
        let want = parse_log(&std::fs::read_to_string(base).expect("baseline"));
        let dir = tempfile::tempdir().expect("tempdir");
        run(&root.join("traces").join(trace), &[], dir.path());
        let got =
            parse_log(&std::fs::read_to_string(dir.path().join("smtp.log")).expect("smtp.log"));
        let mut g = got.column("fuids");
        let mut w = want.column("fuids");
        g.sort();
        w.sort();
        assert_eq!(g, w, "{test}: smtp.log fuids");
    }
}
