#!/usr/bin/env bash
# Live-capture throughput and loss: for every traffic mix, replays a
# generated mail capture into a veth with tcpreplay (at each rate of RATES;
# "top" is tcpreplay --topspeed), once per capture mode, and reports per run
# what was sent and captured, every kernel drop counter, and mailtap's cost.
#
#   bash benches/live.sh [MIXES] [RATES] [MODES] [SIZE] [QUEUES]
#     MIXES   traffic mixes, `mailtap gen --mix M`  (default "small mta attach")
#     RATES   Mbit/s steps, "top" for --topspeed    (default "top")
#     MODES   capture modes                         (default "af-xdp:native
#             af-xdp:skb af-packet tcpdump suricata"); tcpdump (the capture
#             floor: -w /dev/null) and suricata run only when installed
#     SIZE    generated capture size per mix        (default 100M: 595 k
#             packets of the small mix)
#     QUEUES  veth queues = mailtap workers         (default 1)
#   MAILTAP_ARGS (environment): extra `mailtap live` arguments, e.g.
#     MAILTAP_ARGS="--set live.xdp_busy_poll=on"
#
# With the defaults: 3 mixes x 4 modes, about 10 s per run, 2-3 minutes.
#
# Needs root (veth, netns, XDP). The sender (tcpreplay, and the veth's
# receive softirq that runs in its context) is pinned to core 0 and the
# mailtap workers to the other cores. Columns:
#   Gbit/s, kpkt/s   what tcpreplay achieved
#   kernel drops     the socket's own counters, summed over the queues:
#                    AF_XDP XDP_STATISTICS rx_dropped + rx_ring_full (and
#                    "ring full" events: rx_ring_full + rx_fill_ring_empty_descs),
#                    AF_PACKET PACKET_STATISTICS tp_drops (tp_freeze_q_cnt),
#                    tcpdump "dropped by kernel"
#   softnet          drops in the kernel's per-CPU backlog (/proc/net/softnet_stat)
#   bypassed         packets of connections bypassed after their TLS
#                    handshake that the kernel (XDP program or AF_PACKET
#                    socket filter) counted and kept from mailtap; they are
#                    included in "captured" (mailtap accounts for them in
#                    conn.log)
#   CPU ns/pkt       user+sys of the whole capture process (all threads,
#                    start-up and idle seconds included) / packets captured
#   Gbit/s/CPU-s     bits captured / 1e9 / that CPU time
#   peak RSS         of the capture process (MiB; AF_XDP's UMEM is in it)
# A run is lossless when every packet tcpreplay sent was captured, tcpreplay
# failed no send, softnet dropped nothing and every drop counter is zero.
#
# Prints a markdown table for docs/benchmarks.md; raw outputs stay in
# bench-out/live-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
MIXES=${1:-"small mta attach"}
RATES=${2:-"top"}
MODES=${3:-"af-xdp:native af-xdp:skb af-packet tcpdump suricata"}
SIZE=${4:-100M}
QUEUES=${5:-1}
if [ "$(id -u)" -ne 0 ]; then
  echo "benches/live.sh: needs root (network namespaces, veth, XDP)" >&2
  exit 1
fi
OUT=bench-out
mkdir -p "$OUT"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/mailtap
"$BIN" gen --help 2>/dev/null | grep -q -- '--mix' || {
  echo "benches/live.sh: this mailtap gen has no --mix" >&2
  exit 1
}

# capture MIX: prints the path of the mix's capture, generating it once.
capture() {
  local cap="$OUT/gen-$1-$SIZE.pcap"
  [ -f "$cap" ] || "$BIN" gen -o "$cap" --mix "$1" --size "$SIZE" --concurrency 1000 --seed 7 >/dev/null 2>&1
  echo "$cap"
}

NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then CORES="1-$((NCPU - 1))"; else CORES=0; fi
STAGE=/dev/shm/mailtap-live-bench.pcap
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

# sum_queues LABEL FILE: the sum over mailtap's per-queue summary lines of
# the number after LABEL ("kernel drops", "ring full").
sum_queues() {
  grep -o "$1 [0-9]*" "$2" | awk '{ s += $NF } END { print s + 0 }'
}

