/**
 * @module The API calls the end-to-end test of compiled webhook configurations makes: users in several
 * groups, across namespaces, on core, apps, batch, RBAC, coordination and events resources and their
 * subresources (status, scale, token, exec, attach, proxy), with every admission operation. Each call
 * admits exactly one request, and no two requests look alike to admission (user, operation, resource,
 * subresource, namespace, name), so the requests the webhooks receive can be told apart.
 *
 * Names and namespaces come from test/audit/policy/generate.ts's vocabulary, so random policies select
 * some of them.
 */

/** A user the calls impersonate; the API server adds `system:authenticated` to the groups. */
export type TestUser = {
  readonly name: string;
  readonly groups: readonly string[];
  readonly objectName: string;
};

/** One API call. `connect`: a CONNECT, which admission sees and which then fails (no kubelet here). */
export type PlannedCall = {
  readonly user: TestUser;
  readonly method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly connect?: boolean;
};

/** The users: names and groups from the random policies' vocabulary, and one in no group of its own. */
export const TEST_USERS: readonly TestUser[] = [
  { name: 'alice@example.com', groups: ['devs'], objectName: 'web-0' },
  { name: 'bob', groups: ['ops', 'devs'], objectName: 'api' },
  {
    name: 'system:serviceaccount:kube-system:replicaset-controller',
    groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system'],
    objectName: 'controller-leader',
  },
  { name: 'system:node:node-1', groups: ['system:nodes'], objectName: 'node-1' },
  { name: 'carol', groups: [], objectName: 'admin' },
];

/** The namespaces calls go to; `shop` and `team-a` are made by the test. */
export const TEST_NAMESPACES = ['default', 'kube-system', 'shop', 'team-a'] as const;

const MERGE_PATCH = 'application/merge-patch+json';
const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';

function podSpec() {
  return { containers: [{ name: 'c', image: PAUSE_IMAGE }] };
}

