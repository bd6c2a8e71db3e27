import { describe, expect, it } from 'bun:test';
import { MAX_DEPTH, memberInts, type ScanOk, type ScanResult, scanJson } from '../../src/review/json-scan.ts';
import { scanJsonFast } from '../../src/review/json-scan-wasm.ts';
import {
  forEachSeed,
  INVALID_UTF8,
  jsonText,
  mutate,
  referenceCompact,
  referenceMembers,
  reviewCase,
  show,
} from '../helpers/json-gen.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// The reference validator. ignoreBOM keeps a leading BOM in the text (so JSON.parse refuses it, as we
// do); without it the decoder would silently strip the BOM.
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

function bytesOf(input: string | Uint8Array): Uint8Array {
  return typeof input === 'string' ? encoder.encode(input) : input;
}

type Reference =
  | { valid: true; value: unknown }
  | { valid: false; utf8: boolean; syntaxOkWithReplacements: boolean; blank: boolean };

/** TextDecoder (fatal) then JSON.parse: what a strict, independent validator says about the bytes. */
function reference(bytes: Uint8Array): Reference {
  let text: string;
  let utf8 = true;
  try {
    text = strictDecoder.decode(bytes);
  } catch {
    utf8 = false;
    text = lossyDecoder.decode(bytes);
  }
  const blank = /^[ \t\r\n]*$/.test(text);
  try {
    const value: unknown = JSON.parse(text);
    if (utf8) return { valid: true, value };
    return { valid: false, utf8, syntaxOkWithReplacements: true, blank };
  } catch {
    return { valid: false, utf8, syntaxOkWithReplacements: false, blank };
  }
}

const isWhitespace = (b: number | undefined): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/** True when `compact` is `input` with some whitespace bytes (and nothing else) removed. */
function isWhitespaceDeletion(input: Uint8Array, compact: Uint8Array): boolean {
  let j = 0;
  for (const b of input) {
    if (j < compact.length && b === compact[j]) j++;
    else if (!isWhitespace(b)) return false;
  }
  return j === compact.length;
}

/** Checks everything a valid input promises: compaction, equal value, spans like the reference finder. */
function checkValid(input: Uint8Array, result: ScanResult): void {
  if (!result.ok) throw new Error(`refused valid ${show(input)}: ${result.reason}: ${result.message}`);
  const expected = referenceCompact(input);
  expect(decoder.decode(result.compact)).toBe(decoder.decode(expected));
  expect(result.compact.length).toBe(expected.length);
  expect(isWhitespaceDeletion(input, result.compact)).toBe(true);
  expect(JSON.parse(decoder.decode(result.compact))).toEqual(JSON.parse(decoder.decode(input)));
  expect(result.isObject).toBe(expected[0] === 0x7b);
  expect(Array.from(memberInts(result))).toEqual(referenceMembers(expected));
}

