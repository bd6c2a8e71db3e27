/**
 * @module The forwarder's durable checkpoint: which audit file it was reading and how far it got, written atomically.
 *
 * The checkpoint names a file by identity, not by path: rotation renames the file, compression
 * replaces it with a `.gz` twin, and a path can name a different file tomorrow. The identity is the
 * device and inode plus a fingerprint (SHA-256 of the file's first bytes), which survives a rename,
 * tells a reused inode apart, and finds the file again once it was gzipped (same content, new inode).
 * The offset counts uncompressed bytes of whole lines already delivered.
 */

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Format version written in every checkpoint; a reader refuses any other. */
const CHECKPOINT_VERSION = 1;

/** Owner read and write only, as the audit file: the checkpoint names the file and its inode. */
const CHECKPOINT_FILE_MODE = 0o600;

/** Who a file is: survives renames; a `.gz` twin is found by its fingerprint alone. */
export type FileIdentity = {
  /** Device number, as a decimal string (64-bit values do not fit a double). */
  dev: string;
  /** Inode number, as a decimal string. */
  ino: string;
  /** SHA-256, hex, of the first {@link FileIdentity.fingerprintBytes} bytes of the (uncompressed) content. */
  fingerprint: string;
  /** How many leading bytes the fingerprint covers; 0 when the file was empty. */
  fingerprintBytes: number;
};

/** Where forwarding stands: everything before `offset` in the named file, and in every older file, was delivered. */
export type Checkpoint = {
  /** The file's identity. */
  file: FileIdentity;
  /** The path the file had when the checkpoint was written; for logs and for a person reading it. */
  path: string;
  /** Bytes of whole lines delivered, counted in uncompressed content. */
  offset: number;
  /** The file's size when the checkpoint was written: what is lost if the file is pruned is at least `size - offset`. */
  size: number;
  /**
   * Where the file sorts among the log and its backups, in ms since the epoch: the rotation time in
   * its backup name, or, while it was the live file, the last time it was seen at the log path
   * (earlier than its rotation time, later than every older backup's).
   */
  order: number;
  /** When the checkpoint was written, ms since the epoch. */
  updatedAt: number;
};

function fail(path: string, what: string): never {
  throw new Error(`checkpoint file ${path}: ${what}`);
}

function isDecimal(value: unknown): value is string {
  return typeof value === 'string' && /^\d+$/.test(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Checks a parsed checkpoint's shape; throws naming the first field that is wrong. */
function validateCheckpoint(path: string, value: unknown): Checkpoint {
  if (typeof value !== 'object' || value === null) fail(path, 'not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== CHECKPOINT_VERSION)
    fail(path, `version must be ${CHECKPOINT_VERSION}, got ${String(v.version)}`);
  const file = v.file as Record<string, unknown> | undefined;
  if (typeof file !== 'object' || file === null) fail(path, 'file must be an object');
  if (!isDecimal(file.dev)) fail(path, 'file.dev must be a decimal string');
  if (!isDecimal(file.ino)) fail(path, 'file.ino must be a decimal string');
  if (typeof file.fingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(file.fingerprint)) {
    fail(path, 'file.fingerprint must be 64 hex digits');
  }
  if (!isCount(file.fingerprintBytes)) fail(path, 'file.fingerprintBytes must be a non-negative integer');
  if (typeof v.path !== 'string') fail(path, 'path must be a string');
  for (const key of ['offset', 'size', 'order', 'updatedAt'] as const) {
    if (!isCount(v[key])) fail(path, `${key} must be a non-negative integer`);
  }
  if ((v.offset as number) > (v.size as number)) fail(path, 'offset must not exceed size');
  return {
    file: {
      dev: file.dev,
      ino: file.ino,
      fingerprint: file.fingerprint,
      fingerprintBytes: file.fingerprintBytes,
    },
    path: v.path,
    offset: v.offset as number,
    size: v.size as number,
    order: v.order as number,
    updatedAt: v.updatedAt as number,
  };
}

/**
 * Reads the checkpoint at `path`; undefined if there is none yet. Throws, naming the file and
 * what is wrong, if it exists but cannot be read or is not a checkpoint: starting over silently
 * would forward everything again, so a person should decide (delete it to start over).
 */
export function readCheckpoint(path: string): Checkpoint | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`checkpoint file ${path}: cannot read: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`checkpoint file ${path}: not JSON: ${(error as Error).message}`, { cause: error });
  }
  return validateCheckpoint(path, parsed);
}

/** Serialises a checkpoint as the one-line JSON document {@link readCheckpoint} reads. */
export function formatCheckpoint(checkpoint: Checkpoint): string {
  return `${JSON.stringify({ version: CHECKPOINT_VERSION, ...checkpoint })}\n`;
}

/**
 * Writes the checkpoint so that a crash at any moment leaves either the old or the new one: the
 * text goes to `<path>.tmp`, is fsynced, renamed over `path`, and the directory is fsynced so the
 * rename itself is durable. Throws with the path in the message if any step fails.
 */
export function writeCheckpoint(path: string, checkpoint: Checkpoint): void {
  const temp = `${path}.tmp`;
  const bytes = new TextEncoder().encode(formatCheckpoint(checkpoint));
  try {
    const fd = openSync(temp, 'w', CHECKPOINT_FILE_MODE);
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    const dirFd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch (error) {
    throw new Error(`cannot write checkpoint file ${path}: ${(error as Error).message}`, { cause: error });
  }
}
