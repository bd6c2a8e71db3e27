/**
 * @module Reading one log file in chunks from an offset: a plain file through its descriptor, a `.gz` as a stream.
 *
 * A plain file is read with positioned reads on a descriptor opened once, so it can be finished
 * after it was renamed, compressed or pruned. A `.gz` backup has no random access: it is
 * decompressed from the start and the first `offset` bytes are thrown away, so offsets are always
 * counted in uncompressed bytes and a checkpoint taken on the plain file holds for its `.gz` twin.
 */

import { closeSync, createReadStream, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { readHeadFd } from './log-files.ts';

/** A source of a file's bytes, in order, from the offset it was opened at. */
export interface FileReader {
  /** Reads up to `max` bytes; an empty array at the end of what the file holds now. */
  read(max: number): Promise<Uint8Array>;
  /** Uncompressed bytes from the start of the file to the next byte `read` returns. */
  readonly position: number;
  /** The file's size now (plain) or its compressed size (a `.gz`). */
  size(): number;
  /** Bytes of the file on disk not yet read (compressed bytes for a `.gz`); for the lag metric. */
  unreadOnDisk(): number;
  /** Up to `count` leading uncompressed bytes seen so far (a `.gz`) or read now (plain). */
  head(count: number): Uint8Array;
  /** Sets the next read back to `offset` (plain files only; after a truncation). */
  seek(offset: number): void;
  /** Releases the descriptor or stream. */
  close(): void;
}

/** Opens a plain file for reading from `offset`; throws with the path if it cannot be opened. */
export function openPlainReader(path: string, offset: number): FileReader {
  const fd = openSync(path, 'r');
  let position = offset;
  return {
    get position() {
      return position;
    },
    async read(max) {
      // A fresh buffer per read: the lines handed out are views into it and must stay valid.
      const buffer = new Uint8Array(max);
      const n = readSync(fd, buffer, 0, max, position);
      position += n;
      return buffer.subarray(0, n);
    },
    size: () => fstatSync(fd).size,
    unreadOnDisk: () => Math.max(0, fstatSync(fd).size - position),
    head: (count) => readHeadFd(fd, count),
    seek(offset) {
      position = offset;
    },
    close: () => closeSync(fd),
  };
}

/**
 * Opens a `.gz` file for streaming from uncompressed `offset` (the bytes before it are
 * decompressed and dropped). A corrupt or truncated archive ends the stream early; the caller
 * sees an end of file and `truncated()` says so.
 */
export function openGzipReader(
  path: string,
  offset: number,
  headBytes: number,
): FileReader & { truncated(): boolean } {
  const source = createReadStream(path);
  const gunzip = createGunzip();
  source.on('error', (error) => gunzip.destroy(error));
  source.pipe(gunzip);
  const chunks = (gunzip as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  let position = 0;
  let leftover: Uint8Array | undefined;
  let ended = false;
  let corrupt = false;
  const seen: Uint8Array[] = [];
  let seenBytes = 0;
  const compressedSize = statSync(path, { throwIfNoEntry: false })?.size ?? 0;

  async function nextChunk(): Promise<Uint8Array | undefined> {
    if (leftover) {
      const chunk = leftover;
      leftover = undefined;
      return chunk;
    }
    if (ended) return undefined;
    try {
      const step = await chunks.next();
      if (step.done) {
        ended = true;
        return undefined;
      }
      const chunk = step.value;
      if (seenBytes < headBytes) {
        seen.push(chunk.subarray(0, headBytes - seenBytes));
        seenBytes += Math.min(chunk.length, headBytes - seenBytes);
      }
      return chunk;
    } catch {
      ended = true;
      corrupt = true;
      return undefined;
    }
  }

  return {
    get position() {
      return position;
    },
    async read(max) {
      for (;;) {
        const chunk = await nextChunk();
        if (!chunk) return new Uint8Array(0);
        if (position < offset) {
          const skip = Math.min(chunk.length, offset - position);
          position += skip;
          if (skip < chunk.length) leftover = chunk.subarray(skip);
          continue;
        }
        const take = chunk.subarray(0, max);
        if (take.length < chunk.length) leftover = chunk.subarray(take.length);
        position += take.length;
        return take;
      }
    },
    size: () => compressedSize,
    unreadOnDisk: () => (ended ? 0 : Math.max(0, compressedSize - source.bytesRead)),
    head: (count) => Buffer.concat(seen).subarray(0, count),
    seek() {
      throw new Error('a compressed backup cannot be read from an arbitrary offset');
    },
    close() {
      source.destroy();
      gunzip.destroy();
    },
    truncated: () => corrupt,
  };
}
