/**
 * @module Looks after rotated backups off the request path: deletes those beyond `--logger-max-backups` or older than `--logger-max-age`, gzips the rest with `--logger-compress`.
 *
 * One pass ({@link planBackups} decides, this module acts) runs at start, after every rotation and,
 * with a maximum age, once an hour, so backups age out even when nothing rotates; passes never
 * overlap, and a request made during a pass runs one more after it. Compression streams the backup
 * through node:zlib, which Bun runs on its thread pool (a 133 MB backup took 2.7 s with the event
 * loop's timers at most 3.6 ms late), into `<backup>.gz.tmp` (mode 0600), syncs it, renames it to
 * `<backup>.gz` (lumberjack's name), syncs the directory and only then deletes the backup. A crash
 * at any point leaves the backup whole; a `.gz.tmp` left behind is never taken for a backup and is
 * deleted by the next pass, which compresses the backup again.
 *
 * Compression needs room for the compressed copy (a fifth to a tenth of a JSON backup) while both
 * exist; on a nearly full disk it fails, is logged and counted, and is tried again at the next pass.
 */

import {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  fdatasync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from '../support/log.ts';
import { codedError } from './open-log.ts';
import { COMPRESS_SUFFIX, COMPRESS_TEMP_SUFFIX, planBackups, splitLogName } from './rotation.ts';
import type { SinkObserver } from './sink.ts';
import { errnoCode } from './write-range.ts';

/**
 * Default time between two passes when a maximum age is set: backups must go within about an hour
 * of turning too old, even with no rotation; a pass lists one directory, which costs next to nothing.
 */
export const DEFAULT_BACKUP_CHECK_INTERVAL_MS = 60 * 60 * 1000;

/** Owner read and write only, as the log itself: compressed backups hold the same Secrets. */
const COMPRESSED_MODE = 0o600;

/** The backup is opened read-only, never through a symbolic link, and never blocks on a FIFO. */
const BACKUP_OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The temporary file must be new and must not be reached through a symbolic link. */
const TEMP_OPEN_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Options for {@link createBackupKeeper}. */
export type BackupKeeperOptions = {
  /** The log's path (resolved); its backups sit beside it. Required. */
  path: string;
  /** Backups kept; 0 keeps any number. Required (the file sink resolves the default). */
  maxBackups: number;
  /** Days a backup is kept, by the time in its name; 0 keeps any age. Required. */
  maxAgeDays: number;
  /** Whether to gzip backups. Required. */
  compress: boolean;
  /** The clock for ages. Required. */
  now: () => Date;
  /** Time between passes when `maxAgeDays` is set, in ms. Default 1 hour ({@link DEFAULT_BACKUP_CHECK_INTERVAL_MS}). */
  checkIntervalMs?: number;
  /** Receives `pruned` and `compressed`. Required (may be empty). */
  observer: SinkObserver;
  /** Where removals, compressions and their failures are logged. Required. */
  log: Logger;
};

/** The keeper's handle. */
export type BackupKeeper = {
  /** Asks for a pass soon (after a rotation); never runs one on the caller's stack. */
  request(): void;
  /** Resolves once the pass in progress, if any, is over; for tests and shutdown. */
  idle(): Promise<void>;
  /** Stops: aborts a compression in progress (its temporary file is deleted) and the timer. */
  close(): Promise<void>;
};

function syncDirectory(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
}

/**
 * Creates the keeper for the backups of `options.path` and asks for a first pass (which deletes
 * leftovers of an interrupted compression and compresses what was left uncompressed). Does nothing
 * at all when there is nothing to keep: no maximum count, no maximum age and no compression.
 */
export function createBackupKeeper(options: BackupKeeperOptions): BackupKeeper {
  const { path, maxBackups, maxAgeDays, compress, now, observer, log } = options;
  const checkIntervalMs = options.checkIntervalMs ?? DEFAULT_BACKUP_CHECK_INTERVAL_MS;
  if (!Number.isFinite(checkIntervalMs) || checkIntervalMs <= 0) {
    throw new RangeError(`backup checkIntervalMs must be a positive number, got ${checkIntervalMs}`);
  }
  const { dir } = splitLogName(path);
  const active = maxBackups > 0 || maxAgeDays > 0 || compress;
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;

  function notify(call: () => void): void {
    try {
      call();
    } catch (error) {
      log.error('sink observer threw', { error });
    }
  }

  async function compressOne(backup: string): Promise<void> {
    const compressed = `${backup}${COMPRESS_SUFFIX}`;
    const temp = `${backup}${COMPRESS_TEMP_SUFFIX}`;
    let source: number | undefined;
    let target: number | undefined;
    let tempExists = false;
    try {
      try {
        source = openSync(backup, BACKUP_OPEN_FLAGS);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') return; // deleted meanwhile (pruned, or by hand)
        throw error;
      }
      const st = fstatSync(source);
      if (!st.isFile()) throw codedError(`${backup} is not a regular file`, 'EFTYPE');
      target = openSync(temp, TEMP_OPEN_FLAGS, COMPRESSED_MODE);
      tempExists = true;
      await pipeline(
        createReadStream('', { fd: source, autoClose: false }),
        createGzip(),
        createWriteStream('', { fd: target, autoClose: false }),
        { signal: stop.signal },
      );
      await datasync(target);
      closeSync(target);
      target = undefined;
      renameSync(temp, compressed);
      tempExists = false;
      try {
        syncDirectory(dir);
      } catch (error) {
        log.warn('cannot fsync the audit log directory', { dir, error });
      }
      unlinkSync(backup);
      log.info('compressed audit log backup', { backup, compressed, bytes: st.size });
      if (observer.compressed) notify(() => observer.compressed?.('success', backup));
    } catch (error) {
      if (stop.signal.aborted) {
        log.debug('compression stopped', { backup });
      } else {
        log.warn('cannot compress audit log backup', { backup, error });
        if (observer.compressed) notify(() => observer.compressed?.('failure', backup, error as Error));
      }
    } finally {
      if (target !== undefined) closeSync(target);
      if (source !== undefined) closeSync(source);
      if (tempExists) {
        try {
          unlinkSync(temp);
        } catch {}
      }
    }
  }

  async function pass(): Promise<void> {
    let fileNames: string[];
    try {
      fileNames = readdirSync(dir, { withFileTypes: true })
        .filter((entry) => !entry.isDirectory())
        .map((entry) => entry.name);
    } catch (error) {
      log.warn('cannot list the audit log directory', { dir, error });
      return;
    }
    // The clock is read only when ages matter (a test clock then advances only for rotations).
    const at = maxAgeDays > 0 ? now() : new Date(0);
    const plan = planBackups(fileNames, path, { maxBackups, maxAgeDays, compress, now: at });
    for (const fileName of plan.leftovers) {
      try {
        unlinkSync(join(dir, fileName));
        log.info('removed an unfinished compression', { file: join(dir, fileName) });
      } catch (error) {
        log.warn('cannot remove an unfinished compression', { file: join(dir, fileName), error });
      }
    }
    const removed: string[] = [];
    for (const { fileName, reason } of plan.remove) {
      const backup = join(dir, fileName);
      try {
        unlinkSync(backup);
        removed.push(backup);
        if (observer.pruned) notify(() => observer.pruned?.(backup, reason));
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT')
          log.warn('cannot remove an old audit log backup', { backup, error });
      }
    }
    if (removed.length > 0) log.info('removed old audit log backups', { removed, maxBackups, maxAgeDays });
    for (const fileName of plan.compress) {
      if (closed) return;
      await compressOne(join(dir, fileName));
    }
  }

  async function runPasses(): Promise<void> {
    do {
      again = false;
      try {
        await pass();
      } catch (error) {
        log.error('audit log backup pass failed', { error });
      }
    } while (again && !closed);
    running = undefined;
  }

  function request(): void {
    if (closed || !active) return;
    if (running) {
      again = true;
      return;
    }
    running = new Promise<void>((resolve) => setImmediate(resolve)).then(runPasses);
  }

  const timer = maxAgeDays > 0 ? setInterval(request, checkIntervalMs) : undefined;
  timer?.unref?.();
  request();

  async function idle(): Promise<void> {
    while (running) await running;
  }

  async function close(): Promise<void> {
    closed = true;
    if (timer) clearInterval(timer);
    stop.abort();
    await idle();
  }

  return { request, idle, close };
}
