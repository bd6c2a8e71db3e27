/**
 * @module The stdout sink (`--audit-to-std-log`): bare audit lines on standard output, batched like the file sink, never blocking the event loop on a slow reader.
 *
 * Nothing is wrapped around a line: the container runtime or a log shipper reads exactly the JSON
 * lines. Standard output is usually a pipe, and its reader may stall (a full node disk under the
 * runtime's log files, a paused shipper). The sink must then neither freeze the process (health
 * endpoints included) nor leave half a line for the next one to glue onto. How it writes depends
 * on what the descriptor is, decided once at start:
 *
 * - **direct**: a regular file, a descriptor already non-blocking, or one the sink could open again
 *   as its own non-blocking description through `/proc/self/fd/N` (pipes, FIFOs, terminals; the
 *   flag is then private, so the process's shared fd 1 stays as it was). Writes are `writeSync`; a
 *   full pipe answers EAGAIN at once, and the batch waits on timers (1 ms doubling to 50 ms), so
 *   the event loop runs meanwhile.
 * - **thread**: a blocking descriptor that cannot be reopened (a socket, as under systemd or a Bun
 *   parent). Writes go to Bun's thread pool (`fs.write`), one at a time in chunks of whole lines of
 *   at most 64 KiB; a stalled reader blocks a pool thread, never the event loop.
 *
 * Timeouts and lines that must stay whole, decided here: a line settles within `writeTimeoutMs` of
 * its `write` (default 1 s, under the API server's webhook timeout), else it rejects, and so does
 * every line behind it while the stall lasts (no queue builds up; at most `maxQueuedBytes` wait).
 * Once any byte of a line is in the pipe, the rest of that line goes before any other byte. In
 * direct mode the first line a stall stops is kept (copied) even when none of it went out, and the
 * sink keeps offering it, every probe interval, until the reader drains: that is the probe that
 * makes the sink ready again with no traffic, since a pipe's free room cannot be measured without
 * writing. In thread mode the chunk in the kernel cannot be taken back and finishes when the reader
 * returns. Either way the callers of those lines were told "not written", so a line may appear that
 * was counted as unrecorded (at most one line, or one chunk, per stall): the count errs towards
 * loss, never towards a record that is missing.
 */

import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  write as writeAsync,
  writeSync,
} from 'node:fs';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { Batch, BatchResult } from './batch-writer.ts';
import { createBatchWriter } from './batch-writer.ts';
import { codedError } from './open-log.ts';
import type { LineSink, SinkObserver } from './sink.ts';
import { asError, errnoCode } from './write-range.ts';

/** Standard output's descriptor. */
const STDOUT_FD = 1;

/**
 * Default time from `write` until a line must be out: long enough to ride out a reader's pause,
 * well under the API server's webhook timeout (5 s in our manifests, 10 s by default), so the
 * request is answered (unrecorded, counted) rather than timed out.
 */
const DEFAULT_WRITE_TIMEOUT_MS = 1000;

/**
 * Default bound of the bytes waiting for standard output. Lines normally wait one event-loop turn;
 * during a stall new lines fail fast, so this bounds memory only against a flood within one
 * timeout: 16 MiB is thousands of typical lines, or a few of the largest (5 MiB) requests.
 */
const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;

/** First pause after EAGAIN; a pipe reader usually drains within a millisecond. */
const FIRST_PAUSE_MS = 1;

/** Longest pause between two tries on a full pipe, so a reader that comes back is noticed quickly. */
const MAX_PAUSE_MS = 50;

/**
 * Largest write handed to the thread pool (whole lines, at least one): the default capacity of a
 * Linux pipe. A write that blocks cannot be taken back, so this bounds what may still come out
 * after its callers were told it failed.
 */
const THREAD_CHUNK_BYTES = 64 * 1024;

/** Options for {@link createStdoutSink}. */
export type StdoutSinkOptions = {
  /** The descriptor to write to. Default 1 (standard output); tests pass a pipe or a file. */
  fd?: number;
  /** Time from `write` until the line must be out, else it rejects, in ms. Default 1000. */
  writeTimeoutMs?: number;
  /** Bytes that may wait; a `write` beyond rejects at once. Default 16 MiB. */
  maxQueuedBytes?: number;
  /** Time between two probes while a stall lasts, in ms. Default 1000. */
  probeIntervalMs?: number;
  /** Least time between two "cannot write" log entries, in ms. Default 10,000. */
  failureLogIntervalMs?: number;
  /** Events for written and failed lines and readiness. Default: none. */
  observer?: SinkObserver;
  /** Where failures and the chosen write mode are logged (never line contents). Default: silent. */
  log?: Logger;
};

