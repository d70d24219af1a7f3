#!/usr/bin/env bash
# Live-capture throughput: replays a generated mail capture into a veth
# with tcpreplay at rising rates (--mbps), then at --topspeed, once per
# capture mode, and reports for each run what was sent, what mailtap
# captured, every drop counter, and mailtap's CPU time per packet.
#
#   bash benches/live.sh [SIZE] [RATES] [MODES] [QUEUES]
#     SIZE    generated capture size            (default 200M)
#     RATES   Mbit/s steps before top speed     (default "500 1000 2000")
#     MODES   capture modes                     (default "af-xdp:native af-xdp:skb
#             af-packet tcpdump suricata"); tcpdump and suricata give
#             side-by-side figures and run only when installed
#     QUEUES  veth queues = mailtap workers     (default 1)
#   MAILTAP_ARGS (environment): extra `mailtap live` arguments, e.g.
#     MAILTAP_ARGS="--set live.xdp_rx_ring=8192"
#
# Needs root (veth, netns, XDP). The sender (tcpreplay, and the veth's
# receive softirq that runs in its context) is pinned to core 0 and the
# mailtap workers to the other cores, so the figures say what one worker
# core sustains while the generator has the other. A run is lossless when
# mailtap captured every packet tcpreplay sent, tcpreplay reported no
# failed send, the kernel's softnet backlog dropped nothing, and every
# mailtap drop counter is zero.
#
# Prints a markdown table for docs/benchmarks.md; raw outputs stay in
# bench-out/live-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-200M}
RATES=${2:-"500 1000 2000"}
MODES=${3:-"af-xdp:native af-xdp:skb af-packet tcpdump suricata"}
QUEUES=${4:-1}
if [ "$(id -u)" -ne 0 ]; then
  echo "benches/live.sh: needs root (network namespaces, veth, XDP)" >&2
  exit 1
fi
OUT=bench-out
mkdir -p "$OUT"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/mailtap
CAP="$OUT/gen-v3-$SIZE-c1000.pcap"
[ -f "$CAP" ] || "$BIN" gen -o "$CAP" --size "$SIZE" --concurrency 1000 --seed 7 --pop3-percent 10 2>/dev/null
# tcpreplay -K preloads the capture into memory; staging it on tmpfs also
# keeps the disk out of the generator's way.
STAGE=/dev/shm/mailtap-live-bench.pcap
cp "$CAP" "$STAGE"
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then CORES="1-$((NCPU - 1))"; else CORES=0; fi

NS=mtb$$
A=mtb$$a
B=mtb$$b
cleanup() {
  ip link del "$A" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -f "$STAGE"
}
trap cleanup EXIT
ip netns add "$NS"
ip link add "$A" numtxqueues "$QUEUES" numrxqueues "$QUEUES" type veth \
  peer name "$B" numtxqueues "$QUEUES" numrxqueues "$QUEUES"
ip link set "$B" netns "$NS"
sysctl -qw "net.ipv6.conf.$A.disable_ipv6=1"
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$B.disable_ipv6=1"
ip link set "$A" up
ip netns exec "$NS" ip link set "$B" up
ip netns exec "$NS" ip link set lo up

