#!/usr/bin/env bash
# Installs every build and test dependency of kubetrail from Debian bookworm
# packages. Idempotent and non-interactive: safe to run on every CI start.
set -euo pipefail

# What building kubetrail needs (the container image's build stage installs
# only these: --build-only) ...
BUILD_PACKAGES=(
  build-essential cmake pkg-config ninja-build git ca-certificates
  libcurl4-openssl-dev libssl-dev openssl
  libsimdjson-dev nlohmann-json3-dev libtoml11-dev libspdlog-dev libfmt-dev
  libboost-dev libboost-filesystem-dev
  libyaml-cpp-dev libvalijson-dev libsqlite3-dev libcpp-httplib-dev libzstd-dev libxxhash-dev
  libre2-dev
  libjemalloc-dev  # the kubetrail binary's allocator (KUBETRAIL_JEMALLOC)
  libcli11-dev
  libnats-dev  # plugins/nats
  librdkafka-dev  # plugins/kafka
)
# ... and what its tests, benchmarks, fuzzers and CI checks need besides.
TEST_PACKAGES=(
  doctest-dev libbenchmark-dev
  python3 python3-yaml curl clang-format clang-tidy
  clang libclang-rt-14-dev  # fuzz/: libFuzzer, ASan, UBSan
  nghttp2-proxy  # tests: nghttpx puts HTTP/2 in front of the test API server
  prometheus  # tests: promtool checks and unit-tests the alerting rules
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev golang-github-burntsushi-toml-dev  # tests: the Helm chart rendered by Helm's own engine
  chromium chromium-driver  # tests: the timeline page (/ui) in a real, headless browser
  nats-server  # tests: the nats handler against a real 3-node JetStream cluster
)
PACKAGES=("${BUILD_PACKAGES[@]}")
[ "${1:-}" = "--build-only" ] || PACKAGES+=("${TEST_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
# --no-install-recommends keeps valijson's build-time tail (Qt, Poco) as small as apt allows.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
