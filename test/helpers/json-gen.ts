/**
 * @module Seeded random JSON for property tests: valid texts (every whitespace byte, escape, number
 * spelling and UTF-8 width), AdmissionReview-shaped objects with known value tokens, a byte mutator,
 * and the small reference oracles (compaction, field finder) the tests hold the scanner against.
 *
 * Everything is driven by {@link createRng}; a failing case is replayed from the seed in its message.
 */

/** A seeded pseudo-random source (mulberry32): the same seed gives the same sequence everywhere. */
export type Rng = {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
};

/** Creates a mulberry32 generator from a 32-bit seed. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  function next(): number {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  function int(n: number): number {
    return Math.floor(next() * n);
  }
  return {
    seed,
    next,
    int,
    chance: (p) => next() < p,
    pick<T>(items: readonly T[]): T {
      const item = items[int(items.length)];
      if (item === undefined) throw new Error('pick from an empty list');
      return item;
    },
  };
}

/**
 * Runs `body` once per seed `firstSeed, firstSeed + 1, …` (`count` times). A failure is rethrown with the
 * seed and `describe(input)` in its message, so `createRng(seed)` replays exactly that case.
 */
export function forEachSeed(firstSeed: number, count: number, body: (rng: Rng) => void): void {
  for (let k = 0; k < count; k++) {
    const seed = (firstSeed + k) >>> 0;
    try {
      body(createRng(seed));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`property failed for seed ${seed} (replay with createRng(${seed})):\n${message}`, {
        cause: err,
      });
    }
  }
}

/** A readable, bounded rendering of some bytes for failure messages (JSON-quoted, invalid UTF-8 as U+FFFD). */
export function show(bytes: Uint8Array | string, max = 400): string {
  const text = typeof bytes === 'string' ? bytes : new TextDecoder().decode(bytes);
  const hex =
    typeof bytes === 'string' || bytes.length > 200 ? '' : ` hex=${Buffer.from(bytes).toString('hex')}`;
  return `${JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)} (${text.length} chars)${hex}`;
}

// ---------------------------------------------------------------------------------------------------
// Valid JSON text.

const WS = [' ', '\t', '\r', '\n'] as const;

/** Insignificant whitespace: usually none, sometimes a run of space/tab/CR/LF. */
export function ws(rng: Rng): string {
  if (rng.chance(0.6)) return '';
  let out = '';
  const n = 1 + rng.int(3);
  for (let k = 0; k < n; k++) out += rng.pick(WS);
  return out;
}

const SIMPLE_ESCAPES = ['\\"', '\\\\', '\\/', '\\b', '\\f', '\\n', '\\r', '\\t'] as const;
// Raw characters of every UTF-8 width, with the edges of each range (U+0080, U+07FF, U+0800, U+FFFF,
// U+10000, U+10FFFF) and DEL, which JSON allows unescaped.
const RAW_CHARS = [
  'a',
  'Z',
  '0',
  ' ',
  '/',
  '\u007f',
  'é',
  'ß',
  '\u0080',
  '\u07ff',
  '€',
  '中',
  '\u0800',
  '\uffff',
  '\ufeff',
  '😀',
  '\u{10000}',
  '\u{10ffff}',
] as const;

function hex4(code: number, upper: boolean): string {
  const h = code.toString(16).padStart(4, '0');
  return upper ? h.toUpperCase() : h;
}

