import { describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attributesFromAdmission } from '../../src/audit/policy/attributes.ts';
import { createPolicyEvaluator } from '../../src/audit/policy/evaluate.ts';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import type { AdmissionFields, Policy } from '../../src/audit/policy/types.ts';
import {
  compileMatch,
  compileWebhookConfiguration,
  matchConditionOf,
} from '../../src/webhook-config/compile.ts';
import {
  createRng,
  fieldsOfReview,
  type Rng,
  randomPolicyText,
  randomReview,
} from '../audit/policy/generate.ts';
import { holds, rulesSelect } from './reference.ts';

/** Seeds of the random policies: reproducible, and a failure names the seed. */
const FIRST_SEED = 20_261_212;
const POLICY_COUNT = 3000;
const REVIEWS_PER_POLICY = 150;
const FIXTURES = join(import.meta.dir, '..', 'fixtures', 'policy');

function policyOf(text: string): Policy {
  const loaded = loadPolicy(text, 'test');
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.policy;
}

/** A random review as the API server sends one today: requestResource always there. */
function randomRequest(rng: Rng, uid: number): AdmissionFields {
  const review = randomReview(rng, uid) as { request: Record<string, unknown> };
  const request = review.request;
  if (request.requestResource === undefined) {
    request.requestResource = request.resource;
    if (request.subResource !== undefined) request.requestSubResource = request.subResource;
  }
  return fieldsOfReview(review);
}

/** Every request where "the API server calls the webhook" and "the policy records it" disagree. */
function disagreements(policy: Policy, requests: readonly AdmissionFields[]) {
  const evaluate = createPolicyEvaluator(policy);
  const compiled = compileMatch(policy);
  const condition = matchConditionOf(policy);
  const found: { request: AdmissionFields; records: boolean; called: boolean }[] = [];
  for (const request of requests) {
    const records = evaluate(attributesFromAdmission(request)).level !== 'None';
    const called =
      compiled.kind === 'match' && rulesSelect(compiled.match.rules, request) && holds(condition, request);
    if (records !== called) found.push({ request, records, called });
  }
  return found;
}

describe('compileMatch', () => {
  it('calls for exactly what each of thousands of random policies records, on random requests', () => {
    let requestsSeen = 0;
    let recorded = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + POLICY_COUNT; seed++) {
      const rng = createRng(seed);
      const policy = policyOf(randomPolicyText(rng));
      const requests = Array.from({ length: REVIEWS_PER_POLICY }, (_, i) => randomRequest(rng, i));
      const found = disagreements(policy, requests);
      if (found.length > 0) {
        throw new Error(`seed ${seed}: ${found.length} disagreements, first ${JSON.stringify(found[0])}`);
      }
      requestsSeen += requests.length;
      const evaluate = createPolicyEvaluator(policy);
      recorded += requests.filter((r) => evaluate(attributesFromAdmission(r)).level !== 'None').length;
    }
    // The random policies record a fair share, so both outcomes were tested many times.
    expect(recorded).toBeGreaterThan(requestsSeen * 0.2);
    expect(recorded).toBeLessThan(requestsSeen * 0.8);
  });

  it('is exact for the policies of the Kubernetes documentation and of Falco', () => {
    const rng = createRng(FIRST_SEED);
    const requests = Array.from({ length: 20_000 }, (_, i) => randomRequest(rng, i));
    for (const file of ['kubernetes-docs-audit-policy.yaml', 'falco-k8saudit-audit-policy.yaml']) {
      const policy = policyOf(readFileSync(join(FIXTURES, file), 'utf8'));
      expect(disagreements(policy, requests)).toEqual([]);
      const compiled = compileMatch(policy);
      expect(compiled.kind === 'match' && compiled.match.fallback).toEqual([]);
    }
  });
});

