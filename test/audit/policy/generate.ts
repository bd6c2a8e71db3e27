/**
 * @module Seeded random audit Policies and AdmissionReviews for the differential test against k8s.io/apiserver:
 * every selector kind and wildcard form, omitStages and omitManagedFields at both levels, and requests whose
 * users, groups, namespaces, resources and names overlap the policies' values so that rules do match.
 */
import { stringify } from 'yaml';
import type { AdmissionFields, AdmissionResource } from '../../../src/audit/policy/types.ts';
import type { Rng } from '../../helpers/json-gen.ts';

export { createRng, type Rng } from '../../helpers/json-gen.ts';

const USERS = [
  'alice@example.com',
  'bob',
  'system:kube-proxy',
  'system:apiserver',
  'system:serviceaccount:kube-system:replicaset-controller',
  'system:node:node-1',
];
const GROUPS = [
  'system:authenticated',
  'system:masters',
  'system:serviceaccounts',
  'system:serviceaccounts:kube-system',
  'system:nodes',
  'devs',
  'ops',
];
// "create", "update" and "delete" are what admission shows; the others never match a webhook's request.
const VERBS = [
  'create',
  'update',
  'delete',
  'create',
  'update',
  'delete',
  'patch',
  'get',
  'deletecollection',
  'CREATE',
];
const NAMESPACES = ['', 'default', 'kube-system', 'shop', 'team-a'];
const NAMES = ['web-0', 'api', 'controller-leader', 'team-a', 'kube-system', 'node-1', 'admin', ''];
const POLICY_GROUPS = [
  '',
  '',
  '*',
  'apps',
  'batch',
  'rbac.authorization.k8s.io',
  'extensions',
  'networking.k8s.io',
  'example.com',
  'autoscaling',
];
const POLICY_RESOURCES = [
  'pods',
  'pods/exec',
  'pods/*',
  'pods/status',
  '*/scale',
  '*/status',
  '*',
  'deployments',
  'deployments/scale',
  'namespaces',
  'namespaces/status',
  'secrets',
  'configmaps',
  'jobs',
  'nodes',
  'nodes/proxy',
  'clusterroles',
  'widgets',
  'widgets/*',
  'services/proxy',
  'ingresses',
  'serviceaccounts/token',
  // Degenerate forms upstream accepts: each must match exactly what upstream's string tests match.
  '*/*',
  '*/',
  '/*',
  'pods/',
];
const NON_RESOURCE_URLS = ['/api*', '/version', '*', '/healthz*'];
const LEVEL_VALUES = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
const STAGE_VALUES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;

/** Up to `max` distinct items of `items`, in random order. */
function some<T>(rng: Rng, items: readonly T[], max: number): T[] {
  const count = 1 + rng.int(max);
  const chosen = new Set<T>();
  for (let i = 0; i < count; i++) chosen.add(rng.pick(items));
  return [...chosen];
}

function randomRule(rng: Rng): Record<string, unknown> {
  const rule: Record<string, unknown> = { level: rng.pick(LEVEL_VALUES) };
  if (rng.chance(0.25)) rule.users = some(rng, USERS, 3);
  if (rng.chance(0.25)) rule.userGroups = some(rng, GROUPS, 3);
  if (rng.chance(0.3)) rule.verbs = some(rng, VERBS, 3);
  if (rng.chance(0.08)) {
    rule.nonResourceURLs = some(rng, NON_RESOURCE_URLS, 2);
  } else {
    if (rng.chance(0.3)) rule.namespaces = some(rng, NAMESPACES, 3);
    if (rng.chance(0.6)) {
      rule.resources = Array.from({ length: 1 + rng.int(3) }, () => {
        const group: Record<string, unknown> = { group: rng.pick(POLICY_GROUPS) };
        if (rng.chance(0.8)) {
          group.resources = some(rng, POLICY_RESOURCES, 4);
          if (rng.chance(0.25)) group.resourceNames = some(rng, NAMES, 3);
        }
        return group;
      });
    }
  }
  if (rng.chance(0.3)) rule.omitStages = some(rng, STAGE_VALUES, 3);
  if (rng.chance(0.4)) rule.omitManagedFields = rng.chance(0.5);
  return rule;
}

