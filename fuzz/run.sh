#!/usr/bin/env bash
# Runs every fuzz harness of a KUBETRAIL_FUZZ build for a bounded time from
# its seeds and regression inputs; a crash, a leak, a timeout (10 s per
# input) or running out of memory fails the run, and libFuzzer leaves the
# input that did it as crash-*/timeout-*/oom-* in the work folder (add it to
# tests/fuzz-regressions/HARNESS/ once fixed).
#   bash fuzz/run.sh BUILD_DIR SECONDS_PER_HARNESS [HARNESS...]
# FUZZ_SEED (default 1) fixes libFuzzer's mutation sequence, so that CI's
# short runs explore the same inputs on every run of the same commit (a
# longer or differently seeded run by hand goes further; FUZZ_SEED=0 picks
# a random seed).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?build dir}" && pwd); seconds=${2:?seconds per harness}; shift 2
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(watch_stream list_page diff openapi config kubeconfig manifest state_row state_log outbox_log)
work=$(mktemp -d /tmp/kubetrail-fuzz-XXXXXX)
status=0
for h in "${harnesses[@]}"; do
  corpus="$work/$h/corpus"
  mkdir -p "$corpus"
  cp fuzz/seeds/"$h"/* tests/fuzz-regressions/"$h"/* "$corpus"/ 2>/dev/null || true
  echo "-- fuzz_$h: $seconds s from $(ls "$corpus" | wc -l) inputs"
  if (cd "$work/$h" && "$build/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -seed="${FUZZ_SEED:-1}" \
        -max_len=262144 -print_final_stats=1 corpus > log.txt 2>&1); then
    grep -E "^(Done|stat::number_of_executed_units)" "$work/$h/log.txt" || true
  else
    echo "fuzz_$h FAILED:"; tail -60 "$work/$h/log.txt"; ls "$work/$h"
    status=1
  fi
done
[ $status -eq 0 ] && rm -rf "$work"
exit $status
