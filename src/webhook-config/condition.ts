/**
 * @module A small boolean language over the fields of an admission request: what a webhook's CEL match
 * condition can test, before it is written out as CEL.
 *
 * Each test reads one field of the request as the API server builds it for match conditions (`request` in
 * CEL: admission.k8s.io/v1's AdmissionRequest, for the resource the caller's URL named) and asks whether its
 * value is one of a set. The constructors fold constants and flatten nested `and`/`or`, so a policy's
 * decision comes out as small as its rules allow.
 */

/**
 * The request fields a condition may test. Each reads "" when the request does not carry it (the API
 * server leaves empty fields out of `request`):
 * - `operation`: CREATE, UPDATE, DELETE or CONNECT;
 * - `username`: `request.userInfo.username`;
 * - `namespace`, `name`: `request.namespace`, `request.name`, as admission fills them in;
 * - `apiGroup`, `resource`: `request.requestResource`'s group and resource (the URL's);
 * - `subresource`: `request.requestSubResource`.
 */
export type Field = 'operation' | 'username' | 'namespace' | 'name' | 'apiGroup' | 'resource' | 'subresource';

/** A condition on one request. */
export type Condition =
  | { readonly kind: 'true' }
  | { readonly kind: 'false' }
  /** The field's value is one of `values` (never empty: an empty set folds to false). */
  | { readonly kind: 'in'; readonly field: Field; readonly values: readonly string[] }
  /** One of the user's groups (`request.userInfo.groups`) is one of `values`. */
  | { readonly kind: 'groupsAny'; readonly values: readonly string[] }
  | { readonly kind: 'not'; readonly operand: Condition }
  /** Every operand holds (at least two, none of them an `and`). */
  | { readonly kind: 'and'; readonly operands: readonly Condition[] }
  /** Some operand holds (at least two, none of them an `or`). */
  | { readonly kind: 'or'; readonly operands: readonly Condition[] };

/** Always true. */
export const TRUE: Condition = Object.freeze({ kind: 'true' });
/** Always false. */
export const FALSE: Condition = Object.freeze({ kind: 'false' });

/** The values, each once, sorted: equal sets give equal conditions (and equal CEL). */
function canonical(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/** `field` is one of `values`; false for no values. */
export function fieldIn(field: Field, values: Iterable<string>): Condition {
  const set = canonical(values);
  return set.length === 0 ? FALSE : { kind: 'in', field, values: set };
}

/** One of the user's groups is one of `values`; false for no values. */
export function groupsAny(values: Iterable<string>): Condition {
  const set = canonical(values);
  return set.length === 0 ? FALSE : { kind: 'groupsAny', values: set };
}

/** The negation of `operand`. */
export function not(operand: Condition): Condition {
  if (operand.kind === 'true') return FALSE;
  if (operand.kind === 'false') return TRUE;
  if (operand.kind === 'not') return operand.operand;
  return { kind: 'not', operand };
}

/** Every operand holds; true for none. */
export function and(...operands: Condition[]): Condition {
  const kept: Condition[] = [];
  for (const operand of operands) {
    if (operand.kind === 'false') return FALSE;
    if (operand.kind === 'true') continue;
    if (operand.kind === 'and') kept.push(...operand.operands);
    else kept.push(operand);
  }
  if (kept.length === 0) return TRUE;
  return kept.length === 1 ? (kept[0] as Condition) : { kind: 'and', operands: kept };
}

/** Some operand holds; false for none. */
export function or(...operands: Condition[]): Condition {
  const kept: Condition[] = [];
  for (const operand of operands) {
    if (operand.kind === 'true') return TRUE;
    if (operand.kind === 'false') continue;
    if (operand.kind === 'or') kept.push(...operand.operands);
    else kept.push(operand);
  }
  if (kept.length === 0) return FALSE;
  return kept.length === 1 ? (kept[0] as Condition) : { kind: 'or', operands: kept };
}
