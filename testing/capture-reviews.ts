/**
 * @module Captures real AdmissionReviews from kube-apiserver into testing/locally/data, and writes the audit
 * lines kube-audit-rest must make of them to testing/locally/expected.jsonl. Run by hand when the samples
 * should change (a new Kubernetes version, a new case):
 *
 *     bun run build && bash testing/k8s-tools/build.sh   # once
 *     bun run testing/capture-reviews.ts
 *     bash testing/locally/local-testing.sh               # must print "Test passed"
 *
 * How: the same set-up as the end-to-end suite (test/helpers/e2e-cluster.ts: etcd, kube-apiserver and the
 * rendered k8s/base/webhook.yaml with a v1beta1-only copy), but the webhook is a tiny HTTPS server here that
 * keeps each request body exactly as received and answers "allowed". Users `alice@example.com` and `bob`
 * (bound to cluster-admin by the admin, which the webhook does not see) make the calls below; the bodies of
 * the calls wanted become the data files, byte for byte, except:
 * - 05 (v1beta1, dry-run Secret create) is pretty-printed (whitespace added between tokens only), so the
 *   test exercises compaction;
 * - 06 gets a top-level `"requestReceivedTimestamp":"2000-01-01T00:00:00Z"` after `apiVersion`, which
 *   kube-audit-rest must overwrite in place.
 * expected.jsonl is made from the captured bodies alone, without kube-audit-rest's code: each compact body
 * (the API server sends compact JSON plus a newline) with `,"requestReceivedTimestamp":"TIMESTAMP"}` put
 * in place of its final `}` (06: its existing value replaced by TIMESTAMP), as local-testing.sh masks it.
 * The files hold fresh uids and timestamps on every run; nothing is scrubbed (it is all test data).
 */
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdmissionRequest } from '../test/helpers/e2e-audit-log.ts';
import {
  bindClusterAdmin,
  type CapturedReview,
  captureBackend,
  impersonate,
  startE2eCluster,
  type UserClient,
} from '../test/helpers/e2e-cluster.ts';

const root = join(import.meta.dir, '..');
const dataDir = join(root, 'testing', 'locally', 'data');
const expectedFile = join(root, 'testing', 'locally', 'expected.jsonl');
const USERS = ['alice@example.com', 'bob'] as const;
const NS = 'shop';
/** The value planted in sample 06; kube-audit-rest replaces it. */
const PLANTED_TIMESTAMP = '2000-01-01T00:00:00Z';

/** Calls the API and insists on `status`. */
async function must(client: UserClient, status: number, method: string, path: string, body?: unknown) {
  const res = await client.call(method, path, body);
  if (res.status !== status)
    throw new Error(
      `${client.username} ${method} ${path}: expected ${status}, got ${res.status} ${res.text}`,
    );
  return res.body as { metadata: { resourceVersion: string } } & Record<string, unknown>;
}

/** The one capture of `apiVersion` matching `match`; throws unless there is exactly one. */
function pick(
  store: CapturedReview[],
  apiVersion: string,
  match: (r: AdmissionRequest) => boolean,
): CapturedReview {
  const found = store.filter((c) => c.apiVersion === `admission.k8s.io/${apiVersion}` && match(c.request));
  if (found.length !== 1 || found[0] === undefined)
    throw new Error(`expected one capture, found ${found.length}`);
  return found[0];
}

/** Index of the first whitespace outside string literals, or -1 (the captured bodies should be compact). */
function whitespaceOutsideStrings(text: string): number {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === ' ' || c === '\t' || c === '\n' || c === '\r') return i;
  }
  return -1;
}

/** Adds newlines and two-space indents between the tokens of compact JSON; string literals stay as they are. */
function prettyPrint(compact: string): string {
  let out = '';
  let depth = 0;
  let inString = false;
  const newline = () => `\n${'  '.repeat(depth)}`;
  for (let i = 0; i < compact.length; i++) {
    const c = compact[i] as string;
    if (inString) {
      out += c;
      if (c === '\\') out += compact[++i] ?? '';
      else if (c === '"') inString = false;
      continue;
    }
    const next = compact[i + 1];
    if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '{' || c === '[') {
      const empty = next === (c === '{' ? '}' : ']');
      if (empty) {
        out += c;
      } else {
        depth++;
        out += c + newline();
      }
    } else if (c === '}' || c === ']') {
      const prev = compact[i - 1];
      if (prev !== '{' && prev !== '[') {
        depth--;
        out += newline();
      }
      out += c;
    } else if (c === ',') out += c + newline();
    else if (c === ':') out += ': ';
    else out += c;
  }
  return `${out}\n`;
}

