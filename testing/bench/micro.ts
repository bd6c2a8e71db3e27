/**
 * @module Micro-benchmarks of the request hot path, in process: time per call of each piece at each
 * corpus size, and what each call leaves behind on the heap. `bun testing/bench/micro.ts` prints the tables;
 * `bun run bench` includes them.
 *
 * Pieces, in the order a request meets them: the JSON scanner (the TypeScript one, json-scan.ts, beside the
 * WebAssembly one the server uses, json-scan-wasm.ts), parseReview (validate and compact the bytes), buildLine (the
 * line with its timestamp), formatRfc3339Nano (the timestamp), allowedAnswer (the response body), and the
 * file sink writing a batch of lines to a temp file (what one event-loop turn of requests costs on disk).
 *
 * Memory: JSC has no allocation counter (bun:jsc `heapStats()` counts the heap only as of the last
 * collection, and the JIT may drop allocations whose results are unused), so the tables give what a call
 * *retains*: N results are kept alive, a full collection (`gcAndSweep`) runs, and the growth of the heap
 * (whose size includes ArrayBuffer stores) is divided by N. Garbage a call makes and drops shows only in its time.
 *
 * Options: `--quick` (shorter rounds).
 */

import { gcAndSweep, heapStats } from 'bun:jsc';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineBytes } from '../../src/audit/encode/admission-review.ts';
import { createPipeline, type Pipeline } from '../../src/audit/pipeline.ts';
import type { AdmissionRecord } from '../../src/audit/record.ts';
import { allowedAnswer } from '../../src/review/answer.ts';
import { scanJson } from '../../src/review/json-scan.ts';
import { scanJsonFast } from '../../src/review/json-scan-wasm.ts';
import { parseReview } from '../../src/review/parse.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { Line } from '../../src/sink/sink.ts';
import { createClock, formatRfc3339Nano } from '../../src/support/clock.ts';
import { CAPTURED, CONFIGMAP_1MIB, MIB, paddedConfigMap, readCaptured } from './corpus.ts';
import { fixed, int, size, table } from './report.ts';

/** Timing rounds per measurement; the median is reported. */
const ROUNDS = 7;
/** Time every piece runs on every body before measurements start. */
const WARMUP_MS = 1000;
/** Results kept alive to measure what a call retains. */
const RETAINED_CALLS = 200;
/** Lines per sink batch: as many as requests in flight at the bench's default 32 connections. */
const BATCH_LINES = 32;
/** Most bytes one sink measurement may write to the temp file, so the 1 MiB case stays small. */
const SINK_BYTES_BUDGET = 512 * MIB;

/** Keeps results observable so the JIT cannot drop the calls. */
let blackhole = 0;

/** Median nanoseconds per call of `fn`, calibrated so each round lasts about `roundMs`. */
function timePerCall(fn: () => number, roundMs: number): number {
  let n = 1;
  for (;;) {
    const t = performance.now();
    for (let i = 0; i < n; i++) blackhole += fn();
    const took = performance.now() - t;
    if (took >= roundMs / 4 || n >= 1 << 24) {
      n = Math.max(1, Math.ceil((n * roundMs) / Math.max(took, 0.001)));
      break;
    }
    n *= 4;
  }
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) blackhole += fn();
    rounds.push(((performance.now() - t) * 1e6) / n);
  }
  rounds.sort((a, b) => a - b);
  return rounds[Math.floor(ROUNDS / 2)] as number;
}

/** Bytes retained per call: N results kept, full GC, heap growth (ArrayBuffer stores included) over N. */
function retainedPerCall(fn: () => unknown): number {
  const keep: unknown[] = new Array(RETAINED_CALLS);
  gcAndSweep();
  const before = heapStats();
  for (let i = 0; i < RETAINED_CALLS; i++) keep[i] = fn();
  gcAndSweep();
  const after = heapStats();
  blackhole += keep.length;
  // heapSize includes extraMemorySize (the ArrayBuffer stores JSC was told about).
  return Math.max(0, (after.heapSize - before.heapSize) / RETAINED_CALLS);
}

/** One corpus body for the tables. */
type Sample = { name: string; body: Uint8Array; review: AdmissionRecord };

function sample(name: string, body: Uint8Array): Sample {
  const parsed = parseReview(body);
  if (!parsed.ok) throw new Error(`${name}: parseReview refused it: ${parsed.message}`);
  return { name, body, review: parsed.record };
}

/** The line of the default pipeline (no policy, admissionreview, no redaction to do): what the server writes. */
function buildLine(pipeline: Pipeline, review: AdmissionRecord, arrived: bigint): Line {
  const { line } = pipeline(review, arrived);
  if (line === undefined) throw new Error('the default pipeline wrote no line');
  return line;
}

