#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo-fuzz, libFuzzer, AddressSanitizer). Rust stable works:
# RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz passes. See FUZZING.md.
#   scripts/fuzz.sh build                     install cargo-fuzz if missing, build every target
#   scripts/fuzz.sh run SECONDS [TARGET...]   run each target for SECONDS on its committed
#                                             corpus, two at a time; print execs and coverage;
#                                             fail on any crash, hang, leak or huge allocation
#   scripts/fuzz.sh merge [TARGET...]         fold what runs found into fuzz/corpus, minimised
#   scripts/fuzz.sh seeds                     regenerate the seeds (needs target/release/vmm)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz=$root/fuzz
export RUSTC_BOOTSTRAP=1
# The pinned cargo-fuzz, and libFuzzer's limits: an input that allocates 128 MiB at once, or
# runs 10 s, is a finding.
cargo_fuzz_version=0.13.2
limits=(-malloc_limit_mb=128 -rss_limit_mb=2048 -timeout=10)
# Parallel jobs for `run` (the machine has 2 cores).
jobs=${FUZZ_JOBS:-2}

cd "$fuzz"
all_targets() { cargo fuzz list; }
binary() { echo "$fuzz/target/x86_64-unknown-linux-gnu/release/$1"; }

build() {
    if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
        cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
    fi
    cargo fuzz build
}

# One target for $2 seconds: new inputs go to work/T (not committed), the committed corpus is
# read only. Prints "target execs exec/s cov ft corpus".
run_one() {
    local target=$1 seconds=$2 log
    mkdir -p "work/$target" "artifacts/$target" "corpus/$target"
    log=work/$target.log
    if ! "$(binary "$target")" "work/$target" "corpus/$target" "${limits[@]}" \
        -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
        echo "$target FAILED (log: fuzz/$log)"
        grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -5
        return 1
    fi
    local execs cov ft corp rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-12s %12s %8s %6s %7s %6s\n' "$target" "$execs" "$rate" "$cov" "$ft" "$corp"
}

run() {
    local seconds=${1:?usage: fuzz.sh run SECONDS [TARGET...]}
    shift
    local targets=("$@")
    [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(all_targets)
    mkdir -p work
    printf '%-12s %12s %8s %6s %7s %6s\n' target execs exec/s cov ft corpus
    local failed=0 i pids=()
    for ((i = 0; i < ${#targets[@]}; i += jobs)); do
        pids=()
        for t in "${targets[@]:i:jobs}"; do
            run_one "$t" "$seconds" >"work/$t.summary" &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || failed=1; done
        for t in "${targets[@]:i:jobs}"; do cat "work/$t.summary"; done
    done
    return $failed
}

merge() {
    local targets=("$@")
    [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(all_targets)
    for t in "${targets[@]}"; do
        mkdir -p "work/$t" "corpus/$t"
        rm -rf "work/$t.merged" && mkdir "work/$t.merged"
        "$(binary "$t")" -merge=1 "${limits[@]}" "work/$t.merged" "corpus/$t" "work/$t" \
            >"work/$t.merge.log" 2>&1
        rm -rf "corpus/$t" && mv "work/$t.merged" "corpus/$t"
        echo "$t: $(find "corpus/$t" -type f | wc -l) inputs"
    done
}

seeds() {
    cargo run --quiet --example make_seeds -- "$fuzz/corpus"
    /usr/bin/python3 "$root/scripts/fuzz-record-rpc.py" "$root/target/release/vmm" "$fuzz/corpus"
}

case "${1:-}" in
build) build ;;
run) shift && run "$@" ;;
merge) shift && merge "$@" ;;
seeds) seeds ;;
*)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
