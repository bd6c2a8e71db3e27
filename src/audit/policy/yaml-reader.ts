/**
 * @module A strict reader of one YAML or JSON document, parsed as the API server parses a policy file: typed
 * fields, every problem kept with the field's path and its place in the text, nothing silently dropped.
 *
 * The API server reads YAML as YAML 1.1 (sigs.k8s.io/yaml over go-yaml v2), so an unquoted `on`, `yes` or `n`
 * is a boolean there, and `0777` a number; so it is here. A text that starts with `{` it reads as JSON.
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

/** A node of the parsed document. */
export type { YamlNode };

/** A place in the text, 1-based. */
export type Place = { readonly line: number; readonly col: number };

/** A problem with the field at `path` (e.g. `rules[3].level`; "" for the document), and where it is. */
export type ReadIssue = {
  readonly path: string;
  readonly message: string;
  readonly place: Place | undefined;
};

/** One mapping's fields: for each known name, what to do with its value (a null value counts as absent). */
export type FieldTable = Readonly<Record<string, (node: YamlNode, path: string) => void>>;

/** The API server reads a document as JSON when its first non-blank character opens an object. */
const JSON_START = /^[\t\n\r ]*\{/;

/**
 * go-yaml v2 resolves YAML 1.1's booleans, nulls, numbers and merge keys, but keeps timestamps and
 * sexagesimal numbers (`1:20`) as strings: so do we, by leaving out the `yaml` package's YAML 1.1 tags for
 * them (named, or as tag objects: `format: 'TIME'` is sexagesimal).
 */
const TAG_NAMES_NOT_IN_GO_YAML_V2 = new Set(['timestamp', 'intTime', 'floatTime']);

function isGoYamlV2Tag(tag: Tags[number]): boolean {
  if (typeof tag === 'string') return !TAG_NAMES_NOT_IN_GO_YAML_V2.has(tag);
  return tag.tag !== 'tag:yaml.org,2002:timestamp' && !('format' in tag && tag.format === 'TIME');
}

/** True for a missing value and for YAML's null (`~`, `null`, nothing). */
export function isNull(node: YamlNode | null): boolean {
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

/** `SOURCE:LINE:COL: PATH: message`; the place and the path are left out where there is none. */
export function formatIssue(source: string, issue: ReadIssue): string {
  const where = issue.place === undefined ? source : `${source}:${issue.place.line}:${issue.place.col}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

/** Reads typed values out of a parsed document, keeping every problem and the place of every field read. */
export class StrictReader {
  /** The document's top node; null when it is empty. */
  readonly root: YamlNode | null;
  /** Every problem found so far, in the order found. */
  readonly issues: ReadIssue[] = [];
  /** Paths whose value could not be read (already reported): later checks skip them. */
  readonly broken = new Set<string>();
  readonly #doc: Document.Parsed;
  readonly #lines: LineCounter;
  readonly #places = new Map<string, Place>();

  constructor(doc: Document.Parsed, lines: LineCounter) {
    this.#doc = doc;
    this.#lines = lines;
    this.root = this.#resolve(doc.contents);
  }

  /** The place of `path`, or of the nearest enclosing field that has one (a missing field's mapping). */
  placeOf(path: string): Place | undefined {
    let at = path;
    for (;;) {
      const place = this.#places.get(at);
      if (place !== undefined) return place;
      const parent = at.replace(/(\.[^.[]*|\[\d+\])$/, '');
      if (parent === at) return undefined;
      at = parent;
    }
  }

  /** Records a problem with the field at `path`, placed at `node` or else at the field. */
  report(path: string, node: YamlNode | null | undefined, message: string): void {
    this.issues.push({ path, message, place: this.#placeOfNode(node) ?? this.placeOf(path) });
  }

  /** Records a problem and marks `path` broken; returns undefined, the value that could not be read. */
  fail(path: string, node: YamlNode | null | undefined, message: string): undefined {
    this.report(path, node, message);
    this.broken.add(path);
    return undefined;
  }

  /** The string at `node`, or undefined after reporting what is there instead. */
  string(node: YamlNode | null, path: string): string | undefined {
    if (isScalar(node) && typeof node.value === 'string') return node.value;
    const hint =
      isScalar(node) && (typeof node.value === 'boolean' || typeof node.value === 'number')
        ? ' (quote it: the API server reads it as YAML 1.1, where it is not a string)'
        : isNull(node)
          ? ' (write "" for the empty string)'
          : '';
    return this.fail(path, node, `must be a string, not ${describe(node)}${hint}`);
  }

  /** The boolean at `node` (YAML 1.1: yes, no, on, off, y, n too), or undefined after reporting. */
  boolean(node: YamlNode | null, path: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    return this.fail(path, node, `must be true or false, not ${describe(node)}`);
  }

  /** A list of what `readItem` makes of each item; null is an empty list, as the API server reads it. */
  list<T>(
    node: YamlNode | null,
    path: string,
    readItem: (item: YamlNode | null, path: string) => T | undefined,
  ): T[] {
    if (isNull(node)) return [];
    if (!isSeq(node)) {
      this.fail(path, node, `must be a list, not ${describe(node)}`);
      return [];
    }
    const list: T[] = [];
    node.items.forEach((raw, i) => {
      const item = this.#resolve(raw);
      const itemPath = `${path}[${i}]`;
      this.#place(itemPath, item);
      const value = readItem(item, itemPath);
      if (value !== undefined) list.push(value);
    });
    return list;
  }

  /** A list of strings; null is an empty list. */
  strings(node: YamlNode | null, path: string): string[] {
    return this.list(node, path, (item, itemPath) => this.string(item, itemPath));
  }

  /**
   * Walks a mapping (`what` says what it should hold): refuses keys that are not strings, unknown, duplicated
   * or merge keys (`<<`); hands every value that is not null to its field. False when `node` is no mapping.
   */
  fields(node: YamlNode | null, path: string, what: string, table: FieldTable): boolean {
    if (!isMap(node)) {
      this.fail(path, node, `must be a mapping (${what}), not ${describe(node)}`);
      return false;
    }
    const seen = new Set<string>();
    for (const pair of (node as YAMLMap<unknown, unknown>).items) {
      const key = this.#resolve(pair.key);
      const value = this.#resolve(pair.value);
      const name = isScalar(key) ? key.value : undefined;
      if (typeof name === 'symbol') {
        this.report(path, key, 'merge keys (<<) are not supported: write the fields out'); // the yaml package's
        continue;
      }
      if (typeof name !== 'string') {
        this.report(path, key, `a field name must be a string, not ${describe(key)}`);
        continue;
      }
      const field = table[name];
      if (field === undefined) {
        const known = Object.keys(table);
        const sameButCase = known.find((k) => k.toLowerCase() === name.toLowerCase());
        const hint =
          sameButCase === undefined ? `known: ${known.join(', ')}` : `did you mean "${sameButCase}"?`;
        this.report(path, key, `unknown field ${JSON.stringify(name)} (${hint})`);
        continue;
      }
      if (seen.has(name)) {
        this.report(path, key, `duplicated field ${JSON.stringify(name)}`);
        continue;
      }
      seen.add(name);
      const fieldPath = path === '' ? name : `${path}.${name}`;
      this.#place(fieldPath, isNull(value) ? key : value); // a null value has no text of its own
      if (value !== null && !isNull(value)) field(value, fieldPath);
    }
    return true;
  }

  /** A mapping of strings to strings (labels, annotations). */
  stringMap(node: YamlNode, path: string): void {
    if (!isMap(node)) {
      this.fail(path, node, `must be a mapping of strings to strings, not ${describe(node)}`);
      return;
    }
    for (const pair of (node as YAMLMap<unknown, unknown>).items) {
      const key = this.#resolve(pair.key);
      const name = isScalar(key) && typeof key.value === 'string' ? key.value : undefined;
      if (name === undefined) this.report(path, key, `a key must be a string, not ${describe(key)}`);
      else this.string(this.#resolve(pair.value), `${path}.${name}`);
    }
  }

  /** Follows an alias (`*name`) to the node it names. */
  #resolve(node: unknown): YamlNode | null {
    if (isAlias(node)) return node.resolve(this.#doc) ?? null;
    return (node as YamlNode | null) ?? null;
  }

  #placeOfNode(node: YamlNode | null | undefined): Place | undefined {
    const offset = node?.range?.[0];
    return offset === undefined ? undefined : this.#lines.linePos(offset);
  }

  #place(path: string, node: YamlNode | null): void {
    const place = this.#placeOfNode(node);
    if (place !== undefined) this.#places.set(path, place);
  }
}

/**
 * Parses `text` the way the API server does, or returns the syntax errors: as JSON when it starts with `{`,
 * else as YAML 1.1. The YAML parser reads the JSON too (JSON is YAML), for the places and the duplicated keys
 * that JSON.parse does not report; JSON.parse first refuses what is YAML but not JSON (a trailing comma, say).
 */
export function readStrictly(
  text: string,
  source: string,
): { ok: true; reader: StrictReader } | { ok: false; errors: string[] } {
  if (JSON_START.test(text)) {
    try {
      JSON.parse(text);
    } catch (error) {
      const reason = (error as Error).message.replace(/^JSON Parse error: /, '');
      return {
        ok: false,
        errors: [`${source}: not valid JSON (a text that starts with "{" is read as JSON): ${reason}`],
      };
    }
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    version: '1.1',
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: false, // StrictReader.fields reports duplicates, with their path
    customTags: (tags) => tags.filter(isGoYamlV2Tag),
  });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    return {
      ok: false,
      errors: problems.map((problem) => {
        const { line, col } = lines.linePos(problem.pos[0]);
        return `${source}:${line}:${col}: ${problem.message.split('\n')[0]}`;
      }),
    };
  }
  return { ok: true, reader: new StrictReader(doc, lines) };
}
