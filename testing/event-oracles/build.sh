#!/usr/bin/env bash
# Builds kube-audit-rest's audit Event oracles -- event-check (k8s.io/apiserver's audit/v1 types, strict
# decode) and falco-fields (Falco's k8saudit plugin code) -- from the Go module beside this script. See
# README.md there for what each checks.
#
# Output: $EVENT_ORACLES_BIN_DIR (default: <repo>/.cache/event-oracles-bin, gitignored). Skips the build when
# both binaries are newer than go.mod, go.sum and every .go file of the module; --force rebuilds anyway.
# Needs Go and a C compiler (the plugin SDK uses cgo). Cost on 2 cores: ~75 s with empty module and build
# caches (166 MB of modules), 22-39 s with the modules present, 1-2 s after a source change.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${EVENT_ORACLES_BIN_DIR:-$repo/.cache/event-oracles-bin}"
tools=(event-check falco-fields)

force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  *) echo "usage: $0 [--force]   (output dir: \$EVENT_ORACLES_BIN_DIR, default $repo/.cache/event-oracles-bin)" >&2; exit 2 ;;
esac

up_to_date() {
  local t src
  for t in "${tools[@]}"; do
    [[ -x "$out/$t" ]] || return 1
    while IFS= read -r -d '' src; do
      [[ "$out/$t" -nt "$src" ]] || return 1
    done < <(find "$here" \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0)
  done
}

if [[ $force -eq 0 ]] && up_to_date; then
  echo "event-oracles: up to date in $out (${tools[*]}); --force to rebuild"
  exit 0
fi

command -v go >/dev/null || { echo "event-oracles: go is not on PATH" >&2; exit 1; }
cd "$here"
mkdir -p "$out"
stage="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

echo "event-oracles: building ${tools[*]} into $out ($(go version | cut -d' ' -f3), $(nproc) cores)"
start=$(date +%s%N)
# -mod=readonly: go.mod and go.sum are complete; fail instead of editing them. The plugin SDK needs cgo.
CGO_ENABLED=1 go build -mod=readonly -trimpath -o "$stage/" ./cmd/...
for t in "${tools[@]}"; do
  mv -f "$stage/$t" "$out/$t"
done
echo "event-oracles: built in $((($(date +%s%N) - start) / 1000000)) ms"
