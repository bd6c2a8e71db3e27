#!/usr/bin/env bash
# Builds the end-to-end test tools -- kube-apiserver, etcd and helm -- from the Go module beside this script
# (go.mod pins k8s.io/kubernetes, go.etcd.io/etcd/server/v3 and helm.sh/helm/v4 as `tool`s), using only the
# Go toolchain and the Go module proxy: no release binaries are downloaded.
#
# Output: $K8S_BIN_DIR (default: <repo>/.cache/k8s-bin, gitignored). Skips the build when every binary is
# present and newer than go.mod and go.sum; pass --force to rebuild anyway.
# Cost on 2 cores: ~20 s of module downloads, then ~6 min cold (empty Go build cache), ~20 s with a warm one.
# Needs ~3 GB of Go build cache and ~0.9 GB of module cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${K8S_BIN_DIR:-$repo/.cache/k8s-bin}"
tools=(kube-apiserver etcd helm)

force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  *) echo "usage: $0 [--force]   (output dir: \$K8S_BIN_DIR, default $repo/.cache/k8s-bin)" >&2; exit 2 ;;
esac

up_to_date() {
  local t
  for t in "${tools[@]}"; do
    [[ -x "$out/$t" && "$out/$t" -nt "$here/go.mod" && "$out/$t" -nt "$here/go.sum" ]] || return 1
  done
}

if [[ $force -eq 0 ]] && up_to_date; then
  echo "k8s-tools: up to date in $out (${tools[*]}); --force to rebuild"
  exit 0
fi

command -v go >/dev/null || { echo "k8s-tools: go is not on PATH" >&2; exit 1; }
cd "$here"

# Stamp the Kubernetes version into kube-apiserver (otherwise it reports v0.0.0-master, which confuses
# kubectl's version-skew checks) and helm's version into helm.
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

echo "k8s-tools: building kube-apiserver $k8s_version, etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3), helm $helm_version into $out ($(go version | cut -d' ' -f3), $(nproc) cores)"
start=$SECONDS
# `tool` is the package pattern for the go.mod `tool` directives; one `go build` compiles all three in parallel.
# -mod=readonly: go.mod/go.sum are complete; fail instead of silently editing them.
go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$stage/" tool
mv "$stage/server" "$stage/etcd" # go.etcd.io/etcd/server/v3 is `package main`, named after "server"
for t in "${tools[@]}"; do
  mv -f "$stage/$t" "$out/$t"
done
echo "k8s-tools: built in $((SECONDS - start))s:"
for t in "${tools[@]}"; do
  printf '  %-16s %4s MB\n' "$t" "$(($(stat -c %s "$out/$t") / 1024 / 1024))"
done
