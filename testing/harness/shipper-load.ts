/**
 * @module testing/harness/shipper-load — what the shipper tests (test/shippers/) share: paced load on the
 * compiled kube-audit-rest with unique uids, processes that keep the cores busy, and the audit files read
 * back as lines of bytes to compare with what a shipper delivered.
 */
import { readFileSync } from 'node:fs';
import { reviewBody } from '../../test/helpers/server-process.ts';

/** Concurrent clients, as an API server with a few connections open. */
const CLIENTS = 8;

/** Body text: unicode, an escaped newline and a raw DEL byte (valid JSON, and a control byte to syslog). */
export const ODD_TEXT = 'café \\n \u007f end';

/** Lines in a file, each without its LF; an absent file has none. A last piece without LF is kept. */
export function linesOf(path: string): Buffer[] {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    return [];
  }
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, start)) {
    lines.push(data.subarray(start, i));
    start = i + 1;
  }
  // A last piece without LF is a line the shipper tore: keep it so that the comparison shows it.
  if (start < data.length) lines.push(data.subarray(start));
  return lines;
}

/** Counts each distinct line. */
export function tally(lines: readonly Buffer[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) {
    const key = line.toString('latin1');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** The uid of an audit line. */
export function uidOf(line: Buffer): string {
  return (JSON.parse(line.toString('utf8')) as { request: { uid: string } }).request.uid;
}

/** What {@link postReviews} sends. */
export type LoadOptions = {
  /** kube-audit-rest's HTTPS port on 127.0.0.1. */
  readonly port: number;
  /** The CA certificate (PEM) that signed the server's certificate. */
  readonly ca: string;
  /** Reviews to post, in total. */
  readonly count: number;
  /** At most this many a second, paced from the start. */
  readonly perSecond: number;
  /** Bytes of padding in review `i`. */
  readonly sizeOf: (i: number) => number;
  /** The uid of review `i` is `<uidPrefix>-<i>`. */
  readonly uidPrefix: string;
};

/**
 * Posts `count` reviews with unique uids from {@link CLIENTS} clients, at most `perSecond` a second
 * (pacing, so that rotations come every ~100 ms rather than all at once), each with {@link ODD_TEXT} and
 * `sizeOf(i)` bytes of padding. Resolves the uids that were answered 200.
 */
export async function postReviews(options: LoadOptions): Promise<string[]> {
  const { port, ca, count, perSecond, sizeOf, uidPrefix } = options;
  const acknowledged: string[] = [];
  const started = performance.now();
  let next = 0;
  const client = async () => {
    while (next < count) {
      const i = next++;
      const wait = started + (i * 1000) / perSecond - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      const uid = `${uidPrefix}-${i}`;
      const body = reviewBody(uid, `,"object":{"note":"${ODD_TEXT}","data":"${'x'.repeat(sizeOf(i))}"}`);
      const response = await fetch(`https://127.0.0.1:${port}/log-request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        tls: { ca },
      });
      await response.arrayBuffer();
      if (response.status === 200) acknowledged.push(uid);
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
  return acknowledged;
}

/**
 * Starts `count` processes that spin until killed or for `limitSeconds`, whichever comes first, to keep
 * the cores busy as other work on a node does (shippers mishandle renames mostly when not scheduled at once).
 */
export function spinBusy(count: number, limitSeconds: number): Bun.Subprocess[] {
  return Array.from({ length: count }, () =>
    // bash itself spins (no child to outlive a kill) and stops after limitSeconds regardless.
    Bun.spawn(['bash', '-c', `while (( SECONDS < ${limitSeconds} )); do :; done`], {
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'ignore',
    }),
  );
}

/** How the shipped lines differ from the written ones: uids of lines repeated or lost, and lines never written. */
export type LineDifferences = { repeated: string[]; lost: string[]; unknown: number };

/** Compares shipped lines with written ones (each written line once): empty lists and 0 when exact. */
export function compareLines(shipped: readonly Buffer[], written: readonly Buffer[]): LineDifferences {
  const shippedCounts = tally(shipped);
  const writtenCounts = tally(written);
  const uid = (key: string) => {
    try {
      return uidOf(Buffer.from(key, 'latin1'));
    } catch {
      return `(not JSON: ${key.length} bytes)`;
    }
  };
  const repeated: string[] = [];
  const lost: string[] = [];
  let unknown = 0;
  for (const [key, n] of shippedCounts) {
    const expected = writtenCounts.get(key);
    if (expected === undefined) unknown++;
    else if (n > expected) repeated.push(uid(key));
  }
  for (const [key, n] of writtenCounts) if ((shippedCounts.get(key) ?? 0) < n) lost.push(uid(key));
  return { repeated, lost, unknown };
}
