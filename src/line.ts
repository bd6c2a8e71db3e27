/**
 * @module The audit line: the compacted review with `requestReceivedTimestamp` set, then `\n`.
 *
 * 1.x's format, kept exactly: the field is appended as the last top-level key, or its value is
 * replaced in place when the body already has one. Everything else is the body's own bytes.
 *
 * The line is returned in pieces that point into the body (see {@link Line}): the sink copies them
 * once, into its batch, instead of this module first copying the body into a line of its own.
 */
import type { Review } from './review/parse.ts';
import type { Line } from './sink/sink.ts';

const encoder = new TextEncoder();
/** What goes between the body's last value and the timestamp when the field is appended. */
const APPEND_HEAD = ',"requestReceivedTimestamp":"';
const NEWLINE_PIECE = encoder.encode('\n');

/**
 * Builds the line for a review stamped with `timestamp` (ASCII, e.g. from formatRfc3339Nano), as
 * pieces: views of `review.compact` around one small new piece holding the timestamp. The pieces
 * stay valid as long as the body's bytes do.
 */
export function buildLine(review: Review, timestamp: string): Line {
  const body = review.compact;
  const ts = review.timestamp;
  if (ts.start < 0) {
    // {...} → {...,"requestReceivedTimestamp":"<ts>"}\n
    return [body.subarray(0, body.length - 1), encoder.encode(`${APPEND_HEAD}${timestamp}"}\n`)];
  }
  // Replace the existing value, whatever its type, with the string.
  return [body.subarray(0, ts.start), encoder.encode(`"${timestamp}"`), body.subarray(ts.end), NEWLINE_PIECE];
}

/** Joins a line's pieces into one buffer; for tests and debugging, not the request path. */
export function lineBytes(line: Line): Uint8Array {
  if (line instanceof Uint8Array) return line;
  const out = new Uint8Array(line.reduce((n, piece) => n + piece.length, 0));
  let at = 0;
  for (const piece of line) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
