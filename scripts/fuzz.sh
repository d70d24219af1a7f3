#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), starting
# from its corpus and the committed seeds in fuzz/seeds/.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1 (the only toolchain this project can install).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cargo fuzz list)
cargo fuzz build -O
for t in "${TARGETS[@]}"; do
  echo "fuzz: $t for ${SECS}s"
  log=$(mktemp)
  rc=0
  # The corpus (new inputs land there) and the committed seeds
  # (scripts/fuzz-seeds.py) beside it.
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  cargo fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$SECS" -rss_limit_mb=2048 >"$log" 2>&1 || rc=$?
  grep -E '^(Done|==[0-9]+==|SUMMARY)|panicked' "$log" || true
  # Coverage as libFuzzer counts it: `cov` = edges reached, `ft` =
  # features, `corp` = inputs kept (the seeds' share shows in INITED).
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | sed "s/^/fuzz: $t: /" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: $t FAILED (crash input under fuzz/artifacts/$t)"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzz: all targets clean"
