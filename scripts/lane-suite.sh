#!/usr/bin/env bash
# Runs integration test binaries one after another, one test at a time, and prints the wall
# time of each binary. Meant for one nested-lane boot (scripts/hw-kvm.sh --
# scripts/lane-suite.sh BIN...), where one L1 serves every binary. Every test runs even if an
# earlier one fails; the status is 0 only if all passed.
#
# A test that fails here runs once more, and both runs are in the log. The lane is QEMU's
# TCG emulating SVM, which has been seen to misdeliver L1's interrupts right after a VMRUN
# (L1 then dies with "stack guard page was hit"), to leave an L2 AP unstarted and to stop an
# L2 for good; the same tests pass on the host and on a second run. A test that fails twice
# fails the lane; one that passed only on its second run is named at the end.
#
# Usage: scripts/lane-suite.sh [--record FILE] TEST-BINARY...
#   --record FILE: each test that passes is added to FILE (as BINARY::TEST), and tests already
#   in it are skipped, so another lane after an L1 that died goes on from the test it was in
#   (FILE must be in a directory shared read-write with L1: hw-kvm.sh --rwdir).
set -uo pipefail

record=/dev/null
if [[ ${1:-} == --record ]]; then
    record=$2
    shift 2
    touch "$record"
fi
(($#)) || { echo "lane-suite: no test binaries given" >&2; exit 2; }
failed=()
second_runs=()
summary=()
for binary in "$@"; do
    name=$(basename "$binary" | sed 's/-[0-9a-f]*$//')
    mapfile -t tests < <("$binary" --list --format terse 2>/dev/null | sed -n 's/: test$//p')
    if ((${#tests[@]} == 0)); then
        echo "lane-suite: $name lists no tests" >&2
        failed+=("$name")
        continue
    fi
    echo "lane-suite: running $name (${#tests[@]} tests)" >&2
    start=$(date +%s)
    bad=0
    for test in "${tests[@]}"; do
        key="$binary::$test"
        if grep -qxF "$key" "$record"; then
            echo "lane-suite: $name::$test passed in an earlier lane; skipped" >&2
            continue
        fi
        if "$binary" --exact "$test" --test-threads=1; then
            echo "$key" >>"$record"
        elif echo "lane-suite: $name::$test failed; running it once more" >&2 &&
            "$binary" --exact "$test" --test-threads=1; then
            second_runs+=("$name::$test")
            echo "$key" >>"$record"
        else
            bad=$((bad + 1))
            failed+=("$name::$test")
        fi
    done
    summary+=("$name: ${#tests[@]} tests, $bad failed, $(($(date +%s) - start)) s")
done
echo "lane-suite: wall times:" >&2
printf '  %s\n' "${summary[@]}" >&2
if ((${#second_runs[@]})); then
    echo "lane-suite: passed only on a second run: ${second_runs[*]}" >&2
fi
if ((${#failed[@]})); then
    echo "lane-suite: failed: ${failed[*]}" >&2
    exit 1
fi
