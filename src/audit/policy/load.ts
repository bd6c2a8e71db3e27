/**
 * @module Loads an `audit.k8s.io/v1` Policy from YAML or JSON text: decode strictly, then validate.
 *
 * The API server reads a policy file as YAML 1.1 (sigs.k8s.io/yaml over go-yaml v2), so an unquoted `on`,
 * `yes` or `n` is a boolean there, and `0777` a number; so it is here. Where the API server only warns about
 * an unknown or duplicated field and goes on with what it understood, kube-audit-rest refuses the file: an
 * audit log must not silently record something else than its policy says because of a typo.
 *
 * Every problem is reported, each as `SOURCE:LINE:COLUMN: PATH: what is wrong`.
 */
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Scalar,
  type Tags,
  type YAMLMap,
  type Node as YamlNode,
} from 'yaml';
import type { Policy } from './types.ts';
import {
  type GroupResourcesDraft,
  type Issue,
  type PolicyDraft,
  type PolicyRuleDraft,
  validatePolicy,
} from './validate.ts';

/** What loading returns: the Policy, or every problem as a line of text naming the source, place and field. */
export type LoadResult = { ok: true; policy: Policy } | { ok: false; errors: string[] };

/** The API server reads a document as JSON when its first non-blank character opens an object. */
const JSON_START = /^[\t\n\r ]*\{/;

/** The one apiVersion the API server (v1.37) registers for a Policy. */
const API_VERSION = 'audit.k8s.io/v1';
const KIND = 'Policy';

/**
 * go-yaml v2, which the API server's YAML decoding uses, resolves YAML 1.1's booleans, nulls, numbers and
 * merge keys, but keeps timestamps and sexagesimal numbers (`1:20`) as strings: so do we, by leaving out the
 * `yaml` package's YAML 1.1 tags for them (by name or as tag objects, `format: 'TIME'` for sexagesimal).
 */
const TAG_NAMES_NOT_IN_GO_YAML_V2 = new Set(['timestamp', 'intTime', 'floatTime']);

function isGoYamlV2Tag(tag: Tags[number]): boolean {
  if (typeof tag === 'string') return !TAG_NAMES_NOT_IN_GO_YAML_V2.has(tag);
  return tag.tag !== 'tag:yaml.org,2002:timestamp' && !('format' in tag && tag.format === 'TIME');
}

/** A place in the text, 1-based. */
type Position = { line: number; col: number };

/** The decoding state: problems so far, where each path is, and which paths failed (validation skips those). */
type Decoder = {
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  readonly issues: (Issue & { position: Position | undefined })[];
  readonly positions: Map<string, Position>;
  readonly broken: Set<string>;
};

function positionOf(decoder: Decoder, node: YamlNode | null | undefined): Position | undefined {
  const offset = node?.range?.[0];
  return offset === undefined ? undefined : decoder.lines.linePos(offset);
}

function report(decoder: Decoder, path: string, node: YamlNode | null | undefined, message: string): void {
  decoder.issues.push({
    path,
    message,
    position: positionOf(decoder, node) ?? placeOf(decoder.positions, path),
  });
}

function fail(decoder: Decoder, path: string, node: YamlNode | null | undefined, message: string): undefined {
  report(decoder, path, node, message);
  decoder.broken.add(path);
  return undefined;
}

/** Follows an alias (`*name`) to the node it names. */
function resolve(decoder: Decoder, node: unknown): YamlNode | null {
  if (isAlias(node)) return node.resolve(decoder.doc) ?? null;
  return (node as YamlNode | null) ?? null;
}

function isNull(node: YamlNode | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

/** How a value that is not what the field wants reads in a message. */
function describe(node: YamlNode | null): string {
  if (isNull(node)) return 'null';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const source = (node as Scalar.Parsed).source ?? String(node.value);
    if (typeof node.value === 'boolean') return `the boolean ${source}`;
    if (typeof node.value === 'number') return `the number ${source}`;
    if (typeof node.value === 'string') return JSON.stringify(node.value);
  }
  return 'a value of another type';
}

function decodeString(decoder: Decoder, node: YamlNode | null, path: string): string | undefined {
  if (isScalar(node) && typeof node.value === 'string') return node.value;
  const hint =
    isScalar(node) && (typeof node.value === 'boolean' || typeof node.value === 'number')
      ? ` (quote it: the API server reads it as YAML 1.1, where it is not a string)`
      : isNull(node)
        ? ' (write "" for the empty string)'
        : '';
  return fail(decoder, path, node, `must be a string, not ${describe(node)}${hint}`);
}

function decodeBoolean(decoder: Decoder, node: YamlNode | null, path: string): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  return fail(decoder, path, node, `must be true or false, not ${describe(node)}`);
}

