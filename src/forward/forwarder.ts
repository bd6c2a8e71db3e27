/**
 * @module `kube-audit-rest forward`'s core: reads the audit log from a checkpoint, converts, delivers, then moves the checkpoint.
 *
 * The file is the buffer. One batch is in flight at a time: it is read, sent, retried with backoff
 * for as long as it takes, and only once the destination acknowledged it is the checkpoint written
 * (atomically) past it. So an outage of the destination stops the reading, not the webhook, and
 * loses nothing the disk still holds; a crash between delivery and checkpoint sends that batch
 * again (at least once; every event carries its auditID for deduplication). See docs/forwarding.md.
 */

import type { Registry } from 'prom-client';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import { readCheckpoint, writeCheckpoint } from './checkpoint.ts';
import type { EventMetaReader } from './event-meta.ts';
import { parseEventMeta } from './event-meta.ts';
import type { ForwardMetrics } from './metrics.ts';
import { createForwardMetrics } from './metrics.ts';
import type { ForwardEvent, ForwardSink } from './sink.ts';
import { backoffDelay, DeliveryError } from './sink.ts';
import type { StartAt, Tail, TailPosition } from './tail.ts';
import { createTail } from './tail.ts';

/** Default time between looks at the log when caught up: a quarter second of added latency at most. */
export const DEFAULT_POLL_INTERVAL_MS = 250;

/** Default time `stop()` lets a send in flight finish before aborting it (its batch is then sent again next start). */
export const DEFAULT_STOP_GRACE_MS = 5000;

/** Least time between two warnings about lines that are not audit events, so a garbage file cannot flood the log. */
const DROP_WARNING_INTERVAL_MS = 10_000;

/**
 * Turns one audit-log line into the event to send (or several, in order: a long-running CONNECT is
 * two stages), none (an empty list: a record the policy leaves out, skipped without a count), or
 * undefined (or a throw, whose message is logged) if the line is not an audit record.
 */
export type LineConverter = (line: Uint8Array) => Uint8Array | readonly Uint8Array[] | undefined;

/** Options for {@link createForwarder}; the CLI maps `kube-audit-rest forward` flags onto these 1:1. */
export type ForwardOptions = {
  /** The audit log the webhook writes (`--logger-filename`). Required. */
  path: string;
  /** Where the checkpoint is kept (`--checkpoint-file`); its directory must exist. Required. */
  checkpointPath: string;
  /** Where events go: {@link createKafkaSink} or {@link createAuditWebhookSink}. Required. */
  sink: ForwardSink;
  /** The registry the forwarding metrics are registered on. Required. */
  registry: Registry;
  /**
   * Line → event. Default: the line as it is (audit-event lines). The admissionreview → Event
   * converter plugs in here; returning undefined drops the line (counted as `dropped`).
   */
  convert?: LineConverter;
  /** Reads auditID, cluster, object and time from a converted event. Default {@link parseEventMeta}. */
  eventMeta?: EventMetaReader;
  /** Without a checkpoint: read every file on disk (`'oldest'`) or only new lines (`'end'`). Default `'oldest'`. */
  startAt?: StartAt;
  /** How often the log is looked at when caught up, ms. Default 250. */
  pollIntervalMs?: number;
  /** How long `stop()` waits for a send in flight, ms. Default 5000. */
  stopGraceMs?: number;
  /** Bytes read from the log at a time. Default 1 MiB. */
  readChunkBytes?: number;
  /** Longest line taken; longer ones are dropped and counted. Default 64 MiB. */
  maxLineBytes?: number;
  /** Wall clock, ms. Default `Date.now`. */
  now?: () => number;
  /** Random numbers in [0, 1) for backoff jitter. Default `Math.random`. */
  random?: () => number;
  /** Where progress and problems are logged (never event contents). Default: silent. */
  log?: Logger;
};

/** A running (or runnable) forwarder. */
export type Forwarder = {
  /**
   * Reads the checkpoint and starts forwarding in the background. Throws if the checkpoint exists
   * but cannot be read (a person should look at it: deleting it forwards everything again).
   */
  start(): void;
  /** Stops reading, lets a send in flight finish (up to `stopGraceMs`), writes the checkpoint if it did, closes the file. */
  stop(): Promise<void>;
  /**
   * Forwards what the log holds now, sending a batch as soon as nothing more is there to read
   * rather than waiting for it to fill, then stops as {@link Forwarder.stop} does. Resolves true
   * when everything was delivered, false when `timeoutMs` passed first (or the forwarder was not
   * running). For a pod whose log volume goes with it: the webhook has stopped writing by then.
   */
  drain(timeoutMs: number): Promise<boolean>;
  /** Settles when the loop ends: after `stop()`, or rejects if the loop failed unexpectedly. */
  readonly done: Promise<void>;
  /** The counters, also on the registry. */
  readonly metrics: ForwardMetrics;
};