const store: CapturedReview[] = [];
const cluster = await startE2eCluster({
  backend: captureBackend(store),
  markerUser: 'alice@example.com',
  render: { usernames: USERS, v1beta1Twin: true },
});
try {
  const cp = cluster.controlPlane;
  for (const user of USERS) await bindClusterAdmin(cp, user);
  const alice = impersonate(cp, 'alice@example.com', ['devs']);
  const bob = impersonate(cp, 'bob', ['ops']);

  await must(alice, 201, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS },
  });
  await must(alice, 201, 'POST', `/api/v1/namespaces/${NS}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-0', labels: { app: 'web' } },
    spec: {
      containers: [
        {
          name: 'web',
          image: 'nginx:1.27',
          ports: [{ containerPort: 80 }],
          resources: { limits: { cpu: '500m', memory: '128Mi' } },
        },
      ],
    },
  });
  const labels = { app: 'api' };
  await must(alice, 201, 'POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'api' },
    spec: {
      replicas: 3,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'api', image: 'shop/api:2.4.1' }] } },
    },
  });
  await must(alice, 200, 'PUT', `/apis/apps/v1/namespaces/${NS}/deployments/api/scale`, {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name: 'api', namespace: NS },
    spec: { replicas: 5 },
  });
  await must(bob, 201, 'POST', `/api/v1/namespaces/${NS}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'settings' },
    // Go escapes <, > and & as \u003c, \u003e, \u0026 and sends other non-ASCII as UTF-8: both must survive.
    data: { '10': 'ten', '2': 'two', ratio: '1.50', motd: 'café 😀 "quoted" <b>&</b> tab\there' },
  });
  await must(bob, 200, 'DELETE', `/api/v1/namespaces/${NS}/configmaps/settings`);
  await must(
    bob,
    400,
    'POST',
    `/api/v1/namespaces/${NS}/pods/web-0/exec?command=sh&command=-c&command=id&stdin=true&stdout=true&tty=true&container=web`,
  );
  await must(bob, 201, 'POST', `/api/v1/namespaces/${NS}/secrets?dryRun=All`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'db-password' },
    type: 'Opaque',
    data: { password: Buffer.from('hunter2').toString('base64') },
  });
  await must(alice, 201, 'POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'bob-admin' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'bob' }],
  });

  const is = (op: string, resource: string, name: string, sub?: string) => (r: AdmissionRequest) =>
    r.operation === op && r.resource.resource === resource && r.name === name && r.subResource === sub;
  const samples = [
    { file: '01-create-pod.json', from: pick(store, 'v1', is('CREATE', 'pods', 'web-0')) },
    {
      file: '02-scale-deployment.json',
      from: pick(store, 'v1', is('UPDATE', 'deployments', 'api', 'scale')),
    },
    { file: '03-delete-configmap.json', from: pick(store, 'v1', is('DELETE', 'configmaps', 'settings')) },
    { file: '04-exec-connect.json', from: pick(store, 'v1', is('CONNECT', 'pods', 'web-0', 'exec')) },
    {
      file: '05-v1beta1-secret-dryrun.json',
      from: pick(store, 'v1beta1', is('CREATE', 'secrets', 'db-password')),
    },
    {
      file: '06-existing-timestamp.json',
      from: pick(store, 'v1', is('CREATE', 'clusterrolebindings', 'bob-admin')),
    },
  ];

  for (const old of await readdir(dataDir)) if (old.endsWith('.json')) await rm(join(dataDir, old));
  const expected: string[] = [];
  for (const { file, from } of samples) {
    const text = from.raw.toString('utf8');
    const compact = text.endsWith('\n') ? text.slice(0, -1) : text;
    if (whitespaceOutsideStrings(compact) !== -1)
      throw new Error(`${file}: the API server sent non-compact JSON`);
    let data: string = text;
    let line = `${compact.slice(0, -1)},"requestReceivedTimestamp":"TIMESTAMP"}`;
    if (file.startsWith('05-')) data = prettyPrint(compact);
    if (file.startsWith('06-')) {
      const head = `{"kind":"AdmissionReview","apiVersion":"${from.apiVersion}",`;
      if (!compact.startsWith(head)) throw new Error(`${file}: unexpected start ${compact.slice(0, 80)}`);
      const plant = (value: string) =>
        `${head}"requestReceivedTimestamp":"${value}",${compact.slice(head.length)}`;
      data = `${plant(PLANTED_TIMESTAMP)}\n`;
      line = plant('TIMESTAMP');
    }
    await writeFile(join(dataDir, file), data);
    expected.push(line);
    console.log(`${file}: ${Buffer.byteLength(data)} bytes`);
  }
  await writeFile(expectedFile, `${expected.join('\n')}\n`);
  console.log(`${expectedFile}: ${expected.length} lines`);
} finally {
  await cluster.stop();
}
