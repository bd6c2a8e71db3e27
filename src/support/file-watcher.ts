/**
 * @module Watches a set of files (a certificate, its key, a client CA, a token file) and hands their
 * contents to a callback when any of them changes: it caches bytes and says when they changed; what
 * the bytes mean, and whether they are good, is the caller's business.
 *
 * Two triggers, as mounted Secrets need: a watch on each file's directory (the kubelet swaps a
 * `..data` symlink rather than writing the file, so the file itself never changes in place), with a
 * short debounce so that a non-atomic update of two files is seen as one; and a poll, in case an
 * event is missed (an overlay file system, a watch that died). Checks run one at a time.
 */

import type { FSWatcher } from 'node:fs';
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Logger } from './log.ts';

/** Options for {@link watchFiles}; defaults are stated beside each and resolved in watchFiles. */
export type FileWatcherOptions = {
  /** The files, read as UTF-8 text, in this order; `onChange` receives their contents in the same order. */
  files: readonly string[];
  /**
   * Told the files' contents when they differ from the last contents it was told (or on a forced
   * check); returns whether it took them. A refused set is not offered again until a file changes.
   */
  onChange: (contents: readonly string[]) => boolean | Promise<boolean>;
  /** Told when a file cannot be read; once per distinct error unless the check was forced. */
  onReadError: (err: Error) => void;
  /** The contents the caller already holds, so the first poll does not offer them again. */
  initial: readonly string[];
  /** Where a lost watch is reported. */
  logger: Logger;
  /** How often the files are read and compared, in ms; 0 disables. Default 10 000. */
  reloadIntervalMs?: number;
  /** Watch the files' directories. Default true. */
  watch?: boolean;
  /** Quiet time after the last file event before the check, in ms. Default 200. */
  debounceMs?: number;
};

/** A running watch; see {@link watchFiles}. */
export type FileWatcher = {
  /**
   * Reads the files now and offers them to `onChange` even if unchanged (SIGHUP); resolves with
   * what `onChange` returned, or false when a file could not be read. Never rejects.
   */
  checkNow(): Promise<boolean>;
  /** Stops watching and polling; resolves once a check in progress has finished. */
  close(): Promise<void>;
};

/** Poll every 10 s: the kubelet refreshes mounted Secrets about once a minute, so a missed event costs little. */
export const DEFAULT_RELOAD_INTERVAL_MS = 10_000;
/** Long enough to see both files of a non-atomic update (cp cert; cp key); the kubelet's swap is one event burst. */
export const DEFAULT_DEBOUNCE_MS = 200;

/** Reads `file` as text; the error names the file and the reason (ENOENT, EACCES...). */
export async function readTextFile(what: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`${what} ${file}: cannot read (${reason})`, { cause: err });
  }
}

function sameContents(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((text, i) => text === b[i]);
}

/** Starts watching `options.files`; see the module comment. */
export function watchFiles(options: FileWatcherOptions): FileWatcher {
  const reloadIntervalMs = options.reloadIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const log = options.logger;
  let offered: readonly string[] | undefined = options.initial;
  let lastReadError: string | undefined;
  let closed = false;

  async function check(force: boolean): Promise<boolean> {
    if (closed) return false;
    let contents: string[];
    try {
      contents = await Promise.all(options.files.map((f) => readTextFile('file', f)));
    } catch (err) {
      const error = err as Error;
      if (force || error.message !== lastReadError) options.onReadError(error);
      lastReadError = error.message;
      offered = undefined; // once readable again, offer whatever is there
      return false;
    }
    lastReadError = undefined;
    if (!force && sameContents(offered, contents)) return false;
    offered = contents;
    if (closed) return false;
    return options.onChange(contents);
  }

  /** Checks run one at a time; requests that arrive while one waits to start share it. */
  let chain: Promise<unknown> = Promise.resolve();
  let queued: Promise<boolean> | undefined;
  let queuedForce = false;
  function requestCheck(force: boolean): Promise<boolean> {
    queuedForce ||= force;
    if (queued) return queued;
    const run = chain.then(() => {
      queued = undefined;
      const f = queuedForce;
      queuedForce = false;
      return check(f);
    });
    chain = run.catch((err) => log.error('file check failed unexpectedly', { err }));
    queued = run.catch(() => false);
    return queued;
  }

  let debounce: Timer | undefined;
  const names = new Set(options.files.map((f) => basename(f)));
  function onEvent(_event: string, filename: string | Buffer | null): void {
    // Other files in the directory (an audit log written beside the certificate, say) must not
    // cost a callback per write: only the watched names and the kubelet's `..data`-style entries
    // count. Without a name the event may be anything, so it counts.
    if (typeof filename === 'string' && !names.has(filename) && !filename.startsWith('..')) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => void requestCheck(false), debounceMs);
  }

  const watchers: FSWatcher[] = [];
  if (options.watch ?? true) {
    // Directories, not files: the kubelet swaps a `..data` symlink rather than writing the file.
    for (const dir of new Set(options.files.map((f) => dirname(f)))) {
      try {
        const watcher = watch(dir, onEvent);
        watcher.on('error', (err) => {
          log.warn('stopped watching a directory; polling continues', { dir, err });
          watcher.close();
        });
        watchers.push(watcher);
      } catch (err) {
        log.warn('cannot watch a directory; polling only', { dir, err });
      }
    }
  }
  const poll =
    reloadIntervalMs > 0 ? setInterval(() => void requestCheck(false), reloadIntervalMs) : undefined;
  poll?.unref();

  return {
    checkNow: () => requestCheck(true),
    async close() {
      closed = true;
      clearInterval(poll);
      clearTimeout(debounce);
      for (const watcher of watchers) watcher.close();
      await chain;
    },
  };
}