/** One character of a string token, as JSON source text. */
function stringPiece(rng: Rng): string {
  switch (rng.int(9)) {
    case 0:
    case 1:
      return rng.pick(RAW_CHARS);
    case 2:
      return rng.pick(SIMPLE_ESCAPES);
    case 3: {
      // \uXXXX of a BMP non-surrogate, hex in either case.
      let code = rng.int(0x10000);
      if (code >= 0xd800 && code < 0xe000) code -= 0x800;
      return `\\u${hex4(code, rng.chance(0.5))}`;
    }
    case 4: {
      // A surrogate pair spelled as two escapes.
      const hi = 0xd800 + rng.int(0x400);
      const lo = 0xdc00 + rng.int(0x400);
      return `\\u${hex4(hi, rng.chance(0.5))}\\u${hex4(lo, rng.chance(0.5))}`;
    }
    case 5: {
      // A lone surrogate escape (JSON.parse accepts it; so do we).
      const code = rng.chance(0.5) ? 0xd800 + rng.int(0x400) : 0xdc00 + rng.int(0x400);
      return `\\u${hex4(code, rng.chance(0.5))}`;
    }
    case 6: {
      // A raw character from a random code point of any width.
      const width = rng.int(4);
      const bounds = [
        [0x20, 0x7f],
        [0x80, 0x800],
        [0x800, 0x10000],
        [0x10000, 0x110000],
      ] as const;
      const [lo, hi] = bounds[width] ?? [0x20, 0x7f];
      let code = lo + rng.int(hi - lo);
      if (code >= 0xd800 && code < 0xe000) code = 0xe000;
      const ch = String.fromCodePoint(code);
      return ch === '"' || ch === '\\' ? 'x' : ch;
    }
    default: {
      const n = 1 + rng.int(6);
      let s = '';
      for (let k = 0; k < n; k++) s += String.fromCharCode(0x61 + rng.int(26));
      return s;
    }
  }
}

/** A string token (quotes included) with random content; sometimes empty. */
export function stringToken(rng: Rng, maxPieces = 6): string {
  const n = rng.int(maxPieces + 1);
  let s = '"';
  for (let k = 0; k < n; k++) s += stringPiece(rng);
  return `${s}"`;
}

const NUMBER_SPELLINGS = [
  '0',
  '-0',
  '1',
  '-1',
  '1e5',
  '1E5',
  '1e+5',
  '1E+5',
  '1e-5',
  '0.5e-3',
  '-0.0',
  '0.0',
  '1.5E-10',
  '12345678901234567890',
  '-12345678901234567890123',
  '9007199254740993',
  '1e400',
  '-1e-400',
  '0e0',
  '123.456000',
] as const;

/** A number token: a known tricky spelling, or a random one built from the grammar. */
export function numberToken(rng: Rng): string {
  if (rng.chance(0.4)) return rng.pick(NUMBER_SPELLINGS);
  let s = rng.chance(0.3) ? '-' : '';
  if (rng.chance(0.2)) s += '0';
  else {
    s += String(1 + rng.int(9));
    const n = rng.int(25);
    for (let k = 0; k < n; k++) s += String(rng.int(10));
  }
  if (rng.chance(0.3)) {
    s += '.';
    const n = 1 + rng.int(8);
    for (let k = 0; k < n; k++) s += String(rng.int(10));
  }
  if (rng.chance(0.3)) {
    s += rng.pick(['e', 'E']) + rng.pick(['', '+', '-']);
    const n = 1 + rng.int(3);
    for (let k = 0; k < n; k++) s += String(rng.int(10));
  }
  return s;
}

// Keys: integer-like ones (which JSON.stringify would reorder), the tracked names plain and escaped,
// near-misses, and random strings.
const KEY_SPELLINGS = [
  '"0"',
  '"1"',
  '"10"',
  '"2"',
  '"-1"',
  '"01"',
  '""',
  '"kind"',
  '"\\u006bind"',
  '"apiVersion"',
  '"request"',
  '"uid"',
  '"\\u0075id"',
  '"requestReceivedTimestamp"',
  '"Kind"',
  '"kinds"',
  '"metadata"',
  '"name"',
] as const;

/** A key token for an object member. */
export function keyToken(rng: Rng): string {
  return rng.chance(0.5) ? rng.pick(KEY_SPELLINGS) : stringToken(rng, 4);
}

/** The name a key token spells, so generated objects never hold the same name twice. */
function decodedKey(token: string): string {
  return JSON.parse(token) as string;
}

/** Options of {@link valueText}. */
export type ValueOptions = {
  /** Nesting levels still allowed below this value (default 5). */
  depth?: number;
  /** Probability of a container when depth allows (default 0.35). */
  containerChance?: number;
};

