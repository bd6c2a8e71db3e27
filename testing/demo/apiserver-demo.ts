/**
 * @module `bun run demo`: kube-audit-rest behind a real Kubernetes API server, on this machine alone.
 *
 * Builds what is missing (dist/kube-audit-rest with `bun run build`; etcd and kube-apiserver with
 * `bash testing/k8s-tools/build.sh`, about 6 minutes the first time, needs Go), starts etcd, kube-apiserver
 * and kube-audit-rest on loopback, registers k8s/base/webhook.yaml (rendered for loopback as the end-to-end
 * suite does, failure policy as in the manifest, only {@link USER}'s calls selected), then acts as that user:
 * creates a namespace, a ConfigMap and a Deployment, updates and scales the Deployment, deletes things (one
 * as a dry run). It prints the audit lines as a table and one line whole, and stops everything it started,
 * also on Ctrl-C.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type AuditEntry, auditLogReader } from '../../test/helpers/e2e-audit-log.ts';
import {
  bindClusterAdmin,
  type E2eCluster,
  impersonate,
  type KubeAuditRestBackend,
  kubeAuditRestBackend,
  MARKER_PREFIX,
  startE2eCluster,
  type UserClient,
} from '../../test/helpers/e2e-cluster.ts';
import { EXECUTABLE } from '../../test/helpers/server-process.ts';
import { defaultBinDir, missingControlPlaneBinaries } from '../control-plane.ts';

const root = join(import.meta.dir, '..', '..');
/** The user the demo acts as; the webhook configuration selects only this user's calls. */
const USER = 'alice@example.com';
const NS = 'shop';
/** Exit status after Ctrl-C, as shells report a SIGINT death. */
const EXIT_INTERRUPTED = 130;

/** Runs a command with the terminal attached; throws unless it exits 0. */
async function run(cmd: string[]): Promise<void> {
  const proc = Bun.spawn(cmd, { cwd: root, stdin: 'ignore', stdout: 'inherit', stderr: 'inherit' });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited ${code}`);
}

/** Makes a call as the demo user, prints it, and insists on `status`. */
async function step(
  client: UserClient,
  status: number,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<Record<string, unknown>> {
  const res = await client.call(method, path, body, contentType);
  console.log(`  ${method.padEnd(6)} ${path} -> ${res.status}`);
  if (res.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${res.text}`);
  return res.body as Record<string, unknown>;
}

/** One table row for an audit line: time, operation, kind (and subresource), namespace/name, user, dry run. */
function row({ line }: AuditEntry): string[] {
  const r = line.request;
  const name = r.name ?? r.oldObject?.metadata?.name ?? '';
  return [
    line.requestReceivedTimestamp,
    r.operation,
    r.subResource ? `${r.kind.kind} (${r.resource.resource}/${r.subResource})` : r.kind.kind,
    // A Namespace's review names itself as its namespace: show it once.
    r.resource.resource === 'namespaces' ? name : [r.namespace, name].filter(Boolean).join('/'),
    r.userInfo.username,
    r.dryRun ? 'dry run' : '',
  ];
}

/** Prints rows as left-aligned columns under a header. */
function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const format = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  console.log(format(header));
  for (const r of rows) console.log(format(r));
}

