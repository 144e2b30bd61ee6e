#!/usr/bin/env bash
# Runs integration test binaries one after another, each with --test-threads=1, and prints the
# wall time of each. Meant for one nested-lane boot (scripts/hw-kvm.sh -- scripts/lane-suite.sh
# BIN...), where one L1 serves every binary. Every binary runs even if an earlier one fails;
# the status is 0 only if all passed.
#
# Usage: scripts/lane-suite.sh TEST-BINARY...
set -uo pipefail

(($#)) || { echo "lane-suite: no test binaries given" >&2; exit 2; }
failed=()
summary=()
for binary in "$@"; do
    name=$(basename "$binary" | sed 's/-[0-9a-f]*$//')
    echo "lane-suite: running $name" >&2
    start=$(date +%s)
    "$binary" --test-threads=1
    status=$?
    took=$(($(date +%s) - start))
    summary+=("$name: status $status, ${took} s")
    ((status == 0)) || failed+=("$name")
done
echo "lane-suite: wall times:" >&2
printf '  %s\n' "${summary[@]}" >&2
if ((${#failed[@]})); then
    echo "lane-suite: failed: ${failed[*]}" >&2
    exit 1
fi
