import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { connect as tlsConnect } from 'node:tls';
import { createLogger, silentLogger } from '../../src/support/log.ts';
import type { TlsMaterial } from '../../src/tls/material.ts';
import { TlsMaterialError } from '../../src/tls/material.ts';
import type { TlsServer, TlsServerOptions } from '../../src/tls/server.ts';
import { startTlsServer } from '../../src/tls/server.ts';
import type { TestCa, TestServerCert } from '../helpers/certs.ts';
import { makeCa, makeServerCert, openssl } from '../helpers/certs.ts';
import { writeSecretVolume } from '../helpers/secret-volume.ts';
import type { SwapUnderLoadResult } from '../helpers/swap-under-load.ts';
import { swapUnderLoad } from '../helpers/swap-under-load.ts';

/** Deadline for anything a test waits on; each is normally done in well under a second. */
const DEADLINE_MS = 10_000;
/** Per-test limit for the load scenarios (about 5 s each here); Bun's default of 5 s is too tight for them. */
const LOAD_TEST_TIMEOUT_MS = 60_000;

let dir: string;
let ca: TestCa;
let first: TestServerCert;
let second: TestServerCert;
let third: TestServerCert;
const running: TlsServer[] = [];
let volumes = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-tls-server-'));
  ca = await makeCa(dir);
  [first, second, third] = await Promise.all([
    makeServerCert(dir, ca, { name: 'first' }),
    makeServerCert(dir, ca, { name: 'second' }),
    makeServerCert(dir, ca, { name: 'third' }),
  ]);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop(true)));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh kubelet-style Secret volume holding `cert`'s pair; returns its tls.crt and tls.key paths. */
async function volumeWith(cert: TestServerCert): Promise<{ dir: string; certFile: string; keyFile: string }> {
  const volume = join(dir, `volume-${++volumes}`);
  await writeSecretVolume(volume, { 'tls.crt': cert.cert, 'tls.key': cert.key });
  return { dir: volume, certFile: join(volume, 'tls.crt'), keyFile: join(volume, 'tls.key') };
}

function publish(volume: string, cert: string, key: string): Promise<string> {
  return writeSecretVolume(volume, { 'tls.crt': cert, 'tls.key': key });
}

/** Starts a server on 127.0.0.1 that echoes the request body's size; stopped after each test. */
async function serve(options: Partial<TlsServerOptions> & Pick<TlsServerOptions, 'certFile' | 'keyFile'>) {
  const server = await startTlsServer({
    hostname: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    async fetch(req) {
      return new Response(`got ${(await req.arrayBuffer()).byteLength} bytes`);
    },
    ...options,
  });
  running.push(server);
  return server;
}

/** Opens a TLS connection that trusts the test CA; resolves once the handshake is done. */
function connect(port: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'localhost' }, () =>
      resolve(socket),
    );
    socket.once('error', reject);
  });
}

/** The SHA-256 fingerprint of the certificate a new connection is given. */
async function servedFingerprint(port: number): Promise<string> {
  const socket = await connect(port);
  const fingerprint = socket.getPeerCertificate().fingerprint256;
  socket.destroy();
  return fingerprint;
}

/**
 * The same, while a swap may be under way: a connection still queued on the old listening socket when
 * it closes is reset (see server.ts, tcp_migrate_req), which here means "not the new one yet".
 */
function fingerprintDuringSwap(port: number): Promise<string> {
  return servedFingerprint(port).catch((err: NodeJS.ErrnoException) => `reset: ${err.code}`);
}

/** Polls `condition` every 10 ms until it holds; fails the test after the deadline. */
async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(10);
  }
}

/** Sends one HTTP/1.1 request on `socket` and reads the response head (the bodies here are short). */
function roundTrip(socket: TLSSocket, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n\r\n') && /bytes$/.test(text)) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  });
}

