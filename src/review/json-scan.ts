/**
 * @module One pass over JSON bytes: validate (RFC 8259), compact, and list the top two levels of members.
 *
 * The audit line must keep the request body byte for byte (key order, escapes, number spelling),
 * so the body is never decoded and re-encoded. Instead this scanner walks the bytes once, checks
 * the grammar, drops insignificant whitespace (copying only when there is some: the API server
 * already sends compact JSON, so usually the output is a view of the input), and lists where the
 * members of the root object, and of each object directly inside it, are: for an AdmissionReview,
 * `kind`, `apiVersion`, `request` and each of `request`'s fields. The scanner knows no key names;
 * src/audit/record.ts decides which members matter.
 */
import { isUtf8 } from 'node:buffer';

/**
 * Deepest nesting accepted. The API server's own JSON decoding stops at 10,000 levels
 * (k8s.io/apimachinery's max nesting depth), so anything it can send fits; the stack costs 10 KB.
 */
export const MAX_DEPTH = 10_000;

/** Why a body is not JSON we can log; also the `reason` label of the invalid-request metric. */
export type ScanErrorReason = 'empty' | 'syntax' | 'trailing_data' | 'invalid_utf8' | 'too_deep';

/** A body that failed to scan: a reason code plus a human message saying what and where. */
export type ScanError = { ok: false; reason: ScanErrorReason; message: string };

/** A byte span `[start, end)`; `start` is -1 when absent. */
export type Span = { start: number; end: number };

/**
 * Ints per member in {@link ScanOk.members}: key start and end (the key's string token, quotes
 * included), value start and end (the value's token or container), the index of the root member
 * whose value holds it (-1 for the root's own members), and 1 if the key is written with escapes.
 * json-scan.c writes the same layout.
 */
export const MEMBER_INTS = 6;
/** Offsets within one member's ints; see {@link MEMBER_INTS}. */
export const M_KEY_START = 0;
/** @see M_KEY_START */
export const M_KEY_END = 1;
/** @see M_KEY_START */
export const M_VALUE_START = 2;
/** @see M_KEY_START */
export const M_VALUE_END = 3;
/** @see M_KEY_START */
export const M_PARENT = 4;
/** @see M_KEY_START */
export const M_ESCAPED = 5;

/** What the scanner found in a valid JSON text. Offsets are in `compact`. */
export type ScanOk = {
  ok: true;
  /** The text without insignificant whitespace; a view of the input when it was already compact. */
  compact: Uint8Array;
  /** True when the top-level value is an object. */
  isObject: boolean;
  /**
   * The members of the root object and of each object that is a root member's value, in text order
   * (a parent before its children), {@link MEMBER_INTS} ints each, from `members[membersFrom]` on.
   * From scanJsonFast this is the scanner's own memory, valid only until the next scan: read it at
   * once (no typed array is made per request: measured, making one costs more than reading in place).
   */
  members: Int32Array;
  /** Where the first member's ints start in {@link ScanOk.members}. */
  membersFrom: number;
  /** How many members there are. */
  memberCount: number;
};

/** The members of a scan as an array of their own (for tests and debugging). */
export function memberInts(scan: ScanOk): Int32Array {
  return scan.members.slice(scan.membersFrom, scan.membersFrom + scan.memberCount * MEMBER_INTS);
}

/** Result of {@link scanJson}. */
export type ScanResult = ScanOk | ScanError;

// Byte values used by the grammar.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;

/** 1 for the four whitespace bytes JSON allows between tokens (space, tab, LF, CR). */
const IS_WS = new Uint8Array(256);
IS_WS[0x20] = 1;
IS_WS[0x09] = 1;
IS_WS[0x0a] = 1;
IS_WS[0x0d] = 1;

/** Valid characters after a backslash in a string. */
const IS_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrtu') IS_ESCAPE[c.charCodeAt(0)] = 1;

/** Value of a hex digit plus one (0 = not hex). */
const HEX = new Uint8Array(256);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i + 1;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 11 + i;
  HEX[0x61 + i] = 11 + i;
}

// Container kinds on the stack.
const IN_OBJECT = 1;
const IN_ARRAY = 2;

// Parser states.
const S_VALUE = 0; // a value must come next
const S_VALUE_OR_CLOSE = 1; // just after '[': a value or ']'
const S_KEY_OR_CLOSE = 2; // just after '{': a key or '}'
const S_KEY = 3; // after ',' in an object: a key
const S_COLON = 4; // after a key
const S_AFTER_VALUE = 5; // ',' or the closing bracket, or the end at depth 0

const depthStack = new Uint8Array(MAX_DEPTH + 1);

function fail(reason: ScanErrorReason, message: string): ScanError {
  return { ok: false, reason, message };
}