/** A JSON value as source text, with random insignificant whitespace inside it (none around it). */
export function valueText(rng: Rng, options: ValueOptions = {}): string {
  const depth = options.depth ?? 5;
  const containerChance = options.containerChance ?? 0.35;
  if (depth > 0 && rng.chance(containerChance)) {
    const inner = { depth: depth - 1, containerChance: containerChance * 0.85 };
    return rng.chance(0.5) ? objectText(rng, randomMembers(rng, inner)) : arrayText(rng, inner);
  }
  switch (rng.int(6)) {
    case 0:
    case 1:
      return stringToken(rng);
    case 2:
    case 3:
      return numberToken(rng);
    default:
      return rng.pick(['true', 'false', 'null']);
  }
}

function arrayText(rng: Rng, options: ValueOptions): string {
  const n = rng.chance(0.15) ? 0 : rng.int(5);
  if (n === 0) return `[${ws(rng)}]`;
  const items: string[] = [];
  for (let k = 0; k < n; k++) items.push(ws(rng) + valueText(rng, options) + ws(rng));
  return `[${items.join(',')}]`;
}

/** An object member: key token and value text. */
export type Member = [key: string, value: string];

function randomMembers(rng: Rng, options: ValueOptions): Member[] {
  const n = rng.chance(0.15) ? 0 : rng.int(5);
  const members: Member[] = [];
  const names = new Set<string>();
  for (let k = 0; k < n; k++) {
    const key = keyToken(rng);
    const name = decodedKey(key);
    if (names.has(name)) continue;
    names.add(name);
    members.push([key, valueText(rng, options)]);
  }
  return members;
}

/** An object from members, with random whitespace around every token. */
export function objectText(rng: Rng, members: readonly Member[]): string {
  if (members.length === 0) return `{${ws(rng)}}`;
  const parts = members.map(([key, value]) => `${ws(rng)}${key}${ws(rng)}:${ws(rng)}${value}${ws(rng)}`);
  return `{${parts.join(',')}}`;
}

/** A whole JSON text: any value, sometimes nested deeply, with whitespace before and after. */
export function jsonText(rng: Rng): string {
  let value: string;
  if (rng.chance(0.05)) {
    // A deep chain of mixed containers (well under MAX_DEPTH).
    const levels = 20 + rng.int(200);
    const closers: string[] = [];
    value = '';
    for (let k = 0; k < levels; k++) {
      if (rng.chance(0.5)) {
        value += `[${ws(rng)}`;
        closers.push(`${ws(rng)}]`);
      } else {
        value += `{${ws(rng)}${keyToken(rng)}${ws(rng)}:${ws(rng)}`;
        closers.push(`${ws(rng)}}`);
      }
    }
    value += valueText(rng, { depth: 1 }) + closers.reverse().join('');
  } else {
    value = valueText(rng, { depth: 1 + rng.int(6), containerChance: 0.6 });
  }
  return ws(rng) + value + ws(rng);
}

// ---------------------------------------------------------------------------------------------------
// AdmissionReview-shaped objects.

/** A generated AdmissionReview-like text and the compact tokens its tracked fields must have. */
export type ReviewCase = {
  text: string;
  /** Compact value token of each tracked field, or undefined when the field is absent. */
  kind: string | undefined;
  apiVersion: string | undefined;
  timestamp: string | undefined;
  uid: string | undefined;
  /** Whether a top-level `request` member holds an object. */
  requestIsObject: boolean;
};

/** Options of {@link reviewCase}. */
export type ReviewOptions = {
  /**
   * When true (default), the case is a review parseReview accepts: kind "AdmissionReview", a supported
   * apiVersion, a request object with a non-empty string uid. When false, every field may be absent
   * or of any JSON type.
   */
  valid?: boolean;
};

