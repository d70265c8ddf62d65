#!/usr/bin/env bash
# The SDK from the outside: install kubetrail to a fresh prefix, build
# sdk/examples/namespace-counter against that prefix alone with
# find_package(kubetrail-sdk), load it with the installed kubetrail and replay
# the bundled recording through it.
# usage: out_of_tree.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
# The whole contract is installed: the header and the change-set schema.
test -f "$work/prefix/include/kubetrail/plugin.h"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/prefix/share/kubetrail/schema/changeset.schema.json"
cmake -S "$src/sdk/examples/namespace-counter" -B "$work/plugin" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$work/plugin" >/dev/null
test -f "$work/plugin/namespace_counter.so"

cat >"$work/k.toml" <<TOML
[cluster]
name = "sdk-test"
[[handlers]]
name = "counter"
plugin = "$work/plugin/namespace_counter.so"
config = { path = "$work/counts.txt" }
[[handlers]]
name = "audit"
plugin = "log"
config = { format = "json", path = "$work/audit.jsonl" }
[[routes]]
chain = ["counter", "audit"]
TOML

"$work/prefix/bin/kubetrail" plugins | grep -q "  log "   # installed bundled plugins are found beside the binary
"$work/prefix/bin/kubetrail" replay --config "$work/k.toml" "$src"/examples/recordings/rollout/*.json 2>"$work/err.txt"

expected_total=$(wc -l <"$work/audit.jsonl")
counted=$(awk '{s += $3} END {print s}' "$work/counts.txt")
echo "counts table:"; cat "$work/counts.txt"
if [ "$expected_total" -eq 0 ] || [ "$counted" != "$expected_total" ]; then
  echo "FAIL: namespace_counter counted $counted change sets, the log handler wrote $expected_total" >&2
  cat "$work/err.txt" >&2
  exit 1
fi
grep -q '^shop Modified ' "$work/counts.txt" || { echo "FAIL: no 'shop Modified' row" >&2; exit 1; }
echo "PASS: out-of-tree plugin built from the installed SDK counted $counted change sets"
