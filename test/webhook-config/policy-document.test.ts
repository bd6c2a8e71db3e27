import { describe, expect, it } from 'bun:test';
import { createHash } from 'node:crypto';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import { goJson, policyDigest, policyDocument } from '../../src/webhook-config/policy-document.ts';
import { createRng, randomPolicyText } from '../audit/policy/generate.ts';

describe('policyDocument', () => {
  it('loads back as the same policy, for random policies', () => {
    for (let seed = 1; seed <= 1000; seed++) {
      const loaded = loadPolicy(randomPolicyText(createRng(seed)), `seed ${seed}`);
      if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
      const again = loadPolicy(JSON.stringify(policyDocument(loaded.policy)), `seed ${seed} again`);
      expect(again).toEqual(loaded);
    }
  });
});

describe('goJson', () => {
  it("writes what Go's json.Marshal writes: sorted keys, no spaces, HTML characters escaped", () => {
    expect(goJson({ b: [true, 'x'], a: { d: '', c: false } })).toBe(
      '{"a":{"c":false,"d":""},"b":[true,"x"]}',
    );
    expect(goJson('<a href="x">&\u2028\u2029</a>')).toBe(
      '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u2028\\u2029\\u003c/a\\u003e"',
    );
    expect(goJson('\b\f\n\r\t\u0001\\é😀')).toBe('"\\b\\f\\n\\r\\t\\u0001\\\\é😀"');
    // Keys by their UTF-8 bytes: U+FF5E sorts before U+1F600 in UTF-8, after it in UTF-16.
    expect(goJson({ '😀': 'b', '～': 'a' })).toBe('{"～":"a","😀":"b"}');
  });
});

describe('policyDigest', () => {
  it('is the SHA-256 of the Go JSON of the document', () => {
    const loaded = loadPolicy(
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n',
      'p',
    );
    if (!loaded.ok) throw new Error('unexpected');
    const json = '{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata"}]}';
    expect(goJson(policyDocument(loaded.policy))).toBe(json);
    expect(policyDigest(loaded.policy)).toBe(createHash('sha256').update(json).digest('hex'));
  });
});
