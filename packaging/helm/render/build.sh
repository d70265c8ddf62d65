#!/bin/sh
# Builds helm-render (main.go) into OUT from Debian's Go packages only
# (golang-go, golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v3-dev,
# golang-github-burntsushi-toml-dev): GOPATH mode over /usr/share/gocode,
# offline. Debian installs sprig v3 and semver v3 without the /v3 directory
# their import paths name; a scratch GOPATH supplies it as a link.
# usage: build.sh OUT
set -eu
out=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/helm-render" "$work/src/github.com/Masterminds/sprig" "$work/src/github.com/Masterminds/semver"
ln -s /usr/share/gocode/src/github.com/Masterminds/sprig "$work/src/github.com/Masterminds/sprig/v3"
ln -s /usr/share/gocode/src/github.com/Masterminds/semver "$work/src/github.com/Masterminds/semver/v3"
cp "$here/main.go" "$work/src/helm-render/"
cd "$work/src/helm-render"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="${GOCACHE:-$work/cache}" GOFLAGS= go build -o "$out" .
