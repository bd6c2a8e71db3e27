/**
 * @module Evaluates an audit Policy on a request: ordered rules, the first that matches decides, none is None.
 *
 * The matching is k8s.io/apiserver v0.37.2's `pkg/audit/policy/checker.go`, rule for rule; the rules are
 * compiled once (sets, parsed resource forms, one frozen decision each) so that evaluating allocates nothing
 * and reads only the attributes the rule at hand tests, in the order upstream tests them.
 */
import {
  type GroupResources,
  type Level,
  type Policy,
  type PolicyDecision,
  type PolicyRule,
  type RequestAttributes,
  STAGES,
  type Stage,
} from './types.ts';

/** Evaluates a policy on one request's attributes. */
export type PolicyEvaluator = (attrs: RequestAttributes) => PolicyDecision;

/** The level when no rule matches (upstream's `DefaultAuditLevel`). */
const NO_MATCH_LEVEL: Level = 'None';

/** One entry of a GroupResources' `resources`, with its wildcard forms taken apart once. */
type ResourceForm = {
  /** The entry as written: it matches `resource` or `resource/subresource` spelt exactly so. */
  readonly text: string;
  /** `*`: every resource and subresource. */
  readonly any: boolean;
  /** `*\/sub`: the `sub` that any resource's subresource must equal (never matches no subresource). */
  readonly subOfAny: string | undefined;
  /** `res/*`: the resource whose every subresource matches; upstream does not check that there is one, so
   *  `pods/*` matches plain `pods` too. */
  readonly anySubOf: string | undefined;
};

type CompiledGroup = {
  readonly group: string;
  readonly anyGroup: boolean;
  /** Empty: every resource of the group. */
  readonly forms: readonly ResourceForm[];
  /** undefined: every name (so `name` is never read). */
  readonly names: ReadonlySet<string> | undefined;
};

type CompiledRule = {
  readonly users: ReadonlySet<string> | undefined;
  readonly userGroups: ReadonlySet<string> | undefined;
  readonly verbs: ReadonlySet<string> | undefined;
  /** The rule selects by namespace or resource, so it can only match a resource request. */
  readonly resourceRule: boolean;
  readonly namespaces: ReadonlySet<string> | undefined;
  /** undefined: every resource. */
  readonly groups: readonly CompiledGroup[] | undefined;
  /**
   * The rule lists only nonResourceURLs. Upstream matches those against a non-resource request's path;
   * an admission webhook only ever sees resource requests (`/api/...`, `/apis/...`), so it never matches.
   */
  readonly nonResourceOnly: boolean;
  readonly decision: PolicyDecision;
};

/** Returns the set of `values`, or undefined for an empty list ("every value"). */
function setOf(values: readonly string[]): ReadonlySet<string> | undefined {
  return values.length === 0 ? undefined : new Set(values);
}

/** The stages of all lists together, each once, in {@link STAGES} order; frozen. */
function unionStages(...lists: (readonly Stage[])[]): readonly Stage[] {
  return Object.freeze(STAGES.filter((stage) => lists.some((list) => list.includes(stage))));
}

function compileResourceForm(text: string): ResourceForm {
  return {
    text,
    any: text === '*',
    subOfAny: text.startsWith('*/') ? text.slice(2) : undefined,
    anySubOf: text.endsWith('/*') ? text.slice(0, -2) : undefined,
  };
}

function compileGroup(group: GroupResources): CompiledGroup {
  return {
    group: group.group,
    anyGroup: group.group === '*',
    forms: group.resources.map(compileResourceForm),
    names: setOf(group.resourceNames),
  };
}

function compileRule(rule: PolicyRule, policy: Policy): CompiledRule {
  return {
    users: setOf(rule.users),
    userGroups: setOf(rule.userGroups),
    verbs: setOf(rule.verbs),
    resourceRule: rule.namespaces.length > 0 || rule.resources.length > 0,
    namespaces: setOf(rule.namespaces),
    groups: rule.resources.length === 0 ? undefined : rule.resources.map(compileGroup),
    nonResourceOnly:
      rule.namespaces.length === 0 && rule.resources.length === 0 && rule.nonResourceURLs.length > 0,
    decision: Object.freeze({
      level: rule.level,
      omitStages: unionStages(policy.omitStages, rule.omitStages),
      omitManagedFields: rule.omitManagedFields ?? policy.omitManagedFields,
    }),
  };
}

