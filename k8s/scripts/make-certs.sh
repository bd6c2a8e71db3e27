#!/usr/bin/env bash
# Serving certificate for kube-audit-rest on a cluster without cert-manager: makes a CA and a server
# certificate for the Service's DNS names with openssl, stores them as the TLS Secret the Deployment
# mounts, and puts the CA into the webhook's caBundle.
#
#   kubectl apply -k k8s/without-cert-manager
#   k8s/scripts/make-certs.sh
#
# Uses the current kubectl context (or $KUBECONFIG). Settings, from the environment:
#   NAMESPACE (kube-audit-rest)  SERVICE (kube-audit-rest)  SECRET (kube-audit-rest-tls)
#   WEBHOOK (kube-audit-rest: the ValidatingWebhookConfiguration)  CLUSTER_DOMAIN (cluster.local)
#   DAYS (365: server certificate)  CA_DAYS (1825)  OUT_DIR (unset: keep no files; set: keep them there)
#
# Run it again before the certificate expires: it makes a new CA and certificate, and keeps the
# previous CA in caBundle beside the new one, so the API server trusts the pods both before and after
# they reload the new Secret. The CA key is thrown away unless OUT_DIR is set; keep it safe if so.
set -euo pipefail

namespace="${NAMESPACE:-kube-audit-rest}"
service="${SERVICE:-kube-audit-rest}"
secret="${SECRET:-kube-audit-rest-tls}"
webhook="${WEBHOOK:-kube-audit-rest}"
domain="${CLUSTER_DOMAIN:-cluster.local}"
days="${DAYS:-365}"
ca_days="${CA_DAYS:-1825}"

for tool in openssl kubectl base64 awk; do
  command -v "$tool" >/dev/null || { echo "make-certs: $tool is not on PATH" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# P-256 keys: small, fast, and accepted by every supported API server.
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -sha256 -key ca.key -days "$ca_days" -out ca.crt \
  -subj "/CN=kube-audit-rest-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

openssl ecparam -name prime256v1 -genkey -noout -out tls.key 2>/dev/null
openssl req -new -sha256 -key tls.key -out tls.csr -subj "/CN=$service.$namespace.svc"
cat >server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.$domain
EXT
openssl x509 -req -sha256 -in tls.csr -CA ca.crt -CAkey ca.key -days "$days" \
  -set_serial "0x$(openssl rand -hex 16)" -extfile server.ext -out tls.crt 2>/dev/null
openssl verify -CAfile ca.crt tls.crt >/dev/null

# The Secret the Deployment mounts at /etc/tls; kube-audit-rest reloads it when it changes.
kubectl create secret generic "$secret" --namespace "$namespace" --type=kubernetes.io/tls \
  --from-file=tls.crt --from-file=tls.key --from-file=ca.crt --dry-run=client -o yaml |
  kubectl apply --server-side --force-conflicts --field-manager=make-certs -f -

# caBundle: the new CA first, then the previous one (if any), so that neither the old certificate
# (until the pods reload) nor the new one is refused in between.
previous="$(kubectl get validatingwebhookconfiguration "$webhook" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')"
cp ca.crt bundle.pem
if [[ -n "$previous" ]]; then
  printf '%s' "$previous" | base64 -d |
    awk '/-----BEGIN CERTIFICATE-----/ { n++ } n == 1 { print } /-----END CERTIFICATE-----/ && n == 1 { exit }' \
      >>bundle.pem
fi
bundle="$(base64 -w0 <bundle.pem)"

count="$(kubectl get validatingwebhookconfiguration "$webhook" -o jsonpath='{range .webhooks[*]}x{end}')"
patch=""
for ((i = 0; i < ${#count}; i++)); do
  patch+="${patch:+,}{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
done
kubectl patch validatingwebhookconfiguration "$webhook" --type=json -p "[$patch]"

if [[ -n "${OUT_DIR:-}" ]]; then
  mkdir -p "$OUT_DIR"
  cp ca.crt ca.key tls.crt tls.key "$OUT_DIR/"
  chmod 600 "$OUT_DIR/ca.key" "$OUT_DIR/tls.key"
  echo "make-certs: files kept in $OUT_DIR"
fi
echo "make-certs: Secret $namespace/$secret and the caBundle of $webhook updated; the server certificate expires in $days days"
