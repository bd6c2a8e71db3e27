/**
 * @module What durability costs the file sink, in process: acknowledged lines per second with `fsync: 'never'` and `'always'` at the same concurrency, and what one readiness probe costs.
 *
 * `bun testing/bench/sink-durability.ts [--seconds=1] [--rounds=5] [--concurrency=1,32,128] [--work-us=0,50]`
 *
 * Each cell runs `concurrency` writers against a fresh file in `BENCH_DIR` (default: the temp
 * directory, so the disk under it is what is measured). A shared disk's flush latency drifts by
 * several times within minutes, so the variants of a cell take turns: `rounds` rounds of
 * `seconds` each, every variant once per round, and the table gives the median round. A writer does `work-us` microseconds of CPU
 * work (standing in for what the server does per request: TLS, parsing, the answer), then awaits
 * `write()` of a 2.3 KiB line (the lease update's size), and starts over; so it is a closed loop
 * like wrk's connections. Three sinks: `never`; `always` (one fdatasync per batch on the event
 * loop, what the file sink does); and `always, fdatasync on the thread pool` (a batch target that
 * returns a promise, kept here only to show why the sink does not do that). Lines per batch is how
 * many writers shared each flush (group commit).
 *
 * The probe rows time `probeSpace`, the write-and-delete of a probe file the file sink runs once a
 * second while it cannot write, at the sizes it uses (4 KiB up to 1 MiB), with and without the
 * fdatasync of `fsync: 'always'`.
 */

import { closeSync, fdatasync, fdatasyncSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Batch, BatchResult } from '../../src/sink/batch-writer.ts';
import { createBatchWriter } from '../../src/sink/batch-writer.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import { probeSpace } from '../../src/sink/open-log.ts';
import type { LineSink, SinkObserver } from '../../src/sink/sink.ts';
import { writeFully } from '../../src/sink/write-range.ts';
import { fixed, int, table } from './report.ts';

/** The lease update's size: half of the mix, and the most common request. */
const LINE_BYTES = 2359;
/** Unmeasured start of each run, so the file exists and the JIT has settled. */
const WARMUP_MS = 200;
/** Appends timed for the disk's own flush latency. */
const FLUSH_SAMPLES = 300;
/** Timing rounds of each probe size; the median is reported. */
const PROBE_ROUNDS = 9;
/** Probes per timing round. */
const PROBES_PER_ROUND = 200;

type Variant = 'never' | 'always' | 'always, fdatasync on the thread pool';
const VARIANTS: readonly Variant[] = ['never', 'always', 'always, fdatasync on the thread pool'];

