#!/usr/bin/env bash
# Builds the BPF programs, each from its source, into the object committed
# next to it:
#   bpf/mailtap_xdp.c        -> bpf/mailtap_xdp.o         (XDP steering, AF_XDP)
#   bpf/mailtap_sockfilter.c -> bpf/mailtap_sockfilter.o  (socket filter, AF_PACKET)
# (both include bpf/mailtap_bypass.h).
#
#   bpf/build.sh           rebuild the objects (commit them with the sources)
#   bpf/build.sh --check   rebuild into a temporary directory; exit 1 if an
#                          object differs from the committed one
#
# Reproducible: the sources include no system headers, the compile runs in
# bpf/ with relative file names and the debug paths are mapped to ".", and
# the DWARF sections are stripped (the BTF that libbpf and libxdp need
# stays), so the bytes depend on the compiler version only, not on the
# checkout path, the user or the time. CLANG and LLVM_STRIP override the
# tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLANG="${CLANG:-clang}"
LLVM_STRIP="${LLVM_STRIP:-llvm-strip}"
# The compiler the committed objects were built with; another version may
# produce different (equally valid) bytes, which --check reports.
REFERENCE_CLANG="Debian clang version 14.0.6"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in "$CLANG" "$LLVM_STRIP"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "bpf/build.sh: $tool not found (scripts/setup.sh installs clang and llvm)" >&2
    exit 127
  }
done

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT
objects=(mailtap_xdp mailtap_sockfilter)

# -g: BTF (.BTF/.BTF.ext), which libbpf needs for the BTF-style maps and
# libxdp for its dispatcher (freplace) and the run config.
for obj in "${objects[@]}"; do
  (
    cd "$here"
    "$CLANG" -O2 -g -target bpf -std=gnu11 -Wall -Werror \
      -fdebug-prefix-map="$here"=. -fdebug-compilation-dir=. \
      -c "$obj.c" -o "$tmpdir/$obj.o"
  )
  "$LLVM_STRIP" -g "$tmpdir/$obj.o"
done

if [ "$check" -eq 1 ]; then
  stale=()
  for obj in "${objects[@]}"; do
    if cmp -s "$tmpdir/$obj.o" "$here/$obj.o"; then
      echo "bpf/build.sh --check: bpf/$obj.o is up to date"
    else
      echo "bpf/build.sh --check: bpf/$obj.o differs from a fresh build of bpf/$obj.c" >&2
      stale+=("$obj")
    fi
  done
  [ "${#stale[@]}" -eq 0 ] && exit 0
  version="$("$CLANG" --version | head -n1)"
  if [ "$version" != "$REFERENCE_CLANG" ]; then
    echo "  (this clang is \"$version\"; the committed objects were built with \"$REFERENCE_CLANG\", which may explain it)" >&2
  else
    echo "  run bpf/build.sh and commit the objects with the sources" >&2
  fi
  exit 1
fi

for obj in "${objects[@]}"; do
  cp "$tmpdir/$obj.o" "$here/$obj.o"
  echo "bpf/build.sh: wrote bpf/$obj.o ($(wc -c <"$here/$obj.o") bytes)"
done
