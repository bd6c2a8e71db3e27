import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test';
import { mkdirSync, readdirSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { LineSink } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import {
  fillDisk,
  isRoot,
  jsonLine,
  listDir,
  mockWriteSync,
  mountTmpfs,
  readUids,
  recordingLogger,
  unmountTmpfs,
  waitFor,
} from './helpers.ts';

/** The tmpfs is this small so that filling it takes a few dozen lines. */
const TMPFS_SIZE = '64k';
/** Space taken by a filler file, freed later to let writes succeed again. */
const FILLER_BYTES = 40 * 1024;
/** Line size chosen not to divide the 4 KiB page, so a line straddles pages and the failing write is partial. */
const LINE_BYTES = 1337;
/** Probe interval in these tests: fast, so recovery is seen within a few milliseconds. */
const PROBE_MS = 10;

describe.skipIf(!isRoot)(
  'createFileSink on a real full disk (a tmpfs; needs root, skipped otherwise)',
  () => {
    let dir = '';
    let sink: LineSink | undefined;

    beforeAll(() => {
      // As root the mount must work; if it does not, this suite fails rather than skipping quietly.
      dir = mountTmpfs('disk-full', TMPFS_SIZE);
    });

    afterEach(async () => {
      await sink?.close().catch(() => {});
      sink = undefined;
      for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    });

    afterAll(() => unmountTmpfs(dir));

    it('rejects the write that does not fit, leaves only whole lines, and is ready again with no write once space is freed', async () => {
      const path = join(dir, 'audit.log');
      const failed: [number, string | undefined][] = [];
      const ready: boolean[] = [];
      sink = createFileSink({
        path,
        maxSizeBytes: Number.POSITIVE_INFINITY,
        probeIntervalMs: PROBE_MS,
        observer: {
          failed: (lines, error) => failed.push([lines, (error as NodeJS.ErrnoException).code]),
          readyChanged: (value) => ready.push(value),
        },
      });
      writeFileSync(join(dir, 'filler'), new Uint8Array(FILLER_BYTES));

      // Record short writes, to prove a fragment really reached the disk before the failure.
      let shortWrites = 0;
      const spy = mockWriteSync((real, _call, fd, bytes, offset, length) => {
        const n = real(fd, bytes, offset, length);
        if (n < length) shortWrites++;
        return n;
      });

      const written: string[] = [];
      let failure: unknown;
      try {
        for (let i = 0; i < 100 && failure === undefined; i++) {
          const uid = `line-${i}`;
          await sink.write(jsonLine(uid, LINE_BYTES)).then(
            () => written.push(uid),
            (error: unknown) => {
              failure = error;
            },
          );
        }
        // A whole batch on the still-full disk: every line rejects, none of it stays.
        const batch = await Promise.allSettled(
          Array.from({ length: 5 }, (_, i) => sink?.write(jsonLine(`batch-${i}`, LINE_BYTES))),
        );
        expect(batch.map((result) => result.status)).toEqual(Array(5).fill('rejected'));
      } finally {
        spy.mockRestore();
      }

      expect(failure).toBeInstanceOf(SinkWriteError);
      expect(((failure as Error).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(written.length).toBeGreaterThan(0);
      expect(shortWrites).toBeGreaterThan(0);
      expect(readUids(path)).toEqual(written);
      expect(statSync(path).size).toBe(written.length * LINE_BYTES);
      expect(failed).toEqual([
        [1, 'ENOSPC'],
        [5, 'ENOSPC'],
      ]);
      await Bun.sleep(10 * PROBE_MS); // probes run meanwhile and find the disk still full
      expect(sink.ready()).toBe(false);

      unlinkSync(join(dir, 'filler'));
      await waitFor(() => sink?.ready() === true, 2000, 'the probe to see the space');
      expect(ready).toEqual([false, true]);
      expect(listDir(dir)).toEqual(['audit.log']); // nothing written into the log, no probe file left
      expect(readUids(path)).toEqual(written);
      await sink.write(jsonLine('after', LINE_BYTES));
      expect(readUids(path)).toEqual([...written, 'after']);
    });

    it('rejects a large line in pieces that does not fit and cuts its fragment away', async () => {
      // Over 64 KiB, so it is written alone from its pieces (writev); larger than the whole tmpfs,
      // so the kernel takes part of it before ENOSPC.
      const path = join(dir, 'pieces.log');
      sink = createFileSink({ path, maxSizeBytes: Number.POSITIVE_INFINITY });
      await sink.write(jsonLine('before', LINE_BYTES));
      const big = jsonLine('big', 70 * 1024);
      const pieces = [big.subarray(0, 1000), big.subarray(1000, 50_000), big.subarray(50_000)];
      const error = await sink.write(pieces).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SinkWriteError);
      expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(readUids(path)).toEqual(['before']);
      expect(statSync(path).size).toBe(LINE_BYTES);
      await sink.write([jsonLine('after', LINE_BYTES)]);
      expect(readUids(path)).toEqual(['before', 'after']);
    });

    it('rejects exactly the lines that are not in the files when concurrent writers fill the disk', async () => {
      const path = join(dir, 'audit.log');
      let failedLines = 0;
      sink = createFileSink({
        path,
        maxSizeBytes: 8 * 1024, // rotations happen on the full disk too
        maxBackups: 0,
        probeIntervalMs: PROBE_MS,
        observer: {
          failed: (lines) => {
            failedLines += lines;
          },
        },
      });
      const writers = 16;
      const perWriter = 60;
      const resolved = new Set<string>();
      const rejected = new Set<string>();
      let filler: string | undefined;
      async function writer(w: number): Promise<void> {
        for (let i = 0; i < perWriter; i++) {
          const uid = `${w}:${i}`;
          // The disk fills up after a third of the lines, and is freed again after two thirds.
          if (w === 0 && i === perWriter / 3) filler = fillDisk(dir);
          if (w === 0 && i === (2 * perWriter) / 3 && filler) unlinkSync(filler);
          await sink?.write(jsonLine(uid, 300 + ((w * 31 + i * 17) % 700))).then(
            () => resolved.add(uid),
            (error: unknown) => {
              expect(error).toBeInstanceOf(SinkWriteError);
              rejected.add(uid);
            },
          );
        }
      }
      await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
      expect(rejected.size).toBeGreaterThan(0);
      expect(resolved.size + rejected.size).toBe(writers * perWriter);
      expect(failedLines).toBe(rejected.size);
      const inFiles: string[] = [];
      for (const name of listDir(dir)) inFiles.push(...readUids(join(dir, name))); // throws on a fragment
      expect(inFiles.length).toBe(new Set(inFiles).size);
      expect(new Set(inFiles)).toEqual(resolved);
    });

    it('logs a storm of failures as one entry and probes without spinning', async () => {
      const path = join(dir, 'audit.log');
      const { log, entries } = recordingLogger();
      sink = createFileSink({ path, maxSizeBytes: Number.POSITIVE_INFINITY, probeIntervalMs: PROBE_MS, log });
      const filler = fillDisk(dir);
      for (let round = 0; round < 50; round++) {
        await Promise.allSettled(
          Array.from({ length: 40 }, (_, i) => sink?.write(jsonLine(`${round}-${i}`, 500))),
        );
      }
      // A measuring window, not a wait for something: about 100 probes, all failing. A spinning probe loop
      // would use the whole window on one core; the process' other threads (GC, the runtime's pool) add
      // some tens of ms under a busy machine, so the bound is half the window.
      const cpuBefore = process.cpuUsage();
      await Bun.sleep(1000);
      const cpu = process.cpuUsage(cpuBefore);
      expect((cpu.user + cpu.system) / 1000).toBeLessThan(500);
      const errors = entries.filter((e) => e.level === 'error');
      expect(errors.length).toBe(1); // 2,000 rejected lines and the failed probes within the 10 s interval
      expect(errors[0]?.code).toBe('ENOSPC');
      expect(sink.ready()).toBe(false);
      unlinkSync(filler);
      await waitFor(() => sink?.ready() === true, 2000, 'recovery');
      const recovered = entries.filter((e) => e.msg === 'audit sink can write again');
      expect(recovered.map((e) => [e.via, e.rejectedLines])).toEqual([['probe', 2000]]);
    });

    it('recovers by itself from a deleted file, a removed and re-created directory and a full disk, but not from a directory swapped for a link', async () => {
      const logs = join(dir, 'logs');
      mkdirSync(logs);
      const path = join(logs, 'audit.log');
      const ready: boolean[] = [];
      sink = createFileSink({
        path,
        probeIntervalMs: PROBE_MS,
        observer: { readyChanged: (v) => ready.push(v) },
      });
      await sink.write(jsonLine('a'));

      unlinkSync(path); // deleted: the next write reopens, nothing fails
      await sink.write(jsonLine('b'));
      expect(readUids(path)).toEqual(['b']);

      rmSync(logs, { recursive: true }); // directory gone: the write fails, the probe waits for it
      await expect(sink.write(jsonLine('c'))).rejects.toBeInstanceOf(SinkWriteError);
      mkdirSync(logs);
      await waitFor(() => sink?.ready() === true, 2000, 'the directory to come back');
      expect(statSync(path).mode & 0o777).toBe(0o600);

      const filler = fillDisk(dir); // full: the write fails, the probe waits for space
      await expect(sink.write(jsonLine('d', 5000))).rejects.toBeInstanceOf(SinkWriteError);
      unlinkSync(filler);
      await waitFor(() => sink?.ready() === true, 2000, 'space to come back');
      await sink.write(jsonLine('e'));
      expect(readUids(path)).toEqual(['e']);

      const elsewhere = join(dir, 'elsewhere');
      mkdirSync(elsewhere);
      rmSync(logs, { recursive: true });
      symlinkSync(elsewhere, logs); // swapped for a link: refused, for good
      await expect(sink.write(jsonLine('f'))).rejects.toBeInstanceOf(SinkWriteError);
      await Bun.sleep(10 * PROBE_MS);
      expect(sink.ready()).toBe(false);
      expect(listDir(elsewhere)).toEqual([]);
      expect(ready).toEqual([false, true, false, true, false]);
    });
  },
);
