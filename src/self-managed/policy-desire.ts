/**
 * @module In self-managed mode with `--policy-file`: every webhook of the configuration keeps the rules
 * and match conditions compiled from the policy, so the API server calls kube-audit-rest only for the
 * requests the policy records. A user's `kubectl apply` that changes them is undone like a blanked caBundle.
 */
import type { CompiledMatch } from '../webhook-config/compile.ts';
import type { JsonPatchOperation, WebhookDesire } from './webhook.ts';

/** JSON equality of plain values (what the API server returns and what the compiler made). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Each webhook's `rules` and `matchConditions` equal to the compiled ones. Without conditions (the policy
 * compiles to rules alone, or its conditions fell back to calling for everything) the field is removed.
 */
export function policyMatchDesire(match: CompiledMatch): WebhookDesire {
  const rules = match.rules.map((r) => ({ ...r }));
  const conditions = match.matchConditions.map((c) => ({ ...c }));
  return function compiledPolicy(current) {
    return (current.webhooks ?? []).flatMap((hook, i): JsonPatchOperation[] => {
      const ops: JsonPatchOperation[] = [];
      if (!same(hook.rules, rules)) ops.push({ op: 'add', path: `/webhooks/${i}/rules`, value: rules });
      const has = hook.matchConditions !== undefined && (hook.matchConditions as unknown[]).length > 0;
      if (conditions.length > 0 && !same(hook.matchConditions, conditions)) {
        ops.push({ op: 'add', path: `/webhooks/${i}/matchConditions`, value: conditions });
      } else if (conditions.length === 0 && has) {
        ops.push({ op: 'remove', path: `/webhooks/${i}/matchConditions` });
      }
      return ops;
    });
  };
}
