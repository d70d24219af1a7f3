#!/usr/bin/env bash
# Installs what mailtap needs to build, test and benchmark on Debian 12.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Build: a C toolchain for -sys crates; pkg-config.
# Live capture: xsk-rs builds a vendored libxdp/libbpf (clang, llvm, m4,
# libelf, zlib, and libpcap headers for pcap/dlt.h); clang also builds the
# XDP steering program in bpf/. iproute2 and ethtool set up interfaces.
# Tests and benchmarks: tcpreplay (replays captures into a veth), tcpdump
# (the I/O floor).
# Kafka sink: rdkafka's cmake-build compiles the bundled librdkafka (cmake,
# and the curl/SASL/OpenSSL headers its default features link against).
# tests/imap_dovecot.rs: a real IMAP server (Dovecot's imapd, with the
# imap_zlib plugin for COMPRESS=DEFLATE) driven by python3's imaplib and
# captured with tcpdump, all inside network namespaces of its own.
for p in build-essential pkg-config tcpdump time ca-certificates \
         clang llvm m4 libelf-dev zlib1g-dev libpcap-dev \
         tcpreplay iproute2 ethtool \
         cmake libcurl4-openssl-dev libsasl2-dev libssl-dev \
         dovecot-imapd python3 openssl; do
  pkg_installed "$p" || need_apt+=("$p")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Installing dovecot-imapd enables and (where systemd runs) starts the
# system's Dovecot, listening on 143/993 in the root namespace. The test
# starts its own Dovecot from a private configuration inside its own
# namespace and needs none of that: keep the system one from starting at
# boot and stop it if it runs, so a test machine does not serve IMAP.
# (`systemctl disable` works without a running systemd, e.g. in a
# container whose policy-rc.d kept the service from starting at all.)
if pkg_installed dovecot-core && have systemctl; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  for u in dovecot.socket dovecot.service; do
    if systemctl is-enabled --quiet "$u" 2>/dev/null; then
      $SUDO systemctl disable --quiet "$u" 2>/dev/null || echo "setup: could not disable $u" >&2
    fi
    if [ -d /run/systemd/system ] && systemctl is-active --quiet "$u" 2>/dev/null; then
      $SUDO systemctl stop "$u" || echo "setup: could not stop $u" >&2
    fi
  done
fi

if ! have cargo; then
  # Debian's own toolchain is the only one reachable without rustup's
  # servers; it must be recent enough for the workspace's rust-version.
  echo "cargo not found: installing Debian's rust toolchain" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq cargo rustc
fi

# libxdp keeps its multi-program dispatcher state in bpffs; without it
# libxdp falls back to a single program. Mount it when we may (root).
if [ "$(id -u)" -eq 0 ] && [ -d /sys/fs/bpf ] && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf || echo "setup: could not mount bpffs on /sys/fs/bpf (live AF_XDP capture falls back to one XDP program)" >&2
fi

# cargo-fuzz for scripts/fuzz.sh (from crates.io).
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet

echo "setup: ok ($(cargo --version))"
