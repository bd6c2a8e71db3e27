/**
 * @module The HTTPS listener: Bun.serve over TLS 1.2+, optionally requiring client certificates, with the
 * certificate (and client CA) swapped without a restart when their files change (support/file-watcher.ts).
 *
 * Bun's `server.reload()` replaces the handlers but keeps the TLS context, so a new certificate needs a new
 * listener. Every listener is opened with SO_REUSEPORT on the same port, so for a moment two of them share it:
 *
 * 1. load and validate the new pair (and client CA, when client certificates are required) off the request
 *    path; invalid files are logged and counted, and the old listener keeps serving as if nothing had happened;
 * 2. open the new listener (reusePort) — from here the kernel spreads new connections over both;
 * 3. mark the old listener draining: each of its responses carries `Connection: close` (RFC 9112 §9.6), so a
 *    kept-alive client finishes its current request and reconnects, landing on either listener; one that lands
 *    on the old listener again is answered once more and told to close again;
 * 4. after `drainMs` (default 1 s) call the old listener's `stop(false)`: the listening socket closes, requests in
 *    flight finish, and idle kept-alive connections are closed.
 *
 * The drain window is there because stopping at once loses requests: Bun's `stop(false)` treats a kept-alive
 * connection whose next request is still unread as idle and closes it, so in our measurement (8 clients posting
 * continuously over keep-alive) an immediate stop failed every one of the 8 requests in flight at each swap, and the
 * window lost none. What is left is the kernel's: connections still queued on the old listening socket when it
 * closes are reset unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14+, per network namespace), which moves them to
 * the new listener. That matters only for clients that open a connection per request.
 */

import { constants } from 'node:crypto';
import type { Server } from 'bun';
import {
  DEFAULT_DEBOUNCE_MS,
  DEFAULT_RELOAD_INTERVAL_MS,
  readTextFile,
  watchFiles,
} from '../support/file-watcher.ts';
import type { Logger } from '../support/log.ts';
import { createExpiryWarner } from './expiry.ts';
import type { TlsMaterial } from './material.ts';
import { parseClientCa, parseTlsMaterial, readTlsFiles } from './material.ts';

/** The request handler: what Bun.serve's `fetch` receives, with the listener that accepted the request. */
export type TlsFetch = (req: Request, server: Server<undefined>) => Response | Promise<Response>;

/** A handler Bun's own router calls: the request carries the parameters its path captured. */
export type TlsRouteHandler = (
  req: Request & { params: Record<string, string> },
  server: Server<undefined>,
) => Response | Promise<Response>;

/** Handlers Bun's own router calls, by path and then by method (e.g. `{ '/log-request': { POST: handle } }`). */
export type TlsRoutes = Record<string, Record<string, TlsRouteHandler>>;

/** Options for {@link startTlsServer}; defaults are resolved in `resolveOptions`. */
export type TlsServerOptions = {
  /** PEM certificate chain, leaf first. Usually a symlink into a mounted Secret. */
  certFile: string;
  /** PEM private key matching the leaf. */
  keyFile: string;
  /**
   * PEM bundle of the CAs whose client certificates are accepted; when set, a client without such a
   * certificate fails the handshake. Reloaded with the certificate. Default: no client certificate asked for.
   */
  clientCaFile?: string;
  /** Serves every request that no route in `routes` takes. */
  fetch: TlsFetch;
  /** Paths served by Bun's native router before `fetch` is consulted. Default: none. */
  routes?: TlsRoutes;
  /** Answers a request whose handler threw or rejected. Default: Bun's plain 500. */
  onError?: (error: Error) => Response;
  /** Where reloads and failures are reported (component `tls`). */
  logger: Logger;
  /** Port to listen on; 0 picks a free one (read it back from {@link TlsServer.port}). */
  port: number;
  /** Address to listen on. Default `0.0.0.0`. */
  hostname?: string;
  /** Largest request body accepted, in bytes. Default 128 MiB, Bun's own default. */
  maxRequestBodySize?: number;
  /** Seconds a connection may sit without traffic before Bun closes it, 0 to 255 (0: never). Default 10, Bun's. */
  idleTimeout?: number;
  /** How often the files are re-read and compared, in ms, in case a watch event is missed; 0 disables. Default 10 000. */
  reloadIntervalMs?: number;
  /** Watch the directories of both files for changes. Default true. */
  watch?: boolean;
  /** Quiet time after the last file event before reloading, in ms. Default 200. */
  debounceMs?: number;
  /** How long an old listener keeps answering (with `Connection: close`) before it stops listening, in ms. Default 1000. */
  drainMs?: number;
  /** How often the served certificate's expiry is checked against the warning thresholds, in ms. Default one hour. */
  expiryCheckIntervalMs?: number;
  /** Called after a new certificate (or client CA) is being served; for metrics. */
  onReload?: (material: TlsMaterial) => void;
  /** Called when changed files could not be loaded or served; the old ones are still served. For metrics. */
  onReloadError?: (err: Error) => void;
};

