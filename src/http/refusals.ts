/**
 * @module Error answers: one JSON shape, `{"code":N,"reason":"...","message":"..."}`, for every refusal.
 */
import type { InvalidReason } from '../review/parse.ts';

/** Refusals that are not about the body's content. */
export type HttpRefusal =
  | 'method_not_allowed'
  | 'not_found'
  | 'unsupported_media_type'
  | 'too_large'
  | 'timeout';

/** Every `reason` an error answer can carry; also the label of the invalid-request metric. */
export type RefusalReason = InvalidReason | HttpRefusal | 'internal';

/** Headers of every JSON answer. */
export const JSON_HEADERS = { 'content-type': 'application/json' } as const;

/** Builds an error answer with the given status, reason code and message. */
export function errorResponse(
  status: number,
  reason: RefusalReason,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ code: status, reason, message }), {
    status,
    headers: { ...JSON_HEADERS, ...headers },
  });
}
