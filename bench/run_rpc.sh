#!/usr/bin/env bash
# RPC benchmark: our management socket vs Debian's libvirtd (test driver), side by side.
# Needs libvirt-daemon, libvirt-clients and python3-libvirt (scripts/install-deps.sh); root.
#   bash bench/run_rpc.sh [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vmm
/usr/bin/python3 bench/rpc_bench.py --vmm target/release/vmm "$@"
