/**
 * @module The batching core both sinks share: queue lines, write each batch as one buffer, settle every waiter, recover readiness without traffic.
 *
 * `write` only queues. One flush per event-loop turn (setImmediate, so every request parsed in that
 * turn joins) copies the queued lines back to back into a reused buffer and hands the batch to a
 * {@link BatchTarget}. A target writes synchronously (the file) or returns a promise (stdout, which
 * waits for a slow reader without blocking the event loop); either way one batch is in flight at a
 * time, so lines cannot interleave, and lines queued meanwhile form the next batch. The target
 * reports how many leading lines were written; those callers resolve, the rest reject with
 * {@link SinkWriteError}, and the observer hears of both.
 *
 * Readiness: a failed write makes the sink unready. It becomes ready again when a later write
 * succeeds, or when the target's probe, run every `probeIntervalMs` while unready, finds that a
 * write could succeed. The probe matters because an unready pod is taken out of its Service and
 * then gets no traffic: without the probe it would stay unready after the fault is gone.
 */

import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { Line, LineSink, SinkObserver } from './sink.ts';
import { SinkWriteError } from './sink.ts';
import { asError, errnoCode, writeFully, writePiecesFully } from './write-range.ts';

/** `\n`: every line must end with it, or the next line would glue onto it. */
const NEWLINE = 0x0a;

/**
 * Default upper bound of one copied batch. Larger batches are split into several writes of about
 * this size: it bounds the reused buffer's memory while still making any realistic turn's worth of
 * lines a single syscall (at 2 KB lines, 2,000 requests in one event-loop turn).
 */
const DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024;

/** First size of the reused batch buffer; it doubles as batches need, up to the maximum batch size. */
const INITIAL_BUFFER_BYTES = 64 * 1024;

/**
 * Least size of a line in pieces that is written on its own, straight from its pieces (one writev),
 * instead of being copied into the batch buffer. For a large body that copy is one more pass over
 * it, which under load costs about 1 ms per MiB here; small lines are cheaper copied and batched.
 */
const LARGE_LINE_BYTES = 64 * 1024;

/**
 * Default time between two readiness probes while the sink is unready. Once a second is as often
 * as a kubelet readiness probe looks (its `periodSeconds` is 1 at the least), and a probe costs
 * about 30 µs (measured: testing/README.md), so recovery is noticed within a probe period at no cost.
 */
export const DEFAULT_PROBE_INTERVAL_MS = 1000;

/**
 * Default least time between two "cannot write" log entries. A full disk fails every write; one
 * entry per 10 s, each with the count since the previous one, says so without flooding stderr.
 */
export const DEFAULT_FAILURE_LOG_INTERVAL_MS = 10_000;

/** One flush's worth of queued lines, back to back. Valid only until the target settles it. */
export type Batch = {
  /** The lines' bytes, line after line; may be longer than the batch (read only up to the last end). */
  readonly bytes: Uint8Array;
  /**
   * When set, the batch is one large line given in pieces (see LARGE_LINE_BYTES), to be written as
   * these pieces in order; `bytes` is then not used.
   */
  readonly pieces: readonly Uint8Array[] | undefined;
  /** `ends[i]` is the offset just past line `i`'s `\n`; only the first `count` entries belong to this batch. */
  readonly ends: readonly number[];
  /** How many lines the batch holds; at least one. */
  readonly count: number;
  /**
   * When the target must have settled the batch, on the writer's clock: the oldest line in it was
   * queued `writeTimeoutMs` before. `Infinity` when the writer has no timeout.
   */
  readonly deadline: number;
};

/** A target's report that only the first `written` lines of a batch were written. */
export type BatchFailure = {
  /** How many leading lines were written; the target answers for what became of the rest. */
  written: number;
  /** Why the rest were not (the errno error from node:fs, usually). */
  error: Error;
};

/** What a target reports for a batch: undefined when every line was written. */
export type BatchResult = BatchFailure | undefined;