/** True when `text` is exactly `resource + "/" + subresource`, without building that string. */
function isJoined(text: string, resource: string, subresource: string): boolean {
  return (
    text.length === resource.length + 1 + subresource.length &&
    text.charCodeAt(resource.length) === 0x2f && // '/'
    text.startsWith(resource) &&
    text.endsWith(subresource)
  );
}

function formMatches(form: ResourceForm, resource: string, subresource: string): boolean {
  if (form.any) return true;
  if (subresource === '' ? form.text === resource : isJoined(form.text, resource, subresource)) return true;
  if (subresource !== '' && form.subOfAny === subresource) return true;
  return form.anySubOf === resource;
}

/** Upstream's `ruleMatchesResource` after the namespace check: any listed group resource matches. */
function resourcesMatch(groups: readonly CompiledGroup[], attrs: RequestAttributes): boolean {
  const apiGroup = attrs.apiGroup;
  for (const group of groups) {
    if (!group.anyGroup && group.group !== apiGroup) continue;
    if (group.forms.length === 0) return true;
    // Upstream tests the name before each entry; the name is the same for all of them, so once is enough.
    if (group.names !== undefined && !group.names.has(attrs.name)) continue;
    const resource = attrs.resource;
    const subresource = attrs.subresource;
    for (const form of group.forms) {
      if (formMatches(form, resource, subresource)) return true;
    }
  }
  return false;
}

function userGroupsMatch(wanted: ReadonlySet<string>, groups: readonly string[]): boolean {
  for (const group of groups) {
    if (wanted.has(group)) return true;
  }
  return false;
}

/** Upstream's `ruleMatches`, for a resource request (the only kind admission sees). */
function ruleMatches(rule: CompiledRule, attrs: RequestAttributes): boolean {
  if (rule.users !== undefined && !rule.users.has(attrs.username)) return false;
  if (rule.userGroups !== undefined && !userGroupsMatch(rule.userGroups, attrs.groups)) return false;
  if (rule.verbs !== undefined && !rule.verbs.has(attrs.verb)) return false;
  if (rule.resourceRule) {
    if (rule.namespaces !== undefined && !rule.namespaces.has(attrs.namespace)) return false;
    return rule.groups === undefined || resourcesMatch(rule.groups, attrs);
  }
  return !rule.nonResourceOnly;
}

/**
 * Compiles `policy` into an evaluator: the decision of the first rule that matches, or level None with the
 * policy's omitStages and omitManagedFields. Decisions are frozen objects shared between calls.
 */
export function createPolicyEvaluator(policy: Policy): PolicyEvaluator {
  const rules = policy.rules.map((rule) => compileRule(rule, policy));
  const noMatch: PolicyDecision = Object.freeze({
    level: NO_MATCH_LEVEL,
    omitStages: unionStages(policy.omitStages),
    omitManagedFields: policy.omitManagedFields,
  });
  return function evaluatePolicy(attrs: RequestAttributes): PolicyDecision {
    for (const rule of rules) {
      if (ruleMatches(rule, attrs)) return rule.decision;
    }
    return noMatch;
  };
}

/**
 * Returns the attributes that evaluating `policy` can read at all, in RequestAttributes' order: what a record
 * must be able to provide, and what need never be decoded (`name`, say, when no rule lists resourceNames).
 */
export function attributesReadBy(policy: Policy): ReadonlySet<keyof RequestAttributes> {
  const read = new Set<keyof RequestAttributes>();
  for (const rule of policy.rules) {
    if (rule.users.length > 0) read.add('username');
    if (rule.userGroups.length > 0) read.add('groups');
    if (rule.verbs.length > 0) read.add('verb');
    if (rule.namespaces.length > 0) read.add('namespace');
    for (const group of rule.resources) {
      read.add('apiGroup');
      if (group.resources.length > 0) {
        read.add('resource');
        read.add('subresource');
      }
      if (group.resourceNames.length > 0) read.add('name');
    }
  }
  const order: readonly (keyof RequestAttributes)[] = [
    'username',
    'groups',
    'verb',
    'namespace',
    'apiGroup',
    'resource',
    'subresource',
    'name',
  ];
  return new Set(order.filter((name) => read.has(name)));
}
