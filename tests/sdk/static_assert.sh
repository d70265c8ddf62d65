#!/usr/bin/env bash
# A plugin class with the wrong constructor must fail to compile with the
# SDK's own one-line message, not a page of template errors.
#   static_assert.sh CXX SOURCE_DIR
set -euo pipefail
cxx=$1; src=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if "$cxx" -std=c++20 -fsyntax-only -I"$src/plugin-api/include" -I"$src/sdk/include" \
     "$src/tests/sdk/bad_constructor.cpp" 2>"$out"; then
  echo "FAIL: tests/sdk/bad_constructor.cpp compiled"; exit 1
fi
if ! grep -q "the plugin class needs a public constructor T(std::string_view config_json, kubetrail::sdk::Host host)" "$out"; then
  echo "FAIL: the compiler's message does not name the constructor needed:"; cat "$out"; exit 1
fi
echo "PASS: a wrong plugin constructor is refused with the SDK's message ($(wc -l <"$out") lines of diagnostics)"
