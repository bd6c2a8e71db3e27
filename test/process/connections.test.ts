/**
 * Process-level: the connection caps at a low descriptor limit (`ulimit -n` for the child), with real
 * TLS connections that complete their handshake and then sit idle, as a connection flood does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import {
  reviewBody,
  runToExit,
  type ServerProcess,
  startServer,
  waitUntil,
} from '../helpers/server-process.ts';
import { logEntries, makeProcessFixture, metric, type ProcessFixture } from './fixture.ts';

let fx: ProcessFixture;

beforeAll(async () => {
  fx = await makeProcessFixture('kar-connections-');
});

afterAll(() => fx.cleanup());

/** The descriptor limit the server runs with: low enough for a flood from one test process to reach. */
const LIMIT = 1_200;
/** Probes of the metrics port while flooded, and the pause between them. */
const PROBES = 5;
const PROBE_PACE_MS = 200;
/** How long a probe waits for its answer, as the kubelet's default `timeoutSeconds: 1`. */
const PROBE_TIMEOUT_MS = 1_000;
/** Longest wait for a flood to settle: it takes well under a second when the server keeps up. */
const FLOOD_SETTLE_MS = 3_000;
/** Connections in the flood: more than the limit, so without a cap the process runs out of descriptors. */
const FLOOD = 1_300;

/** Connections opened by {@link flood}: every socket (to close them all), and how each ended up so far. */
type Flood = { sockets: TLSSocket[]; open: () => number; failed: () => number; settled: () => boolean };

/**
 * Opens `n` TLS connections at once and counts those whose handshake completes and those that fail.
 * A server out of descriptors leaves some neither, waiting in its listen queue.
 */
function flood(port: number, n: number): Flood {
  const sockets: TLSSocket[] = [];
  let open = 0;
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      open++;
    });
    socket.on('error', () => {
      failed++;
    });
    sockets.push(socket);
  }
  return { sockets, open: () => open, failed: () => failed, settled: () => open + failed === n };
}

/** Waits until the flood has settled, or for `ms` at most (a server out of descriptors never lets it). */
async function settle(f: Flood, ms: number): Promise<void> {
  await waitUntil(f.settled, ms, 'the flood to settle').catch(() => {});
}

/** CPU time (user + system) the process has used, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15 of stat
  return ticks / Number(Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim());
}

/**
 * Asks /healthz on a new plain connection; resolves with the status, or 0 when the connection closed
 * without one or no answer came within {@link PROBE_TIMEOUT_MS} (the kubelet's probe timeout is 1 s).
 */
function freshHealthz(port: number): Promise<number> {
  return new Promise((resolve) => {
    let text = '';
    const s = netConnect(port, '127.0.0.1', () =>
      s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    s.setTimeout(PROBE_TIMEOUT_MS, () => s.destroy());
    s.on('data', (d: Buffer) => {
      text += d.toString();
    });
    s.on('error', () => {});
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)));
  });
}

async function status(url: string): Promise<number> {
  return fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
    (r) => r.status,
    () => 0,
  );
}