/** A running HTTPS listener whose certificate follows its files. */
export type TlsServer = {
  /** The port listened on (the one chosen when `port` was 0). */
  readonly port: number;
  /** The certificate and key being served to new connections. */
  readonly material: TlsMaterial;
  /** Whether a validated certificate is being served; false once stopping. For readiness probes. */
  isReady(): boolean;
  /**
   * Re-reads the files now (e.g. on SIGHUP) and swaps if they changed and are valid. Resolves true when a new
   * certificate is served, after the old listener has stopped listening, so every new connection gets the new one;
   * false when nothing changed or the new pair was refused (reported through the log and `onReloadError`). Never rejects.
   */
  reloadNow(): Promise<boolean>;
  /**
   * Stops watching and listening; resolves when every connection has closed. In-flight requests finish unless
   * `closeActive` is true, which closes them at once.
   */
  stop(closeActive?: boolean): Promise<void>;
  /**
   * Stops accepting connections (the connection cap was reached): the listening socket closes, so new
   * connections are refused by the kernel; requests in flight finish and idle kept-alive connections
   * close. Certificate checks wait until {@link TlsServer.resume}. Does nothing when already paused.
   */
  pause(): void;
  /**
   * Listens again after {@link TlsServer.pause}, and checks the certificate files at once. Throws if the
   * port cannot be bound again; the server then stays paused.
   */
  resume(): void;
  /** Whether the server is listening: false while paused and once stopped. */
  accepting(): boolean;
};

/** TLS 1.2 is the floor (RFC 8996 deprecates 1.0 and 1.1). Bun already refuses them; this keeps it explicit. */
const NO_TLS_BELOW_1_2 = constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1;

/** Bun.serve's own default body limit, stated here so the resolved options say what is in force. */
const DEFAULT_MAX_REQUEST_BODY_SIZE = 128 * 1024 * 1024;
/** Bun.serve's own default idle timeout, in seconds. */
const DEFAULT_IDLE_TIMEOUT_S = 10;
/** Bun.serve refuses an idle timeout above 255 s. */
const MAX_IDLE_TIMEOUT_S = 255;
/** Hourly: the warnings are days apart, so an hour late is on time. */
const DEFAULT_EXPIRY_CHECK_INTERVAL_MS = 3_600_000;
/**
 * One second lets every busy kept-alive client make its next request and be told to close, while the old
 * certificate goes on being offered to new connections for only that long.
 */
const DEFAULT_DRAIN_MS = 1000;
/** Timers take a signed 32-bit delay; anything longer fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Optional = 'onReload' | 'onReloadError' | 'onError' | 'clientCaFile';
type Resolved = Required<Omit<TlsServerOptions, Optional>> & Pick<TlsServerOptions, Optional>;

function resolveOptions(options: TlsServerOptions): Resolved {
  const resolved: Resolved = {
    ...options,
    routes: options.routes ?? {},
    hostname: options.hostname ?? '0.0.0.0',
    maxRequestBodySize: options.maxRequestBodySize ?? DEFAULT_MAX_REQUEST_BODY_SIZE,
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_S,
    reloadIntervalMs: options.reloadIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS,
    watch: options.watch ?? true,
    debounceMs: options.debounceMs ?? DEFAULT_DEBOUNCE_MS,
    drainMs: options.drainMs ?? DEFAULT_DRAIN_MS,
    expiryCheckIntervalMs: options.expiryCheckIntervalMs ?? DEFAULT_EXPIRY_CHECK_INTERVAL_MS,
  };
  if (!resolved.certFile) throw new TypeError('tls server: certFile is required');
  if (!resolved.keyFile) throw new TypeError('tls server: keyFile is required');
  if (typeof resolved.fetch !== 'function') throw new TypeError('tls server: fetch must be a function');
  if (!resolved.hostname) throw new TypeError('tls server: hostname must not be empty');
  requireInteger('port', resolved.port, 0, 65_535);
  requireInteger('maxRequestBodySize', resolved.maxRequestBodySize, 1, Number.MAX_SAFE_INTEGER);
  requireInteger('idleTimeout', resolved.idleTimeout, 0, MAX_IDLE_TIMEOUT_S);
  requireInteger('reloadIntervalMs', resolved.reloadIntervalMs, 0, MAX_TIMER_MS);
  requireInteger('debounceMs', resolved.debounceMs, 0, MAX_TIMER_MS);
  requireInteger('drainMs', resolved.drainMs, 0, MAX_TIMER_MS);
  requireInteger('expiryCheckIntervalMs', resolved.expiryCheckIntervalMs, 1, MAX_TIMER_MS);
  if (resolved.clientCaFile === '') throw new TypeError('tls server: clientCaFile must not be empty');
  return resolved;
}

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`tls server: ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** What a listener serves: the pair and, when client certificates are required, the CAs that sign them. */
type Served = { readonly material: TlsMaterial; readonly clientCa: string | undefined };