/** Where a batch goes: a file with rotation, or a bare descriptor. */
export type BatchTarget = {
  /**
   * Writes the batch, synchronously or by returning a promise (which must settle by about
   * `batch.deadline`). Must not throw or reject; a throw counts as "nothing written".
   */
  writeBatch(batch: Batch): BatchResult | Promise<BatchResult>;
  /**
   * Checks, without writing anything into the audit log, whether a write of `failedBytes` bytes
   * could succeed now, repairing what it can (reopening a deleted file, finishing a stalled line);
   * undefined if it could. Called only while unready and with no batch in flight. A target without
   * a probe becomes ready only through a successful write.
   */
  probe?(failedBytes: number): Error | undefined;
  /** Releases the descriptor, if the target owns one; may throw or reject, which rejects `close()`. */
  close(): void | Promise<void>;
};

/** Options for {@link createBatchWriter}. */
export type BatchWriterOptions = {
  /** What writes the batches. Required. */
  target: BatchTarget;
  /** Events for written and failed lines and readiness changes. Default: none. */
  observer?: SinkObserver;
  /** Where failures and recoveries are logged (never line contents). Default: silent. */
  log?: Logger;
  /** Largest batch copied into one buffer, in bytes; a single larger line is written on its own. Default 4 MiB. */
  maxBatchBytes?: number;
  /**
   * Longest time a line may wait from `write` until its batch settles, in ms; it sets each batch's
   * `deadline`, which the target enforces. Default `Infinity` (synchronous targets need none).
   */
  writeTimeoutMs?: number;
  /**
   * Most bytes that may wait in the queue (the batch in flight included); a `write` that would
   * exceed it is rejected at once, unless the queue is empty. Default `Infinity`.
   */
  maxQueuedBytes?: number;
  /** Time between two readiness probes while unready, in ms. Default 1000 ({@link DEFAULT_PROBE_INTERVAL_MS}). */
  probeIntervalMs?: number;
  /** Least time between two "cannot write" log entries, in ms. Default 10,000 ({@link DEFAULT_FAILURE_LOG_INTERVAL_MS}). */
  failureLogIntervalMs?: number;
  /** Monotonic clock in ms for deadlines and log rate limits. Default `performance.now`. */
  clock?: () => number;
};

/** The byte length of a line, or -1 if it is empty or does not end in `\n`. */
function lineSize(line: Line): number {
  let last: Uint8Array | undefined;
  let size = 0;
  if (line instanceof Uint8Array) {
    last = line;
    size = line.length;
  } else {
    for (const piece of line) {
      size += piece.length;
      if (piece.length > 0) last = piece;
    }
  }
  return last !== undefined && last[last.length - 1] === NEWLINE ? size : -1;
}

/** Copies a line's pieces back to back into `into` from `offset`; returns the offset past them. */
function copyPieces(pieces: readonly Uint8Array[], into: Uint8Array, offset: number): number {
  let at = offset;
  for (const piece of pieces) {
    into.set(piece, at);
    at += piece.length;
  }
  return at;
}

/**
 * Writes the batch's bytes from offset `start` to `end` to `fd` with {@link writeFully}, or, for a
 * batch of one line in pieces, all its pieces with {@link writePiecesFully} (its only range).
 * Errors as theirs; bytes written before a throw stay written.
 */
export function writeBatchRange(fd: number, batch: Batch, start: number, end: number): void {
  if (batch.pieces) writePiecesFully(fd, batch.pieces);
  else writeFully(fd, batch.bytes, start, end);
}

