/**
 * @module Follows the audit log across rotations and compression, handing out whole lines with the position after them.
 *
 * One file is read at a time, oldest first: a rotated file is finished before the next one is
 * opened, so lines come out in the order they were written. The file being read is held open, so
 * it can be finished after it was renamed, compressed or pruned. A partial last line waits until
 * its newline arrives. Positions name the file by identity (see checkpoint.ts), so they hold across
 * renames and compression; the forwarder stores one after each delivered batch.
 *
 * Loss is never silent: the data of a file that disappears before it was read (pruned by
 * `--logger-max-backups`) is reported through `onDropped`, with its last known size.
 */

import { type BigIntStats, closeSync, openSync, readSync, statSync } from 'node:fs';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { Checkpoint, FileIdentity } from './checkpoint.ts';
import type { FileReader } from './file-reader.ts';
import { openGzipReader, openPlainReader } from './file-reader.ts';
import type { LogFile } from './log-files.ts';
import { FINGERPRINT_BYTES, fingerprintOf, listLogFiles, readHead, sameContent } from './log-files.ts';

/** Default bytes read at a time: large enough to amortise a read, small enough to keep memory flat. */
const DEFAULT_READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Default longest line: far above the largest AdmissionReview the API server sends (its request
 * body limit is 3 MiB, and a review carries at most the old and the new object), so only a file
 * that is not an audit log hits it.
 */
const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

/** How often, while reading, the backups are listed to learn their sizes (so a prune can be measured). */
const SURVEY_INTERVAL_MS = 1000;

/** Step of the backward scan for the last newline when starting at the end of the live file. */
const SCAN_BACK_BYTES = 64 * 1024;

/** Upper bound on internal steps in one {@link Tail.read}, so a file that keeps changing cannot spin it. */
const MAX_STEPS_PER_READ = 64;

const NEWLINE = 0x0a;

/** Where reading stands: a checkpoint without its time. */
export type TailPosition = Omit<Checkpoint, 'updatedAt'>;

/** Where to begin when there is no checkpoint. */
export type StartAt = 'oldest' | 'end';

/** Options for {@link createTail}. */
export type TailOptions = {
  /** The audit log path (`--logger-filename`). Required. */
  path: string;
  /** Resume after this checkpoint. Default: none, so `startAt` applies. */
  resumeFrom?: Checkpoint | undefined;
  /** Without a checkpoint: `'oldest'` reads every backup and the live file; `'end'` only lines written from now. Default `'oldest'`. */
  startAt?: StartAt;
  /** Bytes read from a file at a time. Default 1 MiB. */
  readChunkBytes?: number;
  /** A "line" longer than this is dropped up to its newline and reported. Default 64 MiB. */
  maxLineBytes?: number;
  /** Wall clock in ms. Default `Date.now`. */
  now?: () => number;
  /** Where file changes and losses are logged (never line contents). Default: silent. */
  log?: Logger;
  /** Called with bytes lost: pruned before being read, cut from the file, or not a line. Default: none. */
  onDropped?: (bytes: number, reason: string) => void;
};

/** What one {@link Tail.read} hands out. */
export type TailRead = {
  /** Whole lines in file order, without their newline; views into read buffers (do not modify). */
  lines: Uint8Array[];
  /** The position after the last line handed out; undefined while no file exists yet. */
  position: TailPosition | undefined;
};

/** A follower of the audit log; see the module comment. */
export interface Tail {
  /**
   * Hands out up to `maxLines` whole lines and about `maxBytes` (always at least one line if any
   * is ready) from what the files hold now. Returns no lines when it is caught up; call again later.
   */
  read(maxLines: number, maxBytes: number): Promise<TailRead>;
  /** Bytes on disk not yet handed out (compressed backups by their size on disk). Lists the directory. */
  backlogBytes(): number;
  /** Closes the file being read. */
  close(): void;
}

/** The file being read, and how far. */
type Current = {
  dev: string;
  ino: string;
  /** Up to {@link FINGERPRINT_BYTES} leading bytes: the fingerprint's input. */
  head: Uint8Array;
  fingerprint: Pick<FileIdentity, 'fingerprint' | 'fingerprintBytes'>;
  path: string;
  /** Sort key among the log files; see {@link Checkpoint.order}. */
  order: number;
  /** Still at the log path when last looked. */
  live: boolean;
  compressed: boolean;
  /** Undefined once the file is finished (or when it was never found). */
  reader: FileReader | undefined;
  /** Offset after the last whole line split off (queued or handed out). */
  consumed: number;
  /** Offset after the last line handed out. */
  handedOut: number;
  /** Pieces of the line being read, not yet ended by a newline. */
  partial: Uint8Array[];
  partialBytes: number;
  /** Inside a too-long line: bytes are dropped until the next newline. */
  skipping: boolean;
  /** The file's size when last looked (uncompressed bytes read, for a `.gz`). */
  size: number;
};

