/**
 * @module The floor for benchmarks: a do-nothing Bun.serve TLS server that reads the body and answers a
 * fixed "allowed" AdmissionReview. kube-audit-rest cannot be faster than this on the same machine.
 *
 *   bun testing/bench/floor-server.ts PORT CERT_FILE KEY_FILE
 */
const [port, certFile, keyFile] = process.argv.slice(2);
if (!port || !certFile || !keyFile) {
  process.stderr.write('usage: floor-server.ts PORT CERT_FILE KEY_FILE\n');
  process.exit(2);
}
const answer = new TextEncoder().encode(
  '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"floor","allowed":true}}',
);
const headers = { 'content-type': 'application/json' };
const server = Bun.serve({
  port: Number(port),
  hostname: '127.0.0.1',
  development: false,
  tls: { cert: Bun.file(certFile), key: Bun.file(keyFile) },
  async fetch(req) {
    await req.arrayBuffer();
    return new Response(answer, { headers });
  },
});
process.on('SIGTERM', () => {
  void server.stop(true);
  process.exit(0);
});
process.stderr.write(`floor server on https://127.0.0.1:${server.port}\n`);
