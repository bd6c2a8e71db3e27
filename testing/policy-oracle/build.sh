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
# k8s.io/apiserver needs no cgo.
exec bash "$repo/testing/setup/go-build.sh" policy-oracle "$here" "${POLICY_ORACLE_BIN_DIR:-$repo/.cache/policy-oracle-bin}" 0 . policy-oracle -- "$@"