function describeByte(b: number | undefined): string {
  if (b === undefined) return 'end of input';
  if (b >= 0x21 && b < 0x7f) return `'${String.fromCharCode(b)}'`;
  return `byte 0x${b.toString(16).padStart(2, '0')}`;
}

// Scratch results of the helpers below; module-level so the hot loop allocates nothing.
let lastStringEscaped = false;
let stringError: ScanError = fail('syntax', '');

/** Scans a string body from `start` (just past the quote); returns the closing quote's index, or -1 with `stringError` set. */
function scanString(input: Uint8Array, start: number): number {
  const n = input.length;
  let j = start;
  lastStringEscaped = false;
  while (j < n) {
    const c = input[j] as number;
    if (c === QUOTE) return j;
    if (c === BACKSLASH) {
      const e = input[j + 1];
      if (e === undefined || !IS_ESCAPE[e]) {
        stringError = fail('syntax', `invalid escape in string at byte ${j}`);
        return -1;
      }
      lastStringEscaped = true;
      if (e === 0x75 /* u */) {
        if (
          !(
            HEX[input[j + 2] ?? 0] &&
            HEX[input[j + 3] ?? 0] &&
            HEX[input[j + 4] ?? 0] &&
            HEX[input[j + 5] ?? 0]
          )
        ) {
          stringError = fail('syntax', `invalid \\u escape in string at byte ${j}`);
          return -1;
        }
        j += 6;
      } else {
        j += 2;
      }
      continue;
    }
    if (c < 0x20) {
      stringError = fail('syntax', `unescaped control character in string at byte ${j}`);
      return -1;
    }
    if (c >= 0x80) sawHighByte = true;
    j++;
  }
  stringError = fail('syntax', 'unterminated string');
  return -1;
}
let sawHighByte = false;

function isDigit(b: number | undefined): boolean {
  return b !== undefined && b >= ZERO && b <= NINE;
}

/** Scans a number from `start`; returns the index past it, or -1. */
function scanNumber(input: Uint8Array, start: number): number {
  let j = start;
  if (input[j] === MINUS) j++;
  const first = input[j];
  if (first === ZERO) j++;
  else if (isDigit(first)) {
    while (isDigit(input[j])) j++;
  } else return -1;
  if (input[j] === DOT) {
    j++;
    const d = j;
    while (isDigit(input[j])) j++;
    if (j === d) return -1;
  }
  if (input[j] === LOWER_E || input[j] === UPPER_E) {
    j++;
    if (input[j] === PLUS || input[j] === MINUS) j++;
    const d = j;
    while (isDigit(input[j])) j++;
    if (j === d) return -1;
  }
  return j;
}

/** Returns the length of the literal (true/false/null) at `start`, or -1. */
function scanLiteral(input: Uint8Array, start: number, word: Uint8Array): number {
  for (let k = 0; k < word.length; k++) if (input[start + k] !== word[k]) return -1;
  return start + word.length;
}
const encoder = new TextEncoder();
const TRUE = encoder.encode('true');
const FALSE = encoder.encode('false');
const NULL = encoder.encode('null');

/**
 * Scans a JSON text: validates it strictly (RFC 8259, UTF-8, depth at most {@link MAX_DEPTH}),
 * compacts it, and lists the members of its top two object levels. Never throws on any input.
 */
