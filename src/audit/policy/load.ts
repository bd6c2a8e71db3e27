/**
 * @module Loads an `audit.k8s.io/v1` Policy from YAML or JSON text: read strictly, then validate.
 *
 * The text is read as the API server reads it (yaml-reader.ts). Where the API server only warns about an
 * unknown or duplicated field and goes on with what it understood, kube-audit-rest refuses the file: an audit
 * log must not silently record something else than its policy says because of a typo.
 *
 * Every problem is reported, each as `SOURCE:LINE:COLUMN: PATH: what is wrong`.
 */
import type { Policy } from './types.ts';
import {
  type GroupResourcesDraft,
  type PolicyDraft,
  type PolicyRuleDraft,
  validatePolicy,
} from './validate.ts';
import {
  formatIssue,
  isNull,
  type ReadIssue,
  readStrictly,
  type StrictReader,
  type YamlNode,
} from './yaml-reader.ts';

/** What loading returns: the Policy, or every problem as a line of text naming the source, place and field. */
export type LoadResult = { ok: true; policy: Policy } | { ok: false; errors: string[] };

/** The one apiVersion the API server (v1.37) registers for a Policy. */
const API_VERSION = 'audit.k8s.io/v1';
const KIND = 'Policy';

function readGroupResources(reader: StrictReader, node: YamlNode | null, path: string): GroupResourcesDraft {
  const group: GroupResourcesDraft = { group: '', resources: [], resourceNames: [] };
  reader.fields(node, path, 'group, resources, resourceNames', {
    group: (value, at) => {
      group.group = reader.string(value, at) ?? '';
    },
    resources: (value, at) => {
      group.resources = reader.strings(value, at);
    },
    resourceNames: (value, at) => {
      group.resourceNames = reader.strings(value, at);
    },
  });
  return group;
}

function readRule(reader: StrictReader, node: YamlNode | null, path: string): PolicyRuleDraft {
  const rule: PolicyRuleDraft = {
    level: undefined,
    users: [],
    userGroups: [],
    verbs: [],
    resources: [],
    namespaces: [],
    nonResourceURLs: [],
    omitStages: [],
    omitManagedFields: undefined,
  };
  const isRule = reader.fields(node, path, 'a rule', {
    level: (value, at) => {
      rule.level = reader.string(value, at);
    },
    users: (value, at) => {
      rule.users = reader.strings(value, at);
    },
    userGroups: (value, at) => {
      rule.userGroups = reader.strings(value, at);
    },
    verbs: (value, at) => {
      rule.verbs = reader.strings(value, at);
    },
    resources: (value, at) => {
      rule.resources = reader.list(value, at, (item, itemPath) => readGroupResources(reader, item, itemPath));
    },
    namespaces: (value, at) => {
      rule.namespaces = reader.strings(value, at);
    },
    nonResourceURLs: (value, at) => {
      rule.nonResourceURLs = reader.strings(value, at);
    },
    omitStages: (value, at) => {
      rule.omitStages = reader.strings(value, at);
    },
    omitManagedFields: (value, at) => {
      rule.omitManagedFields = reader.boolean(value, at);
    },
  });
  if (!isRule) reader.broken.add(`${path}.level`); // reported once, not also as "level: required"
  return rule;
}

/** Checks the object metadata a Policy may carry (neither the API server nor kube-audit-rest uses it). */
function readMetadata(reader: StrictReader, node: YamlNode, path: string): void {
  reader.fields(node, path, 'name, namespace, generateName, labels, annotations', {
    name: (value, at) => reader.string(value, at),
    namespace: (value, at) => reader.string(value, at),
    generateName: (value, at) => reader.string(value, at),
    labels: (value, at) => reader.stringMap(value, at),
    annotations: (value, at) => reader.stringMap(value, at),
  });
}

/** apiVersion or kind: must be `wanted`. Returns whether the field was there as a string. */
function readTypeField(reader: StrictReader, value: YamlNode, path: string, wanted: string): boolean {
  const text = reader.string(value, path);
  if (text === undefined) return false;
  if (text !== wanted) {
    const older = path === 'apiVersion' && text.startsWith('audit.k8s.io/');
    const hint = older
      ? ' (the API server no longer serves the older versions; the fields are the same)'
      : '';
    reader.fail(path, value, `must be ${JSON.stringify(wanted)}, not ${JSON.stringify(text)}${hint}`);
  }
  return true;
}

function readPolicy(reader: StrictReader): PolicyDraft {
  const draft: PolicyDraft = { rules: [], omitStages: [], omitManagedFields: false };
  if (isNull(reader.root)) {
    reader.fail('', null, 'empty: a Policy needs apiVersion, kind and rules');
    reader.broken.add('rules');
    return draft;
  }
  const present = new Set<string>();
  const isMapping = reader.fields(reader.root, '', 'apiVersion, kind, rules, ...', {
    apiVersion: (value, at) => {
      if (readTypeField(reader, value, at, API_VERSION)) present.add(at);
    },
    kind: (value, at) => {
      if (readTypeField(reader, value, at, KIND)) present.add(at);
    },
    metadata: (value, at) => readMetadata(reader, value, at),
    rules: (value, at) => {
      draft.rules = reader.list(value, at, (item, itemPath) => readRule(reader, item, itemPath));
    },
    omitStages: (value, at) => {
      draft.omitStages = reader.strings(value, at);
    },
    omitManagedFields: (value, at) => {
      draft.omitManagedFields = reader.boolean(value, at) ?? false;
    },
  });
  if (!isMapping) {
    reader.broken.add('rules');
    return draft;
  }
  for (const [field, wanted] of [
    ['apiVersion', API_VERSION],
    ['kind', KIND],
  ] as const) {
    if (!present.has(field) && !reader.broken.has(field))
      reader.report(field, null, `required: ${JSON.stringify(wanted)}`);
  }
  return draft;
}

/**
 * Loads an audit Policy from `text` (YAML or JSON); `source` names it in messages (the file's path, say).
 * Refuses, with every problem: syntax errors, fields of the wrong type, unknown or duplicated fields, an
 * apiVersion other than audit.k8s.io/v1 or a kind other than Policy, and whatever the API server's
 * validation refuses (see validate.ts). Returns a frozen Policy.
 */
export function loadPolicy(text: string, source: string): LoadResult {
  const read = readStrictly(text, source);
  if (!read.ok) return read;
  const { reader } = read;
  const draft = readPolicy(reader);
  const validated = validatePolicy(draft, reader.broken);
  if (reader.issues.length === 0 && validated.ok) return { ok: true, policy: validated.policy };
  const issues: ReadIssue[] = [...reader.issues];
  if (!validated.ok) {
    for (const issue of validated.issues) issues.push({ ...issue, place: reader.placeOf(issue.path) });
  }
  // In the order of the text, so a reader can walk down the file; issues without a place first.
  const order = (issue: ReadIssue) =>
    issue.place === undefined ? -1 : issue.place.line * 1e6 + issue.place.col;
  issues.sort((a, b) => order(a) - order(b));
  return { ok: false, errors: issues.map((issue) => formatIssue(source, issue)) };
}

/** Reads and loads the Policy file at `path` (see {@link loadPolicy}); a file that cannot be read is an error. */
export async function loadPolicyFile(path: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await Bun.file(path).text();
  } catch (error) {
    return { ok: false, errors: [`${path}: cannot read the policy file: ${(error as Error).message}`] };
  }
  return loadPolicy(text, path);
}
