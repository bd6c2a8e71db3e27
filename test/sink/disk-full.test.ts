import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { LineSink } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { jsonLine, mockWriteSync, readUids } from './helpers.ts';

/** The tmpfs is this small so that filling it takes a few dozen lines. */
const TMPFS_SIZE = '64k';
/** Space taken by a filler file, freed later to let writes succeed again. */
const FILLER_BYTES = 40 * 1024;
/** Line size chosen not to divide the 4 KiB page, so a line straddles pages and the failing write is partial. */
const LINE_BYTES = 1337;

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)(
  'createFileSink on a full disk (needs root to mount a tmpfs; skipped otherwise)',
  () => {
    let dir = '';
    let mounted = false;
    let sink: LineSink | undefined;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'kar-disk-full-'));
      const mount = Bun.spawnSync(['mount', '-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', dir]);
      // As root the mount must work; if it does not, this suite fails rather than skipping quietly.
      if (mount.exitCode !== 0) throw new Error(`cannot mount a tmpfs on ${dir}: ${mount.stderr.toString()}`);
      mounted = true;
    });

    afterAll(async () => {
      await sink?.close().catch(() => {});
      try {
        if (mounted && Bun.spawnSync(['umount', dir]).exitCode !== 0) Bun.spawnSync(['umount', '-l', dir]);
      } finally {
        rmdirSync(dir);
      }
    });

    it('rejects the write that does not fit, leaves only whole lines, and writes again once space is freed', async () => {
      const path = join(dir, 'audit.log');
      const failed: [number, string | undefined][] = [];
      sink = createFileSink({
        path,
        maxSizeBytes: Number.POSITIVE_INFINITY,
        observer: { failed: (lines, error) => failed.push([lines, (error as NodeJS.ErrnoException).code]) },
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
      expect(sink.ready()).toBe(false);

      unlinkSync(join(dir, 'filler'));
      await sink.write(jsonLine('after', LINE_BYTES));
      expect(readUids(path)).toEqual([...written, 'after']);
      expect(sink.ready()).toBe(true);
    });

    it('rejects a large line in pieces that does not fit and cuts its fragment away', async () => {
      // Over 64 KiB, so it is written alone from its pieces (writev); larger than the whole tmpfs,
      // so the kernel takes part of it before ENOSPC.
      const path = join(dir, 'pieces.log');
      await sink?.close();
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
  },
);