describe('startTlsServer', () => {
  it('serves the handler over TLS with the certificate from the files', async () => {
    let address: string | undefined;
    const server = await serve({
      certFile: first.certFile,
      keyFile: first.keyFile,
      fetch: (req, bunServer) => {
        address = bunServer.requestIP(req)?.address;
        return new Response('hello');
      },
    });
    const res = await fetch(`https://127.0.0.1:${server.port}/log-request`, { tls: { ca: ca.cert } });
    expect(await res.text()).toBe('hello');
    expect(address).toBe('127.0.0.1');
    expect(await servedFingerprint(server.port)).toBe(first.fingerprint256);
    expect(server.material.fingerprint256).toBe(first.fingerprint256);
    expect(server.isReady()).toBe(true);
  });

  it("serves routes from Bun's router before fetch, and answers through onError when a handler throws", async () => {
    const server = await serve({
      certFile: first.certFile,
      keyFile: first.keyFile,
      routes: {
        '/route': { POST: () => new Response('from the route') },
        '/boom': {
          POST: () => {
            throw new Error('boom');
          },
        },
      },
      fetch: (req) => new Response(`from fetch: ${req.method}`),
      onError: (error) => new Response(`handled: ${error.message}`, { status: 500 }),
    });
    const url = (path: string) => `https://127.0.0.1:${server.port}${path}`;
    const tls = { ca: ca.cert };
    expect(await (await fetch(url('/route'), { method: 'POST', tls })).text()).toBe('from the route');
    expect(await (await fetch(url('/route'), { tls })).text()).toBe('from fetch: GET');
    expect(await (await fetch(url('/other'), { method: 'POST', tls })).text()).toBe('from fetch: POST');
    const boom = await fetch(url('/boom'), { method: 'POST', tls });
    expect(boom.status).toBe(500);
    expect(await boom.text()).toBe('handled: boom');
  });

  it('refuses TLS 1.0 and 1.1 and accepts 1.2 and 1.3 when a client offers each', async () => {
    const server = await serve({ certFile: first.certFile, keyFile: first.keyFile });
    async function handshake(version: string): Promise<string> {
      // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1 at all; without it the client refuses locally and the
      // test would prove nothing about the server. A refusal must then be the server's alert 70.
      return openssl([
        's_client',
        '-connect',
        `127.0.0.1:${server.port}`,
        `-${version}`,
        '-cipher',
        'DEFAULT@SECLEVEL=0',
        '-CAfile',
        ca.certFile,
        '-servername',
        'localhost',
      ]).catch((err: Error) => err.message);
    }
    for (const old of ['tls1', 'tls1_1']) {
      const out = await handshake(old);
      expect(out).toContain('alert protocol version');
      expect(out).not.toMatch(/Cipher is [A-Z]/);
    }
    expect(await handshake('tls1_2')).toMatch(/New, TLSv1\.2, Cipher is ECDHE-/);
    expect(await handshake('tls1_3')).toMatch(/New, TLSv1\.3, Cipher is TLS_/);
  });

  it('throws before doing anything when an option is impossible', () => {
    const base = {
      certFile: first.certFile,
      keyFile: first.keyFile,
      logger: silentLogger,
      fetch: () => new Response(),
    };
    const impossible: Array<[Partial<TlsServerOptions>, string]> = [
      [{ port: -1 }, 'port must be an integer from 0 to 65535, got -1'],
      [{ port: 65_536 }, 'port must be an integer'],
      [{ port: 1.5 }, 'port must be an integer'],
      [{ port: 0, idleTimeout: 256 }, 'idleTimeout must be an integer from 0 to 255'],
      [{ port: 0, reloadIntervalMs: -1 }, 'reloadIntervalMs must be an integer'],
      [{ port: 0, reloadIntervalMs: 2 ** 31 }, 'reloadIntervalMs must be an integer'],
      [{ port: 0, drainMs: Number.NaN }, 'drainMs must be an integer'],
      [{ port: 0, debounceMs: -5 }, 'debounceMs must be an integer'],
      [{ port: 0, maxRequestBodySize: 0 }, 'maxRequestBodySize must be an integer'],
      [{ port: 0, hostname: '' }, 'hostname must not be empty'],
      [{ port: 0, certFile: '' }, 'certFile is required'],
    ];
    for (const [bad, message] of impossible) {
      expect(() => startTlsServer({ ...base, port: 0, ...bad })).toThrow(message);
    }
  });

  it('rejects with the reason when the initial key does not match the certificate', async () => {
    const err = await serve({ certFile: first.certFile, keyFile: second.keyFile }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlsMaterialError);
    expect((err as Error).message).toBe(`key ${second.keyFile} does not match certificate ${first.certFile}`);
  });

  it('answers 413 when a body is over maxRequestBodySize', async () => {
    const server = await serve({
      certFile: first.certFile,
      keyFile: first.keyFile,
      maxRequestBodySize: 1024,
    });
    const url = `https://127.0.0.1:${server.port}/`;
    const small = await fetch(url, { method: 'POST', body: 'x'.repeat(1024), tls: { ca: ca.cert } });
    expect(await small.text()).toBe('got 1024 bytes');
    const big = await fetch(url, { method: 'POST', body: 'x'.repeat(1025), tls: { ca: ca.cert } });
    expect(big.status).toBe(413);
  });

  it('serves the new certificate to new connections after a kubelet-style Secret update', async () => {
    const volume = await volumeWith(first);
    const reloaded: TlsMaterial[] = [];
    // No polling: only the directory watch can notice the swap.
    const server = await serve({
      ...volume,
      reloadIntervalMs: 0,
      drainMs: 50,
      onReload: (m) => reloaded.push(m),
    });
    expect(await servedFingerprint(server.port)).toBe(first.fingerprint256);

    const version = await publish(volume.dir, second.cert, second.key);
    expect(version).toMatch(/\/\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/);
    await until(
      'the new certificate is served',
      async () => (await fingerprintDuringSwap(server.port)) === second.fingerprint256,
    );
    expect(server.material.fingerprint256).toBe(second.fingerprint256);
    expect(reloaded.map((m) => m.fingerprint256)).toEqual([second.fingerprint256]);

    // Reloads run one at a time: once this resolves the old listener has stopped, so every connection is new.
    expect(await server.reloadNow()).toBe(false);
    for (let i = 0; i < 10; i++) expect(await servedFingerprint(server.port)).toBe(second.fingerprint256);
  });

  it('reloads on a Secret update while another file in the same directory is written all the time', async () => {
    // Without filtering by name, every write to the neighbour would restart the debounce, and the
    // watch would never reload while the writes went on (only the poll, off here, would).
    const volume = await volumeWith(first);
    const server = await serve({ ...volume, reloadIntervalMs: 0, debounceMs: 200, drainMs: 0 });
    const neighbour = join(volume.dir, 'audit.log');
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await appendFile(neighbour, `line ${i}\n`);
        await Bun.sleep(20);
      }
    })();
    try {
      await publish(volume.dir, second.cert, second.key);
      await until('the swap happens', () => server.material.fingerprint256 === second.fingerprint256);
    } finally {
      writing = false;
      await writer;
    }
    await until(
      'new connections get the new certificate',
      async () => (await fingerprintDuringSwap(server.port)) === second.fingerprint256,
    );
  });

  it('picks a change up by polling when watching is off', async () => {
    const certFile = join(dir, 'plain.crt');
    const keyFile = join(dir, 'plain.key');
    await Promise.all([writeFile(certFile, first.cert), writeFile(keyFile, first.key)]);
    const server = await serve({ certFile, keyFile, watch: false, reloadIntervalMs: 50, drainMs: 0 });
    await Promise.all([writeFile(certFile, second.cert), writeFile(keyFile, second.key)]);
    await until(
      'the poll picks up the new pair',
      () => server.material.fingerprint256 === second.fingerprint256,
    );
    expect(await servedFingerprint(server.port)).toBe(second.fingerprint256);
  });

  it('keeps serving the old certificate and reports once when the new pair does not match', async () => {
    const volume = await volumeWith(first);
    const logged: string[] = [];
    const errors: Error[] = [];
    const server = await serve({
      ...volume,
      reloadIntervalMs: 20,
      drainMs: 0,
      logger: createLogger({ write: (text) => logged.push(text) }),
      onReloadError: (err) => errors.push(err),
    });
    await publish(volume.dir, second.cert, third.key);
    await until('the bad pair is reported', () => errors.length > 0);
    // An absence cannot be polled for: give the 20 ms poll ten more turns to report the same pair again.
    await Bun.sleep(200);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toBe(`key ${volume.keyFile} does not match certificate ${volume.certFile}`);
    expect(server.material.fingerprint256).toBe(first.fingerprint256);
    expect(await servedFingerprint(server.port)).toBe(first.fingerprint256);
    expect(server.isReady()).toBe(true);

    // Asked explicitly (SIGHUP), it reports again and still refuses.
    expect(await server.reloadNow()).toBe(false);
    expect(errors).toHaveLength(2);

    const entry = logged.map((l) => JSON.parse(l)).find((e) => e.level === 'error');
    expect(entry).toMatchObject({ component: 'tls', fingerprint256: first.fingerprint256 });
    expect(entry.err.message).toContain('does not match');
    const keyBody = third.key.split('\n')[1] ?? '';
    expect(logged.join('')).not.toContain(keyBody);

    await publish(volume.dir, third.cert, third.key);
    await until('the good pair is served', () => server.material.fingerprint256 === third.fingerprint256);
    expect(errors).toHaveLength(2);
  });

  it('tells a kept-alive client of the old listener to close once a new certificate is served', async () => {
    const volume = await volumeWith(first);
    const server = await serve({ ...volume, reloadIntervalMs: 0, drainMs: 60_000 });
    const socket = await connect(server.port);
    const before = await roundTrip(socket);
    expect(before).not.toMatch(/\r\nconnection: close/i);

    await publish(volume.dir, second.cert, second.key);
    await until('the swap happens', () => server.material.fingerprint256 === second.fingerprint256);
    const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
    const after = await roundTrip(socket);
    expect(after).toStartWith('HTTP/1.1 200 ');
    expect(after).toMatch(/\r\nconnection: close/i);
    await ended;
  });

  it("tells a kept-alive client to close on a route's answer too, once a new certificate is served", async () => {
    const volume = await volumeWith(first);
    const server = await serve({
      ...volume,
      reloadIntervalMs: 0,
      drainMs: 60_000,
      routes: { '/route': { GET: () => new Response('route: 0 bytes') } },
    });
    const socket = await connect(server.port);
    expect(await roundTrip(socket, '/route')).not.toMatch(/\r\nconnection: close/i);
    await publish(volume.dir, second.cert, second.key);
    await until('the swap happens', () => server.material.fingerprint256 === second.fingerprint256);
    const after = await roundTrip(socket, '/route');
    expect(after).toEndWith('route: 0 bytes');
    expect(after).toMatch(/\r\nconnection: close/i);
    socket.destroy();
  });

  it('refuses new connections while paused, finishes the request in flight, and serves again once resumed', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered = false;
    const server = await serve({
      certFile: first.certFile,
      keyFile: first.keyFile,
      async fetch(req) {
        if (new URL(req.url).pathname === '/hold') {
          entered = true;
          await held;
        }
        return new Response('answered');
      },
    });
    const inFlight = fetch(`https://127.0.0.1:${server.port}/hold`, { tls: { ca: ca.cert } });
    await until('the request reaches the handler', () => entered);
    server.pause();
    server.pause(); // a second pause changes nothing
    expect(server.accepting()).toBe(false);
    expect(server.isReady()).toBe(true);
    expect(await connect(server.port).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ECONNREFUSED');
    release();
    expect(await (await inFlight).text()).toBe('answered');

    server.resume();
    expect(server.accepting()).toBe(true);
    const again = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    expect(await again.text()).toBe('answered');
    expect(await servedFingerprint(server.port)).toBe(first.fingerprint256);
  });

  it('takes up a certificate changed while paused once it resumes', async () => {
    const volume = await volumeWith(first);
    const server = await serve({
      certFile: volume.certFile,
      keyFile: volume.keyFile,
      watch: false,
      reloadIntervalMs: 0,
    });
    server.pause();
    await publish(volume.dir, second.cert, second.key);
    expect(await server.reloadNow()).toBe(false);
    server.resume();
    await until(
      'the new certificate is served',
      async () => (await servedFingerprint(server.port)) === second.fingerprint256,
    );
    expect(server.material.fingerprint256).toBe(second.fingerprint256);
  });

  it('lets an in-flight request finish and then refuses connections when stopped', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered = false;
    const server = await serve({
      certFile: first.certFile,
      keyFile: first.keyFile,
      async fetch() {
        entered = true;
        await held;
        return new Response('finished');
      },
    });
    const inFlight = fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca: ca.cert } });
    await until('the request reaches the handler', () => entered);
    let stopped = false;
    const stopping = server.stop().then(() => (stopped = true));
    expect(server.isReady()).toBe(false);
    release();
    expect(await (await inFlight).text()).toBe('finished');
    await stopping;
    expect(stopped).toBe(true);
    expect(await connect(server.port).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ECONNREFUSED');
  });
});

