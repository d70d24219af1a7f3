//! deploy/: the Kubernetes manifests validate strictly (kubernetes-validate
//! --strict, yamllint), agree with each other and with the systemd unit,
//! their mailtap.toml passes `mailtap config check`; the systemd unit passes
//! `systemd-analyze verify` with no output and `systemd-analyze security
//! --offline=true` under the documented exposure threshold; the seccomp
//! profile allows bpf and perf_event_open; the NIC tuning script applies and
//! undoes its changes on a veth in a namespace.
//!
//! Tools missing: the test says so and skips (`bash scripts/deploy-setup.sh`
//! installs them; .ci/run does).
//!
//! The container image test is `deploy/test-image.sh` (podman; minutes).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `systemd-analyze security` exposure (0 best, 10 worst) the unit must
/// stay at or under (docs/deploy.md).
const SECURITY_THRESHOLD: f64 = 3.0;

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn tool(name: &str, arg: &str) -> bool {
    Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn out(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn manifests() -> Vec<PathBuf> {
    let k = deploy().join("kubernetes");
    [
        "namespace.yaml",
        "configmap.yaml",
        "daemonset-af-packet.yaml",
        "daemonset-af-xdp.yaml",
    ]
    .iter()
    .map(|f| k.join(f))
    .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    if !tool("kubernetes-validate", "--version") || !tool("yamllint", "--version") {
        skip(
            "kubernetes_manifests_validate_strictly",
            "kubernetes-validate or yamllint not found (bash scripts/deploy-setup.sh)",
        );
        return;
    }
    let o = out(Command::new("kubernetes-validate")
        .arg("--strict")
        .args(manifests()));
    assert!(
        o.status.success(),
        "kubernetes-validate --strict:\n{}",
        text(&o)
    );
    let t = text(&o);
    assert_eq!(t.matches(" passed ").count(), 4, "{t}");

    // A misspelled field fails: --strict is in force.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read(&manifests()[3]).replace("hostNetwork:", "hostNetwrk:"),
    )
    .unwrap();
    let o = out(Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&bad));
    assert!(
        !o.status.success(),
        "a misspelled field passed:\n{}",
        text(&o)
    );

    let mut all = manifests();
    all.push(deploy().join("kubernetes/kustomization.yaml"));
    let o = out(Command::new("yamllint")
        .args([
            "-s",
            "-d",
            "{extends: default, rules: {line-length: {max: 120}}}",
        ])
        .args(&all));
    assert!(o.status.success(), "yamllint:\n{}", text(&o));
}

/// The capabilities in `add: [..]` of a manifest.
fn added_caps(manifest: &str) -> Vec<String> {
    let line = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .expect("an add: line");
    let mut v: Vec<String> = line
        .trim()
        .trim_matches(['[', ']'])
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    v.sort();
    v
}

/// The `mailtap.toml` block of the ConfigMap.
fn configmap_toml() -> String {
    let cm = read(&deploy().join("kubernetes/configmap.yaml"));
    let mut lines = cm.lines().skip_while(|l| l.trim() != "mailtap.toml: |");
    lines.next().expect("a mailtap.toml block");
    let mut toml = String::new();
    for l in lines {
        if !l.is_empty() && !l.starts_with("    ") {
            break;
        }
        toml.push_str(l.strip_prefix("    ").unwrap_or(""));
        toml.push('\n');
    }
    toml
}

#[test]
fn manifests_agree_with_each_other_and_the_unit() {
    let k = deploy().join("kubernetes");
    let xdp = read(&k.join("daemonset-af-xdp.yaml"));
    let pkt = read(&k.join("daemonset-af-packet.yaml"));
    assert_eq!(
        added_caps(&xdp),
        ["BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "PERFMON"],
        "AF_XDP: exactly these, no SYS_ADMIN"
    );
    assert_eq!(added_caps(&pkt), ["NET_RAW"], "AF_PACKET: NET_RAW only");
    for (name, m, mode) in [("af-xdp", &xdp, "af-xdp"), ("af-packet", &pkt, "af-packet")] {
        assert!(m.contains("drop: [ALL]"), "{name}: drops every capability");
        assert!(m.contains("privileged: false") && m.contains("readOnlyRootFilesystem: true"));
        assert!(m.contains("hostNetwork: true") && m.contains("ClusterFirstWithHostNet"));
        assert!(
            m.contains(&format!("- --capture\n            - {mode}")),
            "{name} captures with {mode}"
        );
    }
    assert!(xdp.contains("localhostProfile: mailtap-af-xdp.json"));
    assert!(pkt.contains("type: RuntimeDefault"));

    // The grace period outlasts the Kafka flush.
    let toml = configmap_toml();
    let flush: u64 = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("flush_timeout = "))
        .expect("kafka.flush_timeout in the ConfigMap")
        .trim()
        .parse()
        .unwrap();
    for m in [&xdp, &pkt] {
        let grace: u64 = m
            .lines()
            .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            grace >= flush + 30,
            "grace {grace} s vs flush_timeout {flush} s"
        );
    }

    // The systemd unit grants the AF_XDP DaemonSet's set.
    let unit = read(&deploy().join("systemd/mailtap.service"));
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let mut caps: Vec<String> = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"))
            .split_whitespace()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect();
        caps.sort();
        assert_eq!(caps, added_caps(&xdp), "{key}");
    }

    // The seccomp profile: the default's rules plus bpf and
    // perf_event_open for everyone.
    let p: serde_json::Value =
        serde_json::from_str(&read(&k.join("seccomp/mailtap-af-xdp.json"))).unwrap();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = p["syscalls"].as_array().unwrap();
    for sc in ["bpf", "perf_event_open"] {
        let of: Vec<&serde_json::Value> = rules
            .iter()
            .filter(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n.as_str() == Some(sc))
            })
            .collect();
        assert_eq!(of.len(), 1, "{sc}: one rule");
        assert_eq!(of[0]["action"], "SCMP_ACT_ALLOW", "{sc}");
        assert!(
            of[0]["includes"].as_object().is_none_or(|o| o.is_empty()),
            "{sc}: unconditional"
        );
    }
    assert!(rules.len() > 20, "the default profile's rules are kept");
}

