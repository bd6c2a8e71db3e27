/**
 * @module The webhook's request handler: transport only. Content type, body (capped, with a
 * deadline), parse into a record, hand it to the audit pipeline, write the line, answer.
 *
 * One request's path, in the order the data flows: this file → review/parse.ts (bytes → record) →
 * audit/pipeline.ts (decide → edit → encode) → the sink. The line is in the sink before the answer
 * leaves.
 */
import type { Pipeline } from '../audit/pipeline.ts';
import type { AdmissionRecord } from '../audit/record.ts';
import { allowedAnswer, deniedAnswer } from '../review/answer.ts';
import { parseReview } from '../review/parse.ts';
import type { LineSink } from '../sink/sink.ts';
import type { Clock } from '../support/clock.ts';
import type { Logger } from '../support/log.ts';
import type { Metrics } from '../support/metrics.ts';
import { throttle } from '../support/throttle.ts';
import { isJsonContentType, readBody, TIMED_OUT, TOO_LARGE } from './body.ts';
import { errorResponse, JSON_HEADERS, type RefusalReason } from './refusals.ts';

/** What to answer when a line could not be written. */
export type OnWriteError = 'allow' | 'deny';

/** What {@link createWebhook} needs; everything explicit, nothing global. */
export type WebhookDeps = {
  pipeline: Pipeline;
  sink: LineSink;
  metrics: Metrics;
  clock: Clock;
  log: Logger;
  /** Largest body accepted, in bytes; larger ones get 413 and are not read. */
  maxRequestBytes: number;
  /** Deadline for receiving the body, in ms; a slower client gets 408. */
  requestTimeoutMs: number;
  /**
   * allow (the default): answer allowed anyway, and count the request as unrecorded; deny: answer
   * allowed: false, so that with `failurePolicy: Fail` no change goes ahead unrecorded.
   */
  onWriteError?: OnWriteError;
  /** Told each valid body's size once its line is written (see gc-pacer.ts). Default: nothing. */
  afterBody?: (bodyBytes: number) => void;
};

/** Parameters a route's path captured (a path token, say). */
export type RouteParams = Readonly<Record<string, string>>;

/** What the route guards found out about the caller, for the pipeline. */
export type CallerContext = {
  /** The cluster the caller's path token names, overriding `--cluster-name`. */
  clusterName?: string;
};

/**
 * The answer's init. A Response copies its init's headers, so one Headers object serves every
 * answer, and copying it is cheaper than building headers from a plain object each time.
 */
const ANSWER_INIT: ResponseInit = { headers: new Headers(JSON_HEADERS) };
/** Least time between two "write failed" log entries, so a full disk does not flood stderr. */
const WRITE_FAILURE_LOG_INTERVAL_MS = 1_000;
/** Longest text of one field in a debug entry: a Kubernetes name is at most 253 characters. */
const DEBUG_FIELD_MAX = 253;

/** A string field for a debug entry; anything else, or a longer text, is not copied into the log. */
function debugString(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  return value.length > DEBUG_FIELD_MAX ? `${value.slice(0, DEBUG_FIELD_MAX)}…` : value;
}

/** The fields an operator wants in a debug entry: identifiers only, strings only, never content. */
function describeForDebug(record: AdmissionRecord, level: string): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    uid: debugString(record.uid),
    operation: debugString(record.operation),
    kind: debugString(record.kind?.kind),
    group: debugString(record.kind?.group),
    subResource: debugString(record.subResource),
    namespace: debugString(record.namespace),
    name: debugString(record.name),
    user: debugString(record.userInfo.username),
    level,
  };
  for (const [k, v] of Object.entries(fields)) if (v === undefined) delete fields[k];
  return fields;
}

/** The webhook's handler; see the module comment. */
export type Webhook = {
  /** Handles `POST /log-request`, with what the route's guards learnt about the caller. */
  readonly logRequest: (req: Request, caller?: CallerContext) => Promise<Response>;
  /** Counts and answers a refusal the routes make (404, 405), as the handler's own refusals are. */
  readonly refuse: (
    status: number,
    reason: RefusalReason,
    message: string,
    headers?: Record<string, string>,
  ) => Response;
};

/** Creates the webhook handler; see {@link Webhook}. */
export function createWebhook(deps: WebhookDeps): Webhook {
  const { pipeline, sink, metrics, clock, log, maxRequestBytes, requestTimeoutMs } = deps;
  const deny = deps.onWriteError === 'deny';
  const afterBody = deps.afterBody ?? (() => {});

  function refuse(status: number, reason: RefusalReason, message: string, headers = {}): Response {
    metrics.invalidRequests.inc({ reason });
    log.debug('request refused', { status, reason });
    return errorResponse(status, reason, message, headers);
  }

  const reportWriteFailure = throttle(
    (suppressed: number, err: unknown) => {
      log.error(
        deny
          ? 'audit line not written; request denied'
          : 'audit line not written; request allowed without a record',
        { error: err, suppressedSinceLast: suppressed },
      );
    },
    { intervalMs: WRITE_FAILURE_LOG_INTERVAL_MS },
  );

  async function logRequest(req: Request, caller?: CallerContext): Promise<Response> {
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
    const parsed = parseReview(body);
    if (!parsed.ok) return refuse(400, parsed.reason, parsed.message);
    const record = parsed.record;

    const { decision, line } = pipeline(record, arrived, caller?.clusterName);
    metrics.countDecision(decision.level);
    let answer: Uint8Array;
    if (line === undefined) {
      answer = allowedAnswer(record); // level None (or no stage left): nothing to write
    } else {
      try {
        await sink.write(line);
        metrics.validRequests.inc();
        answer = allowedAnswer(record);
      } catch (err) {
        reportWriteFailure(err);
        if (deny) {
          metrics.deniedRequests.inc();
          answer = deniedAnswer(
            record,
            'kube-audit-rest could not write the audit record; the request is refused (--on-write-error=deny)',
          );
        } else {
          metrics.unrecordedRequests.inc();
          answer = allowedAnswer(record);
        }
      }
    }
    if (log.debugEnabled) log.debug('request handled', describeForDebug(record, decision.level));
    metrics.requestDuration.observe(Number(clock() - arrived) / 1e9);
    afterBody(body.length);
    return new Response(answer, ANSWER_INIT);
  }

  return { logRequest, refuse };
}
