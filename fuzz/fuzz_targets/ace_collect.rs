//! `ace-collect` end to end on arbitrary bytes: the input is written as a
//! session file with its `.ready` marker in a scratch ACE directory and
//! collected into a scratch extraction directory. Must never panic, and
//! the session is always consumed: its file and marker are gone (parsed,
//! or moved to `review/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailtap_extract::{AceCollector, CollectorConfig};
use std::path::PathBuf;
use std::sync::OnceLock;

fn dirs() -> &'static (PathBuf, PathBuf) {
    static D: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    D.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("mailtap-fuzz-ace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (ace, ex) = (root.join("ace"), root.join("extract"));
        std::fs::create_dir_all(&ace).unwrap();
        std::fs::create_dir_all(&ex).unwrap();
        (ace, ex)
    })
}

fuzz_target!(|data: &[u8]| {
    let (ace, ex) = dirs();
    let uid = "CfuzzSession";
    std::fs::write(ace.join(uid), data).unwrap();
    std::fs::write(ace.join(format!("{uid}.ready")), b"").unwrap();
    let mut cfg = CollectorConfig::new(ace.clone(), ex.clone());
    cfg.max_line = 256;
    let mut c = AceCollector::new(cfg).unwrap();
    c.process(uid);
    assert!(!ace.join(uid).exists(), "session file left behind");
    assert!(!ace.join(format!("{uid}.ready")).exists(), "marker left behind");
    // Keep the scratch directories small.
    for d in [ex.clone(), ace.join("review")] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
});
