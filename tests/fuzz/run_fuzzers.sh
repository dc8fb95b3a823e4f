#!/usr/bin/env bash
# run_fuzzers.sh: runs every libFuzzer harness of a fuzz build (cmake -DARBOR_FUZZ=ON, clang) for
# a bounded time, two at a time, on seed corpora made from the fixtures by make_seeds plus the
# inputs kept in tests/regress/<harness>/. A crash, leak, hang (one input over 20 s), an
# allocation over 1 GiB or a broken harness invariant fails the run; the input is left in
# BUILD/fuzz-run/crashes/<harness>/ (minimize it, fix the bug, keep it in tests/regress/<harness>/
# where test_regress replays it).
#   usage: tests/fuzz/run_fuzzers.sh BUILD_DIR FIXTURES_DIR SECONDS_EACH [PARALLEL]
set -uo pipefail

build=$(cd "$1" && pwd)
fixtures=$(cd "$2" && pwd)
seconds=$3
parallel=${4:-2}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$build/fuzz-run

rm -rf "$work"
mkdir -p "$work"
"$build/make_seeds" "$fixtures" "$work/seeds" || exit 1

# the harnesses: tests/fuzz/fuzz_<name>.c
names=()
for f in "$src"/tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    names+=("${n#fuzz_}")
done

dict_for() {
    case $1 in
    gguf | model) echo "-dict=$src/tests/fuzz/gguf.dict" ;;
    cli) echo "-dict=$src/tests/fuzz/cli.dict" ;;
    esac
}

run_one() {
    local name=$1
    local corpus=$work/corpus/$name crashes=$work/crashes/$name
    mkdir -p "$corpus" "$crashes" "$work/seeds/$name"
    local dirs=("$corpus" "$work/seeds/$name")
    [ -d "$src/tests/regress/$name" ] && dirs+=("$src/tests/regress/$name")
    # one thread for OpenBLAS: its idle workers would otherwise spin beside the fuzzer
    OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
        "$build/fuzz_$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 \
        -malloc_limit_mb=1024 -close_fd_mask=3 -print_final_stats=1 \
        -artifact_prefix="$crashes/" $(dict_for "$name") "${dirs[@]}" \
        >"$work/$name.log" 2>&1
    echo $? >"$work/$name.rc"
}

start=$(date +%s)
running=0
for name in "${names[@]}"; do
    run_one "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

failed=0
for name in "${names[@]}"; do
    rc=$(cat "$work/$name.rc" 2>/dev/null || echo 99)
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$name.log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$work/$name.log" | tail -1)
    corpus=$(ls "$work/corpus/$name" | wc -l)
    if [ "$rc" = 0 ]; then
        echo "fuzz_$name: passed: ${runs:-?} runs in ${seconds} s, ${cov:-cov: ?}, corpus $corpus"
    else
        failed=$((failed + 1))
        echo "fuzz_$name: FAILED (exit $rc); input kept in $work/crashes/$name/:"
        ls -l "$work/crashes/$name/"
        grep -E 'ERROR|SUMMARY|invariant|leak|timeout|out-of-memory|#[0-9]+ 0x' "$work/$name.log" |
            head -40
    fi
done
echo "fuzzing: ${#names[@]} harnesses, $((${#names[@]} - failed)) passed, $failed failed in $(($(date +%s) - start)) s"
[ "$failed" = 0 ]
