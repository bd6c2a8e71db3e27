/**
 * @module test/monitoring/alerts — the alerts of k8s/monitoring/prometheus-rule.yaml under promtool: they
 * parse, each fires and stays quiet where alerts.test.yaml says, each links to its entry in
 * docs/operations.md, and the Helm chart renders the same rules for its release.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultBinDir } from '../../testing/control-plane.ts';
import {
  type AlertRule,
  alertRules,
  REPO,
  type RuleGroups,
  readRuleGroups,
  runPromtool,
  writeRulesFile,
} from './monitoring-files.ts';

const UNIT_TESTS = join(import.meta.dir, 'alerts.test.yaml');
const OPERATIONS_DOC = join(REPO, 'docs', 'operations.md');
const CHART = join(REPO, 'k8s', 'chart', 'kube-audit-rest');
const HELM = join(defaultBinDir, 'helm');
/** helm template takes a second or two; this only stops a hang. */
const HELM_TIMEOUT_MS = 60_000;

type AlertCase = { alertname: string; eval_time: string; exp_alerts?: unknown[] };
type UnitTests = { rule_files: string[]; tests: { name: string; alert_rule_test?: AlertCase[] }[] };

let dir: string;
let groups: RuleGroups;

/** Runs `promtool test rules` on alerts.test.yaml against `rules`, both copied into a fresh folder. */
async function testRules(rules: RuleGroups, name: string) {
  const folder = join(dir, name);
  mkdirSync(folder);
  writeRulesFile(join(folder, 'rules.yaml'), rules);
  copyFileSync(UNIT_TESTS, join(folder, 'alerts.test.yaml'));
  return runPromtool(['test', 'rules', 'alerts.test.yaml'], folder);
}

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replace(/ /g, '-');
}

/** helm template of the chart with the monitoring objects on; resolves the PrometheusRule's spec. */
async function chartRules(release: string, namespace: string, ...sets: string[]): Promise<RuleGroups> {
  const home = join(dir, 'helm');
  const proc = Bun.spawn(
    [
      HELM,
      'template',
      release,
      CHART,
      `--namespace=${namespace}`,
      '--set=prometheusRule.enabled=true',
      ...sets.map((s) => `--set=${s}`),
    ],
    {
      stdout: 'pipe',
      stderr: 'pipe',
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(home, 'cache'),
        HELM_CONFIG_HOME: join(home, 'config'),
        HELM_DATA_HOME: join(home, 'data'),
      },
      timeout: HELM_TIMEOUT_MS,
    },
  );
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`helm template failed: ${stderr}`);
  const docs = Bun.YAML.parse(stdout) as { kind: string; spec: RuleGroups }[];
  const rule = docs.find((d) => d?.kind === 'PrometheusRule');
  if (rule === undefined) throw new Error('the chart rendered no PrometheusRule');
  return rule.spec;
}

