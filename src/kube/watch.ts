/**
 * @module Watches one named object and reports each version of it: the API server's watch with a field
 * selector on the name, resumed from the last resourceVersion when the server ends it, started afresh when
 * that version has expired (410), and retried with back-off when it fails.
 *
 * Watching by name needs only `watch` on that name in RBAC (`resourceNames`), since the API server
 * authorizes a watch whose field selector is `metadata.name=NAME` as a watch of that one object.
 */
import type { Logger } from '../support/log.ts';
import { isExpired, type KubeClient } from './client.ts';

/** The first retry after a failed watch waits this long; each further failure doubles it. */
const MIN_BACKOFF_MS = 500;
/** Longest wait between retries. */
const MAX_BACKOFF_MS = 30_000;
/**
 * The server ends each watch after this many seconds (plus up to a quarter more, so replicas do not all
 * re-watch at once). Below Bun's 5-minute idle limit, and bookmarks keep the stream busy in between.
 */
const WATCH_TIMEOUT_S = 240;
/** A watch that ends sooner than this without error is treated as a failure, so a server that closes at once is not hammered. */
const MIN_WATCH_MS = 1_000;

/** Options for {@link watchObject}. */
export type WatchObjectOptions<T> = {
  client: KubeClient;
  /** The collection's path, e.g. `/api/v1/namespaces/ns/secrets`. */
  collectionPath: string;
  /** The object's name. */
  name: string;
  /** Called with each version of the object, or null when it is deleted. Must not throw. */
  onChange(object: T | null): void;
  log: Logger;
  /** Seconds the server keeps one watch open before ending it (it is then resumed). Default {@link WATCH_TIMEOUT_S}, plus up to a quarter. */
  watchTimeoutSeconds?: number;
  /**
   * Start from this resourceVersion, as a resumed watch does (only changes after it are reported). Default:
   * none, so the object as it is comes first. A version the server no longer has starts afresh.
   */
  resourceVersion?: string;
};

/** A running watch. */
export type ObjectWatch = {
  /** Stops watching; resolves once the loop has ended. */
  stop(): Promise<void>;
};

/** Waits `ms`, or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Starts watching `options.name` in `options.collectionPath`; the current version arrives first (as the server's ADDED). */
export function watchObject<T extends { metadata?: { resourceVersion?: string } }>(
  options: WatchObjectOptions<T>,
): ObjectWatch {
  const { client, collectionPath, name, onChange, log } = options;
  const timeoutSeconds = options.watchTimeoutSeconds ?? WATCH_TIMEOUT_S;
  const abort = new AbortController();
  const { signal } = abort;

  async function loop(): Promise<void> {
    let resourceVersion: string | undefined = options.resourceVersion;
    let backoff = MIN_BACKOFF_MS;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        await client.watch<T>(
          collectionPath,
          {
            fieldSelector: `metadata.name=${name}`,
            resourceVersion,
            allowWatchBookmarks: 'true',
            timeoutSeconds: String(timeoutSeconds + Math.floor(Math.random() * (timeoutSeconds / 4))),
          },
          (event) => {
            const version = event.object?.metadata?.resourceVersion;
            if (version) resourceVersion = version;
            if (event.type === 'BOOKMARK') return;
            backoff = MIN_BACKOFF_MS;
            onChange(event.type === 'DELETED' ? null : event.object);
          },
          signal,
        );
        if (Date.now() - started >= MIN_WATCH_MS) continue;
        log.debug('watch ended at once; waiting before the next', { name, delayMs: backoff });
      } catch (err) {
        if (signal.aborted) break;
        if (isExpired(err)) {
          // Too old to resume from: start again from now; the server sends the object as it is.
          resourceVersion = undefined;
          continue;
        }
        log.warn('watch failed; retrying', { name, delayMs: backoff, err });
      }
      await pause(backoff, signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  const running = loop().catch((err) => log.error('watch loop ended unexpectedly', { name, err }));
  return {
    async stop() {
      abort.abort();
      await running;
    },
  };
}
