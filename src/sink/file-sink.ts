/**
 * @module The audit log file: appends batched lines, rotates by size as lumberjack did, reopens a file deleted or moved away, and finds out by itself when it can write again.
 *
 * The file is opened once for appending (safely: see open-log.ts) and written with `writeSync`, so
 * a restart appends and the kernel places every write at the end. Before each batch the sink makes
 * sure the descriptor still is the file at the path, and that no fragment of a failed write is
 * left; then it writes the batch in as few writes as rotation allows. A failed write is truncated
 * away, so the file only ever holds whole lines, and every line of the batch not written rejects.
 */

import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  openSync,
  renameSync,
  type Stats,
} from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import { createBackupKeeper } from './backups.ts';
import type { Batch, BatchFailure } from './batch-writer.ts';
import { createBatchWriter, writeBatchRange } from './batch-writer.ts';
import {
  type OpenLog,
  openLogFile,
  probeFileName,
  probeSpace,
  resolveLogPath,
  withContext,
} from './open-log.ts';
import { freeBackupName } from './rotation.ts';
import type { LineSink, SinkObserver } from './sink.ts';
import { errnoCode } from './write-range.ts';

/** One megabyte as the `--logger-max-size` flag (and lumberjack) counts it. */
export const MEBIBYTE = 1024 * 1024;

/** Default rotation size: 500 MB, the default of 1.x's `--logger-max-size`. */
const DEFAULT_MAX_SIZE_BYTES = 500 * MEBIBYTE;

/** Default backups kept: 1, the default of 1.x's `--logger-max-backups`. */
const DEFAULT_MAX_BACKUPS = 1;

/**
 * Least size the space probe writes: one page, the least a file system allocates, so a full tmpfs
 * or disk fails the probe even when the failed batch was a single short line.
 */
const MIN_PROBE_BYTES = 4096;

/**
 * Most the space probe writes. It writes as much as the batch that failed, so that being ready again
 * means that batch would fit; past 1 MiB (a large object's line) the probe's own cost would grow
 * for little: the next real write decides anyway.
 */
const MAX_PROBE_BYTES = MEBIBYTE;

/**
 * When a write is acknowledged, as `--fsync` says.
 *
 * `'never'` (the default, as 1.x): once the batch is in the kernel's page cache. An acknowledged
 * line survives a crash of kube-audit-rest (the kernel writes it out), not a crash or power loss of
 * the node: lines acknowledged within the kernel's writeback delay (about 30 s by default) are lost
 * with it.
 *
 * `'always'`: after one `fdatasync` shared by every line of the batch (group commit: concurrent
 * requests share one flush), and an `fsync` of the directory whenever a file is created, rotated or
 * reopened, so an acknowledged line also survives a node crash or power loss, on storage that honours
 * flushes. The flush runs on the event loop: moving it to Bun's thread pool measured no faster, since
 * every waiting request is in the batch being flushed (testing/README.md has the figures).
 */
/** The values `--fsync` takes. */
export const FSYNC_MODES = ['never', 'always'] as const;

/** One of {@link FSYNC_MODES}. */
export type FsyncMode = (typeof FSYNC_MODES)[number];

/**
 * Default least time between two `lstat`s of the path (rename detection). Lines written in that
 * window go to the renamed file, which still exists and which shippers that follow inodes still
 * read; so the check can wait a little, and the ~2.6 µs `lstat` stops weighing on small batches.
 */
const DEFAULT_RENAME_CHECK_INTERVAL_MS = 100;

/** Options for {@link createFileSink}. */
export type FileSinkOptions = {
  /** The log file. Required; its directory must exist. */
  path: string;
  /** Rotate before a write would take the file past this many bytes. Default 500 MiB; `Infinity` never rotates. */
  maxSizeBytes?: number;
  /** Backups kept after a rotation, newest first; 0 keeps all. Default 1. */
  maxBackups?: number;
  /** Backups whose name's time is older than this many days are deleted (`--logger-max-age`); 0 keeps any age. Default 0. */
  maxAgeDays?: number;
  /** Gzip each rotated backup to `<backup>.gz`, off the request path (`--logger-compress`). Default false. */
  compress?: boolean;
  /** When writes are acknowledged (`--fsync`); see {@link FsyncMode}. Default `'never'`. */
  fsync?: FsyncMode;
  /**
   * Least time between two checks that the path still names the open file (renamed away or
   * replaced). Deletion is checked before every batch regardless. Default 100 ms; 0 checks every batch.
   */
  renameCheckIntervalMs?: number;
  /** Time between two readiness probes while the sink cannot write, in ms. Default 1000. */
  probeIntervalMs?: number;
  /** Least time between two "cannot write" log entries, in ms. Default 10,000. */
  failureLogIntervalMs?: number;
  /** Time between two backup passes when `maxAgeDays` is set, in ms. Default 1 hour. */
  backupCheckIntervalMs?: number;
  /** The clock that names backups and ages them. Default: `() => new Date()`. */
  now?: () => Date;
  /** Events: writes, failures, rotations, reopens, readiness, compressions, prunes. Default: none. */
  observer?: SinkObserver;
  /** Where rotations, reopens and failures are logged (never line contents). Default: silent. */
  log?: Logger;
};

