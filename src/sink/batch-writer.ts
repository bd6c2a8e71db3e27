/**
 * @module The batching core both sinks share: queue lines, write each batch as one buffer, settle every waiter.
 *
 * `write` only queues. One flush per event-loop turn (setImmediate, so every request parsed in that
 * turn joins) copies the queued lines back to back into a reused buffer and hands the batch to a
 * {@link BatchTarget}, which writes it synchronously; the writes happen on the main thread, so one
 * write is in flight at a time and lines cannot interleave. The target reports how many leading
 * lines reached the descriptor; those callers resolve, the rest reject with their own
 * {@link SinkWriteError}. Group commit (one fdatasync per batch) is a target concern and needs no
 * change here.
 */

import { writeSync, writevSync } from 'node:fs';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { Line, LineSink, SinkObserver } from './sink.ts';
import { SinkWriteError } from './sink.ts';

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

/** First pause after EAGAIN; a pipe reader usually drains within a millisecond. */
const FIRST_EAGAIN_PAUSE_MS = 1;

/** Longest single pause between EAGAIN retries, so a reader that comes back is noticed quickly. */
const MAX_EAGAIN_PAUSE_MS = 50;

/**
 * Least size of a line in pieces that is written on its own, straight from its pieces (one writev),
 * instead of being copied into the batch buffer. For a large body that copy is one more pass over
 * it, which under load costs about 1 ms per MiB here; small lines are cheaper copied and batched.
 */
const LARGE_LINE_BYTES = 64 * 1024;

/** One flush's worth of queued lines, back to back. Valid only during {@link BatchTarget.writeBatch}. */
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
};

/** A target's report that only the first `written` lines of a batch reached the descriptor. */
export type BatchFailure = {
  /** How many leading lines were written; no byte of any later line remains. */
  written: number;
  /** Why the rest were not (the errno error from node:fs, usually). */
  error: Error;
};

/** Where a batch goes: a file with rotation, or a bare descriptor. */
export type BatchTarget = {
  /**
   * Writes the batch synchronously. Returns undefined when every line reached the descriptor,
   * otherwise how far it got; must not throw (a throw is treated as "nothing written").
   */
  writeBatch(batch: Batch): BatchFailure | undefined;
  /** Releases the descriptor, if the target owns one; may throw, which rejects `close()`. */
  close(): void;
};

/** Options for {@link createBatchWriter}. */
export type BatchWriterOptions = {
  /** What writes the batches. Required. */
  target: BatchTarget;
  /** Counters for written and failed lines. Default: none. */
  observer?: SinkObserver;
  /** Where failures and recoveries are logged (never line contents). Default: silent. */
  log?: Logger;
  /** Largest batch copied into one buffer, in bytes; a single larger line is written on its own. Default 4 MiB. */
  maxBatchBytes?: number;
};

/** Reads the errno code (`ENOSPC`, `EAGAIN`, ...) of an error from node:fs, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

function sleepSync(ms: number): void {
  // A synchronous pause that does not spin the CPU (as sonic-boom's atomic-sleep does).
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Writes `bytes[start, end)` to `fd` with as few `writeSync` calls as the kernel allows, looping on
 * partial writes. On EAGAIN (a non-blocking pipe that is full) it pauses with a short backoff and
 * retries, for at most `eagainTimeoutMs` in a row without progress; then, or on any other error, it
 * throws the errno error. Bytes already written before a throw stay written: callers undo them.
 */
export function writeFully(
  fd: number,
  bytes: Uint8Array,
  start: number,
  end: number,
  eagainTimeoutMs: number,
): void {
  let offset = start;
  let waited = 0;
  let pause = FIRST_EAGAIN_PAUSE_MS;
  while (offset < end) {
    let n = 0;
    try {
      n = writeSync(fd, bytes, offset, end - offset);
    } catch (error) {
      if (errnoCode(error) !== 'EAGAIN' || waited >= eagainTimeoutMs) throw error;
    }
    if (n > 0) {
      offset += n;
      waited = 0;
      pause = FIRST_EAGAIN_PAUSE_MS;
      continue;
    }
    // EAGAIN, or a write that took nothing: wait for the reader, within the bound.
    if (waited >= eagainTimeoutMs) {
      throw Object.assign(new Error(`write made no progress for ${eagainTimeoutMs} ms`), { code: 'EAGAIN' });
    }
    const step = Math.min(pause, eagainTimeoutMs - waited);
    sleepSync(step);
    waited += step;
    pause = Math.min(pause * 2, MAX_EAGAIN_PAUSE_MS);
  }
}

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
 * Writes `pieces` in order to `fd`: one writev, then {@link writeFully} for whatever the kernel did
 * not take. Errors as writeFully's; bytes written before a throw stay written.
 */
function writePiecesFully(fd: number, pieces: readonly Uint8Array[], eagainTimeoutMs: number): void {
  let skip = 0;
  try {
    skip = writevSync(fd, pieces as Uint8Array[]);
  } catch (error) {
    if (errnoCode(error) !== 'EAGAIN') throw error;
  }
  for (const piece of pieces) {
    if (skip >= piece.length) {
      skip -= piece.length;
      continue;
    }
    writeFully(fd, piece, skip, piece.length, eagainTimeoutMs);
    skip = 0;
  }
}

/**
 * Writes the batch's bytes from offset `start` to `end` to `fd` with {@link writeFully}, or, for a
 * batch of one line in pieces, all its pieces with {@link writePiecesFully} (its only range).
 * Errors as theirs; bytes written before a throw stay written.
 */