describe('compileMatch, at the limits', () => {
  it('gives each leading None rule a condition of its own, and the rest of the policy one', () => {
    const compiled = compileMatch(
      policyOf(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{ group: coordination.k8s.io, resources: [leases] }]
  - level: None
    verbs: [get, watch]
  - level: None
    resources: [{ group: "", resources: [events] }]
  - level: Metadata
    resources: [{ group: "", resources: [secrets] }]
  - level: None
    users: [noisy]
  - level: Request
`),
    );
    expect(compiled.kind === 'match' && compiled.match.matchConditions.map((c) => c.name)).toEqual([
      'not-rule-0',
      'not-rule-2', // rule 1 can never match a request admission sees
      'rules-3-on-record',
    ]);
  });

  it('says a policy records nothing when no rule above None can match an admission request', () => {
    for (const rules of [
      '  - level: None\n',
      '  - level: None\n    users: [a]\n  - level: None\n',
      '  - level: Metadata\n    verbs: [get, list, watch, patch]\n',
      '  - level: Metadata\n    nonResourceURLs: ["/api*"]\n',
      '  - level: None\n  - level: Metadata\n',
    ]) {
      expect(compileMatch(policyOf(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules}`)).kind).toBe(
        'nothing',
      );
    }
  });

  it('keeps the rules and drops the conditions when they would nest too deep, calling for more, never less', () => {
    const rules = Array.from(
      { length: 120 },
      (_, i) =>
        `  - level: Metadata\n    users: [alice@example.com]\n    namespaces: [ns-${i}]\n  - level: None\n    userGroups: [devs]`,
    );
    const policy = policyOf(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules.join('\n')}\n`);
    const compiled = compileMatch(policy);
    if (compiled.kind !== 'match') throw new Error('nothing');
    expect(compiled.match.matchConditions).toEqual([]);
    expect(compiled.match.fallback.join()).toMatch(/nests \d+ deep/);
    const evaluate = createPolicyEvaluator(policy);
    const rng = createRng(FIRST_SEED);
    for (let i = 0; i < 5000; i++) {
      const request = randomRequest(rng, i);
      if (evaluate(attributesFromAdmission(request)).level !== 'None')
        expect(rulesSelect(compiled.match.rules, request)).toBe(true);
    }
  });

  it('drops the conditions when their cost bound passes the API server limit for users in many groups', () => {
    const groups = (i: number) => Array.from({ length: 30 }, (_, j) => `g-${i}-${j}`).join(', ');
    const rules = (level: string) =>
      Array.from({ length: 20 }, (_, i) => `  - level: ${level}\n    userGroups: [${groups(i)}]`).join('\n');
    // Leading None rules are conditions of their own, each with its own per-expression limit...
    const split = compileMatch(
      policyOf(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules('None')}\n  - level: Metadata\n`),
    );
    expect(split.kind === 'match' && split.match.fallback).toEqual([]);
    // ... but after a first rule above None they share one expression, and its limit.
    const joined = compileMatch(
      policyOf(
        `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n    users: [x]\n${rules('None')}\n  - level: Metadata\n`,
      ),
    );
    if (joined.kind !== 'match') throw new Error('nothing');
    expect(joined.match.fallback.join()).toMatch(/may cost \d+ units for a user in 1000 groups/);
    expect(joined.match.matchConditions).toEqual([]);
    expect(joined.match.rules).toHaveLength(1);
  });
});

describe('compileWebhookConfiguration', () => {
  const policy = () =>
    policyOf(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{ group: "", resources: [events] }]
  - level: Metadata
`);

  it('makes one webhook for a Service, with the defaults of k8s/base/webhook.yaml', () => {
    const result = compileWebhookConfiguration(policy(), {
      target: { service: { name: 'kar', namespace: 'audit', path: '/log-request', port: 443 } },
    });
    if (result.kind !== 'configuration') throw new Error('nothing');
    const [webhook] = result.configuration.webhooks;
    expect(result.configuration.metadata).toEqual({
      name: 'kube-audit-rest',
      labels: { 'app.kubernetes.io/name': 'kube-audit-rest' },
    });
    expect(webhook).toMatchObject({
      name: 'kar.audit.svc',
      admissionReviewVersions: ['v1', 'v1beta1'],
      clientConfig: { service: { name: 'kar', namespace: 'audit', path: '/log-request', port: 443 } },
      rules: [{ operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*/*'], scope: '*' }],
      failurePolicy: 'Ignore',
      matchPolicy: 'Equivalent',
      sideEffects: 'None',
      timeoutSeconds: 5,
    });
    expect(webhook.matchConditions?.map((c) => c.name)).toEqual(['not-rule-0']);
  });

  it('takes a URL, a CA bundle, names, the failure policy, timeout, match policy and annotations', () => {
    const result = compileWebhookConfiguration(policy(), {
      target: { url: 'https://audit.example.com/log-request' },
      caBundle: 'Q0E=',
      name: 'audit',
      webhookName: 'audit.example.com',
      failurePolicy: 'Fail',
      timeoutSeconds: 3,
      matchPolicy: 'Exact',
      admissionReviewVersions: ['v1'],
      annotations: { a: 'b' },
    });
    if (result.kind !== 'configuration') throw new Error('nothing');
    expect(result.configuration.metadata.annotations).toEqual({ a: 'b' });
    expect(result.configuration.webhooks[0]).toMatchObject({
      name: 'audit.example.com',
      admissionReviewVersions: ['v1'],
      clientConfig: { url: 'https://audit.example.com/log-request', caBundle: 'Q0E=' },
      failurePolicy: 'Fail',
      matchPolicy: 'Exact',
      timeoutSeconds: 3,
    });
    expect(
      compileWebhookConfiguration(
        policyOf('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n'),
        {
          target: { url: 'https://x.example/' },
        },
      ).kind,
    ).toBe('nothing');
  });
});
