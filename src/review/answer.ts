/**
 * @module The answer to the API server: an AdmissionReview of the request's version, allowed or not,
 * carrying the request's uid, and the uid again in auditAnnotations as the join key.
 *
 * The API server stores each auditAnnotation of a webhook's answer in its own audit event for the
 * request, as `<webhook name>/<key>`. Where a provider's audit log is on, that annotation holds the
 * uid our line holds, so the two logs join on it (the API server's auditID is not shown to webhooks).
 */
import type { ApiVersion } from '../audit/record.ts';

/** The auditAnnotations key the request's uid is answered under; the API server prefixes the webhook's name. */
export const JOIN_KEY = 'request-uid';

const encoder = new TextEncoder();
const HEAD: Record<ApiVersion, Uint8Array> = {
  'admission.k8s.io/v1': encoder.encode(
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":',
  ),
  'admission.k8s.io/v1beta1': encoder.encode(
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":',
  ),
};
const ALLOWED_MIDDLE = encoder.encode(`,"allowed":true,"auditAnnotations":{"${JOIN_KEY}":`);
const DENIED_MIDDLE = encoder.encode(`,"allowed":false,"auditAnnotations":{"${JOIN_KEY}":`);
const CLOSE = encoder.encode('}}}');

/** What an answer is built from: the review's version and its uid token. */
export type AnswerSubject = { readonly apiVersion: ApiVersion; readonly uidToken: Uint8Array };

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Builds the "allowed" answer: `response.uid` and the join annotation are the request's uid token,
 * copied byte for byte (it is already valid JSON, whatever characters it holds).
 */
export function allowedAnswer(subject: AnswerSubject): Uint8Array {
  // Written out rather than through concat(): this runs once per request (measured 140 → 60 ns).
  const head = HEAD[subject.apiVersion];
  const uid = subject.uidToken;
  const out = new Uint8Array(head.length + 2 * uid.length + ALLOWED_MIDDLE.length + CLOSE.length);
  out.set(head, 0);
  let at = head.length;
  out.set(uid, at);
  at += uid.length;
  out.set(ALLOWED_MIDDLE, at);
  at += ALLOWED_MIDDLE.length;
  out.set(uid, at);
  out.set(CLOSE, at + uid.length);
  return out;
}

/**
 * Builds a refusal: `allowed: false` with a status whose message says why (code 500: the request was
 * fine, kube-audit-rest could not record it). The API server shows the message to the client.
 */
export function deniedAnswer(subject: AnswerSubject, message: string): Uint8Array {
  const status = encoder.encode(`,"status":{"code":500,"message":${JSON.stringify(message)}}}}`);
  return concat([
    HEAD[subject.apiVersion],
    subject.uidToken,
    DENIED_MIDDLE,
    subject.uidToken,
    encoder.encode('}'),
    status,
  ]);
}
