#!/usr/bin/env bash
# Builds what the benchmarks need (release vmm, the test guest, the bare KVM loop) and runs
# them side by side. Needs qemu-system-x86 (scripts/install-deps.sh). Prints a markdown table.
#   bash bench/run.sh [--runs N] [--pio-count N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vmm --example bare_kvm_loop
mkdir -p target/bench
bash resources/test-guest/build.sh target/bench/test-guest.elf
/usr/bin/python3 bench/vm_bench.py --vmm target/release/vmm --guest target/bench/test-guest.elf \
    --bare target/release/examples/bare_kvm_loop "$@"