/** A random valid Policy, as YAML or JSON text (both forms the API server reads). */
export function randomPolicyText(rng: Rng): string {
  const policy: Record<string, unknown> = { apiVersion: 'audit.k8s.io/v1', kind: 'Policy' };
  if (rng.chance(0.4)) policy.omitStages = some(rng, STAGE_VALUES, 2);
  if (rng.chance(0.4)) policy.omitManagedFields = rng.chance(0.5);
  const rules = Array.from({ length: 1 + rng.int(7) }, () => randomRule(rng));
  if (rng.chance(0.3)) rules.push({ level: rng.pick(LEVEL_VALUES) }); // a catch-all last
  policy.rules = rules;
  // version 1.1: strings the API server's YAML would read otherwise get quoted.
  return rng.chance(0.5) ? JSON.stringify(policy) : stringify(policy, { version: '1.1' });
}

/** A resource the catalogue knows: where it lives, and which subresources go with which operations. */
type CatalogueEntry = {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  subresources: readonly (readonly [sub: string, operation: string, kind: string])[];
};

const CATALOGUE: readonly CatalogueEntry[] = [
  {
    group: '',
    version: 'v1',
    resource: 'pods',
    kind: 'Pod',
    namespaced: true,
    subresources: [
      ['status', 'UPDATE', 'Pod'],
      ['exec', 'CONNECT', 'PodExecOptions'],
      ['attach', 'CONNECT', 'PodAttachOptions'],
      ['portforward', 'CONNECT', 'PodPortForwardOptions'],
      ['proxy', 'CONNECT', 'PodProxyOptions'],
      ['binding', 'CREATE', 'Binding'],
      ['eviction', 'CREATE', 'Eviction'],
      ['ephemeralcontainers', 'UPDATE', 'Pod'],
    ],
  },
  {
    group: '',
    version: 'v1',
    resource: 'namespaces',
    kind: 'Namespace',
    namespaced: false,
    subresources: [
      ['status', 'UPDATE', 'Namespace'],
      ['finalize', 'UPDATE', 'Namespace'],
    ],
  },
  { group: '', version: 'v1', resource: 'secrets', kind: 'Secret', namespaced: true, subresources: [] },
  { group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true, subresources: [] },
  {
    group: '',
    version: 'v1',
    resource: 'services',
    kind: 'Service',
    namespaced: true,
    subresources: [['proxy', 'CONNECT', 'ServiceProxyOptions']],
  },
  {
    group: '',
    version: 'v1',
    resource: 'serviceaccounts',
    kind: 'ServiceAccount',
    namespaced: true,
    subresources: [['token', 'CREATE', 'TokenRequest']],
  },
  {
    group: '',
    version: 'v1',
    resource: 'nodes',
    kind: 'Node',
    namespaced: false,
    subresources: [
      ['status', 'UPDATE', 'Node'],
      ['proxy', 'CONNECT', 'NodeProxyOptions'],
    ],
  },
  {
    group: 'apps',
    version: 'v1',
    resource: 'deployments',
    kind: 'Deployment',
    namespaced: true,
    subresources: [
      ['scale', 'UPDATE', 'Scale'],
      ['status', 'UPDATE', 'Deployment'],
    ],
  },
  {
    group: 'apps',
    version: 'v1',
    resource: 'statefulsets',
    kind: 'StatefulSet',
    namespaced: true,
    subresources: [['scale', 'UPDATE', 'Scale']],
  },
  { group: 'batch', version: 'v1', resource: 'jobs', kind: 'Job', namespaced: true, subresources: [] },
  {
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    resource: 'clusterroles',
    kind: 'ClusterRole',
    namespaced: false,
    subresources: [],
  },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    resource: 'ingresses',
    kind: 'Ingress',
    namespaced: true,
    subresources: [['status', 'UPDATE', 'Ingress']],
  },
  {
    group: 'example.com',
    version: 'v1',
    resource: 'widgets',
    kind: 'Widget',
    namespaced: true,
    subresources: [
      ['scale', 'UPDATE', 'Scale'],
      ['status', 'UPDATE', 'Widget'],
    ],
  },
];