const KIND_SPELLINGS = ['"AdmissionReview"', '"Admission\\u0052eview"', '"\\u0041dmissionReview"'] as const;
const API_VERSION_SPELLINGS = [
  '"admission.k8s.io/v1"',
  '"admission.k8s.io/v1beta1"',
  '"admission.k8s.io\\/v1"',
  '"admission.k8s.io\\/v1beta1"',
] as const;
const UID_SPELLINGS = [
  '"0f6a1c3e-2b7d-4e59-9a10-3c2d1e0f9b8a"',
  '"a\\"b"',
  '"back\\\\slash"',
  '"\\u00e9t\\u00E9"',
  '"ü中😀"',
  '"\\ud83d\\ude00"',
  '"\\ud800"',
  '"x\\/y\\n\\t"',
] as const;
const KEY_NAMES = {
  kind: ['"kind"', '"\\u006bind"', '"k\\u0069nd"'],
  apiVersion: ['"apiVersion"', '"api\\u0056ersion"'],
  request: ['"request"', '"\\u0072equest"'],
  timestamp: ['"requestReceivedTimestamp"', '"requestReceived\\u0054imestamp"'],
  uid: ['"uid"', '"\\u0075id"', '"u\\u0069\\u0064"'],
} as const;

/** A non-empty string token for a uid. */
export function uidToken(rng: Rng): string {
  if (rng.chance(0.5)) return rng.pick(UID_SPELLINGS);
  const token = stringToken(rng, 8);
  return token === '""' ? '"u"' : token;
}

/** Decoy members: keys that look tracked but sit where the scanner must not pick them up. */
function decoys(rng: Rng): Member[] {
  const out: Member[] = [];
  const nested = (key: string): string =>
    objectText(rng, [
      [key, valueText(rng)],
      ['"name"', stringToken(rng)],
    ]);
  if (rng.chance(0.5)) out.push(['"metadata"', nested(rng.pick(KEY_NAMES.uid))]);
  if (rng.chance(0.3)) out.push(['"response"', nested('"uid"')]);
  if (rng.chance(0.3)) out.push(['"Kind"', valueText(rng)]);
  if (rng.chance(0.3)) out.push(['"kinds"', valueText(rng)]);
  if (rng.chance(0.3)) out.push(['"uid"', stringToken(rng)]);
  if (rng.chance(0.3)) out.push(['"1"', valueText(rng)]);
  if (rng.chance(0.3)) out.push(['"0"', nested(rng.pick(KEY_NAMES.request))]);
  return out;
}

/** The members of a request object besides uid, with uid/kind decoys nested inside. */
function requestMembers(rng: Rng): Member[] {
  const out: Member[] = [];
  const pod = (): string =>
    objectText(rng, [
      ['"metadata"', objectText(rng, [['"uid"', uidToken(rng)]])],
      ['"kind"', '"Pod"'],
      ['"spec"', valueText(rng)],
    ]);
  if (rng.chance(0.6)) out.push(['"kind"', objectText(rng, [['"kind"', '"Pod"']])]);
  if (rng.chance(0.6)) out.push(['"object"', pod()]);
  if (rng.chance(0.3)) out.push(['"oldObject"', rng.chance(0.5) ? 'null' : pod()]);
  if (rng.chance(0.3)) out.push(['"items"', `[${pod()},${ws(rng)}${objectText(rng, [['"uid"', '"1"']])}]`]);
  if (rng.chance(0.5)) out.push(['"operation"', '"CREATE"']);
  if (rng.chance(0.3)) out.push(['"requestReceivedTimestamp"', valueText(rng)]);
  if (rng.chance(0.3)) out.push(['"request"', objectText(rng, [['"uid"', '"inner"']])]);
  return out;
}

function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let k = items.length - 1; k > 0; k--) {
    const j = rng.int(k + 1);
    const a = items[k] as T;
    items[k] = items[j] as T;
    items[j] = a;
  }
  return items;
}

