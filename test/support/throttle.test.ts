import { describe, expect, it } from 'bun:test';
import { throttle } from '../../src/support/throttle.ts';

describe('throttle', () => {
  it('reports the first occurrence, counts those within the interval, and hands the count to the next report', () => {
    let now = 1_000;
    const reports: [number, string][] = [];
    const report = throttle((suppressed: number, what: string) => reports.push([suppressed, what]), {
      intervalMs: 1_000,
      now: () => now,
    });
    report('a');
    now += 400;
    report('b');
    now += 400;
    report('c');
    expect(reports).toEqual([[0, 'a']]);
    now += 200; // 1,000 ms after the first report
    report('d');
    expect(reports).toEqual([
      [0, 'a'],
      [2, 'd'],
    ]);
    now += 5_000;
    report('e');
    expect(reports.at(-1)).toEqual([0, 'e']);
  });

  it('reports at most once a second by default, however often it is called', () => {
    const reports: number[] = [];
    const report = throttle((suppressed: number) => reports.push(suppressed));
    for (let i = 0; i < 10_000; i++) report();
    expect(reports).toEqual([0]);
  });
});
