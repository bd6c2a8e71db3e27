/** @module Helpers shared by the sink tests: temporary directories, audit-like lines, and reading files back. */

import { spyOn } from 'bun:test';
import * as fs from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const encoder = new TextEncoder();

/** Creates a fresh temporary directory; remove it with {@link removeDir}. */
export function makeTempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `kar-${label}-`));
}

/** Removes a directory made by {@link makeTempDir}, ignoring one that is already gone. */
export function removeDir(dir: string): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** Makes one JSON line of exactly `size` bytes (newline included) carrying `uid`. */
export function jsonLine(uid: string, size = 0): Uint8Array {
  const bare = `{"uid":"${uid}","pad":""}\n`;
  const pad = Math.max(0, size - bare.length);
  return encoder.encode(`{"uid":"${uid}","pad":"${'x'.repeat(pad)}"}\n`);
}

/**
 * Reads a file and checks that it holds only whole JSON lines: it is empty or ends in `\n`, and
 * every line parses. Returns the parsed uids in file order; throws on any fragment.
 */
export function readUids(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error(`${path} does not end with a newline: a fragment remains`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => (JSON.parse(line) as { uid: string }).uid);
}

/** Lists the names in a directory, sorted. */
export function listDir(dir: string): string[] {
  return readdirSync(dir).sort();
}

/** A `writeSync` call with its range resolved: write `length` bytes of `bytes` from `offset` to `fd`. */
export type WriteCall = (fd: number, bytes: Uint8Array, offset: number, length: number) => number;

/**
 * Replaces node:fs `writeSync` (which the sinks use) with `impl`, which receives the real one and
 * the number of this call (from 1). Restore it with the returned spy's `mockRestore()`.
 */
export function mockWriteSync(
  impl: (real: WriteCall, call: number, ...args: Parameters<WriteCall>) => number,
) {
  const original = fs.writeSync;
  const real: WriteCall = (fd, bytes, offset, length) => original(fd, bytes, offset, length);
  let calls = 0;
  return spyOn(fs, 'writeSync').mockImplementation(((
    fd: number,
    bytes: Uint8Array,
    offset?: number | null,
    length?: number | null,
  ) => {
    const start = offset ?? 0;
    return impl(real, ++calls, fd, bytes, start, length ?? bytes.length - start);
  }) as typeof fs.writeSync);
}
