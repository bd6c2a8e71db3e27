import { describe, expect, it } from 'bun:test';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import { ASSUMED_MAX_GROUPS, celString, measureCel, toCel } from '../../src/webhook-config/cel.ts';
import { and, fieldIn, groupsAny, not, or } from '../../src/webhook-config/condition.ts';
import { recordsCondition } from '../../src/webhook-config/decision.ts';
import { createRng, randomPolicyText } from '../audit/policy/generate.ts';

/** The fields the API server may leave out of `request`, and their CEL paths. */
const OPTIONAL: readonly string[] = [
  'request.userInfo.username',
  'request.namespace',
  'request.name',
  'request.requestSubResource',
  'request.userInfo.groups',
];

describe('celString', () => {
  it('quotes with single quotes and escapes what CEL needs escaped', () => {
    expect(celString('pods')).toBe("'pods'");
    expect(celString("it's")).toBe("'it\\'s'");
    expect(celString('a\\b')).toBe("'a\\\\b'");
    expect(celString('a\nb\tc\u0001')).toBe("'a\\nb\\tc\\u0001'");
    expect(celString('é€😀')).toBe("'é€😀'");
  });
});

describe('toCel', () => {
  it('reads a field the API server always sends directly, and compares one value with ==', () => {
    expect(toCel(fieldIn('operation', ['CREATE']))).toBe("request.operation == 'CREATE'");
    expect(toCel(fieldIn('apiGroup', ['', 'apps']))).toBe("request.requestResource.group in ['', 'apps']");
  });

  it('reads an optional field only behind has(), an absent field counting as ""', () => {
    expect(toCel(fieldIn('namespace', ['a', 'b']))).toBe(
      "has(request.namespace) && request.namespace in ['a', 'b']",
    );
    expect(toCel(fieldIn('namespace', ['', 'a']))).toBe(
      "!has(request.namespace) || request.namespace == 'a'",
    );
    expect(toCel(fieldIn('subresource', ['']))).toBe('!has(request.requestSubResource)');
    expect(toCel(groupsAny(['ops']))).toBe(
      "has(request.userInfo.groups) && 'ops' in request.userInfo.groups",
    );
    expect(toCel(groupsAny(['ops', 'devs']))).toBe(
      "has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ['devs', 'ops'])",
    );
  });

  it('puts parentheses where CEL would otherwise group differently', () => {
    // ! binds tighter than ==, && tighter than ||.
    expect(toCel(not(fieldIn('operation', ['UPDATE'])))).toBe("!(request.operation == 'UPDATE')");
    expect(toCel(not(fieldIn('subresource', [''])))).toBe('!!has(request.requestSubResource)');
    expect(toCel(and(fieldIn('name', ['', 'x']), fieldIn('operation', ['DELETE'])))).toBe(
      "(!has(request.name) || request.name == 'x') && request.operation == 'DELETE'",
    );
    expect(toCel(or(fieldIn('operation', ['DELETE']), fieldIn('name', ['x'])))).toBe(
      "request.operation == 'DELETE' || has(request.name) && request.name == 'x'",
    );
  });

  it('never reads an optional field outside has() nor without a has() guard just before, for random policies', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const loaded = loadPolicy(randomPolicyText(createRng(seed)), `seed ${seed}`);
      if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
      const text = toCel(recordsCondition(loaded.policy));
      for (const path of OPTIONAL) {
        for (let at = text.indexOf(path); at >= 0; at = text.indexOf(path, at + 1)) {
          if (/\w/.test(text[at + path.length] ?? '')) continue; // request.name in request.namespace
          const before = text.slice(0, at);
          const guarded =
            before.endsWith('has(') ||
            before.endsWith(`has(${path}) && `) ||
            before.endsWith(`has(${path}) || `) ||
            (path === 'request.userInfo.groups' &&
              /has\(request\.userInfo\.groups\) && '(?:[^'\\]|\\.)*' in $/.test(before));
          if (!guarded) throw new Error(`seed ${seed}: ${path} unguarded at ${at} in:\n${text}`);
        }
      }
    }
  });
});

describe('measureCel', () => {
  it('counts code points, the deepest brackets outside strings, and a cost bound', () => {
    const condition = and(not(fieldIn('name', ['(((('])), fieldIn('resource', ['pods']));
    const text = toCel(condition);
    const measure = measureCel(condition, text);
    expect(measure.codePoints).toBe([...text].length);
    expect(measure.depth).toBe(2); // !( ... has( ... ) ... ); the quoted brackets do not count
    expect(measure.cost).toBeGreaterThan(0);
  });

  it('charges the group tests for a user in ASSUMED_MAX_GROUPS groups', () => {
    const one = measureCel(groupsAny(['a']), '').cost;
    const two = measureCel(groupsAny(['a', 'b']), '').cost;
    expect(two - one).toBe(2 * ASSUMED_MAX_GROUPS);
  });

  it('grows linearly with the rules of a policy that alternates None and other levels', () => {
    const sizes = [20, 40].map((pairs) => {
      const rules = Array.from(
        { length: pairs },
        (_, i) => `  - level: Metadata\n    users: [u${i}]\n  - level: None\n    namespaces: [n${i}]`,
      );
      const loaded = loadPolicy(
        `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules.join('\n')}\n`,
        'p',
      );
      if (!loaded.ok) throw new Error(loaded.errors.join());
      const condition = recordsCondition(loaded.policy);
      return measureCel(condition, toCel(condition));
    });
    const [small, large] = sizes as [ReturnType<typeof measureCel>, ReturnType<typeof measureCel>];
    expect(large.codePoints / small.codePoints).toBeLessThan(2.2);
    expect(large.depth - small.depth).toBeLessThanOrEqual(2 * 20 + 1);
  });
});
