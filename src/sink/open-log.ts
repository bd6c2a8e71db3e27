/**
 * @module Opening the audit log safely: never through a symbolic link, never a FIFO or device, never readable by others; and the space probe beside it.
 *
 * Audit lines hold Secrets, so where they land matters. Decisions, each applied at start and at
 * every reopen (after deletion, rotation, or a replaced file):
 * - The directory is resolved once at start (`realpath`), so a deployment may reach it through a
 *   symbolic link; afterwards the directory must still be a real directory. A symbolic link put in
 *   its place, or at the file's own path, is refused (`O_NOFOLLOW`, then `/proc/self/fd` confirms
 *   the descriptor is the path we meant), never followed.
 * - The file is opened with `O_NONBLOCK`, so a FIFO planted at the path cannot block the process in
 *   `open()`; anything but a regular file (FIFO, socket, device, directory) is then refused.
 *   Standard output has its own sink (`--audit-to-std-log`).
 * - A new file is created with mode 0600. An existing file with any permission beyond 0600 (say
 *   0644, left by an earlier tool) is narrowed to 0600 with `fchmod`, and a warning says so; if it
 *   cannot be narrowed (not our file), it is refused. Refusing a wide file outright would stop a
 *   restart over a log the operator can fix only by hand; keeping it wide would show every line
 *   to other users until the next rotation.
 */