/** An AdmissionReview-shaped object text with keys in random order and whitespace everywhere. */
export function reviewCase(rng: Rng, options: ReviewOptions = {}): ReviewCase {
  const valid = options.valid ?? true;
  const anyValue = (): string => valueText(rng, { depth: 2 });
  const members: Member[] = [];
  const expected: ReviewCase = {
    text: '',
    kind: undefined,
    apiVersion: undefined,
    timestamp: undefined,
    uid: undefined,
    requestIsObject: false,
  };

  if (valid || rng.chance(0.8)) {
    const value = valid || rng.chance(0.5) ? rng.pick(KIND_SPELLINGS) : anyValue();
    members.push([rng.pick(KEY_NAMES.kind), value]);
    expected.kind = referenceCompactText(value);
  }
  if (valid || rng.chance(0.8)) {
    const value = valid || rng.chance(0.5) ? rng.pick(API_VERSION_SPELLINGS) : anyValue();
    members.push([rng.pick(KEY_NAMES.apiVersion), value]);
    expected.apiVersion = referenceCompactText(value);
  }
  if (rng.chance(0.5)) {
    const value = anyValue();
    members.push([rng.pick(KEY_NAMES.timestamp), value]);
    expected.timestamp = referenceCompactText(value);
  }
  if (valid || rng.chance(0.8)) {
    if (valid || rng.chance(0.8)) {
      const inner = requestMembers(rng);
      if (valid || rng.chance(0.8)) {
        const value = valid || rng.chance(0.5) ? uidToken(rng) : anyValue();
        inner.push([rng.pick(KEY_NAMES.uid), value]);
        expected.uid = referenceCompactText(value);
      }
      members.push([rng.pick(KEY_NAMES.request), objectText(rng, shuffle(rng, inner))]);
      expected.requestIsObject = true;
    } else {
      members.push([rng.pick(KEY_NAMES.request), rng.pick(['null', '[]', '"x"', '1', `[{"uid":"a"}]`])]);
    }
  }
  members.push(...decoys(rng));
  expected.text = ws(rng) + objectText(rng, shuffle(rng, members)) + ws(rng);
  return expected;
}

// ---------------------------------------------------------------------------------------------------
// Mutation.

// Bytes that change the grammar when dropped anywhere.
const INTERESTING_BYTES = [
  0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x20, 0x09, 0x0a, 0x0d, 0x30, 0x31, 0x2d, 0x2b, 0x2e, 0x65,
  0x45, 0x75, 0x74, 0x6e, 0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xff,
] as const;

/** Invalid UTF-8 of every kind the decoder must refuse. */
export const INVALID_UTF8: readonly (readonly number[])[] = [
  [0xc0, 0x80], // overlong NUL
  [0xc1, 0xbf], // overlong 2-byte
  [0xe0, 0x80, 0x80], // overlong 3-byte
  [0xe0, 0x9f, 0xbf], // overlong 3-byte, top
  [0xf0, 0x80, 0x80, 0x80], // overlong 4-byte
  [0xf0, 0x8f, 0xbf, 0xbf], // overlong 4-byte, top
  [0xed, 0xa0, 0x80], // high surrogate U+D800
  [0xed, 0xbf, 0xbf], // low surrogate U+DFFF
  [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], // CESU-8 pair
  [0x80], // lone continuation
  [0xbf], // lone continuation
  [0x80, 0x80], // continuations
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf5, 0x80, 0x80, 0x80], // F5 lead
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
  [0xfe], // never valid
  [0xff], // never valid
  [0xc3], // truncated 2-byte
  [0xe2, 0x82], // truncated 3-byte
  [0xf0, 0x9f, 0x98], // truncated 4-byte
  [0xe2, 0x28, 0xa1], // bad continuation
];

// Valid multi-byte characters, so insertions do not only ever produce invalid text.
const VALID_UTF8: readonly (readonly number[])[] = [
  [0xc3, 0xa9],
  [0xe2, 0x82, 0xac],
  [0xef, 0xbb, 0xbf],
  [0xf0, 0x9f, 0x98, 0x80],
  [0xf4, 0x8f, 0xbf, 0xbf],
];

