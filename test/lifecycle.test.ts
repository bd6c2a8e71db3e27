import { describe, expect, it } from 'bun:test';
import { EventEmitter } from 'node:events';
import { createLifecycle, type LifecycleOptions } from '../src/lifecycle.ts';
import { createLogger } from '../src/support/log.ts';

/** A lifecycle on an emitter instead of the process, with its log entries collected. */
function setup(options: Partial<LifecycleOptions> = {}) {
  const signals = new EventEmitter();
  const entries: Record<string, unknown>[] = [];
  const log = createLogger({ write: (text) => entries.push(JSON.parse(text) as Record<string, unknown>) });
  const lifecycle = createLifecycle({ log, shutdownTimeoutMs: 1_000, signals, ...options });
  const messages = () => entries.map((e) => e.msg);
  return { signals, entries, messages, lifecycle };
}

/** A promise with its resolver, for work that finishes when a test says so. */
function deferred() {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('createLifecycle', () => {
  it('stops what started in reverse order on SIGTERM and resolves 0', async () => {
    const { signals, lifecycle, messages } = setup();
    const order: string[] = [];
    for (const name of ['sink', 'metrics', 'webhook']) {
      lifecycle.started({ name, stop: () => void order.push(name) });
    }
    const run = lifecycle.run();
    expect(lifecycle.stopping).toBe(false);
    signals.emit('SIGTERM');
    expect(await run).toBe(0);
    expect(order).toEqual(['webhook', 'metrics', 'sink']);
    expect(messages()).toEqual(['stopping: finishing in-flight requests', 'stopped']);
    lifecycle.dispose();
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('stops at once when the signal came before run, during start-up', async () => {
    const { signals, lifecycle } = setup();
    let stopped = false;
    lifecycle.started({
      name: 'sink',
      stop: () => {
        stopped = true;
      },
    });
    signals.emit('SIGINT');
    expect(lifecycle.stopping).toBe(true);
    expect(await lifecycle.run()).toBe(0);
    expect(stopped).toBe(true);
  });

  it('logs and ignores a second SIGTERM or SIGINT while stopping, and still waits for the drain', async () => {
    const { signals, lifecycle, entries } = setup();
    const drain = deferred();
    let finished = false;
    lifecycle.started({
      name: 'webhook',
      stop: () =>
        drain.promise.then(() => {
          finished = true;
        }),
    });
    const run = lifecycle.run();
    signals.emit('SIGTERM');
    await Promise.resolve();
    signals.emit('SIGTERM');
    signals.emit('SIGINT');
    const repeats = entries.filter((e) => String(e.msg).startsWith('already stopping'));
    expect(repeats).toHaveLength(1); // the second within the same second is only counted
    expect(repeats[0]?.signal).toBe('SIGTERM');
    expect(finished).toBe(false);
    drain.resolve();
    expect(await run).toBe(0);
    expect(finished).toBe(true);
  });

  it('aborts what is left and resolves 1 when the deadline passes', async () => {
    const { signals, lifecycle, entries } = setup({ shutdownTimeoutMs: 20 });
    const calls: string[] = [];
    lifecycle.started({
      name: 'sink',
      stop: () => void calls.push('sink stop'),
      abort: () => void calls.push('sink abort'),
    });
    lifecycle.started({
      name: 'webhook',
      stop: () => new Promise<void>(() => calls.push('webhook stop')),
      abort: () => void calls.push('webhook abort'),
    });
    const run = lifecycle.run();
    signals.emit('SIGTERM');
    expect(await run).toBe(1);
    expect(calls).toEqual(['webhook stop', 'webhook abort', 'sink abort']);
    const late = entries.find((e) => e.level === 'error');
    expect(late?.stopping).toBe('webhook');
    expect(entries.at(-1)).toMatchObject({ msg: 'stopped', status: 1 });
  });

  it('resolves 1 and goes on stopping the rest when one stop fails', async () => {
    const { signals, lifecycle, entries } = setup();
    let sinkClosed = false;
    lifecycle.started({
      name: 'sink',
      stop: () => {
        sinkClosed = true;
      },
    });
    lifecycle.started({ name: 'webhook', stop: () => Promise.reject(new Error('port gone')) });
    const run = lifecycle.run();
    signals.emit('SIGTERM');
    expect(await run).toBe(1);
    expect(sinkClosed).toBe(true);
    expect(entries.find((e) => e.level === 'error')).toMatchObject({
      stopping: 'webhook',
      error: { message: 'port gone' },
    });
  });

  it('reloads on SIGHUP, logs the summary on SIGUSR1, and logs and ignores SIGUSR2 and SIGALRM', () => {
    let reloads = 0;
    const { signals, lifecycle, entries } = setup({
      reload: () => void reloads++,
      summary: () => ({ accepting: true, openDescriptors: 12 }),
    });
    signals.emit('SIGHUP');
    signals.emit('SIGUSR1');
    signals.emit('SIGUSR2');
    signals.emit('SIGALRM');
    signals.emit('SIGALRM');
    expect(reloads).toBe(1);
    expect(entries.find((e) => e.msg === 'state')).toMatchObject({ accepting: true, openDescriptors: 12 });
    expect(entries.filter((e) => e.msg === 'signal ignored').map((e) => e.signal)).toEqual([
      'SIGUSR2',
      'SIGALRM',
    ]);
    expect(lifecycle.stopping).toBe(false);
    lifecycle.dispose();
  });

  it('does not reload on SIGHUP once stopping', async () => {
    let reloads = 0;
    const { signals, lifecycle } = setup({ reload: () => void reloads++ });
    const drain = deferred();
    lifecycle.started({ name: 'webhook', stop: () => drain.promise });
    const run = lifecycle.run();
    signals.emit('SIGTERM');
    signals.emit('SIGHUP');
    drain.resolve();
    await run;
    expect(reloads).toBe(0);
  });

  it('unwinds what started, in reverse order, after a failed start-up', async () => {
    const { lifecycle } = setup();
    const order: string[] = [];
    lifecycle.started({ name: 'sink', stop: async () => void order.push('sink') });
    lifecycle.started({ name: 'metrics', stop: () => void order.push('metrics') });
    await lifecycle.unwind();
    expect(order).toEqual(['metrics', 'sink']);
  });
});
