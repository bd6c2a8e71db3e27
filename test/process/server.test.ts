/**
 * Process-level tests: the compiled executable, real HTTPS, real files, real signals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { HELP } from '../../src/config/serve.ts';
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.ts';
import { writeSecretVolume } from '../helpers/secret-volume.ts';
import {
  ensureExecutable,
  reviewBody,
  runToExit,
  type ServerProcess,
  startServer,
  waitUntil,
} from '../helpers/server-process.ts';

let dir: string;
let ca: TestCa;
let secretDir: string;

beforeAll(async () => {
  await ensureExecutable();
  dir = mkdtempSync(join(tmpdir(), 'kar-process-'));
  ca = await makeCa(dir);
  const first = await makeServerCert(dir, ca, { name: 'first' });
  secretDir = join(dir, 'secret');
  await writeSecretVolume(secretDir, { 'tls.crt': first.cert, 'tls.key': first.key });
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tlsArgs(): string[] {
  return [
    `--cert-filename=${join(secretDir, 'tls.crt')}`,
    `--cert-key-filename=${join(secretDir, 'tls.key')}`,
  ];
}

async function post(server: ServerProcess, body: string): Promise<Response> {
  return fetch(`https://127.0.0.1:${server.port}/log-request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    tls: { ca: ca.cert },
  });
}

async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

/** The SHA-256 fingerprint of the certificate a new TLS connection is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.cert }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.on('error', reject);
  });
}

function uidsIn(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid);
}

/** Clients posting reviews with unique uids back to back until stopped; records what was acknowledged. */
function startLoad(server: ServerProcess, clients: number, prefix: string) {
  const acked: string[] = [];
  const failures: string[] = [];
  let stopped = false;
  let seq = 0;
  const workers = Array.from({ length: clients }, async () => {
    while (!stopped) {
      const uid = `${prefix}-${seq++}`;
      try {
        const res = await post(server, reviewBody(uid));
        const text = await res.text();
        if (res.status === 200 && text.includes(`"uid":"${uid}","allowed":true`)) acked.push(uid);
        else failures.push(`${res.status} ${text}`);
      } catch (err) {
        failures.push(String(err));
        if (server.proc.exitCode !== null) return;
      }
    }
  });
  return {
    acked,
    failures,
    async stop() {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

describe('kube-audit-rest executable', () => {
  it('prints the golden help and exits 0 with --help', async () => {
    const { code, stdout } = await runToExit(['--help']);
    expect(code).toBe(0);
    expect(stdout).toBe(HELP);
  });

  it('exits 1 naming the flag when a flag is unknown or bad', async () => {
    const unknown = await runToExit(['--logger-file=/tmp/x']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown flag --logger-file');
    const bad = await runToExit(['--server-port', 'https']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--server-port must be a whole number');
  });

  it('exits 1 with a clear error when the certificate is missing', async () => {
    const logFile = join(dir, 'nocert.log');
    const { code, stderr } = await runToExit([
      `--cert-filename=${join(dir, 'missing.crt')}`,
      `--cert-key-filename=${join(dir, 'missing.key')}`,
      `--logger-filename=${logFile}`,
      '--server-port=0',
      '--metrics-port=0',
      '--bind-address=127.0.0.1',
    ]);
    expect(code).toBe(1);
    expect(stderr).toContain('missing.crt');
  });

  it('exits 1 when the log file cannot be opened', async () => {
    const { code, stderr } = await runToExit([
      ...tlsArgs(),
      `--logger-filename=${join(dir, 'no', 'such', 'dir.log')}`,
    ]);
    expect(code).toBe(1);
    expect(stderr).toContain('cannot open the audit log');
  });

  describe('serving', () => {
    let server: ServerProcess;
    let logFile: string;

    beforeAll(async () => {
      logFile = join(dir, 'audit.log');
      server = await startServer([
        ...tlsArgs(),
        `--logger-filename=${logFile}`,
        '--tls-reload-interval=500ms',
      ]);
      console.log(`start-up to ready: ${server.startupMs.toFixed(0)} ms`);
    });

    afterAll(async () => {
      if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    });

    it('answers real HTTPS requests and writes one line per request, with mode 0600', async () => {
      const uids = Array.from({ length: 64 }, (_, i) => `first-${i}`);
      const answers = await Promise.all(
        uids.map((uid) => post(server, reviewBody(uid)).then((r) => r.text())),
      );
      answers.forEach((text, i) => {
        expect(text).toBe(
          `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"first-${i}","allowed":true,"auditAnnotations":{"request-uid":"first-${i}"}}}`,
        );
      });
      expect(uidsIn(readFileSync(logFile, 'utf8')).sort()).toEqual([...uids].sort());
      expect(statSync(logFile).mode & 0o777).toBe(0o600);
      expect(await metric(server, 'kube_audit_rest_valid_requests_processed_total')).toBe(64);
      expect((await fetch(`http://127.0.0.1:${server.metricsPort}/healthz`)).status).toBe(200);
    });

    it('refuses a bad body with 400 and writes nothing', async () => {
      const before = readFileSync(logFile, 'utf8');
      const res = await post(server, '{"kind":"AdmissionReview"');
      expect(res.status).toBe(400);
      expect(readFileSync(logFile, 'utf8')).toBe(before);
    });

    it('routes as the API server expects: a timeout query accepted, other methods 405, other paths 404', async () => {
      // The API server appends ?timeout=<seconds>s to the webhook URL.
      const withQuery = await fetch(`https://127.0.0.1:${server.port}/log-request?timeout=10s`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: reviewBody('with-query'),
        tls: { ca: ca.cert },
      });
      expect(withQuery.status).toBe(200);
      expect(((await withQuery.json()) as { response: { uid: string } }).response.uid).toBe('with-query');
      expect(uidsIn(readFileSync(logFile, 'utf8'))).toContain('with-query');

      const get = await fetch(`https://127.0.0.1:${server.port}/log-request`, { tls: { ca: ca.cert } });
      expect(get.status).toBe(405);
      expect(get.headers.get('allow')).toBe('POST');
      expect(((await get.json()) as { reason: string }).reason).toBe('method_not_allowed');

      const elsewhere = await fetch(`https://127.0.0.1:${server.port}/log-request/extra`, {
        method: 'POST',
        body: '{}',
        tls: { ca: ca.cert },
      });
      expect(elsewhere.status).toBe(404);
      expect(((await elsewhere.json()) as { reason: string }).reason).toBe('not_found');
    });

    it('reopens the log file when it is deleted under the running server', async () => {
      unlinkSync(logFile);
      expect((await post(server, reviewBody('after-delete'))).status).toBe(200);
      expect(existsSync(logFile)).toBe(true);
      expect(uidsIn(readFileSync(logFile, 'utf8'))).toEqual(['after-delete']);
      expect(await metric(server, 'kube_audit_rest_log_reopens_total')).toBe(1);
    });

    it('serves a certificate swapped the kubelet way, under load, with no failed request', async () => {
      const before = await servedFingerprint(server.port);
      const next = await makeServerCert(dir, ca, { name: 'second' });
      const load = startLoad(server, 8, 'swap');
      await waitUntil(() => load.acked.length >= 200, 10_000, 'load to get going');
      await writeSecretVolume(secretDir, { 'tls.crt': next.cert, 'tls.key': next.key });
      await waitUntil(
        async () => (await servedFingerprint(server.port)) === next.fingerprint256,
        10_000,
        'the new certificate to be served',
      );
      const ackedAtSwap = load.acked.length;
      await waitUntil(() => load.acked.length >= ackedAtSwap + 200, 10_000, 'load after the swap');
      await load.stop();
      console.log(
        `certificate swap under load: ${load.acked.length} acknowledged, ${load.failures.length} failed`,
      );
      expect(before).not.toBe(next.fingerprint256);
      expect(load.failures).toEqual([]);
      const logged = uidsIn(readFileSync(logFile, 'utf8')).filter((u) => u.startsWith('swap-'));
      expect(new Set(logged).size).toBe(logged.length);
      expect(logged.sort()).toEqual([...load.acked].sort());
      expect(await metric(server, 'kube_audit_rest_certificate_reloads_total{result="success"}')).toBe(1);
    });

    it('exits 0 on SIGTERM under load, with every acknowledged line in the file', async () => {
      const load = startLoad(server, 8, 'term');
      await waitUntil(() => load.acked.length >= 200, 10_000, 'load to get going');
      const started = performance.now();
      const code = await server.terminate();
      const stopMs = performance.now() - started;
      await load.stop();
      console.log(
        `SIGTERM under load: exit ${code} after ${stopMs.toFixed(0)} ms, ${load.acked.length} acknowledged`,
      );
      expect(code).toBe(0);
      const logged = uidsIn(readFileSync(logFile, 'utf8')).filter((u) => u.startsWith('term-'));
      const loggedSet = new Set(logged);
      expect(loggedSet.size).toBe(logged.length);
      for (const uid of load.acked) expect(loggedSet.has(uid)).toBe(true);
      expect(server.stderr()).toContain('"msg":"stopped"');
    });
  });

  it('writes bare lines to stdout and its own logs to stderr with --audit-to-std-log', async () => {
    const server = await startServer([...tlsArgs(), '--audit-to-std-log']);
    try {
      for (const uid of ['out-1', 'out-2']) expect((await post(server, reviewBody(uid))).status).toBe(200);
    } finally {
      expect(await server.terminate()).toBe(0);
    }
    const out = server.stdout();
    expect(uidsIn(out)).toEqual(['out-1', 'out-2']);
    expect(out).not.toContain('"level"');
    expect(server.stderr()).toContain('"level":"info"');
    expect(server.stderr()).not.toContain('out-1');
  });
  it('refuses bodies over the cap with 413, declared or streamed, and keeps serving', async () => {
    const logFile = join(dir, 'cap.log');
    const server = await startServer([
      ...tlsArgs(),
      `--logger-filename=${logFile}`,
      '--max-request-bytes=65536',
    ]);
    try {
      const big = reviewBody('big', `,"pad":"${'x'.repeat(70_000)}"`);
      const declared = await post(server, big);
      expect(declared.status).toBe(413);
      const streamed = await fetch(`https://127.0.0.1:${server.port}/log-request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: new Blob([big]).stream(),
        tls: { ca: ca.cert },
      });
      expect(streamed.status).toBe(413);
      expect((await post(server, reviewBody('small'))).status).toBe(200);
      expect(uidsIn(readFileSync(logFile, 'utf8'))).toEqual(['small']);
    } finally {
      expect(await server.terminate()).toBe(0);
    }
  });

  it.skipIf(process.getuid?.() !== 0)(
    'answers allowed on a full disk, counts the loss, keeps whole lines, and recovers when space returns',
    async () => {
      const mnt = mkdtempSync(join(tmpdir(), 'kar-full-'));
      const mount = Bun.spawnSync(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      if (mount.exitCode !== 0) throw new Error(`cannot mount a tmpfs: ${mount.stderr.toString()}`);
      const logFile = join(mnt, 'audit.log');
      const server = await startServer([...tlsArgs(), `--logger-filename=${logFile}`]);
      try {
        writeFileSync(join(mnt, 'filler'), new Uint8Array(40 * 1024));
        const pad = `,"pad":"${'p'.repeat(1200)}"`;
        let i = 0;
        while ((await metric(server, 'kube_audit_rest_write_failures_total')) === 0) {
          if (i > 100) throw new Error('the disk never filled');
          const res = await post(server, reviewBody(`fill-${i++}`, pad));
          expect(res.status).toBe(200);
          expect(await res.text()).toContain('"allowed":true');
        }
        const lines = uidsIn(readFileSync(logFile, 'utf8'));
        expect(readFileSync(logFile, 'utf8').endsWith('}\n')).toBe(true);
        expect(await metric(server, 'kube_audit_rest_valid_requests_processed_total')).toBe(lines.length);
        expect(lines.length).toBe(i - 1);
        expect((await fetch(`http://127.0.0.1:${server.metricsPort}/readyz`)).status).toBe(503);
        expect(server.stderr()).toContain('audit line not written');
        expect(server.stderr()).not.toContain('pppp');

        unlinkSync(join(mnt, 'filler'));
        expect((await post(server, reviewBody('after-full'))).status).toBe(200);
        expect(uidsIn(readFileSync(logFile, 'utf8'))).toEqual([...lines, 'after-full']);
        expect((await fetch(`http://127.0.0.1:${server.metricsPort}/readyz`)).status).toBe(200);
      } finally {
        await server.terminate();
        if (Bun.spawnSync(['umount', mnt]).exitCode !== 0) Bun.spawnSync(['umount', '-l', mnt]);
        rmSync(mnt, { recursive: true, force: true });
      }
    },
  );
});
