/** @module Helpers shared by the sink tests: temporary directories and tmpfs mounts, audit-like lines, reading files back, recorded logs, polling, socket pairs. */

import { dlopen, FFIType } from 'bun:ffi';
import { spyOn } from 'bun:test';
import * as fs from 'node:fs';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../src/support/log.ts';

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

/** Polls `check` every few milliseconds until it is true; throws, naming `what`, after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** One entry a {@link recordingLogger} kept. */
export type LogEntry = { level: string; component: string; msg: string } & Record<string, unknown>;

/** A real logger (JSON lines) whose entries are parsed into `entries` instead of going to stderr. */
export function recordingLogger(): { log: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const log = createLogger({ write: (text) => entries.push(JSON.parse(text) as LogEntry) });
  return { log, entries };
}

/** Whether the tests run as root (needed to mount a tmpfs and to change users). */
export const isRoot = process.getuid?.() === 0;

/**
 * Mounts a tmpfs of `size` (mount's syntax, e.g. `64k`) on a fresh temporary directory, so a test
 * can fill a real file system. Needs root; throws if the mount fails. Undo with {@link unmountTmpfs}.
 */
export function mountTmpfs(label: string, size: string): string {
  const dir = makeTempDir(label);
  const mount = Bun.spawnSync(['mount', '-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  if (mount.exitCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot mount a tmpfs on ${dir}: ${mount.stderr.toString()}`);
  }
  return dir;
}

/** Unmounts a tmpfs made by {@link mountTmpfs} (lazily if it is busy) and removes its directory. */
export function unmountTmpfs(dir: string): void {
  if (!dir) return;
  if (Bun.spawnSync(['umount', dir]).exitCode !== 0) Bun.spawnSync(['umount', '-l', dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** Fills the file system holding `dir` with a filler file until it is full; returns the filler's path. */
export function fillDisk(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = new Uint8Array(4096);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  return path;
}

/**
 * Makes a connected pair of Unix stream sockets (socketpair(2) through bun:ffi, since node:net
 * cannot hand out a bare descriptor): a standard output that is a blocking socket, as under systemd.
 */
export function socketPair(): [number, number] {
  const libc = dlopen(process.platform === 'darwin' ? 'libc.dylib' : 'libc.so.6', {
    socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  });
  const AF_UNIX = 1;
  const SOCK_STREAM = 1;
  const fds = new Int32Array(2);
  try {
    if (libc.symbols.socketpair(AF_UNIX, SOCK_STREAM, 0, fds) !== 0) throw new Error('socketpair failed');
  } finally {
    libc.close();
  }
  return [fds[0] as number, fds[1] as number];
}
