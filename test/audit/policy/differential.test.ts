import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attributesFromAdmission } from '../../../src/audit/policy/attributes.ts';
import { createPolicyEvaluator } from '../../../src/audit/policy/evaluate.ts';
import { loadPolicy, loadPolicyFile } from '../../../src/audit/policy/load.ts';
import type { Policy, PolicyDecision } from '../../../src/audit/policy/types.ts';
import { createRng, fieldsOfReview, randomPolicyText, randomReview } from './generate.ts';
import {
  buildOracle,
  ORACLE_BUILD_TIMEOUT_MS,
  type OracleDecision,
  oracleCheck,
  oracleDecisions,
} from './oracle.ts';
import { INVALID_POLICIES, VALID_POLICIES } from './policy-texts.ts';

/** Seeds of the random policies: the run is reproducible, and a failure names the seed to replay. */
const FIRST_SEED = 20_261_205;
const POLICY_COUNT = 500;
const REVIEWS_PER_POLICY = 40;
/** Requests run through each fixture policy. */
const FIXTURE_REVIEW_COUNT = 4000;
/** Oracle processes at a time: the machine has two cores, shared. */
const CONCURRENCY = 2;
const FIXTURES = join(import.meta.dir, '..', '..', 'fixtures', 'policy');

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-policy-diff-'));
  await buildOracle();
}, ORACLE_BUILD_TIMEOUT_MS);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Case = { policyFile: string; policy: Policy; reviews: Record<string, unknown>[]; label: string };
type Mismatch = { label: string; review: unknown; ours: PolicyDecision; upstream: OracleDecision };

/** Ours, in the oracle's shape: omitStages sorted by name (upstream's order is a map's, so random). */
function comparable(decision: PolicyDecision): OracleDecision {
  return {
    level: decision.level,
    omitStages: [...decision.omitStages].sort(),
    omitManagedFields: decision.omitManagedFields,
  };
}

