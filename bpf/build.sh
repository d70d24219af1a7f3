#!/usr/bin/env bash
# Builds the XDP steering program: bpf/mailtap_xdp.c -> bpf/mailtap_xdp.o.
#
#   bpf/build.sh           rebuild bpf/mailtap_xdp.o (commit it with the source)
#   bpf/build.sh --check   rebuild into a temporary file; exit 1 if it differs
#                          from the committed bpf/mailtap_xdp.o
#
# Reproducible: the source includes no system headers, the compile runs in
# bpf/ with a relative file name and the debug paths are mapped to ".", and
# the DWARF sections are stripped (the BTF that libxdp needs stays), so the
# bytes depend on the compiler version only, not on the checkout path, the
# user or the time. CLANG and LLVM_STRIP override the tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLANG="${CLANG:-clang}"
LLVM_STRIP="${LLVM_STRIP:-llvm-strip}"
# The compiler the committed object was built with; another version may
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
out="$tmpdir/mailtap_xdp.o"

# -g: BTF (.BTF/.BTF.ext), which libbpf needs for the BTF-style maps and
# libxdp for its dispatcher (freplace) and the run config.
(
  cd "$here"
  "$CLANG" -O2 -g -target bpf -std=gnu11 -Wall -Werror \
    -fdebug-prefix-map="$here"=. -fdebug-compilation-dir=. \
    -c mailtap_xdp.c -o "$out"
)
"$LLVM_STRIP" -g "$out"

if [ "$check" -eq 1 ]; then
  if cmp -s "$out" "$here/mailtap_xdp.o"; then
    echo "bpf/build.sh --check: bpf/mailtap_xdp.o is up to date"
    exit 0
  fi
  echo "bpf/build.sh --check: bpf/mailtap_xdp.o differs from a fresh build of bpf/mailtap_xdp.c" >&2
  version="$("$CLANG" --version | head -n1)"
  if [ "$version" != "$REFERENCE_CLANG" ]; then
    echo "  (this clang is \"$version\"; the committed object was built with \"$REFERENCE_CLANG\", which may explain it)" >&2
  else
    echo "  run bpf/build.sh and commit bpf/mailtap_xdp.o with the source" >&2
  fi
  exit 1
fi

cp "$out" "$here/mailtap_xdp.o"
echo "bpf/build.sh: wrote bpf/mailtap_xdp.o ($(wc -c <"$here/mailtap_xdp.o") bytes)"
