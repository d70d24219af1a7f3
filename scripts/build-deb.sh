#!/usr/bin/env bash
# Builds the Debian package of mailtap (docs/deploy.md, "Debian package"):
#   bash scripts/build-deb.sh
# 1. the release binary (cargo build --release, a no-op when up to date),
# 2. the man pages from the clap definitions (`mailtap man`, hidden), gzipped
#    into $TARGET/release/man/ (cargo-deb's assets take them from there),
# 3. the .deb with cargo-deb (installed with `cargo install cargo-deb
#    --locked` when missing), written to $TARGET/debian/.
# $TARGET is CARGO_TARGET_DIR or ./target. The last line printed is the
# package's path; the line before it its size.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
fi

cargo build --release --locked --bin mailtap
man_dir="$target/release/man"
rm -rf "$man_dir"
"$target/release/mailtap" man "$man_dir" >/dev/null
# -n: no name or time stamp in the gzip header (reproducible).
gzip -9n "$man_dir"/*.1

# --no-build: the binary was built above. --strip: the release profile
# keeps debug info (68 MB binary); the package ships it stripped.
deb="$(cargo deb --no-build --strip --locked --output "$target/debian/" | tail -n 1)"
[[ -f "$deb" ]] || { echo "build-deb: cargo deb did not report a package ($deb)" >&2; exit 1; }
echo "build-deb: $(du -k "$deb" | cut -f1) KiB ($(stat -c %s "$deb") bytes), installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"
echo "$deb"
