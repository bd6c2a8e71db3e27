/**
 * @module The API server's audit webhook wire format as a forwarding destination: EventList batches POSTed to a receiver.
 *
 * What the API server's `--audit-webhook-*` flags do, with one difference that matters: when the
 * receiver is down the API server drops batches after a few retries, while here the audit file
 * is the buffer, so reading stops and the same batch is retried (with backoff) until it is taken.
 * Receivers that read this format: Falco's k8saudit source, Sysdig, CrowdSec, Gardener's forwarder.
 */

import { checkServerIdentity } from 'node:tls';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { BatchLimits, ForwardEvent, ForwardSink, RetryPolicy } from './sink.ts';
import { DeliveryError, validateDelivery } from './sink.ts';
import type { WebhookTarget } from './webhook-config.ts';
import { loadWebhookConfig } from './webhook-config.ts';

/** The API server's `--audit-webhook-batch-buffer-size` default. */
export const DEFAULT_BUFFER_SIZE = 10_000;
/** The API server's `--audit-webhook-batch-max-size` default. */
export const DEFAULT_MAX_SIZE = 400;
/** The API server's `--audit-webhook-batch-max-wait` default. */
export const DEFAULT_MAX_WAIT_MS = 30_000;
/** The API server's `--audit-webhook-batch-throttle-qps` default. */
export const DEFAULT_THROTTLE_QPS = 10;
/** The API server's `--audit-webhook-batch-throttle-burst` default. */
export const DEFAULT_THROTTLE_BURST = 15;
/** The API server's `--audit-webhook-initial-backoff` default. */
export const DEFAULT_INITIAL_BACKOFF_MS = 10_000;
/** Longest wait between attempts: unlike the API server we never give up, so the wait is capped instead. */
export const DEFAULT_MAX_BACKOFF_MS = 60_000;
/** The API server's backoff grows by half each step, with 20% jitter (its DefaultRetryBackoff). */
const BACKOFF_FACTOR = 1.5;
const BACKOFF_JITTER = 0.2;
/**
 * Default largest request body: the API server's `--audit-webhook-truncate-max-batch-size`
 * default, the size it holds batches to when it truncates. A single larger event goes alone.
 */
export const DEFAULT_MAX_BATCH_BYTES = 10 * 1024 * 1024;
/** Default time for one POST, from sending to the receiver's answer. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** Answers meaning the receiver refuses this content: sending it again cannot help. 401, 403, 404 are configuration, retried. */
const PERMANENT_STATUSES = new Set([400, 413, 415, 422]);

const LIST_HEAD = new TextEncoder().encode(
  '{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[',
);
const LIST_TAIL = new TextEncoder().encode(']}');
const COMMA = 0x2c;

/** Options for {@link createAuditWebhookSink}, one per `--audit-webhook-*` flag. */
export type AuditWebhookSinkOptions = {
  /** kubeconfig naming the receiver (`--audit-webhook-config-file`). Required unless `target` is given. */
  configFile?: string;
  /** The receiver, already resolved (tests, or a caller that built it). Default: loaded from `configFile`. */
  target?: WebhookTarget;
  /**
   * Most events held in memory (`--audit-webhook-batch-buffer-size`). Default 10000. Never a
   * cause of loss here: the file is the buffer and at most one batch is in memory, so this only
   * has to be at least the batch size.
   */
  bufferSize?: number;
  /** Most events per request (`--audit-webhook-batch-max-size`). Default 400. */
  maxBatchSize?: number;
  /** Longest wait for a batch to fill, ms (`--audit-webhook-batch-max-wait`). Default 30 s. */
  maxBatchWaitMs?: number;
  /** Largest request body in bytes (`--audit-webhook-batch-max-bytes`). Default 10 MiB. */
  maxBatchBytes?: number;
  /** Whether requests are rate limited (`--audit-webhook-batch-throttle-enable`). Default true. */
  throttleEnable?: boolean;
  /** Requests per second (`--audit-webhook-batch-throttle-qps`). Default 10. */
  throttleQps?: number;
  /** Requests allowed at once after a quiet spell (`--audit-webhook-batch-throttle-burst`). Default 15. */
  throttleBurst?: number;
  /** Wait before the first retry, ms (`--audit-webhook-initial-backoff`). Default 10 s; grows 1.5x per attempt. */
  initialBackoffMs?: number;
  /** Longest wait between attempts, ms (`--audit-webhook-max-backoff`). Default 60 s. */
  maxBackoffMs?: number;
  /** Time for one POST, ms (`--audit-webhook-timeout`). Default 30 s. */
  requestTimeoutMs?: number;
  /** Monotonic clock in ms, for the rate limiter. Default `performance.now`. */
  monotonicMs?: () => number;
  /** Where failures are logged (never event contents). Default: silent. */
  log?: Logger;
};

/** Resolves after `ms`, or rejects when `signal` aborts. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new DeliveryError('audit webhook: aborted', { permanent: false }));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(new DeliveryError('audit webhook: aborted', { permanent: false }));
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A token bucket: `qps` tokens a second, at most `burst` saved up. `take` waits for one. */
function createRateLimiter(qps: number, burst: number, monotonicMs: () => number) {
  let tokens = burst;
  let last = monotonicMs();
  return async function take(signal: AbortSignal): Promise<void> {
    for (;;) {
      const t = monotonicMs();
      tokens = Math.min(burst, tokens + ((t - last) * qps) / 1000);
      last = t;
      if (tokens >= 1) {
        tokens -= 1;
        return;
      }
      await wait(Math.ceil(((1 - tokens) * 1000) / qps), signal);
    }
  };
}

