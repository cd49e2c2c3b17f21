#!/usr/bin/env bash
# Installs the system packages ifx needs to build and test, only those missing. Idempotent.
#   clang, libclang-dev          RocksDB's bindgen (librocksdb-sys)
#   libvulkan1, mesa-vulkan-drivers  a software wgpu adapter (lavapipe) on machines without a GPU
#   chromium                     headless screenshots of the testnet HTML report (a test)
#   python3                      scripts/import_cycles.py (the structure check)
#   iproute2, nftables           `ifx testnet --scenario home-nat`: nodes in network namespaces
#                                behind NAT routers (a test; it needs root)
#   faketime                     `ifx doctor` on a node whose clock is 2 minutes off (a test)
#   systemd                      systemd-analyze verifies the unit `ifx service install` writes (a test)
set -euo pipefail
pkgs=(clang libclang-dev libvulkan1 mesa-vulkan-drivers chromium python3 iproute2 nftables faketime systemd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