/** Nanoseconds per batch of `lines` lines written through the file sink to a temp file. */
async function sinkBatch(line: Line, bytes: number, lines: number, roundMs: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'kar-micro-'));
  try {
    const sink = createFileSink({ path: join(dir, 'audit.log'), maxSizeBytes: Number.POSITIVE_INFINITY });
    const batch = () => Promise.all(Array.from({ length: lines }, () => sink.write(line)));
    await batch(); // open, first write
    const maxBatches = Math.max(3, Math.floor(SINK_BYTES_BUDGET / (bytes * lines) / ROUNDS));
    const rounds: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      let n = 0;
      const t = performance.now();
      while (n < maxBatches && (n === 0 || performance.now() - t < roundMs)) {
        await batch();
        n++;
      }
      rounds.push(((performance.now() - t) * 1e6) / n);
    }
    await sink.close();
    rounds.sort((a, b) => a - b);
    return rounds[Math.floor(ROUNDS / 2)] as number;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the micro-benchmarks and returns their markdown. */
export async function runMicro(options: { quick: boolean }): Promise<string> {
  const roundMs = options.quick ? 20 : 100;
  const samples = [
    ...CAPTURED.map((name) => sample(name, readCaptured(name))),
    sample(CONFIGMAP_1MIB, paddedConfigMap(MIB)),
  ];
  const clock = createClock();
  const stamp = clock();
  const pipeline = createPipeline({ clock });
  // Warm-up over every body, so the JIT has seen them all (as the server has) before anything is timed.
  const warmUntil = performance.now() + WARMUP_MS;
  while (performance.now() < warmUntil)
    for (const s of samples) {
      const r = parseReview(s.body);
      if (r.ok) blackhole += buildLine(pipeline, r.record, clock()).length + allowedAnswer(r.record).length;
    }

  const rows: string[][] = [];
  for (const s of samples) {
    const typescript = timePerCall(() => (scanJson(s.body).ok ? 1 : 0), roundMs);
    const wasm = timePerCall(() => (scanJsonFast(s.body).ok ? 1 : 0), roundMs);
    const parse = timePerCall(() => {
      const r = parseReview(s.body);
      return r.ok ? r.record.bytes.length : 0;
    }, roundMs);
    // The line as the server hands it over: pieces around the timestamp.
    const line = buildLine(pipeline, s.review, stamp);
    const lineLength = lineBytes(line).length;
    const build = timePerCall(() => buildLine(pipeline, s.review, stamp).length, roundMs);
    const answer = timePerCall(() => allowedAnswer(s.review).length, roundMs);
    const one = await sinkBatch(line, lineLength, 1, roundMs);
    const batch = await sinkBatch(line, lineLength, BATCH_LINES, roundMs);
    rows.push([
      s.name,
      size(s.body.length),
      fixed(typescript / 1000, 2),
      fixed(wasm / 1000, 2),
      `${fixed(typescript / wasm, 1)}×`,
      fixed(parse / 1000, 2),
      fixed(s.body.length / parse, 2),
      int(retainedPerCall(() => parseReview(s.body))),
      fixed(build / 1000, 2),
      int(retainedPerCall(() => buildLine(pipeline, s.review, stamp))),
      fixed(answer / 1000, 3),
      fixed(one / 1000, 1),
      fixed(batch / 1000 / BATCH_LINES, 1),
    ]);
  }
  const now = clock();
  const sameSecond = timePerCall(() => formatRfc3339Nano(now + BigInt(blackhole & 1023)).length, roundMs);
  let second = now;
  const newSecond = timePerCall(() => {
    second += 1_000_000_001n;
    return formatRfc3339Nano(second).length;
  }, roundMs);
  const clockCall = timePerCall(() => Number(clock() & 1n), roundMs);

  return [
    '## Micro-benchmarks (per call, in process)',
    '',
    table(
      [
        'body',
        'bytes',
        'scanJson (TypeScript) µs',
        'scanJsonFast (WebAssembly) µs',
        'speed-up',
        'parseReview µs',
        'parse GB/s',
        'parse retains B',
        'pipeline (line) µs',
        'pipeline retains B',
        'allowedAnswer µs',
        'sink 1-line batch µs',
        `sink µs/line (${BATCH_LINES}-line batch)`,
      ],
      rows,
    ),
    '',
    table(
      ['timestamp piece', 'ns per call'],
      [
        ['clock() (createClock)', fixed(clockCall, 0)],
        ['formatRfc3339Nano, same second as the last call', fixed(sameSecond, 0)],
        ['formatRfc3339Nano, a new second each call', fixed(newSecond, 0)],
      ],
    ),
    '',
    `Median of ${ROUNDS} rounds of about ${roundMs} ms each, after ${WARMUP_MS} ms of warm-up on every body. ` +
      '"retains" is heap (ArrayBuffer stores included) still held per ' +
      `call after a full GC with ${RETAINED_CALLS} results alive (JSC counts no allocations between ` +
      'collections, so the garbage a call makes and drops shows only in its time). Sink: createFileSink on a ' +
      'temp file, `maxSizeBytes: Infinity`, fsync none; a batch is N `write()` calls made in one turn and awaited together.',
    '',
  ].join('\n');
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  process.stdout.write(await runMicro({ quick }));
  if (blackhole === Number.MIN_VALUE) process.stdout.write('\n'); // never; keeps blackhole used
}