type Resolved = Required<
  Pick<
    FileSinkOptions,
    'maxSizeBytes' | 'maxBackups' | 'maxAgeDays' | 'compress' | 'fsync' | 'renameCheckIntervalMs'
  >
>;

function validate(options: FileSinkOptions): Resolved {
  const maxSizeBytes = options.maxSizeBytes ?? DEFAULT_MAX_SIZE_BYTES;
  const renameCheckIntervalMs = options.renameCheckIntervalMs ?? DEFAULT_RENAME_CHECK_INTERVAL_MS;
  const maxBackups = options.maxBackups ?? DEFAULT_MAX_BACKUPS;
  const maxAgeDays = options.maxAgeDays ?? 0;
  const compress = options.compress ?? false;
  const fsync = options.fsync ?? 'never';
  if (typeof options.path !== 'string' || options.path === '') {
    throw new TypeError('file sink: path must be a non-empty string');
  }
  if (
    !(maxSizeBytes === Number.POSITIVE_INFINITY || (Number.isSafeInteger(maxSizeBytes) && maxSizeBytes > 0))
  ) {
    throw new RangeError(
      `file sink: maxSizeBytes must be a positive integer or Infinity, got ${maxSizeBytes}`,
    );
  }
  if (!Number.isSafeInteger(maxBackups) || maxBackups < 0) {
    throw new RangeError(`file sink: maxBackups must be a non-negative integer, got ${maxBackups}`);
  }
  if (!Number.isSafeInteger(maxAgeDays) || maxAgeDays < 0) {
    throw new RangeError(`file sink: maxAgeDays must be a non-negative integer, got ${maxAgeDays}`);
  }
  if (typeof compress !== 'boolean') {
    throw new TypeError(`file sink: compress must be a boolean, got ${String(compress)}`);
  }
  if (fsync !== 'never' && fsync !== 'always') {
    throw new RangeError(`file sink: fsync must be 'never' or 'always', got ${String(fsync)}`);
  }
  if (!Number.isFinite(renameCheckIntervalMs) || renameCheckIntervalMs < 0) {
    throw new RangeError(
      `file sink: renameCheckIntervalMs must be a non-negative number, got ${renameCheckIntervalMs}`,
    );
  }
  return { maxSizeBytes, maxBackups, maxAgeDays, compress, fsync, renameCheckIntervalMs };
}

/**
 * Creates the rotating audit file sink. Opens (or creates, mode 0600) `options.path` for appending
 * right away and throws, with the path in the message and the errno error as `cause`, if it cannot
 * or must not (a symbolic link, a FIFO or other non-regular file, a mode wider than 0600 that cannot
 * be narrowed: see open-log.ts).
 *
 * Rotation, checked before every write: if the file is not empty and the next lines would take it
 * past `maxSizeBytes`, the file is renamed to its lumberjack backup name, a new file is opened at
 * the path and the old descriptor closed; then the backup keeper (backups.ts) prunes and compresses,
 * off the request path. A batch is split at line boundaries so every file stays within the limit.
 * A single line longer than the limit is not refused (that would lose an audit record, where
 * lumberjack returned an error): it is written alone into a fresh file, rotated before the next line.
 *
 * Backup times are strictly increasing within a process (a rotation in the same millisecond as the
 * previous one is named one millisecond later), so pruning by the time in the name always removes
 * the oldest; a name left by an earlier run is never overwritten.
 *
 * Before each batch an `fstat` checks that the file was not deleted (`nlink` 0) and refreshes its
 * size; an `lstat` of the path checks that it was not renamed away or replaced (the path is gone or
 * names another inode, or a symbolic link), at most once per `renameCheckIntervalMs`. Either way
 * the path is reopened (and a symbolic link there refused) and `observer.reopened` called.
 *
 * On a failed write (ENOSPC, EIO, ...) the file is truncated back to where the failing write began,
 * so no fragment remains; if even that truncate fails it is retried before the next write, and
 * nothing is written until it succeeds. Every line not written rejects.
 *
 * After a failure the sink is unready, and every `probeIntervalMs` it probes, writing nothing into
 * the log: it reopens the path if the file or its directory is gone (creating the file, 0600, once
 * the directory exists again; refusing a symbolic link), removes a fragment left behind, and writes
 * and deletes a probe file as large as the failed batch (4 KiB to 1 MiB) beside the log, which
 * proves the space is there. When all of that works the sink is ready again, with no traffic.
 *
 * `close()` closes the file and stops the backup keeper (a compression in progress is abandoned
 * and its temporary file deleted); it does not rotate anything.
 */
