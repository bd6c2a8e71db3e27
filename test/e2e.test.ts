/**
 * @module End-to-end: a real kube-apiserver (with etcd) sends AdmissionReviews to the compiled kube-audit-rest
 * through the project's own webhook configuration (k8s/base/webhook.yaml, rendered for loopback), and every
 * API call made here is checked in the audit log: one line per webhook, with what the API server sent.
 *
 * The configuration has two webhooks: the manifest's own (v1 reviews) and a v1beta1-only copy, both with
 * `failurePolicy: Fail` (so any error of ours fails the API call) and a match condition that sends only the
 * calls of {@link USER}; the API server's own traffic is left out. Needs `bash testing/k8s-tools/build.sh`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { missingBinariesMessage, missingControlPlaneBinaries } from '../testing/control-plane.ts';
import {
  type AdmissionRequest,
  type AuditEntry,
  type AuditLogReader,
  auditLogReader,
  type CallQuery,
  type KubeObject,
  linesOfCall,
} from './helpers/e2e-audit-log.ts';
import {
  type E2eCluster,
  impersonate,
  type KubeAuditRestBackend,
  kubeAuditRestBackend,
  startE2eCluster,
  type UserClient,
} from './helpers/e2e-cluster.ts';
import { loadWebhookManifest, type WebhookConfiguration } from './helpers/e2e-webhook.ts';
import { waitUntil } from './helpers/server-process.ts';

/** The impersonated user whose calls the webhook configuration selects. */
const USER = 'e2e-user';
/** Its groups: `system:masters` so RBAC allows everything. The API server adds `system:authenticated`. */
const GROUPS = ['system:masters'];
/** A redacted Secret value: the marker and a base64url HMAC-SHA256. */
const REDACTED = /^redacted:hmac-sha256:[A-Za-z0-9_-]{43}$/;
/** Namespace of the namespaced objects. */
const NS = 'e2e';
/** The API server's cap on a ConfigMap's data (the sum of its values' lengths), 1 MiB. */
const CONFIGMAP_DATA_LIMIT_BYTES = 1024 * 1024;
/** Set-up deadline: control plane (about 4 s here) plus webhook registration. */
const SETUP_TIMEOUT_MS = 90_000;
/** Per-test deadline; the largest test moves about 12 MiB of reviews. */
const TEST_TIMEOUT_MS = 30_000;

/** A request uid as the API server makes them. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const missing = missingControlPlaneBinaries();
const suiteStart = new Date();

let cluster: E2eCluster | undefined;
let backend: KubeAuditRestBackend;
let api: UserClient;
let log: AuditLogReader;

/** The two webhooks of the rendered configuration, by the review version each speaks. */
let webhookNames: { v1: string; v1beta1: string };

