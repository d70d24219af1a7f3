#!/usr/bin/env bash
# Tunes a capture NIC for mailtap and can undo it. Prints every change it
# makes (and every setting the driver does not support), and records the
# previous values in a state file that `undo` restores.
#
#   nic-tune.sh apply IFACE [--queues N] [--irq-cores LIST] [--rx-ring N|max]
#                           [--hugepages N] [--state FILE] [--dry-run]
#   nic-tune.sh undo  IFACE [--state FILE]
#
# apply:
#   - channels: N combined (or RX/TX) queues, one per mailtap worker (--queues)
#   - RSS: the symmetric Toeplitz key (0x6d5a repeated), so both directions of a
#     connection hash to the same queue and worker; hash spread over N queues
#   - offloads off: GRO, LRO, hardware GRO, GRO list (mailtap must see the
#     segments as on the wire; merged super-frames exceed the XDP frame size)
#   - RX ring: the driver's maximum (or N) against bursts
#   - IRQ affinity: the NIC's interrupts to --irq-cores (cores that run no
#     mailtap worker)
#   - hugepages: vm.nr_hugepages = N, for live.xdp_huge_pages
# Default state file: /var/lib/mailtap/nic-tune-IFACE.state
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 2 ]] || usage
action=$1 ifname=$2
shift 2
queues="" irq_cores="" rx_ring="" hugepages="" state="" dry=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --queues) queues=$2; shift 2 ;;
        --irq-cores) irq_cores=$2; shift 2 ;;
        --rx-ring) rx_ring=$2; shift 2 ;;
        --hugepages) hugepages=$2; shift 2 ;;
        --state) state=$2; shift 2 ;;
        --dry-run) dry=1; shift ;;
        *) usage ;;
    esac
done
[[ -n "$state" ]] || state=/var/lib/mailtap/nic-tune-$ifname.state
ip link show "$ifname" >/dev/null 2>&1 || { echo "nic-tune: no interface $ifname" >&2; exit 1; }
command -v ethtool >/dev/null || { echo "nic-tune: ethtool not found (apt-get install ethtool)" >&2; exit 1; }

say() { echo "nic-tune: $ifname: $*"; }
run() { # run a change, printing it; a driver refusal is reported, not fatal
    if ((dry)); then say "would run: $*"; return 0; fi
    if out=$("$@" 2>&1); then say "$*"; return 0; fi
    say "not supported by the driver: $* (${out//$'\n'/ })"
    return 1
}
record() { ((dry)) || echo "$*" >>"$state"; }

# The value of "NAME:" in the "Current hardware settings" part of ethtool -l/-g.
current() { { ethtool "$1" "$ifname" 2>/dev/null || true; } | awk -v k="$2:" '/Current hardware settings/ {c=1} c && $1==k {print $2; exit}'; }
maximum() { { ethtool "$1" "$ifname" 2>/dev/null || true; } | awk -v k="$2:" '/Pre-set maximums/ {c=1} /Current/ {c=0} c && $1==k {print $2; exit}'; }

