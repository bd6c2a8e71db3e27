import { describe, expect, it } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ScanResult } from '../../src/review/json-scan.ts';
import { memberInts, scanJson } from '../../src/review/json-scan.ts';
import { fastScannerAvailable, scanJsonFast } from '../../src/review/json-scan-wasm.ts';
import { forEachSeed, INVALID_UTF8, jsonText, mutate, reviewCase, show } from '../helpers/json-gen.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A result as plain data, compact bytes as text, so two results compare with toEqual. */
function plain(result: ScanResult): unknown {
  if (!result.ok) return result;
  const { members: _, membersFrom: __, ...rest } = result;
  return { ...rest, compact: decoder.decode(result.compact), members: Array.from(memberInts(result)) };
}

/** Asserts that the WebAssembly scanner gives what the TypeScript one gives, and leaves the input alone. */
function agree(input: Uint8Array): void {
  const copy = input.slice();
  const fast = scanJsonFast(input);
  expect(input).toEqual(copy);
  const slow = scanJson(input);
  if (JSON.stringify(plain(fast)) !== JSON.stringify(plain(slow))) {
    throw new Error(
      `scanners disagree on ${show(input)}:\n fast ${JSON.stringify(plain(fast))}\n slow ${JSON.stringify(plain(slow))}`,
    );
  }
}

const STOP_BYTES = ['"', '\\\\', '\\"', '\\u00e9', '\u00e9', '\u{1F600}', '\t', '\u0001', '\u007f', ' '];

describe('scanJsonFast', () => {
  it('runs the WebAssembly scanner here, so the comparisons below compare two scanners', () => {
    expect(fastScannerAvailable).toBe(true);
  });

  it('agrees with scanJson on generated JSON texts, whole and mutated', () => {
    forEachSeed(100_000, 3_000, (rng) => {
      const input = encoder.encode(jsonText(rng));
      agree(input);
      agree(mutate(rng, input));
    });
  });

  it('agrees with scanJson on AdmissionReview-shaped texts, valid or not, whole and mutated', () => {
    forEachSeed(110_000, 3_000, (rng) => {
      const input = encoder.encode(reviewCase(rng, { valid: rng.chance(0.5) }).text);
      agree(input);
      agree(mutate(rng, input));
    });
  });

  it('agrees on a string holding each special byte at every offset around the 16-byte steps', () => {
    // The WebAssembly scanner reads strings 16 bytes at a time; a quote, escape, control character
    // or multi-byte character on either side of a step boundary must be seen like any other.
    for (const stop of STOP_BYTES) {
      for (let before = 0; before <= 40; before++) {
        for (const lead of ['', ' ', '{"k":']) {
          const close = lead === '' ? '' : lead === ' ' ? ' ' : `,"pad":"${'p'.repeat(40)}"}`;
          const text = `${lead}"${'a'.repeat(before)}${stop}${'b'.repeat(40 - before)}"${close}`;
          agree(encoder.encode(text));
        }
      }
    }
  });

  it('agrees on invalid UTF-8 at every offset of a string', () => {
    for (const bad of INVALID_UTF8) {
      for (let before = 0; before <= 34; before++) {
        const head = encoder.encode(`{"kind":"${'x'.repeat(before)}`);
        // More text after the string, so the 16-byte steps (not the byte-wise tail) meet the bad bytes.
        const tail = encoder.encode(`${'y'.repeat(34 - before)}","pad":"${'z'.repeat(40)}"}`);
        agree(new Uint8Array([...head, ...bad, ...tail]));
      }
    }
  });

  it('agrees on every review captured from the real API server', () => {
    const dirs = [
      join(import.meta.dir, '..', '..', 'testing', 'bench', 'corpus'),
      join(import.meta.dir, '..', '..', 'testing', 'locally', 'data'),
    ];
    let count = 0;
    for (const dir of dirs) {
      for (const name of readdirSync(dir)) {
        agree(new Uint8Array(readFileSync(join(dir, name))));
        count++;
      }
    }
    expect(count).toBeGreaterThanOrEqual(10);
  });

  it('grows its memory for a large body and still scans small ones after it', () => {
    const value = 'config line = value\\n'.repeat(150_000); // about 3 MiB
    const big = encoder.encode(`{"kind":"AdmissionReview","data":{"f":"${value}"},"n":[1, 2]}`);
    agree(big);
    agree(encoder.encode('{"kind":"AdmissionReview"}'));
    agree(big.subarray(0, big.length - 1)); // cut short: an error, worded by scanJson
  });

  it('returns a view of the input when nothing was removed, and its own copy otherwise', () => {
    const compactInput = encoder.encode('  {"a":"b c","request":{"uid":"u"}}\n');
    const view = scanJsonFast(compactInput);
    if (!view.ok) throw new Error(view.message);
    expect(view.compact.buffer).toBe(compactInput.buffer);
    expect(view.compact.byteOffset).toBe(2);

    const spaced = encoder.encode('{ "a" : [1, 2] }');
    const own = scanJsonFast(spaced);
    if (!own.ok) throw new Error(own.message);
    expect(decoder.decode(own.compact)).toBe('{"a":[1,2]}');
    // The next scan reuses the scanner's memory; the earlier result must not change with it.
    scanJsonFast(encoder.encode('{ "z" : "zzzzzzzzzzzzzzzzzzzz" }'));
    expect(decoder.decode(own.compact)).toBe('{"a":[1,2]}');
  });
});
