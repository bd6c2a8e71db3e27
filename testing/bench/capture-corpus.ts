/**
 * @module Captures the benchmark corpus: real AdmissionReviews from a real kube-apiserver, kept byte for
 * byte in testing/bench/corpus/*.jsonl (one compact JSON line each, as the API server sent it). Run by hand
 * when the corpus should change (a new Kubernetes version, a new kind of traffic):
 *
 *     bun run build && bun run tools      # once: dist/kube-audit-rest, etcd and kube-apiserver
 *     bun run testing/bench/capture-corpus.ts
 *
 * The set-up is the end-to-end suite's (test/helpers/e2e-cluster.ts: etcd, kube-apiserver, the rendered
 * k8s/base/webhook.yaml), but the webhook is a small HTTPS server here that keeps each body and answers
 * "allowed". Impersonated users make the calls the traffic of a busy cluster is made of:
 * - `lease-update`: a kubelet renewing its node Lease (coordination.k8s.io, in kube-node-lease), the most
 *   frequent write in any cluster: one per node every 10 s. Object and oldObject, each with managedFields: ~2.3 KB.
 * - `event-create`: a kubelet recording an Event (`Pulled`), ~1.8 KB.
 * - `pod-create`: the ReplicaSet controller creating a two-container Pod (env, probes, volumes, owner
 *   reference), defaulted by the API server and carrying managedFields, ~8 KB.
 * - `deployment-update`: a CI user rolling a Deployment with many env vars and annotations to a new image;
 *   object and oldObject, ~21 KB.
 * - `configmap-create`: a small ConfigMap whose one data value is the placeholder {@link PAD_PLACEHOLDER}; the
 *   bench replaces it with padding to make bodies of an exact size (1 MiB and the body-size sweep), so no
 *   large file is committed.
 * Each file is checked against its size band; the script fails rather than write a corpus that drifted.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdmissionRequest } from '../../test/helpers/e2e-audit-log.ts';
import {
  bindClusterAdmin,
  type CapturedReview,
  captureBackend,
  impersonate,
  startE2eCluster,
  type UserClient,
} from '../../test/helpers/e2e-cluster.ts';
import { CORPUS_DIR, PAD_PLACEHOLDER } from './corpus.ts';

const NODE = 'bench-node-1';
const NODE_USER = `system:node:${NODE}`;
const RS_CONTROLLER = 'system:serviceaccount:kube-system:replicaset-controller';
const CI_USER = 'ci-deployer@example.com';
const CM_USER = 'bob';
const USERS = [NODE_USER, RS_CONTROLLER, CI_USER, CM_USER] as const;
const NS = 'shop';
/** Env vars and annotations that make the Deployment about as big as a real service's (~10 KB each copy). */
const DEPLOYMENT_ENV_VARS = 38;
const DEPLOYMENT_ANNOTATIONS = 15;

/** Calls the API and insists on `status`; returns the parsed answer. */
async function must(
  client: UserClient,
  status: number,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await client.call(method, path, body);
  if (res.status !== status)
    throw new Error(
      `${client.username} ${method} ${path}: expected ${status}, got ${res.status} ${res.text}`,
    );
  return res.body as Record<string, unknown>;
}

/** The last capture matching `match`; throws if there is none. */
function last(
  store: CapturedReview[],
  what: string,
  match: (r: AdmissionRequest) => boolean,
): CapturedReview {
  const found = store.filter((c) => match(c.request));
  const pick = found[found.length - 1];
  if (pick === undefined) throw new Error(`no capture of ${what}`);
  return pick;
}

/** A container as a real service's: env, ports, probes, resources, mounts. */
function container(name: string, image: string, env: number) {
  return {
    name,
    image,
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: Array.from({ length: env }, (_, i) => ({
      name: `FEATURE_${String(i).padStart(3, '0')}_SETTING`,
      value: `value-${i}-${'abcdefghij'.slice(0, (i % 10) + 1)}`,
    })),
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
    readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 3 },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'tmp', mountPath: '/tmp' },
    ],
    securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true },
  };
}

