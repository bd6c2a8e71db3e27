import { afterEach, describe, expect, it } from 'bun:test';
import { connect, type Socket } from 'node:net';
import { Hono } from 'hono';
import { type OpsServer, startOpsServer } from '../../src/http/ops-server.ts';
import { createLogger, silentLogger } from '../../src/support/log.ts';
import { parseResponses } from '../helpers/raw-http.ts';
import { freePort, waitUntil } from '../helpers/server-process.ts';

let server: OpsServer | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop();
  server = undefined;
});

function app(): Hono {
  const a = new Hono();
  a.get('/healthz', (c) => c.text('ok\n'));
  a.get('/boom', () => {
    throw new Error('boom');
  });
  return a;
}

/** Sends raw bytes on a new connection; resolves with what came back once the server closed it. */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const s = connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      text += d.toString();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(text));
  });
}

describe('startOpsServer', () => {
  it('answers through the app, routing by path whatever the Host header says', async () => {
    server = await startOpsServer({
      app: app(),
      port: 0,
      hostname: '127.0.0.1',
      maxConnections: 8,
      log: silentLogger,
    });
    const text = await exchange(
      server.port,
      'GET /healthz HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n',
    );
    expect(parseResponses(text).map((r) => [r.status, r.body])).toEqual([[200, 'ok\n']]);
    expect((await fetch(`http://127.0.0.1:${server.port}/nowhere`)).status).toBe(404);
  });

  it('answers 405 to methods other than GET and HEAD, CONNECT included', async () => {
    server = await startOpsServer({
      app: app(),
      port: 0,
      hostname: '127.0.0.1',
      maxConnections: 8,
      log: silentLogger,
    });
    for (const line of [
      'POST /healthz HTTP/1.1',
      'CONNECT example.com:443 HTTP/1.1',
      'DELETE /metrics HTTP/1.1',
    ]) {
      const text = await exchange(
        server.port,
        `${line}\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
      );
      const [answer] = parseResponses(text);
      expect([line, answer?.status, answer?.headers.allow]).toEqual([line, 405, 'GET, HEAD']);
    }
    const head = await exchange(
      server.port,
      'HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(head.startsWith('HTTP/1.1 200')).toBe(true);
  });

  it('answers 500 and logs at most once a second when the app fails', async () => {
    const entries: string[] = [];
    const failing = new Hono();
    failing.get('/boom', () => Promise.reject(new Error('boom')) as never);
    failing.onError((err) => {
      throw err; // a failure the app does not answer itself reaches the server
    });
    server = await startOpsServer({
      app: failing,
      port: 0,
      hostname: '127.0.0.1',
      maxConnections: 8,
      log: createLogger({ write: (t) => entries.push(t) }),
    });
    for (let i = 0; i < 5; i++)
      expect((await fetch(`http://127.0.0.1:${server.port}/boom`)).status).toBe(500);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toContain('operations request failed');
  });

  it('closes connections beyond maxConnections as they arrive, and counts those it holds', async () => {
    server = await startOpsServer({
      app: app(),
      port: 0,
      hostname: '127.0.0.1',
      maxConnections: 2,
      log: silentLogger,
    });
    const port = server.port;
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((resolve) => {
        const s = connect(port, '127.0.0.1', () => {
          s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // an unfinished head holds the connection
          resolve();
        });
        sockets.push(s);
      });
    }
    const opsServer = server;
    await waitUntil(() => opsServer.connections() === 2, 5_000, 'two connections held');
    expect(await exchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toBe('');
    for (const s of sockets.splice(0)) s.destroy();
    await waitUntil(() => opsServer.connections() === 0, 5_000, 'the connections to close');
    const text = await exchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(parseResponses(text)[0]?.status).toBe(200);
  });

  it('rejects when the port is taken', async () => {
    const port = freePort();
    server = await startOpsServer({
      app: app(),
      port,
      hostname: '127.0.0.1',
      maxConnections: 2,
      log: silentLogger,
    });
    expect(
      startOpsServer({ app: app(), port, hostname: '127.0.0.1', maxConnections: 2, log: silentLogger }),
    ).rejects.toThrow();
  });
});