/** One Bun.serve listening socket and what it was opened with. */
type Listener = Served & {
  readonly server: Server<undefined>;
  /** Set once a newer listener exists; every response from now on asks the client to close. */
  draining: boolean;
};

/**
 * Starts serving `fetch` over HTTPS with the certificate and key in the given files, and keeps the certificate
 * current as those files change (see the module comment for how a swap goes).
 *
 * Throws synchronously on impossible options; rejects if the initial pair is invalid or the port cannot be bound.
 */
export function startTlsServer(options: TlsServerOptions): Promise<TlsServer> {
  return start(resolveOptions(options));
}

async function start(o: Resolved): Promise<TlsServer> {
  const log = o.logger.child('tls');

  function listen(served: Served, port: number): Listener {
    let listener: Listener | undefined;
    function closeIfDraining(res: Response): Response {
      if (!listener?.draining) return res;
      try {
        res.headers.set('Connection', 'close');
        return res;
      } catch {
        // Headers are immutable on some responses (Response.redirect, a proxied fetch result): copy them.
        const copy = new Response(res.body, res);
        copy.headers.set('Connection', 'close');
        return copy;
      }
    }
    /** Wraps a handler so that a draining listener's answers ask the client to close. */
    function drained<R extends Request>(
      handler: (req: R, server: Server<undefined>) => Response | Promise<Response>,
    ): (req: R, server: Server<undefined>) => Response | Promise<Response> {
      return function serveTls(req, server) {
        // Outside a swap the answer passes straight through, without another promise per request; a
        // request that started just before the swap goes unmarked, and the client's next one is told.
        if (!listener?.draining) return handler(req, server);
        const res = handler(req, server);
        return res instanceof Promise ? res.then(closeIfDraining) : closeIfDraining(res);
      };
    }
    const routes: TlsRoutes = {};
    for (const [path, methods] of Object.entries(o.routes)) {
      routes[path] = Object.fromEntries(Object.entries(methods).map(([m, h]) => [m, drained(h)]));
    }
    const { material, clientCa } = served;
    try {
      const server = Bun.serve({
        hostname: o.hostname,
        port,
        reusePort: true, // every listener, so that the next one can bind the same port during a swap
        development: false,
        maxRequestBodySize: o.maxRequestBodySize,
        idleTimeout: o.idleTimeout,
        tls: {
          cert: material.cert,
          key: material.key,
          secureOptions: NO_TLS_BELOW_1_2,
          // Only requestCert asks for a certificate; rejectUnauthorized (Bun's default for a server,
          // stated here) then refuses the handshake of a client without one that `ca` signed.
          ...(clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: true }),
        },
        routes,
        fetch: drained(o.fetch),
        ...(o.onError ? { error: o.onError } : {}),
      });
      listener = { server, material, clientCa, draining: false };
      return listener;
    } catch (err) {
      throw new Error(`cannot listen on ${o.hostname}:${port} with certificate ${o.certFile}`, {
        cause: err,
      });
    }
  }

  function describe(material: TlsMaterial): Record<string, unknown> {
    return {
      certFile: o.certFile,
      fingerprint256: material.fingerprint256,
      subject: material.subject,
      sans: material.sans,
      notBefore: material.notBefore.toISOString(),
      notAfter: material.notAfter.toISOString(),
      ...(o.clientCaFile === undefined ? {} : { clientCaFile: o.clientCaFile }),
    };
  }

  /** The files watched, in this order: certificate, key, then the client CA if there is one. */
  const files = [o.certFile, o.keyFile, ...(o.clientCaFile === undefined ? [] : [o.clientCaFile])];
  function parse(contents: readonly string[]): Served {
    const [cert = '', key = '', ca] = contents;
    const material = parseTlsMaterial(o.certFile, o.keyFile, cert, key);
    const clientCa = o.clientCaFile === undefined ? undefined : parseClientCa(o.clientCaFile, ca ?? '');
    return { material, clientCa };
  }

  const checkExpiry = createExpiryWarner({ logger: log });
  const { cert, key } = await readTlsFiles(o.certFile, o.keyFile);
  const initialContents = [
    cert,
    key,
    ...(o.clientCaFile === undefined ? [] : [await readTextFile('client CA', o.clientCaFile)]),
  ];
  let current = listen(parse(initialContents), o.port);
  const port = current.server.port ?? o.port;
  log.info('serving certificate', { ...describe(current.material), hostname: o.hostname, port });
  checkExpiry(current.material);

  let stopped = false;
  /** Old listeners whose connections have not all closed yet, with the promise that says when they have. */
  const closing = new Map<Listener, Promise<void>>();
  /** Ends the current drain window early (on stop). */
  let wakeDrain: (() => void) | undefined;

  function reportFailure(err: unknown): false {
    const error = err instanceof Error ? err : new Error(String(err));
    log.error('certificate not reloaded; still serving the previous one', {
      ...describe(current.material),
      keyFile: o.keyFile,
      err: error,
    });
    notify(() => o.onReloadError?.(error));
    return false;
  }

  function notify(observer: () => void): void {
    try {
      observer();
    } catch (err) {
      log.error('reload observer threw', { err });
    }
  }

  async function drainAndClose(old: Listener): Promise<void> {
    old.draining = true;
    if (o.drainMs > 0 && !stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, o.drainMs);
        wakeDrain = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wakeDrain = undefined;
    }
    const closed = old.server.stop(false).then(() => {
      closing.delete(old);
    });
    closing.set(old, closed);
  }

  /** Set while the connection cap holds the listener closed; `current` is then the closed one. */
  let paused = false;

  /** Serves changed files on a new listener; false when they are what is served already, or are refused. */
  async function swap(contents: readonly string[]): Promise<boolean> {
    const [cert, key, ca] = contents;
    if (cert === current.material.cert && key === current.material.key && ca === current.clientCa) {
      return false;
    }
    // While paused, no listener may open; resume() offers the files again.
    if (stopped || paused) return false;
    let next: Listener;
    try {
      next = listen(parse(contents), port);
    } catch (err) {
      return reportFailure(err);
    }
    const old = current;
    current = next;
    log.info('certificate reloaded', {
      ...describe(next.material),
      previousFingerprint256: old.material.fingerprint256,
      ...(next.clientCa === old.clientCa ? {} : { clientCaChanged: true }),
    });
    checkExpiry(next.material);
    notify(() => o.onReload?.(next.material));
    await drainAndClose(old);
    return true;
  }

  const watcher = watchFiles({
    files,
    initial: initialContents,
    onChange: swap,
    onReadError: reportFailure,
    logger: log,
    reloadIntervalMs: o.reloadIntervalMs,
    watch: o.watch,
    debounceMs: o.debounceMs,
  });
  const expiryTimer = setInterval(() => checkExpiry(current.material), o.expiryCheckIntervalMs);
  expiryTimer.unref();

  return {
    port,
    get material() {
      return current.material;
    },
    isReady: () => !stopped,
    reloadNow: () => watcher.checkNow(),
    pause() {
      if (stopped || paused) return;
      paused = true;
      const old = current;
      closing.set(
        old,
        old.server.stop(false).then(() => {
          closing.delete(old);
        }),
      );
    },
    resume() {
      if (stopped || !paused) return;
      current = listen({ material: current.material, clientCa: current.clientCa }, port);
      paused = false;
      void watcher.checkNow();
    },
    accepting: () => !stopped && !paused,
    async stop(closeActive = false) {
      if (!stopped) {
        stopped = true;
        clearInterval(expiryTimer);
        wakeDrain?.();
        await watcher.close();
      }
      const listeners = [current, ...closing.keys()];
      await Promise.all([...listeners.map((l) => l.server.stop(closeActive)), ...closing.values()]);
    },
  };
}
