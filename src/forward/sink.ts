/**
 * @module The forwarding seam: where batches of audit events go (a Kafka topic, an audit webhook), and how often to retry.
 *
 * A sink sends one batch and resolves once the far side acknowledged all of it, or rejects. The
 * forwarder owns batching, retries and the checkpoint; the sink says how large a batch may be, how
 * long to wait for one to fill, and how to back off, since those differ by destination.
 */

import type { EventMeta } from './event-meta.ts';

/** One event on its way: the bytes to send (one JSON document, no newline) and what it says about itself. */
export type ForwardEvent = {
  /** The event's JSON, as `convert` produced it. */
  readonly bytes: Uint8Array;
  /** Its audit ID, cluster and object, for keys and logs. */
  readonly meta: EventMeta;
};

/**
 * A failed send. `permanent` means the destination refused the content itself (a record too large,
 * a body the receiver rejects) and sending the same batch again cannot succeed; anything else
 * (unreachable, timeouts, 5xx, 429, not enough replicas) is worth retrying.
 */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  /** True when retrying the same events cannot help. */
  readonly permanent: boolean;

  constructor(message: string, options: { permanent: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.permanent = options.permanent;
  }
}

/** How a sink wants events grouped. */
export type BatchLimits = {
  /** Most events in one batch. */
  readonly maxEvents: number;
  /** A batch closes once its events reach this many bytes (a single larger event goes alone). */
  readonly maxBytes: number;
  /** Longest time from the first event of a batch to its sending while more could still come. */
  readonly maxWaitMs: number;
};

/** Exponential backoff between attempts at the same batch; there is no last attempt. */
export type RetryPolicy = {
  /** Wait before the first retry. */
  readonly initialBackoffMs: number;
  /** Longest wait between two attempts. */
  readonly maxBackoffMs: number;
  /** Each wait is the previous one times this. */
  readonly factor: number;
  /** Each wait is spread by up to this fraction either way, so many forwarders do not retry in step. */
  readonly jitter: number;
};

/** A destination for batches of events. */
export interface ForwardSink {
  /** Short name for logs: `kafka` or `audit-webhook`. */
  readonly name: string;
  /** Batch sizes this destination takes. */
  readonly batch: BatchLimits;
  /** How to back off after a failed send. */
  readonly retry: RetryPolicy;
  /**
   * Sends `events` in order; resolves when all are acknowledged; rejects with a
   * {@link DeliveryError} otherwise (some may have arrived: delivery is at least once). `signal`
   * aborts a send in progress when the forwarder stops.
   */
  send(events: readonly ForwardEvent[], signal: AbortSignal): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Returns the wait before retry number `attempt` (1 for the first retry), in ms; `random` is in [0, 1). */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number): number {
  const base = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.factor ** (attempt - 1));
  const spread = base * policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(Math.min(policy.maxBackoffMs, base + spread)));
}

/** Checks batch limits and a retry policy; throws naming `owner` and the field that is wrong. */
export function validateDelivery(owner: string, batch: BatchLimits, retry: RetryPolicy): void {
  const positiveInt = (name: string, value: number) => {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`${owner}: ${name} must be a positive integer, got ${value}`);
    }
  };
  const nonNegative = (name: string, value: number) => {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`${owner}: ${name} must be a non-negative number, got ${value}`);
    }
  };
  positiveInt('batch max events', batch.maxEvents);
  positiveInt('batch max bytes', batch.maxBytes);
  nonNegative('batch max wait', batch.maxWaitMs);
  nonNegative('initial backoff', retry.initialBackoffMs);
  nonNegative('max backoff', retry.maxBackoffMs);
  if (retry.maxBackoffMs < retry.initialBackoffMs) {
    throw new RangeError(
      `${owner}: max backoff (${retry.maxBackoffMs} ms) must not be below the initial backoff (${retry.initialBackoffMs} ms)`,
    );
  }
  if (!Number.isFinite(retry.factor) || retry.factor < 1) {
    throw new RangeError(`${owner}: backoff factor must be at least 1, got ${retry.factor}`);
  }
  if (!Number.isFinite(retry.jitter) || retry.jitter < 0 || retry.jitter >= 1) {
    throw new RangeError(`${owner}: backoff jitter must be in [0, 1), got ${retry.jitter}`);
  }
}
