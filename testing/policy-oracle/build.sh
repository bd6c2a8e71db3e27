#!/usr/bin/env bash
# Builds policy-oracle (main.go beside this script): the audit Policy evaluator of k8s.io/apiserver, driven by
# AdmissionReview lines, against which test/audit/policy/differential.test.ts checks kube-audit-rest's own.
# Uses only the Go toolchain and the Go module proxy; go.mod pins k8s.io/apiserver and k8s.io/api v0.37.2
# (the release testing/k8s-tools builds kube-apiserver from), with no replace directives.
#
# Output: $POLICY_ORACLE_BIN_DIR (default: <repo>/.cache/policy-oracle-bin, gitignored)/policy-oracle.
# Skips the build when the binary is newer than go.mod, go.sum and main.go; pass --force to rebuild anyway.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${POLICY_ORACLE_BIN_DIR:-$repo/.cache/policy-oracle-bin}"
bin="$out/policy-oracle"

force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  *) echo "usage: $0 [--force]   (output: \$POLICY_ORACLE_BIN_DIR, default $repo/.cache/policy-oracle-bin)" >&2; exit 2 ;;
esac

if [[ $force -eq 0 && -x "$bin" && "$bin" -nt "$here/go.mod" && "$bin" -nt "$here/go.sum" && "$bin" -nt "$here/main.go" ]]; then
  echo "policy-oracle: up to date at $bin; --force to rebuild"
  exit 0
fi

command -v go >/dev/null || { echo "policy-oracle: go is not on PATH" >&2; exit 1; }
cd "$here"
mkdir -p "$out"
stage="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

start=$SECONDS
# -mod=readonly: go.mod/go.sum are complete; fail instead of silently editing them.
go build -mod=readonly -trimpath -ldflags="-s -w" -o "$stage/policy-oracle" .
mv -f "$stage/policy-oracle" "$bin" # rename within one directory: a reader never sees half a binary
echo "policy-oracle: built $bin in $((SECONDS - start))s ($(go version | cut -d' ' -f3))"
