#!/usr/bin/env bash
# Builds the minimal OpenTelemetry Collector that test/shippers/otel-collector.test.ts runs (the filelog
# receiver, the file_storage extension and the file exporter; see main.go) from the Go module beside
# this script. Every collector module is pinned in go.mod to one release (core v0.165.0 / v1.71.0,
# contrib v0.165.1).
#
# Output: $OTELCOL_BIN_DIR (default: <repo>/.cache/otelcol-bin, gitignored). Skips the build when the
# binary is newer than go.mod, go.sum and every .go file of the module; --force rebuilds anyway.
# Needs Go 1.26, no C compiler. Cost on 2 cores: ~77 s with empty module and build caches (420 MB of
# modules), ~70 s with the modules present, ~50 s with Go's standard library already in the build cache,
# 1-2 s after a change to main.go.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# No cgo: the binary is static.
exec bash "$repo/testing/setup/go-build.sh" otelcol "$here" "${OTELCOL_BIN_DIR:-$repo/.cache/otelcol-bin}" 0 . otelcol -- "$@"
