/**
 * @module One pass over JSON bytes: validate (RFC 8259), compact, and note where a few keys are.
 *
 * The audit line must keep the request body byte for byte (key order, escapes, number spelling),
 * so the body is never decoded and re-encoded. Instead this scanner walks the bytes once, checks
 * the grammar, drops insignificant whitespace (copying only when there is some: the API server
 * already sends compact JSON, so usually the output is a view of the input), and records the
 * spans of the values the webhook needs: top-level `kind`, `apiVersion`, `requestReceivedTimestamp`
 * and `request.uid`.
 */
import { isUtf8 } from 'node:buffer';

/**
 * Deepest nesting accepted. The API server's own JSON decoding stops at 10,000 levels
 * (k8s.io/apimachinery's max nesting depth), so anything it can send fits; the stack costs 10 KB.
 */
export const MAX_DEPTH = 10_000;

/** Why a body is not an AdmissionReview we can log; also the `reason` label of the invalid-request metric. */
export type ScanErrorReason =
  | 'empty'
  | 'syntax'
  | 'trailing_data'
  | 'invalid_utf8'
  | 'too_deep'
  | 'not_object'
  | 'duplicate_key';

/** A body that failed to scan: a reason code plus a human message saying what and where. */
export type ScanError = { ok: false; reason: ScanErrorReason; message: string };

/** A byte span `[start, end)`; `start` is -1 when absent. */
export type Span = { start: number; end: number };

/** What the scanner found in a valid JSON text. Spans in `compact` coordinates unless noted. */
export type ScanOk = {
  ok: true;
  /** The text without insignificant whitespace; a view of the input when it was already compact. */
  compact: Uint8Array;
  /** True when the top-level value is an object. */
  isObject: boolean;
  /** Top-level `kind` value token (any JSON type), or start -1. */
  kind: Span;
  /** Top-level `apiVersion` value token, or start -1. */
  apiVersion: Span;
  /** Top-level `requestReceivedTimestamp` value token, or start -1. */
  timestamp: Span;
  /** Whether top-level `request` is present and an object. */
  requestIsObject: boolean;
  /** `request.uid` value token, or start -1. */
  uid: Span;
};

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

// Keys the webhook cares about, as bytes, to compare without decoding.
const encoder = new TextEncoder();
const KEY_KIND = encoder.encode('kind');
const KEY_API_VERSION = encoder.encode('apiVersion');
const KEY_REQUEST = encoder.encode('request');
const KEY_TIMESTAMP = encoder.encode('requestReceivedTimestamp');
const KEY_UID = encoder.encode('uid');

// Which key a value belongs to.
const K_OTHER = 0;
const K_KIND = 1;
const K_API_VERSION = 2;
const K_REQUEST = 3;
const K_TIMESTAMP = 4;
const K_UID = 5;
const K_NAMES = ['', 'kind', 'apiVersion', 'request', 'requestReceivedTimestamp', 'request.uid'];

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

/** Compares the unescaped key `bytes[start..end)` with `key`. */
function keyEquals(bytes: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (bytes[start + i] !== key[i]) return false;
  return true;
}

/** Longest escaped spelling of a tracked key: "requestReceivedTimestamp" with every character as \uXXXX. */
const MAX_ESCAPED_KEY_BYTES = 6 * KEY_TIMESTAMP.length;
const keyDecoder = new TextDecoder();

/**
 * Which tracked key (or K_OTHER) the key `bytes[start..end)`, spelled with escapes ("\u006bind"), names
 * at `depth`. Rare, so decoded the slow, certain way, but once per key: a body of many escaped keys
 * must not cost a decode per candidate name.
 */
