/**
 * @module `bun run demo`: kube-audit-rest's main job in one command, on this machine alone.
 *
 * Makes a throwaway CA and server certificate, starts kube-audit-rest on free loopback ports, posts the
 * sample AdmissionReviews in testing/locally/data over HTTPS, then prints the audit lines it wrote, one
 * summary row each and one whole line, and stops the server with SIGTERM.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCaAndServerCertInProcess } from '../../test/helpers/certs.ts';
import { freePort } from '../../test/helpers/server-process.ts';

const root = join(import.meta.dir, '..', '..');
const dataDir = join(root, 'testing', 'locally', 'data');
const READY_DEADLINE_MS = 10_000;

type Line = {
  request: {
    uid: string;
    operation: string;
    kind: { kind: string };
    subResource?: string;
    namespace?: string;
    name?: string;
    dryRun?: boolean;
    userInfo: { username: string };
  };
  requestReceivedTimestamp: string;
};

const work = mkdtempSync(join(tmpdir(), 'kube-audit-rest-demo-'));
const logFile = join(work, 'audit.log');
const { ca, server: cert } = await makeCaAndServerCertInProcess(work);
const port = freePort();
let metricsPort = freePort();
while (metricsPort === port) metricsPort = freePort();

console.log(`kube-audit-rest demo: HTTPS on 127.0.0.1:${port}, metrics on 127.0.0.1:${metricsPort}`);
const server = Bun.spawn(
  [
    process.execPath,
    join(root, 'src', 'main.ts'),
    `--cert-filename=${cert.certFile}`,
    `--cert-key-filename=${cert.keyFile}`,
    `--server-port=${port}`,
    `--metrics-port=${metricsPort}`,
    '--bind-address=127.0.0.1',
    `--logger-filename=${logFile}`,
  ],
  { stdout: 'inherit', stderr: 'inherit' },
);

try {
  const deadline = Date.now() + READY_DEADLINE_MS;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline || server.exitCode !== null)
      throw new Error('kube-audit-rest did not become ready');
    await Bun.sleep(50); // polling interval while waiting for readiness
  }

  for (const file of readdirSync(dataDir).sort()) {
    const res = await fetch(`https://127.0.0.1:${port}/log-request`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: readFileSync(join(dataDir, file)),
      tls: { ca: ca.cert },
    });
    console.log(`POST ${file} -> ${res.status} ${await res.text()}`);
  }

  const lines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
  console.log(`\n${lines.length} lines in ${logFile}:\n`);
  for (const text of lines) {
    const { request: r, requestReceivedTimestamp: at } = JSON.parse(text) as Line;
    const target = [r.namespace, r.name].filter(Boolean).join('/');
    const sub = r.subResource ? `/${r.subResource}` : '';
    console.log(
      `${at}  ${r.operation.padEnd(7)} ${`${r.kind.kind}${sub}`.padEnd(22)} ${target.padEnd(18)} by ${r.userInfo.username}${r.dryRun ? '  (dry run)' : ''}`,
    );
  }
  console.log(`\nThe first line, whole:\n${lines[0]}\n`);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  console.log(
    metrics
      .split('\n')
      .filter((l) => /^kube_audit_rest_(http_requests|valid_requests_processed|written_bytes)_total /.test(l))
      .join('\n'),
  );
} finally {
  server.kill('SIGTERM');
  const code = await server.exited;
  console.log(`\nkube-audit-rest stopped with exit status ${code}`);
  rmSync(work, { recursive: true, force: true });
}
