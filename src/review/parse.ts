/**
 * @module The request bytes → a record or a refusal: valid JSON, an AdmissionReview of a version we
 * answer, with a request that has a uid.
 *
 * Works on the bytes from the socket (see json-scan.ts); nothing here decodes the whole body.
 */
import {
  AdmissionRecord,
  API_VERSIONS,
  type ApiVersion,
  indexFields,
  rootValueEnd,
  rootValueStart,
} from '../audit/record.ts';
import type { ScanErrorReason } from './json-scan.ts';
import { scanJsonFast } from './json-scan-wasm.ts';

/** Why a body was refused; the `reason` label of the invalid-request metric. */
export type InvalidReason =
  | ScanErrorReason
  | 'not_object'
  | 'duplicate_key'
  | 'wrong_kind'
  | 'wrong_api_version'
  | 'missing_request'
  | 'missing_uid'
  | 'invalid_uid';

/** A body we refuse, with the reason code and a message for the caller. */
export type Invalid = { ok: false; reason: InvalidReason; message: string };

/** A body we record. */
export type Parsed = { ok: true; record: AdmissionRecord };

// ignoreBOM: keep a leading U+FEFF in a value (the default strips it, so "\uFEFFAdmissionReview" would pass).
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;

function invalid(reason: InvalidReason, message: string): Invalid {
  return { ok: false, reason, message };
}

const tokenEncoder = new TextEncoder();
const KIND_TOKEN = tokenEncoder.encode('"AdmissionReview"');
const VERSION_TOKENS = API_VERSIONS.map((v) => [v, tokenEncoder.encode(`"${v}"`)] as const);

/** Whether `bytes[start, end)` is a string token meaning `text`; the unescaped spelling is compared as bytes. */
function stringIs(bytes: Uint8Array, start: number, end: number, token: Uint8Array, text: string): boolean {
  if (start < 0 || bytes[start] !== QUOTE) return false;
  if (end - start === token.length) {
    let k = 0;
    while (k < token.length && bytes[start + k] === token[k]) k++;
    if (k === token.length) return true;
  }
  const value = bytes.subarray(start, end);
  return value.includes(BACKSLASH) && JSON.parse(decoder.decode(value)) === text;
}

/**
 * Checks a request body: valid JSON (see scanJson), an object with `kind: "AdmissionReview"`, a
 * supported `apiVersion`, a `request` object holding a non-empty string `uid`, and no field that
 * kube-audit-rest reads given twice. Returns the record the audit stages work on.
 */
export function parseReview(body: Uint8Array): Parsed | Invalid {
  const scan = scanJsonFast(body);
  if (!scan.ok) return invalid(scan.reason, scan.message);
  const { compact } = scan;
  if (!scan.isObject) return invalid('not_object', 'request body must be a JSON object (an AdmissionReview)');
  const index = indexFields(compact, scan.members, scan.membersFrom, scan.memberCount);
  if (!Array.isArray(index)) return invalid('duplicate_key', `duplicate key "${index.field}"`);
  if (
    !stringIs(
      compact,
      rootValueStart(index, 'kind'),
      rootValueEnd(index, 'kind'),
      KIND_TOKEN,
      'AdmissionReview',
    )
  ) {
    return invalid('wrong_kind', 'kind must be "AdmissionReview"');
  }
  const vs = rootValueStart(index, 'apiVersion');
  const ve = rootValueEnd(index, 'apiVersion');
  const version = VERSION_TOKENS.find(([text, token]) => stringIs(compact, vs, ve, token, text));
  if (version === undefined) {
    return invalid('wrong_api_version', `apiVersion must be one of ${API_VERSIONS.join(', ')}`);
  }
  const request = rootValueStart(index, 'request');
  if (request < 0 || compact[request] !== LBRACE)
    return invalid('missing_request', 'request must be an object');
  const record = new AdmissionRecord(compact, version[0], index);
  const uid = record.start('uid');
  if (uid < 0) return invalid('missing_uid', 'request.uid is missing');
  if (compact[uid] !== QUOTE) return invalid('invalid_uid', 'request.uid must be a string');
  // A valid string token of two bytes is "": any escape or character makes it longer.
  if (record.end('uid') - uid === 2) return invalid('invalid_uid', 'request.uid must not be empty');
  return { ok: true, record };
}

/** Re-exported for callers that name versions. */
export type { ApiVersion };
