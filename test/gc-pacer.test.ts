import { describe, expect, it } from 'bun:test';
import { createGcPacer } from '../src/gc-pacer.ts';

describe('createGcPacer', () => {
  it('collects each time the large bodies since the last collection reach everyBytes', () => {
    let collections = 0;
    const afterBody = createGcPacer({ minBodyBytes: 100, everyBytes: 1_000, collect: () => collections++ });
    for (let i = 0; i < 9; i++) afterBody(100);
    expect(collections).toBe(0);
    afterBody(100);
    expect(collections).toBe(1);
    afterBody(5_000); // one body past the mark: one collection, and the count starts again
    expect(collections).toBe(2);
    afterBody(999);
    expect(collections).toBe(2);
  });

  it('never collects for bodies under minBodyBytes, however many', () => {
    let collections = 0;
    const afterBody = createGcPacer({ minBodyBytes: 100, everyBytes: 1_000, collect: () => collections++ });
    for (let i = 0; i < 10_000; i++) afterBody(99);
    expect(collections).toBe(0);
  });

  it('throws at construction when an option is impossible', () => {
    expect(() => createGcPacer({ everyBytes: 0 })).toThrow(RangeError);
    expect(() => createGcPacer({ minBodyBytes: 1.5 })).toThrow(RangeError);
  });
});
