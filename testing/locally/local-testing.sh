#!/usr/bin/env bash
# Local end-to-end check of kube-audit-rest without a cluster:
#   1. makes a throwaway CA and a server certificate for 127.0.0.1 with openssl,
#   2. starts the kube-audit-rest executable (dist/kube-audit-rest; built if missing) on free ports,
#   3. posts every AdmissionReview in data/ over HTTPS, checking each answer,
#   4. diffs the audit log against expected.jsonl, with the timestamps set aside after checking their format.
# The lines are 1.x's, byte for byte, but for Secret values: those are redacted (the default), with a
# fixed key (data/redaction.key) so that the markers in expected.jsonl are the same on every run.
# Prints "Test passed" and exits 0, or says what differed and exits 1. Needs bash, openssl, curl and bun.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${KUBE_AUDIT_REST_BIN:-$root/dist/kube-audit-rest}
work=$(mktemp -d)
pid=""

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ ! -x "$bin" ]; then
  echo "building $bin"
  (cd "$root" && bun run build >/dev/null)
fi

# A CA and a server certificate signed by it, valid for 127.0.0.1 and localhost.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=kube-audit-rest local test CA" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

free_port() {
  bun -e 'const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); console.log(s.port); s.stop(true);'
}
port=$(free_port)
metrics_port=$(free_port)
while [ "$metrics_port" = "$port" ]; do metrics_port=$(free_port); done

"$bin" --cert-filename "$work/tls.crt" --cert-key-filename "$work/tls.key" \
  --server-port "$port" --metrics-port "$metrics_port" --bind-address 127.0.0.1 \
  --logger-filename "$work/audit.log" --redaction-key-file "$here/redaction.key" 2>"$work/server.log" &
pid=$!

# Ready when /readyz answers 200; give up after 10 s.
deadline=$((SECONDS + 10))
until curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "server did not become ready; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.05
done

for review in "$here"/data/*.json; do
  uid=$(grep -o '"uid": *"[^"]*"' "$review" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
  answer=$(curl -fsS --cacert "$work/ca.crt" -H 'Content-Type: application/json' \
    --data-binary "@$review" "https://127.0.0.1:$port/log-request")
  case "$answer" in
    *"\"response\":{\"uid\":\"$uid\",\"allowed\":true,"*) ;;
    *)
      echo "unexpected answer for $(basename "$review"): $answer" >&2
      exit 1
      ;;
  esac
done

stamp='"requestReceivedTimestamp":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z"'
if grep -Evq "$stamp" "$work/audit.log"; then
  echo "a line lacks a well-formed requestReceivedTimestamp:" >&2
  grep -Ev "$stamp" "$work/audit.log" >&2
  exit 1
fi
sed -E "s/$stamp/\"requestReceivedTimestamp\":\"TIMESTAMP\"/" "$work/audit.log" >"$work/audit.masked"
if ! diff -u "$here/expected.jsonl" "$work/audit.masked"; then
  echo "output not as expected" >&2
  exit 1
fi
echo "Test passed"
