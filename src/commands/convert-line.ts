/**
 * @module One audit-log line in, its audit.k8s.io/v1 Event line(s) out: what `convert` and `forward`
 * share.
 *
 * An admissionreview line (ours or 1.x's) goes through the same pipeline the server runs, at the
 * time it carries (`requestReceivedTimestamp`, which is also the Event's stageTimestamp), under the
 * cluster name it carries (a `clusterName` the webhook stamped, or a path token's), and never above
 * the level it was written at (see capToWritten). A line that already is an Event passes through as
 * it is. The policy may apply again: it is the one the webhook used, so it decides the same, and a
 * different policy can only record less than the line holds.
 */
import { lineBytes } from '../audit/encode/admission-review.ts';
import { targetOf } from '../audit/encode/audit-event.ts';
import type { AdmissionRecord } from '../audit/record.ts';
import { composePipeline, type RecordOptions } from '../compose.ts';
import type { EventMeta } from '../forward/event-meta.ts';
import { parseReview } from '../review/parse.ts';

/** The record flags that apply when converting: all but the format, which is always audit-event. */
export type ConvertOptions = Omit<RecordOptions, 'outputFormat'>;

/** What became of one line. */
export type LineConversion =
  /**
   * One Event, or two for a long-running CONNECT (ResponseStarted and ResponseComplete); no newlines.
   * `meta` is what each says about itself (auditID, cluster, object, time), known without parsing it.
   */
  | { kind: 'events'; events: Uint8Array[]; meta: EventMeta }
  /** The line already was an Event: it is the event, as it is. */
  | { kind: 'event-line' }
  /** The policy records nothing of it (level None, or every stage omitted). */
  | { kind: 'not-recorded' }
  /** Not a line kube-audit-rest wrote; `reason` says why, without the line's contents. */
  | { kind: 'skipped'; reason: string };

/** Converts one line (without its newline). */
export type LineConverter = (line: Uint8Array) => LineConversion;

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;
const NEWLINE = 0x0a;
const QUOTE = 0x22;
const decoder = new TextDecoder();

/** Parses an RFC 3339 time with up to nine fractional digits into nanoseconds since the epoch. */
export function parseRfc3339(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0') || '0');
}

/** The value of a top-level string field of the record, or undefined when absent or not a string. */
function rootString(
  record: AdmissionRecord,
  field: 'requestReceivedTimestamp' | 'clusterName',
): string | undefined {
  const start = record.rootStart(field);
  if (start < 0 || record.bytes[start] !== QUOTE) return undefined;
  const token = decoder.decode(record.bytes.subarray(start, record.rootEnd(field)));
  try {
    return JSON.parse(token) as string;
  } catch {
    return undefined;
  }
}

/** Whether a line is an audit Event already. */
function isEvent(line: Uint8Array): boolean {
  try {
    const value = JSON.parse(decoder.decode(line)) as { kind?: unknown; apiVersion?: unknown };
    return value.kind === 'Event' && value.apiVersion === 'audit.k8s.io/v1';
  } catch {
    return false;
  }
}

/** Splits newline-ended lines into views without their newlines. */
function splitLines(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (let nl = bytes.indexOf(NEWLINE); nl >= 0; nl = bytes.indexOf(NEWLINE, from)) {
    out.push(bytes.subarray(from, nl));
    from = nl + 1;
  }
  if (from < bytes.length) out.push(bytes.subarray(from));
  return out;
}

/** The EventMeta of the Events made of `record`: what parsing them would find (objectRef, annotations, time). */
function metaOf(record: AdmissionRecord, stamp: bigint, cluster: string | undefined): EventMeta {
  const t = targetOf(record);
  const meta: EventMeta = { auditID: record.uid, receivedAtMs: Number(stamp / 1_000_000n) };
  if (cluster !== undefined) meta.cluster = cluster;
  if (t.namespace !== '') meta.namespace = t.namespace;
  if (t.name !== '') meta.name = t.name;
  return meta;
}

/**
 * Builds the converter the record flags describe. Rejects with a CompositionError naming the flag
 * when the policy or the redaction key cannot be used.
 */
export async function composeLineConverter(options: ConvertOptions): Promise<LineConverter> {
  const clusterName = options.clusterName;
  let arrived = 0n;
  // The Event's stageTimestamp is its line's time: when the webhook wrote it, not when it is converted.
  const pipeline = await composePipeline({ ...options, outputFormat: 'audit-event' }, () => arrived, {
    writtenLines: true,
  });
  return function convertLine(line) {
    const review = parseReview(line);
    if (!review.ok) {
      if (review.reason === 'wrong_kind' && isEvent(line)) return { kind: 'event-line' };
      return { kind: 'skipped', reason: review.message };
    }
    const record = review.record;
    const stamp = parseRfc3339(rootString(record, 'requestReceivedTimestamp') ?? '');
    if (stamp === undefined) {
      return {
        kind: 'skipped',
        reason: 'no requestReceivedTimestamp in RFC 3339 form: not a line kube-audit-rest wrote',
      };
    }
    arrived = stamp;
    const lineCluster = rootString(record, 'clusterName');
    const { line: out } = pipeline(record, stamp, lineCluster);
    if (out === undefined) return { kind: 'not-recorded' };
    // A single piece may be a view of `line`, which the caller's reader may reuse: copied then.
    const joined = out instanceof Uint8Array ? out.slice() : lineBytes(out);
    return {
      kind: 'events',
      events: splitLines(joined),
      meta: metaOf(record, stamp, lineCluster ?? clusterName),
    };
  };
}
