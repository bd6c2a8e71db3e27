/**
 * @module The API server's validation of an audit Policy, rule for rule (k8s.io/apiserver v0.37.2,
 * `pkg/apis/audit/validation` and the zero-rule check of `pkg/audit/policy`), in kube-audit-rest's words.
 *
 * Works on a decoded draft whose fields already have the right JSON types (load.ts sees to that), and
 * returns the validated Policy or every problem, each with the path of the field.
 */
import {
  type GroupResources,
  LEVELS,
  type Level,
  type Policy,
  type PolicyRule,
  STAGES,
  type Stage,
} from './types.ts';

/** A GroupResources as decoded, before validation. */
export type GroupResourcesDraft = { group: string; resources: string[]; resourceNames: string[] };

/** A PolicyRule as decoded: `level` and `omitStages` not yet checked against their vocabularies. */
export type PolicyRuleDraft = {
  /** undefined when absent or null. */
  level: string | undefined;
  users: string[];
  userGroups: string[];
  verbs: string[];
  resources: GroupResourcesDraft[];
  namespaces: string[];
  nonResourceURLs: string[];
  omitStages: string[];
  omitManagedFields: boolean | undefined;
};

/** A Policy as decoded, before validation. */
export type PolicyDraft = { rules: PolicyRuleDraft[]; omitStages: string[]; omitManagedFields: boolean };

/** A problem with one field, named by its path, e.g. `rules[3].resources[0].group`. */
export type Issue = { readonly path: string; readonly message: string };

/** What validation returns: the Policy, or every problem found. */
export type Validated = { ok: true; policy: Policy } | { ok: false; issues: Issue[] };

/** The longest DNS subdomain (RFC 1123), as the API server counts it. */
const DNS_SUBDOMAIN_MAX_LENGTH = 253;

/** A lower-case RFC 1123 subdomain: dot-separated labels of a-z, 0-9 and '-', starting and ending alphanumeric. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const LEVEL_LIST = LEVELS.join(', ');
const STAGE_LIST = STAGES.join(', ');

function isLevel(value: string): value is Level {
  return (LEVELS as readonly string[]).includes(value);
}

function isStage(value: string): value is Stage {
  return (STAGES as readonly string[]).includes(value);
}

function validateStages(stages: readonly string[], path: string, issues: Issue[]): Stage[] {
  const valid: Stage[] = [];
  stages.forEach((stage, i) => {
    if (isStage(stage)) valid.push(stage);
    else
      issues.push({
        path: `${path}[${i}]`,
        message: `${JSON.stringify(stage)} is not a stage: one of ${STAGE_LIST}`,
      });
  });
  return valid;
}

function validateNonResourceURLs(urls: readonly string[], path: string, issues: Issue[]): void {
  urls.forEach((url, i) => {
    if (url === '*') return;
    if (!url.startsWith('/')) {
      issues.push({ path: `${path}[${i}]`, message: `${JSON.stringify(url)} must be "*" or begin with "/"` });
    }
    if (url.slice(0, -1).includes('*')) {
      issues.push({
        path: `${path}[${i}]`,
        message: `${JSON.stringify(url)} may have "*" only as its last character`,
      });
    }
  });
}

function validateGroupResources(group: GroupResourcesDraft, path: string, issues: Issue[]): void {
  const name = group.group;
  if (name !== '' && name !== '*') {
    if (name.length > DNS_SUBDOMAIN_MAX_LENGTH) {
      issues.push({
        path: `${path}.group`,
        message: `is ${name.length} characters long; a DNS subdomain has at most ${DNS_SUBDOMAIN_MAX_LENGTH}`,
      });
    }
    if (!DNS_SUBDOMAIN.test(name)) {
      issues.push({
        path: `${path}.group`,
        message:
          `${JSON.stringify(name)} must be "", "*" or a lower-case DNS subdomain` +
          (name.includes('/') ? ' (the group alone, without a version)' : ''),
      });
    }
  }
  if (group.resourceNames.length > 0 && group.resources.length === 0) {
    issues.push({
      path: `${path}.resourceNames`,
      message: 'needs resources beside it: names select objects of the resources listed',
    });
  }
}

function validateRule(rule: PolicyRuleDraft, path: string, broken: ReadonlySet<string>, issues: Issue[]) {
  let level: Level | undefined;
  if (rule.level === undefined || rule.level === '') {
    if (!broken.has(`${path}.level`)) {
      issues.push({ path: `${path}.level`, message: `required: one of ${LEVEL_LIST}` });
    }
  } else if (isLevel(rule.level)) {
    level = rule.level;
  } else {
    issues.push({
      path: `${path}.level`,
      message: `${JSON.stringify(rule.level)} is not a level: one of ${LEVEL_LIST}`,
    });
  }
  validateNonResourceURLs(rule.nonResourceURLs, `${path}.nonResourceURLs`, issues);
  rule.resources.forEach((group, i) => {
    validateGroupResources(group, `${path}.resources[${i}]`, issues);
  });
  const omitStages = validateStages(rule.omitStages, `${path}.omitStages`, issues);
  if (rule.nonResourceURLs.length > 0 && (rule.resources.length > 0 || rule.namespaces.length > 0)) {
    issues.push({
      path: `${path}.nonResourceURLs`,
      message: 'a rule selects resources (resources, namespaces) or non-resource URLs, not both',
    });
  }
  if (level === undefined) return undefined;
  return {
    level,
    users: rule.users,
    userGroups: rule.userGroups,
    verbs: rule.verbs,
    resources: rule.resources,
    namespaces: rule.namespaces,
    nonResourceURLs: rule.nonResourceURLs,
    omitStages,
    omitManagedFields: rule.omitManagedFields,
  } satisfies PolicyRule;
}

/** Freezes a policy and every list and object in it. */
function freezePolicy(policy: Policy): Policy {
  for (const rule of policy.rules) {
    for (const group of rule.resources) freezeGroup(group);
    for (const list of [rule.users, rule.userGroups, rule.verbs, rule.resources, rule.namespaces]) {
      Object.freeze(list);
    }
    Object.freeze(rule.nonResourceURLs);
    Object.freeze(rule.omitStages);
    Object.freeze(rule);
  }
  Object.freeze(policy.rules);
  Object.freeze(policy.omitStages);
  return Object.freeze(policy);
}

function freezeGroup(group: GroupResources): void {
  Object.freeze(group.resources);
  Object.freeze(group.resourceNames);
  Object.freeze(group);
}

/**
 * Validates a decoded policy as the API server does: each rule's level required and known; omitStages from
 * the four stages; nonResourceURLs `*` or starting with `/`, a `*` only last, never beside resources or
 * namespaces; groups "", "*" or a lower-case DNS subdomain; resourceNames only beside resources; at least one
 * rule. `broken` holds the paths that failed to decode (already reported), so they are not reported twice.
 * Returns the frozen Policy, or every issue.
 */
export function validatePolicy(draft: PolicyDraft, broken: ReadonlySet<string> = new Set()): Validated {
  const issues: Issue[] = [];
  const omitStages = validateStages(draft.omitStages, 'omitStages', issues);
  const rules: PolicyRule[] = [];
  draft.rules.forEach((rule, i) => {
    const valid = validateRule(rule, `rules[${i}]`, broken, issues);
    if (valid !== undefined) rules.push(valid);
  });
  if (draft.rules.length === 0 && !broken.has('rules')) {
    issues.push({
      path: 'rules',
      message: 'a policy needs at least one rule (with none, nothing is recorded)',
    });
  }
  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    policy: freezePolicy({ rules, omitStages, omitManagedFields: draft.omitManagedFields }),
  };
}
