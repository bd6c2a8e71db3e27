/**
 * @module An audit Policy's decision "record this request at a level above None", as a condition on the
 * admission request's fields: the rules in order, the first that matches decides, none matching is None.
 *
 * Each rule is tested on the attributes src/audit/policy/attributes.ts derives from the request, restated
 * on the fields the API server gives a match condition:
 * - verb: create is a CREATE or a CONNECT, update an UPDATE, delete a DELETE; no other verb reaches admission;
 * - resource, subresource, group: the URL's (`requestResource`, `requestSubResource`);
 * - namespace: "" for a create of a Namespace (core `namespaces`, no subresource), else the request's;
 * - name: "" for a create without subresource (a POST to the collection), else the request's.
 * A rule that selects only non-resource URLs never matches an admission request.
 */
import type { GroupResources, Policy, PolicyRule } from '../audit/policy/types.ts';
import { and, type Condition, FALSE, fieldIn, groupsAny, not, or, TRUE } from './condition.ts';
import { minimisePatterns, patternsOfEntry, type ResourcePattern } from './resource-patterns.ts';

/** The admission operations each API verb stands for (attributes.ts maps them the other way). */
export const OPERATIONS_OF_VERB: Readonly<Record<string, readonly string[]>> = {
  create: ['CREATE', 'CONNECT'],
  update: ['UPDATE'],
  delete: ['DELETE'],
};

/** Every operation admission sends. */
export const ALL_OPERATIONS: readonly string[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

/** The operations a rule's verbs select; every operation when it lists none. */
export function operationsOf(rule: PolicyRule): readonly string[] {
  if (rule.verbs.length === 0) return ALL_OPERATIONS;
  const selected = new Set(rule.verbs.flatMap((verb) => OPERATIONS_OF_VERB[verb] ?? []));
  return ALL_OPERATIONS.filter((op) => selected.has(op));
}

/** A create that POSTs to a collection: the URL names no object. */
const COLLECTION_CREATE = and(fieldIn('operation', ['CREATE']), fieldIn('subresource', ['']));

/** A create of a Namespace: the URL names no namespace (admission gives the new name). */
const NAMESPACE_CREATE = and(
  COLLECTION_CREATE,
  fieldIn('apiGroup', ['']),
  fieldIn('resource', ['namespaces']),
);

/** The policy's namespace (see the module comment) is one of `namespaces`. */
function namespaceIn(namespaces: readonly string[]): Condition {
  return namespaces.includes('')
    ? or(NAMESPACE_CREATE, fieldIn('namespace', namespaces))
    : and(fieldIn('namespace', namespaces), not(NAMESPACE_CREATE));
}

/** The policy's name (see the module comment) is one of `names`. */
function nameIn(names: readonly string[]): Condition {
  return names.includes('')
    ? or(COLLECTION_CREATE, fieldIn('name', names))
    : and(fieldIn('name', names), not(COLLECTION_CREATE));
}

/** Pairs grouped by one side: `pods` with `log` and `status`, or `status` of `nodes` and `pods`. */
function groupPairs(pairs: readonly (readonly [string, string])[], by: 0 | 1): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const pair of pairs) groups.set(pair[by], [...(groups.get(pair[by]) ?? []), pair[1 - by] as string]);
  return groups;
}

/** The request's resource and subresource fit one of `patterns`. */
export function patternsCondition(patterns: readonly ResourcePattern[]): Condition {
  const anySubresource: string[] = [];
  const anyResource: string[] = [];
  const pairs: (readonly [resource: string, subresource: string])[] = [];
  for (const p of minimisePatterns(patterns)) {
    if (p.resource === undefined && p.subresource === undefined) return TRUE;
    if (p.subresource === undefined) anySubresource.push(p.resource as string);
    else if (p.resource === undefined) anyResource.push(p.subresource);
    else pairs.push([p.resource, p.subresource]);
  }
  // Whichever side has fewer distinct values makes fewer tests.
  const byResource = groupPairs(pairs, 0);
  const bySubresource = groupPairs(pairs, 1);
  const tests =
    byResource.size < bySubresource.size
      ? [...byResource].map(([resource, subs]) =>
          and(fieldIn('resource', [resource]), fieldIn('subresource', subs)),
        )
      : [...bySubresource].map(([sub, resources]) =>
          and(fieldIn('resource', resources), fieldIn('subresource', [sub])),
        );
  return or(fieldIn('resource', anySubresource), fieldIn('subresource', anyResource), ...tests);
}

/** Upstream's resource match for one GroupResources, after the namespace test. */
function groupCondition(group: GroupResources): Condition {
  const inGroup = group.group === '*' ? TRUE : fieldIn('apiGroup', [group.group]);
  // An entry without resources selects the whole group, whatever resourceNames says (evaluate.ts).
  if (group.resources.length === 0) return inGroup;
  return and(
    inGroup,
    patternsCondition(group.resources.flatMap(patternsOfEntry)),
    group.resourceNames.length === 0 ? TRUE : nameIn(group.resourceNames),
  );
}

/** Whether `rule` matches the request, as evaluate.ts's ruleMatches; cheap tests first, groups last. */
export function ruleCondition(rule: PolicyRule): Condition {
  const resourceRule = rule.namespaces.length > 0 || rule.resources.length > 0;
  if (!resourceRule && rule.nonResourceURLs.length > 0) return FALSE;
  return and(
    rule.verbs.length === 0 ? TRUE : fieldIn('operation', operationsOf(rule)),
    rule.resources.length === 0 ? TRUE : or(...rule.resources.map(groupCondition)),
    rule.namespaces.length === 0 ? TRUE : namespaceIn(rule.namespaces),
    rule.users.length === 0 ? TRUE : fieldIn('username', rule.users),
    rule.userGroups.length === 0 ? TRUE : groupsAny(rule.userGroups),
  );
}

/**
 * The condition under which the rules from `from` on record a request above None (first match wins;
 * none matching is None): built from the last rule back, each None rule a "not this, and then the rest",
 * each other rule a "this, or else the rest".
 */
export function recordsFrom(policy: Policy, from: number): Condition {
  let rest = FALSE;
  for (let i = policy.rules.length - 1; i >= from; i--) {
    const rule = policy.rules[i] as PolicyRule;
    const matches = ruleCondition(rule);
    rest = rule.level === 'None' ? and(not(matches), rest) : or(matches, rest);
  }
  return rest;
}

/** The condition under which `policy` records a request above None. */
export function recordsCondition(policy: Policy): Condition {
  return recordsFrom(policy, 0);
}