/** A list of T; null is an empty list, as the API server reads it. */
function decodeList<T>(
  decoder: Decoder,
  node: YamlNode | null,
  path: string,
  decodeItem: (item: YamlNode | null, path: string) => T | undefined,
): T[] {
  if (isNull(node)) return [];
  if (!isSeq(node)) {
    fail(decoder, path, node, `must be a list, not ${describe(node)}`);
    return [];
  }
  const list: T[] = [];
  node.items.forEach((raw, i) => {
    const item = resolve(decoder, raw);
    const itemPath = `${path}[${i}]`;
    const position = positionOf(decoder, item);
    if (position !== undefined) decoder.positions.set(itemPath, position);
    const value = decodeItem(item, itemPath);
    if (value !== undefined) list.push(value);
  });
  return list;
}

function decodeStrings(decoder: Decoder, node: YamlNode | null, path: string): string[] {
  return decodeList(decoder, node, path, (item, itemPath) => decodeString(decoder, item, itemPath));
}

/** One mapping's fields: for each known name, a decoder that stores the value; null means "absent". */
type FieldTable = Readonly<Record<string, (node: YamlNode, path: string) => void>>;

/**
 * Walks a mapping: refuses keys that are not strings, unknown, duplicated or merge keys (`<<`); calls the
 * field's decoder for every value that is not null. Returns false when `node` is not a mapping at all.
 */
function decodeFields(
  decoder: Decoder,
  node: YamlNode | null,
  path: string,
  what: string,
  table: FieldTable,
) {
  if (!isMap(node)) {
    fail(decoder, path, node, `must be a mapping (${what}), not ${describe(node)}`);
    return false;
  }
  const seen = new Set<string>();
  for (const pair of (node as YAMLMap<unknown, unknown>).items) {
    const key = resolve(decoder, pair.key);
    const value = resolve(decoder, pair.value);
    const name = isScalar(key) ? key.value : undefined;
    if (isScalar(key) && typeof key.value === 'symbol' /* the yaml package's merge key */) {
      report(decoder, path, key, 'merge keys (<<) are not supported: write the fields out');
      continue;
    }
    if (typeof name !== 'string') {
      report(decoder, path, key, `a field name must be a string, not ${describe(key)}`);
      continue;
    }
    const field = table[name];
    const fieldPath = path === '' ? name : `${path}.${name}`;
    if (field === undefined) {
      const known = Object.keys(table);
      const sameButCase = known.find((k) => k.toLowerCase() === name.toLowerCase());
      const hint =
        sameButCase === undefined ? `known: ${known.join(', ')}` : `did you mean "${sameButCase}"?`;
      report(decoder, path, key, `unknown field ${JSON.stringify(name)} (${hint})`);
      continue;
    }
    if (seen.has(name)) {
      report(decoder, path, key, `duplicated field ${JSON.stringify(name)}`);
      continue;
    }
    seen.add(name);
    // A null value has no text of its own: point at its key.
    const position = (isNull(value) ? undefined : positionOf(decoder, value)) ?? positionOf(decoder, key);
    if (position !== undefined) decoder.positions.set(fieldPath, position);
    if (value !== null && !isNull(value)) field(value, fieldPath);
  }
  return true;
}

