/**
 * @module The request bytes: check that they are an AdmissionReview we can log, and build the answer.
 *
 * Works on the bytes from the socket (see json-scan.ts); nothing here decodes the whole body.
 */
import type { ScanErrorReason, Span } from './json-scan.ts';
import { scanJsonFast } from './json-scan-wasm.ts';

/** AdmissionReview versions the API server may send (`admissionReviewVersions` in the webhook). */
export const API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;

/** One of {@link API_VERSIONS}. */
export type ApiVersion = (typeof API_VERSIONS)[number];

/** Why a body was refused; the `reason` label of the invalid-request metric. */
export type InvalidReason =
  | ScanErrorReason
  | 'wrong_kind'
  | 'wrong_api_version'
  | 'missing_request'
  | 'missing_uid'
  | 'invalid_uid';

/** A body we can log: its compacted bytes and what the answer and line need. */
export type Review = {
  ok: true;
  /** The body without insignificant whitespace, bytes otherwise untouched. */
  compact: Uint8Array;
  apiVersion: ApiVersion;
  /** The uid's JSON string token exactly as sent (quotes included), to echo in the answer. */
  uidToken: Uint8Array;
  /** Span of an existing top-level `requestReceivedTimestamp` value in `compact` (start -1 if none). */
  timestamp: Span;
};

/** A body we refuse, with the reason code and a message for the caller. */
export type Invalid = { ok: false; reason: InvalidReason; message: string };

// ignoreBOM: keep a leading U+FEFF in a value (the default strips it, so "\uFEFFAdmissionReview" would pass).
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const BACKSLASH = 0x5c;
const QUOTE = 0x22;

/** Decodes a JSON string token, or returns undefined if the token is not a string. */
function stringValue(bytes: Uint8Array, span: Span): string | undefined {
  if (span.start < 0 || bytes[span.start] !== QUOTE) return undefined;
  const token = bytes.subarray(span.start, span.end);
  // Tokens were validated by the scanner; only escaped ones need the full decoder.
  return token.includes(BACKSLASH)
    ? (JSON.parse(decoder.decode(token)) as string)
    : decoder.decode(token.subarray(1, -1));
}

function invalid(reason: InvalidReason, message: string): Invalid {
  return { ok: false, reason, message };
}

const tokenEncoder = new TextEncoder();
const KIND_TOKEN = tokenEncoder.encode('"AdmissionReview"');
const VERSION_TOKENS = API_VERSIONS.map((v) => [v, tokenEncoder.encode(`"${v}"`)] as const);

/** Whether the token at `span` is byte for byte `token`; the common, unescaped spelling needs no decoding. */
function tokenIs(bytes: Uint8Array, span: Span, token: Uint8Array): boolean {
  if (span.end - span.start !== token.length) return false;
  for (let i = 0; i < token.length; i++) if (bytes[span.start + i] !== token[i]) return false;
  return true;
}

/** Whether the token at `span` is a string equal to `text`, however it is spelled. */
function stringIs(bytes: Uint8Array, span: Span, token: Uint8Array, text: string): boolean {
  return tokenIs(bytes, span, token) || stringValue(bytes, span) === text;
}

/**
 * Checks a request body: valid JSON (see {@link scanJson}), an object with `kind: "AdmissionReview"`,
 * a supported `apiVersion`, and a `request` object holding a non-empty string `uid`.
 */
export function parseReview(body: Uint8Array): Review | Invalid {
  const scan = scanJsonFast(body);
  if (!scan.ok) return invalid(scan.reason, scan.message);
  const { compact } = scan;
  if (!scan.isObject) return invalid('not_object', 'request body must be a JSON object (an AdmissionReview)');
  if (!stringIs(compact, scan.kind, KIND_TOKEN, 'AdmissionReview')) {
    return invalid('wrong_kind', 'kind must be "AdmissionReview"');
  }
  const version = VERSION_TOKENS.find(([text, token]) => stringIs(compact, scan.apiVersion, token, text));
  if (version === undefined) {
    return invalid('wrong_api_version', `apiVersion must be one of ${API_VERSIONS.join(', ')}`);
  }
  if (!scan.requestIsObject) return invalid('missing_request', 'request must be an object');
  const uid = scan.uid;
  if (uid.start < 0) return invalid('missing_uid', 'request.uid is missing');
  if (compact[uid.start] !== QUOTE) return invalid('invalid_uid', 'request.uid must be a string');
  // A valid string token of two bytes is "": any escape or character makes it longer.
  if (uid.end - uid.start === 2) return invalid('invalid_uid', 'request.uid must not be empty');
  return {
    ok: true,
    compact,
    apiVersion: version[0],
    uidToken: compact.subarray(uid.start, uid.end),
    timestamp: scan.timestamp,
  };
}

const encoder = new TextEncoder();
const ANSWER_HEAD: Record<ApiVersion, Uint8Array> = {
  'admission.k8s.io/v1': encoder.encode(
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":',
  ),
  'admission.k8s.io/v1beta1': encoder.encode(
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":',
  ),
};
const ANSWER_TAIL = encoder.encode(',"allowed":true}}');

/**
 * Builds the "allowed" answer: an AdmissionReview of the request's version whose `response.uid` is the
 * request's uid token, copied byte for byte (it is already valid JSON, whatever characters it holds).
 */
export function allowedAnswer(review: Review): Uint8Array {
  const head = ANSWER_HEAD[review.apiVersion];
  const out = new Uint8Array(head.length + review.uidToken.length + ANSWER_TAIL.length);
  out.set(head, 0);
  out.set(review.uidToken, head.length);
  out.set(ANSWER_TAIL, head.length + review.uidToken.length);
  return out;
}
