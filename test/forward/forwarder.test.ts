/** @module Tests of the forwarder loop on real files: order, checkpoint after delivery, retries, refusals, restarts, metrics. */

import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { readCheckpoint } from '../../src/forward/checkpoint.ts';
import { createForwarder, type ForwardOptions } from '../../src/forward/forwarder.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';
import { appendEvents, auditIdOf, compress, ids, recordingSink, rotate, until } from './helpers.ts';

/** A metric's value in the registry's text output. */
async function metric(registry: Registry, series: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no series ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

describe('createForwarder', () => {
  let dir = '';
  let log = '';
  let checkpointPath = '';
  beforeEach(() => {
    dir = makeTempDir('forward');
    log = join(dir, 'audit.log');
    checkpointPath = join(dir, 'checkpoint.json');
  });
  afterEach(() => removeDir(dir));

  function options(extra: Partial<ForwardOptions> & Pick<ForwardOptions, 'sink'>): ForwardOptions {
    return { path: log, checkpointPath, registry: new Registry(), pollIntervalMs: 5, ...extra };
  }

  it('delivers every line in file order across rotations and compression, and checkpoints after delivery', async () => {
    const sink = recordingSink();
    appendEvents(log, ids('a', 0, 120));
    compress(rotate(log, new Date('2026-01-01T00:00:00Z')));
    appendEvents(log, ids('b', 0, 80));
    const forwarder = createForwarder(options({ sink }));
    forwarder.start();
    await until(() => sink.received.length === 200, '200 events');
    appendEvents(log, ids('c', 0, 5));
    await until(() => sink.received.length === 205, '205 events');
    await forwarder.stop();
    expect(sink.received).toEqual([...ids('a', 0, 120), ...ids('b', 0, 80), ...ids('c', 0, 5)]);
    const checkpoint = readCheckpoint(checkpointPath);
    expect(checkpoint?.path).toBe(log);
    expect(checkpoint?.offset).toBe(Bun.file(log).size);
    expect(forwarder.metrics.value('delivered')).toBe(205);
    expect(forwarder.metrics.value('retried')).toBe(0);
  });

  it('resumes after a restart without sending anything twice', async () => {
    const first = recordingSink();
    appendEvents(log, ids('r', 0, 30));
    const one = createForwarder(options({ sink: first }));
    one.start();
    await until(() => first.received.length === 30, '30 events');
    await one.stop();
    appendEvents(log, ids('r', 30, 40));
    const second = recordingSink();
    const two = createForwarder(options({ sink: second }));
    two.start();
    await until(() => second.received.length === 10, '10 more events');
    await two.stop();
    expect(second.received).toEqual(ids('r', 30, 40));
  });

  it('sends a batch again after a crash between delivery and checkpoint: duplicates only, exactly that batch', async () => {
    appendEvents(log, ids('d', 0, 100));
    const first = recordingSink({ maxEvents: 25, maxBytes: 1 << 20, maxWaitMs: 5 });
    let hang: Promise<void> | undefined;
    const original = first.send;
    first.send = async (events, signal) => {
      await original(events, signal);
      if (first.received.length === 50) {
        // The destination has the batch, but the acknowledgement never arrives: the process dies here.
        hang = new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(new Error('killed'))),
        );
        await hang;
      }
    };
    const one = createForwarder(options({ sink: first, stopGraceMs: 0 }));
    one.start();
    await until(() => hang !== undefined, 'the second batch to be in flight');
    await one.stop();
    expect(readCheckpoint(checkpointPath)?.offset).toBeGreaterThan(0);

    const second = recordingSink({ maxEvents: 25, maxBytes: 1 << 20, maxWaitMs: 5 });
    const two = createForwarder(options({ sink: second }));
    two.start();
    await until(() => second.received.length === 75, 'the rest');
    await two.stop();
    const all = [...first.received, ...second.received];
    expect(new Set(all)).toEqual(new Set(ids('d', 0, 100)));
    const duplicates = all.length - new Set(all).size;
    expect(duplicates).toBe(25);
    expect(second.received.slice(0, 25)).toEqual(ids('d', 25, 50));
  });

  it('retries while the destination is down, never moving the checkpoint, and loses nothing', async () => {
    const sink = recordingSink({ maxEvents: 10, maxBytes: 1 << 20, maxWaitMs: 5 });
    let down = true;
    sink.fail = () => (down ? 'retry' : undefined);
    const registry = new Registry();
    appendEvents(log, ids('w', 0, 35));
    const forwarder = createForwarder(options({ sink, registry }));
    forwarder.start();
    await until(() => sink.calls >= 5, 'several failed attempts');
    expect(readCheckpoint(checkpointPath)).toBeUndefined();
    expect(await metric(registry, 'kube_audit_rest_forward_lag_bytes')).toBe(Bun.file(log).size);
    expect(await metric(registry, 'kube_audit_rest_forward_lag_seconds')).toBeGreaterThanOrEqual(0);
    down = false;
    await until(() => sink.received.length === 35, 'all events after recovery');
    await forwarder.stop();
    expect(sink.received).toEqual(ids('w', 0, 35));
    expect(forwarder.metrics.value('retried')).toBeGreaterThanOrEqual(40); // >= 4 retries of the first batch of 10
    expect(await metric(registry, 'kube_audit_rest_forward_lag_bytes')).toBe(0);
    expect(await metric(registry, 'kube_audit_rest_forward_checkpoint_age_seconds')).toBe(0);
  });

  it('isolates an event the destination refuses for good, counts it failed, and keeps the order of the rest', async () => {
    const sink = recordingSink({ maxEvents: 16, maxBytes: 1 << 20, maxWaitMs: 5 });
    sink.fail = (events) => (events.some((e) => auditIdOf(e) === 'f-9') ? 'permanent' : undefined);
    appendEvents(log, ids('f', 0, 16));
    const forwarder = createForwarder(options({ sink }));
    forwarder.start();
    await until(() => sink.received.length === 15, '15 events');
    await until(
      () => readCheckpoint(checkpointPath)?.offset === Bun.file(log).size,
      'the checkpoint at the end',
    );
    await forwarder.stop();
    expect(sink.received).toEqual(ids('f', 0, 16).filter((id) => id !== 'f-9'));
    expect(forwarder.metrics.value('failed')).toBe(1);
  });

  it('counts lines that are not audit events as dropped and moves past them', async () => {
    const sink = recordingSink();
    const registry = new Registry();
    appendEvents(log, ['ok-1']);
    appendFileSync(log, 'not json at all\n');
    appendEvents(log, ['ok-2']);
    const forwarder = createForwarder(
      options({
        sink,
        registry,
        convert: (line) => (line[0] === 0x7b ? line : undefined),
      }),
    );
    forwarder.start();
    await until(() => sink.received.length === 2, 'two events');
    await forwarder.stop();
    expect(await metric(registry, 'kube_audit_rest_forward_events_total{result="dropped"}')).toBe(1);
    expect(await metric(registry, 'kube_audit_rest_forward_events_total{result="delivered"}')).toBe(2);
  });

  it('starts every result label at zero', async () => {
    const registry = new Registry();
    createForwarder(options({ sink: recordingSink(), registry }));
    for (const result of ['delivered', 'retried', 'failed', 'dropped']) {
      expect(await metric(registry, `kube_audit_rest_forward_events_total{result="${result}"}`)).toBe(0);
    }
    expect(await metric(registry, 'kube_audit_rest_forward_dropped_bytes_total')).toBe(0);
  });

  it('refuses invalid options, naming them', () => {
    const sink = recordingSink();
    expect(() => createForwarder({ ...options({ sink }), path: '' })).toThrow('--logger-filename');
    expect(() => createForwarder({ ...options({ sink }), checkpointPath: '' })).toThrow('--checkpoint-file');
    expect(() => createForwarder({ ...options({ sink }), checkpointPath: log })).toThrow(
      'must not be the audit log',
    );
    expect(() => createForwarder({ ...options({ sink }), pollIntervalMs: 0 })).toThrow('pollIntervalMs');
  });

  it('refuses to start on a checkpoint file that is not one, saying which', async () => {
    await Bun.write(checkpointPath, '{"version":1,"file":{}}');
    const forwarder = createForwarder(options({ sink: recordingSink() }));
    expect(() => forwarder.start()).toThrow(
      `checkpoint file ${checkpointPath}: file.dev must be a decimal string`,
    );
  });

  it('reads the line as an auditID source in order even with a converter that rewrites it', async () => {
    const sink = recordingSink();
    appendEvents(log, ids('z', 0, 3));
    const forwarder = createForwarder(
      options({
        sink,
        convert: (line) => new TextEncoder().encode(new TextDecoder().decode(line).replace('"z-', '"Z-')),
      }),
    );
    forwarder.start();
    await until(() => sink.received.length === 3, 'three events');
    await forwarder.stop();
    expect(sink.received).toEqual(['Z-0', 'Z-1', 'Z-2']);
  });

  it('sends every event a converter makes of one line, in order, and counts the line once in the lag', async () => {
    const sink = recordingSink();
    const registry = new Registry();
    appendEvents(log, ids('two', 0, 3));
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const forwarder = createForwarder(
      options({
        sink,
        registry,
        convert: (line) => {
          const text = decoder.decode(line);
          return [encoder.encode(text.replace('"two-', '"a-')), encoder.encode(text.replace('"two-', '"b-'))];
        },
      }),
    );
    forwarder.start();
    await until(() => sink.received.length === 6, 'six events');
    await forwarder.stop();
    expect(sink.received).toEqual(['a-0', 'b-0', 'a-1', 'b-1', 'a-2', 'b-2']);
    expect(forwarder.metrics.value('delivered')).toBe(6);
    expect(await metric(registry, 'kube_audit_rest_forward_lag_bytes')).toBe(0);
  });

  it('drains what the log holds without waiting for a batch to fill, then stops with the checkpoint at the end', async () => {
    // A batch would wait a minute to fill: draining sends it as soon as nothing more is there.
    const sink = recordingSink({ maxEvents: 1000, maxBytes: 1 << 20, maxWaitMs: 60_000 });
    const registry = new Registry();
    const forwarder = createForwarder(options({ sink, registry, pollIntervalMs: 20 }));
    forwarder.start();
    appendEvents(log, ids('d', 0, 40));
    // Read and waiting in a batch: the lag in seconds counts from the oldest event read.
    const deadline = Date.now() + 10_000;
    while ((await metric(registry, 'kube_audit_rest_forward_lag_seconds')) === 0) {
      if (Date.now() > deadline) throw new Error('the events were never read');
      await Bun.sleep(5);
    }
    expect(sink.calls).toBe(0);
    const started = performance.now();
    expect(await forwarder.drain(10_000)).toBe(true);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(sink.received).toEqual(ids('d', 0, 40));
    expect(readCheckpoint(checkpointPath)?.offset).toBe(Bun.file(log).size);
    await forwarder.done;
  });

  it('gives up draining at the timeout while the destination is down, leaving the checkpoint where it was', async () => {
    const sink = recordingSink({ maxEvents: 10, maxBytes: 1 << 20, maxWaitMs: 5 });
    sink.fail = () => 'retry';
    appendEvents(log, ids('t', 0, 15));
    const forwarder = createForwarder(options({ sink, stopGraceMs: 50 }));
    forwarder.start();
    await until(() => sink.calls >= 1, 'a first attempt');
    const started = performance.now();
    expect(await forwarder.drain(300)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(sink.received).toEqual([]);
    expect(readCheckpoint(checkpointPath)).toBeUndefined();
  });

  it('counts the checkpoint age from the end of an idle spell, not from the last checkpoint before it', async () => {
    const sink = recordingSink({ maxEvents: 10, maxBytes: 1 << 20, maxWaitMs: 5 });
    const registry = new Registry();
    // A clock the test moves: an hour passes at once.
    let skipped = 0;
    let reads = 0;
    const now = () => {
      reads++;
      return Date.now() + skipped;
    };
    appendEvents(log, ['before']);
    const forwarder = createForwarder(options({ sink, registry, now }));
    forwarder.start();
    await until(() => sink.received.length === 1, 'the first event');
    skipped += 3_600_000; // an idle hour: nothing to forward
    const seen = reads;
    await until(() => reads > seen + 20, 'the forwarder to look at the log again');
    sink.fail = () => 'retry';
    appendEvents(log, ['after']);
    await until(() => sink.calls >= 3, 'failed attempts at the new line');
    const age = await metric(registry, 'kube_audit_rest_forward_checkpoint_age_seconds');
    await forwarder.stop();
    // From the last look that found nothing (after the hour), not from the checkpoint an hour ago.
    expect(age).toBeLessThan(60);
  });
});