/** Evaluates every case both ways; returns our decisions and every disagreement. */
async function compare(cases: readonly Case[]) {
  const mismatches: Mismatch[] = [];
  const decisions: PolicyDecision[] = [];
  let next = 0;
  async function worker() {
    for (let i = next++; i < cases.length; i = next++) {
      const { policyFile, policy, reviews, label } = cases[i] as Case;
      const upstream = await oracleDecisions(
        policyFile,
        reviews.map((review) => JSON.stringify(review)),
      );
      const evaluate = createPolicyEvaluator(policy);
      reviews.forEach((review, j) => {
        const ours = evaluate(attributesFromAdmission(fieldsOfReview(review as { request: never })));
        decisions.push(ours);
        const theirs = upstream[j] as OracleDecision;
        if (!Bun.deepEquals(comparable(ours), theirs)) {
          mismatches.push({ label: `${label}, review ${j}`, review, ours, upstream: theirs });
        }
      });
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { mismatches, decisions };
}

function show(mismatches: readonly Mismatch[]): string {
  return mismatches
    .slice(0, 3)
    .map(
      (m) =>
        `${m.label}\n  ours ${JSON.stringify(comparable(m.ours))}\n  upstream ${JSON.stringify(m.upstream)}`,
    )
    .join('\n');
}

function fixtureReviews(seed: number) {
  const rng = createRng(seed);
  return Array.from({ length: FIXTURE_REVIEW_COUNT }, (_, i) => randomReview(rng, i));
}

describe('audit policy evaluation against k8s.io/apiserver v0.37.2', () => {
  it('decides as upstream for every pair of random policy and request', async () => {
    const cases: Case[] = [];
    for (let k = 0; k < POLICY_COUNT; k++) {
      const seed = FIRST_SEED + k;
      const rng = createRng(seed);
      const text = randomPolicyText(rng);
      const loaded = loadPolicy(text, `seed ${seed}`);
      if (!loaded.ok)
        throw new Error(`our loader refused the policy of seed ${seed}: ${loaded.errors.join('\n')}`);
      const policyFile = join(dir, `policy-${seed}.${text.startsWith('{') ? 'json' : 'yaml'}`);
      await Bun.write(policyFile, text);
      const reviews = Array.from({ length: REVIEWS_PER_POLICY }, (_, i) => randomReview(rng, i));
      cases.push({ policyFile, policy: loaded.policy, reviews, label: `policy seed ${seed}` });
    }
    const { mismatches, decisions } = await compare(cases);
    expect(decisions.length).toBe(POLICY_COUNT * REVIEWS_PER_POLICY);
    expect(show(mismatches)).toBe('');
    // The generator must exercise what it claims: every level, both omitManagedFields, omitted stages.
    const levels = new Map<string, number>();
    for (const d of decisions) levels.set(d.level, (levels.get(d.level) ?? 0) + 1);
    for (const level of ['None', 'Metadata', 'Request', 'RequestResponse']) {
      expect(levels.get(level) ?? 0).toBeGreaterThan(decisions.length / 20);
    }
    expect(decisions.filter((d) => d.omitManagedFields).length).toBeGreaterThan(decisions.length / 20);
    expect(decisions.filter((d) => d.omitStages.length > 0).length).toBeGreaterThan(decisions.length / 20);
  }, 120_000);

  for (const [file, what] of [
    ['kubernetes-docs-audit-policy.yaml', "the Kubernetes documentation's example policy"],
    ['falco-k8saudit-audit-policy.yaml', "the policy Falco's k8saudit plugin ships"],
  ] as const) {
    it(`decides as upstream for ${what}`, async () => {
      const policyFile = join(FIXTURES, file);
      const loaded = await loadPolicyFile(policyFile);
      if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
      const { mismatches, decisions } = await compare([
        { policyFile, policy: loaded.policy, reviews: fixtureReviews(FIRST_SEED), label: file },
      ]);
      expect(show(mismatches)).toBe('');
      expect(new Set(decisions.map((d) => d.level)).size).toBeGreaterThanOrEqual(3);
    }, 60_000);
  }
});

/** Reviews aimed at VALID_POLICIES' values (users, namespaces spelt like YAML 1.1 dates and times), plus random ones. */
function reviewsForValidPolicies() {
  const rng = createRng(FIRST_SEED);
  const reviews = Array.from({ length: 400 }, (_, i) => randomReview(rng, i));
  for (const namespace of ['2001-01-01', '1:20', 'shop', '']) {
    for (const username of ['alice', 'bob', 'carol']) {
      const review = randomReview(rng, reviews.length) as { request: Record<string, unknown> };
      review.request.namespace = namespace;
      review.request.userInfo = { username, groups: ['devs'] };
      reviews.push(review);
    }
  }
  return reviews;
}

describe('audit policy loading against k8s.io/apiserver v0.37.2', () => {
  for (const [name, text] of Object.entries(VALID_POLICIES)) {
    it(`reads the ${name} policy as upstream does: accepted strictly, and the same decisions`, async () => {
      const policyFile = join(dir, `valid-${name}.yaml`);
      await Bun.write(policyFile, text);
      expect(await oracleCheck(policyFile)).toEqual({ accepted: true, strict: true });
      const loaded = loadPolicy(text, policyFile);
      if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
      const { mismatches } = await compare([
        { policyFile, policy: loaded.policy, reviews: reviewsForValidPolicies(), label: name },
      ]);
      expect(show(mismatches)).toBe('');
    });
  }

  for (const invalid of INVALID_POLICIES) {
    const upstreamDoes = invalid.upstream === 'refuses' ? 'refuses it too' : 'only warns (we refuse)';
    it(`refuses ${invalid.name}, where upstream ${upstreamDoes}`, async () => {
      const policyFile = join(dir, 'invalid.yaml');
      await Bun.write(policyFile, invalid.text);
      expect(loadPolicy(invalid.text, policyFile).ok).toBe(false);
      const check = await oracleCheck(policyFile);
      if (invalid.upstream === 'refuses') expect(check).toMatchObject({ accepted: false });
      else expect(check).toEqual({ accepted: true, strict: false });
    });
  }
});
