#!/usr/bin/env bash
# The one way kube-audit-rest's test tools are built from a Go module of their own (testing/policy-oracle,
# testing/event-oracles, testing/otelcol): each build.sh there calls this script, so all of them skip alike
# when up to date, fail alike, and never leave half a binary behind.
#
#   go-build.sh NAME MODULE_DIR OUT_DIR CGO PACKAGE BINARY... -- [--force]
#
# Builds PACKAGE (relative to MODULE_DIR: `.` or `./cmd/...`) into OUT_DIR/BINARY for each BINARY, with
# CGO_ENABLED=CGO (0 or 1). Without --force, returns at once when every binary is newer than go.mod, go.sum
# and every .go file of the module. -mod=readonly: go.mod and go.sum are complete, so a missing entry fails
# instead of editing them. Binaries are built into a folder inside OUT_DIR and renamed into place.
set -euo pipefail

name=$1 dir=$2 out=$3 cgo=$4 package=$5
shift 5
binaries=()
while [[ $# -gt 0 && $1 != -- ]]; do
  binaries+=("$1")
  shift
done
[[ $# -gt 0 ]] && shift # the --
force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  *) echo "usage: $name build.sh [--force]   (output dir: $out)" >&2; exit 2 ;;
esac

up_to_date() {
  local binary src
  for binary in "${binaries[@]}"; do
    [[ -x "$out/$binary" ]] || return 1
    while IFS= read -r -d '' src; do
      [[ "$out/$binary" -nt "$src" ]] || return 1
    done < <(find "$dir" \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0)
  done
}

if [[ $force -eq 0 ]] && up_to_date; then
  echo "$name: up to date in $out (${binaries[*]}); --force to rebuild"
  exit 0
fi

command -v go >/dev/null || { echo "$name: go is not on PATH (Go 1.26 builds it)" >&2; exit 1; }
mkdir -p "$out"
stage="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

echo "$name: building ${binaries[*]} into $out ($(go version | cut -d' ' -f3), $(nproc) cores)"
start=$(date +%s%N)
cd "$dir"
# -s -w: no symbol tables, a smaller binary and a shorter link.
CGO_ENABLED=$cgo go build -mod=readonly -trimpath -ldflags='-s -w' -o "$stage/" "$package"
for binary in "${binaries[@]}"; do
  mv -f "$stage/$binary" "$out/$binary"
done
echo "$name: built in $((($(date +%s%N) - start) / 1000000)) ms"