function decodeGroupResources(decoder: Decoder, node: YamlNode | null, path: string): GroupResourcesDraft {
  const group: GroupResourcesDraft = { group: '', resources: [], resourceNames: [] };
  decodeFields(decoder, node, path, 'group, resources, resourceNames', {
    group: (value, at) => {
      group.group = decodeString(decoder, value, at) ?? '';
    },
    resources: (value, at) => {
      group.resources = decodeStrings(decoder, value, at);
    },
    resourceNames: (value, at) => {
      group.resourceNames = decodeStrings(decoder, value, at);
    },
  });
  return group;
}

function decodeRule(decoder: Decoder, node: YamlNode | null, path: string): PolicyRuleDraft {
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
  const strings = (set: (list: string[]) => void) => (value: YamlNode, at: string) => {
    set(decodeStrings(decoder, value, at));
  };
  const ok = decodeFields(decoder, node, path, 'a rule', {
    level: (value, at) => {
      rule.level = decodeString(decoder, value, at);
    },
    users: strings((list) => {
      rule.users = list;
    }),
    userGroups: strings((list) => {
      rule.userGroups = list;
    }),
    verbs: strings((list) => {
      rule.verbs = list;
    }),
    resources: (value, at) => {
      rule.resources = decodeList(decoder, value, at, (item, itemPath) =>
        decodeGroupResources(decoder, item, itemPath),
      );
    },
    namespaces: strings((list) => {
      rule.namespaces = list;
    }),
    nonResourceURLs: strings((list) => {
      rule.nonResourceURLs = list;
    }),
    omitStages: strings((list) => {
      rule.omitStages = list;
    }),
    omitManagedFields: (value, at) => {
      rule.omitManagedFields = decodeBoolean(decoder, value, at);
    },
  });
  if (!ok) decoder.broken.add(`${path}.level`); // not a mapping: reported once, not also "level: required"
  return rule;
}

function decodeStringMap(decoder: Decoder, node: YamlNode, path: string): void {
  if (!isMap(node)) {
    fail(decoder, path, node, `must be a mapping of strings to strings, not ${describe(node)}`);
    return;
  }
  for (const pair of (node as YAMLMap<unknown, unknown>).items) {
    const key = resolve(decoder, pair.key);
    const name = isScalar(key) && typeof key.value === 'string' ? key.value : undefined;
    if (name === undefined) report(decoder, path, key, `a key must be a string, not ${describe(key)}`);
    else decodeString(decoder, resolve(decoder, pair.value), `${path}.${name}`);
  }
}

/** Checks the object metadata a Policy may carry (unused by the API server and by us). */
function decodeMetadata(decoder: Decoder, node: YamlNode, path: string): void {
  decodeFields(decoder, node, path, 'name, namespace, generateName, labels, annotations', {
    name: (value, at) => decodeString(decoder, value, at),
    namespace: (value, at) => decodeString(decoder, value, at),
    generateName: (value, at) => decodeString(decoder, value, at),
    labels: (value, at) => decodeStringMap(decoder, value, at),
    annotations: (value, at) => decodeStringMap(decoder, value, at),
  });
}

function decodeTypeField(decoder: Decoder, value: YamlNode, path: string, wanted: string, seen: string[]) {
  const text = decodeString(decoder, value, path);
  if (text === undefined) return;
  seen.push(path);
  if (text === wanted) return;
  const older = path === 'apiVersion' && text.startsWith('audit.k8s.io/');
  const hint = older ? ' (the API server no longer serves the older versions; the fields are the same)' : '';
  fail(decoder, path, value, `must be ${JSON.stringify(wanted)}, not ${JSON.stringify(text)}${hint}`);
}

