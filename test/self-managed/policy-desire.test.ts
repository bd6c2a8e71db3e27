import { describe, expect, it } from 'bun:test';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import { policyMatchDesire } from '../../src/self-managed/policy-desire.ts';
import { compileMatch } from '../../src/webhook-config/compile.ts';

function compiled(text: string) {
  const loaded = loadPolicy(text, 'policy.yaml');
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  const result = compileMatch(loaded.policy);
  if (result.kind !== 'match') throw new Error('the policy records nothing');
  return result.match;
}

const POLICY =
  'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  namespaces: [quiet]\n- level: Metadata\n';

describe('policyMatchDesire', () => {
  it('asks for the compiled rules and conditions on every webhook, and nothing once they are there', () => {
    const match = compiled(POLICY);
    const desire = policyMatchDesire(match);
    const current = { metadata: { name: 'w' }, webhooks: [{ name: 'a', rules: [] }, { name: 'b' }] };
    const ops = desire(current);
    expect(ops.map((o) => `${o.op} ${o.path}`)).toEqual([
      'add /webhooks/0/rules',
      'add /webhooks/0/matchConditions',
      'add /webhooks/1/rules',
      'add /webhooks/1/matchConditions',
    ]);
    const done = {
      metadata: { name: 'w' },
      webhooks: [{ name: 'a', rules: match.rules, matchConditions: match.matchConditions }],
    };
    expect(desire(JSON.parse(JSON.stringify(done)))).toEqual([]);
  });

  it('removes match conditions a policy without any does not want', () => {
    const match = compiled('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n');
    expect(match.matchConditions).toEqual([]);
    const desire = policyMatchDesire(match);
    const ops = desire({
      metadata: { name: 'w' },
      webhooks: [{ name: 'a', rules: match.rules, matchConditions: [{ name: 'x', expression: 'true' }] }],
    });
    expect(ops).toEqual([{ op: 'remove', path: '/webhooks/0/matchConditions' }]);
  });
});
