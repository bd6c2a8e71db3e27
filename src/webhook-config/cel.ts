/**
 * @module Writes a {@link Condition} as the CEL expression of a webhook match condition, and measures it
 * against the limits the API server (Kubernetes 1.30 to 1.37) puts on one.
 *
 * The expression reads `request`, the AdmissionRequest the API server builds for match conditions. Fields
 * that are empty are absent from it (omitempty), and reading an absent field is an error, which the API
 * server turns into the failure policy: with `Ignore` the webhook would not be called. So every optional
 * field is read behind `has()`, and an expression cannot fail. Only the core language is used (no library
 * function), so the same text compiles on every version that has match conditions.
 */
import type { Condition, Field } from './condition.ts';

/** CEL text for each field, and whether the API server may leave it out of `request`. */
const FIELDS: Readonly<Record<Field, { readonly path: string; readonly optional: boolean }>> = {
  operation: { path: 'request.operation', optional: false },
  username: { path: 'request.userInfo.username', optional: true },
  namespace: { path: 'request.namespace', optional: true },
  name: { path: 'request.name', optional: true },
  // metav1.GroupVersionResource has no omitempty: "" is there for the core group.
  apiGroup: { path: 'request.requestResource.group', optional: false },
  resource: { path: 'request.requestResource.resource', optional: false },
  subresource: { path: 'request.requestSubResource', optional: true },
};

const GROUPS = 'request.userInfo.groups';

/**
 * Groups a user is assumed to have at most, for the cost bound: identity providers put at most a few
 * hundred in a token (Microsoft Entra ID: 200 in a JWT), and a user with more makes the group tests of
 * the expression cost more than {@link CelMeasure.cost} says.
 */
export const ASSUMED_MAX_GROUPS = 1000;

/** How tightly an operator binds: the text of a looser one inside a tighter one needs parentheses. */
const Binding = {
  Or: 1,
  And: 2,
  /** `==` and `in`: `!a == b` would read as `(!a) == b`. */
  Relation: 3,
  Unary: 4,
} as const;

type Binding = (typeof Binding)[keyof typeof Binding];

type Rendered = { readonly text: string; readonly binding: Binding };