export function createFileSink(options: FileSinkOptions): LineSink {
  const { maxSizeBytes, maxBackups, maxAgeDays, compress, fsync, renameCheckIntervalMs } = validate(options);
  const now = options.now ?? (() => new Date());
  const observer: SinkObserver = options.observer ?? {};
  const log = (options.log ?? silentLogger).child('file-sink');
  const path = resolveLogPath(options.path);
  const dir = dirname(path);
  const probeName = probeFileName(path);

  let file: OpenLog;
  try {
    file = openLogFile(path);
  } catch (error) {
    throw withContext(`cannot open audit log file ${options.path}`, error);
  }
  warnIfNarrowed(file);

  /** Size to truncate the current file back to before anything else is written: a failed undo. */
  let truncateTo: number | undefined;
  /** When the path may next be checked (performance.now() time); 0 forces a check. */
  let nextPathCheck = 0;
  /** Time of the last backup name used, so backup names strictly increase. */
  let lastBackupMs = Number.NEGATIVE_INFINITY;

  const backups = createBackupKeeper({
    path,
    maxBackups,
    maxAgeDays,
    compress,
    now,
    checkIntervalMs: options.backupCheckIntervalMs,
    observer,
    log,
  });

  function notify(call: () => void): void {
    try {
      call();
    } catch (error) {
      log.error('sink observer threw', { error });
    }
  }

  function warnIfNarrowed(opened: OpenLog): void {
    if (opened.narrowedFrom === undefined) return;
    log.warn('the audit log file was readable by others; its mode is now 0600', {
      path,
      previousMode: `0${opened.narrowedFrom.toString(8)}`,
    });
  }

  /** With `fsync: 'always'`, makes a newly created or renamed file's directory entry durable. */
  function syncDirectory(): void {
    if (fsync !== 'always') return;
    let dirFd: number | undefined;
    try {
      dirFd = openSync(dir, constants.O_RDONLY);
      fsyncSync(dirFd);
    } catch (error) {
      log.warn('cannot fsync the audit log directory', { path, error });
    } finally {
      if (dirFd !== undefined) closeSync(dirFd);
    }
  }

  /** Opens the path afresh and closes the old descriptor; undefined on success, else the open error (the old descriptor then stays in use). */
  function replaceDescriptor(): Error | undefined {
    let next: OpenLog;
    try {
      next = openLogFile(path);
    } catch (error) {
      return error as Error;
    }
    warnIfNarrowed(next);
    const old = file.fd;
    file = next;
    try {
      closeSync(old);
    } catch (error) {
      log.warn('closing the previous audit log descriptor failed', { path, error });
    }
    syncDirectory();
    return undefined;
  }

  /** Reopens the path after the file was deleted or moved away; undefined on success, else why not. */
  function reopen(reason: string): Error | undefined {
    const error = replaceDescriptor();
    if (error) return withContext(`cannot reopen audit log file ${path} (${reason})`, error);
    log.warn('reopened audit log file', { path, reason });
    if (observer.reopened) notify(() => observer.reopened?.(reason));
    return undefined;
  }

  /**
   * Makes sure the descriptor is the file at the path, reopening if it was deleted or renamed away,
   * and refreshes the size (someone may have truncated the file, as logrotate's copytruncate does).
   */
  function checkFile(): Error | undefined {
    let nlink: number;
    try {
      const st = fstatSync(file.fd);
      nlink = st.nlink;
      file.size = st.size;
    } catch (error) {
      truncateTo = undefined; // the descriptor is unusable; whatever it held is out of reach
      return reopen(`descriptor unusable (${errnoCode(error) ?? 'error'})`);
    }
    if (nlink === 0) {
      truncateTo = undefined; // a fragment in a deleted file harms nobody
      return reopen('deleted');
    }
    if (nextPathCheck !== 0 && performance.now() < nextPathCheck) return undefined;
    nextPathCheck = performance.now() + renameCheckIntervalMs;
    let current: Stats | undefined;
    try {
      // lstat: a symbolic link put at the path is another file, to be reopened (and refused).
      current = lstatSync(path, { throwIfNoEntry: false });
    } catch {
      return undefined; // the path cannot be examined (e.g. EACCES on the directory); keep writing to the descriptor
    }
    if (current && current.ino === file.ino && current.dev === file.dev) return undefined;
    if (truncateTo !== undefined) {
      // The file lives on under another name: try once more to remove the fragment from it.
      try {
        ftruncateSync(file.fd, truncateTo);
      } catch (error) {
        log.error('a partial line remains in the moved-away audit log file', { path, error });
      }
      truncateTo = undefined;
    }
    return reopen(current ? 'replaced' : 'renamed or removed');
  }

  /** Truncates back to `size` after a failed write; if that fails too, remembers to retry it first. */
  function undo(size: number, cause: unknown): void {
    try {
      ftruncateSync(file.fd, size);
      file.size = size;
    } catch (error) {
      truncateTo = size;
      log.error('cannot truncate a partial line away; will retry before the next write', {
        path,
        error,
        writeError: cause,
      });
    }
  }

  /** Removes the fragment a failed undo left; undefined once there is none. */
  function removeFragment(): Error | undefined {
    if (truncateTo === undefined) return undefined;
    try {
      ftruncateSync(file.fd, truncateTo);
    } catch (error) {
      return withContext(`cannot remove a partial line from ${path}`, error);
    }
    file.size = truncateTo;
    truncateTo = undefined;
    log.info('removed the partial line a failed write had left', { path });
    return undefined;
  }

  /**
   * Writes the batch's lines from offset `start` to `end` (whole lines) to the current file, undoing
   * it on failure. A batch in pieces is one line, so its only segment is all of it.
   */
  function writeSegment(batch: Batch, start: number, end: number): Error | undefined {
    const before = file.size;
    try {
      writeBatchRange(file.fd, batch, start, end);
      if (fsync === 'always') fdatasyncSync(file.fd);
    } catch (error) {
      undo(before, error);
      return error as Error;
    }
    file.size = before + (end - start);
    return undefined;
  }

  /** Moves the file to its backup name and opens a fresh one at the path; then asks the keeper for a pass. */
  function rotate(): Error | undefined {
    let backup: string;
    try {
      const at = new Date(Math.max(now().getTime(), lastBackupMs + 1));
      const chosen = freeBackupName(
        path,
        at,
        (candidate) => lstatSync(candidate, { throwIfNoEntry: false }) !== undefined,
      );
      backup = chosen.path;
      lastBackupMs = chosen.at.getTime();
      renameSync(path, backup);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return reopen('renamed or removed'); // nothing left to back up
      return withContext(`cannot rotate audit log file ${path}`, error);
    }
    // On failure the old descriptor writes into the backup; the next batch finds the path missing and retries.
    const opened = replaceDescriptor();
    if (opened) {
      nextPathCheck = 0;
      return withContext(`rotated ${path}, but cannot open a new file there`, opened);
    }
    log.info('rotated audit log file', { path, backup });
    if (observer.rotated) notify(() => observer.rotated?.(backup));
    backups.request();
    return undefined;
  }

  function writeBatch(batch: Batch): BatchFailure | undefined {
    const checkError = checkFile() ?? removeFragment();
    if (checkError) return { written: 0, error: checkError };
    const { ends, count } = batch;
    let line = 0;
    let start = 0;
    while (line < count) {
      const firstEnd = ends[line] as number;
      if (file.size > 0 && file.size + (firstEnd - start) > maxSizeBytes) {
        const rotateError = rotate();
        if (rotateError) return { written: line, error: rotateError };
      }
      // The segment is the longest run of whole lines that keeps the file within the limit (at least one line).
      const limit = start + (maxSizeBytes - file.size);
      let next = line + 1;
      if ((ends[count - 1] as number) <= limit) next = count;
      else while (next < count && (ends[next] as number) <= limit) next++;
      const end = ends[next - 1] as number;
      const writeError = writeSegment(batch, start, end);
      if (writeError) return { written: line, error: writeError };
      line = next;
      start = end;
    }
    return undefined;
  }

  function probe(failedBytes: number): Error | undefined {
    nextPathCheck = 0; // look at the path itself, not only the descriptor
    const error = checkFile() ?? removeFragment();
    if (error) return error;
    const bytes = Math.min(MAX_PROBE_BYTES, Math.max(MIN_PROBE_BYTES, failedBytes));
    return probeSpace(dir, probeName, bytes, fsync === 'always');
  }

  async function close(): Promise<void> {
    try {
      closeSync(file.fd);
    } finally {
      await backups.close();
    }
  }

  syncDirectory();
  log.debug('opened audit log file', {
    path,
    size: file.size,
    maxSizeBytes,
    maxBackups,
    maxAgeDays,
    compress,
    fsync,
    probeFile: probeName,
  });
  return createBatchWriter({
    target: { writeBatch, probe, close },
    observer,
    log,
    probeIntervalMs: options.probeIntervalMs,
    failureLogIntervalMs: options.failureLogIntervalMs,
  });
}
