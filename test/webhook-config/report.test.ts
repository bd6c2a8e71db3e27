import { describe, expect, it } from 'bun:test';
import { Registry } from 'prom-client';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import { createLogger } from '../../src/support/log.ts';
import { reportWebhookMatch } from '../../src/webhook-config/report.ts';

function policyOf(rules: string) {
  const loaded = loadPolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules}`, 'p');
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.policy;
}

function report(rules: string) {
  const lines: Record<string, unknown>[] = [];
  const registry = new Registry();
  const log = createLogger({ write: (text) => lines.push(JSON.parse(text)), component: 'webhook-config' });
  const exact = reportWebhookMatch(policyOf(rules), { registry, log });
  return { exact, lines, registry };
}

describe('reportWebhookMatch', () => {
  it('sets the gauge to 1 and logs info when the policy compiles exactly', async () => {
    const { exact, lines, registry } = report('  - level: None\n    users: [a]\n  - level: Metadata\n');
    expect(exact).toBe(true);
    expect(await registry.metrics()).toContain('kube_audit_rest_webhook_config_exact 1');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'info', rules: 1, matchConditions: 1 });
  });

  it('sets the gauge to 0 and warns with the reasons when the conditions fall back to the rules', async () => {
    const rules = Array.from(
      { length: 120 },
      (_, i) => `  - level: Metadata\n    namespaces: [ns-${i}]\n  - level: None\n    userGroups: [devs]\n`,
    ).join('');
    const { exact, lines, registry } = report(rules);
    expect(exact).toBe(false);
    expect(await registry.metrics()).toContain('kube_audit_rest_webhook_config_exact 0');
    expect(lines[0]).toMatchObject({ level: 'warn' });
    expect(JSON.stringify(lines[0]?.reasons)).toMatch(/nests \d+ deep/);
  });
});
