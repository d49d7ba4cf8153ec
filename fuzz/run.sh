#!/bin/sh
# Run one fuzz harness for a time and print one summary line.
#   fuzz/run.sh HARNESS SECONDS MAX_LEN CORPUS SEEDS [EXTRA libFuzzer OPTIONS...]
# New inputs go to CORPUS (created), SEEDS is read only; crashes, leaks,
# timeouts and out-of-memory inputs are written to build/fuzz/artifacts/
# and fail the run (status of the harness).
set -u
name=$1 seconds=$2 maxlen=$3 corpus=$4 seeds=$5
shift 5
bin=build/fuzz/fuzz_$name
log=build/fuzz/logs/$name.log
mkdir -p "$corpus" build/fuzz/artifacts build/fuzz/logs
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$bin" -max_total_time="$seconds" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/safetensors.dict -artifact_prefix="build/fuzz/artifacts/$name-" \
    -print_final_stats=1 "$@" "$corpus" "$seeds" >"$log" 2>&1
rc=$?
end=$(date +%s)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
corp=$(echo "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
if [ "$rc" -ne 0 ]; then
    echo "fuzz_$name: FAILED (status $rc) after $((end - start)) s; log $log:"
    grep -E 'ERROR|SUMMARY|oracle failed|runtime error|Test unit written|failed with' "$log" | head -n 20
    exit 1
fi
echo "fuzz_$name: ${runs:-?} executions in $((end - start)) s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}; no crash, leak, timeout or failed oracle"
