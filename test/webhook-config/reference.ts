/**
 * @module Reference semantics for tests: a compiled Condition and webhook rules evaluated on an admission
 * request's fields the way the API server reads them (`request` in CEL; rules as its rule matcher does).
 */
import type { AdmissionFields } from '../../src/audit/policy/types.ts';
import type { Condition, Field } from '../../src/webhook-config/condition.ts';
import type { WebhookRule } from '../../src/webhook-config/rules.ts';

/** The value a condition's field reads: "" where the request leaves it out. */
function fieldValue(fields: AdmissionFields, field: Field): string {
  switch (field) {
    case 'operation':
      return fields.operation;
    case 'username':
      return fields.userInfo.username ?? '';
    case 'namespace':
      return fields.namespace ?? '';
    case 'name':
      return fields.name ?? '';
    case 'apiGroup':
      return fields.requestResource?.group ?? '';
    case 'resource':
      return fields.requestResource?.resource ?? '';
    case 'subresource':
      return fields.requestSubResource ?? '';
  }
}

/** Whether `condition` holds for the request `fields` describe. */
export function holds(condition: Condition, fields: AdmissionFields): boolean {
  switch (condition.kind) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'in':
      return condition.values.includes(fieldValue(fields, condition.field));
    case 'groupsAny':
      return (fields.userInfo.groups ?? []).some((g) => condition.values.includes(g));
    case 'not':
      return !holds(condition.operand, fields);
    case 'and':
      return condition.operands.every((o) => holds(o, fields));
    case 'or':
      return condition.operands.some((o) => holds(o, fields));
  }
}

/** Whether one webhook rule selects the request, as the API server's rule matcher does (URL resource). */
export function ruleSelects(rule: WebhookRule, fields: AdmissionFields): boolean {
  const wildOr = (items: readonly string[], value: string) => items.includes('*') || items.includes(value);
  const url = fields.requestResource ?? {};
  if (!wildOr(rule.operations, fields.operation)) return false;
  if (!wildOr(rule.apiGroups, url.group ?? '')) return false;
  if (!wildOr(rule.apiVersions, url.version ?? '')) return false;
  const opSub = fields.requestSubResource ?? '';
  return rule.resources.some((entry) => {
    const slash = entry.indexOf('/');
    const res = slash < 0 ? entry : entry.slice(0, slash);
    const sub = slash < 0 ? '' : entry.slice(slash + 1);
    return (res === '*' || res === url.resource) && (sub === '*' || sub === opSub);
  });
}

/** Whether any of `rules` selects the request. */
export function rulesSelect(rules: readonly WebhookRule[], fields: AdmissionFields): boolean {
  return rules.some((rule) => ruleSelects(rule, fields));
}
