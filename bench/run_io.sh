#!/usr/bin/env bash
# virtio disk and network benchmarks: our vmm vs QEMU microvm on the same guest (root).
#   bash bench/run_io.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vmm
mkdir -p target/bench
bash resources/test-guest/build.sh target/bench/test-guest.elf
/usr/bin/python3 bench/io_bench.py --vmm target/release/vmm --guest target/bench/test-guest.elf "$@"
