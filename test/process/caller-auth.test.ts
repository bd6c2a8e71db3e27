/**
 * Process-level tests of who may call: the compiled executable with --path-token-file and
 * --client-ca-file, refused without, accepted with; and the TLS health it reports.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert, type TestCa, type TestServerCert } from '../helpers/certs.ts';
import {
  ensureExecutable,
  reviewBody,
  runToExit,
  type ServerProcess,
  startServer,
  waitUntil,
} from '../helpers/server-process.ts';

/** Deadline for a change to take effect (the token file is polled every 50 ms here). */
const DEADLINE_MS = 10_000;
const TOKEN_EU = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const TOKEN_US = '0f9e8d7c6b5a49382716a5b4c3d2e1f0';
const TOKEN_NEW = 'feedfacefeedfacefeedfacefeedface';

let dir: string;
let ca: TestCa;
let server: TestServerCert;
let clientCa: TestCa;
let client: TestServerCert;
let stranger: TestServerCert;
const running: ServerProcess[] = [];

beforeAll(async () => {
  await ensureExecutable();
  dir = mkdtempSync(join(tmpdir(), 'kar-process-auth-'));
  [ca, clientCa] = await Promise.all([makeCa(dir), makeCa(dir, { name: 'client-ca' })]);
  const strangerCa = await makeCa(dir, { name: 'stranger-ca' });
  const asClient = { extendedKeyUsage: 'clientAuth' } as const;
  // 10 days: inside the 14-day warning.
  [server, client, stranger] = await Promise.all([
    makeServerCert(dir, ca, { days: 10 }),
    makeServerCert(dir, clientCa, { ...asClient, dnsNames: [], ipAddresses: [], name: 'client' }),
    makeServerCert(dir, strangerCa, { ...asClient, dnsNames: [], ipAddresses: [], name: 'stranger' }),
  ]);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.terminate()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function baseArgs(logFile: string): string[] {
  return [
    `--cert-filename=${server.certFile}`,
    `--cert-key-filename=${server.keyFile}`,
    `--logger-filename=${logFile}`,
    '--tls-reload-interval=50ms',
  ];
}

async function start(args: string[]): Promise<ServerProcess> {
  const s = await startServer(args);
  running.push(s);
  return s;
}

/** Posts a review to `path`, with `cert` as client certificate if given; the status, or the error's code. */
async function post(
  s: ServerProcess,
  path: string,
  uid: string,
  cert?: TestServerCert,
): Promise<number | string> {
  try {
    const res = await fetch(`https://127.0.0.1:${s.port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: reviewBody(uid),
      tls: { ca: ca.cert, ...(cert ? { cert: cert.cert, key: cert.key } : {}) },
      keepalive: false,
    });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

async function metrics(s: ServerProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${s.metricsPort}/metrics`)).text();
}

/** The audit lines in `file`: uid and clusterName of each. */
function linesIn(file: string): Array<[string, unknown]> {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { request: { uid: string }; clusterName?: unknown })
    .map((l) => [l.request.uid, l.clusterName]);
}

/** Replaces `file` in one step, as the kubelet does: a reader never sees it half written. */
function replace(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

describe('kube-audit-rest --path-token-file', () => {
  it("answers only at /log-request/<token>, stamps each token's cluster, and follows the file", async () => {
    const logFile = join(dir, 'tokens.log');
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, `# two clusters\n${TOKEN_EU} prod-eu\n${TOKEN_US} prod-us\n`);
    const s = await start([...baseArgs(logFile), `--path-token-file=${tokens}`, '--cluster-name=fallback']);

    expect(await post(s, '/log-request', 'no-token')).toBe(404);
    expect(await post(s, `/log-request/${TOKEN_NEW}`, 'wrong-token')).toBe(404);
    expect(await post(s, `/log-request/${TOKEN_EU}`, 'eu')).toBe(200);
    expect(await post(s, `/log-request/${TOKEN_US}`, 'us')).toBe(200);
    expect(linesIn(logFile)).toEqual([
      ['eu', 'prod-eu'],
      ['us', 'prod-us'],
    ]);
    expect(await metrics(s)).toContain('kube_audit_rest_invalid_requests_total{reason="not_found"} 2');

    replace(tokens, `${TOKEN_NEW}\n`);
    await waitUntil(
      async () => (await post(s, `/log-request/${TOKEN_NEW}`, 'new')) === 200,
      DEADLINE_MS,
      'the new token to be accepted',
    );
    expect(await post(s, `/log-request/${TOKEN_EU}`, 'eu-again')).toBe(404);
    expect(linesIn(logFile).at(-1)).toEqual(['new', 'fallback']);

    replace(tokens, 'too-short\n');
    await waitUntil(
      async () => (await metrics(s)).includes('kube_audit_rest_path_token_reloads_total{result="failure"} 1'),
      DEADLINE_MS,
      'the bad file to be counted',
    );
    expect(await post(s, `/log-request/${TOKEN_NEW}`, 'still')).toBe(200);
    const text = await metrics(s);
    expect(text).toContain('kube_audit_rest_path_token_reloads_total{result="success"} 1');
    expect(s.stderr()).toContain('path tokens not reloaded');
    for (const token of [TOKEN_EU, TOKEN_US, TOKEN_NEW]) expect(s.stderr()).not.toContain(token);
  });

  it('exits 1 naming the file, and writes nothing, when the token file is missing or holds no token', async () => {
    const logFile = join(dir, 'never.log');
    const missing = join(dir, 'absent-tokens');
    const gone = await runToExit([...baseArgs(logFile), `--path-token-file=${missing}`]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`path token file ${missing}: cannot read (ENOENT)`);
    const empty = join(dir, 'empty-tokens');
    writeFileSync(empty, '# nothing yet\n');
    const none = await runToExit([...baseArgs(logFile), `--path-token-file=${empty}`]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`path token file ${empty}: holds no token`);
    expect(existsSync(logFile)).toBe(false);
  });
});

describe('kube-audit-rest --client-ca-file', () => {
  it('refuses a caller without a certificate the CA signed, at the handshake, and answers one with it', async () => {
    const logFile = join(dir, 'mtls.log');
    const s = await start([...baseArgs(logFile), `--client-ca-file=${clientCa.certFile}`]);
    expect(await post(s, '/log-request', 'anonymous')).not.toBe(200);
    expect(await post(s, '/log-request', 'stranger', stranger)).not.toBe(200);
    expect(await post(s, '/log-request', 'apiserver', client)).toBe(200);
    expect(linesIn(logFile)).toEqual([['apiserver', undefined]]);
    // A refused handshake is no request: nothing counted as one.
    expect(await metrics(s)).toContain('kube_audit_rest_http_requests_total 1');
  });

  it('exits 1 naming the file when the client CA is not a CA certificate', async () => {
    const result = await runToExit([
      ...baseArgs(join(dir, 'never.log')),
      `--client-ca-file=${client.certFile}`,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`client CA ${client.certFile}: the certificate is not a CA certificate`);
  });
});

describe('kube-audit-rest TLS health', () => {
  it('warns of a certificate with under 14 days left and starts both reload results at 0', async () => {
    const s = await start(baseArgs(join(dir, 'health.log')));
    const warning = s
      .stderr()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: string; msg: string; daysLeft?: number })
      .find((e) => e.msg.startsWith('certificate expires within'));
    expect(warning).toMatchObject({ level: 'warn', msg: 'certificate expires within 14 days' });
    expect(warning?.daysLeft).toBeGreaterThan(9);
    const text = await metrics(s);
    expect(text).toContain('kube_audit_rest_certificate_reloads_total{result="success"} 0');
    expect(text).toContain('kube_audit_rest_certificate_reloads_total{result="failure"} 0');
    expect(text).toMatch(/kube_audit_rest_certificate_expiry_timestamp_seconds \d+/);
  });
});
