/**
 * @module Finding members inside JSON that is already known to be valid and compact.
 *
 * The scanner lists only the top two levels of an AdmissionReview. Features that look deeper (a
 * Secret's `data`, an object's `metadata.managedFields`) walk the one value they need with these
 * functions, which skip everything else without validating it again: strings are jumped over with
 * `indexOf` of the next quote, so the cost is in the brackets and scalars between them.
 */

import { skipValueFast } from './json-scan-wasm.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;

/** A member of an object: where its key token (quotes included) and its value are. */
export type Member = { keyStart: number; keyEnd: number; valueStart: number; valueEnd: number };

/** Returns the index just past the string token that starts (with its quote) at `at`. */
export function skipString(bytes: Uint8Array, at: number): number {
  let from = at + 1;
  for (;;) {
    const quote = bytes.indexOf(QUOTE, from);
    if (quote < 0) return bytes.length; // cannot happen in valid JSON
    // The quote ends the string unless an odd number of backslashes escapes it.
    let slashes = 0;
    while (bytes[quote - 1 - slashes] === BACKSLASH) slashes++;
    if ((slashes & 1) === 0) return quote + 1;
    from = quote + 1;
  }
}

/**
 * Returns the index just past the value (of any type) that starts at `at`. Containers are walked in
 * one loop over their bytes that keeps track of being inside a string, rather than a call per string:
 * managedFields, the largest value most reviews carry, is thousands of short strings, where a native
 * search per string costs more in calls than it saves (measured: 3 to 4 times slower on the corpus).
 */
export function skipValue(bytes: Uint8Array, at: number): number {
  const fast = skipValueFast(bytes, at);
  if (fast >= 0) return fast;
  return skipValueSlow(bytes, at);
}

/** {@link skipValue} in JavaScript, for texts the WebAssembly scanner no longer holds. */
export function skipValueSlow(bytes: Uint8Array, at: number): number {
  const first = bytes[at];
  if (first === QUOTE) return skipString(bytes, at);
  if (first === LBRACE || first === LBRACKET) {
    const n = bytes.length;
    let depth = 0;
    let i = at;
    while (i < n) {
      const c = bytes[i] as number;
      if (c === QUOTE) {
        // Inside a string only a backslash (skip the next byte) or the closing quote matters.
        i++;
        for (;;) {
          const d = bytes[i];
          if (d === QUOTE || d === undefined) break;
          i += d === BACKSLASH ? 2 : 1;
        }
      } else if (c === LBRACE || c === LBRACKET) {
        depth++;
      } else if (c === RBRACE || c === RBRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return n;
  }
  // A number or literal: it runs to the next delimiter.
  let i = at;
  while (i < bytes.length) {
    const c = bytes[i];
    if (c === COMMA || c === RBRACE || c === RBRACKET) break;
    i++;
  }
  return i;
}

/**
 * Calls `visit` for each member of the object value that starts at `start`, in order, and stops early
 * when it returns true; nothing happens when the value is not an object. The object's end is found on
 * the way (it is where a member's value is followed by `}`), so callers need not know it.
 */
export function eachMember(
  bytes: Uint8Array,
  start: number,
  visit: (m: Member) => boolean | undefined,
): void {
  if (bytes[start] !== LBRACE || bytes[start + 1] === RBRACE) return;
  let i = start + 1;
  for (;;) {
    const keyStart = i;
    const keyEnd = skipString(bytes, i);
    const valueStart = keyEnd + 1; // past the colon
    const valueEnd = skipValue(bytes, valueStart);
    if (visit({ keyStart, keyEnd, valueStart, valueEnd })) return;
    if (bytes[valueEnd] !== COMMA) return; // the closing brace
    i = valueEnd + 1;
  }
}

/** Where a member's key and value start; the value's end is left to the caller (see {@link skipValue}). */
export type MemberStart = { keyStart: number; keyEnd: number; valueStart: number };

/**
 * Finds the member whose key token is exactly `keyToken` (quotes included, as the API server writes
 * it: keys with escapes are not matched) in the object value that starts at `start`. The found value
 * is not walked: reaching a member deep inside a large value costs only the members before it.
 */
export function findMember(bytes: Uint8Array, start: number, keyToken: Uint8Array): MemberStart | undefined {
  if (bytes[start] !== LBRACE || bytes[start + 1] === RBRACE) return undefined;
  let i = start + 1;
  for (;;) {
    const keyStart = i;
    const keyEnd = skipString(bytes, i);
    const valueStart = keyEnd + 1;
    if (keyEnd - keyStart === keyToken.length) {
      let k = 1;
      while (k < keyToken.length && bytes[keyStart + k] === keyToken[k]) k++;
      if (k === keyToken.length) return { keyStart, keyEnd, valueStart };
    }
    const valueEnd = skipValue(bytes, valueStart);
    if (bytes[valueEnd] !== COMMA) return undefined;
    i = valueEnd + 1;
  }
}
