import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileWatcher, type FileWatcherOptions, watchFiles } from '../../src/support/file-watcher.ts';
import { silentLogger } from '../../src/support/log.ts';

const DEADLINE_MS = 10_000;

let dir: string;
const open: FileWatcher[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-file-watcher-'));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((w) => w.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** Replaces a file in one step, so that a poll never reads it half written. */
async function replace(file: string, text: string): Promise<void> {
  await writeFile(`${file}.new`, text);
  await rename(`${file}.new`, file);
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(10);
  }
}

/** Two files a and b holding 'a1' and 'b1', watched by polling every 20 ms; what it offered and reported. */
async function watchTwo(
  accept: (contents: readonly string[]) => boolean,
  extra: Partial<FileWatcherOptions> = {},
) {
  const files = [join(dir, 'a'), join(dir, 'b')];
  await Promise.all([writeFile(files[0] as string, 'a1'), writeFile(files[1] as string, 'b1')]);
  const offered: string[][] = [];
  const errors: string[] = [];
  const watcher = watchFiles({
    files,
    initial: ['a1', 'b1'],
    onChange: (contents) => {
      offered.push([...contents]);
      return accept(contents);
    },
    onReadError: (err) => errors.push(err.message),
    logger: silentLogger,
    watch: false,
    reloadIntervalMs: 20,
    ...extra,
  });
  open.push(watcher);
  return { files: files as [string, string], offered, errors, watcher };
}

describe('watchFiles', () => {
  it('offers the contents of every file, in order, once when one changes', async () => {
    const w = await watchTwo(() => true);
    await replace(w.files[1], 'b2');
    await until('the change is offered', () => w.offered.length > 0);
    await Bun.sleep(100); // five more polls: an absence cannot be polled for
    expect(w.offered).toEqual([['a1', 'b2']]);
  });

  it('does not offer a refused set again until a file changes, and offers it when asked to', async () => {
    const w = await watchTwo((c) => c[0] !== 'bad');
    await replace(w.files[0], 'bad');
    await until('the bad set is offered', () => w.offered.length > 0);
    await Bun.sleep(100);
    expect(w.offered).toEqual([['bad', 'b1']]);
    expect(await w.watcher.checkNow()).toBe(false);
    expect(w.offered).toHaveLength(2);
    await replace(w.files[0], 'a3');
    await until('the good set is offered', () => w.offered.length > 2);
    expect(w.offered.at(-1)).toEqual(['a3', 'b1']);
  });

  it('reports a file that cannot be read once, and offers what is there once it can be read again', async () => {
    const w = await watchTwo(() => true);
    rmSync(w.files[1]);
    await until('the read error is reported', () => w.errors.length > 0);
    await Bun.sleep(100);
    expect(w.errors).toEqual([`file ${w.files[1]}: cannot read (ENOENT)`]);
    await replace(w.files[1], 'b1');
    await until('the files are offered again', () => w.offered.length > 0);
    expect(w.offered).toEqual([['a1', 'b1']]);
  });

  it('notices a change through the directory watch alone, with polling off', async () => {
    const w = await watchTwo(() => true, { watch: true, reloadIntervalMs: 0, debounceMs: 20 });
    await replace(w.files[0], 'a2');
    await until('the change is offered', () => w.offered.length > 0);
    expect(w.offered.at(-1)).toEqual(['a2', 'b1']);
  });

  it('offers nothing once closed', async () => {
    const w = await watchTwo(() => true);
    await w.watcher.close();
    await replace(w.files[0], 'a2');
    await Bun.sleep(100);
    expect(await w.watcher.checkNow()).toBe(false);
    expect(w.offered).toEqual([]);
  });
});
