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
for p in build-essential pkg-config tcpdump time ca-certificates \
         clang llvm m4 libelf-dev zlib1g-dev libpcap-dev \
         tcpreplay iproute2 ethtool \
         cmake libcurl4-openssl-dev libsasl2-dev libssl-dev; do
  pkg_installed "$p" || need_apt+=("$p")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
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
