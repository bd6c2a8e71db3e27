/**
 * @module The sink seam: where finished audit lines go (a rotating file, or stdout).
 *
 * A request hands its line to `write` and answers only after the promise settles, so a line is
 * in the sink before the API server hears "allowed". Sinks batch: lines handed over while a write
 * is pending share the next write, and each caller's promise settles with that batch.
 */

/** Raised (as a rejection of {@link LineSink.write}) when a line could not be written; nothing of it remains. */
export class SinkWriteError extends Error {
  override readonly name = 'SinkWriteError';
}

/** Counters a sink reports to; the metrics module implements it. Every method is optional. */
export type SinkObserver = {
  /** A batch of `lines` lines, `bytes` bytes in all, reached the file descriptor. */
  written?(lines: number, bytes: number): void;
  /** A batch of `lines` lines failed to write; `error` says why. */
  failed?(lines: number, error: Error): void;
  /** The file was rotated; `backup` is the path the old file now has. */
  rotated?(backup: string): void;
  /** The file was found deleted or replaced under us and was reopened. */
  reopened?(reason: string): void;
};

/**
 * One audit line: its bytes ending in `\n`, or the same bytes in pieces, in order (the last piece
 * ending in `\n`). Pieces let a caller hand over the request body and the few bytes it adds
 * without first copying them into a new buffer; the sink copies them once, into its batch.
 */
export type Line = Uint8Array | readonly Uint8Array[];

/** A destination for audit lines. */
export interface LineSink {
  /**
   * Appends one complete line. Resolves once the line has been handed to the operating system;
   * rejects with {@link SinkWriteError} if it was not, in which case no part of it is left in the
   * file. The sink may read the line's bytes until the promise settles: do not change them before.
   */
  write(line: Line): Promise<void>;
  /** Whether the sink is open and its last write (if any) succeeded; readiness reports it. */
  ready(): boolean;
  /** Writes everything queued, synchronously; for shutdown paths that cannot wait. */
  flushSync(): void;
  /** Writes everything queued, then closes; later writes reject. */
  close(): Promise<void>;
}
