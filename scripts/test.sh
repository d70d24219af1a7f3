#!/usr/bin/env bash
# Runs mailtap's whole test suite: unit, property, integration and the Zeek
# conformance tests (which skip, saying so, when ../shared is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo test --workspace --locked "$@"
