//! The Debian package (issue 13 item 7): `scripts/build-deb.sh` builds it,
//! then it is installed with `dpkg -i` (and `apt-get -f install` for its
//! dependencies from the Debian mirror apt uses) in a debootstrap chroot of
//! bookworm (minbase), and checked: files in place, the `mailtap` system
//! user, the conffiles, the man pages, the unit enabled but not started,
//! `mailtap --version` and `mailtap config check` of the installed config,
//! and the installed binary reading samples/sample-smtp.pcap as the
//! `mailtap` user into /var/log/mailtap (the "started" part: systemd cannot
//! run in a chroot, so the service's user, config and log directory are
//! exercised without it). Then `dpkg -r` and `dpkg -P`.
//!
//! Root and debootstrap (`bash scripts/deploy-setup.sh --image`); the
//! first run makes the chroot (debootstrap from the mirror apt uses, about
//! a minute) and caches it under target/tmp/deb-chroot/ with apt's lists and
//! the dependencies it downloaded, so later runs take seconds. `#[ignore]`d like the container test (cargo-deb is built
//! the first time, minutes): `cargo test --release --test deb -- --ignored`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
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

/// Runs `cmd`, panics with its output unless it succeeds, returns stdout.
fn ok(cmd: &mut Command) -> String {
    let o = out(cmd);
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `chroot ROOT args...` with a plain environment.
fn chroot(root: &Path, args: &[&str]) -> Command {
    chroot_as(root, None, args)
}

/// `chroot [--userspec=USER:GROUP] ROOT args...` with a plain environment.
fn chroot_as(root: &Path, userspec: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    if let Some(u) = userspec {
        c.arg(format!("--userspec={u}"));
    }
    c.arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    c
}

/// The first `URIs:` (deb822) or `deb URL` line of apt's sources: the mirror
/// apt already uses, so the chroot comes from where the host's packages do.
fn mirror() -> String {
    if let Ok(m) = std::env::var("MAILTAP_DEBIAN_MIRROR") {
        return m;
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(d) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = d.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let name = f.to_string_lossy().into_owned();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let url = match w.as_slice() {
                ["URIs:", url, ..] => url,
                ["deb", url, ..] if !url.starts_with('[') => url,
                _ => continue,
            };
            if !url.contains("security") {
                return url.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// The cached bookworm minbase chroot (debootstrap once, then kept), with
/// apt's package lists fetched.
fn base_chroot(cache: &Path) -> PathBuf {
    let base = cache.join("base");
    if base.join("usr/bin/dpkg").exists() {
        eprintln!("deb: reusing the chroot {}", base.display());
        return base;
    }
    let partial = cache.join("base.partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(cache).unwrap();
    let m = mirror();
    eprintln!(
        "deb: debootstrap --variant=minbase bookworm {} {m}",
        partial.display()
    );
    ok(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&partial)
        .arg(&m));
    std::fs::copy("/etc/resolv.conf", partial.join("etc/resolv.conf")).ok();
    ok(&mut chroot(&partial, &["apt-get", "update", "-qq"]));
    std::fs::rename(&partial, &base).unwrap();
    base
}

fn exists(root: &Path, p: &str) -> bool {
    root.join(p.trim_start_matches('/')).exists()
}

#[test]
#[ignore = "builds the .deb and installs it in a debootstrap chroot: bash scripts/deploy-setup.sh --image, then cargo test --release --test deb -- --ignored"]
fn debian_package_installs_and_runs() {
    if !is_root()
        || Command::new("debootstrap")
            .arg("--version")
            .output()
            .is_err()
    {
        skip(
            "debian_package_installs_and_runs",
            "needs root and debootstrap (bash scripts/deploy-setup.sh --image)",
        );
        return;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap().to_path_buf();

    // 1. The package, built by the script as a user would.
    let t0 = std::time::Instant::now();
    let built = ok(Command::new("bash")
        .arg(repo().join("scripts/build-deb.sh"))
        .env("CARGO_TARGET_DIR", &target));
    let deb = PathBuf::from(built.lines().last().unwrap().trim());
    assert!(deb.is_file(), "build-deb.sh printed {built}");
    eprintln!("deb: built {} in {:?}", deb.display(), t0.elapsed());

    // 2. A fresh copy of the cached chroot.
    let cache = tmp.join("deb-chroot");
    let base = base_chroot(&cache);
    let root = cache.join("run");
    if root.exists() {
        ok(Command::new("rm").arg("-rf").arg(&root));
    }
    ok(Command::new("cp").arg("-a").arg(&base).arg(&root));
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).ok();
    std::fs::copy(&deb, root.join("tmp/mailtap.deb")).unwrap();
    std::fs::copy(sample(), root.join("tmp/sample-smtp.pcap")).unwrap();

    // 3. dpkg -i: a minbase chroot lacks libssl3, libelf1, adduser and
    // procps, so dpkg stops with unmet dependencies and apt-get -f install
    // fetches them (from the cache after the first run) and configures it.
    let t1 = std::time::Instant::now();
    let o = out(&mut chroot(&root, &["dpkg", "-i", "/tmp/mailtap.deb"]));
    if !o.status.success() {
        let t = text(&o);
        assert!(t.contains("dependency problems"), "dpkg -i: {t}");
        ok(&mut chroot(
            &root,
            &["apt-get", "-f", "install", "-y", "-q"],
        ));
    }
    let status = ok(&mut chroot(
        &root,
        &["dpkg-query", "-W", "-f=${Status}", "mailtap"],
    ));
    assert_eq!(status, "install ok installed");
    eprintln!("deb: installed in {:?}", t1.elapsed());
    // Keep the downloaded dependencies for the next run (offline).
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cp -n {r}/var/cache/apt/archives/*.deb {b}/var/cache/apt/archives/ 2>/dev/null",
            r = root.display(),
            b = base.display()
        ))
        .status();

    // 4. Files where they belong.
    for p in [
        "/usr/bin/mailtap",
        "/lib/systemd/system/mailtap.service",
        "/etc/mailtap/mailtap.toml",
        "/etc/default/mailtap",
        "/usr/share/doc/mailtap/README.md",
        "/usr/share/doc/mailtap/deploy.md",
        "/usr/share/doc/mailtap/copyright",
        "/usr/share/man/man1/mailtap.1.gz",
        "/usr/share/man/man1/mailtap-read.1.gz",
        "/usr/share/man/man1/mailtap-live.1.gz",
        "/usr/share/man/man1/mailtap-config-check.1.gz",
    ] {
        assert!(exists(&root, p), "{p} missing after install");
    }
    assert_eq!(
        std::fs::read(root.join("lib/systemd/system/mailtap.service")).unwrap(),
        std::fs::read(repo().join("deploy/systemd/mailtap.service")).unwrap()
    );
    let conffiles = ok(&mut chroot(
        &root,
        &["dpkg-query", "-W", "-f=${Conffiles}", "mailtap"],
    ));
    assert!(
        conffiles.contains("/etc/mailtap/mailtap.toml")
            && conffiles.contains("/etc/default/mailtap"),
        "conffiles: {conffiles}"
    );
    let page = ok(&mut chroot(
        &root,
        &["zcat", "/usr/share/man/man1/mailtap-read.1.gz"],
    ));
    assert!(
        page.starts_with(".ie") || page.contains(".TH mailtap-read 1"),
        "{page}"
    );
    assert!(
        page.contains("\\-\\-config"),
        "mailtap-read.1 lacks --config: {page}"
    );
    // minbase has no man-db: `man -w` is not available in the chroot.

    // 5. The system user, its directories, the unit enabled, not started.
    let pw = ok(&mut chroot(&root, &["getent", "passwd", "mailtap"]));
    let f: Vec<&str> = pw.trim().split(':').collect();
    assert!(
        f[2].parse::<u32>().unwrap() < 1000,
        "not a system user: {pw}"
    );
    assert_eq!(f[5], "/var/lib/mailtap", "{pw}");
    assert_eq!(f[6], "/usr/sbin/nologin", "{pw}");
    for d in ["/var/log/mailtap", "/var/lib/mailtap"] {
        let s = ok(&mut chroot(&root, &["stat", "-c", "%U:%G %a", d]));
        assert_eq!(s.trim(), "mailtap:mailtap 750", "{d}");
    }
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/mailtap.service")
            .symlink_metadata()
            .is_ok(),
        "mailtap.service not enabled"
    );

    // 6. The installed binary runs, and its config passes.
    let v = ok(&mut chroot(&root, &["mailtap", "--version"]));
    assert_eq!(v.trim(), format!("mailtap {}", env!("CARGO_PKG_VERSION")));
    ok(&mut chroot(
        &root,
        &["mailtap", "config", "check", "/etc/mailtap/mailtap.toml"],
    ));

    // 7. "Started": as the service would run it (user mailtap, the installed
    // config, logs in /var/log/mailtap), on the sample capture; the rows
    // equal those of the tested binary on the host.
    ok(&mut chroot_as(
        &root,
        Some("mailtap:mailtap"),
        &[
            "/usr/bin/mailtap",
            "read",
            "--no-progress",
            "-c",
            "/etc/mailtap/mailtap.toml",
            "-o",
            "/var/log/mailtap",
            "/tmp/sample-smtp.pcap",
        ],
    ));
    // The installed config rotates hourly and gzips rotated files
    // (post_rotate, run as mailtap too): at exit smtp.log is rotated to
    // smtp.<from>_<to>.log.gz.
    let logs = root.join("var/log/mailtap");
    let gz: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("smtp.") && n.ends_with(".log.gz")
        })
        .collect();
    assert_eq!(gz.len(), 1, "rotated smtp logs in /var/log/mailtap: {gz:?}");
    let inner = format!(
        "/var/log/mailtap/{}",
        gz[0].file_name().unwrap().to_string_lossy()
    );
    let owner = ok(&mut chroot(&root, &["stat", "-c", "%U", &inner]));
    assert_eq!(owner.trim(), "mailtap");
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&gz[0]).unwrap()),
        &mut plain,
    )
    .unwrap();
    let got: Vec<String> = plain
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let host = tempfile::tempdir().unwrap();
    let (o, _) = run(&[
        "read",
        "--no-progress",
        "-o",
        host.path().to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!got.is_empty(), "no smtp.log rows in the chroot");
    // Rows are written per worker shard: compare them as sets. Connection
    // and file uids differ between the chroot and the host (their seed
    // differs), so the uid (second) and fuids (last) columns are left out.
    let strip = |rows: Vec<String>| -> Vec<String> {
        rows.iter()
            .map(|r| {
                let mut f: Vec<&str> = r.split('\t').collect();
                f.remove(1);
                f.pop();
                f.join("\t")
            })
            .collect()
    };
    let (mut got, mut want) = (strip(got), strip(rows(host.path(), "smtp.log")));
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "smtp.log rows in the chroot vs host");
    assert!(
        got == want,
        "smtp.log rows differ from the host's mailtap read"
    );
    eprintln!("deb: smtp.log {} rows as user mailtap", got.len());

    // 8. Remove keeps the conffiles and logs; purge removes them.
    ok(&mut chroot(&root, &["dpkg", "-r", "mailtap"]));
    assert!(!exists(&root, "/usr/bin/mailtap"));
    assert!(!exists(&root, "/lib/systemd/system/mailtap.service"));
    assert!(!exists(&root, "/usr/share/man/man1/mailtap.1.gz"));
    assert!(exists(&root, "/etc/mailtap/mailtap.toml"));
    assert!(gz[0].exists(), "dpkg -r removed the logs");
    ok(&mut chroot(&root, &["dpkg", "-P", "mailtap"]));
    for p in [
        "/etc/mailtap",
        "/etc/default/mailtap",
        "/var/log/mailtap",
        "/var/lib/mailtap",
        "/etc/systemd/system/multi-user.target.wants/mailtap.service",
    ] {
        assert!(
            root.join(p.trim_start_matches('/'))
                .symlink_metadata()
                .is_err(),
            "{p} left after purge"
        );
    }
    let o = out(&mut chroot(&root, &["dpkg-query", "-W", "mailtap"]));
    assert!(
        !o.status.success(),
        "mailtap still known to dpkg after purge"
    );
    ok(Command::new("rm").arg("-rf").arg(&root));
    eprintln!("deb: install, run, remove and purge in {:?}", t0.elapsed());
}
