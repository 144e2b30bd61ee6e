#!/usr/bin/env bash
# Linux boot benchmark: our vmm vs QEMU microvm booting Debian's kernel and the busybox
# initramfs, in the nested lane where the host's KVM is not hardware-style (scripts/hw-kvm.sh;
# directly on a VMX/SVM host). Builds the release vmm and the Linux guest on the host, runs
# bench/linux_boot.py in one L1, prints the markdown table and saves it, with every run's
# timestamped console and the host's load average, to target/bench/linux-boot/.
#   bash bench/run_linux_boot.sh [--runs N] [--cpus 1,2] [--memory 512M] [linux_boot.py options]
# A Linux boot takes ~15-20 s in the lane (TCG on QEMU 10): 5 runs of each of the three peers at
# 1 vCPU are ~6 min on an idle host; LANE_TIMEOUT (seconds, default 2400) bounds the whole L1 run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin vmm
bash resources/linux-guest/build.sh
out=$PWD/target/bench/linux-boot
rm -rf "$out"
mkdir -p "$out"
if pgrep -f "qemu-system-x86_64 -name virtme-ng" >/dev/null; then
    echo "run_linux_boot: another nested lane (L1) is running on this host: the times will be inflated" >&2
fi
# The host's load while the lane runs: another lane or build on these cores inflates the times.
(while :; do echo "$(date +%T) $(cat /proc/loadavg)"; sleep 15; done) >"$out/host-load.txt" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT
# The vmlinux inside the bzImage (the recipe extracts it when xz is there): a third peer, our VMM
# entering it through its PVH note, i.e. the same boot without the guest's decompressor.
elf=()
if [[ -f resources/linux-guest/out/vmlinux ]]; then
    elf=(--vmm-elf "$PWD/resources/linux-guest/out/vmlinux")
fi
status=0
bash scripts/hw-kvm.sh --timeout "${LANE_TIMEOUT:-2400}" --rwdir "$out" -- \
    /usr/bin/python3 bench/linux_boot.py --vmm "$PWD/target/release/vmm" \
    --kernel "$PWD/resources/linux-guest/out/vmlinuz" \
    --initrd "$PWD/resources/linux-guest/out/initramfs.cpio.gz" --out "$out" "${elf[@]}" "$@" || status=$?
echo "host load average during the run (every 15 s):"
cat "$out/host-load.txt"
if ((status == 0)); then
    echo "table saved in $out/table.md"
fi
exit "$status"