/** A CEL string literal: single-quoted, with backslash, quote and control characters escaped. */
export function celString(value: string): string {
  let out = "'";
  for (const char of value) {
    const code = char.codePointAt(0) as number;
    if (char === '\\' || char === "'") out += `\\${char}`;
    else if (char === '\n') out += '\\n';
    else if (char === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += char;
  }
  return `${out}'`;
}

function list(values: readonly string[]): string {
  return `[${values.map(celString).join(', ')}]`;
}

/** `path` is one of `values` ("" not among them). */
function membership(path: string, values: readonly string[]): string {
  return values.length === 1 ? `${path} == ${celString(values[0] as string)}` : `${path} in ${list(values)}`;
}

function renderIn(field: Field, values: readonly string[]): Rendered {
  const { path, optional } = FIELDS[field];
  if (!optional) return { text: membership(path, values), binding: Binding.Relation };
  const present = values.filter((v) => v !== '');
  if (present.length === values.length) {
    return { text: `has(${path}) && ${membership(path, present)}`, binding: Binding.And };
  }
  // "" is among the values: an absent field is "".
  if (present.length === 0) return { text: `!has(${path})`, binding: Binding.Unary };
  return { text: `!has(${path}) || ${membership(path, present)}`, binding: Binding.Or };
}

function renderGroupsAny(values: readonly string[]): Rendered {
  const test =
    values.length === 1
      ? `${celString(values[0] as string)} in ${GROUPS}`
      : `${GROUPS}.exists(g, g in ${list(values)})`;
  return { text: `has(${GROUPS}) && ${test}`, binding: Binding.And };
}

/** The text of `r` where an operator binding as `binding` takes it as an operand. */
function operand(r: Rendered, binding: Binding): string {
  return r.binding < binding ? `(${r.text})` : r.text;
}

/** Widest single-line operand list before it is broken over lines, for a reader of the YAML. */
const LINE_WIDTH = 100;

function join(parts: readonly string[], op: string, indent: string): string {
  const flat = parts.join(` ${op} `);
  if (flat.length <= LINE_WIDTH && !flat.includes('\n')) return flat;
  return parts.join(`\n${indent}${op} `);
}

function render(condition: Condition, indent: string): Rendered {
  switch (condition.kind) {
    case 'true':
      return { text: 'true', binding: Binding.Unary };
    case 'false':
      return { text: 'false', binding: Binding.Unary };
    case 'in':
      return renderIn(condition.field, condition.values);
    case 'groupsAny':
      return renderGroupsAny(condition.values);
    case 'not': {
      const inner = render(condition.operand, `${indent}  `);
      return { text: `!${operand(inner, Binding.Unary)}`, binding: Binding.Unary };
    }
    case 'and':
    case 'or': {
      const binding = condition.kind === 'and' ? Binding.And : Binding.Or;
      const last = condition.operands.length - 1;
      // A last operand of the other kind continues the chain at this indentation: a policy's decision nests
      // to the right, one level per change between None and other rules, and indenting each level would
      // grow the text as the square of the rules.
      const chained = (o: Condition, i: number) => i === last && (o.kind === 'and' || o.kind === 'or');
      const rendered = condition.operands.map((o, i) => render(o, chained(o, i) ? indent : `${indent}  `));
      // CEL binds && tighter than ||, but a reader of a long expression should not have to know that.
      const spread = binding === Binding.Or && rendered.some((r) => r.text.includes('\n'));
      const parts = rendered.map((r) =>
        spread && r.binding === Binding.And ? `(${r.text})` : operand(r, binding),
      );
      return { text: join(parts, condition.kind === 'and' ? '&&' : '||', indent), binding };
    }
  }
}

/** Returns the CEL expression for `condition`, broken over indented lines where it is long. */
export function toCel(condition: Condition): string {
  return render(condition, '').text;
}

/** What a CEL expression costs the API server, as far as its limits go. */
export type CelMeasure = {
  /** Unicode code points of the text (the parser refuses more than 100,000). */
  readonly codePoints: number;
  /** Deepest nesting of parentheses, calls and list literals (the parser allows 250 of each kind). */
  readonly depth: number;
  /**
   * An upper bound of the runtime cost, in CEL's cost units, with every operand evaluated (no short cut)
   * and users in {@link ASSUMED_MAX_GROUPS} groups.
   */
  readonly cost: number;
};

/** Cost units of reading one field: each `.` is a select; `has()` costs nothing on the API server. */
function fieldCost(path: string): number {
  return path.split('.').length - 1;
}

function costOf(condition: Condition): number {
  switch (condition.kind) {
    case 'true':
    case 'false':
      return 0;
    case 'in':
      // Reading the field, then the literal and one comparison per value (before CEL's optimiser turns
      // constant lists into sets).
      return fieldCost(FIELDS[condition.field].path) + 2 * condition.values.length + 1;
    case 'groupsAny':
      return fieldCost(GROUPS) + ASSUMED_MAX_GROUPS * (2 * condition.values.length + 4) + 2;
    case 'not':
      return costOf(condition.operand) + 1;
    case 'and':
    case 'or':
      return condition.operands.reduce((sum, o) => sum + costOf(o) + 1, 0);
  }
}

/** Deepest nesting of brackets of any kind in `text`, outside string literals. */
function nesting(text: string): number {
  let depth = 0;
  let deepest = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char === '\\') i++;
      else if (char === "'") quoted = false;
    } else if (char === "'") quoted = true;
    else if (char === '(' || char === '[') deepest = Math.max(deepest, ++depth);
    else if (char === ')' || char === ']') depth--;
  }
  return deepest;
}

/** Measures the expression `toCel(condition)` rendered as `text`. */
export function measureCel(condition: Condition, text: string): CelMeasure {
  return { codePoints: [...text].length, depth: nesting(text), cost: costOf(condition) };
}
