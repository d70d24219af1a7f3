#!/usr/bin/env bash
# Whole-pipeline throughput of `mailtap read` on a generated capture:
# 1 and 2 workers with the default configuration, one worker without file
# hashes, one with all three hashes (MD5, SHA-1, SHA-256, as Zeek's
# hash-all-files), one with message extraction on tmpfs and all three
# hashes (its time relative to the all-hashes run is the cost of
# extraction), one with every record also produced to Kafka (its time
# relative to the default one-worker run is the cost of the Kafka sink),
# and `tcpdump -r X -w /dev/null` (the I/O floor).
#
#   bash benches/pipeline.sh [SIZE] [CONCURRENCY] [POP3_PERCENT] [MIXES]
#                                    (defaults: 500M 10000 0 "small mta attach")
#
# First, for every traffic mix of `mailtap gen --mix` (docs/benchmarks.md,
# "Traffic mixes"), one and two workers with the default configuration and
# the tcpdump floor. Then the detailed runs below on the attach mix.
#
# Prints a markdown table (wall time, packets/s, Gbit/s of packet bytes,
# peak RSS) for docs/benchmarks.md. The capture is cached in bench-out/
# (the name carries the generator's version: delete old ones). The Kafka
# run starts librdkafka's mock cluster (mailtap-kafka's mock-broker
# example) on loopback. The extraction directory is
# /dev/shm/mailtap-bench-extract when /dev/shm is a tmpfs with room for twice the capture, else a tmpfs mounted at
# bench-out/extract (needs root); it is emptied before and after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-500M}
CONC=${2:-10000}
POP3=${3:-0}
MIXES=${4:-small mta attach}
OUT=bench-out
mkdir -p "$OUT"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN=target/release/mailtap
# v2: the generator of issue 3 (rejected messages, LF-only lines, POP3).
CAP="$OUT/gen-v2-$SIZE-c$CONC-p$POP3.pcap"
if [ ! -f "$CAP" ]; then
  "$BIN" gen --mix attach -o "$CAP" --size "$SIZE" --concurrency "$CONC" --seed 42 --pop3-percent "$POP3"
fi
BYTES=$(stat -c %s "$CAP")
# Read the capture from memory: stage it on /dev/shm when there is room
# (some VMs keep no page cache, so "warming" it does nothing).
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && \
   [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((BYTES * 4)) ]; then
  cp "$CAP" /dev/shm/mailtap-bench.pcap
  CAP=/dev/shm/mailtap-bench.pcap
  trap 'rm -f /dev/shm/mailtap-bench.pcap' EXIT
else
  cat "$CAP" > /dev/null
fi

row() { # name, "wall peakKiB user sys", packets
  set -- "$1" $2 "$3"
  awk -v n="$1" -v s="$2" -v k="$3" -v u="$4" -v y="$5" -v p="$6" -v b="$BYTES" 'BEGIN {
    cpu = u + y; if (cpu <= 0) cpu = 0.01
    printf "| %s | %.2f | %.2f | %.0f | %.0f | %.2f | %.2f | %.0f |\n", n, s, cpu, p / s, cpu * 1e9 / p, b * 8 / s / 1e9, b * 8 / cpu / 1e9, k / 1024 }'
}
HEADER="| run | wall s | CPU s (user+sys) | packets/s | CPU ns/packet | Gbit/s | Gbit/s per CPU-second | peak RSS MiB |
|---|---|---|---|---|---|---|---|"