export function scanJson(input: Uint8Array): ScanResult {
  const n = input.length;
  let i = 0;
  while (i < n && IS_WS[input[i] as number]) i++;
  if (i === n) return fail('empty', 'request body is empty');
  const valueStart = i;
  sawHighByte = false;

  // Compaction: `out` stays null while no whitespace has been seen inside the value.
  let out: Uint8Array | null = null;
  let outLen = 0;
  let copyFrom = valueStart;
  let removed = valueStart; // bytes dropped before the current position (for span coordinates)

  let depth = 0;
  let state = S_VALUE;
  const isObject = input[valueStart] === LBRACE;
  let valueEnd = -1;

  // Member listing (see ScanOk.members).
  const members: number[] = [];
  let pendingMember = -1; // member whose value is about to start
  let open1 = -1; // root member whose value is being scanned
  let open2 = -1; // member one level down whose value is being scanned

  while (true) {
    if (state === S_AFTER_VALUE) {
      // A value directly inside a listed object just ended: it is the open member's value.
      if (depth === 2 && open2 >= 0) {
        members[open2 * MEMBER_INTS + M_VALUE_END] = i - removed;
        open2 = -1;
      } else if (depth === 1 && open1 >= 0) {
        members[open1 * MEMBER_INTS + M_VALUE_END] = i - removed;
        open1 = -1;
      }
      if (depth === 0) {
        valueEnd = i;
        break;
      }
    }
    // Whitespace between tokens is what compaction removes.
    if (i < n && IS_WS[input[i] as number]) {
      const wsStart = i;
      while (i < n && IS_WS[input[i] as number]) i++;
      if (out === null) out = new Uint8Array(n);
      out.set(input.subarray(copyFrom, wsStart), outLen);
      outLen += wsStart - copyFrom;
      copyFrom = i;
      removed += i - wsStart;
    }
    if (i >= n) return fail('syntax', `unexpected end of input at byte ${i}`);
    const b = input[i] as number;

    switch (state) {
      case S_AFTER_VALUE: {
        const top = depthStack[depth];
        if (b === COMMA) {
          state = top === IN_OBJECT ? S_KEY : S_VALUE;
          i++;
          continue;
        }
        if ((b === RBRACE && top === IN_OBJECT) || (b === RBRACKET && top === IN_ARRAY)) {
          i++;
          depth--;
          continue;
        }
        return fail('syntax', `expected ',' or a closing bracket at byte ${i}, found ${describeByte(b)}`);
      }
      case S_COLON:
        if (b !== COLON) return fail('syntax', `expected ':' at byte ${i}, found ${describeByte(b)}`);
        i++;
        state = S_VALUE;
        continue;
      case S_KEY_OR_CLOSE:
      case S_KEY: {
        if (b === RBRACE && state === S_KEY_OR_CLOSE) {
          i++;
          depth--;
          state = S_AFTER_VALUE;
          continue;
        }
        if (b !== QUOTE)
          return fail('syntax', `expected a string key at byte ${i}, found ${describeByte(b)}`);
        const keyStart = i + 1;
        const end = scanString(input, keyStart);
        if (end < 0) return stringError;
        if (depth === 1 || (depth === 2 && depthStack[1] === IN_OBJECT)) {
          pendingMember = members.length / MEMBER_INTS;
          members.push(
            keyStart - 1 - removed,
            end + 1 - removed,
            -1,
            -1,
            depth === 1 ? -1 : open1,
            lastStringEscaped ? 1 : 0,
          );
          if (depth === 1) open1 = pendingMember;
          else open2 = pendingMember;
        }
        i = end + 1;
        state = S_COLON;
        continue;
      }
    }

    // A value is due (S_VALUE or S_VALUE_OR_CLOSE).
    if (b === RBRACKET && state === S_VALUE_OR_CLOSE) {
      i++;
      depth--;
      state = S_AFTER_VALUE;
      continue;
    }
    if (pendingMember >= 0) {
      members[pendingMember * MEMBER_INTS + M_VALUE_START] = i - removed;
      pendingMember = -1;
    }
    if (b === LBRACE || b === LBRACKET) {
      if (depth === MAX_DEPTH)
        return fail('too_deep', `nesting deeper than ${MAX_DEPTH} levels at byte ${i}`);
      depth++;
      depthStack[depth] = b === LBRACE ? IN_OBJECT : IN_ARRAY;
      state = b === LBRACE ? S_KEY_OR_CLOSE : S_VALUE_OR_CLOSE;
      i++;
      continue;
    }
    let end: number;
    if (b === QUOTE) {
      end = scanString(input, i + 1);
      if (end < 0) return stringError;
      end++;
    } else if (b === MINUS || (b >= ZERO && b <= NINE)) {
      end = scanNumber(input, i);
      if (end < 0) return fail('syntax', `invalid number at byte ${i}`);
    } else if (b === 0x74 /* t */ || b === 0x66 /* f */ || b === 0x6e /* n */) {
      end = scanLiteral(input, i, b === 0x74 ? TRUE : b === 0x66 ? FALSE : NULL);
      if (end < 0) return fail('syntax', `invalid literal at byte ${i}`);
    } else {
      return fail('syntax', `expected a value at byte ${i}, found ${describeByte(b)}`);
    }
    i = end;
    state = S_AFTER_VALUE;
  }

  // Past the value; only whitespace may follow.
  while (i < n && IS_WS[input[i] as number]) i++;
  if (i < n) return fail('trailing_data', `unexpected data after the JSON value at byte ${i}`);
  if (sawHighByte && !isUtf8(input)) return fail('invalid_utf8', 'request body is not valid UTF-8');

  let compact: Uint8Array;
  if (out === null) {
    compact = input.subarray(valueStart, valueEnd);
  } else {
    out.set(input.subarray(copyFrom, valueEnd), outLen);
    outLen += valueEnd - copyFrom;
    compact = out.subarray(0, outLen);
  }
  return {
    ok: true,
    compact,
    isObject,
    members: Int32Array.from(members),
    membersFrom: 0,
    memberCount: members.length / MEMBER_INTS,
  };
}
