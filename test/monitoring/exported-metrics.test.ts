/**
 * @module test/monitoring/exported-metrics — the metrics the alerts and the dashboard name against what a
 * running kube-audit-rest (the compiled executable) exports on /metrics; every dashboard query parses;
 * `promtool check metrics` on that /metrics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert } from '../helpers/certs.ts';
import { reviewBody, type ServerProcess, startServer } from '../helpers/server-process.ts';
import {
  alertRules,
  CHART_DASHBOARD_FILE,
  DASHBOARD_FILE,
  type DashboardQuery,
  dashboardQueries,
  metricNames,
  readRuleGroups,
  runPromtool,
  withoutGrafanaVariables,
  writeRulesFile,
} from './monitoring-files.ts';

/**
 * Metrics that the alerts and the dashboard already name but kube-audit-rest does not export yet: other
 * work adds them under these reserved names. This list MUST BE EMPTY AT RELEASE: delete each name as
 * the code that exports it lands, and the test below then insists on it. A name listed here that is
 * exported fails the test, so the list cannot go stale.
 */
const PENDING_METRICS = ['kube_audit_rest_tls_handshake_failures_total'];

/**
 * `promtool check metrics` findings still open, each a prom-client default gauge whose name ends in
 * `_total` (prom-client names the gauges that way). MUST BE EMPTY AT RELEASE: removing these three
 * from the registry in src/support/metrics.ts clears them. Any other finding fails the test, and so
 * does a listed one that is gone.
 */
const PENDING_LINT_FINDINGS: string[] = [];

/** Metrics from other exporters, with where they come from; the alerts read them, we do not export them. */
const EXTERNAL_METRICS: Record<string, string> = {
  apiserver_admission_webhook_fail_open_count: 'kube-apiserver (k8s.io/apiserver pkg/admission/metrics)',
  apiserver_admission_webhook_request_total: 'kube-apiserver (k8s.io/apiserver pkg/admission/metrics)',
  kube_deployment_spec_replicas: 'kube-state-metrics',
  kube_deployment_status_replicas_available: 'kube-state-metrics',
};

/** The k8s.io/apiserver version of the kube-apiserver the tests build (testing/k8s-tools/go.mod). */
function apiserverModuleVersion(): string {
  const goMod = readFileSync(join(import.meta.dir, '..', '..', 'testing', 'k8s-tools', 'go.mod'), 'utf8');
  const version = /k8s\.io\/apiserver => k8s\.io\/apiserver (v\S+)/.exec(goMod)?.[1];
  if (version === undefined) throw new Error('no k8s.io/apiserver replace in testing/k8s-tools/go.mod');
  return version;
}