# Every mix: -w 1, -w 2 and the tcpdump floor.
MAIN_CAP=$CAP
for MIX in $MIXES; do
  MCAP="$OUT/mix-$MIX-$SIZE-c$CONC.pcap"
  [ -f "$MCAP" ] || "$BIN" gen --mix "$MIX" -o "$MCAP" --size "$SIZE" --concurrency "$CONC" --seed 42
  BYTES=$(stat -c %s "$MCAP")
  RUNCAP=$MCAP
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && \
     [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((BYTES * 4)) ]; then
    cp "$MCAP" /dev/shm/mailtap-bench-mix.pcap
    RUNCAP=/dev/shm/mailtap-bench-mix.pcap
  fi
  echo "mix $MIX: $MCAP ($BYTES bytes, concurrency $CONC)"
  echo
  echo "$HEADER"
  for W in 1 2; do
    rm -rf "$OUT/logs-mix"
    /usr/bin/time -o "$OUT/time-mix.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w "$W" -o "$OUT/logs-mix" "$RUNCAP" 2>"$OUT/summary-mix.txt"
    PKTS=$(sed -n 's/^mailtap: \([0-9]*\) packets.*/\1/p' "$OUT/summary-mix.txt")
    row "$MIX: mailtap read -w $W" "$(tail -1 "$OUT/time-mix.txt")" "$PKTS"
  done
  /usr/bin/time -o "$OUT/time-mix.txt" -f "%e %M %U %S" tcpdump -r "$RUNCAP" -w /dev/null 2>/dev/null
  row "$MIX: tcpdump -r X -w /dev/null (floor)" "$(tail -1 "$OUT/time-mix.txt")" "$PKTS"
  grep '^mailtap:' "$OUT/summary-mix.txt" || true
  rm -f /dev/shm/mailtap-bench-mix.pcap
  echo
done
CAP=$MAIN_CAP
BYTES=$(stat -c %s "$CAP")
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && \
   [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt $((BYTES * 4)) ]; then
  CAP=/dev/shm/mailtap-bench.pcap
fi

echo "detailed runs, attach mix: $CAP ($BYTES bytes, concurrency $CONC)"
echo
echo "$HEADER"
SUMS=()
for W in 1 2; do
  rm -rf "$OUT/logs-w$W"
  /usr/bin/time -o "$OUT/time-w$W.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w "$W" -o "$OUT/logs-w$W" "$CAP" 2>"$OUT/summary-w$W.txt"
  T=$(tail -1 "$OUT/time-w$W.txt")
  PKTS=$(sed -n 's/^mailtap: \([0-9]*\) packets.*/\1/p' "$OUT/summary-w$W.txt")
  SUMS+=("$(grep '^mailtap:' "$OUT/summary-w$W.txt")")
  row "mailtap read -w $W" "$T" "$PKTS"
done
# One worker without file hashes (the files.log hash columns off), to show
# what hashing costs on its own.
rm -rf "$OUT/logs-n1"
/usr/bin/time -o "$OUT/time-n1.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w 1 -o "$OUT/logs-n1" \
  --set 'files.hashes=[]' "$CAP" 2>"$OUT/summary-n1.txt"
T=$(tail -1 "$OUT/time-n1.txt")
SUMS+=("$(grep '^mailtap:' "$OUT/summary-n1.txt")")
row "mailtap read -w 1 --set files.hashes=[]" "$T" "$PKTS"
# One worker with all three hashes: the baseline of the extraction run.
rm -rf "$OUT/logs-h1"
/usr/bin/time -o "$OUT/time-h1.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w 1 -o "$OUT/logs-h1" \
  --set 'files.hashes=["md5","sha1","sha256"]' "$CAP" 2>"$OUT/summary-h1.txt"
T=$(tail -1 "$OUT/time-h1.txt")
SUMS+=("$(grep '^mailtap:' "$OUT/summary-h1.txt")")
row "mailtap read -w 1 --set files.hashes=[md5,sha1,sha256]" "$T" "$PKTS"