/** How the sink writes to its descriptor; see the module comment. */
type Mode = 'direct' | 'thread';

type Prepared = { fd: number; owned: boolean; mode: Mode; why: string };

/** Reads a descriptor's open flags from /proc/self/fdinfo; undefined where that is not possible. */
function descriptorFlags(fd: number): number | undefined {
  try {
    const match = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return match ? Number.parseInt(match[1] as string, 8) : undefined;
  } catch {
    return undefined;
  }
}

/** Decides how to write to `fd`, reopening it as a private non-blocking description where possible. */
function prepare(fd: number): Prepared {
  const st = fstatSync(fd);
  if (st.isFile()) return { fd, owned: false, mode: 'direct', why: 'a regular file' };
  const flags = descriptorFlags(fd);
  if (flags !== undefined && (flags & constants.O_NONBLOCK) !== 0) {
    return { fd, owned: false, mode: 'direct', why: 'already non-blocking' };
  }
  try {
    const own = openSync(
      `/proc/self/fd/${fd}`,
      constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
    const reopened = fstatSync(own);
    if (reopened.ino === st.ino && reopened.dev === st.dev) {
      return { fd: own, owned: true, mode: 'direct', why: 'reopened non-blocking' };
    }
    closeSync(own);
  } catch {
    // a socket (ENXIO), or no /proc: the thread pool it is
  }
  return { fd, owned: false, mode: 'thread', why: 'blocking and cannot be reopened (a socket?)' };
}

/** The bytes of a batch as one array: its buffer, or its pieces joined (stdout is not the hot path). */
function batchBytes(batch: Batch): Uint8Array {
  return batch.pieces ? Buffer.concat(batch.pieces as Uint8Array[]) : batch.bytes;
}

/** How many leading lines of `batch` end at or before `offset`. */
function linesBefore(batch: Batch, offset: number): number {
  let k = 0;
  while (k < batch.count && (batch.ends[k] as number) <= offset) k++;
  return k;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Writes `bytes[start, end)` to a non-blocking `fd` until done, EAGAIN, or another error; returns
 * the offset reached and the error, if any but EAGAIN, that stopped it.
 */
function writeAvailable(
  fd: number,
  bytes: Uint8Array,
  start: number,
  end: number,
): { offset: number; error?: Error } {
  let offset = start;
  while (offset < end) {
    let n: number;
    try {
      n = writeSync(fd, bytes, offset, end - offset);
    } catch (error) {
      if (errnoCode(error) === 'EAGAIN') return { offset };
      return { offset, error: asError(error) };
    }
    if (n <= 0) return { offset };
    offset += n;
  }
  return { offset };
}

/**
 * Creates a sink that writes bare lines to standard output (or `options.fd`). Throws if the
 * descriptor is not open. `close()` flushes what it can within the timeout and leaves the
 * descriptor open (it closes only its own non-blocking reopening of it).
 */
export function createStdoutSink(options: StdoutSinkOptions = {}): LineSink {
  const writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
  const maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  const requested = options.fd ?? STDOUT_FD;
  const log = (options.log ?? silentLogger).child('stdout-sink');
  if (!Number.isSafeInteger(requested) || requested < 0) {
    throw new RangeError(`stdout sink: fd must be a descriptor, got ${requested}`);
  }
  if (!Number.isFinite(writeTimeoutMs) || writeTimeoutMs < 0) {
    throw new RangeError(`stdout sink: writeTimeoutMs must be a non-negative number, got ${writeTimeoutMs}`);
  }
  let prepared: Prepared;
  try {
    prepared = prepare(requested);
  } catch (error) {
    throw codedError(
      `cannot write audit lines to descriptor ${requested}: ${asError(error).message}`,
      errnoCode(error) ?? 'EBADF',
      error,
    );
  }
  const { fd, owned, mode } = prepared;
  log.debug('writing audit lines to standard output', { fd: requested, mode, why: prepared.why });
  const clock = () => performance.now();

  function timedOut(): Error {
    return codedError(`standard output took no more bytes within ${writeTimeoutMs} ms`, 'ETIMEDOUT');
  }

  function stalled(): Error {
    return codedError(
      'standard output is stalled: an earlier line is still waiting for the reader',
      'EAGAIN',
    );
  }

  // ---- direct mode: non-blocking writeSync, timers while the pipe is full ----

  /** The rest of the line a stall stopped: written before any other byte. */
  let carry: Uint8Array | undefined;
  let carryAt = 0;

  /** Offers the carried line again; undefined once it is all out. */
  function pushCarry(): Error | undefined {
    if (!carry) return undefined;
    const { offset, error } = writeAvailable(fd, carry, carryAt, carry.length);
    carryAt = offset;
    if (carryAt < carry.length) return error ?? stalled();
    carry = undefined;
    carryAt = 0;
    return undefined;
  }

  function writeDirect(batch: Batch): BatchResult | Promise<BatchResult> {
    const carried = pushCarry();
    if (carried) return { written: 0, error: carried }; // still stalled: fail fast, queue nothing
    const bytes = batchBytes(batch);
    const total = batch.ends[batch.count - 1] as number;
    let offset = 0;
    let wait = FIRST_PAUSE_MS;
    const attempt = (): BatchResult | Promise<BatchResult> => {
      const result = writeAvailable(fd, bytes, offset, total);
      if (result.offset > offset) wait = FIRST_PAUSE_MS;
      offset = result.offset;
      if (offset === total) return undefined;
      const left = batch.deadline - clock();
      if (result.error || left <= 0) {
        // Keep the unfinished line (all of it if none went out) to go first when the reader returns.
        const k = linesBefore(batch, offset);
        carry = bytes.slice(offset, batch.ends[k] as number);
        carryAt = 0;
        return { written: k, error: result.error ?? timedOut() };
      }
      const step = Math.min(wait, left);
      wait = Math.min(wait * 2, MAX_PAUSE_MS);
      return pause(step).then(attempt);
    };
    return attempt();
  }

  // ---- thread mode: fs.write on the thread pool, whole-line chunks ----

  /** A chunk is still in the kernel after its batch gave up on it. */
  let stuck = false;

  function writeThreaded(batch: Batch): BatchResult | Promise<BatchResult> {
    if (stuck) return { written: 0, error: stalled() };
    const bytes = batchBytes(batch);
    const total = batch.ends[batch.count - 1] as number;
    return new Promise<BatchResult>((resolve) => {
      let offset = 0;
      let line = 0;
      let gaveUp = false;
      const timer = setTimeout(
        () => {
          gaveUp = true;
          stuck = true;
          resolve({ written: linesBefore(batch, offset), error: timedOut() });
        },
        Math.max(0, batch.deadline - clock()),
      );
      const chunk = (chunkEnd: number): void => {
        writeAsync(fd, bytes, offset, chunkEnd - offset, null, (error, n) => {
          if (error) {
            stuck = false;
            if (!gaveUp) {
              clearTimeout(timer);
              resolve({ written: linesBefore(batch, offset), error });
            }
            return;
          }
          offset += n;
          if (offset < chunkEnd) return chunk(chunkEnd); // interrupted: the rest of this chunk first
          if (gaveUp || offset >= total) {
            stuck = false; // the reader took the chunk: the pipe moves again
            if (!gaveUp) {
              clearTimeout(timer);
              resolve(undefined);
            }
            return;
          }
          next();
        });
      };
      const next = (): void => {
        // Whole lines up to THREAD_CHUNK_BYTES, at least one.
        let end = batch.ends[line] as number;
        line++;
        while (line < batch.count && (batch.ends[line] as number) - offset <= THREAD_CHUNK_BYTES) {
          end = batch.ends[line] as number;
          line++;
        }
        chunk(end);
      };
      next();
    });
  }

  function probe(): Error | undefined {
    if (mode === 'thread') return stuck ? stalled() : undefined;
    return pushCarry();
  }

  function close(): void {
    if (mode === 'direct' && carry) {
      const error = pushCarry();
      if (error) log.warn('standard output still stalled at close; a partial line may remain', { error });
    }
    if (owned) closeSync(fd);
  }

  return createBatchWriter({
    target: { writeBatch: mode === 'direct' ? writeDirect : writeThreaded, probe, close },
    observer: options.observer,
    log,
    writeTimeoutMs,
    maxQueuedBytes,
    probeIntervalMs: options.probeIntervalMs,
    failureLogIntervalMs: options.failureLogIntervalMs,
  });
}