function decodePolicy(decoder: Decoder): PolicyDraft {
  const draft: PolicyDraft = { rules: [], omitStages: [], omitManagedFields: false };
  const typeFields: string[] = [];
  const root = decoder.doc.contents;
  if (isNull(root)) {
    fail(decoder, '', null, 'empty: a Policy needs apiVersion, kind and rules');
    decoder.broken.add('rules');
    return draft;
  }
  const ok = decodeFields(decoder, root, '', 'apiVersion, kind, rules, ...', {
    apiVersion: (value, at) => decodeTypeField(decoder, value, at, API_VERSION, typeFields),
    kind: (value, at) => decodeTypeField(decoder, value, at, KIND, typeFields),
    metadata: (value, at) => decodeMetadata(decoder, value, at),
    rules: (value, at) => {
      draft.rules = decodeList(decoder, value, at, (item, itemPath) => decodeRule(decoder, item, itemPath));
    },
    omitStages: (value, at) => {
      draft.omitStages = decodeStrings(decoder, value, at);
    },
    omitManagedFields: (value, at) => {
      draft.omitManagedFields = decodeBoolean(decoder, value, at) ?? false;
    },
  });
  if (!ok) {
    decoder.broken.add('rules');
    return draft;
  }
  for (const [field, wanted] of [
    ['apiVersion', API_VERSION],
    ['kind', KIND],
  ] as const) {
    if (!typeFields.includes(field) && !decoder.broken.has(field)) {
      report(decoder, field, null, `required: ${JSON.stringify(wanted)}`);
    }
  }
  return draft;
}

/** The place of `path`, or of the nearest enclosing field that has one (a missing field's mapping). */
function placeOf(positions: ReadonlyMap<string, Position>, path: string): Position | undefined {
  let at = path;
  for (;;) {
    const position = positions.get(at);
    if (position !== undefined) return position;
    const parent = at.replace(/(\.[^.[]*|\[\d+\])$/, '');
    if (parent === at) return undefined;
    at = parent;
  }
}

/** `SOURCE:LINE:COL: PATH: message`; the place and the path are left out where there is none. */
function format(source: string, issue: { path: string; message: string; position: Position | undefined }) {
  const where =
    issue.position === undefined ? source : `${source}:${issue.position.line}:${issue.position.col}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

/**
 * Parses `text` the way the API server does, or returns the syntax errors: as JSON when it starts with `{`,
 * else as YAML 1.1. The YAML parser reads the JSON too (JSON is YAML), for the places and the duplicated keys
 * that JSON.parse does not report; JSON.parse first refuses what is YAML but not JSON (a trailing comma, say).
 */
function parse(
  text: string,
  source: string,
): { doc: Document.Parsed; lines: LineCounter } | { errors: string[] } {
  if (JSON_START.test(text)) {
    try {
      JSON.parse(text);
    } catch (error) {
      const reason = (error as Error).message.replace(/^JSON Parse error: /, '');
      return {
        errors: [`${source}: not valid JSON (a policy that starts with "{" is read as JSON): ${reason}`],
      };
    }
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    version: '1.1',
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: false, // decodeFields reports duplicates, with their path
    customTags: (tags) => tags.filter(isGoYamlV2Tag),
  });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    return {
      errors: problems.map((problem) => {
        const { line, col } = lines.linePos(problem.pos[0]);
        return `${source}:${line}:${col}: ${problem.message.split('\n')[0]}`;
      }),
    };
  }
  return { doc, lines };
}

/**
 * Loads an audit Policy from `text` (YAML or JSON); `source` names it in messages (the file's path, say).
 * Refuses, with every problem: syntax errors, fields of the wrong type, unknown or duplicated fields, an
 * apiVersion other than audit.k8s.io/v1 or a kind other than Policy, and whatever the API server's
 * validation refuses (see validate.ts). Returns a frozen Policy.
 */
export function loadPolicy(text: string, source: string): LoadResult {
  const parsed = parse(text, source);
  if ('errors' in parsed) return { ok: false, errors: parsed.errors };
  const decoder: Decoder = { ...parsed, issues: [], positions: new Map(), broken: new Set() };
  const draft = decodePolicy(decoder);
  const validated = validatePolicy(draft, decoder.broken);
  const issues = [...decoder.issues];
  if (!validated.ok) {
    for (const issue of validated.issues)
      issues.push({ ...issue, position: placeOf(decoder.positions, issue.path) });
  }
  if (issues.length === 0 && validated.ok) return { ok: true, policy: validated.policy };
  // In the order of the text, so a reader can walk down the file; issues without a place first.
  const order = (issue: { position: Position | undefined }) =>
    issue.position === undefined ? -1 : issue.position.line * 1e6 + issue.position.col;
  issues.sort((a, b) => order(a) - order(b));
  return { ok: false, errors: issues.map((issue) => format(source, issue)) };
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
