/**
 * A soak against the compiled executable: sustained concurrent load across many rotations (with
 * compression), a certificate swap in the middle the way the kubelet updates a mounted Secret, and
 * SIGTERM while the load still runs. Afterwards every acknowledged request has exactly one whole line
 * across the log and its backups, nothing is torn or repeated, and memory stayed flat.
 * Bounded: SOAK_SECONDS of load (default 20) and at most SOAK_MAX_REQUESTS requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.ts';
import { writeSecretVolume } from '../helpers/secret-volume.ts';
import { reviewBody, type ServerProcess, startServer, waitUntil } from '../helpers/server-process.ts';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 20);
const MAX_REQUESTS = Number(process.env.SOAK_MAX_REQUESTS ?? 150_000);
/** Clients stop by themselves past this, should SIGTERM never come: every loop here is bounded. */
const HARD_CAP = MAX_REQUESTS * 2;
/** Concurrent clients, each with one request in flight. */
const CLIENTS = 16;
/** About 2 KiB per line: a 1 MB log rotates every ~500 lines. */
const PAD = `,"pad":"${'x'.repeat(1900)}"`;
/** RSS sampling interval. */
const SAMPLE_MS = 500;
/** Growth allowed between the middle and the last third of the run: flat, with room for noise. */
const MAX_RSS_GROWTH_BYTES = 24 * 1024 * 1024;

let dir: string;
let ca: TestCa;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kar-soak-'));
  ca = await makeCa(join(dir));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Every line of the log and its backups (plain and gzipped), whole or not. */
function allLines(logDir: string): { lines: string[]; torn: number; files: number } {
  let torn = 0;
  const lines: string[] = [];
  const files = readdirSync(logDir).filter(
    (f) => f.startsWith('audit') && (f.endsWith('.log') || f.endsWith('.log.gz')),
  );
  for (const f of files) {
    const raw = readFileSync(join(logDir, f));
    const text = (f.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
    if (text !== '' && !text.endsWith('\n')) torn++;
    for (const line of text.split('\n')) if (line !== '') lines.push(line);
  }
  return { lines, torn, files: files.length };
}

describe('a soak of the executable', () => {
  it(
    'loses, tears and repeats nothing across rotations, a certificate swap and SIGTERM under load, with memory flat',
    async () => {
      const secretDir = join(dir, 'tls');
      const first = await makeServerCert(join(dir), ca, { name: 'first' });
      const next = await makeServerCert(join(dir), ca, { name: 'next' });
      await writeSecretVolume(secretDir, {
        'tls.crt': readFileSync(first.certFile, 'utf8'),
        'tls.key': readFileSync(first.keyFile, 'utf8'),
      });
      const logDir = join(dir, 'logs');
      await Bun.write(join(logDir, '.keep'), '');
      const server: ServerProcess = await startServer([
        `--cert-filename=${join(secretDir, 'tls.crt')}`,
        `--cert-key-filename=${join(secretDir, 'tls.key')}`,
        `--logger-filename=${join(logDir, 'audit.log')}`,
        '--logger-max-size=1',
        '--logger-max-backups=0',
        '--logger-compress',
        '--tls-reload-interval=1s',
      ]);

      const acked: string[] = [];
      const failures: string[] = [];
      let sent = 0;
      let stop = false;
      const rss: number[] = [];
      const sampler = setInterval(() => {
        if (server.proc.exitCode === null) rss.push(rssBytes(server.proc.pid));
      }, SAMPLE_MS);
      const clients = Array.from({ length: CLIENTS }, async (_, c) => {
        while (!stop && sent < HARD_CAP) {
          const uid = `soak-${c}-${sent++}`;
          try {
            const res = await fetch(`https://127.0.0.1:${server.port}/log-request`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: reviewBody(uid, PAD),
              tls: { ca: ca.cert },
            });
            const text = await res.text();
            if (res.status === 200 && text.includes('"allowed":true')) acked.push(uid);
            else failures.push(`${res.status}`);
          } catch {
            // Refused or cut off once SIGTERM stops the listener: not acknowledged, and may not be logged.
            if (server.proc.exitCode !== null || stop) return;
          }
        }
      });

      const started = Date.now();
      await waitUntil(
        () => Date.now() - started >= (SECONDS * 1000) / 2 || sent >= MAX_REQUESTS / 2,
        SECONDS * 1000,
        'half the soak',
      );
      await writeSecretVolume(secretDir, {
        'tls.crt': readFileSync(next.certFile, 'utf8'),
        'tls.key': readFileSync(next.keyFile, 'utf8'),
      });
      await waitUntil(
        () => Date.now() - started >= SECONDS * 1000 || sent >= MAX_REQUESTS,
        SECONDS * 1000 + 5000,
        'the soak',
      );
      // SIGTERM while the clients still send: in-flight requests finish with their lines written.
      const exited = server.terminate();
      const inFlightAtSigterm = sent < HARD_CAP;
      const status = await exited;
      stop = true;
      await Promise.all(clients);
      clearInterval(sampler);

      expect(status).toBe(0);
      expect(inFlightAtSigterm).toBe(true);
      const { lines, torn, files } = allLines(logDir);
      expect(torn).toBe(0);
      const uids = lines.map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid);
      const counts = new Map<string, number>();
      for (const u of uids) counts.set(u, (counts.get(u) ?? 0) + 1);
      const repeated = [...counts].filter(([, n]) => n > 1);
      const lost = acked.filter((u) => !counts.has(u));
      const third = Math.floor(rss.length / 3);
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      const middle = median(rss.slice(third, 2 * third));
      const last = median(rss.slice(2 * third));
      const rotations = files - 1;
      console.log(
        `soak: ${sent} sent, ${acked.length} acknowledged, ${lines.length} lines in ${files} files (${rotations} rotations), ` +
          `${lost.length} lost, ${repeated.length} repeated, ${torn} torn, ${failures.length} non-200; ` +
          `RSS middle ${(middle / 2 ** 20).toFixed(1)} MiB, last ${(last / 2 ** 20).toFixed(1)} MiB`,
      );
      expect(lost).toEqual([]);
      expect(repeated).toEqual([]);
      expect(failures).toEqual([]);
      expect(rotations).toBeGreaterThanOrEqual(10);
      expect(server.stderr()).toContain('certificate reloaded');
      expect(last - middle).toBeLessThan(MAX_RSS_GROWTH_BYTES);
    },
    (SECONDS + 60) * 1000,
  );
});
