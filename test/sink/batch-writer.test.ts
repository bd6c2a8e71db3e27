import { afterEach, describe, expect, it } from 'bun:test';
import type { Batch, BatchResult, BatchTarget } from '../../src/sink/batch-writer.ts';
import { createBatchWriter } from '../../src/sink/batch-writer.ts';
import type { LineSink, SinkObserver } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { jsonLine, recordingLogger, waitFor } from './helpers.ts';

const decoder = new TextDecoder();

/** The uids of a batch's lines, read back from its bytes. */
function uidsOf(batch: Batch): string[] {
  const text = decoder.decode(batch.pieces ? Buffer.concat(batch.pieces as Uint8Array[]) : batch.bytes);
  const uids: string[] = [];
  let start = 0;
  for (let i = 0; i < batch.count; i++) {
    const end = batch.ends[i] as number;
    uids.push((JSON.parse(text.slice(start, end)) as { uid: string }).uid);
    start = end;
  }
  return uids;
}

/** An observer that records readiness changes and failed counts. */
function recorder() {
  const ready: boolean[] = [];
  let failed = 0;
  const observer: SinkObserver = {
    readyChanged: (value) => ready.push(value),
    failed: (lines) => {
      failed += lines;
    },
  };
  return { ready, observer, failedLines: () => failed };
}

