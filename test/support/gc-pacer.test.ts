import { describe, expect, it } from 'bun:test';
import { createGcPacer } from '../../src/support/gc-pacer.ts';

describe('createGcPacer', () => {
  it('looks at RSS each time the large bodies since the last look reach everyBytes', () => {
    let looks = 0;
    let collections = 0;
    const afterBody = createGcPacer({
      minBodyBytes: 100,
      everyBytes: 1_000,
      rssBytes: 50,
      rss: () => {
        looks++;
        return 60;
      },
      collect: () => collections++,
    });
    for (let i = 0; i < 9; i++) afterBody(100);
    expect([looks, collections]).toEqual([0, 0]);
    afterBody(100);
    expect([looks, collections]).toEqual([1, 1]);
    afterBody(5_000); // one body past the mark: one look, and the count starts again
    expect([looks, collections]).toEqual([2, 2]);
    afterBody(999);
    expect([looks, collections]).toEqual([2, 2]);
  });

  it('does not collect while RSS is at or under rssBytes', () => {
    let resident = 50;
    let collections = 0;
    const afterBody = createGcPacer({
      minBodyBytes: 100,
      everyBytes: 100,
      rssBytes: 50,
      rss: () => resident,
      collect: () => collections++,
    });
    for (let i = 0; i < 10; i++) afterBody(100);
    expect(collections).toBe(0);
    resident = 51;
    afterBody(100);
    expect(collections).toBe(1);
  });

  it('never looks or collects for bodies under minBodyBytes, however many', () => {
    let looks = 0;
    const afterBody = createGcPacer({
      minBodyBytes: 100,
      everyBytes: 1_000,
      rss: () => {
        looks++;
        return Number.MAX_SAFE_INTEGER;
      },
      collect: () => {},
    });
    for (let i = 0; i < 10_000; i++) afterBody(99);
    expect(looks).toBe(0);
  });

  it('throws at construction when an option is impossible', () => {
    expect(() => createGcPacer({ everyBytes: 0 })).toThrow(RangeError);
    expect(() => createGcPacer({ minBodyBytes: 1.5 })).toThrow(RangeError);
    expect(() => createGcPacer({ rssBytes: -1 })).toThrow(RangeError);
  });
});
