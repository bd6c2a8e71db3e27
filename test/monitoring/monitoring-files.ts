/**
 * @module test/monitoring/monitoring-files — reads the shipped monitoring objects (the PrometheusRule and
 * the Grafana dashboard of k8s/monitoring) and runs promtool, for the monitoring tests.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root. */
export const REPO = resolve(import.meta.dir, '..', '..');
/** The kustomize PrometheusRule, the source of truth the chart's template is compared with. */
export const RULE_FILE = join(REPO, 'k8s', 'monitoring', 'prometheus-rule.yaml');
/** The kustomize copy of the dashboard; the chart carries the same bytes. */
export const DASHBOARD_FILE = join(REPO, 'k8s', 'monitoring', 'dashboard.json');
/** The chart's copy of the dashboard. */
export const CHART_DASHBOARD_FILE = join(
  REPO,
  'k8s',
  'chart',
  'kube-audit-rest',
  'dashboards',
  'kube-audit-rest.json',
);
/** promtool checks a rules file in well under a second; this only stops a hang. */
const PROMTOOL_TIMEOUT_MS = 60_000;

/** One alerting rule of a PrometheusRule. */
export type AlertRule = {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
};
/** The rule groups a PrometheusRule carries in its spec, in the shape of a Prometheus rules file. */
export type RuleGroups = { groups: { name: string; rules: AlertRule[] }[] };

/** Reads the PrometheusRule's spec: its rule groups. */
export async function readRuleGroups(path = RULE_FILE): Promise<RuleGroups> {
  const object = Bun.YAML.parse(await Bun.file(path).text()) as { spec: RuleGroups };
  return object.spec;
}

/** Every alerting rule of the groups, in order. */
export function alertRules(groups: RuleGroups): AlertRule[] {
  return groups.groups.flatMap((g) => g.rules);
}

/** One query of a dashboard panel or template variable, with where it comes from. */
export type DashboardQuery = { where: string; expr: string };

type Panel = { title: string; targets?: { expr: string }[] };
type Variable = { name: string; type: string; query?: unknown };

/** Reads the dashboard and returns every PromQL query in it: panel targets and variable queries. */
export async function dashboardQueries(path = DASHBOARD_FILE): Promise<DashboardQuery[]> {
  const dashboard = (await Bun.file(path).json()) as {
    panels: Panel[];
    templating: { list: Variable[] };
  };
  const queries: DashboardQuery[] = [];
  for (const panel of dashboard.panels)
    for (const target of panel.targets ?? [])
      queries.push({ where: `panel "${panel.title}"`, expr: target.expr });
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = (variable.query as { query: string }).query;
    // Grafana's label_values(SELECTOR, label) wraps a PromQL selector.
    const selector = /^label_values\((.*),\s*\w+\)$/.exec(query)?.[1];
    if (selector === undefined) throw new Error(`variable ${variable.name}: not label_values(...): ${query}`);
    queries.push({ where: `variable $${variable.name}`, expr: selector });
  }
  return queries;
}

/**
 * Replaces Grafana's variables in a dashboard query by values Prometheus accepts, so that promtool can
 * parse it: `$__rate_interval` by a duration, `$namespace`/`$pod` by label values.
 */
export function withoutGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '2m')
    .replaceAll('$namespace', 'kube-audit-rest')
    .replaceAll('$pod', '.*');
}

/** The metric names a PromQL expression selects (every name of the prefixes our queries use). */
export function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:kube_audit_rest|process|nodejs|apiserver|kube_deployment)_[a-z0-9_]+\b/g);
  return [...new Set(names ?? [])];
}

/** How a command ended and what it printed. */
export type Result = { code: number; stdout: string; stderr: string };

/** The promtool on PATH (Debian's prometheus package); throws naming the package when there is none. */
export function promtool(): string {
  const path = Bun.which('promtool');
  // Fail, never skip: testing/setup/setup.sh installs it (Debian package prometheus).
  if (path === null) throw new Error('promtool is not on PATH: apt-get install prometheus (testing/setup)');
  return path;
}

/** Runs promtool with `args` in `cwd`, feeding `stdin`; never throws on a non-zero exit. */
export async function runPromtool(args: string[], cwd: string, stdin?: string): Promise<Result> {
  const proc = Bun.spawn([promtool(), ...args], {
    cwd,
    stdin: stdin === undefined ? 'ignore' : Buffer.from(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
    timeout: PROMTOOL_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

/** Writes `groups` as a Prometheus rules file at `path` (JSON is YAML). */
export function writeRulesFile(path: string, groups: RuleGroups): void {
  writeFileSync(path, JSON.stringify(groups));
}