function validate(
  options: TailOptions,
): Required<Pick<TailOptions, 'readChunkBytes' | 'maxLineBytes' | 'startAt'>> {
  const readChunkBytes = options.readChunkBytes ?? DEFAULT_READ_CHUNK_BYTES;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const startAt = options.startAt ?? 'oldest';
  if (typeof options.path !== 'string' || options.path === '') {
    throw new TypeError('tail: path must be a non-empty string');
  }
  if (!Number.isSafeInteger(readChunkBytes) || readChunkBytes <= 0) {
    throw new RangeError(`tail: readChunkBytes must be a positive integer, got ${readChunkBytes}`);
  }
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes <= 0) {
    throw new RangeError(`tail: maxLineBytes must be a positive integer, got ${maxLineBytes}`);
  }
  if (startAt !== 'oldest' && startAt !== 'end') {
    throw new RangeError(`tail: startAt must be 'oldest' or 'end', got ${String(startAt)}`);
  }
  return { readChunkBytes, maxLineBytes, startAt };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Finds the offset just after the last newline before `size` in a plain file (0 if none within `limit` bytes). */
function lastLineEnd(filePath: string, size: number, limit: number): number {
  const fd = openSync(filePath, 'r');
  try {
    let end = size;
    while (end > 0 && size - end < limit) {
      const start = Math.max(0, end - SCAN_BACK_BYTES);
      const buffer = new Uint8Array(end - start);
      const n = readSync(fd, buffer, 0, buffer.length, start);
      const at = buffer.subarray(0, n).lastIndexOf(NEWLINE);
      if (at !== -1) return start + at + 1;
      end = start;
    }
    return 0;
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates a follower of the log at `options.path`, positioned at `options.resumeFrom` or, without
 * it, as `options.startAt` says. Nothing is read until the first {@link Tail.read}. Throws on
 * invalid options; a missing log or directory is waited for, not an error.
 */
export function createTail(options: TailOptions): Tail {
  const { readChunkBytes, maxLineBytes, startAt } = validate(options);
  const { path } = options;
  const now = options.now ?? Date.now;
  const log = (options.log ?? silentLogger).child('forward-tail');
  const onDropped = options.onDropped ?? (() => {});

  let cur: Current | undefined;
  let started = false;
  const queue: { line: Uint8Array; end: number }[] = [];
  let queueBytes = 0;
  /** Sizes of backups newer than the current file, by rotation time: what a prune would lose. */
  const known = new Map<number, { path: string; size: number }>();
  let nextSurvey = 0;

  function drop(bytes: number, reason: string, fields: Record<string, unknown>): void {
    if (bytes <= 0) return;
    log.warn('audit log data dropped before it was forwarded', { reason, bytes, ...fields });
    onDropped(bytes, reason);
  }

  /** A current-file record for a file that is gone or not there yet: only its order and identity remain. */
  function placeholder(order: number, identity?: FileIdentity, filePath = path, offset = 0): Current {
    return {
      dev: identity?.dev ?? '',
      ino: identity?.ino ?? '',
      head: new Uint8Array(0),
      fingerprint: identity
        ? { fingerprint: identity.fingerprint, fingerprintBytes: identity.fingerprintBytes }
        : fingerprintOf(new Uint8Array(0)),
      path: filePath,
      order,
      live: false,
      compressed: false,
      reader: undefined,
      consumed: offset,
      handedOut: offset,
      partial: [],
      partialBytes: 0,
      skipping: false,
      size: offset,
    };
  }

  function identityOf(c: Current): FileIdentity {
    return { dev: c.dev, ino: c.ino, ...c.fingerprint };
  }

  function setHead(c: Current, head: Uint8Array): void {
    c.head = head;
    c.fingerprint = fingerprintOf(head);
  }

  function list(): LogFile[] {
    try {
      return listLogFiles(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        log.warn('cannot list the audit log directory', { path, error });
      }
      return [];
    }
  }

  /** Whether `file` is the current file (itself, or its compressed twin). */
  async function isCurrent(file: LogFile, c: Current): Promise<boolean> {
    if (!file.compressed) return file.dev === c.dev && file.ino === c.ino;
    if (c.fingerprint.fingerprintBytes === 0) return false;
    return sameContent(file, identityOf(c));
  }

  /** Files that come after `c`, cheaply (by inode; a `.gz` twin of `c` may be included). */
  function after(files: LogFile[], c: Current | undefined): LogFile[] {
    if (!c) return files;
    return files.filter(
      (f) => (f.live || f.order > c.order) && (f.compressed || f.dev !== c.dev || f.ino !== c.ino),
    );
  }

  /** Remembers the sizes of backups after the current file, and reports those that vanished unread. */
  function survey(files: LogFile[]): void {
    nextSurvey = now() + SURVEY_INTERVAL_MS;
    const present = new Set<number>();
    for (const f of after(files, cur)) {
      if (f.live) continue;
      present.add(f.order);
      const seen = known.get(f.order);
      // A .gz twin is smaller than the plain file it replaced; keep the larger, uncompressed size.
      if (!seen || (!f.compressed && f.size > seen.size)) known.set(f.order, { path: f.path, size: f.size });
    }
    for (const [order, seen] of known) {
      if (cur && order <= cur.order) {
        known.delete(order);
      } else if (!present.has(order)) {
        known.delete(order);
        drop(seen.size, 'backup pruned before it was forwarded', { file: seen.path });
      }
    }
  }

  async function open(file: LogFile, offset: number): Promise<boolean> {
    let reader: FileReader;
    let head: Uint8Array;
    try {
      if (file.compressed) {
        reader = openGzipReader(file.path, offset, FINGERPRINT_BYTES);
        head = await readHead(file, FINGERPRINT_BYTES);
      } else {
        reader = openPlainReader(file.path, offset);
        head = reader.head(FINGERPRINT_BYTES);
      }
    } catch (error) {
      // Gone between listing and opening (compressed, pruned): the next listing decides.
      log.debug('cannot open an audit log file; listing again', { file: file.path, error });
      return false;
    }
    cur = {
      ...placeholder(file.live ? now() : file.order, undefined, file.path, offset),
      dev: file.dev,
      ino: file.ino,
      live: file.live,
      compressed: file.compressed,
      reader,
      size: file.compressed ? offset : file.size,
    };
    setHead(cur, head);
    log.info('reading audit log file', { file: file.path, offset, compressed: file.compressed });
    return true;
  }

  /** Positions the tail at the start: the checkpoint's file, or the oldest file, or the live file's end. */
  async function begin(): Promise<void> {
    started = true;
    const files = list();
    const cp = options.resumeFrom;
    if (cp) {
      for (const f of files) {
        if (await sameContent(f, cp.file)) {
          if (await open(f, cp.offset)) return;
        }
      }
      drop(cp.size - cp.offset, 'checkpointed file gone before it was forwarded', { file: cp.path });
      if (cp.size - cp.offset <= 0) log.info('checkpointed audit log file is gone', { file: cp.path });
      cur = placeholder(cp.order, cp.file, cp.path, cp.offset);
      return;
    }
    const live = files.find((f) => f.live);
    if (startAt === 'end' && live) {
      let end: number;
      try {
        end = lastLineEnd(live.path, live.size, maxLineBytes);
      } catch {
        end = 0; // gone meanwhile: the next file is read from its start
      }
      if (await open(live, end)) return;
    }
    cur = undefined; // the first file to appear is read from its start
  }

  /** Splits a chunk into whole lines onto the queue; the unfinished rest waits in `partial`. */
  function split(c: Current, chunk: Uint8Array): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) break;
      const pieceEnd = nl;
      if (c.skipping) {
        drop(c.partialBytes + (pieceEnd - start) + 1, 'line longer than the line limit', { file: c.path });
        c.skipping = false;
      } else {
        let line: Uint8Array;
        if (c.partialBytes === 0) line = chunk.subarray(start, pieceEnd);
        else line = Buffer.concat([...c.partial, chunk.subarray(start, pieceEnd)]);
        if (line.length > 0) {
          queue.push({ line, end: c.consumed + line.length + 1 });
          queueBytes += line.length + 1; // file bytes, newline included
        }
      }
      c.consumed += c.partialBytes + (pieceEnd - start) + 1;
      c.partial = [];
      c.partialBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      c.partialBytes += rest.length;
      if (!c.skipping) c.partial.push(rest);
      if (!c.skipping && c.partialBytes > maxLineBytes) {
        c.skipping = true;
        c.partial = [];
      }
    }
  }

  /** The file was cut back (the sink undoing a failed write) or truncated in place (copytruncate). */
  function truncated(c: Current, reader: FileReader, size: number): void {
    const head = reader.head(FINGERPRINT_BYTES);
    queue.length = 0;
    queueBytes = 0;
    c.partial = [];
    c.partialBytes = 0;
    c.skipping = false;
    if (
      c.head.length > 0 &&
      head.length >= c.head.length &&
      bytesEqual(head.subarray(0, c.head.length), c.head)
    ) {
      // Same content at the start: lines were cut from the end. Those already handed out stay forwarded.
      if (size < c.handedOut) {
        log.warn('lines already forwarded were cut from the audit log file', {
          file: c.path,
          bytes: c.handedOut - size,
        });
        c.handedOut = size;
      }
      c.consumed = c.handedOut;
    } else {
      drop(c.size - c.handedOut, 'audit log file truncated before it was forwarded', { file: c.path });
      log.warn('audit log file was truncated; reading it from the start', { file: c.path });
      c.consumed = 0;
      c.handedOut = 0;
    }
    reader.seek(c.consumed);
    setHead(c, head);
    c.size = size;
  }

  /** At the end of the live file: anything to do? Notices truncation and rotation. */
  function checkLive(c: Current, reader: FileReader): boolean {
    const size = reader.size();
    if (size < reader.position) {
      truncated(c, reader, size);
      return true;
    }
    c.size = size;
    if (c.head.length < FINGERPRINT_BYTES && size > c.head.length) setHead(c, reader.head(FINGERPRINT_BYTES));
    let st: BigIntStats | undefined;
    try {
      st = statSync(path, { bigint: true, throwIfNoEntry: false });
    } catch {
      return false; // cannot look (EACCES): keep following the descriptor
    }
    if (st && String(st.dev) === c.dev && String(st.ino) === c.ino) {
      c.order = now();
      return false;
    }
    // Rotated, replaced or deleted: whatever was appended before that is read, then the file is finished.
    c.live = false;
    const backup = list().find((f) => !f.live && !f.compressed && f.dev === c.dev && f.ino === c.ino);
    if (backup) {
      // Its rotation time sorts it exactly, and tells its .gz twin from newer backups.
      c.order = backup.order;
      c.path = backup.path;
    }
    return true;
  }

  /** The current file is complete: reports a trailing fragment, closes it, moves to the next. */
  async function finish(c: Current, reader: FileReader): Promise<boolean> {
    if (c.partialBytes > 0) drop(c.partialBytes, 'incomplete last line in a finished file', { file: c.path });
    if ('truncated' in reader && (reader as { truncated(): boolean }).truncated()) {
      log.error('compressed audit log backup ends early (corrupt or truncated); the rest of it is lost', {
        file: c.path,
        offset: reader.position,
      });
    }
    c.consumed = reader.position;
    if (queue.length === 0) c.handedOut = c.consumed;
    c.size = Math.max(c.size, reader.position);
    c.partial = [];
    c.partialBytes = 0;
    reader.close();
    c.reader = undefined;
    log.debug('finished audit log file', { file: c.path, bytes: reader.position });
    return advance();
  }

  /** Opens the file after the current one, if there is one yet. */
  async function advance(): Promise<boolean> {
    const files = list();
    survey(files);
    const c = cur;
    for (const f of after(files, c)) {
      if (c && (await isCurrent(f, c))) continue;
      return open(f, 0);
    }
    return false;
  }

  /** Makes progress towards a queued line; false when there is nothing to read now. */
  async function step(): Promise<boolean> {
    const c = cur;
    if (!c?.reader) return advance();
    const reader = c.reader;
    if (now() >= nextSurvey) survey(list());
    const chunk = await reader.read(readChunkBytes);
    if (chunk.length > 0) {
      split(c, chunk);
      if (c.compressed) c.size = Math.max(c.size, reader.position);
      return true;
    }
    if (c.compressed || !c.live) return finish(c, reader);
    return checkLive(c, reader);
  }

  function position(): TailPosition | undefined {
    if (!cur || (!cur.reader && cur.dev === '')) return undefined;
    return {
      file: identityOf(cur),
      path: cur.path,
      offset: cur.handedOut,
      size: Math.max(cur.size, cur.handedOut),
      order: cur.order,
    };
  }

  async function read(maxLines: number, maxBytes: number): Promise<TailRead> {
    if (!started) await begin();
    for (let i = 0; queue.length === 0 && i < MAX_STEPS_PER_READ; i++) {
      if (!(await step())) break;
    }
    const lines: Uint8Array[] = [];
    let bytes = 0;
    while (queue.length > 0 && lines.length < maxLines) {
      const next = queue[0] as { line: Uint8Array; end: number };
      if (lines.length > 0 && bytes + next.line.length > maxBytes) break;
      queue.shift();
      queueBytes -= next.line.length + 1;
      lines.push(next.line);
      bytes += next.line.length;
      if (cur) cur.handedOut = next.end;
    }
    if (queue.length === 0 && cur) cur.handedOut = cur.consumed;
    return { lines, position: position() };
  }

  function backlogBytes(): number {
    const files = list();
    let total = queueBytes + (cur?.partialBytes ?? 0) + (cur?.reader?.unreadOnDisk() ?? 0);
    for (const f of after(files, cur)) total += f.size;
    return total;
  }

  function close(): void {
    cur?.reader?.close();
    if (cur) cur.reader = undefined;
  }

  return { read, backlogBytes, close };
}
