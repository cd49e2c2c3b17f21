#!/usr/bin/env bash
# Runs the local testnet demo with sensible defaults (8 nodes, 20 seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ifx/target}"
exec cargo run --locked --bin ifx -- testnet --nodes 8 --duration 20 "$@"