/** Every sample and family name in a Prometheus text exposition, histogram/summary series included. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type?.[1] !== undefined) {
      names.add(type[1]);
      if (type[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(type[1] + s);
      if (type[2] === 'summary') for (const s of ['_sum', '_count']) names.add(type[1] + s);
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(line.split(/[{ ]/)[0] ?? '');
    }
  }
  return names;
}

let dir: string;
let server: ServerProcess;
let exposition: string;
let named: { name: string; where: string }[];
let queries: DashboardQuery[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kar-exported-'));
  const ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca);
  server = await startServer([
    `--cert-filename=${cert.certFile}`,
    `--cert-key-filename=${cert.keyFile}`,
    `--logger-filename=${join(dir, 'audit.log')}`,
  ]);
  // One written line and one refusal, so that labelled families have a child too.
  const post = (body: string) =>
    fetch(`https://127.0.0.1:${server.port}/log-request`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      tls: { ca: ca.cert },
    });
  expect((await post(reviewBody('exported-metrics-1'))).status).toBe(200);
  expect((await post('{')).status).toBe(400);
  exposition = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();

  const rules = alertRules(await readRuleGroups());
  queries = await dashboardQueries();
  named = [
    ...rules.flatMap((r) => metricNames(r.expr).map((name) => ({ name, where: `alert ${r.alert}` }))),
    ...queries.flatMap((q) => metricNames(q.expr).map((name) => ({ name, where: `dashboard ${q.where}` }))),
  ];
}, 30_000);

afterAll(async () => {
  await server?.terminate();
  rmSync(dir, { recursive: true, force: true });
});

describe('metrics named by the alerts and the dashboard', () => {
  it('are all exported by a running kube-audit-rest, but for the pending and external ones', () => {
    const exported = exportedNames(exposition);
    expect(exported.has('kube_audit_rest_http_requests_total')).toBe(true);
    const missing = named
      .filter(
        ({ name }) => !exported.has(name) && !PENDING_METRICS.includes(name) && !(name in EXTERNAL_METRICS),
      )
      .map(({ name, where }) => `${name} (${where})`);
    expect([...new Set(missing)]).toEqual([]);
  });

  it('lists as pending only metrics that are named and still not exported', () => {
    const exported = exportedNames(exposition);
    const names = new Set(named.map((n) => n.name));
    expect(PENDING_METRICS.filter((m) => exported.has(m) || !names.has(m))).toEqual([]);
  });

  it('names exactly the external metrics listed, and the API server ones exist in the kube-apiserver we build', () => {
    const external = [...new Set(named.map((n) => n.name))].filter((n) => !n.startsWith('kube_audit_rest_'));
    const ours = /^(process|nodejs)_/;
    expect(external.filter((n) => !ours.test(n)).sort()).toEqual(Object.keys(EXTERNAL_METRICS).sort());
    // The Go module cache holds the API server's source once testing/k8s-tools/build.sh has run.
    const goModCache = Bun.spawnSync(['go', 'env', 'GOMODCACHE'], { stdout: 'pipe' })
      .stdout.toString()
      .trim();
    const source = join(
      goModCache,
      `k8s.io/apiserver@${apiserverModuleVersion()}/pkg/admission/metrics/metrics.go`,
    );
    if (!existsSync(source)) throw new Error(`${source} missing: run bash testing/k8s-tools/build.sh`);
    const text = readFileSync(source, 'utf8');
    expect(text).toContain('namespace = "apiserver"');
    expect(text).toContain('subsystem = "admission"');
    for (const name of Object.keys(EXTERNAL_METRICS).filter((n) => n.startsWith('apiserver_admission_')))
      expect(text).toContain(`Name:           "${name.slice('apiserver_admission_'.length)}"`);
  });

  it('come from dashboard queries that all parse as PromQL (promtool check rules)', async () => {
    expect(queries.length).toBeGreaterThan(15);
    const groups = {
      groups: [
        {
          name: 'dashboard',
          rules: queries.map((q, i) => ({
            record: `dashboard:query_${i}`,
            expr: withoutGrafanaVariables(q.expr),
          })),
        },
      ],
    };
    writeRulesFile(join(dir, 'dashboard-rules.yaml'), groups as never);
    const result = await runPromtool(['check', 'rules', 'dashboard-rules.yaml'], dir);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
  });

  it('is the same dashboard in k8s/monitoring and in the chart', () => {
    expect(readFileSync(CHART_DASHBOARD_FILE, 'utf8')).toBe(readFileSync(DASHBOARD_FILE, 'utf8'));
  });
});

describe('/metrics of a running kube-audit-rest', () => {
  it('passes promtool check metrics, but for the findings listed as pending', async () => {
    const result = await runPromtool(['check', 'metrics'], dir, exposition);
    const findings = (result.stdout + result.stderr).split('\n').filter(Boolean);
    expect(findings.filter((f) => !PENDING_LINT_FINDINGS.includes(f))).toEqual([]);
    expect(PENDING_LINT_FINDINGS.filter((f) => !findings.includes(f))).toEqual([]);
    expect(result.code).toBe(findings.length === 0 ? 0 : 3);
  });
});