/** Calls the API and checks the status, returning the parsed body. */
async function call(
  status: number,
  method: string,
  path: string,
  body?: unknown,
  contentType?: string,
): Promise<KubeObject> {
  const res = await api.call(method, path, body, contentType);
  if (res.status !== status)
    throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${res.text}`);
  return res.body as KubeObject;
}

/** The number of lines written so far: pass it to {@link logged} to look only at later lines. */
function mark(): number {
  return log.entries().length;
}

/**
 * Finds the lines of one call written after `since` (a {@link mark}), checks there is exactly one per webhook
 * (v1 and v1beta1) holding the same request apart from its uid, and returns the v1 line's request.
 */
function logged(
  since: number,
  query: Omit<CallQuery, 'username'>,
  pick: (r: AdmissionRequest) => boolean = () => true,
): AdmissionRequest {
  const entries = linesOfCall(log.entries().slice(since), { ...query, username: USER }).filter((e) =>
    pick(e.line.request),
  );
  const v1 = entries.filter((e) => e.line.apiVersion === 'admission.k8s.io/v1');
  const v1beta1 = entries.filter((e) => e.line.apiVersion === 'admission.k8s.io/v1beta1');
  if (v1.length !== 1 || v1beta1.length !== 1 || entries.length !== 2)
    throw new Error(
      `${JSON.stringify(query)}: expected one v1 and one v1beta1 line, found ${v1.length} and ${v1beta1.length}`,
    );
  const [a, b] = [v1[0] as AuditEntry, v1beta1[0] as AuditEntry];
  expect(a.line.kind).toBe('AdmissionReview');
  expect(b.line.kind).toBe('AdmissionReview');
  // Each webhook call gets its own uid; everything else is the same request.
  expect(a.line.request.uid).toMatch(UUID);
  expect(b.line.request.uid).toMatch(UUID);
  expect(a.line.request.uid).not.toBe(b.line.request.uid);
  expect({ ...b.line.request, uid: '' }).toEqual({ ...a.line.request, uid: '' });
  const r = a.line.request;
  expect(r.userInfo).toEqual({ username: USER, groups: [...GROUPS, 'system:authenticated'] });
  expect(r.operation).toBe(query.operation);
  expect(r.resource.group).toBe(query.group);
  expect(r.resource.resource).toBe(query.resource);
  return r;
}

/** Asserts the shape CREATE has: the new object, no old one, CreateOptions. */
function expectCreate(r: AdmissionRequest, created: KubeObject): void {
  expect(r.oldObject).toBeNull();
  expect(r.object?.metadata?.uid).toBe(created.metadata?.uid as string);
  expect(r.object?.metadata?.name).toBe(created.metadata?.name as string);
  expect(r.options).toMatchObject({ kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' });
  expect(r.dryRun).toBe(false);
}

/** Asserts the shape UPDATE has (PUT and PATCH alike): new and old object, the old at `before`'s resourceVersion. */
function expectUpdate(r: AdmissionRequest, before: KubeObject): void {
  expect(r.oldObject?.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion as string);
  expect(r.object?.metadata?.uid).toBe(before.metadata?.uid as string);
  // A PATCH is admitted as an UPDATE with its PatchOptions turned into UpdateOptions.
  expect(r.options).toMatchObject({ kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' });
  expect(r.dryRun).toBe(false);
}

/** Asserts the shape DELETE has: no new object, the old one as it was. */
function expectDelete(r: AdmissionRequest, before: KubeObject): void {
  expect(r.object).toBeNull();
  expect(r.oldObject?.metadata?.uid).toBe(before.metadata?.uid as string);
  expect(r.oldObject?.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion as string);
  expect(r.options).toMatchObject({ kind: 'DeleteOptions', apiVersion: 'meta.k8s.io/v1' });
}

/** Index of the first whitespace character outside JSON string literals in `text`, or -1. */
function whitespaceOutsideStrings(text: string): number {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) return i;
  }
  return -1;
}

/** Sample series `name{labels} value` of a Prometheus text exposition. */
function series(text: string, name: string): { labels: string; value: number }[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => {
      const cut = l.lastIndexOf(' ');
      return { labels: l.slice(name.length, cut), value: Number(l.slice(cut + 1)) };
    });
}

describe('kube-audit-rest behind a real kube-apiserver', () => {
  if (missing.length > 0) {
    // Fail, never skip: a green run must mean a real API server called kube-audit-rest.
    it('has etcd and kube-apiserver built', () => {
      throw new Error(missingBinariesMessage(missing, Boolean(process.env.CI)));
    });
    return;
  }

  beforeAll(async () => {
    cluster = await startE2eCluster({
      backend: kubeAuditRestBackend,
      markerUser: USER,
      render: { failurePolicy: 'Fail', usernames: [USER], v1beta1Twin: true },
    });
    backend = cluster.backend as KubeAuditRestBackend;
    api = impersonate(cluster.controlPlane, USER, GROUPS);
    log = auditLogReader(backend.logFile);
    const [v1, v1beta1] = cluster.webhookConfiguration.webhooks;
    if (v1 === undefined || v1beta1 === undefined) throw new Error('expected two webhooks');
    webhookNames = { v1: v1.name, v1beta1: v1beta1.name };
    await call(201, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('registers the manifest webhook with only client config, failure policy and user selection changed', async () => {
    const manifest = loadWebhookManifest();
    const rendered = cluster?.webhookConfiguration;
    const [original] = manifest.webhooks;
    if (rendered === undefined || original === undefined) throw new Error('no configuration');
    expect(rendered.metadata).toEqual({ name: manifest.metadata.name, labels: manifest.metadata.labels });
    const caBundle = Buffer.from(cluster?.ca.cert ?? '').toString('base64');
    const changed = {
      clientConfig: { url: backend.url, caBundle },
      failurePolicy: 'Fail',
      matchConditions: [
        { name: 'only-listed-users', expression: `request.userInfo.username in ["${USER}"]` },
      ],
    };
    expect(rendered.webhooks).toEqual([
      { ...original, ...changed },
      { ...original, ...changed, name: `v1beta1.${original.name}`, admissionReviewVersions: ['v1beta1'] },
    ]);
    // The API server stored it as sent (plus its defaults).
    const stored = (await (
      await cluster?.controlPlane.fetch(
        `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${rendered.metadata.name}`,
      )
    )?.json()) as WebhookConfiguration;
    expect(stored.webhooks).toMatchObject(rendered.webhooks);
  });

  it('logs create, update, merge patch, JSON patch and delete of a ConfigMap when the user makes them', async () => {
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    const q = { group: '', resource: 'configmaps', namespace: NS, name: 'settings' } as const;
    const data = { motd: 'café 😀 "quoted" \\ back <b>&</b>', ratio: '1.50' };
    let m = mark();
    const created = await call(201, 'POST', base, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'settings', labels: { app: 'shop' } },
      data,
    });
    let r = logged(m, { ...q, operation: 'CREATE' });
    expect(r.kind).toEqual({ group: '', version: 'v1', kind: 'ConfigMap' });
    expect(r.resource).toEqual({ group: '', version: 'v1', resource: 'configmaps' });
    expect(r.subResource).toBeUndefined();
    expect(r.namespace).toBe(NS);
    expect(r.name).toBe('settings');
    expectCreate(r, created);
    expect(r.object?.data).toEqual(data);
    expect(r.object?.metadata).toMatchObject({ labels: { app: 'shop' }, namespace: NS });

    m = mark();
    const updated = await call(200, 'PUT', `${base}/settings`, { ...created, data: { motd: 'put' } });
    r = logged(m, { ...q, operation: 'UPDATE' });
    expectUpdate(r, created);
    expect(r.object?.data).toEqual({ motd: 'put' });
    expect(r.object?.metadata?.resourceVersion).toBe(created.metadata?.resourceVersion as string);
    expect(r.oldObject?.data).toEqual(data);

    m = mark();
    const merged = await call(
      200,
      'PATCH',
      `${base}/settings`,
      { data: { merged: 'yes' } },
      'application/merge-patch+json',
    );
    r = logged(m, { ...q, operation: 'UPDATE' });
    expectUpdate(r, updated);
    expect(r.object?.data).toEqual({ motd: 'put', merged: 'yes' });
    expect(r.oldObject?.data).toEqual({ motd: 'put' });

    m = mark();
    const patched = await call(
      200,
      'PATCH',
      `${base}/settings`,
      [
        { op: 'replace', path: '/data/motd', value: 'json-patched' },
        { op: 'remove', path: '/data/merged' },
      ],
      'application/json-patch+json',
    );
    r = logged(m, { ...q, operation: 'UPDATE' });
    expectUpdate(r, merged);
    expect(r.object?.data).toEqual({ motd: 'json-patched' });
    expect(r.oldObject?.data).toEqual({ motd: 'put', merged: 'yes' });

    m = mark();
    await call(200, 'DELETE', `${base}/settings`);
    r = logged(m, { ...q, operation: 'DELETE' });
    expectDelete(r, patched);
    expect(r.oldObject?.data).toEqual({ motd: 'json-patched' });
  });

  it('logs a DELETE for each object when the user deletes a collection', async () => {
    const base = `/api/v1/namespaces/${NS}/configmaps`;
    const names = ['batch-a', 'batch-b', 'batch-c'];
    const created = new Map<string, KubeObject>();
    for (const name of names) {
      const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { batch: 'dc' } } };
      created.set(name, await call(201, 'POST', base, { ...cm, data: { name } }));
    }
    const m = mark();
    const res = (await call(200, 'DELETE', `${base}?labelSelector=batch%3Ddc`)) as { items?: KubeObject[] };
    expect(res.items?.map((i) => i.metadata?.name).sort()).toEqual(names);
    // The reviews of a collection delete carry no name: only the old object says which one each is.
    for (const name of names) {
      const q = { operation: 'DELETE', group: '', resource: 'configmaps', namespace: NS } as const;
      const r = logged(m, q, (req) => req.oldObject?.metadata?.name === name);
      expect(r.name).toBeUndefined();
      expectDelete(r, created.get(name) as KubeObject);
      expect(r.oldObject?.data).toEqual({ name });
    }
    // Nothing else: one DELETE per object and webhook, no line for the collection itself.
    expect(log.entries().length - m).toBe(names.length * 2);
  });

  it('logs a Deployment (apps group) create, update, status and scale updates and delete', async () => {
    const base = `/apis/apps/v1/namespaces/${NS}/deployments`;
    const q = { group: 'apps', resource: 'deployments', namespace: NS, name: 'web' } as const;
    const labels = { app: 'web' };
    let m = mark();
    const created = await call(201, 'POST', base, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } },
      },
    });
    let r = logged(m, { ...q, operation: 'CREATE' });
    expect(r.kind).toEqual({ group: 'apps', version: 'v1', kind: 'Deployment' });
    expect(r.resource).toEqual({ group: 'apps', version: 'v1', resource: 'deployments' });
    expectCreate(r, created);
    expect(r.object?.spec).toMatchObject({ replicas: 1, selector: { matchLabels: labels } });

    m = mark();
    const spec = created.spec as { template: { spec: { containers: { image: string }[] } } };
    const image = structuredClone(spec);
    (image.template.spec.containers[0] as { image: string }).image = 'nginx:1.28';
    const updated = await call(200, 'PUT', `${base}/web`, { ...created, spec: image });
    r = logged(m, { ...q, operation: 'UPDATE' });
    expectUpdate(r, created);
    expect(r.object?.spec).toMatchObject({ template: { spec: { containers: [{ image: 'nginx:1.28' }] } } });
    expect(r.oldObject?.spec).toMatchObject({
      template: { spec: { containers: [{ image: 'nginx:1.27' }] } },
    });

    m = mark();
    const status = { observedGeneration: 2, replicas: 1, readyReplicas: 1, availableReplicas: 1 };
    const withStatus = await call(200, 'PUT', `${base}/web/status`, { ...updated, status });
    r = logged(m, { ...q, subResource: 'status', operation: 'UPDATE' });
    expect(r.kind).toEqual({ group: 'apps', version: 'v1', kind: 'Deployment' });
    expect(r.subResource).toBe('status');
    expectUpdate(r, updated);
    expect(r.object?.status).toMatchObject(status);
    expect(r.oldObject?.status ?? {}).not.toMatchObject({ readyReplicas: 1 });

    m = mark();
    const scale = await call(200, 'PUT', `${base}/web/scale`, {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: 'web', namespace: NS },
      spec: { replicas: 3 },
    });
    expect(scale.spec).toEqual({ replicas: 3 });
    r = logged(m, { ...q, subResource: 'scale', operation: 'UPDATE' });
    expect(r.kind).toEqual({ group: 'autoscaling', version: 'v1', kind: 'Scale' });
    expect(r.resource).toEqual({ group: 'apps', version: 'v1', resource: 'deployments' });
    expect(r.subResource).toBe('scale');
    expect(r.object).toMatchObject({ kind: 'Scale', apiVersion: 'autoscaling/v1', spec: { replicas: 3 } });
    expect(r.oldObject).toMatchObject({ kind: 'Scale', spec: { replicas: 1 } });
    expect(r.options).toMatchObject({ kind: 'UpdateOptions' });

    const last = await call(200, 'GET', `${base}/web`);
    expect(last.metadata?.resourceVersion).not.toBe(withStatus.metadata?.resourceVersion as string);
    m = mark();
    await call(200, 'DELETE', `${base}/web`);
    r = logged(m, { ...q, operation: 'DELETE' });
    expectDelete(r, last);
    expect(r.oldObject?.spec).toMatchObject({ replicas: 3 });
  });

  it('logs cluster-scoped Namespace and ClusterRole (rbac group) changes when the user makes them', async () => {
    // A Namespace's review carries its own name as namespace; a ClusterRole's has no namespace.
    let m = mark();
    const ns = await call(201, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'e2e-scoped' },
    });
    const nsq = { group: '', resource: 'namespaces', namespace: 'e2e-scoped', name: 'e2e-scoped' } as const;
    let r = logged(m, { ...nsq, operation: 'CREATE' });
    expect(r.kind).toEqual({ group: '', version: 'v1', kind: 'Namespace' });
    expectCreate(r, ns);
    m = mark();
    const labelled = await call(
      200,
      'PATCH',
      '/api/v1/namespaces/e2e-scoped',
      { metadata: { labels: { team: 'audit' } } },
      'application/strategic-merge-patch+json',
    );
    r = logged(m, { ...nsq, operation: 'UPDATE' });
    expectUpdate(r, ns);
    expect(r.object?.metadata).toMatchObject({ labels: { team: 'audit' } });
    m = mark();
    await call(200, 'DELETE', '/api/v1/namespaces/e2e-scoped');
    r = logged(m, { ...nsq, operation: 'DELETE' });
    expectDelete(r, labelled);

    const base = '/apis/rbac.authorization.k8s.io/v1/clusterroles';
    const rq = { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', name: 'e2e-reader' } as const;
    const rule = { apiGroups: [''], resources: ['configmaps'], verbs: ['get'] };
    m = mark();
    const role = await call(201, 'POST', base, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'e2e-reader' },
      rules: [rule],
    });
    r = logged(m, { ...rq, operation: 'CREATE' });
    expect(r.kind).toEqual({ group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRole' });
    expect(r.namespace).toBeUndefined();
    expectCreate(r, role);
    expect(r.object?.rules).toEqual([rule]);
    m = mark();
    const widened = await call(200, 'PUT', `${base}/e2e-reader`, {
      ...role,
      rules: [{ ...rule, verbs: ['get', 'list', 'watch'] }],
    });
    r = logged(m, { ...rq, operation: 'UPDATE' });
    expectUpdate(r, role);
    expect(r.object?.rules).toEqual([{ ...rule, verbs: ['get', 'list', 'watch'] }]);
    expect(r.oldObject?.rules).toEqual([rule]);
    m = mark();
    await call(200, 'DELETE', `${base}/e2e-reader`);
    r = logged(m, { ...rq, operation: 'DELETE' });
    expectDelete(r, widened);
  });

  it('logs a CustomResourceDefinition and create, update and delete of one of its resources', async () => {
    const group = 'e2e.kube-audit-rest.example';
    const crdName = `widgets.${group}`;
    const crdPath = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crdName}`;
    let m = mark();
    const crd = await call(201, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: crdName },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } },
              },
            },
          },
        ],
      },
    });
    let r = logged(m, {
      operation: 'CREATE',
      group: 'apiextensions.k8s.io',
      resource: 'customresourcedefinitions',
      name: crdName,
    });
    expect(r.kind).toEqual({
      group: 'apiextensions.k8s.io',
      version: 'v1',
      kind: 'CustomResourceDefinition',
    });
    expectCreate(r, crd);
    await waitUntil(
      async () => {
        const got = await call(200, 'GET', crdPath);
        const conditions = (got.status as { conditions?: { type: string; status: string }[] }).conditions;
        return conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
      },
      15_000,
      `${crdName} Established`,
    );

    const base = `/apis/${group}/v1/namespaces/${NS}/widgets`;
    const wq = { group, resource: 'widgets', namespace: NS, name: 'gear' } as const;
    const widget = {
      apiVersion: `${group}/v1`,
      kind: 'Widget',
      metadata: { name: 'gear' },
      spec: { size: 3 },
    };
    // Established can precede the moment the resource is served; until then POST answers 404 before admission.
    m = mark();
    let created: KubeObject | undefined;
    await waitUntil(
      async () => {
        const res = await api.call('POST', base, widget);
        if (res.status === 201) created = res.body as KubeObject;
        else if (res.status !== 404) throw new Error(`POST ${base}: ${res.status} ${res.text}`);
        return created !== undefined;
      },
      15_000,
      `${base} served`,
    );
    r = logged(m, { ...wq, operation: 'CREATE' });
    expect(r.kind).toEqual({ group, version: 'v1', kind: 'Widget' });
    expect(r.resource).toEqual({ group, version: 'v1', resource: 'widgets' });
    expectCreate(r, created as KubeObject);
    expect(r.object?.spec).toEqual({ size: 3 });

    m = mark();
    const bigger = await call(200, 'PUT', `${base}/gear`, { ...created, spec: { size: 4 } });
    r = logged(m, { ...wq, operation: 'UPDATE' });
    expectUpdate(r, created as KubeObject);
    expect(r.object?.spec).toEqual({ size: 4 });
    expect(r.oldObject?.spec).toEqual({ size: 3 });

    m = mark();
    await call(200, 'DELETE', `${base}/gear`);
    r = logged(m, { ...wq, operation: 'DELETE' });
    expectDelete(r, bigger);
  });

  it('logs pods/exec, pods/attach and pods/portforward as CONNECT although the calls then fail', async () => {
    await call(201, 'POST', `/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'shell' },
      spec: { containers: [{ name: 'sh', image: 'busybox' }] },
    });
    const pod = `/api/v1/namespaces/${NS}/pods/shell`;
    const connects = [
      {
        sub: 'exec',
        query: '?command=sh&command=-c&command=id&stdin=true&stdout=true&tty=true&container=sh',
        kind: 'PodExecOptions',
        object: { stdin: true, stdout: true, tty: true, container: 'sh', command: ['sh', '-c', 'id'] },
      },
      {
        sub: 'attach',
        query: '?stdout=true&stderr=true&container=sh',
        kind: 'PodAttachOptions',
        object: { stdout: true, stderr: true, container: 'sh' },
      },
      {
        sub: 'portforward',
        query: '?ports=8080&ports=9090',
        kind: 'PodPortForwardOptions',
        object: { ports: [8080, 9090] },
      },
    ];
    for (const c of connects) {
      const m = mark();
      // Plain POST, no upgrade headers: admission runs, then the API server finds no node to proxy to.
      const res = await api.call('POST', `${pod}/${c.sub}${c.query}`);
      expect(res.status).toBe(400);
      expect(res.text).toContain('does not have a host assigned');
      const r = logged(m, {
        operation: 'CONNECT',
        group: '',
        resource: 'pods',
        subResource: c.sub,
        namespace: NS,
        name: 'shell',
      });
      expect(r.kind).toEqual({ group: '', version: 'v1', kind: c.kind });
      expect(r.requestSubResource).toBe(c.sub);
      expect(r.object).toEqual({ kind: c.kind, apiVersion: 'v1', ...c.object });
      expect(r.oldObject).toBeNull();
      expect(r.options).toBeNull();
      expect(r.dryRun).toBe(false);
    }
  });

  it('logs dry-run requests with dryRun true when called with dryRun=All', async () => {
    const base = `/api/v1/namespaces/${NS}/secrets`;
    let m = mark();
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'dry' },
      type: 'Opaque',
      data: { password: Buffer.from('hunter2').toString('base64') },
    };
    await call(201, 'POST', `${base}?dryRun=All`, secret);
    let r = logged(m, { operation: 'CREATE', group: '', resource: 'secrets', namespace: NS, name: 'dry' });
    expect(r.dryRun).toBe(true);
    expect(r.options).toMatchObject({ kind: 'CreateOptions', dryRun: ['All'] });
    expect(Object.keys(r.object?.data ?? {})).toEqual(['password']);
    expect(((r.object?.data ?? {}) as Record<string, string>).password).toMatch(REDACTED);
    expect(readFileSync(backend.logFile, 'utf8')).not.toContain(secret.data.password);
    expect((await api.call('GET', `${base}/dry`)).status).toBe(404);

    const cms = `/api/v1/namespaces/${NS}/configmaps`;
    const kept = await call(201, 'POST', cms, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'kept' },
    });
    m = mark();
    await call(200, 'DELETE', `${cms}/kept?dryRun=All`);
    r = logged(m, { operation: 'DELETE', group: '', resource: 'configmaps', namespace: NS, name: 'kept' });
    expect(r.dryRun).toBe(true);
    expect(r.options).toMatchObject({ kind: 'DeleteOptions', dryRun: ['All'] });
    expect(r.oldObject?.metadata?.uid).toBe(kept.metadata?.uid as string);
    expect((await api.call('GET', `${cms}/kept`)).status).toBe(200);
  });

  it('writes Secrets created and updated with every value redacted to a keyed hash, never the value', async () => {
    let m = mark();
    const data = {
      username: Buffer.from('admin').toString('base64'),
      password: Buffer.from('s3cr3t!').toString('base64'),
    };
    const created = await call(201, 'POST', `/api/v1/namespaces/${NS}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'db' },
      type: 'Opaque',
      data,
    });
    const r = logged(m, { operation: 'CREATE', group: '', resource: 'secrets', namespace: NS, name: 'db' });
    expect(r.kind).toEqual({ group: '', version: 'v1', kind: 'Secret' });
    expect(r.object?.metadata?.uid).toBe(created.metadata?.uid as string);
    const first = r.object?.data as Record<string, string>;
    expect(Object.keys(first).sort()).toEqual(['password', 'username']);
    for (const value of Object.values(first)) expect(value).toMatch(REDACTED);
    expect(first.username).not.toBe(first.password);

    // An update through stringData: the API server moves it into data; an unchanged value keeps its marker.
    m = mark();
    await call(
      200,
      'PATCH',
      `/api/v1/namespaces/${NS}/secrets/db`,
      { stringData: { username: 'root' } },
      'application/merge-patch+json',
    );
    const u = logged(m, { operation: 'UPDATE', group: '', resource: 'secrets', namespace: NS, name: 'db' });
    const after = u.object?.data as Record<string, string>;
    const before = u.oldObject?.data as Record<string, string>;
    expect(before).toEqual(first);
    expect(after.password).toBe(first.password);
    expect(after.username).toMatch(REDACTED);
    expect(after.username).not.toBe(first.username);

    const text = readFileSync(backend.logFile, 'utf8');
    for (const secret of [
      'admin',
      's3cr3t!',
      'root',
      data.username,
      data.password,
      Buffer.from('root').toString('base64'),
    ]) {
      expect(text).not.toContain(`"${secret}"`);
    }
  });

  it(
    'logs a ConfigMap at the 1 MiB data limit, and its update with both copies',
    async () => {
      const base = `/api/v1/namespaces/${NS}/configmaps`;
      const half = CONFIGMAP_DATA_LIMIT_BYTES / 2;
      const data = { a: 'a'.repeat(half), b: 'b'.repeat(half) };
      // One byte over is refused by validation, which runs before admission: no line.
      let m = mark();
      const over = await api.call('POST', base, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'too-big' },
        data: { ...data, c: 'c' },
      });
      expect(over.status).toBe(422);
      expect(log.entries().length).toBe(m);

      const created = await call(201, 'POST', base, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'big' },
        data,
      });
      let r = logged(m, {
        operation: 'CREATE',
        group: '',
        resource: 'configmaps',
        namespace: NS,
        name: 'big',
      });
      expectCreate(r, created);
      expect(r.object?.data).toEqual(data);

      m = mark();
      const changed = { a: 'A'.repeat(half), b: 'b'.repeat(half) };
      await call(200, 'PUT', `${base}/big`, { ...created, data: changed });
      r = logged(m, { operation: 'UPDATE', group: '', resource: 'configmaps', namespace: NS, name: 'big' });
      expectUpdate(r, created);
      expect(r.object?.data).toEqual(changed);
      expect(r.oldObject?.data).toEqual(data);
      const longest = Math.max(
        ...log
          .entries()
          .slice(m)
          .map((e) => Buffer.byteLength(e.text)),
      );
      expect(longest).toBeGreaterThan(2 * CONFIGMAP_DATA_LIMIT_BYTES);
    },
    TEST_TIMEOUT_MS,
  );

  it('writes every line compact, with a fresh timestamp as its last key and a uid of its own', () => {
    const entries = log.entries();
    const now = Date.now();
    const uids = new Set<string>();
    for (const { text, line } of entries) {
      expect(whitespaceOutsideStrings(text)).toBe(-1);
      expect(Object.keys(line)).toEqual(['kind', 'apiVersion', 'request', 'requestReceivedTimestamp']);
      expect(text).toEndWith(`,"requestReceivedTimestamp":"${line.requestReceivedTimestamp}"}`);
      expect(line.requestReceivedTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/);
      const at = Date.parse(line.requestReceivedTimestamp);
      expect(at).toBeGreaterThanOrEqual(suiteStart.getTime() - 1_000);
      expect(at).toBeLessThanOrEqual(now);
      expect(line.request.userInfo.username).toBe(USER);
      uids.add(line.request.uid);
    }
    expect(uids.size).toBe(entries.length);
  });

  it('leaves the API server with only 200s from both webhooks, one per line, and no rejections', async () => {
    const cp = cluster?.controlPlane;
    if (cp === undefined) throw new Error('no control plane');
    const metrics = await (await cp.fetch('/metrics')).text();
    const entries = log.entries();
    for (const [version, name] of Object.entries(webhookNames)) {
      const requests = series(metrics, 'apiserver_admission_webhook_request_total').filter((s) =>
        s.labels.includes(`name="${name}"`),
      );
      expect(requests.length).toBeGreaterThan(0);
      for (const s of requests) {
        expect(s.labels).toContain('code="200"');
        expect(s.labels).toContain('rejected="false"');
      }
      const sent = requests.reduce((sum, s) => sum + s.value, 0);
      expect(sent).toBe(entries.filter((e) => e.line.apiVersion === `admission.k8s.io/${version}`).length);
      for (const metric of [
        'apiserver_admission_webhook_rejection_count',
        'apiserver_admission_webhook_fail_open_count',
      ])
        expect(series(metrics, metric).filter((s) => s.labels.includes(`name="${name}"`))).toEqual([]);
    }
  });

  it('counts every line as processed and no invalid request or write failure in its own metrics', async () => {
    const text = await (await fetch(`http://127.0.0.1:${backend.server.metricsPort}/metrics`)).text();
    expect(series(text, 'kube_audit_rest_invalid_requests_total').filter((s) => s.value !== 0)).toEqual([]);
    expect(series(text, 'kube_audit_rest_write_failures_total')).toEqual([{ labels: '', value: 0 }]);
    const processed = series(text, 'kube_audit_rest_valid_requests_processed_total');
    expect(processed).toEqual([{ labels: '', value: log.entries().length }]);
  });
});
