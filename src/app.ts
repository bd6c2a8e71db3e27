/**
 * @module The HTTP apps: the webhook (`POST /log-request`) and the operations port (metrics, health).
 *
 * One request's path: read the body (capped, with a deadline) → parseReview → buildLine → sink.write
 * → answer. The line is in the sink before the answer leaves.
 */
import { Hono } from 'hono';
import { buildLine, lineBytes } from './line.ts';
import { allowedAnswer, type InvalidReason, parseReview } from './review/parse.ts';
import type { LineSink } from './sink/sink.ts';
import type { Clock } from './support/clock.ts';
import { formatRfc3339Nano } from './support/clock.ts';
import type { Logger } from './support/log.ts';
import type { Metrics } from './support/metrics.ts';

/** What {@link createApp} needs; everything explicit, nothing global. */
export type AppDeps = {
  sink: LineSink;
  metrics: Metrics;
  clock: Clock;
  log: Logger;
  /** Largest body accepted, in bytes; larger ones get 413 and are not read. */
  maxRequestBytes: number;
  /** Deadline for receiving the body, in ms; a slower client gets 408. */
  requestTimeoutMs: number;
  /** Told each valid body's size once its line is written (see gc-pacer.ts). Default: nothing. */
  afterBody?: (bodyBytes: number) => void;
};

/** Refusals that are not about the body's content (status, reason label). */
type HttpRefusal = 'method_not_allowed' | 'not_found' | 'unsupported_media_type' | 'too_large' | 'timeout';

const JSON_HEADERS = { 'content-type': 'application/json' } as const;
/**
 * The init of every "allowed" answer. A Response copies its init's headers, so one Headers object
 * serves them all, and copying it is cheaper than building headers from a plain object each time.
 */
const ANSWER_INIT: ResponseInit = { headers: new Headers(JSON_HEADERS) };
/** Least time between two "write failed" log entries, so a full disk does not flood stderr. */
const WRITE_FAILURE_LOG_INTERVAL_MS = 1_000;

/** Builds an error answer: `{"code":N,"reason":"...","message":"..."}` with the given status. */
export function errorResponse(
  status: number,
  reason: InvalidReason | HttpRefusal | 'internal',
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ code: status, reason, message }), {
    status,
    headers: { ...JSON_HEADERS, ...headers },
  });
}

/** Whether a Content-Type header names application/json (parameters such as charset allowed). */
export function isJsonContentType(value: string | null): boolean {
  if (value === 'application/json') return true; // what the API server sends: no parsing needed
  if (value === null) return false;
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}

/** What the body deadline resolves with; the handler turns it into a 408. */
const TIMED_OUT = Symbol('timed out');
/** What a body over the cap gives, declared or streamed; the handler turns it into a 413. */
const TOO_LARGE = Symbol('too large');

/**
 * Reads a request body into bytes, giving {@link TOO_LARGE} once it passes `cap` bytes or
 * {@link TIMED_OUT} when it has not arrived within `timeoutMs`. A declared Content-Length over the
 * cap is refused unread. One promise per request: every extra promise and closure here shows in the
 * request rate (measured: racing a separate deadline promise cost about 3 µs a request).
 */
