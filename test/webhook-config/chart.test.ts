/**
 * The chart with an audit Policy in its values: `kube-audit-rest webhook-config --output=helm-values`
 * gives values that real Helm renders into a policy ConfigMap the server loads back unchanged, the
 * --policy-file flag and its mount, and the webhook with the compiled rules and match conditions, which a
 * real kube-apiserver accepts (server-side dry run, strict). Helm's digest of the policy equals ours, and a
 * policy edited after compiling is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import type { Policy } from '../../src/audit/policy/types.ts';
import { webhookConfig } from '../../src/commands/webhook-config.ts';
import { compileMatch } from '../../src/webhook-config/compile.ts';
import { policyDigest } from '../../src/webhook-config/policy-document.ts';
import {
  type ControlPlane,
  defaultBinDir,
  missingBinariesMessage,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../../testing/control-plane.ts';

const REPO = resolve(import.meta.dir, '..', '..');
const HELM = join(defaultBinDir, 'helm');
const KUBECTL = join(defaultBinDir, 'kubectl');
const CHART = join(REPO, 'k8s', 'chart', 'kube-audit-rest');
const NAMESPACE = 'audit';
/** One helm or kubectl call takes a second or two; this only stops a hang. */
const COMMAND_TIMEOUT_MS = 60_000;

/** A policy with strings that Go's JSON escapes, YAML 1.1 misreads, and that are not ASCII. */
const POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{ group: coordination.k8s.io, resources: [leases] }]
  - level: None
    users: ["system:kube-proxy"]
    verbs: [watch]
  - level: Metadata
    resources: [{ group: "", resources: [secrets, "pods/exec"] }]
    namespaces: ["on", "yes", équipe]
  - level: None
    users: ["o'brien <ops&dev>"]
  - level: RequestResponse
    omitManagedFields: true
