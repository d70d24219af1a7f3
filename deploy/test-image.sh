#!/usr/bin/env bash
# Builds the container image offline (debootstrap base, host-built binary)
# and runs it as the AF_XDP DaemonSet runs: --network host, --read-only,
# --cap-drop all plus exactly the capabilities of
# deploy/kubernetes/daemonset-af-xdp.yaml, its seccomp profile, the config
# from deploy/kubernetes/configmap.yaml; against a veth pair in a network
# namespace. Replays the sample capture, checks /metrics, `podman stop`
# (SIGTERM): exit 0, logs complete and equal to `mailtap read` of the
# capture, no XDP program left; starts again, `podman kill -s KILL`, starts
# once more. Root; installs podman & co. via scripts/deploy-setup.sh.
#
#   bash deploy/test-image.sh            # ~15 s with the base image and binary built; ~4 min on a fresh machine
#   MAILTAP_BIN=path bash deploy/test-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t0=$SECONDS
say() { printf 'test-image [%3ds]: %s\n' $((SECONDS - t0)) "$*"; }
fail() { say "FAIL: $*"; exit 1; }

[[ $(id -u) == 0 ]] || { echo "test-image: skipped: needs root"; exit 0; }
bash scripts/deploy-setup.sh --image

work=$(mktemp -d /var/tmp/mailtap-image.XXXXXX)
ns=mtimg$$; ours=mtimg$$a; peer=mtimg$$b; name=mailtap-test-$$
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    ip link del "$ours" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# podman on this kind of host: runc (crun refuses the cgroup layout) and
# ulimits below the host's hard limits.
cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$work/containers.conf

base=localhost/debian:bookworm-slim
if ! podman image exists "$base"; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n "$mirror" ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    say "making $base with debootstrap from $mirror"
    rootfs=$work/rootfs
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$rootfs"
fi

bin=${MAILTAP_BIN:-}
if [[ -z "$bin" ]]; then
    say "cargo build --release"
    cargo build --release --bin mailtap >/dev/null 2>&1 || cargo build --release --bin mailtap
    bin=target/release/mailtap
fi
ctx=$work/context
mkdir -p "$ctx"
cp deploy/Dockerfile "$ctx/"
cp "$bin" "$ctx/mailtap"
strip --strip-debug "$ctx/mailtap"
say "podman build (runtime-prebuilt on $base)"
podman build --network host --target runtime-prebuilt --build-arg BASE_IMAGE=$base \
    -t localhost/mailtap:test -f "$ctx/Dockerfile" "$ctx" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log"; fail "podman build"; }
size=$(podman image inspect localhost/mailtap:test --format '{{.Size}}')
say "image localhost/mailtap:test: $((size / 1000000)) MB ($size bytes)"

# What the DaemonSet grants, read from the manifest.
caps=$(sed -n 's/^ *add: *\[\(.*\)\].*/\1/p' deploy/kubernetes/daemonset-af-xdp.yaml | tr -d ' ')
[[ -n "$caps" ]] || fail "no capabilities in daemonset-af-xdp.yaml"
capargs=()
IFS=, read -ra list <<<"$caps"
for c in "${list[@]}"; do capargs+=(--cap-add "$c"); done
profile=$(sed -n 's/^ *localhostProfile: *//p' deploy/kubernetes/daemonset-af-xdp.yaml)
seccomp=deploy/kubernetes/seccomp/$profile
[[ -f "$seccomp" ]] || fail "no seccomp profile $seccomp"
say "capabilities: $caps; seccomp: $seccomp"

mkdir -p "$work/etc" "$work/out"
python3 - "$work/etc/mailtap.toml" <<'PY'
import sys, yaml
cm = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))
open(sys.argv[1], "w").write(cm["data"]["mailtap.toml"])
PY

ip netns add "$ns"
ip link add "$ours" type veth peer name "$peer" netns "$ns"
echo 1 > /proc/sys/net/ipv6/conf/$ours/disable_ipv6 || true
ip netns exec "$ns" sh -c "echo 1 > /proc/sys/net/ipv6/conf/$peer/disable_ipv6" || true
ip link set "$ours" up
ip -n "$ns" link set "$peer" up

