#!/usr/bin/env bash
# Runs this checkout in a local cluster: builds the image, loads it, installs cert-manager when the
# cluster lacks it, applies k8s/base with that image, waits for the rollout, makes a few API calls and
# shows the audit lines they produced. Undo with testing/cluster/cleanup.sh.
#
#   testing/cluster/setup.sh                          # kind (cluster "kind"; create it with `kind create cluster`)
#   CLUSTER=rancher-desktop testing/cluster/setup.sh  # Rancher Desktop, containerd or dockerd engine
#
# Settings, from the environment:
#   CLUSTER               kind | rancher-desktop (default kind)
#   KIND_CLUSTER_NAME     default kind
#   IMAGE_NAME, IMAGE_TAG the local image (default kube-audit-rest:dev)
#   TARGET                Dockerfile stage: alpine (default; has a shell, so `kubectl exec -- tail` works)
#                         or distroless (what production runs; no shell)
#   CERT_MANAGER_VERSION  installed when the cluster has no cert-manager (default below; check
#                         https://github.com/cert-manager/cert-manager/releases for a newer one)
# Uses the current kubectl context: make sure it is the local cluster.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cluster="${CLUSTER:-kind}"
kind_name="${KIND_CLUSTER_NAME:-kind}"
image_name="${IMAGE_NAME:-kube-audit-rest}"
image_tag="${IMAGE_TAG:-dev}"
target="${TARGET:-alpine}"
cert_manager_version="${CERT_MANAGER_VERSION:-v1.21.2}"
cert_manager_url="https://github.com/cert-manager/cert-manager/releases/download/${cert_manager_version}/cert-manager.yaml"
namespace=kube-audit-rest
image="$image_name:$image_tag"

echo "== building $image (stage $target) for $cluster, kubectl context $(kubectl config current-context)"
case "$cluster" in
  kind)
    docker build --target "$target" -t "$image" "$repo"
    kind load docker-image "$image" --name "$kind_name"
    ;;
  rancher-desktop)
    # containerd engine: build straight into the namespace the kubelet pulls from. dockerd engine:
    # the kubelet shares Docker's image store, so a plain build is enough.
    if command -v nerdctl >/dev/null && nerdctl --namespace k8s.io info >/dev/null 2>&1; then
      nerdctl --namespace k8s.io build --target "$target" -t "$image" "$repo"
    else
      docker build --target "$target" -t "$image" "$repo"
    fi
    ;;
  *) echo "setup: CLUSTER must be kind or rancher-desktop, not $cluster" >&2; exit 2 ;;
esac

if ! kubectl get crd certificates.cert-manager.io >/dev/null 2>&1; then
  echo "== installing cert-manager $cert_manager_version"
  kubectl apply -f "$cert_manager_url"
  # Its webhook must answer before the Issuers and Certificates below are admitted.
  kubectl wait --for=condition=Available --namespace cert-manager deployment --all --timeout=180s
fi

# k8s/base with the local image, through a throwaway overlay (kustomize wants a relative path to it).
overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
cat >"$overlay/kustomization.yaml" <<YAML
resources:
  - $(realpath --relative-to="$overlay" "$repo/k8s/base")
images:
  - name: ghcr.io/kube-audit-rest/kube-audit-rest
    newName: $image_name
    newTag: "$image_tag"
YAML
echo "== applying k8s/base"
kubectl apply -k "$overlay"
kubectl wait --for=condition=Ready --namespace "$namespace" certificate/kube-audit-rest --timeout=120s
kubectl rollout status --namespace "$namespace" deployment/kube-audit-rest --timeout=180s

echo "== making an API call for the log"
marker="kube-audit-rest-smoke-$RANDOM"
kubectl create configmap "$marker" --namespace default --from-literal=hello=world
kubectl delete configmap "$marker" --namespace default

if [[ "$target" != alpine ]]; then
  echo "(distroless has no shell: run with TARGET=alpine to read the file with kubectl exec)"
  exit 0
fi
# Each call went to one of the replicas, so look in all of them. The first calls after a rollout can
# miss while the Service's endpoints catch up (failurePolicy Ignore), hence the retries.
pods="$(kubectl get pods --namespace "$namespace" -l app.kubernetes.io/name=kube-audit-rest -o name)"
for attempt in $(seq 30); do
  for pod in $pods; do
    if lines="$(kubectl exec --namespace "$namespace" "$pod" -- grep "$marker" /var/log/kube-audit-rest/audit.log)"; then
      echo "== $pod recorded:"
      echo "$lines"
      echo "== follow it with: kubectl exec -n $namespace $pod -- tail -f /var/log/kube-audit-rest/audit.log"
      echo "   (each replica writes its own file; testing/cluster/cleanup.sh removes everything)"
      exit 0
    fi
  done
  [[ $attempt == 1 ]] && echo "== not logged yet; creating it again until it is (30 s at most)"
  kubectl create configmap "$marker" --namespace default --from-literal=hello=world >/dev/null
  kubectl delete configmap "$marker" --namespace default >/dev/null
  sleep 1
done
echo "setup: no replica logged $marker; see kubectl logs -n $namespace deploy/kube-audit-rest" >&2
exit 1