function insertAt(bytes: Uint8Array, at: number, inserted: readonly number[] | Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + inserted.length);
  out.set(bytes.subarray(0, at), 0);
  out.set(inserted, at);
  out.set(bytes.subarray(at), at + inserted.length);
  return out;
}

/** A position biased towards the inside of strings (just after a quote), where UTF-8 matters. */
function position(rng: Rng, bytes: Uint8Array, inclusiveEnd: boolean): number {
  const limit = bytes.length + (inclusiveEnd ? 1 : 0);
  if (limit === 0) return 0;
  if (rng.chance(0.4)) {
    const from = rng.int(limit);
    const quote = bytes.indexOf(0x22, from);
    if (quote >= 0 && quote + 1 < limit) return quote + 1;
  }
  return rng.int(limit);
}

/** Applies one to three random byte-level edits; the input is not modified. */
export function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const edits = 1 + rng.int(3);
  for (let k = 0; k < edits; k++) {
    const op = rng.int(10);
    if (bytes.length === 0 && op < 7) {
      bytes = insertAt(bytes, 0, [rng.pick(INTERESTING_BYTES)]);
      continue;
    }
    switch (op) {
      case 0: {
        const at = position(rng, bytes, false);
        bytes[at] = (bytes[at] ?? 0) ^ (1 << rng.int(8));
        break;
      }
      case 1:
        bytes[position(rng, bytes, false)] = rng.int(256);
        break;
      case 2:
        bytes[position(rng, bytes, false)] = rng.pick(INTERESTING_BYTES);
        break;
      case 3:
        bytes = insertAt(bytes, position(rng, bytes, true), [rng.pick(INTERESTING_BYTES)]);
        break;
      case 4: {
        // Delete one to three bytes.
        const at = position(rng, bytes, false);
        const out = new Uint8Array(Math.max(at, bytes.length - 1 - rng.int(3)));
        out.set(bytes.subarray(0, at), 0);
        out.set(bytes.subarray(at + bytes.length - out.length), at);
        bytes = out;
        break;
      }
      case 5:
        bytes = bytes.slice(0, rng.int(bytes.length));
        break;
      case 6: {
        // Copy a slice somewhere else (duplicates keys, members and brackets).
        const from = rng.int(bytes.length);
        const slice = bytes.slice(from, from + 1 + rng.int(16));
        bytes = insertAt(bytes, position(rng, bytes, true), slice);
        break;
      }
      case 7:
      case 8:
        bytes = insertAt(bytes, position(rng, bytes, true), rng.pick(INVALID_UTF8));
        break;
      default:
        bytes = insertAt(bytes, position(rng, bytes, true), rng.pick(VALID_UTF8));
    }
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// Reference oracles: deliberately naive, written without looking at how the scanner does it.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Drops whitespace outside strings, one byte at a time. Assumes the text is valid JSON (so a quote
 * inside a string is always escaped and whitespace outside strings is always insignificant).
 */
export function referenceCompact(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  let inString = false;
  let escaped = false;
  for (const b of bytes) {
    if (inString) {
      if (escaped) escaped = false;
      else if (b === 0x5c) escaped = true;
      else if (b === 0x22) inString = false;
      out.push(b);
    } else if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) {
      if (b === 0x22) inString = true;
      out.push(b);
    }
  }
  return Uint8Array.from(out);
}

/** {@link referenceCompact} on a string. */
export function referenceCompactText(text: string): string {
  return decoder.decode(referenceCompact(encoder.encode(text)));
}

/** A byte span `[start, end)` in compact coordinates. */
export type RefSpan = { start: number; end: number };

/** What {@link referenceFields} finds: spans of the tracked values and whether a tracked key repeats. */
export type RefFields = {
  kind: RefSpan | undefined;
  apiVersion: RefSpan | undefined;
  timestamp: RefSpan | undefined;
  uid: RefSpan | undefined;
  requestIsObject: boolean;
  /** A tracked key (kind, apiVersion, request, requestReceivedTimestamp, request.uid) appears twice. */
  duplicate: boolean;
};

