/** @module Helpers for the forwarding tests: audit lines, rotation and compression as the sink does them, a recording sink. */

import { appendFileSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { ForwardEvent, ForwardSink } from '../../src/forward/sink.ts';
import { DeliveryError } from '../../src/forward/sink.ts';
import { backupName } from '../../src/sink/rotation.ts';
import type { LineSink } from '../../src/sink/sink.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Now as an audit Event's MicroTime: six fractional digits, as the API server writes it. */
function microTime(): string {
  return new Date().toISOString().replace('Z', '000Z');
}

/** Makes one audit.k8s.io/v1 Event line (with newline) carrying `id` as its auditID, padded to about `pad` bytes. */
export function eventLine(id: string, pad = 0): string {
  return `${JSON.stringify({
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: id,
    stage: 'ResponseComplete',
    verb: 'create',
    requestURI: '/api/v1/namespaces/default/configmaps',
    objectRef: { resource: 'configmaps', namespace: 'default', name: `cm-${id}` },
    requestReceivedTimestamp: microTime(),
    stageTimestamp: microTime(),
    annotations: { pad: 'x'.repeat(pad) },
  })}\n`;
}

/** Appends Event lines for `ids` to `path`, in one write. */
export function appendEvents(path: string, ids: readonly string[], pad = 0): void {
  appendFileSync(path, ids.map((id) => eventLine(id, pad)).join(''));
}

/** Ids `prefix-from` .. `prefix-(to-1)`. */
export function ids(prefix: string, from: number, to: number): string[] {
  const out: string[] = [];
  for (let i = from; i < to; i++) out.push(`${prefix}-${i}`);
  return out;
}

/** Rotates as the file sink does: renames the log to its lumberjack backup name for time `at`; returns the backup path. */
export function rotate(path: string, at: Date): string {
  const backup = backupName(path, at);
  renameSync(path, backup);
  writeFileSync(path, '');
  return backup;
}

/** Compresses a backup as `--logger-compress` does: gzip to a temp file, rename to `<backup>.gz`, delete the plain one. */
export function compress(backup: string): string {
  const temp = `${backup}.gz.tmp`;
  writeFileSync(temp, gzipSync(readFileSync(backup)));
  renameSync(temp, `${backup}.gz`);
  unlinkSync(backup);
  return `${backup}.gz`;
}

/** The auditID of a forwarded event. */
export function auditIdOf(event: ForwardEvent | Uint8Array): string {
  const bytes = event instanceof Uint8Array ? event : event.bytes;
  return (JSON.parse(decoder.decode(bytes)) as { auditID: string }).auditID;
}

/** A sink that records what it was sent; `fail` decides, per call, whether to throw a retryable or permanent error. */
export type RecordingSink = ForwardSink & {
  /** auditIDs acknowledged, in order. */
  received: string[];
  /** Calls to send, failed ones included. */
  calls: number;
  fail: ((events: readonly ForwardEvent[]) => 'retry' | 'permanent' | undefined) | undefined;
};

/** Creates a {@link RecordingSink} with small batches and quick retries. */
export function recordingSink(batch = { maxEvents: 50, maxBytes: 1 << 20, maxWaitMs: 20 }): RecordingSink {
  const sink: RecordingSink = {
    name: 'recording',
    batch,
    retry: { initialBackoffMs: 5, maxBackoffMs: 20, factor: 2, jitter: 0 },
    received: [],
    calls: 0,
    fail: undefined,
    async send(events) {
      sink.calls++;
      const verdict = sink.fail?.(events);
      if (verdict) throw new DeliveryError(`refused (${verdict})`, { permanent: verdict === 'permanent' });
      for (const e of events) sink.received.push(auditIdOf(e));
    },
    async close() {},
  };
  return sink;
}

/** Polls `check` every 10 ms until it returns true; throws `what` after `ms`. */
export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** Encodes a string. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Load a test runs beside what it checks; see {@link writePaced}. */
export type PacedWriter = {
  /** Lines written so far. */
  written(): number;
  /** Settles once every line is written. */
  done: Promise<void>;
};

/**
 * Writes the Event lines `<prefix>-0` .. `<prefix>-<total-1>` (each about `pad` bytes) through `sink`, `step`
 * lines awaited together, pausing `pauseMs` after each step so that the bounded load spans what the test does
 * meanwhile (an outage, a restart).
 */
export function writePaced(
  sink: Pick<LineSink, 'write'>,
  options: { prefix: string; total: number; pad: number; step: number; pauseMs: number },
): PacedWriter {
  const { prefix, total, pad, step, pauseMs } = options;
  let written = 0;
  const done = (async () => {
    while (written < total) {
      const batch = ids(prefix, written, Math.min(total, written + step));
      await Promise.all(batch.map((id) => sink.write(bytes(eventLine(id, pad)))));
      written += batch.length;
      await Bun.sleep(pauseMs);
    }
  })();
  return { written: () => written, done };
}
