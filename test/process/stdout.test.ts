/**
 * Process-level: `--audit-to-std-log` with a reader that stops reading. Standard output is a FIFO
 * whose read end this test holds open and leaves unread until it chooses to drain it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { reviewBody, type ServerProcess, startServer } from '../helpers/server-process.ts';
import { makeProcessFixture, metric, type ProcessFixture } from './fixture.ts';

let fx: ProcessFixture;

beforeAll(async () => {
  fx = await makeProcessFixture('kar-stdout-');
});

afterAll(() => fx.cleanup());

/** Padding that makes each line about 4 KiB, so a 64 KiB pipe fills within 16 lines. */
const PAD = `,"pad":"${'p'.repeat(4_000)}"`;
/** Lines sent while the reader is stalled: well past what the pipe holds. */
const STALLED_LINES = 40;
/** Longest a probe may take while stdout is stalled; a frozen event loop answers none. */
const PROBE_DEADLINE_MS = 1_000;

/** Reads what the FIFO holds now, without blocking. */
function drain(fd: number): string {
  const chunk = Buffer.alloc(64 * 1024);
  let text = '';
  for (;;) {
    let n = 0;
    try {
      n = readSync(fd, chunk, 0, chunk.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return text;
      throw err;
    }
    if (n === 0) return text;
    text += chunk.subarray(0, n).toString();
  }
}

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work;
  return { value, ms: performance.now() - started };
}

describe('--audit-to-std-log with a stalled reader', () => {
  it('keeps answering reviews and probes, reports the sink unready, and writes whole lines once the reader drains', async () => {
    const fifo = join(fx.dir, 'stdout.fifo');
    expect(Bun.spawnSync(['mkfifo', fifo]).exitCode).toBe(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY);
    let server: ServerProcess | undefined;
    try {
      server = await startServer([...fx.tlsArgs, '--audit-to-std-log'], { stdoutFd: writer });
      closeSync(writer);
      const running = server;
      const post = (uid: string) =>
        fetch(`https://127.0.0.1:${running.port}/log-request`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: reviewBody(uid, PAD),
          tls: { ca: fx.ca.cert },
        });

      // Nobody reads: the pipe fills, and every review is still answered allowed.
      const answers = await Promise.all(
        Array.from({ length: STALLED_LINES }, (_, i) => timed(post(`stalled-${i}`).then((r) => r.text()))),
      );
      for (const [i, a] of answers.entries()) {
        expect(a.value).toContain(`"uid":"stalled-${i}","allowed":true`);
      }
      const health = await timed(
        fetch(`http://127.0.0.1:${running.metricsPort}/healthz`).then((r) => r.status),
      );
      expect(health.value).toBe(200);
      expect(health.ms).toBeLessThan(PROBE_DEADLINE_MS);
      const ready = await fetch(`http://127.0.0.1:${running.metricsPort}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toContain('sink');
      const unrecorded = await metric(running, 'kube_audit_rest_unrecorded_requests_total');
      expect(unrecorded).toBeGreaterThan(0);

      // The reader comes back: what the pipe held is whole lines, and new reviews are written again.
      let out = drain(reader);
      const deadline = Date.now() + 10_000;
      let after = 0;
      while (!out.includes('"uid":"after-') && Date.now() < deadline) {
        expect((await post(`after-${after++}`)).status).toBe(200);
        out += drain(reader);
      }
      const lines = out.split('\n');
      expect(lines.at(-1)).toBe('');
      for (const line of lines.slice(0, -1)) {
        expect(() => JSON.parse(line)).not.toThrow();
      }
      const written = lines
        .slice(0, -1)
        .map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid);
      expect(written.filter((u) => u.startsWith('stalled-')).length).toBeLessThan(STALLED_LINES);
      expect(written.some((u) => u.startsWith('after-'))).toBe(true);
    } finally {
      if (server !== undefined && server.proc.exitCode === null) {
        server.proc.kill('SIGTERM');
        // Drain while it stops, so a flush at exit cannot wait on the pipe.
        const stop = server.proc.exited;
        while (server.proc.exitCode === null) {
          drain(reader);
          await Promise.race([stop, Bun.sleep(20)]);
        }
        expect(await stop).toBe(0);
      }
      closeSync(reader);
    }
  });
});
