/**
 * @module Prometheus metrics on a private registry: 1.x's two counters plus what an operator alerts on.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { LEVELS, type Level } from '../audit/policy/types.ts';
import type { RefusalReason } from '../http/refusals.ts';
import type { SinkObserver } from '../sink/sink.ts';

/**
 * Every reason a request can be refused for, so that each `invalid_requests_total{reason}` series
 * exists at 0 from the start (an alert on rate() sees the first refusal). A Record rather than a
 * list: the compiler then refuses this table when a reason is added to RefusalReason and not here.
 */
const REFUSAL_REASONS: Record<RefusalReason, true> = {
  empty: true,
  syntax: true,
  trailing_data: true,
  invalid_utf8: true,
  too_deep: true,
  not_object: true,
  duplicate_key: true,
  wrong_kind: true,
  wrong_api_version: true,
  missing_request: true,
  missing_uid: true,
  invalid_uid: true,
  method_not_allowed: true,
  not_found: true,
  unsupported_media_type: true,
  too_large: true,
  timeout: true,
  internal: true,
};

/** The `result` label values of the reload counters. */
const RELOAD_RESULTS = ['success', 'failure'] as const;

/** Creates every series of `counter` for the given label values at 0; see {@link REFUSAL_REASONS}. */
function startAtZero<L extends string>(counter: Counter<L>, label: L, values: readonly string[]): void {
  for (const value of values) counter.inc({ [label]: value } as Partial<Record<L, string>>, 0);
}

/**
 * Request duration buckets, in seconds. The API server's webhook timeout is 10 s by default; most
 * answers take well under a millisecond, so the buckets are dense below 10 ms.
 */
const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 2.5, 10,
];

/** prom-client default gauges whose names end in `_total`, which is for counters. */
const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
] as const;

/** A histogram without labels that costs a few array operations per observation. */
export type DurationHistogram = {
  /** Counts one observation, in seconds. */
  observe(seconds: number): void;
};

/** One sample of the text format, the shape prom-client's registry prints. */
type Sample = { metricName: string; labels: Record<string, string | number>; value: number };

/**
 * Creates a label-free histogram on `registry` that prints exactly as prom-client's Histogram does.
 * prom-client's own `observe` validates labels and hashes them on every call (about 0.35 µs, once
 * per request here); this one finds the bucket and adds, and leaves the work to the scrape.
 */
function createDurationHistogram(
  registry: Registry,
  options: { name: string; help: string; buckets: readonly number[] },
): DurationHistogram {
  const { name, help, buckets } = options;
  const counts = new Float64Array(buckets.length + 1); // the last is +Inf
  let sum = 0;
  const metric = {
    name,
    help,
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    get() {
      const values: Sample[] = [];
      let cumulative = 0;
      for (let i = 0; i < buckets.length; i++) {
        cumulative += counts[i] as number;
        values.push({
          metricName: `${name}_bucket`,
          labels: { le: buckets[i] as number },
          value: cumulative,
        });
      }
      cumulative += counts[buckets.length] as number;
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: cumulative });
      values.push({ metricName: `${name}_sum`, labels: {}, value: sum });
      values.push({ metricName: `${name}_count`, labels: {}, value: cumulative });
      return { name, help, type: metric.type, values, aggregator: metric.aggregator };
    },
    reset() {
      counts.fill(0);
      sum = 0;
    },
  };
  // The registry takes any object of this shape; prom-client's types only name its own classes.
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  return {
    observe(seconds) {
      let i = 0;
      while (i < buckets.length && seconds > (buckets[i] as number)) i++;
      counts[i] = (counts[i] as number) + 1;
      sum += seconds;
    },
  };
}

/** The metrics kube-audit-rest keeps, and the registry that exposes them. */
export type Metrics = {
  /** The private registry; `/metrics` serves `registry.metrics()`. */
  readonly registry: Registry;
  /** Every request to the webhook port (1.x name). */
  readonly httpRequests: Counter;
  /** Requests whose line was written (1.x name). */
  readonly validRequests: Counter;
  /** Refused requests, by reason. */
  readonly invalidRequests: Counter<'reason'>;
  /** Time from arrival to answer of valid requests, in seconds. */
  readonly requestDuration: DurationHistogram;
  /** Lines that could not be written. */
  readonly writeFailures: Counter;
  /** Requests answered allowed although their line could not be written (`--on-write-error=allow`). */
  readonly unrecordedRequests: Counter;
  /** Requests answered allowed: false because their line could not be written (`--on-write-error=deny`). */
  readonly deniedRequests: Counter;
  /** Counts one policy decision at `level` (a few array operations; the labels are made at scrape time). */
  countDecision(level: Level): void;
  /** Bytes of audit lines written. */
  readonly bytesWritten: Counter;
  /** Rotations of the audit file. */
  readonly rotations: Counter;
  /** Reopens of the audit file after it was deleted or moved away. */
  readonly reopens: Counter;
  /** Successful and failed certificate reloads (client CA included). */
  readonly certReloads: Counter<'result'>;
  /** Successful and failed reloads of the path token file. */
  readonly pathTokenReloads: Counter<'result'>;
  /** Expiry of the certificate being served, as a Unix time in seconds. */
  readonly certExpiry: Gauge;
  /** Whether the sink can write (1) or not (0), as /readyz reports it. */
  readonly sinkReady: Gauge;
  /** Gzip compressions of rotated files, by result. */
  readonly compressions: Counter<'result'>;
  /** Times the webhook stopped accepting connections because `--max-connections` were open. */
  readonly connectionCapReached: Counter;
  /** The sink observer that feeds the write metrics. */
  readonly sinkObserver: SinkObserver;
};