function readBody(
  req: Request,
  cap: number,
  timeoutMs: number,
): Promise<Uint8Array | typeof TOO_LARGE | typeof TIMED_OUT> | typeof TOO_LARGE {
  const declared = req.headers.get('content-length');
  if (declared !== null && Number(declared) > cap) return TOO_LARGE;
  return new Promise(function receiveBody(resolve, reject) {
    const timer = setTimeout(resolve, timeoutMs, TIMED_OUT);
    const body = declared !== null ? req.bytes() : readChunked(req, cap);
    body.then(
      (bytes) => {
        clearTimeout(timer);
        resolve(bytes);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Reads a body of unknown length chunk by chunk, stopping as soon as it passes the cap. */
async function readChunked(req: Request, cap: number): Promise<Uint8Array | typeof TOO_LARGE> {
  if (req.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel().catch(() => {});
      return TOO_LARGE;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Pulls the fields an operator wants in a debug entry; parses the line only when debug is on. */
function describeForDebug(line: Uint8Array): Record<string, unknown> {
  const parsed = JSON.parse(new TextDecoder().decode(line)) as {
    request?: {
      uid?: unknown;
      operation?: unknown;
      kind?: { group?: unknown; kind?: unknown };
      subResource?: unknown;
      namespace?: unknown;
      name?: unknown;
      userInfo?: { username?: unknown };
    };
  };
  const r = parsed.request ?? {};
  return {
    uid: r.uid,
    operation: r.operation,
    kind: r.kind?.kind,
    group: r.kind?.group,
    subResource: r.subResource,
    namespace: r.namespace,
    name: r.name,
    user: r.userInfo?.username,
  };
}

/** The webhook: its request handler, and the Hono app that routes to it. */
export type Webhook = {
  /**
   * Handles `POST /log-request`. Bun's own router calls it straight from the listener (see
   * main.ts), so the request rate does not pay for a second router on the one path that matters.
   */
  readonly logRequest: (req: Request) => Promise<Response>;
  /** `POST /log-request` through {@link Webhook.logRequest}, 405 for other methods there, 404 elsewhere. */
  readonly app: Hono;
};

/** Creates the webhook handler and its app; see {@link Webhook}. */
export function createWebhook(deps: AppDeps): Webhook {
  const { sink, metrics, clock, log, maxRequestBytes, requestTimeoutMs } = deps;
  const afterBody = deps.afterBody ?? (() => {});
  let lastFailureLog = 0;
  let suppressedFailures = 0;

  function refuse(
    status: number,
    reason: InvalidReason | HttpRefusal,
    message: string,
    headers = {},
  ): Response {
    metrics.invalidRequests.inc({ reason });
    log.debug('request refused', { status, reason });
    return errorResponse(status, reason, message, headers);
  }

  function reportWriteFailure(err: unknown): void {
    // Fail open: the API server is told "allowed" (as `failurePolicy: Ignore` would do anyway), but
    // the loss is counted by the sink observer and logged here, never silent.
    const now = Date.now();
    if (now - lastFailureLog >= WRITE_FAILURE_LOG_INTERVAL_MS) {
      log.error('audit line not written; request allowed without a record', {
        error: err,
        suppressedSinceLast: suppressedFailures,
      });
      lastFailureLog = now;
      suppressedFailures = 0;
    } else {
      suppressedFailures++;
    }
  }

  async function logRequest(req: Request): Promise<Response> {
    const arrived = clock();
    metrics.httpRequests.inc();
    if (!isJsonContentType(req.headers.get('content-type'))) {
      return refuse(415, 'unsupported_media_type', 'Content-Type must be application/json');
    }
    const body = await readBody(req, maxRequestBytes, requestTimeoutMs);
    if (body === TIMED_OUT) {
      return refuse(408, 'timeout', `request body not received within ${requestTimeoutMs} ms`, {
        connection: 'close',
      });
    }
    if (body === TOO_LARGE) {
      return refuse(413, 'too_large', `request body is larger than the ${maxRequestBytes} byte limit`, {
        connection: 'close',
      });
    }
    const review = parseReview(body);
    if (!review.ok) return refuse(400, review.reason, review.message);

    const line = buildLine(review, formatRfc3339Nano(arrived));
    try {
      await sink.write(line);
      metrics.validRequests.inc();
      if (log.debugEnabled) log.debug('request logged', describeForDebug(lineBytes(line)));
    } catch (err) {
      reportWriteFailure(err);
    }
    metrics.requestDuration.observe(Number(clock() - arrived) / 1e9);
    afterBody(body.length);
    return new Response(allowedAnswer(review), ANSWER_INIT);
  }

  const app = new Hono();
  app.post('/log-request', function route(c) {
    return logRequest(c.req.raw);
  });

  app.all('/log-request', function methodNotAllowed(c) {
    metrics.httpRequests.inc();
    return refuse(405, 'method_not_allowed', `method ${c.req.method} not allowed; use POST`, {
      allow: 'POST',
    });
  });

  app.notFound(function notFound(c) {
    metrics.httpRequests.inc();
    return refuse(404, 'not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`);
  });

  app.onError(function onError(err) {
    log.error('unexpected error while handling a request', { error: err });
    return errorResponse(500, 'internal', 'internal error');
  });

  return { logRequest, app };
}

/** Creates the webhook app alone; see {@link Webhook.app}. */
export function createApp(deps: AppDeps): Hono {
  return createWebhook(deps).app;
}

/** What the operations app needs. */
export type OpsDeps = {
  metrics: Metrics;
  /** Readiness checks by name; each returns true when healthy. */
  readiness: Record<string, () => boolean>;
};

/** Creates the operations app: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (checks). */
export function createOpsApp(deps: OpsDeps): Hono {
  const app = new Hono();
  app.get('/metrics', async function metricsText() {
    const text = await deps.metrics.registry.metrics();
    return new Response(text, { headers: { 'content-type': deps.metrics.registry.contentType } });
  });
  app.get('/healthz', function healthz(c) {
    return c.text('ok\n');
  });
  app.get('/readyz', function readyz(c) {
    const failed = Object.entries(deps.readiness)
      .filter(([, check]) => !check())
      .map(([name]) => name);
    return failed.length === 0 ? c.text('ok\n') : c.text(`not ready: ${failed.join(', ')}\n`, 503);
  });
  return app;
}
