/**
 * @module The audit log check after a load: one whole, parseable line per acknowledged request.
 *
 * Reads the log in chunks (it can be gigabytes after the large-body runs), parses every line as JSON,
 * and checks that it is an AdmissionReview or an audit Event with a `requestReceivedTimestamp`, that its
 * uid (an Event's auditID) is one a bench
 * generator made (see corpus.ts) for one of this server's load runs, and that no uid appears twice. The
 * caller compares `benchLines` with the number of requests the generators saw answered 200.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { runOfUid } from './corpus.ts';

/** What the log holds. */
export type LogCheck = {
  /** Lines ending in `\n`. */
  lines: number;
  /** Lines whose uid a bench generator made for one of the expected runs. */
  benchLines: number;
  /** Lines that are not JSON, or not an AdmissionReview line with a uid and a timestamp. */
  badLines: number;
  /** Lines with a uid that is not from these runs. */
  foreignLines: number;
  /** Lines whose uid an earlier line already had. */
  duplicateUids: number;
  /** Bytes after the last `\n` (a line cut short); 0 when the file ends with a whole line. */
  trailingBytes: number;
  /** The first few problems, for the report. */
  problems: string[];
};

/** Bytes read at a time; lines longer than this are joined across reads. */
const CHUNK_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;
/** Problems kept in the report. */
const MAX_PROBLEMS = 5;

type Line = {
  kind?: unknown;
  request?: { uid?: unknown };
  auditID?: unknown;
  requestReceivedTimestamp?: unknown;
};

/** Checks the log at `path` against the load runs `runs` (run numbers as in the uids). */
export function checkLog(path: string, runs: ReadonlySet<number>): LogCheck {
  const result: LogCheck = {
    lines: 0,
    benchLines: 0,
    badLines: 0,
    foreignLines: 0,
    duplicateUids: 0,
    trailingBytes: 0,
    problems: [],
  };
  const seen = new Set<string>();
  const problem = (text: string) => {
    if (result.problems.length < MAX_PROBLEMS) result.problems.push(text);
  };
  const onLine = (bytes: Buffer) => {
    result.lines++;
    let line: Line;
    try {
      line = JSON.parse(bytes.toString('utf8')) as Line;
    } catch (error) {
      result.badLines++;
      problem(`line ${result.lines}: not JSON (${(error as Error).message})`);
      return;
    }
    const uid = line.kind === 'Event' ? line.auditID : line.request?.uid;
    if (
      (line.kind !== 'AdmissionReview' && line.kind !== 'Event') ||
      typeof uid !== 'string' ||
      typeof line.requestReceivedTimestamp !== 'string'
    ) {
      result.badLines++;
      problem(`line ${result.lines}: not an audit line of an AdmissionReview`);
      return;
    }
    const run = runOfUid(uid);
    if (run === undefined || !runs.has(run)) {
      result.foreignLines++;
      problem(`line ${result.lines}: uid ${uid} is not from this bench`);
      return;
    }
    if (seen.has(uid)) {
      result.duplicateUids++;
      problem(`line ${result.lines}: uid ${uid} repeated`);
      return;
    }
    seen.add(uid);
    result.benchLines++;
  };

  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let carry: Buffer[] = [];
    for (;;) {
      const n = readSync(fd, chunk, 0, CHUNK_BYTES, null);
      if (n === 0) break;
      const data = chunk.subarray(0, n);
      let start = 0;
      for (let nl = data.indexOf(NEWLINE); nl >= 0; nl = data.indexOf(NEWLINE, start)) {
        const piece = data.subarray(start, nl);
        if (carry.length > 0) {
          onLine(Buffer.concat([...carry, piece]));
          carry = [];
        } else onLine(piece);
        start = nl + 1;
      }
      // The chunk buffer is reused: keep a copy of the unfinished line.
      if (start < n) carry.push(Buffer.from(data.subarray(start)));
    }
    result.trailingBytes = carry.reduce((sum, b) => sum + b.length, 0);
    if (result.trailingBytes > 0) problem(`the file ends inside a line (${result.trailingBytes} bytes)`);
  } finally {
    closeSync(fd);
  }
  return result;
}