function checkPositive(name: string, value: number, allowZero: boolean, allowInfinity: boolean): void {
  const ok =
    (allowInfinity && value === Number.POSITIVE_INFINITY) ||
    (Number.isFinite(value) && (allowZero ? value >= 0 : value > 0));
  if (!ok)
    throw new RangeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${value}`);
}

/**
 * Creates a {@link LineSink} that batches lines for `options.target`. `write` never throws: a bad
 * line (empty, or not ending in `\n`), a full queue or a closed sink gives a rejected promise.
 */
export function createBatchWriter(options: BatchWriterOptions): LineSink {
  const { target } = options;
  const observer: SinkObserver = options.observer ?? {};
  const log = options.log ?? silentLogger;
  const maxBatchBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  const writeTimeoutMs = options.writeTimeoutMs ?? Number.POSITIVE_INFINITY;
  const maxQueuedBytes = options.maxQueuedBytes ?? Number.POSITIVE_INFINITY;
  const probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  const failureLogIntervalMs = options.failureLogIntervalMs ?? DEFAULT_FAILURE_LOG_INTERVAL_MS;
  const clock = options.clock ?? (() => performance.now());
  if (!Number.isSafeInteger(maxBatchBytes) || maxBatchBytes < 1) {
    throw new RangeError(`maxBatchBytes must be a positive integer, got ${maxBatchBytes}`);
  }
  checkPositive('writeTimeoutMs', writeTimeoutMs, true, true);
  checkPositive('maxQueuedBytes', maxQueuedBytes, false, true);
  checkPositive('probeIntervalMs', probeIntervalMs, false, false);
  checkPositive('failureLogIntervalMs', failureLogIntervalMs, true, false);
  const timed = writeTimeoutMs !== Number.POSITIVE_INFINITY;

  // The queue: parallel arrays (no object per line), consumed from `head` and reset once drained.
  const lines: Line[] = [];
  const sizes: number[] = [];
  const resolves: Array<() => void> = [];
  const rejects: Array<(error: Error) => void> = [];
  let head = 0;
  /** Bytes of every line not yet settled (the batch in flight included). */
  let queuedBytes = 0;
  /** When the oldest line not yet taken into a batch was queued; only kept with a finite timeout. */
  let waitingSince: number | undefined;

  let buffer = new Uint8Array(Math.min(INITIAL_BUFFER_BYTES, maxBatchBytes));
  const ends: number[] = [];
  const batch: {
    bytes: Uint8Array;
    pieces: readonly Uint8Array[] | undefined;
    ends: number[];
    count: number;
    deadline: number;
  } = { bytes: buffer, pieces: undefined, ends, count: 0, deadline: Number.POSITIVE_INFINITY };
  const largeLineBytes = Math.min(LARGE_LINE_BYTES, maxBatchBytes);

  let scheduled = false;
  let draining = false;
  /** Settles when the batch a target is writing asynchronously has been settled. */
  let inFlight: Promise<void> | undefined;
  let closed = false;
  let closing: Promise<void> | undefined;

  let healthy = true;
  let probeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bytes of the lines the last failed batch could not write: what a probe must find room for. */
  let failedBytes = 0;
  /** Lines rejected since the sink became unready. */
  let outageLines = 0;
  /** Whether this outage's first failure was logged; its recovery is logged only then. */
  let outageLogged = false;
  let lastFailureLogAt = Number.NEGATIVE_INFINITY;
  let unloggedLines = 0;
  let unloggedFailures = 0;

  function notify(call: () => void): void {
    try {
      call();
    } catch (error) {
      log.error('sink observer threw', { error });
    }
  }

  function ready(): boolean {
    return !closed && healthy;
  }

  function setHealthy(value: boolean, cause?: Error): void {
    const before = ready();
    healthy = value;
    const after = ready();
    if (before !== after && observer.readyChanged) notify(() => observer.readyChanged?.(after, cause));
  }

  /**
   * Logs a failure to write (`lines` > 0) or a failed probe (`lines` 0), at most once per
   * `failureLogIntervalMs`; each entry carries the counts since the previous entry and its cause.
   */
  function logFailure(cause: Error, lines: number): void {
    const now = clock();
    if (now - lastFailureLogAt < failureLogIntervalMs) {
      unloggedLines += lines;
      if (lines > 0) unloggedFailures++;
      return;
    }
    log.error('audit sink cannot write', {
      code: errnoCode(cause),
      error: cause,
      rejectedLines: unloggedLines + lines,
      failedWrites: unloggedFailures + (lines > 0 ? 1 : 0),
      intervalMs: failureLogIntervalMs,
    });
    lastFailureLogAt = now;
    unloggedLines = 0;
    unloggedFailures = 0;
    if (!healthy) outageLogged = true;
  }

  function scheduleProbe(): void {
    if (probeTimer !== undefined || closed || !target.probe) return;
    probeTimer = setTimeout(runProbe, probeIntervalMs);
    probeTimer.unref?.();
  }

  function cancelProbe(): void {
    if (probeTimer !== undefined) clearTimeout(probeTimer);
    probeTimer = undefined;
  }

  function runProbe(): void {
    probeTimer = undefined;
    if (healthy || closed || !target.probe) return;
    if (inFlight || draining) {
      scheduleProbe(); // the batch in flight decides first
      return;
    }
    let error: Error | undefined;
    try {
      error = target.probe(failedBytes);
    } catch (thrown) {
      error = asError(thrown);
    }
    if (error) {
      logFailure(error, 0);
      scheduleProbe();
      return;
    }
    recover('probe');
  }

  function recover(via: 'write' | 'probe'): void {
    if (healthy) return;
    cancelProbe();
    if (outageLogged) {
      log.info('audit sink can write again', { via, rejectedLines: outageLines });
      unloggedLines = 0;
      unloggedFailures = 0;
    }
    outageLines = 0;
    outageLogged = false;
    setHealthy(true);
  }

  /** Counts and logs `lines` rejected lines; a failed write (`unready`) also makes the sink unready. */
  function reportFailure(cause: Error, lines: number, bytes: number, unready: boolean): void {
    if (observer.failed) notify(() => observer.failed?.(lines, cause));
    if (unready) {
      failedBytes = bytes;
      outageLines += lines;
      if (healthy) setHealthy(false, cause);
      scheduleProbe();
    }
    logFailure(cause, lines);
  }

  /** Rejects a `write` at once, counted and logged like a failed write but without touching readiness. */
  function rejectNow(message: string, cause: Error): Promise<void> {
    const error = new SinkWriteError(message, { cause });
    reportFailure(cause, 1, 0, false);
    return Promise.reject(error);
  }

  /** Fills `batch` from the queue head: as many lines as fit in maxBatchBytes, at least one. */
  function takeBatch(): void {
    const first = lines[head] as Line;
    let total = sizes[head] as number;
    batch.pieces = undefined;
    batch.deadline = waitingSince === undefined ? Number.POSITIVE_INFINITY : waitingSince + writeTimeoutMs;
    if (!(first instanceof Uint8Array) && total >= largeLineBytes) {
      // A large line in pieces goes alone, written from its pieces: no copy of the body.
      batch.count = 1;
      batch.pieces = first;
      ends[0] = total;
      if (head + 1 >= lines.length) waitingSince = undefined;
      return;
    }
    let count = 1;
    while (head + count < lines.length) {
      const next = sizes[head + count] as number;
      if (total + next > maxBatchBytes) break;
      if (!((lines[head + count] as Line) instanceof Uint8Array) && next >= largeLineBytes) break;
      total += next;
      count++;
    }
    batch.count = count;
    if (head + count >= lines.length) waitingSince = undefined;
    if (count === 1 && first instanceof Uint8Array) {
      // A single whole line is written from its own bytes: no copy, and an oversized line never
      // grows the buffer.
      batch.bytes = first;
      ends[0] = total;
      return;
    }
    if (buffer.length < total) {
      buffer = new Uint8Array(Math.min(Math.max(total, buffer.length * 2), maxBatchBytes));
    }
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const line = lines[head + i] as Line;
      if (line instanceof Uint8Array) {
        buffer.set(line, offset);
        offset += line.length;
      } else {
        offset = copyPieces(line, buffer, offset);
      }
      ends[i] = offset;
    }
    batch.bytes = buffer;
  }

  /** Settles the `batch.count` waiters at the queue head according to the target's report. */
  function settle(failure: BatchResult): void {
    const count = batch.count;
    const total = ends[count - 1] as number;
    const written = failure ? Math.max(0, Math.min(failure.written, count)) : count;
    const writtenBytes = written > 0 ? (ends[written - 1] as number) : 0;
    queuedBytes -= total;
    for (let i = 0; i < written; i++) (resolves[head + i] as () => void)();
    if (written > 0 && observer.written) notify(() => observer.written?.(written, writtenBytes));
    if (failure && written < count) {
      const cause = failure.error;
      const error = new SinkWriteError(`audit line not written: ${cause.message}`, { cause });
      for (let i = written; i < count; i++) (rejects[head + i] as (error: Error) => void)(error);
      head += count;
      reportFailure(cause, count - written, total - writtenBytes, true);
      return;
    }
    head += count;
    recover('write');
  }

  function resetQueue(): void {
    lines.length = 0;
    sizes.length = 0;
    resolves.length = 0;
    rejects.length = 0;
    head = 0;
  }

  /** Only a bug gets here (targets and observers are guarded); still, no waiter is left hanging. */
  function failEverything(thrown: unknown): void {
    const rejection = new SinkWriteError('audit sink failed', { cause: thrown });
    const left = rejects.length - head;
    for (let i = head; i < rejects.length; i++) (rejects[i] as (error: Error) => void)(rejection);
    if (left > 0 && observer.failed) notify(() => observer.failed?.(left, asError(thrown)));
    queuedBytes = 0;
    waitingSince = undefined;
    resetQueue();
  }

  function finishInFlight(result: BatchResult): void {
    inFlight = undefined;
    try {
      settle(result);
    } catch (error) {
      failEverything(error);
    }
    drain();
  }

  /** Writes queued lines batch after batch, until the queue is empty or a target answers with a promise. */
  function drain(): void {
    if (draining || inFlight) return; // re-entered, or a batch in flight: its settling drains again
    draining = true;
    try {
      while (head < lines.length) {
        takeBatch();
        let result: BatchResult | Promise<BatchResult>;
        try {
          result = target.writeBatch(batch);
        } catch (error) {
          result = { written: 0, error: asError(error) };
        }
        if (result instanceof Promise) {
          inFlight = result.then(finishInFlight, (error: unknown) =>
            finishInFlight({ written: 0, error: asError(error) }),
          );
          return;
        }
        settle(result);
      }
      resetQueue();
    } catch (error) {
      failEverything(error);
    } finally {
      draining = false;
    }
  }

  function flushScheduled(): void {
    scheduled = false;
    drain();
  }

  function write(line: Line): Promise<void> {
    if (closed) return rejectNow('sink closed', new Error('the audit sink is closed'));
    const size = lineSize(line);
    if (size < 0) return rejectNow('an audit line must end in \\n', new Error('malformed audit line'));
    if (queuedBytes > 0 && queuedBytes + size > maxQueuedBytes) {
      const cause = Object.assign(new Error(`${queuedBytes} bytes are already waiting to be written`), {
        code: 'ENOBUFS',
      });
      return rejectNow(`audit sink queue is full (at most ${maxQueuedBytes} bytes)`, cause);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    if (timed && waitingSince === undefined) waitingSince = clock();
    queuedBytes += size;
    lines.push(line);
    sizes.push(size);
    resolves.push(resolve);
    rejects.push(reject);
    if (!scheduled && !draining && !inFlight) {
      scheduled = true;
      setImmediate(flushScheduled);
    }
    return promise;
  }

  function flushSync(): void {
    drain();
  }

  async function closeOnce(): Promise<void> {
    drain();
    while (inFlight) await inFlight; // each settle drains again, which may start the next batch
    await target.close();
  }

  function close(): Promise<void> {
    if (closing) return closing;
    const wasReady = ready();
    closed = true;
    cancelProbe();
    if (wasReady && observer.readyChanged) notify(() => observer.readyChanged?.(false));
    closing = closeOnce();
    return closing;
  }

  return { write, ready, flushSync, close };
}
