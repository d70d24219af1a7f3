#!/usr/bin/env bash
# Whole-pipeline throughput of `mailtap read` on a generated capture, for 1
# and 2 workers, next to `tcpdump -r X -w /dev/null` (the I/O floor).
#
#   bash benches/pipeline.sh [SIZE] [CONCURRENCY]     (defaults: 500M 10000)
#
# Prints a markdown table (wall time, packets/s, Gbit/s of packet bytes,
# peak RSS) for docs/benchmarks.md. The capture is cached in bench-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-500M}
CONC=${2:-10000}
OUT=bench-out
mkdir -p "$OUT"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN=target/release/mailtap
CAP="$OUT/gen-$SIZE-c$CONC.pcap"
if [ ! -f "$CAP" ]; then
  /usr/bin/time -f "gen: %e s, peak %M KiB" "$BIN" gen -o "$CAP" --size "$SIZE" --concurrency "$CONC" --seed 42
fi
BYTES=$(stat -c %s "$CAP")
# Warm the page cache so every run reads from memory.
cat "$CAP" > /dev/null

row() { # name, wall seconds, peak KiB, packets
  awk -v n="$1" -v s="$2" -v k="$3" -v p="$4" -v b="$BYTES" 'BEGIN {
    printf "| %s | %.2f | %.0f | %.2f | %.0f |\n", n, s, p / s, b * 8 / s / 1e9, k / 1024 }'
}

PKTS=$(tcpdump -r "$CAP" -w /dev/null 2>&1 | awk '/packets/ {print $1; exit}' || true)
echo "capture: $CAP ($BYTES bytes, ${PKTS:-?} packets, concurrency $CONC)"
echo
echo "| run | wall s | packets/s | Gbit/s (file bytes) | peak RSS MiB |"
echo "|---|---|---|---|---|"
T=$( { /usr/bin/time -f "%e %M" tcpdump -r "$CAP" -w /dev/null 2>/dev/null; } 2>&1 | tail -1 )
row "tcpdump -r X -w /dev/null (floor)" ${T% *} ${T#* } "${PKTS:-0}"
for W in 1 2; do
  rm -rf "$OUT/logs-w$W"
  T=$( { /usr/bin/time -f "%e %M" "$BIN" read --no-progress -w "$W" -o "$OUT/logs-w$W" "$CAP" 2>"$OUT/summary-w$W.txt"; } 2>&1 | tail -1 )
  row "mailtap read -w $W" ${T% *} ${T#* } "${PKTS:-0}"
done
echo
for W in 1 2; do echo "w$W: $(grep '^mailtap:' "$OUT/summary-w$W.txt")"; done