/** Creates the metrics on a new private registry, with prom-client's default process and runtime metrics. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Three of prom-client's defaults are gauges named like counters, which `promtool check metrics`
  // rejects and rate() would misread; nothing here alerts on them.
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  const registers = [registry];
  const writeFailures = new Counter({
    name: 'kube_audit_rest_write_failures_total',
    help: 'Audit lines that could not be written (disk full, file gone, ...); these requests were not logged',
    registers,
  });
  const bytesWritten = new Counter({
    name: 'kube_audit_rest_written_bytes_total',
    help: 'Bytes of audit lines written to the sink',
    registers,
  });
  const rotations = new Counter({
    name: 'kube_audit_rest_log_rotations_total',
    help: 'Times the audit log file was rotated',
    registers,
  });
  const decisions = new Float64Array(LEVELS.length);
  new Counter({
    name: 'kube_audit_rest_policy_decisions_total',
    help: 'Valid requests by the audit level the policy gave them (RequestResponse for all without --policy-file); None writes nothing',
    labelNames: ['level'] as const,
    registers,
    collect() {
      this.reset();
      for (const [i, level] of LEVELS.entries()) this.inc({ level }, decisions[i] as number);
    },
  });
  const levelIndex = new Map(LEVELS.map((l, i) => [l, i]));
  const reopens = new Counter({
    name: 'kube_audit_rest_log_reopens_total',
    help: 'Times the audit log file was found deleted or moved away and was reopened',
    registers,
  });
  const sinkReady = new Gauge({
    name: 'kube_audit_rest_sink_ready',
    help: 'Whether the audit sink can write (1) or its last write failed and it has not recovered yet (0)',
    registers,
  });
  sinkReady.set(1); // a sink starts ready and reports only changes
  const compressions = new Counter({
    name: 'kube_audit_rest_log_compressions_total',
    help: 'Rotated audit files gzipped in the background (--logger-compress), by result',
    labelNames: ['result'] as const,
    registers,
  });
  for (const result of ['success', 'failure']) compressions.inc({ result }, 0);
  const invalidRequests = new Counter({
    name: 'kube_audit_rest_invalid_requests_total',
    help: 'Requests refused without writing anything, by reason (not_found includes wrong path tokens)',
    labelNames: ['reason'] as const,
    registers,
  });
  startAtZero(invalidRequests, 'reason', Object.keys(REFUSAL_REASONS));
  const certReloads = new Counter({
    name: 'kube_audit_rest_certificate_reloads_total',
    help: 'Certificate reloads after the files changed (client CA included), by result (success or failure)',
    labelNames: ['result'] as const,
    registers,
  });
  startAtZero(certReloads, 'result', RELOAD_RESULTS);
  const pathTokenReloads = new Counter({
    name: 'kube_audit_rest_path_token_reloads_total',
    help: 'Reloads of the --path-token-file after it changed, by result; on failure the previous tokens stay in force',
    labelNames: ['result'] as const,
    registers,
  });
  startAtZero(pathTokenReloads, 'result', RELOAD_RESULTS);
  return {
    registry,
    sinkReady,
    compressions,
    httpRequests: new Counter({
      name: 'kube_audit_rest_http_requests_total',
      help: 'Total number of requests to kube-audit-rest',
      registers,
    }),
    validRequests: new Counter({
      name: 'kube_audit_rest_valid_requests_processed_total',
      help: 'Total number of valid requests processed (their audit line was written)',
      registers,
    }),
    invalidRequests,
    requestDuration: createDurationHistogram(registry, {
      name: 'kube_audit_rest_request_duration_seconds',
      help: 'Time from the arrival of a valid request to its answer, including the write',
      buckets: DURATION_BUCKETS,
    }),
    writeFailures,
    unrecordedRequests: new Counter({
      name: 'kube_audit_rest_unrecorded_requests_total',
      help: 'Requests answered allowed although their audit line could not be written (--on-write-error=allow)',
      registers,
    }),
    deniedRequests: new Counter({
      name: 'kube_audit_rest_denied_requests_total',
      help: 'Requests answered allowed: false because their audit line could not be written (--on-write-error=deny)',
      registers,
    }),
    countDecision(level) {
      const i = levelIndex.get(level) as number;
      decisions[i] = (decisions[i] as number) + 1;
    },
    bytesWritten,
    rotations,
    reopens,
    certReloads,
    pathTokenReloads,
    certExpiry: new Gauge({
      name: 'kube_audit_rest_certificate_expiry_timestamp_seconds',
      help: 'Expiry (notAfter) of the certificate being served, as a Unix time in seconds',
      registers,
    }),
    connectionCapReached: new Counter({
      name: 'kube_audit_rest_connection_cap_reached_total',
      help: 'Times the webhook listener closed because --max-connections connections were open; new connections were refused until some closed',
      registers,
    }),
    sinkObserver: {
      written: (_lines, bytes) => bytesWritten.inc(bytes),
      failed: (lines) => writeFailures.inc(lines),
      rotated: () => rotations.inc(),
      reopened: () => reopens.inc(),
      readyChanged: (ready) => sinkReady.set(ready ? 1 : 0),
      compressed: (result) => compressions.inc({ result }),
    },
  };
}
