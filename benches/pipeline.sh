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
  "$BIN" gen -o "$CAP" --size "$SIZE" --concurrency "$CONC" --seed 42
fi
BYTES=$(stat -c %s "$CAP")
# Warm the page cache so every run reads from memory.
cat "$CAP" > /dev/null

row() { # name, "wall peakKiB user sys", packets
  set -- "$1" $2 "$3"
  awk -v n="$1" -v s="$2" -v k="$3" -v u="$4" -v y="$5" -v p="$6" -v b="$BYTES" 'BEGIN {
    cpu = u + y; if (cpu <= 0) cpu = 0.01
    printf "| %s | %.2f | %.2f | %.0f | %.2f | %.2f | %.0f |\n", n, s, cpu, p / s, b * 8 / s / 1e9, b * 8 / cpu / 1e9, k / 1024 }'
}

echo "capture: $CAP ($BYTES bytes, concurrency $CONC)"
echo
echo "| run | wall s | CPU s | packets/s | Gbit/s | Gbit/s per CPU-second | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
SUMS=()
for W in 1 2; do
  rm -rf "$OUT/logs-w$W"
  /usr/bin/time -o "$OUT/time-w$W.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w "$W" -o "$OUT/logs-w$W" "$CAP" 2>"$OUT/summary-w$W.txt"
  T=$(tail -1 "$OUT/time-w$W.txt")
  PKTS=$(sed -n 's/^mailtap: \([0-9]*\) packets.*/\1/p' "$OUT/summary-w$W.txt")
  SUMS+=("$(grep '^mailtap:' "$OUT/summary-w$W.txt")")
  row "mailtap read -w $W" "$T" "$PKTS"
done
/usr/bin/time -o "$OUT/time-tcpdump.txt" -f "%e %M %U %S" tcpdump -r "$CAP" -w /dev/null 2>/dev/null
T=$(tail -1 "$OUT/time-tcpdump.txt")
row "tcpdump -r X -w /dev/null (floor)" "$T" "$PKTS"
echo
printf '%s\n' "${SUMS[@]}"