import {
  closeSync,
  constants,
  fchmodSync,
  fdatasyncSync,
  fstatSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  type Stats,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { asError, errnoCode, writeFully } from './write-range.ts';

/** Owner read and write only: audit lines hold Secrets. */
export const FILE_MODE = 0o600;

/** Every permission bit outside {@link FILE_MODE} (group, other, execute, set-id, sticky). */
const WIDER_THAN_FILE_MODE = 0o7777 & ~FILE_MODE;

/**
 * Append-only writes that land at the end even after another process truncated the file; create
 * if missing; refuse a symbolic link; never block in open() on a FIFO; never become our terminal.
 */
const LOG_OPEN_FLAGS =
  constants.O_WRONLY |
  constants.O_APPEND |
  constants.O_CREAT |
  constants.O_NOFOLLOW |
  constants.O_NONBLOCK |
  constants.O_NOCTTY;

/** A fresh file that must not exist yet, and must not be reached through a symbolic link. */
const PROBE_OPEN_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** An open audit log: its descriptor, identity and size. */
export type OpenLog = {
  fd: number;
  dev: number;
  ino: number;
  size: number;
  /** The mode the existing file had before it was narrowed to 0600; undefined if it was not. */
  narrowedFrom: number | undefined;
};

/** Makes an Error with an errno-style `code`, optionally wrapping the error that caused it. */
export function codedError(message: string, code: string, cause?: unknown): Error {
  const error = new Error(message, cause === undefined ? undefined : { cause });
  return Object.assign(error, { code });
}

/** Wraps `error` with `context` in front of its message, keeping its errno code. */
export function withContext(context: string, error: unknown): Error {
  const cause = asError(error);
  return codedError(`${context}: ${cause.message}`, errnoCode(cause) ?? 'EIO', cause);
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symbolic link';
  return 'special file';
}

/**
 * Resolves the log path once, at start: the absolute path of its directory with every symbolic
 * link resolved, joined to its base name. Throws, with the path in the message, if the directory
 * does not exist.
 */
export function resolveLogPath(path: string): string {
  const absolute = resolve(path);
  try {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  } catch (error) {
    throw withContext(`cannot open audit log file ${path}`, error);
  }
}

/** Throws unless `dir` is a directory itself, not a symbolic link to one. */
function checkDirectory(dir: string): void {
  const st = lstatSync(dir);
  if (st.isSymbolicLink()) {
    throw codedError(
      `the audit log directory ${dir} is now a symbolic link; kube-audit-rest does not follow it`,
      'ELOOP',
    );
  }
  if (!st.isDirectory()) throw codedError(`the audit log directory ${dir} is a ${kindOf(st)}`, 'ENOTDIR');
}

/**
 * Throws if the descriptor was reached through a symbolic link (the directory swapped between
 * the check and the open). Where /proc is missing the check before the open has to do.
 */
function checkReachedPath(fd: number, path: string): void {
  let reached: string;
  try {
    reached = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return;
  }
  if (reached !== path) {
    throw codedError(
      `${path} was reached through a symbolic link (it is ${reached}); kube-audit-rest does not follow it`,
      'ELOOP',
    );
  }
}

/**
 * Opens (or creates, mode 0600) the audit log at `path`, which {@link resolveLogPath} made. Throws
 * an Error with a message naming the path and what is wrong, and an errno-style `code` (`ELOOP` for
 * a symbolic link, `EFTYPE` for anything but a regular file, else the open's own code).
 */
export function openLogFile(path: string): OpenLog {
  checkDirectory(dirname(path));
  let fd: number;
  try {
    fd = openSync(path, LOG_OPEN_FLAGS, FILE_MODE);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ELOOP') {
      throw codedError(
        `${path} is a symbolic link; kube-audit-rest does not follow it (audit lines hold Secrets)`,
        'ELOOP',
        error,
      );
    }
    if (code === 'ENXIO') {
      throw codedError(
        `${path} is a FIFO or socket, not a regular file (use --audit-to-std-log for standard output)`,
        'EFTYPE',
        error,
      );
    }
    if (code === 'EISDIR') throw codedError(`${path} is a directory, not a regular file`, 'EFTYPE', error);
    throw withContext(`cannot open ${path}`, error);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw codedError(
        `${path} is a ${kindOf(st)}, not a regular file (use --audit-to-std-log for standard output)`,
        'EFTYPE',
      );
    }
    checkReachedPath(fd, path);
    const mode = st.mode & 0o7777;
    let narrowedFrom: number | undefined;
    if ((mode & WIDER_THAN_FILE_MODE) !== 0) {
      try {
        fchmodSync(fd, FILE_MODE);
      } catch (error) {
        throw codedError(
          `${path} has mode 0${mode.toString(8)}, which shows audit lines to others, and cannot be narrowed to 0600: ${asError(error).message}`,
          errnoCode(error) ?? 'EPERM',
          error,
        );
      }
      narrowedFrom = mode;
    }
    return { fd, dev: st.dev, ino: st.ino, size: st.size, narrowedFrom };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** Names the space probe's file beside the log: hidden, and never taken for a log or a backup. */
export function probeFileName(logPath: string): string {
  return `.${basename(logPath)}.space-probe`;
}

/**
 * Proves that `bytes` bytes can be written in the log's directory without writing into the log: a
 * probe file (see {@link probeFileName}) is created, filled, optionally synced (for the fsync mode,
 * where some file systems report a full disk only then), closed and deleted again. Returns the
 * error that stopped it, or undefined. Never throws.
 */
export function probeSpace(dir: string, name: string, bytes: number, sync: boolean): Error | undefined {
  const path = join(dir, name);
  let fd: number | undefined;
  try {
    try {
      fd = openSync(path, PROBE_OPEN_FLAGS, FILE_MODE);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
      unlinkSync(path); // left by a crash: ours to remove (unlink never follows a symbolic link)
      fd = openSync(path, PROBE_OPEN_FLAGS, FILE_MODE);
    }
    if (!fstatSync(fd).isFile()) throw codedError(`${path} is not a regular file`, 'EFTYPE');
    writeFully(fd, new Uint8Array(bytes), 0, bytes);
    if (sync) fdatasyncSync(fd);
    return undefined;
  } catch (error) {
    return withContext(`cannot write a probe file in ${dir}`, error);
  } finally {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {}
      try {
        unlinkSync(path);
      } catch {}
    }
  }
}