/** An event read but not delivered yet, with what the lag metrics need. */
type Pending = { event: ForwardEvent; lineBytes: number; since: number };

function validate(options: ForwardOptions): { pollIntervalMs: number; stopGraceMs: number } {
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  if (typeof options.path !== 'string' || options.path === '') {
    throw new TypeError('forward: path (--logger-filename) must be a non-empty string');
  }
  if (typeof options.checkpointPath !== 'string' || options.checkpointPath === '') {
    throw new TypeError('forward: checkpointPath (--checkpoint-file) must be a non-empty string');
  }
  if (options.checkpointPath === options.path) {
    throw new RangeError('forward: checkpointPath (--checkpoint-file) must not be the audit log itself');
  }
  if (!options.sink || typeof options.sink.send !== 'function') {
    throw new TypeError('forward: sink must be a ForwardSink');
  }
  if (!options.registry) throw new TypeError('forward: registry is required');
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new RangeError(`forward: pollIntervalMs must be a positive number, got ${pollIntervalMs}`);
  }
  if (!Number.isFinite(stopGraceMs) || stopGraceMs < 0) {
    throw new RangeError(`forward: stopGraceMs must be a non-negative number, got ${stopGraceMs}`);
  }
  return { pollIntervalMs, stopGraceMs };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function samePosition(a: TailPosition | undefined, b: TailPosition | undefined): boolean {
  return (
    a === b ||
    (a !== undefined &&
      b !== undefined &&
      a.offset === b.offset &&
      a.file.ino === b.file.ino &&
      a.file.dev === b.file.dev &&
      a.file.fingerprint === b.file.fingerprint)
  );
}

/**
 * Creates a forwarder from the audit log at `options.path` to `options.sink`. Validates the
 * options (throwing, with the option's name, on a bad one) and registers the metrics; nothing is
 * read until {@link Forwarder.start}.
 */
