//! Helpers shared by the capture tests.

/// A test that cannot run here: a failure with `MAILTAP_REQUIRE_ALL=1`
/// (CI), otherwise said and recorded in `$MAILTAP_SKIP_LOG` (as the
/// workspace tests' `common::skip`).
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
            use std::io::Write;
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}