describe('connection cap', () => {
  it('keeps the metrics port answering and the CPU idle when a flood passes the descriptor limit, then serves again', async () => {
    const logFile = join(fx.dir, 'flood.log');
    const server: ServerProcess = await startServer([...fx.tlsArgs, `--logger-filename=${logFile}`], {
      descriptorLimit: LIMIT,
    });
    let f: Flood | undefined;
    try {
      f = flood(server.port, FLOOD);
      await settle(f, FLOOD_SETTLE_MS);
      console.log(`flood of ${FLOOD} at a limit of ${LIMIT}: ${f.open()} open, ${f.failed()} refused`);

      // For a second, the metrics port must answer a probe on a new connection (as the kubelet's are) every 200 ms (the pace of a probe, not a
      // wait for anything), and the server must not spin.
      const cpuBefore = cpuSeconds(server.proc.pid);
      const started = performance.now();
      for (let i = 0; i < PROBES; i++) {
        expect(await freshHealthz(server.metricsPort)).toBe(200);
        await Bun.sleep(PROBE_PACE_MS);
      }
      const cpuShare = (cpuSeconds(server.proc.pid) - cpuBefore) / ((performance.now() - started) / 1000);
      console.log(`server CPU while flooded: ${(cpuShare * 100).toFixed(0)}% of a core`);
      expect(cpuShare).toBeLessThan(0.5);
      const serving = logEntries(server).find((e) => e.msg === 'serving') as {
        connections: { maxConnections: number };
      };
      const cap = serving.connections.maxConnections;
      expect(cap).toBeGreaterThan(0);
      expect(cap).toBeLessThan(LIMIT);
      expect(await status(`http://127.0.0.1:${server.metricsPort}/readyz`)).toBe(503);
      expect(await metric(server, 'kube_audit_rest_connection_cap_reached_total')).toBe(1);

      for (const s of f.sockets) s.destroy();
      await waitUntil(
        async () => (await status(`http://127.0.0.1:${server.metricsPort}/readyz`)) === 200,
        10_000,
        'the listener to open again',
      );
      const res = await fetch(`https://127.0.0.1:${server.port}/log-request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: reviewBody('after-flood'),
        tls: { ca: fx.ca.cert },
      });
      expect(res.status).toBe(200);
      expect(logEntries(server, 'error')).toEqual([]);
    } finally {
      for (const s of f?.sockets ?? []) s.destroy();
      if (server.proc.exitCode === null) expect(await server.terminate()).toBe(0);
    }
  });

  it('holds an explicit --max-connections and --metrics-max-connections', async () => {
    const server = await startServer(
      [
        ...fx.tlsArgs,
        `--logger-filename=${join(fx.dir, 'explicit.log')}`,
        '--max-connections=40',
        '--metrics-max-connections=3',
      ],
      { descriptorLimit: LIMIT },
    );
    let f: Flood | undefined;
    try {
      // Ten at a time, each batch settled before the next, so the cap is checked between batches:
      // past the cap, at most the batch in flight lands before the listener closes.
      const sockets: TLSSocket[] = [];
      let open = 0;
      let refused = 0;
      for (let batch = 0; batch < 12; batch++) {
        const b = flood(server.port, 10);
        await settle(b, FLOOD_SETTLE_MS);
        sockets.push(...b.sockets);
        open += b.open();
        refused += b.failed();
      }
      f = { sockets, open: () => open, failed: () => refused, settled: () => true };
      expect(open).toBeGreaterThanOrEqual(40);
      expect(open).toBeLessThanOrEqual(40 + 2 * 10);
      expect(refused).toBe(120 - open);
      expect(await metric(server, 'kube_audit_rest_connection_cap_reached_total')).toBe(1);

      // Three idle connections fill the metrics port; a fourth is closed as it arrives.
      const idle = await Promise.all(
        [0, 1, 2].map(
          () =>
            new Promise<Socket>((resolve) => {
              const s = netConnect(server.metricsPort, '127.0.0.1', () => {
                s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // a head never finished
                resolve(s);
              });
            }),
        ),
      );
      await waitUntil(async () => (await freshHealthz(server.metricsPort)) === 0, 5_000, 'the metrics cap');
      for (const s of idle) s.destroy();
      await waitUntil(
        async () => (await freshHealthz(server.metricsPort)) === 200,
        5_000,
        'room on the metrics port',
      );
    } finally {
      for (const s of f?.sockets ?? []) s.destroy();
      if (server.proc.exitCode === null) expect(await server.terminate()).toBe(0);
    }
  });

  it('refuses to start with a --max-connections the descriptor limit cannot hold, naming the flag', async () => {
    const { code, stderr } = await runToExit(
      [
        ...fx.tlsArgs,
        `--logger-filename=${join(fx.dir, 'refused.log')}`,
        '--server-port=0',
        '--metrics-port=0',
        '--bind-address=127.0.0.1',
        '--max-connections=1000',
      ],
      { descriptorLimit: LIMIT },
    );
    expect(code).toBe(1);
    expect(stderr).toContain('--max-connections=1000 leaves too few of the 1200 descriptors');
  });
});
