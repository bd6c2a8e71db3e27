/**
 * @module HTTPS load for tests: N clients POSTing back to back in a child process, counting every failed request.
 *
 * The clients speak HTTP/1.1 over node:tls themselves, so nothing retries behind our back: a request counts as
 * failed unless a complete `200` response arrives. They keep connections alive, honour `Connection: close`, and
 * reconnect when the server closed an idle connection before they wrote (as Go's http.Transport does). They run
 * in a separate process so that their event loop is not the server's.
 *
 * ```ts
 * const load = startLoad({ port, caFile: ca.certFile, clients: 8 });
 * await load.waitFor((c) => c.ok >= 100, 5000);
 * const summary = await load.stop(); // summary.failed, summary.errors, summary.fingerprints
 * ```
 */

import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { connect as tlsConnect } from 'node:tls';

/** Options for {@link startLoad}. */
export type LoadOptions = {
  /** Server port on `host`. */
  port: number;
  /** CA certificate file the clients trust. */
  caFile: string;
  /** Address to connect to. Default `127.0.0.1`. */
  host?: string;
  /** SNI name, checked against the certificate. Default `localhost`. */
  servername?: string;
  /** Concurrent clients, each with one request in flight at a time. Default 8. */
  clients?: number;
  /** Open a new connection for every request (`Connection: close`) instead of keeping it alive. Default false. */
  newConnectionPerRequest?: boolean;
  /** Request body size in bytes (a JSON document). Default 2048, about one AdmissionReview. */
  bodyBytes?: number;
  /** A request with no complete response after this long fails as `timeout`. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Request path. Default `/log-request`. */
  path?: string;
};

/** Running totals, reported while the load runs. */
export type LoadCounts = {
  /** Requests answered with a complete 200. */
  ok: number;
  /** Requests that failed in any way (see `failedOn` and `errors` in the summary). */
  failed: number;
  /** Connections opened (TLS handshakes completed). */
  connects: number;
};

/** Totals after the load stopped. */
export type LoadSummary = LoadCounts & {
  /** Failures by where they happened: opening the connection, on a fresh one, on a kept-alive one. */
  failedOn: { connect: number; fresh: number; reused: number };
  /** Failures by error code or message. */
  errors: Record<string, number>;
  /** Distinct server certificate fingerprints (SHA-256) seen on the connections, in the order first seen. */
  fingerprints: string[];
  /** Wall time the clients ran, in ms. */
  durationMs: number;
};

/** A load running in a child process. */
export type LoadRun = {
  /** The latest totals the child reported (every 20 ms). */
  counts(): LoadCounts;
  /** Resolves when `predicate(counts)` holds; rejects after `timeoutMs`. */
  waitFor(predicate: (counts: LoadCounts) => boolean, timeoutMs: number): Promise<void>;
  /** Stops the clients (each finishes its request in flight) and returns the totals. */
  stop(): Promise<LoadSummary>;
};

/** Progress line interval in the child; the parent polls at the same pace. */
const REPORT_INTERVAL_MS = 20;
/** How long the child gets to finish after being asked to stop before it is killed. */
const STOP_GRACE_MS = 10_000;

/** Starts `clients` HTTPS clients in a child `bun` process. */
export function startLoad(options: LoadOptions): LoadRun {
  const proc = Bun.spawn([process.execPath, import.meta.path, JSON.stringify(options)], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'inherit',
  });
  let latest: LoadCounts = { ok: 0, failed: 0, connects: 0 };
  let summary: LoadSummary | undefined;
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of proc.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = JSON.parse(buffered.slice(0, nl)) as { counts?: LoadCounts; summary?: LoadSummary };
        buffered = buffered.slice(nl + 1);
        if (line.counts) latest = line.counts;
        if (line.summary) summary = line.summary;
      }
    }
  })();

  return {
    counts: () => latest,
    async waitFor(predicate, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(latest)) {
        if (Date.now() > deadline)
          throw new Error(`load: condition not met in ${timeoutMs} ms; ${JSON.stringify(latest)}`);
        if (proc.exitCode !== null) throw new Error(`load: client process exited ${proc.exitCode}`);
        await Bun.sleep(REPORT_INTERVAL_MS);
      }
    },
    async stop() {
      proc.stdin.write('stop\n');
      await proc.stdin.end();
      const timer = setTimeout(() => proc.kill(), STOP_GRACE_MS);
      await proc.exited;
      clearTimeout(timer);
      await reading;
      if (!summary) throw new Error(`load: client process exited ${proc.exitCode} without a summary`);
      return summary;
    },
  };
}