/** The namespaced calls of `user` in `ns`: create, change and remove one object of each kind. */
function namespacedCalls(user: TestUser, ns: string): PlannedCall[] {
  const n = user.objectName;
  const core = `/api/v1/namespaces/${ns}`;
  const apps = `/apis/apps/v1/namespaces/${ns}`;
  const meta = { name: n };
  const calls: Omit<PlannedCall, 'user'>[] = [
    // ConfigMap: create, replace (PUT), delete.
    {
      method: 'POST',
      path: `${core}/configmaps`,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta },
    },
    {
      method: 'PUT',
      path: `${core}/configmaps/${n}`,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { a: 'b' } },
    },
    { method: 'DELETE', path: `${core}/configmaps/${n}` },
    // Secret: create, patch, delete.
    {
      method: 'POST',
      path: `${core}/secrets`,
      body: { apiVersion: 'v1', kind: 'Secret', metadata: meta, stringData: { k: 'v' } },
    },
    {
      method: 'PATCH',
      path: `${core}/secrets/${n}`,
      body: { metadata: { labels: { changed: 'yes' } } },
      contentType: MERGE_PATCH,
    },
    { method: 'DELETE', path: `${core}/secrets/${n}` },
    // Pod: create, status, exec and attach (CONNECT), delete.
    {
      method: 'POST',
      path: `${core}/pods`,
      body: { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec: podSpec() },
    },
    {
      method: 'PATCH',
      path: `${core}/pods/${n}/status`,
      body: { status: { conditions: [{ type: 'example.com/checked', status: 'True' }] } },
      contentType: MERGE_PATCH,
    },
    { method: 'POST', path: `${core}/pods/${n}/exec?command=true&stdout=true`, connect: true },
    { method: 'POST', path: `${core}/pods/${n}/attach?stdout=true`, connect: true },
    { method: 'DELETE', path: `${core}/pods/${n}?gracePeriodSeconds=0` },
    // Deployment: create, scale, status, delete.
    {
      method: 'POST',
      path: `${apps}/deployments`,
      body: {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: meta,
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: n } },
          template: { metadata: { labels: { app: n } }, spec: podSpec() },
        },
      },
    },
    {
      method: 'PUT',
      path: `${apps}/deployments/${n}/scale`,
      body: {
        apiVersion: 'autoscaling/v1',
        kind: 'Scale',
        metadata: { name: n, namespace: ns },
        spec: { replicas: 2 },
      },
    },
    {
      method: 'PATCH',
      path: `${apps}/deployments/${n}/status`,
      body: { status: { observedGeneration: 1 } },
      contentType: MERGE_PATCH,
    },
    { method: 'DELETE', path: `${apps}/deployments/${n}` },
    // Events, both APIs.
    {
      method: 'POST',
      path: `${core}/events`,
      body: {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${n}.1` },
        involvedObject: { kind: 'Pod', name: n, namespace: ns },
        reason: 'Tested',
        message: 'made by the test',
      },
    },
    {
      method: 'POST',
      path: `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
      body: {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: `${n}.2` },
        eventTime: '2026-01-01T00:00:00.000000Z',
        reportingController: 'example.com/test',
        reportingInstance: 'test',
        action: 'Test',
        reason: 'Tested',
        type: 'Normal',
        regarding: { kind: 'Pod', name: n, namespace: ns },
      },
    },
    // Lease: create, patch.
    {
      method: 'POST',
      path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
      body: {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: meta,
        spec: { holderIdentity: n },
      },
    },
    {
      method: 'PATCH',
      path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${n}`,
      body: { spec: { leaseDurationSeconds: 15 } },
      contentType: MERGE_PATCH,
    },
    // Service: create, proxy (CONNECT), delete.
    {
      method: 'POST',
      path: `${core}/services`,
      body: { apiVersion: 'v1', kind: 'Service', metadata: meta, spec: { ports: [{ port: 80 }] } },
    },
    { method: 'POST', path: `${core}/services/${n}/proxy/`, connect: true },
    { method: 'DELETE', path: `${core}/services/${n}` },
    // ServiceAccount: create, token (a create with a subresource, so with a name), delete.
    {
      method: 'POST',
      path: `${core}/serviceaccounts`,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta },
    },
    {
      method: 'POST',
      path: `${core}/serviceaccounts/${n}/token`,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['test'] } },
    },
    { method: 'DELETE', path: `${core}/serviceaccounts/${n}` },
    // Job: create, delete.
    {
      method: 'POST',
      path: `/apis/batch/v1/namespaces/${ns}/jobs`,
      body: {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: meta,
        spec: { template: { spec: { ...podSpec(), restartPolicy: 'Never' } } },
      },
    },
    { method: 'DELETE', path: `/apis/batch/v1/namespaces/${ns}/jobs/${n}?propagationPolicy=Background` },
  ];
  return calls.map((call) => ({ ...call, user }));
}

/** The cluster-scoped calls of `user`: a Namespace, a Node and a ClusterRole, each made, changed, removed. */
function clusterCalls(user: TestUser): PlannedCall[] {
  const n = user.objectName;
  const role = `${n}-role`;
  const calls: Omit<PlannedCall, 'user'>[] = [
    // A Namespace named after the user's objects: its create has no namespace to the policy, its update one.
    {
      method: 'POST',
      path: '/api/v1/namespaces',
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: n } },
    },
    {
      method: 'PATCH',
      path: `/api/v1/namespaces/${n}`,
      body: { metadata: { labels: { changed: 'yes' } } },
      contentType: MERGE_PATCH,
    },
    { method: 'DELETE', path: `/api/v1/namespaces/${n}` },
    {
      method: 'POST',
      path: '/api/v1/nodes',
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name: n } },
    },
    {
      method: 'PATCH',
      path: `/api/v1/nodes/${n}/status`,
      body: { status: { capacity: { cpu: '1' } } },
      contentType: MERGE_PATCH,
    },
    { method: 'POST', path: `/api/v1/nodes/${n}/proxy/`, connect: true },
    { method: 'DELETE', path: `/api/v1/nodes/${n}` },
    {
      method: 'POST',
      path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: role },
        rules: [],
      },
    },
    {
      method: 'PATCH',
      path: `/apis/rbac.authorization.k8s.io/v1/clusterroles/${role}`,
      body: { metadata: { labels: { changed: 'yes' } } },
      contentType: MERGE_PATCH,
    },
    { method: 'DELETE', path: `/apis/rbac.authorization.k8s.io/v1/clusterroles/${role}` },
  ];
  return calls.map((call) => ({ ...call, user }));
}

/**
 * The calls of each user, in the order they must run (an object is made before it is changed): the
 * cluster-scoped ones, then two rounds over the namespaces, each user in a different one each round.
 */
export function planCalls(users: readonly TestUser[] = TEST_USERS): PlannedCall[][] {
  return users.map((user, i) => [
    ...clusterCalls(user),
    ...[0, 1].flatMap((round) =>
      namespacedCalls(user, TEST_NAMESPACES[(i + round) % TEST_NAMESPACES.length] as string),
    ),
  ]);
}
