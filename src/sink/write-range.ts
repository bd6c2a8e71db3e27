/**
 * @module Synchronous write loops: a byte range, or a line in pieces, written whole or not at all to a descriptor.
 *
 * The file sink writes from the JavaScript thread: a regular file never makes a writer wait for a
 * reader, and a write into the page cache costs less than a hop to a thread pool (measured in
 * testing/README.md). These loops only handle partial writes; undoing what a failed write left is
 * the caller's business, since only the caller knows whether it can truncate.
 */

import { writeSync, writevSync } from 'node:fs';

/** Reads the errno code (`ENOSPC`, `EAGAIN`, ...) of an error from node:fs, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

/** Turns anything thrown into an Error, keeping an Error as it is. */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Writes `bytes[start, end)` to `fd`, looping on partial writes. Throws the errno error of the first
 * failed write (EAGAIN included: a regular file never answers it); bytes written before a throw stay
 * written, and undoing them is the caller's business.
 */
export function writeFully(fd: number, bytes: Uint8Array, start: number, end: number): void {
  let offset = start;
  while (offset < end) {
    const n = writeSync(fd, bytes, offset, end - offset);
    if (n <= 0) throw Object.assign(new Error('write took no bytes'), { code: 'EIO' });
    offset += n;
  }
}

/**
 * Writes `pieces` in order to `fd`: one writev, then {@link writeFully} for whatever the kernel did
 * not take. Errors as writeFully's.
 */
export function writePiecesFully(fd: number, pieces: readonly Uint8Array[]): void {
  let skip = writevSync(fd, pieces as Uint8Array[]);
  for (const piece of pieces) {
    if (skip >= piece.length) {
      skip -= piece.length;
      continue;
    }
    writeFully(fd, piece, skip, piece.length);
    skip = 0;
  }
}