/** The rule named `alert`; throws when there is none. */
function rule(rules: readonly AlertRule[], alert: string): AlertRule {
  const found = rules.find((r) => r.alert === alert);
  if (found === undefined) throw new Error(`no alert ${alert}`);
  return found;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kar-alerts-'));
  groups = await readRuleGroups();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('kube-audit-rest alerts (PrometheusRule)', () => {
  it('has the alerts docs/operations.md explains, each with a severity, a summary and a runbook link', () => {
    const rules = alertRules(groups);
    expect(rules.map((r) => r.alert)).toEqual([
      'KubeAuditRestWebhookFailingOpen',
      'KubeAuditRestAuditStreamStopped',
      'KubeAuditRestNoAuditLines',
      'KubeAuditRestWriteFailures',
      'KubeAuditRestUnrecordedRequests',
      'KubeAuditRestRequestsDenied',
      'KubeAuditRestSinkNotReady',
      'KubeAuditRestCertificateExpiresSoon',
      'KubeAuditRestCertificateReloadFailing',
      'KubeAuditRestTLSHandshakeFailures',
      'KubeAuditRestSlowAnswers',
      'KubeAuditRestReplicasUnavailable',
      'KubeAuditRestDown',
    ]);
    for (const r of rules) {
      expect([r.alert, r.labels.severity]).toEqual([r.alert, expect.stringMatching(/^(critical|warning)$/)]);
      expect(r.annotations.summary?.length).toBeGreaterThan(10);
      expect(r.annotations.runbook_url).toEndWith(`/docs/operations.md#${r.alert.toLowerCase()}`);
    }
  });

  it('passes promtool check rules', async () => {
    writeRulesFile(join(dir, 'check.yaml'), groups);
    const result = await runPromtool(['check', 'rules', 'check.yaml'], dir);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`SUCCESS: ${alertRules(groups).length} rules found`);
    expect(result.code).toBe(0);
  });

  it('fires and stays quiet exactly where alerts.test.yaml expects, under promtool test rules', async () => {
    const result = await testRules(groups, 'real');
    expect({ code: result.code, out: result.stdout + result.stderr }).toEqual({
      code: 0,
      out: expect.stringContaining('SUCCESS'),
    });
  });

  it('has a firing case and a quiet case in alerts.test.yaml for every alert', async () => {
    const unit = Bun.YAML.parse(await Bun.file(UNIT_TESTS).text()) as UnitTests;
    expect(unit.rule_files).toEqual(['rules.yaml']);
    const cases = unit.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of alertRules(groups)) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect({ alert, fires: mine.some((c) => (c.exp_alerts ?? []).length > 0) }).toEqual({
        alert,
        fires: true,
      });
      expect({ alert, quiet: mine.some((c) => (c.exp_alerts ?? []).length === 0) }).toEqual({
        alert,
        quiet: true,
      });
    }
  });

  it('fails the firing case of every alert when its expression never matches', async () => {
    // Proves the unit tests look at each alert: with every expression replaced by one that returns
    // nothing, promtool must report each alert's firing case as failed.
    const silenced: RuleGroups = {
      groups: groups.groups.map((g) => ({
        ...g,
        rules: g.rules.map((r) => ({ ...r, expr: 'vector(1) < 0' })),
      })),
    };
    const result = await testRules(silenced, 'silenced');
    expect(result.code).not.toBe(0);
    for (const { alert } of alertRules(groups))
      expect(result.stdout + result.stderr).toContain(`alertname: ${alert},`);
  });

  it('links every alert to a heading of docs/operations.md', async () => {
    const doc = await Bun.file(OPERATIONS_DOC).text();
    const anchors = new Set([...doc.matchAll(/^#{2,4} (.+)$/gm)].map((m) => anchor(m[1] ?? '')));
    const missing = alertRules(groups)
      .map((r) => r.annotations.runbook_url?.split('#')[1] ?? r.alert)
      .filter((a) => !anchors.has(a));
    expect(missing).toEqual([]);
  });
});

describe('the chart’s PrometheusRule', () => {
  it('renders the same rules as k8s/monitoring for release kube-audit-rest in namespace kube-audit-rest', async () => {
    expect(await chartRules('kube-audit-rest', 'kube-audit-rest')).toEqual(groups);
  });

  it('selects its own release’s series and halves its own timeout when the release, namespace and timeout differ', async () => {
    const spec = await chartRules('audit', 'ops', 'webhook.timeoutSeconds=10');
    const rules = alertRules(spec);
    expect(rule(rules, 'KubeAuditRestWebhookFailingOpen').expr).toContain(
      'name="audit-kube-audit-rest.ops.svc"',
    );
    expect(rule(rules, 'KubeAuditRestWriteFailures').expr).toContain(
      'job="audit-kube-audit-rest", namespace="ops"',
    );
    expect(rule(rules, 'KubeAuditRestDown').expr).toContain(
      'namespace="ops", deployment="audit-kube-audit-rest"',
    );
    expect(rule(rules, 'KubeAuditRestSlowAnswers').expr).toMatch(/\) > 5\n$/);
    expect(JSON.stringify(spec)).not.toContain('"kube-audit-rest.kube-audit-rest.svc"');
    writeRulesFile(join(dir, 'chart.yaml'), spec);
    const result = await runPromtool(['check', 'rules', 'chart.yaml'], dir);
    expect(result.code).toBe(0);
  });
});