function errno(code: string): Error {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

describe('createBatchWriter', () => {
  let sink: LineSink | undefined;

  afterEach(async () => {
    await sink?.close().catch(() => {});
    sink = undefined;
  });

  it('keeps one asynchronous batch in flight and sends the lines queued meanwhile as the next batch', async () => {
    const batches: string[][] = [];
    let release: (() => void) | undefined;
    const target: BatchTarget = {
      writeBatch(batch) {
        batches.push(uidsOf(batch));
        if (batches.length > 1) return undefined;
        return new Promise<BatchResult>((resolve) => {
          release = () => resolve(undefined);
        });
      },
      close() {},
    };
    sink = createBatchWriter({ target });
    const first = sink.write(jsonLine('a'));
    await waitFor(() => release !== undefined, 1000, 'the first batch');
    const rest = [sink.write(jsonLine('b')), sink.write(jsonLine('c'))];
    await Bun.sleep(20);
    expect(batches).toEqual([['a']]); // b and c wait behind the batch in flight
    release?.();
    await Promise.all([first, ...rest]);
    expect(batches).toEqual([['a'], ['b', 'c']]);
  });

  it('rejects a write at once when the queue holds maxQueuedBytes', async () => {
    let release: (() => void) | undefined;
    const target: BatchTarget = {
      writeBatch: () =>
        release
          ? undefined
          : new Promise<BatchResult>((resolve) => {
              release = () => resolve(undefined);
            }),
      close() {},
    };
    const { observer, failedLines } = recorder();
    sink = createBatchWriter({ target, maxQueuedBytes: 250, observer });
    const first = sink.write(jsonLine('a', 200));
    const error = await sink.write(jsonLine('b', 100)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkWriteError);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ENOBUFS');
    expect(failedLines()).toBe(1);
    await waitFor(() => release !== undefined, 1000, 'the batch');
    release?.();
    await first;
    await sink.write(jsonLine('c', 100)); // room again once the batch settled
  });

  it('sets each batch deadline writeTimeoutMs after its oldest line was queued', async () => {
    let clock = 1000;
    const deadlines: number[] = [];
    const target: BatchTarget = {
      writeBatch(batch) {
        deadlines.push(batch.deadline);
        return undefined;
      },
      close() {},
    };
    sink = createBatchWriter({ target, writeTimeoutMs: 300, clock: () => clock });
    const a = sink.write(jsonLine('a'));
    clock = 1100;
    const b = sink.write(jsonLine('b')); // same batch: the deadline is a's
    await Promise.all([a, b]);
    clock = 2000;
    await sink.write(jsonLine('c'));
    expect(deadlines).toEqual([1300, 2300]);
  });

  it('becomes ready again without any write once the probe finds it can write', async () => {
    let probes = 0;
    const target: BatchTarget = {
      writeBatch: () => ({ written: 0, error: errno('ENOSPC') }),
      probe(failedBytes) {
        expect(failedBytes).toBe(100);
        probes++;
        return probes < 3 ? errno('ENOSPC') : undefined;
      },
      close() {},
    };
    const { ready, observer } = recorder();
    sink = createBatchWriter({ target, observer, probeIntervalMs: 10 });
    await expect(sink.write(jsonLine('a', 100))).rejects.toBeInstanceOf(SinkWriteError);
    expect(sink.ready()).toBe(false);
    await waitFor(() => sink?.ready() === true, 2000, 'the probe to succeed');
    expect(probes).toBe(3);
    expect(ready).toEqual([false, true]);
  });

  it('stays unready until a write succeeds when the target has no probe', async () => {
    let fail = true;
    const target: BatchTarget = {
      writeBatch: () => (fail ? { written: 0, error: errno('EIO') } : undefined),
      close() {},
    };
    sink = createBatchWriter({ target, probeIntervalMs: 5 });
    await expect(sink.write(jsonLine('a'))).rejects.toBeInstanceOf(SinkWriteError);
    await Bun.sleep(50);
    expect(sink.ready()).toBe(false);
    fail = false;
    await sink.write(jsonLine('b'));
    expect(sink.ready()).toBe(true);
  });

  it('reports every rejected write to observer.failed, whatever the reason', async () => {
    let writes = 0;
    const target: BatchTarget = {
      // Every other batch writes its first line only.
      writeBatch: () => (++writes % 2 === 0 ? { written: 1, error: errno('ENOSPC') } : undefined),
      close() {},
    };
    const { observer, failedLines } = recorder();
    sink = createBatchWriter({ target, observer });
    const results: Promise<void>[] = [];
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 5; i++) results.push(sink.write(jsonLine(`${round}-${i}`)));
      results.push(sink.write(new TextEncoder().encode('no newline')));
      await Promise.allSettled(results);
    }
    await sink.close();
    results.push(sink.write(jsonLine('late')));
    const settled = await Promise.allSettled(results);
    const rejected = settled.filter((r) => r.status === 'rejected');
    for (const r of rejected) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(SinkWriteError);
    expect(rejected.length).toBe(3 * 4 + 6 + 1); // 4 of 5 in each failing batch, 6 malformed, 1 after close
    expect(failedLines()).toBe(rejected.length);
  });

  it('logs a storm of failures at most once per interval, with the counts in between', async () => {
    let clock = 0;
    const { log, entries } = recordingLogger();
    const target: BatchTarget = { writeBatch: () => ({ written: 0, error: errno('ENOSPC') }), close() {} };
    sink = createBatchWriter({ target, log, failureLogIntervalMs: 1000, clock: () => clock });
    for (let i = 0; i < 500; i++) {
      clock += 10; // 500 failures over 5 s
      await sink.write(jsonLine(`u${i}`)).catch(() => {});
    }
    const errors = entries.filter((e) => e.level === 'error');
    expect(errors.length).toBeGreaterThanOrEqual(5);
    expect(errors.length).toBeLessThanOrEqual(6);
    expect(errors.every((e) => e.code === 'ENOSPC')).toBe(true);
    // The entries account for every failure but those after the last entry.
    const logged = errors.reduce((sum, e) => sum + (e.rejectedLines as number), 0);
    expect(logged).toBeGreaterThan(400);
    expect(logged).toBeLessThanOrEqual(500);
  });

  it('settles a batch in flight before close resolves, and reports the sink unready', async () => {
    let release: (() => void) | undefined;
    const target: BatchTarget = {
      writeBatch: () =>
        new Promise<BatchResult>((resolve) => {
          release = () => resolve(undefined);
        }),
      close() {},
    };
    const { ready, observer } = recorder();
    sink = createBatchWriter({ target, observer });
    const pending = sink.write(jsonLine('a'));
    await waitFor(() => release !== undefined, 1000, 'the batch');
    let closed = false;
    const closing = sink.close().then(() => {
      closed = true;
    });
    await Bun.sleep(10);
    expect(closed).toBe(false);
    expect(sink.ready()).toBe(false);
    release?.();
    await closing;
    await pending;
    expect(ready).toEqual([false]);
  });

  it('throws when an option is impossible', () => {
    const target: BatchTarget = { writeBatch: () => undefined, close() {} };
    for (const bad of [
      { maxBatchBytes: 0 },
      { writeTimeoutMs: -1 },
      { maxQueuedBytes: 0 },
      { probeIntervalMs: 0 },
      { probeIntervalMs: Number.POSITIVE_INFINITY },
      { failureLogIntervalMs: Number.NaN },
    ]) {
      expect(() => createBatchWriter({ target, ...bad })).toThrow(RangeError);
    }
  });
});
