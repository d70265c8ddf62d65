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
# FUZZ_JOBS (default: the number of cores) harnesses run at once. Each
# libFuzzer process is single-threaded, so on CI's two cores two at a time
# gives every harness the same seconds of a core in half the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?build dir}" && pwd); seconds=${2:?seconds per harness}; shift 2
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(watch_stream list_page diff openapi config kubeconfig manifest state_row state_log outbox_log state_store)
jobs=${FUZZ_JOBS:-$(nproc)}
work=$(mktemp -d /tmp/kubetrail-fuzz-XXXXXX)

# Runs one harness in $work/HARNESS; its verdict goes to $work/HARNESS/verdict
# and everything it printed to $work/HARNESS/log.txt, reported after it ends.
fuzz_one() {
  local h=$1 corpus="$work/$1/corpus"
  mkdir -p "$corpus"
  cp fuzz/seeds/"$h"/* tests/fuzz-regressions/"$h"/* "$corpus"/ 2>/dev/null || true
  echo "$(ls "$corpus" | wc -l)" > "$work/$h/inputs"
  if (cd "$work/$h" && "$build/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -seed="${FUZZ_SEED:-1}" \
        -max_len=262144 -print_final_stats=1 corpus > log.txt 2>&1); then
    echo passed > "$work/$h/verdict"
  else
    echo failed > "$work/$h/verdict"
  fi
}

running=0
for h in "${harnesses[@]}"; do
  [ -x "$build/fuzz/fuzz_$h" ] || { echo "fuzz_$h: not built in $build" >&2; exit 2; }
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
  fuzz_one "$h" &
  running=$((running + 1))
done
wait

status=0
for h in "${harnesses[@]}"; do
  echo "-- fuzz_$h: $seconds s from $(cat "$work/$h/inputs") inputs"
  if [ "$(cat "$work/$h/verdict" 2>/dev/null)" = passed ]; then
    grep -E "^(Done|stat::number_of_executed_units)" "$work/$h/log.txt" || true
  else
    echo "fuzz_$h FAILED:"; tail -60 "$work/$h/log.txt"; ls "$work/$h"
    status=1
  fi
done
[ $status -eq 0 ] && rm -rf "$work"
exit $status
