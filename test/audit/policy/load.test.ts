import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, loadPolicyFile } from '../../../src/audit/policy/load.ts';
import type { Policy } from '../../../src/audit/policy/types.ts';
import { INVALID_POLICIES, VALID_POLICIES } from './policy-texts.ts';

const HEAD = 'apiVersion: audit.k8s.io/v1\nkind: Policy\n';

function loaded(text: string): Policy {
  const result = loadPolicy(text, 'p.yaml');
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.policy;
}

function errorsOf(text: string): string[] {
  const result = loadPolicy(text, 'p.yaml');
  if (result.ok) throw new Error('the policy was accepted');
  return result.errors;
}

describe('loadPolicy', () => {
  for (const invalid of INVALID_POLICIES) {
    it(`refuses ${invalid.name}, naming the place and field`, () => {
      expect(errorsOf(invalid.text)).toEqual([...invalid.errors]);
    });
  }

  it('reads every field of a policy, rule and group resources', () => {
    const policy = loaded(VALID_POLICIES.everyField);
    expect(policy).toEqual({
      omitStages: ['RequestReceived'],
      omitManagedFields: true,
      rules: [
        {
          level: 'RequestResponse',
          users: ['alice'],
          userGroups: ['devs'],
          verbs: ['create', 'update'],
          namespaces: ['', 'shop'],
          resources: [
            { group: 'apps', resources: ['deployments', '*/scale'], resourceNames: ['api'] },
            { group: '*', resources: [], resourceNames: [] },
          ],
          nonResourceURLs: [],
          omitStages: ['Panic', 'RequestReceived'],
          omitManagedFields: false,
        },
        {
          level: 'None',
          users: [],
          userGroups: [],
          verbs: [],
          namespaces: [],
          resources: [],
          nonResourceURLs: ['/healthz*'],
          omitStages: [],
          omitManagedFields: undefined,
        },
      ],
    });
  });

  it('returns a frozen policy, so no holder can change what another evaluates', () => {
    const policy = loaded(`${HEAD}rules:\n- level: None\n  resources: [{group: "", resources: [pods]}]\n`);
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.rules)).toBe(true);
    expect(Object.isFrozen(policy.rules[0])).toBe(true);
    expect(Object.isFrozen(policy.rules[0]?.resources[0]?.resources)).toBe(true);
  });

  it('reads null and empty lists as absent, as the API server does', () => {
    const policy = loaded(VALID_POLICIES.nulls);
    expect(policy.omitStages).toEqual([]);
    expect(policy.omitManagedFields).toBe(false);
    expect(policy.rules[0]?.users).toEqual([]);
    expect(policy.rules[0]?.verbs).toEqual([]);
    expect(policy.rules[0]?.resources[0]?.group).toBe('');
    expect(policy.rules[0]?.omitManagedFields).toBeUndefined();
  });

  it('reads YAML 1.1 as the API server does: yes is true, a date or 1:20 stays a string', () => {
    const policy = loaded(VALID_POLICIES.yaml11);
    expect(policy.omitManagedFields).toBe(true);
    expect(policy.rules[0]?.namespaces).toEqual(['2001-01-01', '1:20']);
    expect(policy.rules[0]?.omitManagedFields).toBe(false);
  });

  it('reads JSON, and follows YAML aliases', () => {
    const json = loaded(VALID_POLICIES.json);
    expect(json.rules.map((rule) => rule.level)).toEqual(['Metadata']);
    const aliased = loaded(VALID_POLICIES.aliases);
    expect(aliased.rules[1]?.users).toEqual(['alice', 'bob']);
  });

  it('refuses merge keys, which it cannot check field by field', () => {
    expect(errorsOf(`${HEAD}rules:\n- &base {level: None}\n- <<: *base\n  level: Metadata\n`)).toEqual([
      'p.yaml:5:3: rules[1]: merge keys (<<) are not supported: write the fields out',
    ]);
  });

  it('refuses an empty text and a second YAML document', () => {
    for (const text of ['', ' \n# nothing\n', '~\n']) {
      expect(errorsOf(text)).toEqual(['p.yaml: empty: a Policy needs apiVersion, kind and rules']);
    }
    expect(errorsOf(`${HEAD}rules: [{level: None}]\n---\n${HEAD}rules: [{level: Metadata}]\n`)).toEqual([
      'p.yaml:4:1: Source contains multiple documents; please use YAML.parseAllDocuments()',
    ]);
  });

  it('reports every problem at once, in the order of the text', () => {
    expect(
      errorsOf(
        `${HEAD}rules:\n- level: Everything\n  users: [alice]\n  verbz: [create]\n- level: None\n  omitStages: [Never]\n`,
      ),
    ).toEqual([
      `p.yaml:4:10: rules[0].level: "Everything" is not a level: one of None, Metadata, Request, RequestResponse`,
      'p.yaml:6:3: rules[0]: unknown field "verbz" (known: level, users, userGroups, verbs, resources, namespaces, nonResourceURLs, omitStages, omitManagedFields)',
      'p.yaml:8:16: rules[1].omitStages[0]: "Never" is not a stage: one of RequestReceived, ResponseStarted, ResponseComplete, Panic',
    ]);
  });
});

describe('loadPolicyFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kar-policy-load-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the file and names it in messages', async () => {
    const file = join(dir, 'policy.yaml');
    await Bun.write(file, `${HEAD}rules:\n- level: Loud\n`);
    expect(await loadPolicyFile(file)).toEqual({
      ok: false,
      errors: [
        `${file}:4:10: rules[0].level: "Loud" is not a level: one of None, Metadata, Request, RequestResponse`,
      ],
    });
    await Bun.write(file, `${HEAD}rules:\n- level: Metadata\n`);
    const result = await loadPolicyFile(file);
    expect(result.ok && result.policy.rules[0]?.level).toBe('Metadata');
  });

  it('says so when the file cannot be read', async () => {
    const file = join(dir, 'missing.yaml');
    const result = await loadPolicyFile(file);
    expect(result.ok).toBe(false);
    expect(
      !result.ok &&
        result.errors.length === 1 &&
        result.errors[0]?.startsWith(`${file}: cannot read the policy file: `),
    ).toBe(true);
  });
});
