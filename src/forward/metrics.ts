/**
 * @module The forwarder's metrics: events by outcome, lag behind the file, checkpoint age, bytes lost to the disk bound.
 */

import { Counter, Gauge, type Registry } from 'prom-client';

/** Outcomes of an event, the values of the `result` label. */
export const FORWARD_RESULTS = ['delivered', 'retried', 'failed', 'dropped'] as const;

/** One value of the `result` label. */
export type ForwardResult = (typeof FORWARD_RESULTS)[number];

/** Readings taken at scrape time. */
export type ForwardGauges = {
  /** Bytes written to the log and not yet delivered. */
  lagBytes(): number;
  /** Age of the oldest line read and not yet delivered, seconds; 0 when none waits. */
  lagSeconds(): number;
  /** Seconds since the checkpoint was last written (or nothing was left to read) while something waits; 0 when caught up. */
  checkpointAgeSeconds(): number;
};

/** The forwarder's counters. */
export type ForwardMetrics = {
  /** Adds `count` events with outcome `result`. */
  count(result: ForwardResult, count: number): void;
  /** Adds bytes lost before they could be forwarded. */
  dropped(bytes: number): void;
  /** Current value of a counter, for tests and logs. */
  value(result: ForwardResult | 'dropped_bytes'): number;
};

/** Registers the forwarder's metrics on `registry`; every `result` label starts at 0 so alerts see the series. */
export function createForwardMetrics(registry: Registry, gauges: ForwardGauges): ForwardMetrics {
  const events = new Counter({
    name: 'kube_audit_rest_forward_events_total',
    help:
      'Audit events by outcome: delivered (acknowledged by the destination), retried (sent again after a ' +
      'failed attempt, once per event per retry), failed (refused for good by the destination), dropped ' +
      '(read from the log but not an audit event, so never sent)',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const result of FORWARD_RESULTS) events.inc({ result }, 0);
  const droppedBytes = new Counter({
    name: 'kube_audit_rest_forward_dropped_bytes_total',
    help:
      'Bytes of the audit log lost before they were forwarded: backups pruned by --logger-max-backups ' +
      'while unread, files truncated, lines over the length limit (a lower bound)',
    registers: [registry],
  });
  new Gauge({
    name: 'kube_audit_rest_forward_lag_bytes',
    help: 'Bytes of the audit log (and its backups, compressed ones by size on disk) not yet delivered',
    registers: [registry],
    collect() {
      this.set(gauges.lagBytes());
    },
  });
  new Gauge({
    name: 'kube_audit_rest_forward_lag_seconds',
    help:
      'Age of the oldest audit line read and not yet delivered, from its requestReceivedTimestamp ' +
      '(or when it was read); 0 when nothing waits',
    registers: [registry],
    collect() {
      this.set(gauges.lagSeconds());
    },
  });
  new Gauge({
    name: 'kube_audit_rest_forward_checkpoint_age_seconds',
    help:
      'Seconds since the forwarding checkpoint was last written or the forwarder last had nothing to ' +
      'read, while lines wait; 0 when caught up',
    registers: [registry],
    collect() {
      this.set(gauges.checkpointAgeSeconds());
    },
  });
  const totals: Record<ForwardResult | 'dropped_bytes', number> = {
    delivered: 0,
    retried: 0,
    failed: 0,
    dropped: 0,
    dropped_bytes: 0,
  };
  return {
    count(result, count) {
      if (count <= 0) return;
      events.inc({ result }, count);
      totals[result] += count;
    },
    dropped(bytes) {
      if (bytes <= 0) return;
      droppedBytes.inc(bytes);
      totals.dropped_bytes += bytes;
    },
    value: (result) => totals[result],
  };
}
