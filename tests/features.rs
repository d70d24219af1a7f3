//! A build without the `live` or `kafka` feature (`cargo build
//! --no-default-features`, README.md "Building without live capture or
//! Kafka") reads captures as usual and says clearly what it lacks when
//! asked for it. `.ci/run` runs this with `--no-default-features`; with the
//! default features these tests are not compiled in.

#![cfg(not(all(feature = "live", feature = "kafka")))]

mod common;
use common::*;

/// `mailtap live` exits 2 naming the missing feature; `read` works.
#[test]
#[cfg(not(feature = "live"))]
fn live_without_the_feature_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (o, _) = run(&["live", "-i", "lo", "-o", out]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("built without live capture (the `live` feature"),
        "{}",
        stderr(&o)
    );
    let s = sample();
    let (o, _) = run(&["read", "--no-progress", "-o", out, s.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(dir.path().join("smtp.log").exists());
    // The [live] section is kept, unchecked, and said to be.
    let (o, _) = run(&["config", "check", "--set", "live.xdp_rx_ring=3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("[live] is kept as written but not checked"),
        "{}",
        stderr(&o)
    );
}

/// `--kafka` and `kafka.brokers` exit 2 naming the option and the missing
/// feature, before anything is read; other `[kafka]` keys are harmless.
#[test]
#[cfg(not(feature = "kafka"))]
fn kafka_without_the_feature_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = sample();
    let s = s.to_str().unwrap();
    for (args, what) in [
        (&["--kafka", "kafka1:9092"][..], "--kafka"),
        (&["--set", "kafka.brokers=kafka1:9092"][..], "kafka.brokers"),
    ] {
        let mut a = vec!["read", "--no-progress", "-o", out];
        a.extend_from_slice(args);
        a.push(s);
        let (o, _) = run(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!(
                "{what}: this mailtap was built without Kafka output (the `kafka` feature)"
            )),
            "{a:?}: {}",
            stderr(&o)
        );
        assert!(!dir.path().join("smtp.log").exists(), "nothing was read");
    }
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        out,
        "--set",
        "kafka.events=true",
        s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
