//! Enum-like settings: a bad value fails `mailtap config check` and
//! startup (exit 2) with an error that names the setting and lists the
//! values it accepts (issue 14 item 2). No root needed.

mod common;
use common::*;

/// Every enum-like configuration key, a bad value and what it accepts.
const KEYS: &[(&str, &str, &[&str])] = &[
    ("kafka.emails", "inlne", &["inline", "reference", "off"]),
    ("live.afpacket_fanout", "rr", &["hash", "qm", "cpu"]),
    ("live.xdp_steer", "some", &["auto", "mail-ports", "all-tcp"]),
    ("live.shard_by", "cpu", &["auto", "queue", "flow-hash"]),
    ("live.collector_overflow", "wait", &["drop", "block"]),
    ("live.xdp_host_services", "yes", &["refuse", "allow"]),
    ("live.bypass", "maybe", &["auto", "drop", "pass", "off"]),
    ("live.xdp_busy_poll", "sometimes", &["off", "auto", "on"]),
];

/// The keys this build checks: `kafka.*` needs the `kafka` feature and
/// `live.*` the `live` feature (without them the section is kept unchecked).
fn keys() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static [&'static str])> {
    KEYS.iter().filter(|(key, _, _)| {
        let section = key.split_once('.').unwrap().0;
        (section != "kafka" || cfg!(feature = "kafka"))
            && (section != "live" || cfg!(feature = "live"))
    })
}

fn assert_names(what: &str, o: &std::process::Output, key: &str, accepted: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what} should fail: {e}");
    assert!(e.contains(key), "{what}: the error should name {key}: {e}");
    for v in accepted {
        assert!(
            e.contains(&format!("`{v}`")),
            "{what}: the error should list {v:?}: {e}"
        );
    }
}

#[test]
fn config_check_rejects_a_bad_enum_value_naming_the_key_and_the_values() {
    let dir = tempfile::tempdir().unwrap();
    for (key, bad, accepted) in keys() {
        let set = format!("{key}={bad}");
        let (o, _) = run(&["config", "check", "--set", &set]);
        assert_names(&format!("config check --set {set}"), &o, key, accepted);

        // The same in a configuration file.
        let (section, name) = key.split_once('.').unwrap();
        let f = dir.path().join(format!("{section}-{name}.toml"));
        std::fs::write(&f, format!("[{section}]\n{name} = \"{bad}\"\n")).unwrap();
        let (o, _) = run(&["config", "check", f.to_str().unwrap()]);
        assert_names(&format!("config check {}", f.display()), &o, key, accepted);

        // Every accepted value passes.
        for v in *accepted {
            let set = format!("{key}={v}");
            let (o, _) = run(&["config", "check", "--set", &set]);
            assert_eq!(o.status.code(), Some(0), "{set}: {}", stderr(&o));
        }
    }
}

#[test]
fn read_and_live_refuse_a_bad_enum_value_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let s = sample();
    for (key, bad, accepted) in keys() {
        let set = format!("{key}={bad}");
        let (o, _) = run(&[
            "read",
            "--no-progress",
            "-o",
            out,
            "--set",
            &set,
            s.to_str().unwrap(),
        ]);
        assert_names(&format!("read --set {set}"), &o, key, accepted);
        // `live` checks the configuration before it touches an interface.
        if cfg!(feature = "live") {
            let (o, _) = run(&["live", "-i", "lo", "-o", out, "--set", &set]);
            assert_names(&format!("live --set {set}"), &o, key, accepted);
        }
    }
    assert!(
        !dir.path().join("smtp.log").exists(),
        "nothing was read with a bad configuration"
    );
}

#[test]
fn live_options_reject_a_bad_value_listing_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for (flag, bad, accepted) in [
        ("--xdp-mode", "turbo", ["auto", "native", "skb"]),
        ("--zero-copy", "maybe", ["auto", "on", "off"]),
    ] {
        let (o, _) = run(&["live", "-i", "lo", "-o", out, flag, bad]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag} {bad}: {e}");
        assert!(e.contains(flag), "{flag} {bad}: {e}");
        assert!(
            e.contains(&format!("[possible values: {}]", accepted.join(", "))),
            "{flag} {bad}: {e}"
        );
    }
}