`;

const missing = [
  ...missingControlPlaneBinaries(),
  ...['helm', 'kubectl'].filter((t) => Bun.which(join(defaultBinDir, t)) === null),
];
if (missing.length > 0) throw new Error(missingBinariesMessage(missing, process.env.CI !== undefined));

type Result = { code: number; stdout: string; stderr: string };

async function run(cmd: string[], env: Record<string, string> = {}, stdin?: string): Promise<Result> {
  const proc = Bun.spawn(cmd, {
    stdin: stdin === undefined ? 'ignore' : Buffer.from(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
    env: { ...process.env, ...env },
    timeout: COMMAND_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

type K8sObject = { kind: string; metadata: { name: string; annotations?: Record<string, string> } } & Record<
  string,
  unknown
>;

function objectsOf(yaml: string): K8sObject[] {
  const docs = Bun.YAML.parse(yaml);
  return (Array.isArray(docs) ? docs : [docs]).filter((d) => d !== null) as K8sObject[];
}

function only(objects: readonly K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0] as K8sObject;
}

describe('the chart with auditPolicy and webhook.compiled', () => {
  let dir: string;
  let cp: ControlPlane;
  let policy: Policy;
  let valuesFile: string;

  const helm = (args: string[]) =>
    run([HELM, ...args], {
      HELM_CACHE_HOME: join(dir, 'h'),
      HELM_CONFIG_HOME: join(dir, 'h'),
      HELM_DATA_HOME: join(dir, 'h'),
    });
  const template = (...args: string[]) =>
    helm(['template', 'kar', CHART, `--namespace=${NAMESPACE}`, '--set=tls.source=generate', ...args]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kar-chart-policy-'));
    const policyFile = join(dir, 'policy.yaml');
    await writeFile(policyFile, POLICY);
    const loaded = loadPolicy(POLICY, policyFile);
    if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
    policy = loaded.policy;
    let values = '';
    const status = await webhookConfig([`--policy-file=${policyFile}`, '--output=helm-values'], {
      write: (text) => {
        values += text;
      },
      report: (text) => {
        throw new Error(text);
      },
    });
    if (status !== 0) throw new Error(`webhook-config exited ${status}`);
    valuesFile = join(dir, 'policy-values.yaml');
    await writeFile(valuesFile, values);
    cp = await startControlPlane();
    const ns = await run([KUBECTL, `--kubeconfig=${cp.kubeconfigPath}`, 'create', 'namespace', NAMESPACE]);
    if (ns.code !== 0) throw new Error(ns.stderr);
  }, 120_000);

  afterAll(async () => {
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('renders the compiled webhook, the policy ConfigMap and its mount, accepted by a real API server', async () => {
    const rendered = await template(`--values=${valuesFile}`);
    expect(rendered.stderr).toBe('');
    expect(rendered.code).toBe(0);
    const objects = objectsOf(rendered.stdout);

    const compiled = compileMatch(policy);
    if (compiled.kind !== 'match') throw new Error('nothing');
    const webhookConfiguration = only(objects, 'ValidatingWebhookConfiguration') as K8sObject & {
      webhooks: { rules: unknown; matchConditions: unknown }[];
    };
    expect(JSON.parse(JSON.stringify(webhookConfiguration.webhooks[0]?.rules))).toEqual(
      JSON.parse(JSON.stringify(compiled.match.rules)),
    );
    expect(webhookConfiguration.webhooks[0]?.matchConditions).toEqual(
      JSON.parse(JSON.stringify(compiled.match.matchConditions)),
    );
    // Helm's sha256sum of toJson is ours: the chart accepted the values, and says so.
    expect(webhookConfiguration.metadata.annotations?.['kube-audit-rest/policy-sha256']).toBe(
      policyDigest(policy),
    );

    const configMap = only(objects, 'ConfigMap') as K8sObject & { data: Record<string, string> };
    expect(loadPolicy(configMap.data['policy.json'] as string, 'configmap')).toEqual({ ok: true, policy });
    const deployment = only(objects, 'Deployment') as K8sObject & {
      spec: {
        template: {
          metadata: { annotations: Record<string, string> };
          spec: {
            containers: {
              args: string[];
              volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
            }[];
            volumes: { name: string; configMap?: { name: string } }[];
          };
        };
      };
    };
    const pod = deployment.spec.template;
    const [container] = pod.spec.containers;
    expect(container?.args).toContain('--policy-file=/etc/kube-audit-rest/policy/policy.json');
    expect(container?.volumeMounts).toContainEqual({
      name: 'policy',
      mountPath: '/etc/kube-audit-rest/policy',
      readOnly: true,
    });
    expect(pod.spec.volumes).toContainEqual({ name: 'policy', configMap: { name: configMap.metadata.name } });
    expect(pod.metadata.annotations['kube-audit-rest/policy-sha256']).toBe(policyDigest(policy));

    const applied = await run(
      [
        KUBECTL,
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--cache-dir=${join(dir, 'kubectl-cache')}`,
        'apply',
        '--server-side',
        '--dry-run=server',
        '--validate=strict',
        '--field-manager=chart-policy-test',
        '-o',
        'name',
        '-f',
        '-',
      ],
      {},
      rendered.stdout,
    );
    expect({ code: applied.code, stderr: applied.stderr }).toEqual({ code: 0, stderr: '' });
    expect(applied.stdout).toContain(
      'validatingwebhookconfiguration.admissionregistration.k8s.io/kar-kube-audit-rest',
    );
  });

  it('passes helm lint --strict with the values', async () => {
    const lint = await helm([
      'lint',
      '--strict',
      CHART,
      `--values=${valuesFile}`,
      '--set=tls.source=generate',
    ]);
    expect({ code: lint.code, stderr: lint.stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('refuses a policy changed after it was compiled, and a compiled match without its policy', async () => {
    const changed = await template(`--values=${valuesFile}`, '--set=auditPolicy.rules[0].level=Metadata');
    expect(changed.code).not.toBe(0);
    expect(changed.stderr).toContain('auditPolicy changed since webhook.compiled was made from it');
    expect(changed.stderr).toContain(`webhook.compiled.policySha256 says ${policyDigest(policy)}`);

    const values = parse(await Bun.file(valuesFile).text(), { version: '1.1' });
    const compiledOnly = join(dir, 'compiled-only.yaml');
    await writeFile(compiledOnly, JSON.stringify({ webhook: values.webhook }));
    const orphan = await template(`--values=${compiledOnly}`);
    expect(orphan.code).not.toBe(0);
    expect(orphan.stderr).toContain('webhook.compiled is set but auditPolicy is not');
  });

  it('mounts a policy without a compiled match and keeps webhook.rules', async () => {
    const values = parse(await Bun.file(valuesFile).text(), { version: '1.1' });
    const policyOnly = join(dir, 'policy-only.yaml');
    await writeFile(policyOnly, JSON.stringify({ auditPolicy: values.auditPolicy }));
    const rendered = await template(`--values=${policyOnly}`);
    expect(rendered.code).toBe(0);
    const objects = objectsOf(rendered.stdout);
    const webhook = (
      only(objects, 'ValidatingWebhookConfiguration') as K8sObject & { webhooks: Record<string, unknown>[] }
    ).webhooks[0];
    expect(webhook?.rules).toEqual([
      { operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*/*'], scope: '*' },
    ]);
    expect(webhook?.matchConditions).toBeUndefined();
    expect(only(objects, 'ConfigMap').metadata.name).toBe('kar-kube-audit-rest-policy');
  });

  it('renders no ConfigMap and no --policy-file without auditPolicy', async () => {
    const rendered = await template();
    expect(rendered.code).toBe(0);
    expect(rendered.stdout).not.toContain('policy-file');
    expect(objectsOf(rendered.stdout).filter((o) => o.kind === 'ConfigMap')).toEqual([]);
  });
});