port=$((20000 + $$ % 20000))
start() { # $1: output subdirectory
    mkdir -p "$work/out/$1"
    # The image's user (65532, not root) writes the logs.
    chown 65532:65532 "$work/out/$1"
    podman run -d --name "$name" --network host --read-only --tmpfs /tmp \
        --cap-drop all "${capargs[@]}" --security-opt "seccomp=$seccomp" \
        -v "$work/etc:/etc/mailtap:ro" -v "$work/out/$1:/var/log/mailtap" \
        localhost/mailtap:test live --capture af-xdp -i "$ours" -c /etc/mailtap/mailtap.toml \
        -o /var/log/mailtap --metrics-listen "127.0.0.1:$port" --stats-interval 1 >/dev/null
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/metrics" -o "$work/metrics" 2>/dev/null; then
            ip -d link show "$ours" | grep -q "prog/xdp" || fail "$1: no XDP program attached"
            user=$(podman top "$name" user huser | awk 'NR==2 {print $1 "/" $2}')
            [[ $user == mailtap/65532 ]] || fail "$1: mailtap runs as $user (user/host uid), not the image's mailtap/65532"
            return 0
        fi
        [[ $(podman inspect "$name" --format '{{.State.Running}}') == true ]] \
            || { podman logs "$name" | tail; fail "$1: mailtap exited"; }
        sleep 0.1
    done
    podman logs "$name" | tail; fail "$1: /metrics not served"
}
no_xdp() {
    for _ in $(seq 1 30); do
        ip -d link show "$ours" | grep -q "prog/xdp" || return 0
        sleep 0.1
    done
    ip -d link show "$ours"; fail "$1: an XDP program is left on $ours"
}

say "run 1: capture the sample, podman stop"
start run1
ip netns exec "$ns" tcpreplay -q -i "$peer" samples/sample-smtp.pcap >/dev/null
sleep 1
curl -fsS "http://127.0.0.1:$port/metrics" | grep -q '^mailtap_queue_packets_total' || fail "no queue metrics"
podman stop -t 30 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
podman logs "$name" > "$work/run1.log" 2>&1
[[ $code == 0 ]] || { tail "$work/run1.log"; fail "run 1 exited $code"; }
podman rm "$name" >/dev/null
no_xdp "after podman stop"
"$bin" read samples/sample-smtp.pcap -c "$work/etc/mailtap.toml" -o "$work/read" --no-progress 2>/dev/null
# With log rotation on (the ConfigMap's), the files are renamed at exit,
# smtp.<open>_<close>.log, and gzipped by log.post_rotate.
pick() { { ls "$1/$2.log" "$1/$2".*.log "$1/$2".*.log.gz 2>/dev/null || true; } | head -n 1; }
compared=0
for log in conn smtp files; do
    want=$(pick "$work/read" $log)
    got=$(pick "$work/out/run1" $log)
    [[ -n "$want" ]] || fail "mailtap read wrote no $log log"
    [[ -n "$got" ]] || fail "the container wrote no $log log"
    # Rows equal apart from the capture-time-derived columns (ts, uid, ...).
    python3 - "$want" "$got" "$log" <<'PY' || fail "$log differs from mailtap read"
import gzip, sys
def rows(p):
    fields, out = None, []
    lines = (gzip.open(p, "rt") if p.endswith(".gz") else open(p)).read().splitlines()
    if not lines[-1].startswith("#close"):
        sys.exit(f"{p}: not closed")
    for l in lines:
        l = l.rstrip("\n")
        if l.startswith("#fields"):
            fields = l.split("\t")[1:]
        elif not l.startswith("#"):
            r = dict(zip(fields, l.split("\t")))
            for k in ("ts", "uid", "duration", "fuid", "fuids", "parent_fuid"):
                r.pop(k, None)
            out.append(tuple(sorted(r.items())))
    return sorted(out)
a, b = rows(sys.argv[1]), rows(sys.argv[2])
print(f"  {sys.argv[3]}: read {len(a)} rows, container {len(b)} rows, {'equal' if a == b else 'DIFFERENT'}")
sys.exit(0 if a == b and a else 1)
PY
    compared=$((compared + 1))
done
((compared == 3)) || fail "compared $compared logs"

say "run 2: start again on $ours, podman kill -s KILL"
start run2
podman kill -s KILL "$name" >/dev/null
podman wait "$name" >/dev/null 2>&1 || true
podman rm -f "$name" >/dev/null
no_xdp "after SIGKILL"

say "run 3: start after the kill, podman stop"
start run3
podman stop -t 30 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
[[ $code == 0 ]] || { podman logs "$name" | tail; fail "run 3 exited $code"; }
podman rm "$name" >/dev/null
no_xdp "after run 3"
say "ok: image $((size / 1000000)) MB; SIGTERM, restart, SIGKILL, restart all clean"
