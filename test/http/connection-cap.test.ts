import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ACCEPT_BURST,
  type ConnectionCap,
  createDescriptorCounter,
  type DescriptorCounter,
  defaultMaxConnections,
  largestSafeMaxConnections,
  MAX_DEFAULT_CONNECTIONS,
  readDescriptorLimit,
  startConnectionCap,
  WORKING_DESCRIPTORS,
} from '../../src/http/connection-cap.ts';
import { createLogger } from '../../src/support/log.ts';
import { waitUntil } from '../helpers/server-process.ts';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-cap-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('readDescriptorLimit', () => {
  it('reads the soft "Max open files" limit from a limits file', () => {
    const file = join(dir, 'limits');
    writeFileSync(
      file,
      'Limit                     Soft Limit           Hard Limit           Units     \n' +
        'Max processes             96369                96369                processes \n' +
        'Max open files            1024                 524288               files     \n',
    );
    expect(readDescriptorLimit(file)).toBe(1024);
  });

  it('gives undefined when the limit is unlimited or the file cannot be read', () => {
    const file = join(dir, 'limits');
    writeFileSync(file, 'Max open files            unlimited            unlimited            files     \n');
    expect(readDescriptorLimit(file)).toBeUndefined();
    expect(readDescriptorLimit(join(dir, 'missing'))).toBeUndefined();
  });

  it("reads this process's own limit", () => {
    expect(readDescriptorLimit()).toBeGreaterThan(0);
  });
});

describe('createDescriptorCounter', () => {
  for (const list of [false, true]) {
    it(`counts this process's open descriptors ${list ? 'by listing them' : 'as the kernel sizes them'}`, () => {
      const counter = createDescriptorCounter({ list });
      const before = counter.count();
      const fds = Array.from({ length: 20 }, (_, i) => openSync(join(dir, `f${i}`), 'w'));
      try {
        // Other threads of the test runner may open or close a descriptor meanwhile: allow a little.
        expect(Math.abs(counter.count() - before - 20)).toBeLessThanOrEqual(2);
        const highest = Math.max(...fds);
        expect(counter.mayBeAtLeast(highest + 1)).toBe(true);
        expect(counter.mayBeAtLeast(highest + 1000)).toBe(false);
      } finally {
        for (const fd of fds) closeSync(fd);
      }
    });
  }

  it('throws where there is no descriptor directory', () => {
    expect(() => createDescriptorCounter({ fdDir: join(dir, 'no-proc') })).toThrow();
  });
});

describe('defaultMaxConnections', () => {
  it('leaves the metrics port, working descriptors and a burst out of the limit, at most 16384', () => {
    expect(defaultMaxConnections(1_048_576, 12, 64)).toBe(MAX_DEFAULT_CONNECTIONS);
    expect(defaultMaxConnections(20_000, 12, 64)).toBe(MAX_DEFAULT_CONNECTIONS);
    expect(defaultMaxConnections(4_096, 12, 64)).toBe(4_096 - 12 - 64 - WORKING_DESCRIPTORS - ACCEPT_BURST);
    expect(largestSafeMaxConnections(4_096, 12, 64)).toBe(defaultMaxConnections(4_096, 12, 64));
  });

  it('takes half of what remains when the limit is too low for a whole burst, and never less than 1', () => {
    expect(defaultMaxConnections(1_200, 12, 64)).toBe(
      Math.floor((1_200 - 12 - 64 - WORKING_DESCRIPTORS) / 2),
    );
    expect(defaultMaxConnections(64, 12, 64)).toBe(1);
  });
});

/** A counter whose count a test sets. */
function fakeCounter(cheap = true): DescriptorCounter & { open: number; counted: number; probed: number } {
  const counter = {
    cheap,
    open: 0,
    counted: 0,
    probed: 0,
    count() {
      counter.counted++;
      return counter.open;
    },
    mayBeAtLeast(n: number) {
      counter.probed++;
      return counter.open >= n;
    },
  };
  return counter;
}

describe('startConnectionCap', () => {
  let cap: ConnectionCap | undefined;
  afterEach(() => cap?.stop());

  function start(counter: DescriptorCounter, extra: { other?: () => number; resume?: () => void } = {}) {
    const events: string[] = [];
    const entries: Record<string, unknown>[] = [];
    cap = startConnectionCap({
      maxConnections: 100,
      baseline: 10,
      descriptors: counter,
      otherConnections: extra.other ?? (() => 0),
      pause: () => events.push('pause'),
      resume:
        extra.resume ??
        (() => {
          events.push('resume');
        }),
      onReached: () => events.push('reached'),
      log: createLogger({ write: (t) => entries.push(JSON.parse(t) as Record<string, unknown>) }),
      maxIntervalMs: 5,
    });
    return { events, entries, cap };
  }

  it('closes the listener at the cap and opens it again below 90% of it', async () => {
    const counter = fakeCounter();
    counter.open = 10 + 50;
    const { events, entries, cap } = start(counter);
    await waitUntil(() => counter.counted > 3, 2_000, 'a few checks');
    expect(events).toEqual([]);
    expect(cap.connections()).toBe(50);

    counter.open = 10 + 100;
    await waitUntil(() => cap.reached(), 2_000, 'the cap');
    expect(events).toEqual(['pause', 'reached']);
    expect(entries.at(-1)).toMatchObject({ level: 'warn', maxConnections: 100, connections: 100 });

    counter.open = 10 + 95; // still above 90: stays closed
    const seen = counter.counted;
    await waitUntil(() => counter.counted > seen + 1, 2_000, 'more checks');
    expect(cap.reached()).toBe(true);

    counter.open = 10 + 89;
    await waitUntil(() => !cap.reached(), 2_000, 'the way back');
    expect(events).toEqual(['pause', 'reached', 'resume']);
    expect(entries.at(-1)).toMatchObject({ level: 'info', connections: 89 });
  });

  it("does not count the metrics port's connections as the webhook's", async () => {
    const counter = fakeCounter();
    counter.open = 10 + 105;
    const { cap } = start(counter, { other: () => 10 });
    await waitUntil(() => counter.counted > 3, 2_000, 'a few checks');
    expect(cap.reached()).toBe(false);
    expect(cap.connections()).toBe(95);
  });

  it('stays at the cap and retries when the listener cannot open again', async () => {
    const counter = fakeCounter();
    counter.open = 10 + 100;
    let attempts = 0;
    const { entries, cap } = start(counter, {
      resume: () => {
        attempts++;
        throw new Error('port taken');
      },
    });
    await waitUntil(() => cap.reached(), 2_000, 'the cap');
    counter.open = 10;
    await waitUntil(() => attempts >= 2, 2_000, 'two attempts');
    expect(cap.reached()).toBe(true);
    // The failure is logged once a second, not once per attempt.
    expect(entries.filter((e) => e.level === 'error')).toHaveLength(1);
  });

  it('without a cheap count, lists descriptors only once the number at the cap is taken', async () => {
    const counter = fakeCounter(false);
    counter.open = 10 + 50;
    const { cap } = start(counter);
    const atStart = counter.counted; // one count at start, for the baseline share
    await waitUntil(() => counter.probed >= 3, 2_000, 'three checks');
    expect(counter.counted).toBe(atStart);
    counter.open = 10 + 100;
    await waitUntil(() => cap.reached(), 2_000, 'the cap');
    expect(counter.counted).toBeGreaterThan(atStart);
  });
});
