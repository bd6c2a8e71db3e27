/**
 * @module The audit line: the compacted review with `requestReceivedTimestamp` set, then `\n`.
 *
 * 1.x's format, kept exactly: the field is appended as the last top-level key, or its value is
 * replaced in place when the body already has one. Everything else is the body's own bytes.
 */
import type { Review } from './review.ts';

const encoder = new TextEncoder();
const APPEND_HEAD = encoder.encode(',"requestReceivedTimestamp":"');
const QUOTE = 0x22;
const CLOSE_BRACE = 0x7d;
const NEWLINE = 0x0a;

/** Builds the line for a review stamped with `timestamp` (ASCII, e.g. from formatRfc3339Nano). */
export function buildLine(review: Review, timestamp: string): Uint8Array {
  const body = review.compact;
  const ts = review.timestamp;
  const tsLen = timestamp.length; // ASCII: one byte a character
  if (ts.start < 0) {
    // {...} → {...,"requestReceivedTimestamp":"<ts>"}\n
    const cut = body.length - 1; // the closing brace
    const out = new Uint8Array(cut + APPEND_HEAD.length + tsLen + 3);
    out.set(body.subarray(0, cut), 0);
    let at = cut;
    out.set(APPEND_HEAD, at);
    at += APPEND_HEAD.length;
    at += encoder.encodeInto(timestamp, out.subarray(at)).written;
    out[at++] = QUOTE;
    out[at++] = CLOSE_BRACE;
    out[at] = NEWLINE;
    return out;
  }
  // Replace the existing value, whatever its type, with the string.
  const tail = body.length - ts.end;
  const out = new Uint8Array(ts.start + tsLen + 2 + tail + 1);
  out.set(body.subarray(0, ts.start), 0);
  let at = ts.start;
  out[at++] = QUOTE;
  at += encoder.encodeInto(timestamp, out.subarray(at)).written;
  out[at++] = QUOTE;
  out.set(body.subarray(ts.end), at);
  out[at + tail] = NEWLINE;
  return out;
}