/** One line for the report: requests, failures and where they failed. */
function summarise(result: SwapUnderLoadResult): string {
  const { load } = result;
  return `${result.reloads} swaps, ${load.ok + load.failed} requests in ${load.durationMs} ms over ${load.connects} connections, ${load.failed} failed ${JSON.stringify(load.failedOn)}, tcp_migrate_req=${result.tcpMigrateReq}`;
}

/** Whether this process may make a network namespace with its own tcp_migrate_req (root, unshare, ip). */
function canUseOwnNetns(): boolean {
  if (process.getuid?.() !== 0 || !Bun.which('unshare') || !Bun.which('ip')) return false;
  if (!existsSync('/proc/sys/net/ipv4/tcp_migrate_req')) return false;
  return Bun.spawnSync(['unshare', '-n', 'true']).exitCode === 0;
}

describe('startTlsServer under load', () => {
  it(
    'loses no request when 8 keep-alive clients post through 4 kubelet-style swaps',
    async () => {
      const result = await swapUnderLoad({ swaps: 4, clients: 8 });
      console.log(`keep-alive: ${summarise(result)}`);
      expect(result.reloads).toBe(4);
      expect(result.reloadErrors).toBe(0);
      expect(result.load.fingerprints).toEqual(result.published);
      expect(result.load.errors).toEqual({});
      expect(result.load.failed).toBe(0);
    },
    LOAD_TEST_TIMEOUT_MS,
  );

  it.skipIf(!canUseOwnNetns())(
    'loses no request when each request opens a new connection and tcp_migrate_req is 1',
    async () => {
      const options = JSON.stringify({ swaps: 4, clients: 8, newConnectionPerRequest: true });
      const script = join(import.meta.dir, '..', 'helpers', 'swap-under-load.ts');
      const proc = Bun.spawn(
        [
          'unshare',
          '-n',
          'sh',
          '-c',
          'ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req=1 && exec "$0" "$1" "$2"',
          process.execPath,
          script,
          options,
        ],
        { stdout: 'pipe', stderr: 'inherit' },
      );
      let out: string;
      try {
        [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
      } finally {
        proc.kill(); // only if still running, e.g. this test timed out; its load client exits with it
      }
      expect(proc.exitCode).toBe(0);
      const result = JSON.parse(out) as SwapUnderLoadResult;
      console.log(`connection per request, own netns: ${summarise(result)}`);
      expect(result.tcpMigrateReq).toBe('1');
      expect(result.reloads).toBe(4);
      expect(result.load.fingerprints).toEqual(result.published);
      expect(result.load.errors).toEqual({});
      expect(result.load.failed).toBe(0);
    },
    LOAD_TEST_TIMEOUT_MS,
  );
});
