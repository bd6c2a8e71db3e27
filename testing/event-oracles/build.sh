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
# Falco's plugin SDK needs cgo (gcc).
exec bash "$repo/testing/setup/go-build.sh" event-oracles "$here" "${EVENT_ORACLES_BIN_DIR:-$repo/.cache/event-oracles-bin}" 1 './cmd/...' event-check falco-fields -- "$@"
