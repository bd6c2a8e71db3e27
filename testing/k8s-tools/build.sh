#!/usr/bin/env bash
# Builds the test tools -- kube-apiserver, etcd, kubectl and helm -- from the Go module beside this script
# (go.mod pins k8s.io/kubernetes, go.etcd.io/etcd/server/v3 and helm.sh/helm/v4 as `tool`s), using only the
# Go toolchain and the Go module proxy: no release binaries are downloaded.
#
#   build.sh [--force] [TOOL...]     TOOL: kube-apiserver, etcd, kubectl, helm; none named: all four
#
# Builds only the named tools (the demo needs kube-apiserver and etcd, the tests all four), and of those
# only the ones missing or older than go.mod/go.sum; --force rebuilds them anyway.
# Output: $K8S_BIN_DIR (default: <repo>/.cache/k8s-bin, gitignored).
# Cost on 2 cores: ~20 s of module downloads, then ~6 min cold for kube-apiserver, etcd and helm (empty Go
# build cache), about a minute more for kubectl; ~20 s with a warm cache. Needs ~3 GB of Go build cache and
# ~0.9 GB of module cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${K8S_BIN_DIR:-$repo/.cache/k8s-bin}"

# Each tool's main package in go.mod's `tool` block.
declare -A package=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [etcd]=go.etcd.io/etcd/server/v3
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [helm]=helm.sh/helm/v4/cmd/helm
)
all=(kube-apiserver etcd kubectl helm)

usage() {
  echo "usage: $0 [--force] [TOOL...]   TOOL: ${all[*]} (default: all; output dir: \$K8S_BIN_DIR, default $repo/.cache/k8s-bin)" >&2
  exit 2
}

force=0
tools=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -*) usage ;;
    *) [[ -n "${package[$arg]:-}" ]] || usage; tools+=("$arg") ;;
  esac
done
[[ ${#tools[@]} -gt 0 ]] || tools=("${all[@]}")

# The named tools that are missing or older than the module files (all of them with --force).
stale=()
for t in "${tools[@]}"; do
  if [[ $force -eq 1 || ! -x "$out/$t" || ! "$out/$t" -nt "$here/go.mod" || ! "$out/$t" -nt "$here/go.sum" ]]; then
    stale+=("$t")
  fi
done
if [[ ${#stale[@]} -eq 0 ]]; then
  echo "k8s-tools: up to date in $out (${tools[*]}); --force to rebuild"
  exit 0
fi

command -v go >/dev/null || { echo "k8s-tools: go is not on PATH (Go 1.26 or later builds ${stale[*]})" >&2; exit 1; }
cd "$here"

# Stamp the Kubernetes version into kube-apiserver and kubectl (otherwise they report v0.0.0-master, which
# confuses kubectl's version-skew checks) and helm's version into helm.
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v4)"
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
ldflags+=" -X helm.sh/helm/v4/internal/version.version=$helm_version -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

mkdir -p "$out"
stage="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

packages=()
for t in "${stale[@]}"; do packages+=("${package[$t]}"); done
echo "k8s-tools: building ${stale[*]} (kubernetes $k8s_version, etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3), helm $helm_version) into $out ($(go version | cut -d' ' -f3), $(nproc) cores)"
start=$SECONDS
# One `go build` compiles the packages in parallel and shares what they have in common.
# -mod=readonly: go.mod/go.sum are complete; fail instead of silently editing them.
go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$stage/" "${packages[@]}"
# go.etcd.io/etcd/server/v3 is `package main`, and go names its binary after "server".
if [[ -e "$stage/server" ]]; then mv "$stage/server" "$stage/etcd"; fi
for t in "${stale[@]}"; do
  mv -f "$stage/$t" "$out/$t"
done
echo "k8s-tools: built in $((SECONDS - start))s:"
for t in "${stale[@]}"; do
  printf '  %-16s %4s MB\n' "$t" "$(($(stat -c %s "$out/$t") / 1024 / 1024))"
done
