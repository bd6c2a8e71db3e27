/**
 * @module The `rules` of the webhook: every operation, group and resource that a rule of the policy with a
 * level above None can select, and nothing else.
 *
 * Rules cannot say "not", nor anything about users, namespaces or names, so they cover more than the
 * policy records (a None rule before a Metadata rule, say, still leaves its resources in); the match
 * condition narrows the calls to exactly the policy's. The API server tests rules first and cheaply, so
 * every request they leave out costs neither a call nor a CEL evaluation.
 */
import type { Policy, PolicyRule } from '../audit/policy/types.ts';
import { ALL_OPERATIONS, operationsOf, ruleCondition } from './decision.ts';
import {
  minimisePatterns,
  patternsOfEntry,
  type ResourcePattern,
  webhookResource,
} from './resource-patterns.ts';

/** A webhook rule (admissionregistration.k8s.io/v1 RuleWithOperations). */
export type WebhookRule = {
  readonly operations: readonly string[];
  readonly apiGroups: readonly string[];
  readonly apiVersions: readonly string[];
  readonly resources: readonly string[];
  readonly scope: string;
};

const EVERYTHING: ResourcePattern = { resource: undefined, subresource: undefined };

/** One policy rule's selection: its operations, and per API group ("*" for any) the resource patterns. */
type Selection = { operations: readonly string[]; groups: Map<string, ResourcePattern[]> };

function selectionOf(rule: PolicyRule): Selection {
  const groups = new Map<string, ResourcePattern[]>();
  const add = (group: string, patterns: readonly ResourcePattern[]) =>
    groups.set(group, [...(groups.get(group) ?? []), ...patterns]);
  if (rule.resources.length === 0) add('*', [EVERYTHING]);
  for (const entry of rule.resources) {
    add(entry.group, entry.resources.length === 0 ? [EVERYTHING] : entry.resources.flatMap(patternsOfEntry));
  }
  return { operations: operationsOf(rule), groups };
}

/** `["*"]` for every operation, else the operations in admission's order. */
function operationList(operations: ReadonlySet<string>): string[] {
  return ALL_OPERATIONS.every((op) => operations.has(op))
    ? ['*']
    : ALL_OPERATIONS.filter((op) => operations.has(op));
}

/**
 * Returns the webhook rules for `policy`: for the rules above None that can match an admission request,
 * their operations on their groups' resources (any version, any scope), merged where they share
 * operations and resources. Empty when no such rule exists.
 */
export function webhookRules(policy: Policy): WebhookRule[] {
  // operations → group → patterns
  const byOperations = new Map<string, Map<string, ResourcePattern[]>>();
  for (const rule of policy.rules) {
    if (rule.level === 'None' || ruleCondition(rule).kind === 'false') continue;
    const selection = selectionOf(rule);
    const key = JSON.stringify(operationList(new Set(selection.operations)));
    const groups = byOperations.get(key) ?? new Map<string, ResourcePattern[]>();
    for (const [group, patterns] of selection.groups) {
      groups.set(group, [...(groups.get(group) ?? []), ...patterns]);
    }
    byOperations.set(key, groups);
  }
  const rules: WebhookRule[] = [];
  for (const [key, groups] of byOperations) {
    // A pattern under "*" covers that pattern in every group: a group keeps only what it adds.
    const anyGroup = minimisePatterns(groups.get('*') ?? []).map(webhookResource);
    const byResources = new Map<string, string[]>(); // resources (as JSON) → groups
    for (const [group, patterns] of groups) {
      const resources =
        group === '*'
          ? anyGroup
          : minimisePatterns([...patterns, ...(groups.get('*') ?? [])])
              .map(webhookResource)
              .filter((resource) => !anyGroup.includes(resource));
      if (resources.length === 0) continue;
      const resourceKey = JSON.stringify(resources);
      byResources.set(resourceKey, [...(byResources.get(resourceKey) ?? []), group]);
    }
    for (const [resourceKey, groupList] of byResources) {
      rules.push({
        operations: JSON.parse(key) as string[],
        apiGroups: groupList.includes('*') ? ['*'] : groupList.sort(),
        apiVersions: ['*'],
        resources: JSON.parse(resourceKey) as string[],
        scope: '*',
      });
    }
  }
  return rules;
}