# Extraction: one worker, every message to tmpfs, all three hashes.
EX=/dev/shm/mailtap-bench-extract
shm_ok() {
  [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || return 1
  local avail; avail=$(df --output=avail -B1 /dev/shm | tail -1)
  [ "$avail" -gt $((BYTES * 2)) ]
}
if ! shm_ok; then
  EX="$OUT/extract"
  mkdir -p "$EX"
  mountpoint -q "$EX" || mount -t tmpfs -o size=$((BYTES * 3 / 1048576 + 256))m tmpfs "$EX"
fi
mkdir -p "$EX"
find "${EX:?}" -mindepth 1 -delete
rm -rf "$OUT/logs-x1"
/usr/bin/time -o "$OUT/time-x1.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w 1 -o "$OUT/logs-x1" \
  --extract-dir "$EX" --set 'files.hashes=["md5","sha1","sha256"]' "$CAP" 2>"$OUT/summary-x1.txt" \
  || { cat "$OUT/summary-x1.txt" >&2; exit 1; }
T=$(tail -1 "$OUT/time-x1.txt")
SUMS+=("$(grep '^mailtap:' "$OUT/summary-x1.txt")")
row "mailtap read -w 1 --extract-dir (tmpfs) + md5/sha1/sha256" "$T" "$PKTS"
EML=$(find "$EX" -name '*.eml' | wc -l)
EXBYTES=$(du -sb "$EX" | cut -f1)
find "${EX:?}" -mindepth 1 -delete
ratio() { awk -v a="$(cut -d' ' -f1 "$1")" -v b="$(cut -d' ' -f1 "$2")" 'BEGIN { printf "%.2f", a / b }'; }
RATIO=$(ratio "$OUT/time-x1.txt" "$OUT/time-h1.txt")
RATIO_D=$(ratio "$OUT/time-x1.txt" "$OUT/time-w1.txt")
# Kafka: one worker, default configuration, every record also produced to
# librdkafka's mock cluster on loopback (a real Kafka-protocol broker in
# another process; acks=all, idempotence, lz4: the sink's defaults).
cargo build --release --quiet -p mailtap-kafka --example mock-broker
KFIFO="$OUT/mock-broker.stdin"
rm -f "$KFIFO"; mkfifo "$KFIFO"
target/release/examples/mock-broker 1 3 <"$KFIFO" >"$OUT/mock-broker.out" 2>"$OUT/mock-broker.err" &
KPID=$!
exec 9>"$KFIFO"
for _ in $(seq 100); do [ -s "$OUT/mock-broker.out" ] && break; sleep 0.05; done
KBS=$(head -1 "$OUT/mock-broker.out")
rm -rf "$OUT/logs-k1" "$OUT/kafka-spill"
/usr/bin/time -o "$OUT/time-k1.txt" -f "%e %M %U %S" "$BIN" read --no-progress -w 1 -o "$OUT/logs-k1" \
  --kafka "$KBS" --set "kafka.spill_dir=\"$OUT/kafka-spill\"" "$CAP" 2>"$OUT/summary-k1.txt" \
  || { cat "$OUT/summary-k1.txt" >&2; exit 1; }
exec 9>&-
wait "$KPID" 2>/dev/null || true
rm -f "$KFIFO"
T=$(tail -1 "$OUT/time-k1.txt")
SUMS+=("$(grep '^mailtap:' "$OUT/summary-k1.txt")")
row "mailtap read -w 1 --kafka (mock cluster, loopback)" "$T" "$PKTS"
KREC=$(sed -n 's/^mailtap: Kafka: \([0-9]*\) records.*/\1/p' "$OUT/summary-k1.txt")
KRATIO=$(ratio "$OUT/time-k1.txt" "$OUT/time-w1.txt")
KRATE=$(awk -v r="$KREC" -v t="$(cut -d' ' -f1 "$OUT/time-k1.txt")" 'BEGIN { printf "%.0f", r / t }')
/usr/bin/time -o "$OUT/time-tcpdump.txt" -f "%e %M %U %S" tcpdump -r "$CAP" -w /dev/null 2>/dev/null
T=$(tail -1 "$OUT/time-tcpdump.txt")
row "tcpdump -r X -w /dev/null (floor)" "$T" "$PKTS"
echo
echo "extraction: $EML .eml files, $EXBYTES bytes in $EX; wall time ${RATIO}x the same run without extraction (-w 1, all three hashes), ${RATIO_D}x the default run (-w 1, SHA-256 only)"
echo "kafka: $KREC records produced, $KRATE records/s over the whole run; wall time ${KRATIO}x the same run without Kafka (-w 1, default)"
printf '%s\n' "${SUMS[@]}"
