/**
 * Faults for real against the compiled executable: a full disk (a small tmpfs), the log file deleted,
 * its directory replaced; with each `--on-write-error`, nothing acknowledged is lost, every loss is
 * counted exactly, and readiness comes back by itself, with no traffic, once the fault is gone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert, type TestCa, type TestServerCert } from '../helpers/certs.ts';
import { reviewBody, type ServerProcess, startServer, waitUntil } from '../helpers/server-process.ts';
import { fillDisk, isRoot, mountTmpfs, unmountTmpfs } from '../sink/helpers.ts';

/** Small enough that a few dozen padded reviews fill it. */
const TMPFS_SIZE = '256k';
/** Readiness must come back within a few probe intervals (1 s each). */
const RECOVERY_DEADLINE_MS = 10_000;
/** Concurrent clients while the disk fills. */
const CLIENTS = 8;
/** Requests each client sends across the fault. */
const PER_CLIENT = 40;

let certDir: string;
let ca: TestCa;
let cert: TestServerCert;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'kar-faults-certs-'));
  ca = await makeCa(certDir);
  cert = await makeServerCert(certDir, ca);
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

function tlsArgs(): string[] {
  return [`--cert-filename=${cert.certFile}`, `--cert-key-filename=${cert.keyFile}`];
}

async function post(
  server: ServerProcess,
  uid: string,
  pad = '',
): Promise<{ status: number; allowed: boolean }> {
  const res = await fetch(`https://127.0.0.1:${server.port}/log-request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: reviewBody(uid, pad),
    tls: { ca: ca.cert },
  });
  const text = await res.text();
  return { status: res.status, allowed: text.includes('"allowed":true') };
}

async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

async function ready(server: ServerProcess): Promise<boolean> {
  return (await fetch(`http://127.0.0.1:${server.metricsPort}/readyz`)).status === 200;
}

/** The uids of every whole line in the log file (and its backups in `dir`), in order. */
function loggedUids(path: string): string[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  expect(text === '' || text.endsWith('\n')).toBe(true);
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid);
}

/** Sends PER_CLIENT padded reviews from each of CLIENTS clients; returns the uids answered allowed and not. */
async function load(server: ServerProcess, prefix: string, pad: string) {
  const allowed: string[] = [];
  const denied: string[] = [];
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; i < PER_CLIENT; i++) {
        const uid = `${prefix}-${c}-${i}`;
        const r = await post(server, uid, pad);
        expect(r.status).toBe(200);
        (r.allowed ? allowed : denied).push(uid);
      }
    }),
  );
  return { allowed, denied };
}

const PAD = `,"pad":"${'p'.repeat(2000)}"`;

describe.skipIf(!isRoot)('the executable on a real full disk (tmpfs; needs root)', () => {
  for (const mode of ['deny', 'allow'] as const) {
    it(`--on-write-error=${mode}: nothing acknowledged is lost, each loss is counted, readiness returns without traffic`, async () => {
      const dir = mountTmpfs(`faults-${mode}`, TMPFS_SIZE);
      const logFile = join(dir, 'audit.log');
      const server = await startServer([
        ...tlsArgs(),
        `--logger-filename=${logFile}`,
        `--on-write-error=${mode}`,
      ]);
      try {
        // Leave room for about twenty lines: the first writes fit, then every write fails.
        const spare = fillDisk(dir);
        truncateSync(spare, statSync(spare).size - 48 * 1024);
        const { allowed, denied } = await load(server, mode, PAD);
        const logged = loggedUids(logFile);
        expect(new Set(logged).size).toBe(logged.length);
        const failures = await metric(server, 'kube_audit_rest_write_failures_total');
        expect(failures).toBeGreaterThan(0);
        if (mode === 'deny') {
          // Every allowed answer has its line; no denied request left one.
          expect(new Set(logged)).toEqual(new Set(allowed));
          expect(denied.length).toBeGreaterThan(0);
          expect(await metric(server, 'kube_audit_rest_denied_requests_total')).toBe(denied.length);
          expect(await metric(server, 'kube_audit_rest_unrecorded_requests_total')).toBe(0);
        } else {
          expect(denied).toEqual([]);
          const missing = allowed.filter((u) => !logged.includes(u));
          expect(missing.length).toBeGreaterThan(0);
          expect(await metric(server, 'kube_audit_rest_unrecorded_requests_total')).toBe(missing.length);
        }
        expect(await ready(server)).toBe(false);
        expect(await metric(server, 'kube_audit_rest_sink_ready')).toBe(0);

        // Space returns; no request is sent: readiness must come back by itself.
        rmSync(spare);
        await waitUntil(
          () => ready(server),
          RECOVERY_DEADLINE_MS,
          '/readyz 200 after the disk had room again',
        );
        expect(await metric(server, 'kube_audit_rest_sink_ready')).toBe(1);
        expect((await post(server, `${mode}-after`)).allowed).toBe(true);
        expect(loggedUids(logFile).at(-1)).toBe(`${mode}-after`);
        expect(server.stderr()).not.toContain('pppp');
      } finally {
        await server.terminate();
        unmountTmpfs(dir);
      }
    });
  }
});

describe('the executable when its log file or directory goes away', () => {
  it('writes to a new file when the log is deleted, and to the new directory when it is replaced', async () => {
    const base = mkdtempSync(join(tmpdir(), 'kar-faults-'));
    const dir = join(base, 'logs');
    mkdirSync(dir);
    const logFile = join(dir, 'audit.log');
    const server = await startServer([...tlsArgs(), `--logger-filename=${logFile}`]);
    try {
      expect((await post(server, 'before')).allowed).toBe(true);
      unlinkSync(logFile);
      expect((await post(server, 'after-delete')).allowed).toBe(true);
      expect(loggedUids(logFile)).toEqual(['after-delete']);

      rmSync(dir, { recursive: true });
      // With the directory gone the line cannot be written: counted, and readiness drops.
      await post(server, 'no-directory');
      expect(await metric(server, 'kube_audit_rest_unrecorded_requests_total')).toBe(1);
      mkdirSync(dir);
      await waitUntil(() => ready(server), RECOVERY_DEADLINE_MS, '/readyz 200 once the directory is back');
      expect((await post(server, 'new-directory')).allowed).toBe(true);
      expect(loggedUids(logFile)).toEqual(['new-directory']);
    } finally {
      await server.terminate();
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('--fsync=always under concurrent load', () => {
  it('acknowledges only lines that are in the file, one each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kar-fsync-'));
    const logFile = join(dir, 'audit.log');
    const server = await startServer([...tlsArgs(), `--logger-filename=${logFile}`, '--fsync=always']);
    try {
      const { allowed, denied } = await load(server, 'fsync', '');
      expect(denied).toEqual([]);
      expect(allowed).toHaveLength(CLIENTS * PER_CLIENT);
      expect(new Set(loggedUids(logFile))).toEqual(new Set(allowed));
      expect(loggedUids(logFile)).toHaveLength(allowed.length);
    } finally {
      await server.terminate();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