/** A converted equivalent for `matchPolicy: Equivalent`: what `resource` says when the URL named another. */
const EQUIVALENTS: Readonly<Record<string, AdmissionResource>> = {
  ingresses: { group: 'extensions', version: 'v1beta1', resource: 'ingresses' },
  deployments: { group: 'extensions', version: 'v1beta1', resource: 'deployments' },
  widgets: { group: 'example.com', version: 'v1beta1', resource: 'widgets' },
};

/** A random AdmissionReview (admission.k8s.io/v1) with the request fields the policy mapping reads. */
export function randomReview(rng: Rng, uid: number): Record<string, unknown> {
  const entry = rng.pick(CATALOGUE);
  let operation = rng.pick(['CREATE', 'UPDATE', 'DELETE']);
  let sub = '';
  let kind = entry.kind;
  if (entry.subresources.length > 0 && rng.chance(0.35)) {
    const [s, op, k] = rng.pick(entry.subresources);
    sub = s;
    kind = k;
    // Now and then an operation that does not go with the subresource: the mapping must not care.
    operation = rng.chance(0.9) ? op : rng.pick(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);
  }
  const name = rng.pick(NAMES);
  let namespace = entry.namespaced ? rng.pick(NAMESPACES.filter((n) => n !== '')) : '';
  if (entry.resource === 'namespaces') namespace = name; // admission names a Namespace's own namespace
  const url = { group: entry.group, version: entry.version, resource: entry.resource };
  const equivalent = EQUIVALENTS[entry.resource];
  const admitted = equivalent !== undefined && rng.chance(0.3) ? equivalent : url;
  const request: Record<string, unknown> = {
    uid: `00000000-0000-0000-0000-${String(uid).padStart(12, '0')}`,
    kind: { group: entry.group, version: entry.version, kind },
    resource: admitted,
  };
  if (sub !== '') request.subResource = sub;
  // requestResource is absent from reviews of API servers before 1.15, and from hand-made ones.
  if (rng.chance(0.85)) {
    request.requestKind = request.kind;
    request.requestResource = url;
    if (sub !== '') request.requestSubResource = sub;
  } else if (admitted !== url) {
    request.resource = url; // without requestResource, resource is the URL's
  }
  if (name !== '' || rng.chance(0.5)) request.name = name;
  if (namespace !== '' || rng.chance(0.3)) request.namespace = namespace;
  request.operation = operation;
  const userInfo: Record<string, unknown> = {};
  if (rng.chance(0.97)) userInfo.username = rng.pick(USERS);
  if (rng.chance(0.9)) userInfo.groups = rng.chance(0.1) ? [] : some(rng, GROUPS, 3);
  request.userInfo = userInfo;
  request.dryRun = false;
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request };
}

/** The AdmissionFields of a decoded AdmissionReview's request, read as plainly as the record would. */
export function fieldsOfReview(review: { request: Record<string, unknown> }): AdmissionFields {
  const request = review.request as Record<string, never>;
  return {
    operation: request.operation ?? '',
    userInfo: request.userInfo ?? {},
    resource: request.resource,
    subResource: request.subResource,
    requestResource: request.requestResource,
    requestSubResource: request.requestSubResource,
    kind: request.kind,
    name: request.name,
    namespace: request.namespace,
  };
}
