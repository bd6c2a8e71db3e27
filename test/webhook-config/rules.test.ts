import { describe, expect, it } from 'bun:test';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import type { Policy } from '../../src/audit/policy/types.ts';
import { webhookRules } from '../../src/webhook-config/rules.ts';
import { createRng, randomPolicyText } from '../audit/policy/generate.ts';

function policy(rules: string): Policy {
  const loaded = loadPolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules}`, 'test');
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.policy;
}

/**
 * What the API server refuses in a webhook rule's resources (k8s.io/kubernetes v1.37.2,
 * pkg/apis/admissionregistration/validation validateResources), as messages; empty when valid.
 */
function resourceProblems(resources: readonly string[]): string[] {
  const problems: string[] = [];
  if (resources.length === 0) problems.push('required');
  const wildSub = new Set<string>();
  const wildRes = new Set<string>();
  let doubleWild = false;
  let singleWild = false;
  let plain = false;
  for (const entry of resources) {
    if (entry === '') problems.push('empty entry');
    if (entry === '*/*') doubleWild = true;
    if (entry === '*') singleWild = true;
    const slash = entry.indexOf('/');
    if (slash < 0) {
      plain = entry !== '*';
      continue;
    }
    const [res, sub] = [entry.slice(0, slash), entry.slice(slash + 1)];
    if (wildSub.has(res)) problems.push(`${res}/* and ${entry}`);
    if (wildRes.has(sub)) problems.push(`*/${sub} and ${entry}`);
    if (sub === '*') wildSub.add(res);
    if (res === '*') wildRes.add(sub);
  }
  if (resources.length > 1 && doubleWild) problems.push('*/* with others');
  if (singleWild && plain) problems.push('* with plain resources');
  return problems;
}

describe('webhookRules', () => {
  it('selects the operations and resources of the rules above None, and nothing for None rules', () => {
    const rules = webhookRules(
      policy(`  - level: None
    resources: [{ group: "", resources: [events] }]
  - level: Metadata
    verbs: [create, delete, get]
    resources: [{ group: "", resources: [pods, "pods/*", secrets] }, { group: apps, resources: ["*/scale"] }]
  - level: Request
    verbs: [update]
    resources: [{ group: "", resources: [configmaps] }]
  - level: Metadata
    nonResourceURLs: ["/healthz"]
`),
    );
    expect(rules).toEqual([
      {
        operations: ['CREATE', 'DELETE', 'CONNECT'],
        apiGroups: [''],
        apiVersions: ['*'],
        resources: ['pods/*', 'secrets'],
        scope: '*',
      },
      {
        operations: ['CREATE', 'DELETE', 'CONNECT'],
        apiGroups: ['apps'],
        apiVersions: ['*'],
        resources: ['*/scale'],
        scope: '*',
      },
      { operations: ['UPDATE'], apiGroups: [''], apiVersions: ['*'], resources: ['configmaps'], scope: '*' },
    ]);
  });

  it('selects everything once a rule above None selects everything, and shares rules between groups', () => {
    expect(
      webhookRules(policy('  - level: None\n    users: [a]\n  - level: Metadata\n    namespaces: [x]\n')),
    ).toEqual([{ operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*/*'], scope: '*' }]);
    expect(
      webhookRules(
        policy(
          '  - level: Metadata\n    resources: [{ group: apps, resources: [x] }, { group: batch, resources: [x] }]\n',
        ),
      ),
    ).toEqual([
      { operations: ['*'], apiGroups: ['apps', 'batch'], apiVersions: ['*'], resources: ['x'], scope: '*' },
    ]);
  });

  it('drops from a group what the rules for every group already select', () => {
    expect(
      webhookRules(
        policy(`  - level: Metadata
    resources: [{ group: "*", resources: ["*/status"] }, { group: apps, resources: [deployments, deployments/status] }]
`),
      ),
    ).toEqual([
      { operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*/status'], scope: '*' },
      { operations: ['*'], apiGroups: ['apps'], apiVersions: ['*'], resources: ['deployments'], scope: '*' },
    ]);
  });

  it('writes only rules the API server accepts, for random policies', () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const loaded = loadPolicy(randomPolicyText(createRng(seed)), `seed ${seed}`);
      if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
      for (const rule of webhookRules(loaded.policy)) {
        const problems = [
          ...resourceProblems(rule.resources),
          ...(rule.apiGroups.length > 1 && rule.apiGroups.includes('*') ? ['* with other groups'] : []),
          ...(rule.operations.length === 0 ? ['no operations'] : []),
          ...(rule.operations.length > 1 && rule.operations.includes('*') ? ['* with other operations'] : []),
        ];
        if (problems.length > 0)
          throw new Error(`seed ${seed}: ${JSON.stringify(rule)}: ${problems.join('; ')}`);
      }
    }
  });
});