#[test]
fn configmap_config_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mailtap.toml");
    std::fs::write(&f, configmap_toml()).unwrap();
    let o = out(Command::new(bin()).args(["config", "check"]).arg(&f));
    assert!(o.status.success(), "mailtap config check:\n{}", text(&o));
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    if !tool("systemd-analyze", "--version") {
        skip(
            "systemd_unit_verifies_and_is_hardened",
            "systemd-analyze not found (bash scripts/deploy-setup.sh)",
        );
        return;
    }
    // verify checks that ExecStart exists: point it at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("mailtap.service");
    std::fs::write(
        &unit,
        read(&deploy().join("systemd/mailtap.service")).replace("/usr/bin/mailtap", bin()),
    )
    .unwrap();
    let o = out(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify printed something (any output fails):\n{}",
        text(&o)
    );
    let o = out(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let t = text(&o);
    let score: f64 = t
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mailtap.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{t}"));
    eprintln!("systemd-analyze security: {score}");
    assert!(
        score <= SECURITY_THRESHOLD,
        "exposure {score} above {SECURITY_THRESHOLD}:\n{t}"
    );
}

#[test]
fn nic_tune_applies_and_undoes_on_a_veth() {
    if !is_root() || !tool("ip", "-V") || !tool("ethtool", "--version") {
        skip(
            "nic_tune_applies_and_undoes_on_a_veth",
            "needs root, ip and ethtool",
        );
        return;
    }
    let ns = format!("mtn{}", std::process::id());
    let ip = |args: &[&str]| out(Command::new("ip").args(args));
    assert!(ip(&["netns", "add", &ns]).status.success());
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _ns = Ns(ns.clone());
    let o = ip(&[
        "-n", &ns, "link", "add", "tn0", "type", "veth", "peer", "name", "tn1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let exec = |args: &[&str]| out(Command::new("ip").args(["netns", "exec", &ns]).args(args));
    assert!(exec(&["ethtool", "-K", "tn0", "gro", "on"])
        .status
        .success());
    let gro = || text(&exec(&["ethtool", "-k", "tn0"])).contains("generic-receive-offload: on");
    let rxq = || {
        text(&exec(&["ethtool", "-l", "tn0"]))
            .split("Current hardware settings:")
            .nth(1)
            .and_then(|c| c.lines().find_map(|l| l.strip_prefix("RX:")))
            .map(|v| v.trim().to_string())
    };
    assert!(gro());
    assert_eq!(rxq().as_deref(), Some("1"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let script = deploy().join("appliance/nic-tune.sh");
    let o = exec(&[
        "bash",
        script.to_str().unwrap(),
        "apply",
        "tn0",
        "--queues",
        "2",
        "--rx-ring",
        "max",
        "--state",
        state.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("ethtool -K tn0 gro off"),
        "prints the change:\n{t}"
    );
    assert!(
        t.contains("RSS key: not supported"),
        "says what it skipped:\n{t}"
    );
    assert!(!gro(), "GRO off");
    assert_eq!(rxq().as_deref(), Some("2"), "two RX queues");

    let o = exec(&[
        "bash",
        script.to_str().unwrap(),
        "undo",
        "tn0",
        "--state",
        state.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(gro(), "GRO back on");
    assert_eq!(rxq().as_deref(), Some("1"));
    assert!(!state.exists());
}

/// `deploy/test-image.sh`: the image run as the AF_XDP DaemonSet runs,
/// against a veth. The first run on a machine makes the base image with
/// debootstrap (about 90 s); later runs take seconds. Needs root and the
/// container tools (`bash scripts/deploy-setup.sh --image`, which `.ci/run`
/// runs); the binary under test is this build's (`MAILTAP_BIN`).
#[test]
fn container_image_runs_as_the_daemonset() {
    if !is_root() || !tool("podman", "--version") {
        skip(
            "container_image_runs_as_the_daemonset",
            "needs root and podman (bash scripts/deploy-setup.sh --image installs it)",
        );
        return;
    }
    let o = out(Command::new("bash")
        .arg(deploy().join("test-image.sh"))
        .env("MAILTAP_BIN", bin())
        .current_dir(repo()));
    let t = text(&o);
    eprintln!("{t}");
    assert!(o.status.success(), "deploy/test-image.sh failed:\n{t}");
    assert!(
        t.contains("smtp: read 72 rows, container 72 rows, equal"),
        "{t}"
    );
    assert!(t.contains("all clean"), "{t}");
}
