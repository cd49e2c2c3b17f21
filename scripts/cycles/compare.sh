#!/usr/bin/env bash
# ifx's CPU reference beside Blender Cycles (issue #18 item 3): installs bpy (Blender 5 as a
# Python module, a 375 MB wheel for Python 3.11) into ~/.cache/ifx/bpy-venv, builds ifx, and
# runs scripts/cycles/compare.py. The scene goes to testdata/cycles/, the images and
# results.json to docs/cycles/. Arguments go to compare.py (--size, --ref-spp, --bounces).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${IFX_BPY_VENV:-$HOME/.cache/ifx/bpy-venv}
[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv" || python3 -m venv "$venv"
"$venv/bin/python" -c "import bpy" 2>/dev/null || "$venv/bin/pip" install -q "bpy==5.0.1"
target=${CARGO_TARGET_DIR:-$HOME/.cache/ifx/target}
cargo build --locked --bin ifx --target-dir "$target"
exec "$venv/bin/python" scripts/cycles/compare.py --ifx "$target/debug/ifx" \
    --out docs/cycles --scene-dir testdata/cycles "$@"
