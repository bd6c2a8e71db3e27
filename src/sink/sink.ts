/**
 * @module The sink seam: where finished audit lines go (a rotating file, or stdout).
 *
 * A request hands its line to `write` and answers only after the promise settles, so a line is
 * in the sink before the API server hears "allowed". Sinks batch: lines handed over while a write
 * is pending share the next write, and each caller's promise settles with that batch.
 */

/**
 * Raised (as a rejection of {@link LineSink.write}) when a line could not be written. Every
 * rejection of `write` is one of these, whatever the reason (a failed write, a full queue, a
 * timeout, a closed sink, a malformed line), so a caller that counts rejections counts exactly
 * the requests that were answered without a line. `cause` holds the underlying error.
 */
export class SinkWriteError extends Error {
  override readonly name = 'SinkWriteError';
}

/** What became of one compression of a rotated backup. */
export type CompressionResult = 'success' | 'failure';

/** Why a backup was deleted: beyond `maxBackups`, or older than `maxAgeDays`. */
export type PruneReason = 'max-backups' | 'max-age';

/**
 * Events a sink reports; the metrics module implements it. Every method is optional, and a method
 * that throws is logged and otherwise ignored.
 */
export type SinkObserver = {
  /** A batch of `lines` lines, `bytes` bytes in all, reached the file descriptor. */
  written?(lines: number, bytes: number): void;
  /**
   * `lines` lines were rejected; `error` says why. Called for every rejected `write`, so the sum
   * of `lines` over all calls equals the number of promises that rejected.
   */
  failed?(lines: number, error: Error): void;
  /** The file was rotated; `backup` is the path the old file now has. */
  rotated?(backup: string): void;
  /** The file was found deleted or replaced under us and was reopened. */
  reopened?(reason: string): void;
  /**
   * `ready()` changed to `ready`; `cause` is the error that made the sink unready. Called on every
   * change and only then (the sink starts ready), including the last change to false at close.
   */
  readyChanged?(ready: boolean, cause?: Error): void;
  /** A rotated backup was gzipped (`success`, then `<backup>.gz` exists and `backup` is gone) or not. */
  compressed?(result: CompressionResult, backup: string, error?: Error): void;
  /** An old backup was deleted. */
  pruned?(backup: string, reason: PruneReason): void;
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
   * Appends one complete line. Resolves once the line has been handed to the operating system
   * (and, where the sink is asked to, to stable storage); rejects with {@link SinkWriteError} if it
   * was not. The sink may read the line's bytes until the promise settles: do not change them before.
   */
  write(line: Line): Promise<void>;
  /**
   * Whether the sink can write: false from a failed write until a later write succeeds or the
   * sink's own probe finds that one could (no traffic needed), and after close. Readiness reports it.
   */
  ready(): boolean;
  /** Writes everything queued, synchronously, as far as it can without waiting; for shutdown paths. */
  flushSync(): void;
  /** Writes everything queued, then closes; later writes reject. */
  close(): Promise<void>;
}
