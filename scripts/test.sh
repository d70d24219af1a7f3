#!/usr/bin/env bash
# Runs mailtap's whole test suite: unit, property, integration and the Zeek
# conformance tests (which skip, saying so, when ../shared is absent).
# Ends with one line totalling every cargo test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || rc=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
