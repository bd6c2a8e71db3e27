/**
 * @module The HTTPS listener: Bun.serve over TLS 1.2+, with the certificate swapped without a restart when its files change.
 *
 * Bun's `server.reload()` replaces the handlers but keeps the TLS context, so a new certificate needs a new
 * listener. Every listener is opened with SO_REUSEPORT on the same port, so for a moment two of them share it:
 *
 * 1. load and validate the new pair off the request path; an invalid pair is logged and counted, and the old
 *    listener keeps serving as if nothing had happened;
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
import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Server } from 'bun';
import type { Logger } from '../support/log.ts';
import type { TlsMaterial } from './material.ts';
import { loadTlsMaterial, parseTlsMaterial, readTlsFiles } from './material.ts';

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
  /** Called after a new certificate is being served; for metrics. */
  onReload?: (material: TlsMaterial) => void;
  /** Called when a changed pair could not be loaded or served; the old one is still served. For metrics. */
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
/** Poll every 10 s: the kubelet refreshes mounted Secrets about once a minute, so a missed event costs little. */
const DEFAULT_RELOAD_INTERVAL_MS = 10_000;
/** Long enough to see both files of a non-atomic update (cp cert; cp key); the kubelet's swap is one event burst. */
const DEFAULT_DEBOUNCE_MS = 200;
/**
 * One second lets every busy kept-alive client make its next request and be told to close, while the old
 * certificate goes on being offered to new connections for only that long.
 */
const DEFAULT_DRAIN_MS = 1000;
/** Timers take a signed 32-bit delay; anything longer fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Resolved = Required<Omit<TlsServerOptions, 'onReload' | 'onReloadError' | 'onError'>> &
  Pick<TlsServerOptions, 'onReload' | 'onReloadError' | 'onError'>;

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
  return resolved;
}

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`tls server: ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** One Bun.serve listening socket and the certificate it was opened with. */
type Listener = {
  readonly server: Server<undefined>;
  readonly material: TlsMaterial;
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

  function listen(material: TlsMaterial, port: number): Listener {
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
    try {
      const server = Bun.serve({
        hostname: o.hostname,
        port,
        reusePort: true, // every listener, so that the next one can bind the same port during a swap
        development: false,
        maxRequestBodySize: o.maxRequestBodySize,
        idleTimeout: o.idleTimeout,
        tls: { cert: material.cert, key: material.key, secureOptions: NO_TLS_BELOW_1_2 },
        routes,
        fetch: drained(o.fetch),
        ...(o.onError ? { error: o.onError } : {}),
      });
      listener = { server, material, draining: false };
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
    };
  }

  function warnIfOutsideValidity(material: TlsMaterial): void {
    const now = Date.now();
    if (now > material.notAfter.getTime()) log.warn('certificate has expired', describe(material));
    else if (now < material.notBefore.getTime()) log.warn('certificate is not valid yet', describe(material));
  }

  const initial = await loadTlsMaterial(o.certFile, o.keyFile);
  let current = listen(initial, o.port);
  const port = current.server.port ?? o.port;
  log.info('serving certificate', { ...describe(initial), hostname: o.hostname, port });
  warnIfOutsideValidity(initial);

  let stopped = false;
  /** Old listeners whose connections have not all closed yet, with the promise that says when they have. */
  const closing = new Map<Listener, Promise<void>>();
  /** The pair (or read error) that last failed, so a bad pair is reported once, not on every poll. */
  let lastFailure: string | undefined;
  /** Ends the current drain window early (on stop). */
  let wakeDrain: (() => void) | undefined;

  function reportFailure(err: unknown, signature: string, force: boolean): false {
    if (!force && signature === lastFailure) return false;
    lastFailure = signature;
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

  async function check(force: boolean): Promise<boolean> {
    if (stopped || paused) return false;
    let files: { cert: string; key: string };
    try {
      files = await readTlsFiles(o.certFile, o.keyFile);
    } catch (err) {
      return reportFailure(err, `read: ${(err as Error).message}`, force);
    }
    if (files.cert === current.material.cert && files.key === current.material.key) {
      lastFailure = undefined;
      return false;
    }
    const signature = `pair: ${files.cert}\0${files.key}`;
    if (!force && signature === lastFailure) return false;
    if (stopped || paused) return false;
    let next: Listener;
    try {
      next = listen(parseTlsMaterial(o.certFile, o.keyFile, files.cert, files.key), port);
    } catch (err) {
      return reportFailure(err, signature, force);
    }
    lastFailure = undefined;
    const old = current;
    current = next;
    log.info('certificate reloaded', {
      ...describe(next.material),
      previousFingerprint256: old.material.fingerprint256,
    });
    warnIfOutsideValidity(next.material);
    notify(() => o.onReload?.(next.material));
    await drainAndClose(old);
    return true;
  }

  /** Reloads run one at a time; requests that arrive while one waits to start share it. */
  let chain: Promise<unknown> = Promise.resolve();
  let queued: Promise<boolean> | undefined;
  let queuedForce = false;
  function requestCheck(force: boolean): Promise<boolean> {
    queuedForce ||= force;
    if (queued) return queued;
    const run = chain.then(() => {
      queued = undefined;
      const f = queuedForce;
      queuedForce = false;
      return check(f);
    });
    chain = run.catch((err) => log.error('certificate check failed unexpectedly', { err }));
    queued = run.catch(() => false);
    return queued;
  }

  let debounce: Timer | undefined;
  const watchedNames = new Set([basename(o.certFile), basename(o.keyFile)]);
  function onFileEvent(_event: string, filename: string | Buffer | null): void {
    // Other files in the directory (an audit log written beside the certificate, say) must not
    // cost a callback per write: only the two files and the kubelet's `..data`-style entries count.
    // Without a name the event may be anything, so it counts.
    if (typeof filename === 'string' && !watchedNames.has(filename) && !filename.startsWith('..')) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => void requestCheck(false), o.debounceMs);
  }

  const watchers: FSWatcher[] = [];
  if (o.watch) {
    // Watch directories, not files: the kubelet swaps a `..data` symlink rather than writing tls.crt in place.
    for (const dir of new Set([dirname(o.certFile), dirname(o.keyFile)])) {
      try {
        const watcher = watch(dir, onFileEvent);
        watcher.on('error', (err) => {
          log.warn('stopped watching certificate directory; polling continues', { dir, err });
          watcher.close();
        });
        watchers.push(watcher);
      } catch (err) {
        log.warn('cannot watch certificate directory; polling only', { dir, err });
      }
    }
  }
  const poll =
    o.reloadIntervalMs > 0 ? setInterval(() => void requestCheck(false), o.reloadIntervalMs) : undefined;
  poll?.unref();

  return {
    port,
    get material() {
      return current.material;
    },
    isReady: () => !stopped,
    reloadNow: () => requestCheck(true),
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
      current = listen(current.material, port);
      paused = false;
      void requestCheck(true);
    },
    accepting: () => !stopped && !paused,
    async stop(closeActive = false) {
      if (!stopped) {
        stopped = true;
        clearInterval(poll);
        clearTimeout(debounce);
        for (const watcher of watchers) watcher.close();
        wakeDrain?.();
        await chain;
      }
      const listeners = [current, ...closing.keys()];
      await Promise.all([...listeners.map((l) => l.server.stop(closeActive)), ...closing.values()]);
    },
  };
}