softnet_drops() { # sum of the per-CPU backlog drop column (hexadecimal)
  local sum=0 processed dropped rest
  while read -r processed dropped rest; do sum=$((sum + 16#$dropped)); done </proc/net/softnet_stat
  echo "$sum"
}

# run MODE RATE: one replay; appends a table row.
run() {
  local mode=$1 rate=$2 dir="$OUT/live-${1//:/-}-$2"
  rm -rf "$dir"; mkdir -p "$dir"
  local cap=${mode%%:*} xdp=${mode#*:} pid
  local sn0; sn0=$(softnet_drops)
  case "$cap" in
    af-xdp|af-packet)
      local extra=()
      [ "$cap" = af-xdp ] && extra=(--xdp-mode "$xdp")
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S" \
        "$BIN" live -i "$A" --capture "$cap" "${extra[@]}" --cores "$CORES" \
        --stats-interval 60 -o "$dir/logs" ${MAILTAP_ARGS:-} 2>"$dir/mailtap.txt" &
      pid=$!
      for _ in $(seq 100); do [ -f "$dir/logs/stats.log" ] && break; sleep 0.05; done
      ;;
    tcpdump)
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S" \
        taskset -c "$CORES" tcpdump -i "$A" -B 262144 -s 0 -w /dev/null 2>"$dir/mailtap.txt" &
      pid=$!
      ;;
    suricata)
      mkdir -p "$dir/logs"
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S" \
        taskset -c "$CORES" suricata --af-packet="$A" -l "$dir/logs" -k none \
        --set "af-packet.0.interface=$A" 2>"$dir/mailtap.txt" >/dev/null &
      pid=$!
      sleep 8
      ;;
  esac
  sleep 1
  local speed=(--mbps="$rate")
  [ "$rate" = top ] && speed=(--topspeed)
  ip netns exec "$NS" taskset -c 0 tcpreplay -K -i "$B" "${speed[@]}" "$STAGE" >"$dir/tcpreplay.txt" 2>&1 || true
  sleep 2
  # The shell's job is /usr/bin/time; signal the capture process itself.
  pkill -INT -P "$pid" 2>/dev/null || kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local sn1; sn1=$(softnet_drops)
  local sent failed mbps
  sent=$(awk '/Actual:/ {print $2; exit}' "$dir/tcpreplay.txt")
  failed=$(awk '/Failed packets:/ {print $3; exit}' "$dir/tcpreplay.txt")
  mbps=$(awk '/Rated:/ {print $4; exit}' "$dir/tcpreplay.txt")
  local got drops
  case "$cap" in
    af-xdp|af-packet)
      got=$(awk '/^mailtap: [0-9]+ packets/ {print $2; exit}' "$dir/mailtap.txt")
      drops=$(sed -n 's/^mailtap: [0-9]* packets.*; drops: \(.*\)$/\1/p' "$dir/mailtap.txt" | head -1)
      ;;
    tcpdump)
      got=$(awk '/packets captured/ {print $1; exit}' "$dir/mailtap.txt")
      drops="kernel=$(awk '/dropped by kernel/ {print $1; exit}' "$dir/mailtap.txt")"
      [ "$drops" = "kernel=0" ] && drops=none
      ;;
    suricata)
      got=$(grep -o '"kernel_packets": *[0-9]*' "$dir/logs/eve.json" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || echo 0)
      drops=$(grep -o '"kernel_drops": *[0-9]*' "$dir/logs/eve.json" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || echo "?")
      [ "$drops" = 0 ] && drops=none
      ;;
  esac
  got=${got:-0}; sent=${sent:-0}; failed=${failed:-0}; drops=${drops:-?}
  local sn=$((sn1 - sn0))
  local lossless=no
  if [ "$got" -eq "$sent" ] && [ "$failed" -eq 0 ] && [ "$sn" -eq 0 ] && [ "$drops" = none ]; then
    lossless=yes
  fi
  set -- $(cat "$dir/time.txt" | tail -1)
  local cpu_ns
  cpu_ns=$(awk -v u="$2" -v s="$3" -v p="$got" 'BEGIN { if (p > 0) printf "%.0f", (u + s) * 1e9 / p; else print "-" }')
  local pps
  pps=$(awk '/Rated:/ {printf "%.0f", $6 / 1000; exit}' "$dir/tcpreplay.txt")
  printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" \
    "$mode" "$rate" "${mbps:-?}" "$pps" "$sent" "$got" "$drops" "$sn" "$cpu_ns" "$lossless"
  [ "$lossless" = yes ]
}

echo "capture: $CAP ($(stat -c %s "$STAGE") bytes); veth $A with $QUEUES queue(s); mailtap cores $CORES, tcpreplay core 0"
echo
echo "| mode | target Mbit/s | achieved Mbit/s | kpkt/s | sent | captured | mailtap drops | softnet drops | CPU ns/pkt | lossless |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for mode in $MODES; do
  case "$mode" in
    tcpdump) command -v tcpdump >/dev/null || continue ;;
    suricata) command -v suricata >/dev/null || { echo "| suricata | not installed | | | | | | | | |"; continue; } ;;
  esac
  for rate in $RATES top; do
    run "$mode" "$rate" || true
  done
done