function option(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((arg) => arg.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

function numbers(text: string): number[] {
  return text.split(',').map((part) => {
    const n = Number(part);
    if (!Number.isFinite(n) || n < 0) throw new Error(`not a number: ${part}`);
    return n;
  });
}

const seconds = Number(option('seconds', '1'));
const roundCount = Number(option('rounds', '5'));
const concurrencies = numbers(option('concurrency', '1,32,128'));
const works = numbers(option('work-us', '0,50'));
const baseDir = process.env.BENCH_DIR ?? tmpdir();

function line(): Uint8Array {
  const bytes = new Uint8Array(LINE_BYTES).fill(0x78);
  bytes.set(new TextEncoder().encode('{"uid":"bench","pad":"'));
  bytes[LINE_BYTES - 2] = 0x7d; // }
  bytes[LINE_BYTES - 3] = 0x22; // "
  bytes[LINE_BYTES - 1] = 0x0a;
  return bytes;
}

/** Spins for `us` microseconds: CPU work the event loop cannot overlap with anything. */
function work(us: number): void {
  if (us === 0) return;
  const end = performance.now() + us / 1000;
  while (performance.now() < end) {}
}

/** A sink whose fdatasync runs on Bun's thread pool: the alternative the file sink does not take. */
function threadPoolFsyncSink(path: string, observer: SinkObserver): LineSink {
  const fd = openSync(path, 'a', 0o600);
  return createBatchWriter({
    observer,
    target: {
      writeBatch(batch: Batch): Promise<BatchResult> {
        writeFully(fd, batch.bytes, 0, batch.ends[batch.count - 1] as number);
        return new Promise((resolve) =>
          fdatasync(fd, (error) => resolve(error ? { written: 0, error } : undefined)),
        );
      },
      close: () => closeSync(fd),
    },
  });
}

type RunResult = { linesPerSecond: number; perBatch: number; cpuUsPerLine: number };

async function run(variant: Variant, concurrency: number, workUs: number): Promise<RunResult> {
  const dir = mkdtempSync(join(baseDir, 'kar-sink-bench-'));
  let batches = 0;
  let lines = 0;
  const observer: SinkObserver = {
    written: (n) => {
      batches++;
      lines += n;
    },
  };
  const path = join(dir, 'audit.log');
  const sink =
    variant === 'always, fdatasync on the thread pool'
      ? threadPoolFsyncSink(path, observer)
      : createFileSink({ path, fsync: variant, maxSizeBytes: Number.POSITIVE_INFINITY, observer });
  const bytes = line();
  const start = performance.now();
  const measureFrom = start + WARMUP_MS;
  const end = measureFrom + seconds * 1000;
  let acked = 0;
  let batchesAtStart = 0;
  let linesAtStart = 0;
  let cpuAtStart = process.cpuUsage();
  let marked = false;
  async function writer(): Promise<void> {
    for (;;) {
      const now = performance.now();
      if (now >= end) return;
      if (!marked && now >= measureFrom) {
        marked = true;
        batchesAtStart = batches;
        linesAtStart = lines;
        cpuAtStart = process.cpuUsage();
      }
      work(workUs);
      await sink.write(bytes);
      if (marked) acked++;
    }
  }
  await Promise.all(Array.from({ length: concurrency }, writer));
  const cpu = process.cpuUsage(cpuAtStart);
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
  const flushes = batches - batchesAtStart;
  return {
    linesPerSecond: acked / seconds,
    perBatch: flushes > 0 ? (lines - linesAtStart) / flushes : 0,
    cpuUsPerLine: (cpu.user + cpu.system) / Math.max(acked, 1),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function probeCost(bytes: number, sync: boolean): number {
  const dir = mkdtempSync(join(baseDir, 'kar-probe-bench-'));
  const rounds: number[] = [];
  try {
    for (let r = 0; r < PROBE_ROUNDS; r++) {
      const t = performance.now();
      for (let i = 0; i < PROBES_PER_ROUND; i++) {
        const error = probeSpace(dir, '.probe', bytes, sync);
        if (error) throw error;
      }
      rounds.push(((performance.now() - t) * 1000) / PROBES_PER_ROUND);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return median(rounds);
}

/** Appends a line and fdatasyncs it, `FLUSH_SAMPLES` times; returns the flush's p50 and p99 in ms. */
function flushLatency(): [number, number] {
  const dir = mkdtempSync(join(baseDir, 'kar-flush-bench-'));
  const fd = openSync(join(dir, 'audit.log'), 'a', 0o600);
  const bytes = line();
  const samples: number[] = [];
  try {
    for (let i = 0; i < FLUSH_SAMPLES; i++) {
      writeFully(fd, bytes, 0, bytes.length);
      const t = performance.now();
      fdatasyncSync(fd);
      samples.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  samples.sort((a, b) => a - b);
  return [
    samples[Math.floor(samples.length / 2)] as number,
    samples[Math.floor(samples.length * 0.99)] as number,
  ];
}

const [flushBefore50, flushBefore99] = flushLatency();
const rows: string[][] = [];
for (const workUs of works) {
  for (const concurrency of concurrencies) {
    const results = new Map<Variant, RunResult[]>(VARIANTS.map((v) => [v, []]));
    for (let round = 0; round < roundCount; round++) {
      for (const variant of VARIANTS) results.get(variant)?.push(await run(variant, concurrency, workUs));
    }
    const neverRate = median((results.get('never') ?? []).map((r) => r.linesPerSecond));
    for (const variant of VARIANTS) {
      const runs = results.get(variant) ?? [];
      const rates = runs.map((r) => r.linesPerSecond);
      const rate = median(rates);
      rows.push([
        variant,
        String(concurrency),
        String(workUs),
        int(rate),
        `${int(Math.min(...rates))} to ${int(Math.max(...rates))}`,
        `${Math.round((100 * rate) / neverRate)}%`,
        fixed(median(runs.map((r) => r.perBatch)), 1),
        fixed(median(runs.map((r) => r.cpuUsPerLine)), 1),
      ]);
      process.stderr.write(`${rows.at(-1)?.join(' | ')}\n`);
    }
  }
}
const [flushAfter50, flushAfter99] = flushLatency();
console.log(
  `\nfile sink, ${LINE_BYTES}-byte lines, median of ${roundCount} rounds of ${seconds} s (after ${WARMUP_MS} ms) per variant, variants taking turns, in ${baseDir}`,
);
console.log(
  `disk flush (append ${LINE_BYTES} B + fdatasync) p50 / p99: ${fixed(flushBefore50, 2)} / ${fixed(flushBefore99, 2)} ms before, ${fixed(flushAfter50, 2)} / ${fixed(flushAfter99, 2)} ms after\n`,
);
console.log(
  table(
    [
      'fsync',
      'writers',
      'work µs per line',
      'lines/s (median)',
      'lines/s (range)',
      'of never',
      'lines per batch',
      'CPU µs per line',
    ],
    rows,
  ),
);

const probeRows: string[][] = [];
for (const bytes of [4096, 64 * 1024, 1024 * 1024]) {
  probeRows.push([int(bytes), fixed(probeCost(bytes, false), 1), fixed(probeCost(bytes, true), 1)]);
}
console.log(
  `\nspace probe (create, write, close, unlink a file beside the log), median of ${PROBE_ROUNDS} rounds\n`,
);
console.log(table(['probe bytes', 'µs per probe', 'µs per probe with fdatasync'], probeRows));
