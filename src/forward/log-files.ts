/**
 * @module The audit log and its backups as the forwarder sees them: listed oldest first, identified by inode and fingerprint.
 *
 * The file sink rotates by renaming the log to a lumberjack backup name (`<base>-<UTC time><ext>`),
 * and with `--logger-compress` later replaces a backup by `<backup>.gz`. Reading in rotation-time
 * order, the live file last, gives the order the lines were written in. A backup and its `.gz` twin
 * hold the same lines; while both exist the plain one is read.
 */

import { createHash } from 'node:crypto';
import {
  type BigIntStats,
  closeSync,
  createReadStream,
  openSync,
  readdirSync,
  readSync,
  statSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { backupTimeFromName, splitLogName } from '../sink/rotation.ts';
import type { FileIdentity } from './checkpoint.ts';

/** How many leading bytes identify a file's content: the first audit line's uid and timestamp sit well within it. */
export const FINGERPRINT_BYTES = 1024;

/** lumberjack's suffix for a compressed backup. */
const GZIP_SUFFIX = '.gz';

/** One file of the log: the live file or a backup, plain or gzip-compressed. */
export type LogFile = {
  /** Its path now. */
  path: string;
  /** True for the file at the log path itself (the one the webhook appends to). */
  live: boolean;
  /** True for a `.gz` backup. */
  compressed: boolean;
  /** Rotation time from the backup name, ms since the epoch; `Infinity` for the live file. */
  order: number;
  /** Device number (decimal). */
  dev: string;
  /** Inode number (decimal). */
  ino: string;
  /** Size on disk in bytes (compressed size for a `.gz`). */
  size: number;
};

/** Stats a path as a {@link LogFile}; undefined if it is missing or not a regular file. */
function statLogFile(
  path: string,
  fields: Pick<LogFile, 'live' | 'compressed' | 'order'>,
): LogFile | undefined {
  let st: BigIntStats | undefined;
  try {
    st = statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined; // vanished or unreadable between readdir and stat: as if it were not there
  }
  if (!st?.isFile()) return undefined;
  return { path, ...fields, dev: String(st.dev), ino: String(st.ino), size: Number(st.size) };
}

/**
 * Lists the log at `logPath` and its backups, oldest first, the live file last. Of a backup and
 * its `.gz` twin only the plain one is listed. Names that are not backups of this log are ignored,
 * as are files that vanish while listing. Throws only if the directory cannot be read.
 */
export function listLogFiles(logPath: string): LogFile[] {
  const name = splitLogName(logPath);
  const liveName = basename(logPath);
  const byTime = new Map<number, LogFile>();
  let live: LogFile | undefined;
  for (const entry of readdirSync(name.dir)) {
    const path = join(name.dir, entry);
    if (entry === liveName) {
      live = statLogFile(path, { live: true, compressed: false, order: Number.POSITIVE_INFINITY });
      continue;
    }
    const at = backupTimeFromName(entry, name);
    if (!at) continue;
    const order = at.getTime();
    const compressed =
      entry.endsWith(GZIP_SUFFIX) &&
      backupTimeFromName(entry.slice(0, -GZIP_SUFFIX.length), name)?.getTime() === order;
    const file = statLogFile(path, { live: false, compressed, order });
    if (!file) continue;
    const twin = byTime.get(order);
    if (!twin || (twin.compressed && !compressed)) byTime.set(order, file);
  }
  const files = [...byTime.values()].sort((a, b) => a.order - b.order);
  if (live) files.push(live);
  return files;
}

/** Reads up to `count` bytes from the start of a plain file through an open descriptor. */
export function readHeadFd(fd: number, count: number): Uint8Array {
  const head = new Uint8Array(count);
  let done = 0;
  while (done < count) {
    const n = readSync(fd, head, done, count - done, done);
    if (n === 0) break;
    done += n;
  }
  return head.subarray(0, done);
}

/** Reads up to `count` bytes from the start of a file's content, decompressing a `.gz`; empty if it cannot be read. */
export async function readHead(
  file: Pick<LogFile, 'path' | 'compressed'>,
  count: number,
): Promise<Uint8Array> {
  if (count === 0) return new Uint8Array(0);
  if (!file.compressed) {
    let fd: number;
    try {
      fd = openSync(file.path, 'r');
    } catch {
      return new Uint8Array(0);
    }
    try {
      return readHeadFd(fd, count);
    } finally {
      closeSync(fd);
    }
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const source = createReadStream(file.path);
  const gunzip = createGunzip();
  source.on('error', (error) => gunzip.destroy(error));
  source.pipe(gunzip);
  try {
    for await (const chunk of gunzip as AsyncIterable<Uint8Array>) {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= count) break;
    }
  } catch {
    // A truncated or corrupt .gz, or one removed meanwhile: whatever came out is all there is.
  } finally {
    source.destroy();
    gunzip.destroy();
  }
  return Buffer.concat(chunks).subarray(0, count);
}

/** Hashes a file's leading bytes into the fingerprint part of a {@link FileIdentity}. */
export function fingerprintOf(head: Uint8Array): Pick<FileIdentity, 'fingerprint' | 'fingerprintBytes'> {
  return {
    fingerprint: createHash('sha256').update(head).digest('hex'),
    fingerprintBytes: head.length,
  };
}

/**
 * Whether `file` holds the content `identity` names: a plain file must have the same device and
 * inode and the same leading bytes (an inode can be reused after a delete); a `.gz` must
 * decompress to the same leading bytes. An identity with no fingerprint (its file was empty)
 * matches a plain file by inode alone and never a `.gz`.
 */
export async function sameContent(file: LogFile, identity: FileIdentity): Promise<boolean> {
  if (!file.compressed && (file.dev !== identity.dev || file.ino !== identity.ino)) return false;
  if (identity.fingerprintBytes === 0) return !file.compressed;
  const head = await readHead(file, identity.fingerprintBytes);
  if (head.length !== identity.fingerprintBytes) return false;
  return fingerprintOf(head).fingerprint === identity.fingerprint;
}
