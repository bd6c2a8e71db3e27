import { afterEach, describe, expect, it, spyOn } from 'bun:test';
import * as fs from 'node:fs';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { LineSink, SinkObserver } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { jsonLine, listDir, makeTempDir, mockWriteSync, readUids, removeDir, waitFor } from './helpers.ts';

const AT = new Date('2026-11-28T00:15:29.123Z');

/** An observer that records every call, for assertions. */
function recorder() {
  const calls = {
    written: [] as [number, number][],
    failed: [] as [number, Error][],
    rotated: [] as string[],
    reopened: [] as string[],
  };
  const observer: SinkObserver = {
    written: (lines, bytes) => calls.written.push([lines, bytes]),
    failed: (lines, error) => calls.failed.push([lines, error]),
    rotated: (backup) => calls.rotated.push(backup),
    reopened: (reason) => calls.reopened.push(reason),
  };
  return { calls, observer };
}

/** An errno-style error, as node:fs throws them. */
function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

describe('createFileSink', () => {
  let dir = '';
  let sink: LineSink | undefined;
  const spies: { mockRestore(): void }[] = [];

  afterEach(async () => {
    for (const spy of spies.splice(0)) spy.mockRestore();
    await sink?.close().catch(() => {});
    sink = undefined;
    removeDir(dir);
    dir = '';
  });

  function open(options: Partial<Parameters<typeof createFileSink>[0]> = {}): {
    path: string;
    sink: LineSink;
  } {
    dir ||= makeTempDir('file-sink');
    const path = options.path ?? join(dir, 'kube-audit-rest.log');
    sink = createFileSink({ path, ...options });
    return { path, sink };
  }

  describe('lines in pieces', () => {
    it('copies small lines in pieces into the batch with whole lines, in order, with one writeSync', async () => {
      const { path, sink } = open();
      let writes = 0;
      spies.push(
        mockWriteSync((real, _call, ...args) => {
          writes++;
          return real(...args);
        }),
      );
      const a = jsonLine('a', 300);
      const c = jsonLine('c', 500);
      await Promise.all([
        sink.write(a),
        sink.write([c.subarray(0, 10), c.subarray(10, 200), c.subarray(200)]),
        sink.write([jsonLine('d', 100)]),
      ]);
      expect(writes).toBe(1);
      expect(readUids(path)).toEqual(['a', 'c', 'd']);
    });

    it('writes a large line alone from its pieces with writev, between the batches around it', async () => {
      const { path, sink } = open();
      const writev = spyOn(fs, 'writevSync');
      spies.push(writev);
      const big = jsonLine('big', 200 * 1024);
      const pieces = [big.subarray(0, 7), big.subarray(7, 100_000), big.subarray(100_000)];
      await Promise.all([
        sink.write(jsonLine('first', 100)),
        sink.write(pieces),
        sink.write(jsonLine('last', 100)),
      ]);
      expect(writev).toHaveBeenCalledTimes(1);
      expect(writev.mock.calls[0]?.[1]).toEqual(pieces);
      expect(readUids(path)).toEqual(['first', 'big', 'last']);
      expect(statSync(path).size).toBe(200 + 200 * 1024);
    });

    it('rotates before a large line in pieces that would take the file past the limit', async () => {
      const { path, sink } = open({ maxSizeBytes: 300 * 1024, now: () => AT });
      await sink.write(jsonLine('small', 200 * 1024));
      const big = jsonLine('big', 150 * 1024);
      await sink.write([big.subarray(0, 80_000), big.subarray(80_000)]);
      expect(readUids(path)).toEqual(['big']);
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log'))).toEqual(['small']);
    });

    it('rejects a line whose last piece does not end in a newline, or that has no bytes', async () => {
      const { path, sink } = open();
      const line = jsonLine('x', 100);
      await expect(sink.write([line, line.subarray(0, 5)])).rejects.toThrow(SinkWriteError);
      await expect(sink.write([])).rejects.toThrow(SinkWriteError);
      await sink.write([line, new Uint8Array(0)]); // an empty last piece: the line still ends in \n
      expect(readUids(path)).toEqual(['x']);
    });
  });

  describe('opening', () => {
    it('creates the file with mode 0600 when it does not exist', () => {
      const { path } = open();
      expect(statSync(path).mode & 0o777).toBe(0o600);
    });

    it('appends after the existing lines when reopened after a restart', async () => {
      const first = open();
      await first.sink.write(jsonLine('a'));
      await first.sink.close();
      const second = open();
      await second.sink.write(jsonLine('b'));
      expect(readUids(first.path)).toEqual(['a', 'b']);
    });

    it('throws with the path and the errno cause when the directory is missing', () => {
      dir = makeTempDir('file-sink');
      const path = join(dir, 'missing', 'audit.log');
      let thrown: unknown;
      try {
        createFileSink({ path });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(Error);
      expect((thrown as Error).message).toContain(path);
      expect(((thrown as Error).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    });

    it('throws when the path is a directory', () => {
      dir = makeTempDir('file-sink');
      expect(() => createFileSink({ path: dir })).toThrow(/cannot open audit log file/);
    });

    it('throws when an option is impossible', () => {
      dir = makeTempDir('file-sink');
      const path = join(dir, 'audit.log');
      for (const bad of [
        { maxSizeBytes: 0 },
        { maxSizeBytes: -1 },
        { maxSizeBytes: 1.5 },
        { maxSizeBytes: Number.NaN },
        { maxBackups: -1 },
        { maxBackups: 0.5 },
        { renameCheckIntervalMs: -1 },
        { maxAgeDays: -1 },
        { maxAgeDays: 1.5 },
        { compress: 'yes' as unknown as boolean },
        { fsync: 'batch' as 'never' },
        { fsync: 'none' as 'never' },
        { path: '' },
      ]) {
        expect(() => createFileSink({ path, ...bad })).toThrow();
      }
      expect(existsSync(path)).toBe(false);
    });
  });

  describe('writing', () => {
    it('writes lines handed over in one turn with a single writeSync', async () => {
      const { path, sink } = open();
      const writeSync = spyOn(fs, 'writeSync');
      spies.push(writeSync);
      await Promise.all(Array.from({ length: 100 }, (_, i) => sink.write(jsonLine(`u${i}`, 200))));
      expect(writeSync).toHaveBeenCalledTimes(1);
      expect(readUids(path)).toEqual(Array.from({ length: 100 }, (_, i) => `u${i}`));
    });

    it('reports written lines and bytes to the observer when a batch lands', async () => {
      const { calls, observer } = recorder();
      const { sink } = open({ observer });
      await Promise.all([sink.write(jsonLine('a', 100)), sink.write(jsonLine('b', 50))]);
      expect(calls.written).toEqual([[2, 150]]);
    });

    it('rejects without throwing when a line does not end in a newline', async () => {
      const { path, sink } = open();
      const result = sink.write(new TextEncoder().encode('{"uid":"a"}'));
      await expect(result).rejects.toBeInstanceOf(SinkWriteError);
      await expect(sink.write(new Uint8Array(0))).rejects.toBeInstanceOf(SinkWriteError);
      expect(readFileSync(path, 'utf8')).toBe('');
    });

    it('writes queued lines at once when flushSync is called', () => {
      const { path, sink } = open();
      const pending = [sink.write(jsonLine('a')), sink.write(jsonLine('b'))];
      sink.flushSync();
      expect(readUids(path)).toEqual(['a', 'b']);
      return Promise.all(pending);
    });

    it('flushes queued lines and then rejects new ones when closed', async () => {
      const { path, sink } = open();
      const pending = sink.write(jsonLine('a'));
      await sink.close();
      await pending;
      expect(readUids(path)).toEqual(['a']);
      expect(sink.ready()).toBe(false);
      await expect(sink.write(jsonLine('b'))).rejects.toThrow('sink closed');
    });
  });

  describe('rotation', () => {
    it('names the backup after the base name and the UTC time when the clock is fixed', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ maxSizeBytes: 100, maxBackups: 0, now: () => AT, observer });
      await sink.write(jsonLine('a', 80));
      await sink.write(jsonLine('b', 80));
      await sink.write(jsonLine('c', 80));
      expect(listDir(dir)).toEqual([
        'kube-audit-rest-2026-11-28T00-15-29.123.log',
        'kube-audit-rest-2026-11-28T00-15-29.124.log',
        'kube-audit-rest.log',
      ]);
      expect(calls.rotated).toEqual([
        join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log'),
        join(dir, 'kube-audit-rest-2026-11-28T00-15-29.124.log'),
      ]);
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log'))).toEqual(['a']);
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.124.log'))).toEqual(['b']);
      expect(readUids(path)).toEqual(['c']);
    });

    it('picks the next free name when a backup from an earlier run has the name', async () => {
      dir = makeTempDir('file-sink');
      const taken = join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log');
      writeFileSync(taken, 'earlier run\n');
      const { sink } = open({ maxSizeBytes: 100, maxBackups: 0, now: () => AT });
      await sink.write(jsonLine('a', 80));
      await sink.write(jsonLine('b', 80));
      expect(readFileSync(taken, 'utf8')).toBe('earlier run\n');
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.124.log'))).toEqual(['a']);
    });

    it('counts the size of an existing file when appending to it', async () => {
      dir = makeTempDir('file-sink');
      const path = join(dir, 'kube-audit-rest.log');
      writeFileSync(path, jsonLine('old', 90));
      const { sink } = open({ maxSizeBytes: 100, maxBackups: 0, now: () => AT });
      await sink.write(jsonLine('new', 20));
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log'))).toEqual(['old']);
      expect(readUids(path)).toEqual(['new']);
    });

    it('keeps exactly the newest maxBackups backups when it prunes', async () => {
      let ms = AT.getTime();
      const now = () => {
        ms += 1000;
        return new Date(ms);
      };
      dir = makeTempDir('file-sink');
      writeFileSync(join(dir, 'unrelated.log'), '');
      writeFileSync(join(dir, 'kube-audit-rest-keep.log'), '');
      const { sink } = open({ maxSizeBytes: 100, maxBackups: 2, now });
      for (const uid of ['a', 'b', 'c', 'd', 'e', 'f']) await sink.write(jsonLine(uid, 80));
      const expected = [
        'kube-audit-rest-2026-11-28T00-15-33.123.log',
        'kube-audit-rest-2026-11-28T00-15-34.123.log',
        'kube-audit-rest-keep.log',
        'kube-audit-rest.log',
        'unrelated.log',
      ];
      // Pruning runs off the request path, soon after each rotation.
      await waitFor(() => Bun.deepEquals(listDir(dir), expected), 2000, 'the old backups to go');
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-34.123.log'))).toEqual(['e']);
    });

    it('splits a batch at line boundaries so no file exceeds the limit', async () => {
      const { sink } = open({ maxSizeBytes: 1000, maxBackups: 0 });
      await Promise.all(Array.from({ length: 10 }, (_, i) => sink.write(jsonLine(`u${i}`, 300))));
      const files = listDir(dir);
      expect(files.length).toBe(4);
      const uids: string[] = [];
      for (const name of files.sort(byRotationOrder)) {
        expect(statSync(join(dir, name)).size).toBeLessThanOrEqual(1000);
        uids.push(...readUids(join(dir, name)));
      }
      expect(uids).toEqual(Array.from({ length: 10 }, (_, i) => `u${i}`));
    });

    it('writes a line longer than the limit alone into a fresh file', async () => {
      const { path, sink } = open({ maxSizeBytes: 100, maxBackups: 0 });
      await sink.write(jsonLine('small', 50));
      await Promise.all([sink.write(jsonLine('huge', 500)), sink.write(jsonLine('after', 50))]);
      const files = listDir(dir).sort(byRotationOrder);
      expect(files.map((name) => readUids(join(dir, name)))).toEqual([['small'], ['huge'], ['after']]);
      expect(statSync(path).size).toBe(50);
    });

    it('keeps every line whole and exactly once when many writers race through rotations', async () => {
      const maxSizeBytes = 64 * 1024;
      const { sink } = open({ maxSizeBytes, maxBackups: 0 });
      const writers = 40;
      const perWriter = 500;
      // Each writer awaits its own lines in order, so the files must keep each writer's order too.
      async function writer(w: number): Promise<void> {
        for (let i = 0; i < perWriter; i++) {
          const size = 60 + ((w * 7919 + i * 104729) % 2000);
          if (i % 10 === 0) {
            // Now and then a burst of unawaited lines, so batches vary in size.
            await Promise.all([
              sink.write(jsonLine(`${w}:${i}`, size)),
              sink.write(jsonLine(`${w}:${i + 1}`, 90)),
            ]);
            i++;
          } else {
            await sink.write(jsonLine(`${w}:${i}`, size));
          }
        }
      }
      await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
      const files = listDir(dir).sort(byRotationOrder);
      expect(files.length).toBeGreaterThan(100);
      const seen = new Set<string>();
      const lastSeq = new Map<number, number>();
      for (const name of files) {
        expect(statSync(join(dir, name)).size).toBeLessThanOrEqual(maxSizeBytes);
        for (const uid of readUids(join(dir, name))) {
          expect(seen.has(uid)).toBe(false);
          seen.add(uid);
          const [w, i] = uid.split(':').map(Number) as [number, number];
          expect(i).toBeGreaterThan(lastSeq.get(w) ?? -1);
          lastSeq.set(w, i);
        }
      }
      expect(seen.size).toBe(writers * perWriter);
    });
  });

  describe('reopening', () => {
    it('reopens the path when the file was deleted under it', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ observer });
      await sink.write(jsonLine('a'));
      unlinkSync(path);
      await sink.write(jsonLine('b'));
      expect(readUids(path)).toEqual(['b']);
      expect(calls.reopened).toEqual(['deleted']);
      expect(statSync(path).mode & 0o777).toBe(0o600);
    });

    it('reopens the path when the file was renamed away', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ observer, renameCheckIntervalMs: 0 });
      await sink.write(jsonLine('a'));
      renameSync(path, `${path}.moved`);
      await sink.write(jsonLine('b'));
      expect(readUids(`${path}.moved`)).toEqual(['a']);
      expect(readUids(path)).toEqual(['b']);
      expect(calls.reopened).toEqual(['renamed or removed']);
    });

    it('appends to the new file when another file replaced it at the path', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ observer, renameCheckIntervalMs: 0 });
      await sink.write(jsonLine('a'));
      renameSync(path, `${path}.1`);
      writeFileSync(path, jsonLine('created-by-logrotate'));
      await sink.write(jsonLine('b'));
      expect(readUids(path)).toEqual(['created-by-logrotate', 'b']);
      expect(calls.reopened).toEqual(['replaced']);
    });

    it('keeps writing into the renamed file until the rename check is due', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ observer, renameCheckIntervalMs: 60_000 });
      await sink.write(jsonLine('a'));
      renameSync(path, `${path}.moved`);
      await sink.write(jsonLine('b'));
      expect(readUids(`${path}.moved`)).toEqual(['a', 'b']);
      expect(existsSync(path)).toBe(false);
      expect(calls.reopened).toEqual([]);
    });

    it('rejects and retries later when the path cannot be reopened', async () => {
      dir = makeTempDir('file-sink');
      const sub = join(dir, 'sub');
      mkdirSync(sub);
      const path = join(sub, 'audit.log');
      const { sink } = open({ path, probeIntervalMs: 60_000 });
      fs.rmSync(sub, { recursive: true });
      await expect(sink.write(jsonLine('lost'))).rejects.toBeInstanceOf(SinkWriteError);
      expect(sink.ready()).toBe(false);
      mkdirSync(sub);
      await sink.write(jsonLine('back'));
      expect(readUids(path)).toEqual(['back']);
      expect(sink.ready()).toBe(true);
    });

    it('recreates the file (0600) and becomes ready with no write once its directory is back', async () => {
      dir = makeTempDir('file-sink');
      const sub = join(dir, 'sub');
      mkdirSync(sub);
      const path = join(sub, 'audit.log');
      const { calls, observer } = recorder();
      const ready: boolean[] = [];
      const { sink } = open({
        path,
        probeIntervalMs: 10,
        observer: { ...observer, readyChanged: (value) => ready.push(value) },
      });
      await sink.write(jsonLine('before'));
      fs.rmSync(sub, { recursive: true });
      await expect(sink.write(jsonLine('lost'))).rejects.toBeInstanceOf(SinkWriteError);
      await Bun.sleep(50); // several probes fail meanwhile: the directory is still missing
      expect(sink.ready()).toBe(false);
      mkdirSync(sub);
      await waitFor(() => sink.ready(), 2000, 'the probe to find the directory again');
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(readUids(path)).toEqual([]);
      expect(listDir(sub)).toEqual(['audit.log']); // the probe's own file is gone again
      expect(ready).toEqual([false, true]);
      expect(calls.reopened).toEqual(['deleted']);
      await sink.write(jsonLine('after'));
      expect(readUids(path)).toEqual(['after']);
    });
  });

  describe('failures', () => {
    /** Makes writeSync write half of what it is given, then fail with `code`, once. */
    function failHalfway(code: string) {
      const spy = mockWriteSync((real, call, fd, bytes, offset, length) => {
        if (call === 1) return real(fd, bytes, offset, Math.floor(length / 2));
        if (call === 2) throw errnoError(code);
        return real(fd, bytes, offset, length);
      });
      spies.push(spy);
      return spy;
    }

    it('rejects every line of the batch and truncates the fragment when a write fails halfway', async () => {
      const { calls, observer } = recorder();
      const { path, sink } = open({ observer });
      await sink.write(jsonLine('before', 100));
      failHalfway('EIO');
      const results = await Promise.allSettled([
        sink.write(jsonLine('x', 300)),
        sink.write(jsonLine('y', 300)),
      ]);
      for (const result of results) {
        expect(result.status).toBe('rejected');
        const reason = (result as PromiseRejectedResult).reason as SinkWriteError;
        expect(reason).toBeInstanceOf(SinkWriteError);
        expect((reason.cause as NodeJS.ErrnoException).code).toBe('EIO');
      }
      expect(readUids(path)).toEqual(['before']);
      expect(statSync(path).size).toBe(100);
      expect(calls.failed.map(([lines, error]) => [lines, (error as NodeJS.ErrnoException).code])).toEqual([
        [2, 'EIO'],
      ]);
      expect(sink.ready()).toBe(false);
      await sink.write(jsonLine('after'));
      expect(readUids(path)).toEqual(['before', 'after']);
      expect(sink.ready()).toBe(true);
    });

    it('retries the truncate before the next write when the first truncate fails', async () => {
      const { path, sink } = open();
      await sink.write(jsonLine('before'));
      failHalfway('ENOSPC');
      const realTruncate = fs.ftruncateSync;
      let truncates = 0;
      const truncate = spyOn(fs, 'ftruncateSync').mockImplementation(((fd: number, len?: number) => {
        if (++truncates === 1) throw errnoError('EIO');
        realTruncate(fd, len);
      }) as typeof fs.ftruncateSync);
      spies.push(truncate);
      await expect(sink.write(jsonLine('x', 300))).rejects.toBeInstanceOf(SinkWriteError);
      expect(readFileSync(path, 'utf8').endsWith('\n')).toBe(false); // the fragment is still there
      await sink.write(jsonLine('after'));
      expect(truncates).toBe(2);
      expect(readUids(path)).toEqual(['before', 'after']);
    });

    it('resolves the lines already in a rotated file when the rest of the batch fails', async () => {
      const { path, sink } = open({ maxSizeBytes: 250, maxBackups: 0, now: () => AT });
      spies.push(
        mockWriteSync((real, call, fd, bytes, offset, length) => {
          if (call === 2) throw errnoError('ENOSPC');
          return real(fd, bytes, offset, length);
        }),
      );
      const results = await Promise.allSettled([
        sink.write(jsonLine('a', 100)),
        sink.write(jsonLine('b', 100)),
        sink.write(jsonLine('c', 100)),
        sink.write(jsonLine('d', 100)),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
      expect(readUids(join(dir, 'kube-audit-rest-2026-11-28T00-15-29.123.log'))).toEqual(['a', 'b']);
      expect(readUids(path)).toEqual([]);
    });

    it('turns an observer that throws into a log entry, not a crash', async () => {
      const { sink } = open({
        observer: {
          written: () => {
            throw new Error('metrics broke');
          },
        },
      });
      await sink.write(jsonLine('a'));
      expect(sink.ready()).toBe(true);
    });
  });

  describe("fsync: 'always'", () => {
    it('acknowledges a batch after one fdatasync shared by all its lines', async () => {
      const { path, sink } = open({ fsync: 'always' });
      const sync = spyOn(fs, 'fdatasyncSync');
      spies.push(sync);
      await Promise.all(Array.from({ length: 50 }, (_, i) => sink.write(jsonLine(`u${i}`))));
      expect(sync).toHaveBeenCalledTimes(1);
      expect(readUids(path).length).toBe(50);
    });

    it('syncs the directory as well when a rotation creates a new file', async () => {
      const { sink } = open({ fsync: 'always', maxSizeBytes: 100, maxBackups: 0 });
      const dataSync = spyOn(fs, 'fdatasyncSync');
      const dirSync = spyOn(fs, 'fsyncSync');
      spies.push(dataSync, dirSync);
      await Promise.all([sink.write(jsonLine('a', 80)), sink.write(jsonLine('b', 80))]);
      expect(dataSync).toHaveBeenCalledTimes(2); // one per file the batch touched
      expect(dirSync).toHaveBeenCalledTimes(1);
      expect(listDir(dir).length).toBe(2);
    });

    it('rejects the batch and removes its lines when fdatasync fails', async () => {
      const { path, sink } = open({ fsync: 'always' });
      await sink.write(jsonLine('before'));
      spies.push(
        spyOn(fs, 'fdatasyncSync').mockImplementationOnce(() => {
          throw errnoError('EIO');
        }),
      );
      await expect(sink.write(jsonLine('x'))).rejects.toBeInstanceOf(SinkWriteError);
      expect(readUids(path)).toEqual(['before']);
    });
  });
});

/** Sorts backups by the time in their name, and the current file (no time) last. */
function byRotationOrder(a: string, b: string): number {
  const rank = (name: string) => (/\d{4}-\d{2}-\d{2}T/.test(name) ? name : '~');
  return rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0;
}
