/**
 * @module The request path's JSON scanner: json-scan.c in WebAssembly, with json-scan.ts behind it.
 *
 * {@link scanJsonFast} gives exactly what {@link scanJson} gives for every input; it is just faster
 * on the texts the API server sends. The WebAssembly scanner walks strings 16 bytes at a time, where
 * the TypeScript one goes byte by byte (measured on the captured corpus: see the note in
 * testing/README.md). Whatever is not plainly valid (any error, a tracked key spelled with escapes,
 * a duplicate tracked key) is handed to scanJson, which decides and words the answer, so there is
 * one definition of what is accepted and one set of messages.
 */
import { isUtf8 } from 'node:buffer';
import { type ScanResult, type Span, scanJson } from './json-scan.ts';
import { JSON_SCAN_WASM_BASE64 } from './wasm/json-scan.wasm.ts';

/** What json-scan.c's exports look like from here. */
type ScannerExports = {
  memory: WebAssembly.Memory;
  /** Scans the first `n` bytes of the input buffer; 0: valid, see the result buffer; 1: ask scanJson. */
  scan(n: number): number;
  /** Address of the input buffer in memory; everything from there to the end is free for the input. */
  input_buffer(): number;
  /** Address of the result array (int32 slots, see the R_ constants). */
  result_buffer(): number;
};

// Slots of json-scan.c's result[].
const R_COMPACT_LEN = 0;
const R_CHANGED = 1;
const R_IS_OBJECT = 2;
const R_REQUEST_IS_OBJECT = 3;
const R_HIGH_BYTES = 4;
const R_KIND = 5;
const R_API_VERSION = 7;
const R_TIMESTAMP = 9;
const R_UID = 11;
const R_VALUE_START = 13;
const RESULT_SLOTS = 14;

const FAST_OK = 0;
const WASM_PAGE_BYTES = 65_536;

/** One instance per process: the scanner keeps no state between calls, and calls never overlap. */
function instantiate(): ScannerExports {
  const bytes = Uint8Array.from(atob(JSON_SCAN_WASM_BASE64), (c) => c.charCodeAt(0));
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  return instance.exports as unknown as ScannerExports;
}

const wasm = instantiate();
const inputAt = wasm.input_buffer();
const resultAt = wasm.result_buffer();
/** Views of memory; remade whenever memory grows, since growing replaces memory.buffer. */
let memoryBytes = new Uint8Array(wasm.memory.buffer);
let results = new Int32Array(wasm.memory.buffer, resultAt, RESULT_SLOTS);

/** Grows memory so that `n` input bytes fit; false if it cannot (then scanJson does the work). */
function reserve(n: number): boolean {
  const needed = inputAt + n - wasm.memory.buffer.byteLength;
  if (needed <= 0) return true;
  try {
    wasm.memory.grow(Math.ceil(needed / WASM_PAGE_BYTES));
  } catch {
    return false;
  }
  memoryBytes = new Uint8Array(wasm.memory.buffer);
  results = new Int32Array(wasm.memory.buffer, resultAt, RESULT_SLOTS);
  return true;
}

function span(at: number): Span {
  return { start: results[at] as number, end: results[at + 1] as number };
}

/**
 * Scans a JSON text exactly as {@link scanJson} does (same validity, compact bytes, spans, reasons
 * and messages), faster. The input is copied into the scanner's memory and never written to; the
 * compact text is a view of the input when it had no whitespace to remove, else a copy of its own.
 */
export function scanJsonFast(input: Uint8Array): ScanResult {
  const n = input.length;
  if (!reserve(n)) return scanJson(input);
  memoryBytes.set(input, inputAt);
  if (wasm.scan(n) !== FAST_OK) return scanJson(input);
  // Bytes >= 0x80 were seen inside strings: scanJson then reports invalid UTF-8 with its message.
  if (results[R_HIGH_BYTES] === 1 && !isUtf8(input)) return scanJson(input);
  const length = results[R_COMPACT_LEN] as number;
  let compact: Uint8Array;
  if (results[R_CHANGED] === 1) {
    compact = memoryBytes.slice(inputAt, inputAt + length);
  } else {
    const start = results[R_VALUE_START] as number;
    compact = input.subarray(start, start + length);
  }
  return {
    ok: true,
    compact,
    isObject: results[R_IS_OBJECT] === 1,
    kind: span(R_KIND),
    apiVersion: span(R_API_VERSION),
    timestamp: span(R_TIMESTAMP),
    requestIsObject: results[R_REQUEST_IS_OBJECT] === 1,
    uid: span(R_UID),
  };
}