function escapedKey(bytes: Uint8Array, start: number, end: number, depth: number): number {
  if (end - start > MAX_ESCAPED_KEY_BYTES) return K_OTHER;
  const name = JSON.parse(keyDecoder.decode(bytes.subarray(start - 1, end + 1))) as string;
  if (depth !== 1) return name === 'uid' ? K_UID : K_OTHER;
  if (name === 'kind') return K_KIND;
  if (name === 'apiVersion') return K_API_VERSION;
  if (name === 'request') return K_REQUEST;
  if (name === 'requestReceivedTimestamp') return K_TIMESTAMP;
  return K_OTHER;
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
const TRUE = encoder.encode('true');
const FALSE = encoder.encode('false');
const NULL = encoder.encode('null');

/**
 * Scans a JSON text: validates it strictly (RFC 8259, UTF-8, depth at most {@link MAX_DEPTH}),
 * compacts it, and locates the AdmissionReview fields the webhook reads. Never throws on any input.
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

  // Key tracking.
  let pendingKey = K_OTHER;
  let seen = 0; // bitmask of K_* seen, for duplicate detection
  let requestDepth = 0; // depth of the `request` object while inside it, else 0
  let requestIsObject = false;
  let trackKey = K_OTHER; // key whose value span is open
  let trackDepth = 0; // depth the tracked value's container has
  let trackStart = -1;
  const spans: Span[] = [NONE(), NONE(), NONE(), NONE(), NONE(), NONE()];

  while (true) {
    if (state === S_AFTER_VALUE) {
      // A value just ended: close its span if it is one we track.
      if (trackKey !== K_OTHER && depth === trackDepth) {
        const span = spans[trackKey] as Span;
        span.start = trackStart;
        span.end = i - removed;
        trackKey = K_OTHER;
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
          if (requestDepth === depth) requestDepth = 0;
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
          if (requestDepth === depth) requestDepth = 0;
          depth--;
          state = S_AFTER_VALUE;
          continue;
        }
        if (b !== QUOTE)
          return fail('syntax', `expected a string key at byte ${i}, found ${describeByte(b)}`);
        const keyStart = i + 1;
        const end = scanString(input, keyStart);
        if (end < 0) return stringError;
        pendingKey = K_OTHER;
        if (lastStringEscaped) {
          if (depth === 1 || (depth === 2 && requestDepth === 2))
            pendingKey = escapedKey(input, keyStart, end, depth);
        } else if (depth === 1) {
          if (keyEquals(input, keyStart, end, KEY_KIND)) pendingKey = K_KIND;
          else if (keyEquals(input, keyStart, end, KEY_API_VERSION)) pendingKey = K_API_VERSION;
          else if (keyEquals(input, keyStart, end, KEY_REQUEST)) pendingKey = K_REQUEST;
          else if (keyEquals(input, keyStart, end, KEY_TIMESTAMP)) pendingKey = K_TIMESTAMP;
        } else if (depth === 2 && requestDepth === 2) {
          if (keyEquals(input, keyStart, end, KEY_UID)) pendingKey = K_UID;
        }
        if (pendingKey !== K_OTHER) {
          const bit = 1 << pendingKey;
          if (seen & bit) return fail('duplicate_key', `duplicate key "${K_NAMES[pendingKey]}"`);
          seen |= bit;
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
    const key = pendingKey;
    pendingKey = K_OTHER;
    if (key !== K_OTHER && key !== K_REQUEST) {
      trackKey = key;
      trackDepth = depth;
      trackStart = i - removed;
    }
    if (b === LBRACE || b === LBRACKET) {
      if (depth === MAX_DEPTH)
        return fail('too_deep', `nesting deeper than ${MAX_DEPTH} levels at byte ${i}`);
      depth++;
      depthStack[depth] = b === LBRACE ? IN_OBJECT : IN_ARRAY;
      if (key === K_REQUEST && b === LBRACE) {
        requestDepth = depth;
        requestIsObject = true;
      }
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
    kind: spans[K_KIND] as Span,
    apiVersion: spans[K_API_VERSION] as Span,
    timestamp: spans[K_TIMESTAMP] as Span,
    requestIsObject,
    uid: spans[K_UID] as Span,
  };
}

function NONE(): Span {
  return { start: -1, end: -1 };
}