/** The demo user's calls. */
async function actAsUser(alice: UserClient): Promise<void> {
  const labels = { app: 'web' };
  const deployments = `/apis/apps/v1/namespaces/${NS}/deployments`;
  await step(alice, 201, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS },
  });
  await step(alice, 201, 'POST', `/api/v1/namespaces/${NS}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'settings' },
    data: { greeting: 'hello', currency: 'EUR' },
  });
  await step(alice, 201, 'POST', deployments, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } },
    },
  });
  await step(
    alice,
    200,
    'PATCH',
    `${deployments}/web`,
    { spec: { template: { spec: { containers: [{ name: 'web', image: 'nginx:1.28' }] } } } },
    'application/strategic-merge-patch+json',
  );
  await step(alice, 200, 'PUT', `${deployments}/web/scale`, {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name: 'web', namespace: NS },
    spec: { replicas: 3 },
  });
  await step(alice, 200, 'DELETE', `/api/v1/namespaces/${NS}/configmaps/settings?dryRun=All`);
  await step(alice, 200, 'DELETE', `/api/v1/namespaces/${NS}/configmaps/settings`);
  await step(alice, 200, 'DELETE', `${deployments}/web`);
  await step(alice, 200, 'DELETE', `/api/v1/namespaces/${NS}`);
}

let cluster: E2eCluster | undefined;
let interrupted = false;
let stopping: Promise<void> | undefined;
const stopAll = (): Promise<void> => {
  stopping ??= (async () => {
    if (cluster === undefined) return;
    await cluster.stop();
    console.log('stopped kube-audit-rest, kube-apiserver and etcd; temp files removed');
  })();
  return stopping;
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${signal}: cleaning up`);
    // While the set-up runs there is nothing to stop yet; the main flow stops it once it returns.
    if (cluster !== undefined) void stopAll().finally(() => process.exit(EXIT_INTERRUPTED));
  });
}

const started = performance.now();
try {
  console.log('kube-audit-rest demo against a real kube-apiserver');
  if (!existsSync(EXECUTABLE)) {
    console.log('building dist/kube-audit-rest (bun run build)');
    await run([process.execPath, 'run', 'build']);
  }
  const missing = missingControlPlaneBinaries();
  if (missing.length > 0) {
    console.log(
      `building ${missing.join(' and ')} into ${defaultBinDir} from Go modules: about 6 minutes the first time (needs Go)`,
    );
    // Only what the demo runs: kubectl and helm are for the tests.
    await run(['bash', join(root, 'testing', 'k8s-tools', 'build.sh'), ...missing]);
  }
  console.log('starting etcd, kube-apiserver and kube-audit-rest on 127.0.0.1');
  cluster = await startE2eCluster({
    backend: kubeAuditRestBackend,
    markerUser: USER,
    render: { usernames: [USER] },
  });
  if (interrupted) throw new Error('interrupted');
  const backend = cluster.backend as KubeAuditRestBackend;
  const cp = cluster.controlPlane;
  const hook = cluster.webhookConfiguration.webhooks[0];
  console.log(`  kube-apiserver ${cp.url}; kube-audit-rest ${backend.url}`);
  console.log(`  audit log ${backend.logFile}`);
  console.log(
    `  webhook ${hook?.name} registered from k8s/base/webhook.yaml (failurePolicy ${hook?.failurePolicy}), ` +
      `calls by ${USER} only; in use after ${cluster.markers} marker ConfigMap(s)`,
  );

  await bindClusterAdmin(cp, USER);
  console.log(`\nas ${USER}:`);
  await actAsUser(impersonate(cp, USER, ['devs']));

  const entries = auditLogReader(backend.logFile).entries();
  const shown = entries.filter((e) => !(e.line.request.name ?? '').startsWith(MARKER_PREFIX));
  console.log(
    `\n${entries.length} lines in the audit log (${entries.length - shown.length} from the start-up markers, not shown):\n`,
  );
  printTable(['TIME', 'OPERATION', 'KIND', 'NAMESPACE/NAME', 'USER', 'DRY RUN'], shown.map(row));
  const scale = shown.find((e) => e.line.request.subResource === 'scale');
  console.log(`\nThe scale line, whole (${Buffer.byteLength(scale?.text ?? '')} bytes):\n${scale?.text}\n`);
  const metrics = await (await cp.fetch('/metrics')).text();
  console.log('kube-apiserver says of the webhook:');
  for (const l of metrics.split('\n'))
    if (l.startsWith('apiserver_admission_webhook_request_total{')) console.log(`  ${l}`);
  console.log(`\ndone in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  if (!interrupted) {
    console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
} finally {
  await stopAll();
  if (interrupted) process.exit(EXIT_INTERRUPTED);
}
