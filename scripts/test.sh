#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the machine lacks.
# The target dir lives outside the clone so repeated runs on one machine stay incremental
# (a cold build of the stack is ~30 minutes on 2 cores, most of it RocksDB's C++).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ifx/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# No module of a crate imports one that imports it back (docs/ARCHITECTURE.md, structure).
python3 scripts/import_cycles.py protocols/src storage/src node/src node/engines/render/src node/engines/learn/src \
  testnet/src benches/src
cargo test --workspace --locked