export function writeBatchRange(
  fd: number,
  batch: Batch,
  start: number,
  end: number,
  eagainTimeoutMs: number,
): void {
  if (batch.pieces) writePiecesFully(fd, batch.pieces, eagainTimeoutMs);
  else writeFully(fd, batch.bytes, start, end, eagainTimeoutMs);
}

/**
 * Creates a {@link LineSink} that batches lines for `options.target`. `write` never throws: a bad
 * line (empty, or not ending in `\n`) or a closed sink gives a rejected promise.
 */
export function createBatchWriter(options: BatchWriterOptions): LineSink {
  const { target } = options;
  const observer: SinkObserver = options.observer ?? {};
  const log = options.log ?? silentLogger;
  const maxBatchBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  if (!Number.isSafeInteger(maxBatchBytes) || maxBatchBytes < 1) {
    throw new RangeError(`maxBatchBytes must be a positive integer, got ${maxBatchBytes}`);
  }

  // The queue: parallel arrays (no object per line), consumed from `head` and reset once drained.
  const lines: Line[] = [];
  const sizes: number[] = [];
  const resolves: Array<() => void> = [];
  const rejects: Array<(error: Error) => void> = [];
  let head = 0;

  let buffer = new Uint8Array(Math.min(INITIAL_BUFFER_BYTES, maxBatchBytes));
  const ends: number[] = [];
  const batch: {
    bytes: Uint8Array;
    pieces: readonly Uint8Array[] | undefined;
    ends: number[];
    count: number;
  } = {
    bytes: buffer,
    pieces: undefined,
    ends,
    count: 0,
  };
  const largeLineBytes = Math.min(LARGE_LINE_BYTES, maxBatchBytes);

  let scheduled = false;
  let draining = false;
  let closed = false;
  let closing: Promise<void> | undefined;
  let healthy = true;
  let failedSinceHealthy = 0;

  function notify(call: () => void): void {
    try {
      call();
    } catch (error) {
      log.error('sink observer threw', { error });
    }
  }

  /** Fills `batch` from the queue head: as many lines as fit in maxBatchBytes, at least one. */
  function takeBatch(): void {
    const first = lines[head] as Line;
    let total = sizes[head] as number;
    batch.pieces = undefined;
    if (!(first instanceof Uint8Array) && total >= largeLineBytes) {
      // A large line in pieces goes alone, written from its pieces: no copy of the body.
      batch.count = 1;
      batch.pieces = first;
      ends[0] = total;
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
  function settle(failure: BatchFailure | undefined): void {
    const count = batch.count;
    const written = failure ? Math.max(0, Math.min(failure.written, count)) : count;
    for (let i = 0; i < written; i++) (resolves[head + i] as () => void)();
    if (written > 0) {
      const bytes = ends[written - 1] as number;
      if (observer.written) notify(() => observer.written?.(written, bytes));
    }
    if (failure && written < count) {
      const cause = failure.error;
      const error = new SinkWriteError(`audit line not written: ${cause.message}`, { cause });
      for (let i = written; i < count; i++) (rejects[head + i] as (error: Error) => void)(error);
      if (observer.failed) notify(() => observer.failed?.(count - written, cause));
      if (healthy) {
        log.error('audit write failed; lines are rejected until a write succeeds', {
          code: errnoCode(cause),
          error: cause,
          lines: count - written,
        });
      }
      healthy = false;
      failedSinceHealthy += count - written;
    } else if (!healthy) {
      healthy = true;
      log.info('audit writes succeed again', { failedLines: failedSinceHealthy });
      failedSinceHealthy = 0;
    }
    head += count;
  }

  /** Writes every queued line, batch after batch, synchronously. */
  function drain(): void {
    if (draining) return; // re-entered from an observer callback: the running drain picks the lines up
    draining = true;
    try {
      while (head < lines.length) {
        takeBatch();
        let failure: BatchFailure | undefined;
        try {
          failure = target.writeBatch(batch);
        } catch (error) {
          failure = { written: 0, error: error instanceof Error ? error : new Error(String(error)) };
        }
        settle(failure);
      }
    } catch (error) {
      // Only a bug gets here (targets and observers are guarded); still, no waiter is left hanging.
      const rejection = new SinkWriteError('audit sink failed', { cause: error });
      for (let i = head; i < rejects.length; i++) (rejects[i] as (error: Error) => void)(rejection);
    } finally {
      lines.length = 0;
      sizes.length = 0;
      resolves.length = 0;
      rejects.length = 0;
      head = 0;
      draining = false;
    }
  }

  function flushScheduled(): void {
    scheduled = false;
    drain();
  }

  function write(line: Line): Promise<void> {
    if (closed) return Promise.reject(new SinkWriteError('sink closed'));
    const size = lineSize(line);
    if (size < 0) return Promise.reject(new SinkWriteError('an audit line must end in \\n'));
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    lines.push(line);
    sizes.push(size);
    resolves.push(resolve);
    rejects.push(reject);
    if (!scheduled && !draining) {
      scheduled = true;
      setImmediate(flushScheduled);
    }
    return promise;
  }

  function ready(): boolean {
    return !closed && healthy;
  }

  function flushSync(): void {
    drain();
  }

  function close(): Promise<void> {
    if (closing) return closing;
    closed = true;
    drain();
    try {
      target.close();
      closing = Promise.resolve();
    } catch (error) {
      closing = Promise.reject(error);
    }
    return closing;
  }

  return { write, ready, flushSync, close };
}
