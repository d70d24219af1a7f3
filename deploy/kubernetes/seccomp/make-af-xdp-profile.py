#!/usr/bin/env python3
"""Makes mailtap-af-xdp.json from a container runtime's default seccomp
profile (containers/common's seccomp.json, the same rules as Docker's and
containerd's default): bpf() and perf_event_open() become allowed for every
process (the default allows them only with CAP_SYS_ADMIN, which the AF_XDP
DaemonSet does not grant: CAP_BPF and CAP_PERFMON gate them in the kernel);
the other syscalls of that rule stay denied without CAP_SYS_ADMIN.

    python3 make-af-xdp-profile.py [/usr/share/containers/seccomp.json] > mailtap-af-xdp.json
"""
import json
import sys

WANTED = ["bpf", "perf_event_open"]

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
profile = json.load(open(src))
out = []
for rule in profile["syscalls"]:
    names = rule["names"]
    if not any(n in WANTED for n in names):
        out.append(rule)
        continue
    rest = [n for n in names if n not in WANTED]
    if rest:
        r = dict(rule)
        r["names"] = rest
        out.append(r)
out.append(
    {
        "names": WANTED,
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": "mailtap AF_XDP: the kernel checks CAP_BPF / CAP_PERFMON",
        "includes": {},
        "excludes": {},
    }
)
profile["syscalls"] = out
json.dump(profile, sys.stdout, indent=2)
sys.stdout.write("\n")
