/**
 * Process-level: what each signal does to the compiled executable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { join } from 'node:path';
import { rawConnect, rawRequest } from '../helpers/raw-http.ts';
import { reviewBody, type ServerProcess, startServer, waitUntil } from '../helpers/server-process.ts';
import { logEntries, loggedUids, makeProcessFixture, type ProcessFixture } from './fixture.ts';

let fx: ProcessFixture;

beforeAll(async () => {
  fx = await makeProcessFixture('kar-signals-');
});

afterAll(() => fx.cleanup());

async function post(server: ServerProcess, uid: string): Promise<Response> {
  return fetch(`https://127.0.0.1:${server.port}/log-request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: reviewBody(uid),
    tls: { ca: fx.ca.cert },
  });
}

function hasEntry(server: ServerProcess, msg: string, fields: Record<string, unknown> = {}): boolean {
  return logEntries(server).some(
    (e) => e.msg === msg && Object.entries(fields).every(([k, v]) => e[k] === v),
  );
}

describe('kube-audit-rest signals', () => {
  it('keeps serving after SIGUSR1 (logging its state), SIGUSR2, SIGALRM and SIGPIPE', async () => {
    const logFile = join(fx.dir, 'usr.log');
    const server = await startServer([...fx.tlsArgs, `--logger-filename=${logFile}`]);
    try {
      server.proc.kill('SIGUSR1');
      await waitUntil(() => hasEntry(server, 'state'), 5_000, 'the state summary');
      const state = logEntries(server).find((e) => e.msg === 'state') as Record<string, unknown>;
      expect(state.accepting).toBe(true);
      expect(state.sinkReady).toBe(true);
      expect(typeof state.openDescriptors).toBe('number');

      for (const signal of ['SIGUSR2', 'SIGALRM'] as const) {
        server.proc.kill(signal);
        await waitUntil(
          () => hasEntry(server, 'signal ignored', { signal }),
          5_000,
          `${signal} to be logged`,
        );
      }
      // Bun ignores SIGPIPE itself; no handler, no log entry, and the process lives on.
      server.proc.kill('SIGPIPE');
      for (const uid of ['after-signals-1', 'after-signals-2']) {
        expect((await post(server, uid)).status).toBe(200);
      }
      expect(server.proc.exitCode).toBeNull();
      expect(server.proc.signalCode).toBeNull();
      expect(loggedUids(logFile)).toEqual(['after-signals-1', 'after-signals-2']);
    } finally {
      expect(await server.terminate()).toBe(0);
    }
  });

  it('finishes a request in flight and exits 0 when a second SIGTERM comes during the drain', async () => {
    const logFile = join(fx.dir, 'drain.log');
    const server = await startServer([
      ...fx.tlsArgs,
      `--logger-filename=${logFile}`,
      '--shutdown-timeout=20s',
    ]);
    const body = reviewBody('in-flight');
    const conn = await rawConnect(server.port);
    try {
      // Headers and half the body: the request is in flight until the rest arrives.
      const half = Math.floor(body.length / 2);
      conn.send(
        rawRequest(
          'POST /log-request HTTP/1.1',
          { 'content-type': 'application/json', 'content-length': String(body.length) },
          body.slice(0, half),
        ),
      );
      expect((await post(server, 'before-stop')).status).toBe(200);

      server.proc.kill('SIGTERM');
      await waitUntil(() => hasEntry(server, 'stopping: finishing in-flight requests'), 5_000, 'the drain');
      server.proc.kill('SIGTERM');
      server.proc.kill('SIGINT');
      await waitUntil(
        () => hasEntry(server, 'already stopping; signal ignored (the shutdown deadline bounds the stop)'),
        5_000,
        'the second signal to be logged',
      );
      expect(server.proc.exitCode).toBeNull();

      conn.send(body.slice(half));
      const [answer] = await conn.waitForResponses(1);
      expect(answer?.status).toBe(200);
      expect(answer?.body).toContain('"uid":"in-flight","allowed":true');
      expect(await server.proc.exited).toBe(0);
      expect(loggedUids(logFile)).toEqual(['before-stop', 'in-flight']);
      expect(hasEntry(server, 'stopped', { status: 0 })).toBe(true);
    } finally {
      conn.destroy();
      if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    }
  });

  it('exits 1 after the shutdown deadline when a request never completes, with every answered line written', async () => {
    const logFile = join(fx.dir, 'deadline.log');
    const server = await startServer([
      ...fx.tlsArgs,
      `--logger-filename=${logFile}`,
      '--shutdown-timeout=300ms',
    ]);
    const conn = await rawConnect(server.port);
    try {
      conn.send(
        rawRequest(
          'POST /log-request HTTP/1.1',
          { 'content-type': 'application/json', 'content-length': '100' },
          '{',
        ),
      );
      expect((await post(server, 'answered')).status).toBe(200);
      server.proc.kill('SIGTERM');
      expect(await server.proc.exited).toBe(1);
      expect(loggedUids(logFile)).toEqual(['answered']);
      expect(hasEntry(server, 'stopped', { status: 1 })).toBe(true);
    } finally {
      conn.destroy();
    }
  });
});
