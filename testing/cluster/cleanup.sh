#!/usr/bin/env bash
# Removes what testing/cluster/setup.sh applied. cert-manager stays unless UNINSTALL_CERT_MANAGER=1
# (with the same CERT_MANAGER_VERSION setup.sh used). Uses the current kubectl context.
set -euo pipefail

cert_manager_version="${CERT_MANAGER_VERSION:-v1.21.2}"

# The webhook first, so the API server stops calling pods that are about to go; then the namespace,
# which takes every other object with it (and works whether or not cert-manager is still there).
kubectl delete validatingwebhookconfiguration kube-audit-rest --ignore-not-found
kubectl delete namespace kube-audit-rest --ignore-not-found --wait=true

if [[ "${UNINSTALL_CERT_MANAGER:-0}" == 1 ]]; then
  kubectl delete --ignore-not-found \
    -f "https://github.com/cert-manager/cert-manager/releases/download/${cert_manager_version}/cert-manager.yaml"
fi
