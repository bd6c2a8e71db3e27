/**
 * @module An audit Policy written back as a plain document, and its digest as Helm computes it.
 *
 * The chart holds the policy in its values and the compiled webhook beside it; to refuse a policy that
 * changed after it was compiled, it compares `sha256sum (toJson .Values.auditPolicy)` with the digest
 * `kube-audit-rest webhook-config` wrote. Helm's toJson is Go's json.Marshal: object keys sorted by their
 * bytes, no spaces, and `<`, `>`, `&`, U+2028 and U+2029 escaped; {@link goJson} writes the same bytes for
 * the values a policy document holds (strings, booleans, lists and objects of them).
 */
import { createHash } from 'node:crypto';
import type { GroupResources, Policy, PolicyRule } from '../audit/policy/types.ts';

/** A value of a policy document. */
export type DocumentValue =
  | string
  | boolean
  | readonly DocumentValue[]
  | { readonly [key: string]: DocumentValue };

/** Sets `key` to `list` when it is not empty: the loader reads an absent list as an empty one. */
function putList(into: Record<string, DocumentValue>, key: string, list: readonly string[]): void {
  if (list.length > 0) into[key] = [...list];
}

function groupDocument(group: GroupResources): Record<string, DocumentValue> {
  const out: Record<string, DocumentValue> = { group: group.group };
  putList(out, 'resources', group.resources);
  putList(out, 'resourceNames', group.resourceNames);
  return out;
}

function ruleDocument(rule: PolicyRule): Record<string, DocumentValue> {
  const out: Record<string, DocumentValue> = { level: rule.level };
  putList(out, 'users', rule.users);
  putList(out, 'userGroups', rule.userGroups);
  putList(out, 'verbs', rule.verbs);
  if (rule.resources.length > 0) out.resources = rule.resources.map(groupDocument);
  putList(out, 'namespaces', rule.namespaces);
  putList(out, 'nonResourceURLs', rule.nonResourceURLs);
  putList(out, 'omitStages', rule.omitStages);
  if (rule.omitManagedFields !== undefined) out.omitManagedFields = rule.omitManagedFields;
  return out;
}

/**
 * Returns `policy` as an `audit.k8s.io/v1` Policy document holding every field that has a value: loading
 * the document gives back the same Policy.
 */
export function policyDocument(policy: Policy): Record<string, DocumentValue> {
  const out: Record<string, DocumentValue> = { apiVersion: 'audit.k8s.io/v1', kind: 'Policy' };
  putList(out, 'omitStages', policy.omitStages);
  if (policy.omitManagedFields) out.omitManagedFields = true;
  out.rules = policy.rules.map(ruleDocument);
  return out;
}

/** Characters Go's encoding/json writes as escapes, and how. */
const GO_ESCAPES: Readonly<Record<string, string>> = {
  '"': '\\"',
  '\\': '\\\\',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};

function goString(text: string): string {
  let out = '"';
  for (const char of text) {
    const escaped = GO_ESCAPES[char];
    const code = char.codePointAt(0) as number;
    if (escaped !== undefined) out += escaped;
    else if (code < 0x20) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += char;
  }
  return `${out}"`;
}

/** Orders keys as Go does: by their UTF-8 bytes. */
function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Writes `value` as Go's json.Marshal writes the same value decoded from YAML (see the module comment). */
export function goJson(value: DocumentValue): string {
  if (typeof value === 'string') return goString(value);
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  const object = value as { readonly [key: string]: DocumentValue };
  const keys = Object.keys(object).sort(byBytes);
  return `{${keys.map((key) => `${goString(key)}:${goJson(object[key] as DocumentValue)}`).join(',')}}`;
}

/** The hex SHA-256 of {@link goJson} of the policy's document: the chart's `sha256sum (toJson ...)`. */
export function policyDigest(policy: Policy): string {
  return createHash('sha256')
    .update(goJson(policyDocument(policy)))
    .digest('hex');
}