apply() {
    if [[ -s "$state" ]] && ((!dry)); then
        echo "nic-tune: $state exists: undo first (nic-tune.sh undo $ifname)" >&2
        exit 1
    fi
    ((dry)) || { mkdir -p "$(dirname "$state")"; : >"$state"; }

    # Channels.
    if [[ -n "$queues" ]]; then
        comb=$(current -l Combined)
        if [[ "$comb" =~ ^[0-9]+$ ]]; then
            [[ "$comb" == "$queues" ]] || { run ethtool -L "$ifname" combined "$queues" && record "ethtool -L $ifname combined $comb"; }
        else
            rx=$(current -l RX) tx=$(current -l TX)
            if [[ "$rx" =~ ^[0-9]+$ ]]; then
                run ethtool -L "$ifname" rx "$queues" tx "$queues" && record "ethtool -L $ifname rx $rx tx $tx"
            else
                say "channels: not reported by the driver"
            fi
        fi
    fi

    # Symmetric RSS key, spread over the queues.
    key=$({ ethtool -x "$ifname" 2>/dev/null || true; } | awk '/RSS hash key:/ {getline; print; exit}' | tr -d ' ')
    if [[ -n "$key" && "$key" != "Operationnotsupported" ]]; then
        bytes=$(( (${#key} + 1) / 3 ))
        sym=$(for ((i = 0; i < bytes / 2; i++)); do printf '6d:5a:'; done | sed 's/:$//')
        if [[ "$key" != "$sym" ]]; then
            run ethtool -X "$ifname" hkey "$sym" ${queues:+equal "$queues"} && record "ethtool -X $ifname hkey $key default"
        fi
    else
        say "RSS key: not supported by the driver (one queue, or a veth)"
    fi

    # Offloads.
    for f in gro lro rx-gro-hw rx-gro-list; do
        case $f in
            gro) cur=$(ethtool -k "$ifname" | awk '/^generic-receive-offload:/ {print $2, $3}') ;;
            lro) cur=$(ethtool -k "$ifname" | awk '/^large-receive-offload:/ {print $2, $3}') ;;
            *) cur=$(ethtool -k "$ifname" | awk -v k="$f:" '$1==k {print $2, $3}') ;;
        esac
        [[ -n "$cur" ]] || continue
        if [[ "$cur" == on* ]]; then
            if [[ "$cur" == *fixed* ]]; then
                say "$f: on and fixed by the driver (cannot turn it off)"
            else
                run ethtool -K "$ifname" "$f" off && record "ethtool -K $ifname $f on"
            fi
        fi
    done

    # RX ring.
    if [[ -n "$rx_ring" ]]; then
        cur=$(current -g RX)
        want=$rx_ring
        [[ "$want" == max ]] && want=$(maximum -g RX)
        if [[ "$cur" =~ ^[0-9]+$ && "$want" =~ ^[0-9]+$ ]]; then
            [[ "$cur" == "$want" ]] || { run ethtool -G "$ifname" rx "$want" && record "ethtool -G $ifname rx $cur"; }
        else
            say "RX ring: not supported by the driver"
        fi
    fi

    # IRQ affinity.
    if [[ -n "$irq_cores" ]]; then
        n=0
        for irq in $(awk -v i="$ifname" '$0 ~ i {sub(":", "", $1); print $1}' /proc/interrupts); do
            f=/proc/irq/$irq/smp_affinity_list
            [[ -w $f ]] || continue
            old=$(cat "$f")
            if ((dry)); then say "would set IRQ $irq affinity $old -> $irq_cores"; continue; fi
            if echo "$irq_cores" >"$f" 2>/dev/null; then
                say "IRQ $irq affinity $old -> $irq_cores"
                record "echo $old > $f"
                n=$((n + 1))
            else
                say "IRQ $irq affinity: refused"
            fi
        done
        ((n)) || say "IRQ affinity: no interrupts of $ifname in /proc/interrupts (virtual interface?)"
    fi

    # Hugepages.
    if [[ -n "$hugepages" ]]; then
        old=$(cat /proc/sys/vm/nr_hugepages)
        if [[ "$old" != "$hugepages" ]]; then
            if ((dry)); then say "would set vm.nr_hugepages $old -> $hugepages"
            else
                echo "$hugepages" >/proc/sys/vm/nr_hugepages
                say "vm.nr_hugepages $old -> $(cat /proc/sys/vm/nr_hugepages)"
                record "echo $old > /proc/sys/vm/nr_hugepages"
            fi
        fi
    fi
    ((dry)) || say "done; undo with: $0 undo $ifname --state $state"
}

undo() {
    [[ -f "$state" ]] || { echo "nic-tune: no state file $state: nothing to undo" >&2; exit 1; }
    # Last change first.
    tac "$state" | while read -r line; do
        [[ -n "$line" ]] || continue
        if [[ "$line" == "ethtool -X "*" default" ]]; then
            line=${line% default}
        fi
        if bash -c "$line" >/dev/null 2>&1; then say "restored: $line"; else say "could not restore: $line"; fi
    done
    rm -f "$state"
}

case $action in
    apply) apply ;;
    undo) undo ;;
    *) usage ;;
esac