/** One kept-alive connection and what has arrived on it. */
class Connection {
  buffered = '';
  ended = false;
  error: Error | undefined;
  requests = 0;
  private wake: (() => void) | undefined;

  constructor(readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('latin1');
      this.wake?.();
    });
    const end = (err?: Error) => {
      this.ended = true;
      this.error ??= err;
      this.wake?.();
    };
    socket.on('error', end);
    socket.on('end', () => end());
    socket.on('close', () => end());
  }

  /** Resolves on the next data, end or error. */
  changed(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
    });
  }
}

/** Reads one response; resolves whether the server asked to close, rejects on anything but a complete 200. */
async function readResponse(conn: Connection, deadline: number): Promise<{ close: boolean }> {
  for (;;) {
    const headEnd = conn.buffered.indexOf('\r\n\r\n');
    if (headEnd >= 0) {
      const head = conn.buffered.slice(0, headEnd);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (conn.buffered.length >= headEnd + 4 + length) {
        conn.buffered = conn.buffered.slice(headEnd + 4 + length);
        if (!head.startsWith('HTTP/1.1 200 ')) throw new Error(`status ${head.slice(9, 12)}`);
        return { close: /\r\nconnection: *close/i.test(head) };
      }
    }
    if (conn.ended) throw conn.error ?? new Error('connection closed before the response');
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('timeout');
    let timer: Timer | undefined;
    await Promise.race([conn.changed(), new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
    clearTimeout(timer);
  }
}

async function runClients(options: LoadOptions): Promise<void> {
  const host = options.host ?? '127.0.0.1';
  const servername = options.servername ?? 'localhost';
  const ca = readFileSync(options.caFile, 'utf8');
  const fresh = options.newConnectionPerRequest ?? false;
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const body = JSON.stringify({
    kind: 'AdmissionReview',
    pad: 'x'.repeat(Math.max(0, (options.bodyBytes ?? 2048) - 32)),
  });
  const request =
    `POST ${options.path ?? '/log-request'} HTTP/1.1\r\nHost: ${servername}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n${fresh ? 'Connection: close\r\n' : ''}\r\n${body}`;

  const counts: LoadCounts = { ok: 0, failed: 0, connects: 0 };
  const failedOn = { connect: 0, fresh: 0, reused: 0 };
  const errors: Record<string, number> = {};
  const fingerprints = new Set<string>();
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  // A line asks us to stop; so does end of input, which is how we learn the parent has died.
  process.stdin.on('data', stop);
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);

  function fail(where: keyof typeof failedOn, err: unknown): void {
    counts.failed++;
    failedOn[where]++;
    const key = (err as NodeJS.ErrnoException).code ?? (err as Error).message ?? String(err);
    errors[key] = (errors[key] ?? 0) + 1;
  }

  function open(): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host, port: options.port, ca, servername }, () => {
        fingerprints.add(socket.getPeerCertificate().fingerprint256);
        resolve(new Connection(socket));
      });
      socket.once('error', reject);
    });
  }

  async function client(): Promise<void> {
    let conn: Connection | undefined;
    while (!stopping) {
      // Closed while idle, before we wrote: not a failed request; a real client would reconnect too.
      if (conn?.ended) conn = undefined;
      if (!conn) {
        try {
          conn = await open();
          counts.connects++;
        } catch (err) {
          fail('connect', err);
          continue;
        }
      }
      const used = conn;
      try {
        used.socket.write(request);
        const { close } = await readResponse(used, Date.now() + timeoutMs);
        counts.ok++;
        used.requests++;
        if (close || fresh) {
          used.socket.end();
          conn = undefined;
        }
      } catch (err) {
        fail(used.requests > 0 ? 'reused' : 'fresh', err);
        used.socket.destroy();
        conn = undefined;
      }
    }
    conn?.socket.end();
  }

  const started = Date.now();
  const report = setInterval(
    () => process.stdout.write(`${JSON.stringify({ counts })}\n`),
    REPORT_INTERVAL_MS,
  );
  await Promise.all(Array.from({ length: options.clients ?? 8 }, client));
  clearInterval(report);
  const summary: LoadSummary = {
    ...counts,
    failedOn,
    errors,
    fingerprints: [...fingerprints],
    durationMs: Date.now() - started,
  };
  process.stdout.write(`${JSON.stringify({ counts, summary })}\n`);
  process.exit(0);
}

if (import.meta.main) await runClients(JSON.parse(process.argv[2] ?? '{}') as LoadOptions);
