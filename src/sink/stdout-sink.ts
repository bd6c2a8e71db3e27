/**
 * @module The stdout sink (`--audit-to-std-log`): bare audit lines on standard output, batched like the file sink.
 *
 * Nothing is wrapped around a line: the container runtime or a log shipper reads exactly the JSON
 * lines. Standard output is often a pipe, which may be non-blocking; a full pipe answers EAGAIN,
 * and the sink then waits in short sleeps (never spinning) for a bounded time before failing the batch.
 */

import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { Batch, BatchFailure } from './batch-writer.ts';
import { createBatchWriter, writeBatchRange } from './batch-writer.ts';
import type { LineSink, SinkObserver } from './sink.ts';

/** Standard output's descriptor. */
const STDOUT_FD = 1;

/**
 * Default time one batch may wait, without progress, for a full pipe to drain: long enough to ride
 * out a reader's pause, short enough that the blocked event loop still answers the API server
 * (whose webhook timeout defaults to 10 s) once the batch fails.
 */
const DEFAULT_EAGAIN_TIMEOUT_MS = 1000;

/** Options for {@link createStdoutSink}. */
export type StdoutSinkOptions = {
  /** The descriptor to write to. Default 1 (standard output); tests pass a pipe or a file. */
  fd?: number;
  /** How long a batch waits, without progress, on a pipe that answers EAGAIN before it fails. Default 1000 ms. */
  eagainTimeoutMs?: number;
  /** Counters for written and failed lines. Default: none. */
  observer?: SinkObserver;
  /** Where failures are logged (never line contents). Default: silent. */
  log?: Logger;
};

/**
 * Creates a sink that writes bare lines to standard output (or `options.fd`). A batch is written
 * whole or fails whole; a pipe cannot be truncated, so if a write fails after part of a batch went
 * out, the reader may see that part (the promises still reject). `close()` flushes but leaves the
 * descriptor open: the sink did not open it.
 */
export function createStdoutSink(options: StdoutSinkOptions = {}): LineSink {
  const fd = options.fd ?? STDOUT_FD;
  const eagainTimeoutMs = options.eagainTimeoutMs ?? DEFAULT_EAGAIN_TIMEOUT_MS;
  if (!Number.isSafeInteger(fd) || fd < 0) {
    throw new RangeError(`stdout sink: fd must be a descriptor, got ${fd}`);
  }
  if (!Number.isFinite(eagainTimeoutMs) || eagainTimeoutMs < 0) {
    throw new RangeError(
      `stdout sink: eagainTimeoutMs must be a non-negative number, got ${eagainTimeoutMs}`,
    );
  }

  function writeBatch(batch: Batch): BatchFailure | undefined {
    try {
      writeBatchRange(fd, batch, 0, batch.ends[batch.count - 1] as number, eagainTimeoutMs);
      return undefined;
    } catch (error) {
      return { written: 0, error: error as Error };
    }
  }

  function close(): void {}

  return createBatchWriter({
    target: { writeBatch, close },
    observer: options.observer,
    log: (options.log ?? silentLogger).child('stdout-sink'),
  });
}
