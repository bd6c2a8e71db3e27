import { describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attributesFromAdmission } from '../../src/audit/policy/attributes.ts';
import { createPolicyEvaluator } from '../../src/audit/policy/evaluate.ts';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import type { AdmissionFields, Policy } from '../../src/audit/policy/types.ts';
import { compileMatch, matchConditionOf } from '../../src/webhook-config/compile.ts';
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