/** The same cases for the TypeScript scanner and for the WebAssembly one in front of it: they must agree on every input. */
function scannerSuite(name: string, scanner: (input: Uint8Array) => ScanResult): void {
  function scan(input: string | Uint8Array): ScanResult {
    return scanner(bytesOf(input));
  }

  function scanOk(input: string | Uint8Array): ScanOk {
    const result = scan(input);
    if (!result.ok)
      throw new Error(`expected ok for ${show(bytesOf(input))}, got ${result.reason}: ${result.message}`);
    return result;
  }

  /** The reason code, or 'ok'. */
  function verdict(input: string | Uint8Array): string {
    const result = scan(input);
    return result.ok ? 'ok' : result.reason;
  }

  describe(`${name} on generated valid JSON`, () => {
    it('accepts every text and compacts it exactly like the reference compaction', () => {
      forEachSeed(1_000, 3_000, (rng) => {
        const input = encoder.encode(jsonText(rng));
        const copy = input.slice();
        checkValid(input, scanner(input));
        expect(input).toEqual(copy); // the input is never written to
      });
    });

    it('returns a view of the input, not a copy, when the text has no whitespace', () => {
      forEachSeed(5_000, 500, (rng) => {
        const input = referenceCompact(encoder.encode(jsonText(rng)));
        const result = scanOk(input);
        expect(result.compact.buffer).toBe(input.buffer);
        expect(result.compact.byteOffset).toBe(0);
        expect(result.compact.length).toBe(input.length);
      });
    });

    it('lists exactly the members of AdmissionReview-shaped objects with keys in any order', () => {
      forEachSeed(10_000, 2_000, (rng) => {
        const c = reviewCase(rng, { valid: rng.chance(0.5) });
        const input = encoder.encode(c.text);
        checkValid(input, scanner(input));
      });
    });
  });

  describe(`${name} against TextDecoder + JSON.parse`, () => {
    /** Asserts that scanJson and the reference agree on `input`, reasons included. */
    function agree(input: Uint8Array): void {
      const result = scanner(input);
      const ref = reference(input);
      if (ref.valid) {
        checkValid(input, result);
        return;
      }
      if (result.ok) throw new Error(`accepted invalid ${show(input)}`);
      // The scanner reports the first problem it meets, so a repeated tracked key before the fault wins.
      if (ref.blank) expect(result.reason).toBe('empty');
      else if (!ref.utf8 && ref.syntaxOkWithReplacements) {
        // Well-formed apart from bad bytes inside strings (UTF-8 is checked last).
        expect(['invalid_utf8', 'duplicate_key']).toContain(result.reason);
      } else expect(['syntax', 'trailing_data', 'duplicate_key']).toContain(result.reason);
    }

    it('agrees on mutated JSON texts and never throws', () => {
      forEachSeed(20_000, 4_000, (rng) => {
        agree(mutate(rng, encoder.encode(jsonText(rng))));
      });
    });

    it('agrees on mutated AdmissionReview-shaped texts and never throws', () => {
      forEachSeed(30_000, 3_000, (rng) => {
        agree(mutate(rng, encoder.encode(reviewCase(rng, { valid: rng.chance(0.5) }).text)));
      });
    });

    it('agrees on short random byte strings over the JSON alphabet', () => {
      const alphabet = encoder.encode('{}[]:,"\\ \t0123-+.eEtrufalsn\n');
      forEachSeed(40_000, 4_000, (rng) => {
        const bytes = new Uint8Array(1 + rng.int(12));
        for (let k = 0; k < bytes.length; k++) bytes[k] = alphabet[rng.int(alphabet.length)] ?? 0x20;
        agree(bytes);
      });
    });
  });

  describe(name, () => {
    it('refuses an empty body as empty', () => {
      expect(verdict('')).toBe('empty');
    });

    it('refuses a body of only whitespace as empty', () => {
      expect(verdict(' \t\r\n  \n')).toBe('empty');
    });

    it('refuses a UTF-8 byte order mark before the value', () => {
      expect(verdict('\ufeff{}')).toBe('syntax');
      expect(verdict(' \ufeff{}')).toBe('syntax');
      expect(scanOk('{"a":"\ufeff"}').ok).toBe(true); // inside a string it is just a character
    });

    it('refuses anything but whitespace after the value as trailing data', () => {
      for (const text of [
        '{} x',
        '{}}',
        '[] []',
        '1 2',
        '"a""b"',
        '{}\u0000',
        'null,',
        '{}\ufeff',
        '01',
        '-01',
      ]) {
        expect([text, verdict(text)]).toEqual([text, 'trailing_data']);
      }
    });

    it('accepts whitespace before and after the value and leaves it out of compact', () => {
      const input = encoder.encode(' \r\n\t{"a":1}\t\r\n ');
      const result = scanOk(input);
      expect(decoder.decode(result.compact)).toBe('{"a":1}');
      expect(result.compact.buffer).toBe(input.buffer); // no whitespace inside: still a view
    });

    it('accepts top-level scalars and arrays and reports them as not objects with no spans', () => {
      for (const text of [
        '1',
        '-0',
        '1e5',
        '"s"',
        '""',
        'true',
        'false',
        'null',
        '[]',
        '[1,[2],{"kind":"x"}]',
      ]) {
        const result = scanOk(text);
        expect(decoder.decode(result.compact)).toBe(text);
        expect(result.isObject).toBe(false);
        expect(result.memberCount).toBe(0);
      }
    });

    it('accepts nesting exactly MAX_DEPTH deep and refuses one more as too_deep, for arrays and objects', () => {
      const arrays = (d: number): string => `${'['.repeat(d)}${']'.repeat(d)}`;
      const objects = (d: number): string => `${'{"a":'.repeat(d - 1)}{}${'}'.repeat(d - 1)}`;
      const mixed = (d: number): string => `${'[{"k":'.repeat(d / 2)}0${'}]'.repeat(d / 2)}`;
      for (const build of [arrays, objects, mixed]) {
        expect(verdict(build(MAX_DEPTH))).toBe('ok');
        expect(verdict(build(MAX_DEPTH + 2 - (MAX_DEPTH % 2)))).toBe('too_deep');
      }
      expect(verdict(arrays(MAX_DEPTH + 1))).toBe('too_deep');
      expect(verdict(objects(MAX_DEPTH + 1))).toBe('too_deep');
      // With whitespace between the brackets, the compact form drops it all.
      const spaced = `${'[ '.repeat(MAX_DEPTH)}${' ]'.repeat(MAX_DEPTH)}`;
      expect(decoder.decode(scanOk(spaced).compact)).toBe(arrays(MAX_DEPTH));
    });

    it('refuses a million open brackets quickly, without recursion', () => {
      const started = performance.now();
      expect(verdict('['.repeat(1_000_000))).toBe('too_deep');
      expect(verdict('{"a":'.repeat(1_000_000))).toBe('too_deep');
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(verdict('[[1]]')).toBe('ok'); // no state left behind
    });

    it('refuses every raw control character in a string but accepts DEL and escaped controls', () => {
      for (let c = 0; c < 0x20; c++) {
        expect([c, verdict(`"a${String.fromCharCode(c)}b"`)]).toEqual([c, 'syntax']);
        expect([c, verdict(`{"k${String.fromCharCode(c)}":1}`)]).toEqual([c, 'syntax']);
      }
      expect(verdict('"\u007f"')).toBe('ok');
      expect(verdict('"\\u0000\\u001f\\u001F"')).toBe('ok');
    });

    it('refuses invalid escapes', () => {
      for (const text of [
        '"\\a"',
        '"\\x41"',
        '"\\U0041"',
        '"\\u12"',
        '"\\u12G4"',
        '"\\u"',
        '"\\ "',
        '"\\\'"',
        '"\\0"',
        '"\\',
        '"\\"',
        '"\\u00e"',
      ]) {
        expect([text, verdict(text)]).toEqual([text, 'syntax']);
      }
      expect(verdict('"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00aF\\ud800\\udfff"')).toBe('ok');
    });

    it('refuses numbers outside the grammar', () => {
      for (const text of [
        '-',
        '1.',
        '.5',
        '1e',
        '1e+',
        '1E-',
        '+1',
        '-.5',
        '1.e5',
        '0x1',
        '00',
        'NaN',
        'Infinity',
        '-Infinity',
        '1_000',
        '\u0663',
        '[01]',
        '[1.]',
        '[-]',
        '[.5]',
        '{"a":-}',
        '{"a":1e}',
      ]) {
        expect(['ok', 'empty']).not.toContain(verdict(text));
        expect(() => JSON.parse(text)).toThrow(); // the reference agrees
      }
    });

    it('refuses misspelled literals and unquoted or single-quoted keys', () => {
      for (const text of [
        'tru',
        'True',
        'nul',
        'nulll',
        'falsey',
        'undefined',
        '{a:1}',
        "{'a':1}",
        '[truex]',
      ]) {
        expect(['syntax', 'trailing_data']).toContain(verdict(text));
      }
    });

    it('refuses broken structure with a message that says where', () => {
      for (const text of [
        '{',
        '[',
        '{"a"}',
        '{"a":}',
        '{"a":1,}',
        '[1,]',
        '[,1]',
        '{,}',
        '{"a" 1}',
        '{1:2}',
      ]) {
        expect([text, verdict(text)]).toEqual([text, 'syntax']);
      }
      for (const text of ['[1 2]', '"abc', ']', '}', '[}', '{]', '{"a":1]', '[1}', ':', ',']) {
        expect([text, verdict(text)]).toEqual([text, 'syntax']);
      }
      const result = scan('[1,]');
      expect(result.ok ? '' : result.message).toContain('byte 3');
    });

    it('refuses invalid UTF-8 inside a string as invalid_utf8 and outside one as syntax', () => {
      for (const seq of INVALID_UTF8) {
        const inString = Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, ...seq, 0x22, 0x7d]);
        expect([seq, verdict(inString)]).toEqual([seq, 'invalid_utf8']);
        const inKey = Uint8Array.from([0x7b, 0x22, ...seq, 0x22, 0x3a, 0x31, 0x7d]);
        expect([seq, verdict(inKey)]).toEqual([seq, 'invalid_utf8']);
        const bare = Uint8Array.from([0x5b, ...seq, 0x5d]);
        expect([seq, verdict(bare)]).toEqual([seq, 'syntax']);
      }
    });

    it('accepts the edges of every UTF-8 width', () => {
      const text = '"\u0080\u07ff\u0800\ud7ff\ue000\uffff\u{10000}\u{10ffff}"';
      expect(decoder.decode(scanOk(text).compact)).toBe(text);
    });

    /** The members as readable tuples: key text, value text, parent, escaped. */
    function memberTexts(result: ScanOk): [string, string, number, number][] {
      const out: [string, string, number, number][] = [];
      const m = memberInts(result);
      for (let i = 0; i < m.length; i += 6) {
        const text = (from: number, to: number) =>
          decoder.decode(result.compact.subarray(m[i + from], m[i + to]));
        out.push([text(0, 1), text(2, 3), m[i + 4] as number, m[i + 5] as number]);
      }
      return out;
    }

    it('lists the root members and those of objects directly inside it, and nothing deeper or in arrays', () => {
      const result = scanOk('{"a":1,"b":{"c":{"d":2},"e":[{"f":3}]},"g":[{"h":4}],"i":{}}');
      expect(memberTexts(result)).toEqual([
        ['"a"', '1', -1, 0],
        ['"b"', '{"c":{"d":2},"e":[{"f":3}]}', -1, 0],
        ['"c"', '{"d":2}', 1, 0],
        ['"e"', '[{"f":3}]', 1, 0],
        ['"g"', '[{"h":4}]', -1, 0],
        ['"i"', '{}', -1, 0],
      ]);
      expect(scanOk('[{"a":1}]').memberCount).toBe(0);
    });

    it('flags keys spelled with escapes and keeps them as written', () => {
      const result = scanOk('{"\\u006bind":"K","\\u0072equest":{"\\u0075id":"U","x":1}}');
      expect(memberTexts(result)).toEqual([
        ['"\\u006bind"', '"K"', -1, 1],
        ['"\\u0072equest"', '{"\\u0075id":"U","x":1}', -1, 1],
        ['"\\u0075id"', '"U"', 1, 1],
        ['"x"', '1', 1, 0],
      ]);
    });

    it("lists repeated keys as often as they come: deciding on them is the record's job", () => {
      const result = scanOk('{"kind":"a","kind":"b","request":{"uid":"u","uid":"v"}}');
      expect(memberTexts(result).map(([k, v]) => `${k}:${v}`)).toEqual([
        '"kind":"a"',
        '"kind":"b"',
        '"request":{"uid":"u","uid":"v"}',
        '"uid":"u"',
        '"uid":"v"',
      ]);
    });

    it('gives offsets in the compact text when whitespace was removed', () => {
      const result = scanOk(
        '{ "kind" : { "a" : [ 1 , 2 ] } , "request" : { "uid" : [ ] } , "apiVersion" : -1.5e+3 }',
      );
      expect(memberTexts(result)).toEqual([
        ['"kind"', '{"a":[1,2]}', -1, 0],
        ['"a"', '[1,2]', 0, 0],
        ['"request"', '{"uid":[]}', -1, 0],
        ['"uid"', '[]', 2, 0],
        ['"apiVersion"', '-1.5e+3', -1, 0],
      ]);
    });

    it('lists more members than the WebAssembly table holds', () => {
      const many = Array.from({ length: 150 }, (_, i) => `"k${i}":${i}`).join(',');
      const result = scanOk(`{"request":{${many}},"z":0}`);
      expect(result.memberCount).toBe(152);
      expect(memberTexts(result)[151]).toEqual(['"z"', '0', -1, 0]);
    });

    it('keeps integer-like keys, escapes and number spellings byte for byte', () => {
      const text =
        '{"1":1,"0":-0,"b":12345678901234567890,"a":"\\u00e9\\/\\ud83d\\ude00","10":1E+5,"e":0.5e-3}';
      expect(decoder.decode(scanOk(` ${text.replaceAll(',', ' ,\n')} `).compact)).toBe(text);
    });
  });
}

scannerSuite('scanJson', scanJson);
scannerSuite('scanJsonFast', scanJsonFast);
