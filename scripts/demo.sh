#!/usr/bin/env bash
# Runs the local testnet demo with sensible defaults (8 nodes, two of them verifiers, 20 seconds).
# Extra flags go to `ifx testnet`, e.g. ./scripts/demo.sh --kill 3@8 --nodes 12, or
# `sudo ./scripts/demo.sh --scenario home-nat` (nodes behind NAT routers in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ifx/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Build the whole workspace (not `cargo run -p`): the same feature set as the tests, so the
# demo reuses their build instead of compiling a second variant of the dependencies.
cargo build --workspace --locked
# A scenario brings its own sizes (flags on the command line would override them).
defaults=(--nodes 8 --verifiers 2 --duration 20)
for a in "$@"; do
  if [[ "$a" == --scenario* ]]; then defaults=(); fi
done
exec "$CARGO_TARGET_DIR/debug/ifx" testnet "${defaults[@]}" "$@"
