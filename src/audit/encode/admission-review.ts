/**
 * @module The admissionreview line: the compacted review with `requestReceivedTimestamp` set, then
 * `\n` (1.x's format, kept exactly), with the transforms' edits applied.
 *
 * The field is appended as the last top-level key, or its value is replaced in place when the body
 * already has one. `--cluster-name` adds a top-level `clusterName` just before it (or replaces the
 * value of one the body has). Everything else is the body's own bytes.
 *
 * The line is returned in pieces that point into the body (see Line): the sink copies them once,
 * into its batch, instead of this module first copying the body into a line of its own.
 */
import type { Line } from '../../sink/sink.ts';
import { EditList } from '../edits.ts';
import type { AdmissionRecord } from '../record.ts';

const encoder = new TextEncoder();
/** What goes between the body's last value and the timestamp when the field is appended. */
const APPEND_HEAD = ',"requestReceivedTimestamp":"';
const NEWLINE_PIECE = encoder.encode('\n');

/** What the encoder adds to each line besides the edits. */
export type AdmissionReviewStamp = {
  /** The arrival time, ASCII, as formatRfc3339Nano gives it. */
  timestamp: string;
  /** `"name"` as a JSON string token's bytes, or undefined for no clusterName. */
  clusterToken: Uint8Array | undefined;
};

/**
 * Builds the admissionreview line for a record, as pieces: views of the body around the few new
 * bytes. The pieces stay valid as long as the body's bytes do.
 */
export function encodeAdmissionReview(
  record: AdmissionRecord,
  edits: EditList | undefined,
  stamp: AdmissionReviewStamp,
): Line {
  const body = record.bytes;
  const tsStart = record.rootStart('requestReceivedTimestamp');
  if ((edits === undefined || edits.size === 0) && stamp.clusterToken === undefined) {
    // The default path: nothing but the timestamp, in two or four pieces.
    if (tsStart < 0) {
      // {...} → {...,"requestReceivedTimestamp":"<ts>"}\n
      return [body.subarray(0, body.length - 1), encoder.encode(`${APPEND_HEAD}${stamp.timestamp}"}\n`)];
    }
    // Replace the existing value, whatever its type, with the string.
    return [
      body.subarray(0, tsStart),
      encoder.encode(`"${stamp.timestamp}"`),
      body.subarray(record.rootEnd('requestReceivedTimestamp')),
      NEWLINE_PIECE,
    ];
  }
  const all = edits ?? new EditList();
  const end = body.length - 1; // the closing brace
  if (stamp.clusterToken !== undefined) {
    const at = record.rootStart('clusterName');
    if (at >= 0) all.replace(at, record.rootEnd('clusterName'), stamp.clusterToken);
    else all.insert(end, concat(encoder.encode(',"clusterName":'), stamp.clusterToken));
  }
  if (tsStart >= 0) {
    all.replace(tsStart, record.rootEnd('requestReceivedTimestamp'), encoder.encode(`"${stamp.timestamp}"`));
  } else {
    all.insert(end, encoder.encode(`${APPEND_HEAD}${stamp.timestamp}"`));
  }
  const pieces: Uint8Array[] = [];
  all.pieces(body, 0, body.length, pieces);
  pieces.push(NEWLINE_PIECE);
  return pieces;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Joins a line's pieces into one buffer; for tests, debugging and `convert`, not the request path. */
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
