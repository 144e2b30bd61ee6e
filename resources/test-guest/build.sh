#!/usr/bin/env bash
# Builds the test guest: a Rust no_std kernel for the host target, linked at 1 MiB with
# guest.ld into an ELF with a PVH note and a 64-bit entry.
#   bash resources/test-guest/build.sh OUT.elf
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT.elf}
mkdir -p "$(dirname "$out")"
"${RUSTC:-rustc}" --edition 2021 --crate-type bin --crate-name test_guest \
    -C panic=abort -C opt-level=s -C debuginfo=0 -C relocation-model=static \
    -C target-cpu=x86-64 -C force-frame-pointers=no \
    -C link-arg=-nostartfiles -C link-arg=-nostdlib -C link-arg=-static -C link-arg=-no-pie \
    -C link-arg=-Wl,-T,"$here/guest.ld" -C link-arg=-Wl,--build-id=none \
    -C link-arg=-Wl,-z,max-page-size=4096 -C link-arg=-Wl,-z,norelro \
    -o "$out" "$here/src/main.rs"
