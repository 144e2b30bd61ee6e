#!/usr/bin/env bash
# Runs integration test binaries one after another, each with --test-threads=1, and prints the
# wall time of each. Meant for one nested-lane boot (scripts/hw-kvm.sh -- scripts/lane-suite.sh
# BIN...), where one L1 serves every binary. Every binary runs even if an earlier one fails;
# the status is 0 only if all passed.
#
# Usage: scripts/lane-suite.sh [--record FILE] TEST-BINARY...
#   --record FILE: each binary that passes is added to FILE, and binaries already in it are
#   skipped, so a second lane after an L1 that died runs only what had not passed yet (FILE
#   must be in a directory shared read-write with L1: hw-kvm.sh --rwdir).
set -uo pipefail

record=/dev/null
if [[ ${1:-} == --record ]]; then
    record=$2
    shift 2
    touch "$record"
fi
(($#)) || { echo "lane-suite: no test binaries given" >&2; exit 2; }
failed=()
summary=()
for binary in "$@"; do
    name=$(basename "$binary" | sed 's/-[0-9a-f]*$//')
    if grep -qxF "$binary" "$record"; then
        echo "lane-suite: $name passed in an earlier lane; skipped" >&2
        continue
    fi
    echo "lane-suite: running $name" >&2
    start=$(date +%s)
    "$binary" --test-threads=1
    status=$?
    took=$(($(date +%s) - start))
    summary+=("$name: status $status, ${took} s")
    if ((status == 0)); then
        echo "$binary" >>"$record"
    else
        failed+=("$name")
    fi
done
echo "lane-suite: wall times:" >&2
printf '  %s\n' "${summary[@]}" >&2
if ((${#failed[@]})); then
    echo "lane-suite: failed: ${failed[*]}" >&2
    exit 1
fi