/** Joins events into one `audit.k8s.io/v1` EventList body, without re-encoding them. */
export function eventListBody(events: readonly ForwardEvent[]): Uint8Array {
  let size = LIST_HEAD.length + LIST_TAIL.length + Math.max(0, events.length - 1);
  for (const e of events) size += e.bytes.length;
  const body = new Uint8Array(size);
  body.set(LIST_HEAD, 0);
  let at = LIST_HEAD.length;
  events.forEach((e, i) => {
    if (i > 0) body[at++] = COMMA;
    body.set(e.bytes, at);
    at += e.bytes.length;
  });
  body.set(LIST_TAIL, at);
  return body;
}

function positive(name: string, value: number, integer: boolean): void {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isSafeInteger(value))) {
    throw new RangeError(
      `audit webhook: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${value}`,
    );
  }
}

/**
 * Creates the audit webhook sink. Reads and checks the kubeconfig now (throwing, with the file and
 * field, if it is wrong) and validates every option, naming it.
 */
export function createAuditWebhookSink(options: AuditWebhookSinkOptions): ForwardSink {
  if (!options.target && !options.configFile) {
    throw new TypeError('audit webhook: configFile (--audit-webhook-config-file) is required');
  }
  const target = options.target ?? loadWebhookConfig(options.configFile as string);
  const bufferSize = options.bufferSize ?? DEFAULT_BUFFER_SIZE;
  const maxBatchSize = options.maxBatchSize ?? DEFAULT_MAX_SIZE;
  const throttleQps = options.throttleQps ?? DEFAULT_THROTTLE_QPS;
  const throttleBurst = options.throttleBurst ?? DEFAULT_THROTTLE_BURST;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  positive('bufferSize (--audit-webhook-batch-buffer-size)', bufferSize, true);
  positive('maxBatchSize (--audit-webhook-batch-max-size)', maxBatchSize, true);
  positive('throttleQps (--audit-webhook-batch-throttle-qps)', throttleQps, false);
  positive('throttleBurst (--audit-webhook-batch-throttle-burst)', throttleBurst, true);
  positive('requestTimeoutMs (--audit-webhook-timeout)', requestTimeoutMs, false);
  if (maxBatchSize > bufferSize) {
    throw new RangeError(
      `audit webhook: maxBatchSize (--audit-webhook-batch-max-size, ${maxBatchSize}) must not exceed bufferSize (--audit-webhook-batch-buffer-size, ${bufferSize})`,
    );
  }
  const batch: BatchLimits = {
    maxEvents: maxBatchSize,
    maxBytes: options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
    maxWaitMs: options.maxBatchWaitMs ?? DEFAULT_MAX_WAIT_MS,
  };
  const initialBackoffMs = options.initialBackoffMs ?? DEFAULT_INITIAL_BACKOFF_MS;
  const retry: RetryPolicy = {
    initialBackoffMs,
    maxBackoffMs: options.maxBackoffMs ?? Math.max(DEFAULT_MAX_BACKOFF_MS, initialBackoffMs),
    factor: BACKOFF_FACTOR,
    jitter: BACKOFF_JITTER,
  };
  validateDelivery('audit webhook', batch, retry);
  const throttle =
    options.throttleEnable === false
      ? undefined
      : createRateLimiter(throttleQps, throttleBurst, options.monotonicMs ?? (() => performance.now()));
  const log = (options.log ?? silentLogger).child('forward-audit-webhook');

  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.token !== undefined) headers.authorization = `Bearer ${target.token}`;
  if (target.basic) {
    headers.authorization = `Basic ${Buffer.from(`${target.basic.username}:${target.basic.password}`).toString('base64')}`;
  }
  const serverName = target.serverName;
  const tls = {
    ...(target.ca !== undefined ? { ca: target.ca } : {}),
    ...(target.clientCert !== undefined ? { cert: target.clientCert, key: target.clientKey } : {}),
    ...(serverName !== undefined
      ? {
          serverName,
          checkServerIdentity: (_host: string, cert: Parameters<typeof checkServerIdentity>[1]) =>
            checkServerIdentity(serverName, cert),
        }
      : {}),
    rejectUnauthorized: !target.insecureSkipVerify,
  };

  async function send(events: readonly ForwardEvent[], signal: AbortSignal): Promise<void> {
    if (throttle) await throttle(signal);
    const body = eventListBody(events);
    const timeout = AbortSignal.timeout(requestTimeoutMs);
    let response: Response;
    try {
      response = await fetch(target.url, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.any([signal, timeout]),
        tls,
      });
    } catch (error) {
      throw new DeliveryError(`audit webhook: POST ${target.url} failed: ${(error as Error).message}`, {
        permanent: false,
        cause: error,
      });
    }
    // The answer's body is read and dropped (a receiver may echo events back: never into logs), so the connection is reused.
    await response.arrayBuffer().catch(() => undefined);
    if (response.ok) return;
    const permanent = PERMANENT_STATUSES.has(response.status);
    log.debug('audit webhook answered with an error', { status: response.status, events: events.length });
    throw new DeliveryError(`audit webhook: POST ${target.url} answered ${response.status}`, { permanent });
  }

  return { name: 'audit-webhook', batch, retry, send, close: async () => {} };
}
