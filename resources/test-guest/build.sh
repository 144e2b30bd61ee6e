#!/usr/bin/env bash
# Builds the test guest: a Rust no_std kernel for the host target, linked at 1 MiB with
# guest.ld into an ELF with a PVH note and a 64-bit entry. Deterministic, a second or two.
#   bash resources/test-guest/build.sh OUT.elf    build the guest
#   bash resources/test-guest/build.sh --test     run the unit tests on the host
#   bash resources/test-guest/build.sh --clippy   lint (clippy-driver, warnings are errors)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT.elf | --test | --clippy}
rustc=${RUSTC:-rustc}
common=(--edition 2021 --crate-name test_guest -C opt-level=s -C debuginfo=0)

case "$out" in
--test)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$rustc" "${common[@]}" --test -o "$tmp/unit-tests" "$here/src/main.rs"
    "$tmp/unit-tests"
    exit
    ;;
--clippy)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for mode in --test "--crate-type bin -C panic=abort"; do
        # shellcheck disable=SC2086 # mode is two or four words on purpose
        clippy-driver "${common[@]}" $mode -D warnings --emit metadata \
            --out-dir "$tmp" "$here/src/main.rs"
    done
    exit
    ;;
esac

mkdir -p "$(dirname "$out")"
# panic=abort and no unwinding tables; static, non-PIE code at fixed addresses; libcore's
# prebuilt debug info stripped; no build-id, so the bytes depend on the sources alone.
"$rustc" "${common[@]}" --crate-type bin \
    -C panic=abort -C relocation-model=static -C target-cpu=x86-64 -C strip=debuginfo \
    -C link-arg=-nostartfiles -C link-arg=-nostdlib -C link-arg=-static -C link-arg=-no-pie \
    -C link-arg=-Wl,-T,"$here/guest.ld" -C link-arg=-Wl,--build-id=none \
    -C link-arg=-Wl,-z,max-page-size=4096 -C link-arg=-Wl,-z,norelro \
    --remap-path-prefix "$here=test-guest" \
    -o "$out" "$here/src/main.rs"