# run MIX MODE RATE: one replay of the staged capture; prints a table row.
run() {
  local mix=$1 mode=$2 rate=$3 dir="$OUT/live-$1-${2//:/-}-$3"
  rm -rf "$dir"; mkdir -p "$dir"
  local cap=${mode%%:*} xdp=${mode#*:} pid
  local sn0; sn0=$(softnet_drops)
  case "$cap" in
    af-xdp|af-packet)
      local extra=()
      [ "$cap" = af-xdp ] && extra=(--xdp-mode "$xdp")
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S %M" \
        "$BIN" live -i "$A" --capture "$cap" "${extra[@]}" --cores "$CORES" \
        --stats-interval 1 -o "$dir/logs" ${MAILTAP_ARGS:-} 2>"$dir/mailtap.txt" &
      pid=$!
      for _ in $(seq 200); do [ -f "$dir/logs/stats.log" ] && break; sleep 0.05; done
      ;;
    tcpdump)
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S %M" \
        taskset -c "$CORES" tcpdump -i "$A" -B 262144 -s 0 -w /dev/null 2>"$dir/mailtap.txt" &
      pid=$!
      ;;
    suricata)
      mkdir -p "$dir/logs"
      /usr/bin/time -o "$dir/time.txt" -f "%e %U %S %M" \
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
  local sent failed mbps pps
  sent=$(awk '/Actual:/ {print $2; exit}' "$dir/tcpreplay.txt")
  failed=$(awk '/Failed packets:/ {print $3; exit}' "$dir/tcpreplay.txt")
  mbps=$(awk '/Rated:/ {print $4; exit}' "$dir/tcpreplay.txt")
  pps=$(awk '/Rated:/ {printf "%.0f", $6 / 1000; exit}' "$dir/tcpreplay.txt")
  local got bytes kdrops=0 rfull=- others=none bypassed=- bp bb
  case "$cap" in
    af-xdp|af-packet)
      got=$(awk '/^mailtap: [0-9]+ packets/ {print $2; exit}' "$dir/mailtap.txt")
      bytes=$(sed -n 's/^mailtap: [0-9]* packets (\([0-9]*\) bytes.*/\1/p' "$dir/mailtap.txt" | head -1)
      # "...; P packets (B bytes) of bypassed connections kept from ...":
      # B counts IP bytes; frames add a 14-byte Ethernet header.
      read -r bp bb < <(sed -n 's/.* \([0-9]*\) packets (\([0-9]*\) bytes) of bypassed connections kept from.*/\1 \2/p' "$dir/mailtap.txt" |
        awk '{ p += $1; b += $2 } END { print p + 0, b + 0 }')
      bypassed=$bp
      got=$(( ${got:-0} + bp ))
      bytes=$(( ${bytes:-0} + bb + 14 * bp ))
      kdrops=$(sum_queues "kernel drops" "$dir/mailtap.txt")
      rfull=$(sum_queues "ring full" "$dir/mailtap.txt")
      # Every drop counter mailtap names, but the two shown in their own columns.
      others=$(sed -n 's/^mailtap: [0-9]* packets.*; drops: \(.*\)$/\1/p' "$dir/mailtap.txt" | head -1 |
        tr ' ' '\n' | grep -v -e '^capture.kernel_drops=' -e '^capture.ring_full=' -e '^$' | paste -sd' ' || true)
      others=${others:-none}
      ;;
    tcpdump)
      got=$(awk '/packets captured/ {print $1; exit}' "$dir/mailtap.txt")
      kdrops=$(awk '/dropped by kernel/ {print $1; exit}' "$dir/mailtap.txt")
      ;;
    suricata)
      got=$(grep -o '"kernel_packets": *[0-9]*' "$dir/logs/eve.json" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || echo 0)
      kdrops=$(grep -o '"kernel_drops": *[0-9]*' "$dir/logs/eve.json" 2>/dev/null | tail -1 | grep -o '[0-9]*$' || echo "?")
      ;;
  esac
  got=${got:-0}; sent=${sent:-0}; failed=${failed:-0}; kdrops=${kdrops:-?}
  # tcpdump and suricata report no bytes: take tcpreplay's when all arrived.
  if [ -z "${bytes:-}" ]; then
    bytes=$(awk '/Actual:/ {gsub(/\(/, "", $4); print $4; exit}' "$dir/tcpreplay.txt")
  fi
  local sn=$((sn1 - sn0))
  local lossless=no
  if [ "$got" -eq "$sent" ] && [ "$failed" -eq 0 ] && [ "$sn" -eq 0 ] && [ "$kdrops" = 0 ] &&
    { [ "$rfull" = - ] || [ "$rfull" = 0 ]; } && [ "$others" = none ]; then
    lossless=yes
  fi
  local t; t=$(tail -1 "$dir/time.txt")
  set -- $t
  local row
  row=$(awk -v u="$2" -v s="$3" -v rss="$4" -v p="$got" -v b="${bytes:-0}" -v m="${mbps:-0}" 'BEGIN {
    cpu = u + s
    printf "%.3f|%s|%s|%.0f", m / 1000, (p > 0 ? sprintf("%.0f", cpu * 1e9 / p) : "-"),
      (cpu > 0 ? sprintf("%.2f", b * 8 / 1e9 / cpu) : "-"), rss / 1024 }')
  IFS='|' read -r gbps cpu_ns per_cpu rss_mib <<<"$row"
  printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" \
    "$mix" "$mode" "$rate" "$gbps" "${pps:-?}" "$sent" "$got" "$bypassed" "$kdrops" "$rfull" "$sn" \
    "$others" "$cpu_ns" "$per_cpu" "$rss_mib" "$lossless"
  [ "$lossless" = yes ]
}

echo "veth $A with $QUEUES queue(s); mailtap cores $CORES, tcpreplay core 0${MAILTAP_ARGS:+; MAILTAP_ARGS=$MAILTAP_ARGS}"
echo
echo "| mix | mode | target Mbit/s | Gbit/s | kpkt/s | sent | captured | bypassed | kernel drops | ring full | softnet drops | other drops | CPU ns/pkt | Gbit/s per CPU-s | peak RSS MiB | lossless |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for mix in $MIXES; do
  c=$(capture "$mix")
  cp "$c" "$STAGE"
  echo "mix $mix: $c, $(stat -c %s "$STAGE") bytes" >&2
  for mode in $MODES; do
    case "$mode" in
      tcpdump) command -v tcpdump >/dev/null || continue ;;
      suricata) command -v suricata >/dev/null || { echo "| $mix | suricata | not installed | | | | | | | | | | | | | |"; continue; } ;;
    esac
    for rate in $RATES; do
      run "$mix" "$mode" "$rate" || true
    done
  done
done