export function createForwarder(options: ForwardOptions): Forwarder {
  const { pollIntervalMs, stopGraceMs } = validate(options);
  const { sink, checkpointPath } = options;
  const convert = options.convert ?? ((line: Uint8Array) => line);
  const eventMeta = options.eventMeta ?? parseEventMeta;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const log = (options.log ?? silentLogger).child('forward');

  let tail: Tail | undefined;
  let pending: Pending[] = [];
  let committed: TailPosition | undefined;
  let lastCommitAt = now();
  /** When the forwarder last found nothing left to read; lines written after that wait from then at most. */
  let caughtUpAt = now();
  let lastDropWarning = Number.NEGATIVE_INFINITY;
  let stopping = false;
  /** Set by drain(): send what is there without waiting, and end once nothing is left. */
  let draining = false;
  let caughtUp = false;
  /** Aborts sleeps at once when stopping. */
  const wake = new AbortController();
  /** Aborts the wait for a batch to fill when a drain begins. */
  const hurry = new AbortController();
  const napSignal = AbortSignal.any([wake.signal, hurry.signal]);
  /** Aborts a send in flight, `stopGraceMs` after stopping. */
  const abortSend = new AbortController();
  let settle: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  const done = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  done.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection here

  const metrics = createForwardMetrics(options.registry, {
    lagBytes: () => (tail ? tail.backlogBytes() : 0) + pending.reduce((sum, p) => sum + p.lineBytes, 0),
    lagSeconds: () => {
      const first = pending[0];
      return first ? Math.max(0, (now() - first.since) / 1000) : 0;
    },
    checkpointAgeSeconds: () => {
      const waiting = pending.length > 0 || (tail ? tail.backlogBytes() : 0) > 0;
      return waiting ? Math.max(0, (now() - Math.max(lastCommitAt, caughtUpAt)) / 1000) : 0;
    },
  });

  function commit(position: TailPosition | undefined): void {
    if (!position || samePosition(position, committed)) return;
    try {
      writeCheckpoint(checkpointPath, { ...position, updatedAt: now() });
      committed = position;
      lastCommitAt = now();
    } catch (error) {
      // Delivery goes on; a restart would send again from the last checkpoint written. The age metric shows it.
      log.error('cannot write the forwarding checkpoint', { error });
    }
  }

  function warnDropped(line: Uint8Array, reason: string, error?: unknown): void {
    metrics.count('dropped', 1);
    if (now() - lastDropWarning < DROP_WARNING_INTERVAL_MS) return;
    lastDropWarning = now();
    log.warn('audit log line is not an audit event; skipped', {
      reason,
      bytes: line.length,
      droppedSoFar: metrics.value('dropped'),
      error,
    });
  }

  /** Reads until a batch is full, its wait is over, or (with nothing read) the position moved. */
  async function collect(): Promise<{
    events: Pending[];
    position: TailPosition | undefined;
    drained: boolean;
  }> {
    const t = tail as Tail;
    const { maxEvents, maxBytes, maxWaitMs } = sink.batch;
    const events: Pending[] = [];
    let bytes = 0;
    let deadline = Number.POSITIVE_INFINITY;
    let position = committed;
    pending = events;
    while (!stopping) {
      const read = await t.read(maxEvents - events.length, Math.max(1, maxBytes - bytes));
      if (read.position) position = read.position;
      for (const line of read.lines) {
        let converted: Uint8Array | readonly Uint8Array[] | undefined;
        try {
          converted = convert(line);
        } catch (error) {
          warnDropped(line, 'conversion failed', error);
          continue;
        }
        if (converted === undefined) {
          warnDropped(line, 'not an audit record');
          continue;
        }
        const list = converted instanceof Uint8Array ? [converted] : converted;
        list.forEach((one, i) => {
          const meta = eventMeta(one) ?? {};
          events.push({
            event: { bytes: one, meta },
            // The line's bytes wait with its first event; the others add none to the lag.
            lineBytes: i === 0 ? line.length + 1 : 0,
            since: meta.receivedAtMs ?? now(),
          });
          bytes += one.length;
        });
        if (events.length === list.length) deadline = now() + maxWaitMs;
      }
      if (events.length >= maxEvents || bytes >= maxBytes) break;
      if (read.lines.length > 0) continue; // more may be ready now
      if (events.length === 0) {
        if (!samePosition(position, committed)) break; // skipped lines or a new file: move the checkpoint
        caughtUpAt = now();
        if (draining) return { events, position, drained: true };
        await sleep(pollIntervalMs, napSignal);
        continue;
      }
      if (draining) break; // nothing more to read now: send what there is
      const left = deadline - now();
      if (left <= 0) break;
      await sleep(Math.min(pollIntervalMs, left), napSignal);
    }
    return { events, position, drained: false };
  }

  /** Sends until acknowledged or refused for good (true), or until stopped (false). Splits refused batches. */
  async function deliver(events: Pending[]): Promise<boolean> {
    let attempt = 0;
    for (;;) {
      if (stopping && attempt > 0) return false;
      try {
        await sink.send(
          events.map((p) => p.event),
          abortSend.signal,
        );
        metrics.count('delivered', events.length);
        return true;
      } catch (error) {
        if (stopping) return false;
        if (error instanceof DeliveryError && error.permanent) {
          if (events.length === 1) {
            metrics.count('failed', 1);
            log.error('audit event refused for good by the destination; skipped', {
              sink: sink.name,
              auditID: events[0]?.event.meta.auditID,
              error,
            });
            return true;
          }
          // Find the refused events by halves, keeping the order: the rest still goes through.
          const mid = events.length >> 1;
          return (await deliver(events.slice(0, mid))) && (await deliver(events.slice(mid)));
        }
        attempt++;
        const delay = backoffDelay(sink.retry, attempt, random);
        metrics.count('retried', events.length);
        log.warn('delivery failed; retrying', {
          sink: sink.name,
          events: events.length,
          attempt,
          retryInMs: delay,
          error,
        });
        await sleep(delay, wake.signal);
      }
    }
  }

  async function run(): Promise<void> {
    while (!stopping) {
      const { events, position, drained } = await collect();
      if (drained) {
        caughtUp = true;
        break;
      }
      if (events.length > 0 && !(await deliver(events))) break;
      commit(position);
      pending = [];
    }
  }

  function start(): void {
    if (tail) throw new Error('forward: already started');
    const resumeFrom = readCheckpoint(checkpointPath);
    tail = createTail({
      path: options.path,
      resumeFrom,
      startAt: options.startAt,
      readChunkBytes: options.readChunkBytes,
      maxLineBytes: options.maxLineBytes,
      now,
      log: options.log,
      onDropped: (bytes) => metrics.dropped(bytes),
    });
    if (resumeFrom) {
      committed = { ...resumeFrom };
      lastCommitAt = resumeFrom.updatedAt;
    }
    log.info('forwarding the audit log', {
      path: options.path,
      sink: sink.name,
      resumeFrom: resumeFrom ? { path: resumeFrom.path, offset: resumeFrom.offset } : undefined,
    });
    run().then(
      () => settle?.resolve(),
      (error) => {
        log.error('forwarding stopped on an unexpected error', { error });
        settle?.reject(error);
      },
    );
  }

  async function stop(): Promise<void> {
    if (!stopping) {
      stopping = true;
      wake.abort();
      const timer = setTimeout(() => abortSend.abort(), stopGraceMs);
      try {
        if (tail) await done.catch(() => {});
      } finally {
        clearTimeout(timer);
      }
      tail?.close();
    }
    if (!tail) settle?.resolve();
    await done;
  }

  async function drain(timeoutMs: number): Promise<boolean> {
    if (!tail || stopping) {
      await stop();
      return false;
    }
    draining = true;
    hurry.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([done.catch(() => {}), timedOut]);
    } finally {
      clearTimeout(timer);
    }
    await stop();
    return caughtUp;
  }

  return { start, stop, drain, done, metrics };
}