/** Index just past the string token starting at `at` (a quote). */
function skipString(c: Uint8Array, at: number): number {
  let k = at + 1;
  while (c[k] !== 0x22) k += c[k] === 0x5c ? 2 : 1;
  return k + 1;
}

/** Index just past the value starting at `at` in valid compact JSON. */
function skipValue(c: Uint8Array, at: number): number {
  const first = c[at];
  if (first === 0x22) return skipString(c, at);
  if (first === 0x7b || first === 0x5b) {
    let depth = 0;
    let k = at;
    do {
      const b = c[k];
      if (b === 0x22) {
        k = skipString(c, k);
        continue;
      }
      if (b === 0x7b || b === 0x5b) depth++;
      else if (b === 0x7d || b === 0x5d) depth--;
      k++;
    } while (depth > 0);
    return k;
  }
  let k = at;
  while (k < c.length && c[k] !== 0x2c && c[k] !== 0x5d && c[k] !== 0x7d) k++;
  return k;
}

/** Calls `visit(name, valueStart, valueEnd)` for each member of the object at `at`; returns its end. */
function members(
  c: Uint8Array,
  at: number,
  visit: (name: string, start: number, end: number) => void,
): number {
  let k = at + 1;
  if (c[k] === 0x7d) return k + 1;
  while (true) {
    const keyEnd = skipString(c, k);
    const name = JSON.parse(decoder.decode(c.subarray(k, keyEnd))) as string;
    const start = keyEnd + 1;
    const end = skipValue(c, start);
    visit(name, start, end);
    k = end + 1;
    if (c[end] === 0x7d) return k;
  }
}

/** Finds the tracked fields of valid compact JSON the slow, obvious way. */
export function referenceFields(c: Uint8Array): RefFields {
  const found: RefFields = {
    kind: undefined,
    apiVersion: undefined,
    timestamp: undefined,
    uid: undefined,
    requestIsObject: false,
    duplicate: false,
  };
  if (c[0] !== 0x7b) return found;
  const seen = new Set<string>();
  const note = (name: string): void => {
    if (seen.has(name)) found.duplicate = true;
    seen.add(name);
  };
  members(c, 0, (name, start, end) => {
    const span = { start, end };
    if (name === 'kind') {
      note(name);
      found.kind ??= span;
    } else if (name === 'apiVersion') {
      note(name);
      found.apiVersion ??= span;
    } else if (name === 'requestReceivedTimestamp') {
      note(name);
      found.timestamp ??= span;
    } else if (name === 'request') {
      const first = !seen.has(name);
      note(name);
      if (first && c[start] === 0x7b) {
        found.requestIsObject = true;
        members(c, start, (inner, s, e) => {
          if (inner !== 'uid') return;
          note('request.uid');
          found.uid ??= { start: s, end: e };
        });
      }
    }
  });
  return found;
}

/**
 * The member table a scanner must list for valid compact JSON `c` (see ScanOk.members in
 * src/review/json-scan.ts), found the slow, obvious way: the root object's members, and the members
 * of each root member whose value is an object, each as key start and end (quotes included), value
 * start and end, the root member's number (-1 at the root) and 1 when the key holds an escape.
 */
export function referenceMembers(c: Uint8Array): number[] {
  const out: number[] = [];
  if (c[0] !== 0x7b) return out;
  const list = (at: number, parent: number, depth: number): void => {
    let k = at + 1;
    if (c[k] === 0x7d) return;
    while (true) {
      const keyEnd = skipString(c, k);
      const escaped = c.subarray(k, keyEnd).includes(0x5c) ? 1 : 0;
      const start = keyEnd + 1;
      const end = skipValue(c, start);
      const self = out.length / 6;
      out.push(k, keyEnd, start, end, parent, escaped);
      if (depth === 1 && c[start] === 0x7b) list(start, self, 2);
      k = end + 1;
      if (c[end] === 0x7d) return;
    }
  };
  list(0, -1, 1);
  return out;
}