const volumes = [
  { name: 'config', configMap: { name: 'app-config' } },
  { name: 'tmp', emptyDir: {} },
];

/** A corpus file to write, with the size band it must fall in. */
type Sample = { name: string; from: CapturedReview; minBytes: number; maxBytes: number };

/** Writes the corpus files after checking each is one compact JSON line within its size band. */
async function save(samples: readonly Sample[]): Promise<void> {
  const problems: string[] = [];
  for (const { name, from, minBytes, maxBytes } of samples) {
    const text = from.raw.toString('utf8');
    const bytes = from.raw.length;
    console.log(
      `${name}.jsonl: ${bytes} bytes (${from.request.operation} ${from.request.resource.resource})`,
    );
    if (!text.endsWith('}\n') || text.indexOf('\n') !== text.length - 1)
      problems.push(`${name}: expected one compact JSON line`);
    if (bytes < minBytes || bytes > maxBytes)
      problems.push(`${name}: ${bytes} bytes, outside ${minBytes}..${maxBytes}; adjust the capture`);
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
  await mkdir(CORPUS_DIR, { recursive: true });
  for (const { name, from } of samples) await writeFile(join(CORPUS_DIR, `${name}.jsonl`), from.raw);
}

const store: CapturedReview[] = [];
const cluster = await startE2eCluster({
  backend: captureBackend(store),
  markerUser: CM_USER,
  render: { usernames: USERS },
});
try {
  const cp = cluster.controlPlane;
  for (const user of USERS) await bindClusterAdmin(cp, user);
  const admin = impersonate(cp, 'admin-setup', ['system:masters']);
  const kubelet = impersonate(cp, NODE_USER, ['system:nodes']);
  // No groups: the API server gives an impersonated service account its groups itself. (Passing two
  // would not work: impersonate() appends them to one header, which arrives as a single group "a, b".)
  const rsController = impersonate(cp, RS_CONTROLLER);
  const ci = impersonate(cp, CI_USER, ['ci']);
  const bob = impersonate(cp, CM_USER, ['ops']);
  await must(admin, 201, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS },
  });

  // Lease: created, then renewed as the kubelet does (PUT with a new renewTime), fieldManager as the kubelet's.
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases`;
  const lease = await must(kubelet, 201, 'POST', `${leasePath}?fieldManager=kubelet`, {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: NODE,
      ownerReferences: [
        { apiVersion: 'v1', kind: 'Node', name: NODE, uid: '0b6f2a59-4f43-4d1e-9a55-7d7f3c1e2a10' },
      ],
    },
    spec: {
      holderIdentity: NODE,
      leaseDurationSeconds: 40,
      renewTime: new Date().toISOString().replace('Z', '000Z'),
    },
  });
  for (let i = 0; i < 2; i++) {
    const renewed = {
      ...lease,
      metadata: await must(kubelet, 200, 'GET', `${leasePath}/${NODE}`).then((l) => l.metadata),
      spec: {
        ...(lease.spec as object),
        renewTime: new Date(Date.now() + (i + 1) * 10_000).toISOString().replace('Z', '000Z'),
      },
    };
    await must(kubelet, 200, 'PUT', `${leasePath}/${NODE}?fieldManager=kubelet`, renewed);
  }

  await must(kubelet, 201, 'POST', `/api/v1/namespaces/${NS}/events?fieldManager=kubelet`, {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: 'web-7d4b9c8f6d-x2k9p.17f3a2b1c0d4e5f6' },
    involvedObject: {
      apiVersion: 'v1',
      kind: 'Pod',
      name: 'web-7d4b9c8f6d-x2k9p',
      namespace: NS,
      uid: '5c1d8e2f-6a3b-4c7d-8e9f-0a1b2c3d4e5f',
      resourceVersion: '48213',
      fieldPath: 'spec.containers{web}',
    },
    reason: 'Pulled',
    message:
      'Successfully pulled image "registry.example.com/shop/web:2.4.1" in 1.214s (1.214s including waiting). Image size: 48213112 bytes.',
    source: { component: 'kubelet', host: NODE },
    firstTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    lastTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    count: 1,
    type: 'Normal',
    reportingComponent: 'kubelet',
    reportingInstance: NODE,
  });

  const labels = { app: 'web', 'pod-template-hash': '7d4b9c8f6d', tier: 'frontend', team: 'shop' };
  await must(
    rsController,
    201,
    'POST',
    `/api/v1/namespaces/${NS}/pods?fieldManager=kube-controller-manager`,
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: 'web-7d4b9c8f6d-',
        labels,
        annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' },
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: 'web-7d4b9c8f6d',
            uid: '9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        containers: [
          container('web', 'registry.example.com/shop/web:2.4.1', 8),
          container('sidecar', 'registry.example.com/platform/proxy:1.9.0', 4),
        ],
        volumes,
        nodeSelector: { 'kubernetes.io/os': 'linux' },
        terminationGracePeriodSeconds: 45,
      },
    },
  );

  const deployPath = `/apis/apps/v1/namespaces/${NS}/deployments`;
  const deployLabels = { app: 'api', team: 'shop' };
  const annotations = Object.fromEntries(
    Array.from({ length: DEPLOYMENT_ANNOTATIONS }, (_, i) => [
      `example.com/annotation-${String(i).padStart(2, '0')}`,
      `owner=shop-team;ticket=SHOP-${1000 + i};note=kept for the audit trail`,
    ]),
  );
  const deployment = (image: string) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'api', labels: deployLabels, annotations },
    spec: {
      replicas: 3,
      selector: { matchLabels: deployLabels },
      template: {
        metadata: { labels: deployLabels },
        spec: { containers: [container('api', image, DEPLOYMENT_ENV_VARS)], volumes },
      },
    },
  });
  await must(
    ci,
    201,
    'POST',
    `${deployPath}?fieldManager=kubectl-create`,
    deployment('registry.example.com/shop/api:2.4.1'),
  );
  const current = await must(ci, 200, 'GET', `${deployPath}/api`);
  await must(ci, 200, 'PUT', `${deployPath}/api?fieldManager=kubectl-set`, {
    ...deployment('registry.example.com/shop/api:2.4.2'),
    metadata: {
      ...deployment('').metadata,
      resourceVersion: (current.metadata as { resourceVersion: string }).resourceVersion,
    },
  });

  // No fieldManager: the review must stay under 1 KiB so the body-size sweep can start at exactly 1 KiB.
  await must(bob, 201, 'POST', `/api/v1/namespaces/${NS}/configmaps`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'blob' },
    data: { 'payload.txt': PAD_PLACEHOLDER },
  });

  const op = (operation: string, resource: string) => (r: AdmissionRequest) =>
    r.operation === operation && r.resource.resource === resource && r.subResource === undefined;
  await save([
    {
      name: 'lease-update',
      from: last(store, 'lease update', op('UPDATE', 'leases')),
      minBytes: 1_500,
      maxBytes: 3_000,
    },
    {
      name: 'event-create',
      from: last(store, 'event create', op('CREATE', 'events')),
      minBytes: 1_000,
      maxBytes: 2_500,
    },
    {
      name: 'pod-create',
      from: last(store, 'pod create', op('CREATE', 'pods')),
      minBytes: 6_000,
      maxBytes: 10_000,
    },
    {
      name: 'deployment-update',
      from: last(store, 'deployment update', op('UPDATE', 'deployments')),
      minBytes: 16_000,
      maxBytes: 26_000,
    },
    {
      name: 'configmap-create',
      from: last(store, 'configmap create', (r) => r.name === 'blob'),
      minBytes: 500,
      maxBytes: 1_024,
    },
  ]);
} finally {
  await cluster.stop();
}
