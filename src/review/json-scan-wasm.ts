/**
 * @module The request path's JSON scanner: json-scan.c in WebAssembly, with json-scan.ts behind it.
 *
 * {@link scanJsonFast} gives exactly what {@link scanJson} gives for every input; it is just faster
 * on the texts the API server sends: compact, valid JSON. The WebAssembly scanner reads strings 16
 * bytes at a time, where the TypeScript one goes byte by byte (figures in testing/README.md).
 * Whatever is not plainly valid and compact (any error, whitespace between tokens, a listed key
 * spelled with escapes, more members than its table holds) is handed to scanJson, which decides,
 * compacts and words the answer: one definition of what is accepted, one set of messages.
 */
import { isUtf8 } from 'node:buffer';
import { MEMBER_INTS, type ScanResult, scanJson } from './json-scan.ts';
import { JSON_SCAN_WASM_BASE64 } from './wasm/json-scan.wasm.ts';

/** What json-scan.c's exports look like from here. */
type ScannerExports = {
  memory: WebAssembly.Memory;
  /** Scans the first `n` bytes of the input buffer; 0: valid, see the result buffer; 1: ask scanJson. */
  scan(n: number): number;
  /** The offset just past the value at `pos` in the input buffer, whose text the last scan validated. */
  skip_value(pos: number): number;
  /** Address of the input buffer in memory; everything from there to the end is free for the input. */
  input_buffer(): number;
  /** Address of the result array (int32 slots, see the R_ constants). */
  result_buffer(): number;
};

// Slots of json-scan.c's result[]; the member table follows them.
const R_COMPACT_LEN = 0;
const R_IS_OBJECT = 1;
const R_HIGH_BYTES = 2;
const R_VALUE_START = 3;
const R_MEMBER_COUNT = 4;
const R_COUNT = 5;
/** MAX_MEMBERS in json-scan.c. */
const MAX_MEMBERS = 64;
const RESULT_SLOTS = R_COUNT + MAX_MEMBERS * MEMBER_INTS;

/**
 * Bytes the scanner may read past the input: a NUL sentinel (which ends every string, number and
 * literal that runs off the end, so the C code makes no bounds checks) and the rest of its last
 * 16-byte load.
 */
const SLACK_BYTES = 16;

const FAST_OK = 0;
const WASM_PAGE_BYTES = 65_536;

/**
 * One instance per process: the scanner keeps no state between calls, and calls never overlap.
 * Undefined where the runtime cannot compile the module (a CPU without the SIMD instructions
 * WebAssembly's 128-bit operations need, say); scanJson then does all the work.
 */
function instantiate(): ScannerExports | undefined {
  try {
    const bytes = Uint8Array.from(atob(JSON_SCAN_WASM_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    return instance.exports as unknown as ScannerExports;
  } catch {
    return undefined;
  }
}

const wasm = instantiate();

/** Whether the WebAssembly scanner is in use; false means every call goes to scanJson (slower, same answers). */
export const fastScannerAvailable = wasm !== undefined;

const inputAt = wasm?.input_buffer() ?? 0;
const resultAt = wasm?.result_buffer() ?? 0;
/** Views of memory; remade whenever memory grows, since growing replaces memory.buffer. */
let memoryBytes = new Uint8Array(wasm?.memory.buffer ?? new ArrayBuffer(0));
let results = new Int32Array(
  wasm?.memory.buffer ?? new ArrayBuffer(4 * RESULT_SLOTS),
  resultAt,
  RESULT_SLOTS,
);

/**
 * The compact text of the last scan that took the fast path, whose bytes are still in the scanner's
 * input buffer: {@link skipValueFast} may use the buffer only for this very view.
 */
let lastCompact: Uint8Array | undefined;
let lastOrigin = 0;

/** Grows memory so that `n` input bytes and the slack fit; false if it cannot (then scanJson does the work). */
function reserve(scanner: ScannerExports, n: number): boolean {
  const needed = inputAt + n + SLACK_BYTES - memoryBytes.length;
  if (needed <= 0) return true;
  try {
    scanner.memory.grow(Math.ceil(needed / WASM_PAGE_BYTES));
  } catch {
    return false;
  }
  memoryBytes = new Uint8Array(scanner.memory.buffer);
  results = new Int32Array(scanner.memory.buffer, resultAt, RESULT_SLOTS);
  return true;
}

/**
 * Scans a JSON text exactly as {@link scanJson} does (same validity, compact bytes, members, reasons
 * and messages), faster. The input is copied into the scanner's memory and never written to; on the
 * fast path the compact text is a view of the input (there was no whitespace to remove).
 */
export function scanJsonFast(input: Uint8Array): ScanResult {
  const n = input.length;
  lastCompact = undefined;
  if (wasm === undefined || !reserve(wasm, n)) return scanJson(input);
  memoryBytes.set(input, inputAt);
  memoryBytes[inputAt + n] = 0;
  if (wasm.scan(n) !== FAST_OK) return scanJson(input);
  // Bytes >= 0x80 were seen inside strings: scanJson then reports invalid UTF-8 with its message.
  if (results[R_HIGH_BYTES] === 1 && !isUtf8(input)) return scanJson(input);
  const start = results[R_VALUE_START] as number;
  const count = results[R_MEMBER_COUNT] as number;
  const compact = input.subarray(start, start + (results[R_COMPACT_LEN] as number));
  lastCompact = compact;
  lastOrigin = start;
  return {
    ok: true,
    compact,
    isObject: results[R_IS_OBJECT] === 1,
    // The scanner's memory itself: valid until the next scan, and parseReview reads it at once.
    members: results,
    membersFrom: R_COUNT,
    memberCount: count,
  };
}

/**
 * Returns the offset just past the value at `at` in `bytes`, using the WebAssembly scanner when
 * `bytes` is the compact text of the last scan (its bytes are still in the scanner's memory), or -1
 * when it is not and the caller must walk the value itself. About ten times faster than walking it
 * in JavaScript on managedFields-heavy objects (see testing/README.md).
 */
export function skipValueFast(bytes: Uint8Array, at: number): number {
  const last = lastCompact;
  if (
    wasm === undefined ||
    last === undefined ||
    bytes.buffer !== last.buffer ||
    bytes.byteOffset !== last.byteOffset ||
    bytes.length !== last.length
  ) {
    return -1;
  }
  return wasm.skip_value(lastOrigin + at) - lastOrigin;
}
