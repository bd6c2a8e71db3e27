/**
 * Compiled webhook configurations behind a real kube-apiserver: for generated requests and policies, the
 * requests the API server sends each webhook are exactly those its policy records above None, as
 * kube-audit-rest's own evaluator decides on what a webhook that sees everything received; nothing the
 * policy records is skipped. kube-audit-rest itself, run with a typical policy and its compiled
 * configuration, writes exactly those lines and is never called for one it would drop. The API server's
 * own metrics count the calls made and saved, also on a replay of the benchmark's mix of requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attributesFromAdmission } from '../src/audit/policy/attributes.ts';
import { createPolicyEvaluator } from '../src/audit/policy/evaluate.ts';
import { loadPolicy } from '../src/audit/policy/load.ts';
import type { AdmissionFields, Policy } from '../src/audit/policy/types.ts';
import { compileWebhookConfiguration } from '../src/webhook-config/compile.ts';
import { CONFIGMAP_1MIB, MIX_WEIGHTS } from '../testing/bench/corpus.ts';
import type { ControlPlane } from '../testing/control-plane.ts';
import { missingBinariesMessage, missingControlPlaneBinaries } from '../testing/control-plane.ts';
import { createRng, randomPolicyText } from './audit/policy/generate.ts';
import { makeServerCert } from './helpers/certs.ts';
import type { AdmissionRequest } from './helpers/e2e-audit-log.ts';
import {
  bindClusterAdmin,
  type E2eCluster,
  type KubeAuditRestBackend,
  kubeAuditRestBackend,
  startE2eCluster,
} from './helpers/e2e-cluster.ts';
import type { WebhookConfiguration } from './helpers/e2e-webhook.ts';
import { waitUntil } from './helpers/server-process.ts';
import { type PlannedCall, planCalls, TEST_NAMESPACES, TEST_USERS } from './webhook-config/request-plan.ts';

/** Control plane, webhook registration, and a cold build of the executable. */
const SETUP_TIMEOUT_MS = 600_000;
/** The calls of all users, a few thousand webhook calls behind them, on two shared cores. */
const CALLS_TIMEOUT_MS = 300_000;
/** How long a new webhook configuration may take to be used. */
const EFFECTIVE_DEADLINE_MS = 20_000;
/** Seeds of the random policies (test/audit/policy/generate.ts). */
const FIRST_SEED = 20_261_220;
const RANDOM_POLICIES = 40;
/** The user whose marker ConfigMaps show a configuration is in use; every policy here records them. */
const MARKER_USER = 'kar-marker';
/** Groups of the user whose group tests cost the most CEL can be asked to afford (see cel.ts). */
const MANY_GROUPS = 1000;

/** What the benchmark's operators would write first: drop the heartbeats and the events. */
const TYPICAL_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{ group: coordination.k8s.io, resources: [leases] }]
  - level: None
    resources: [{ group: "", resources: [events] }, { group: events.k8s.io, resources: [events] }]
  - level: Metadata
    resources: [{ group: "", resources: [secrets] }]
  - level: RequestResponse
`;

/** Forms the random policies may miss: None shadowing, wildcards, names on creates, namespace creates. */
const EDGE_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    userGroups: [devs]
    resources: [{ group: "", resources: [pods/exec] }]
  - level: Request
    resources: [{ group: "", resources: ["pods/*"] }]
  - level: None
    namespaces: [""]
    verbs: [update, delete]
  - level: Metadata
    verbs: [create]
    resources: [{ group: "", resources: [serviceaccounts/token, configmaps, namespaces], resourceNames: [api, admin, ""] }]
  - level: None
    resources: [{ group: apps, resources: ["*/scale"] }]
  - level: RequestResponse
    userGroups: ["system:nodes", ops]
    namespaces: [kube-system, shop, ""]
  - level: Metadata
    resources: [{ group: "*", resources: ["*/status"] }, { group: coordination.k8s.io }, { group: batch, resources: ["*"] }]
  - level: Request
    users: ["system:serviceaccount:kube-system:replicaset-controller", carol]
    verbs: [delete]
`;

/** Many group tests, so that the cost bound is near the API server's limit; the last rule is reached. */
function costlyPolicy(): string {
  const rules = Array.from({ length: 20 }, (_, i) => {
    const groups = Array.from({ length: 20 }, (_, j) => `"team-${i}-${j}"`).join(', ');
    return `  - level: ${i % 2 === 0 ? 'None' : 'Metadata'}\n    userGroups: [${groups}]`;
  });
  return `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules.join('\n')}\n  - level: Metadata\n    userGroups: [devs]\n`;
}

const missing = missingControlPlaneBinaries();
if (missing.length > 0) throw new Error(missingBinariesMessage(missing, process.env.CI !== undefined));

function load(text: string, source: string): Policy {
  const loaded = loadPolicy(text, source);
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  return loaded.policy;
}

/** `policy` with a first rule that records the marker user's calls, so the marker shows the webhook is live. */
function withMarker(policy: Policy): Policy {
  const marker = load(
    `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n    users: [${MARKER_USER}]\n    verbs: [create]\n    resources: [{ group: "", resources: [configmaps] }]\n`,
    'marker',
  ).rules;
  return { ...policy, rules: [...marker, ...policy.rules] };
}

/** What identifies a request to admission; unique across the planned calls. */
function keyOf(r: AdmissionRequest): string {
  const url = r.requestResource ?? r.resource;
  return [
    r.userInfo.username,
    r.operation,
    url.group,
    url.resource,
    r.requestSubResource ?? '',
    r.namespace ?? '',
    r.name ?? '',
  ].join('|');
}

function fieldsOf(r: AdmissionRequest): AdmissionFields {
  return {
    operation: r.operation,
    userInfo: r.userInfo,
    resource: r.resource,
    subResource: r.subResource,
    requestResource: r.requestResource,
    requestSubResource: r.requestSubResource,
    kind: r.kind,
    name: r.name,
    namespace: r.namespace,
  };
}

/** An HTTPS call as the admin, impersonating `user` in all its groups (node's https sends one header per group). */
function callAs(
  cp: ControlPlane,
  agent: https.Agent,
  user: { name: string; groups: readonly string[] },
  call: Pick<PlannedCall, 'method' | 'path' | 'body' | 'contentType'>,
): Promise<{ status: number; text: string }> {
  const { port } = new URL(cp.url);
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  const headers: Record<string, string | string[]> = {
    Authorization: `Bearer ${cp.token}`,
    Accept: 'application/json',
    'Impersonate-User': user.name,
  };
  if (user.groups.length > 0) headers['Impersonate-Group'] = [...user.groups];
  if (body !== undefined) headers['Content-Type'] = call.contentType ?? 'application/json';
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: Number(port),
        method: call.method,
        path: call.path,
        ca: cp.caPem,
        agent,
        headers,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sums a counter of the API server's /metrics per value of `by`, over series whose labels include `where`. */
async function apiServerCounter(
  cp: ControlPlane,
  metric: string,
  by: string,
  where: Record<string, string> = {},
): Promise<Map<string, number>> {
  const text = await (await cp.fetch('/metrics')).text();
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const labels = Object.fromEntries(
      [...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] as string, m[2] as string]),
    );
    if (Object.entries(where).some(([k, v]) => labels[k] !== v)) continue;
    const key = labels[by] ?? '';
    sums.set(key, (sums.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return sums;
}

/** A webhook backend answering "allowed" that keeps every request it gets, per URL path. */
function startCaptureServer(cert: { cert: string; key: string }) {
  const received = new Map<string, AdmissionRequest[]>();
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    tls: { cert: cert.cert, key: cert.key },
    async fetch(req) {
      const review = (await req.json()) as { apiVersion: string; request: AdmissionRequest };
      const path = new URL(req.url).pathname;
      const list = received.get(path) ?? [];
      list.push(review.request);
      received.set(path, list);
      return Response.json({
        apiVersion: review.apiVersion,
        kind: 'AdmissionReview',
        response: { uid: review.request.uid, allowed: true },
      });
    },
  });
  return { server, received, url: (path: string) => `https://127.0.0.1:${server.port}${path}` };
}

type PolicyCase = {
  readonly label: string;
  readonly path: string;
  readonly policy: Policy;
  readonly webhook: string;
};

describe('compiled webhook configurations behind a real kube-apiserver', () => {
  let dir: string;
  let cluster: E2eCluster;
  let backend: KubeAuditRestBackend;
  let cp: ControlPlane;
  let agent: https.Agent;
  let capture: ReturnType<typeof startCaptureServer>;
  let typical: Policy;
  let kubeAuditRestWebhook: string;
  const cases: PolicyCase[] = [];
  const manyGroupsUser = {
    name: 'many-groups',
    groups: [...Array.from({ length: MANY_GROUPS - 1 }, (_, i) => `member-${i}`), 'devs'],
  };
  /** The key of every call made as a test user, and whether it must have succeeded. */
  const made: { user: string; status: number; text: string; connect: boolean }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kar-e2e-webhook-config-'));
    const policyFile = join(dir, 'typical-policy.yaml');
    writeFileSync(policyFile, TYPICAL_POLICY);
    typical = load(TYPICAL_POLICY, policyFile);
    cluster = await startE2eCluster({
      backend: (cert, d) => kubeAuditRestBackend(cert, d, [`--policy-file=${policyFile}`]),
      markerUser: MARKER_USER,
      webhookConfiguration: ({ url, caPem }) => {
        const compiled = compileWebhookConfiguration(typical, {
          target: { url },
          caBundle: Buffer.from(caPem).toString('base64'),
          failurePolicy: 'Fail',
          webhookName: 'typical.kube-audit-rest.test',
        });
        if (compiled.kind !== 'configuration') throw new Error('the typical policy records nothing');
        return JSON.parse(JSON.stringify(compiled.configuration)) as WebhookConfiguration;
      },
    });
    cp = cluster.controlPlane;
    backend = cluster.backend as KubeAuditRestBackend;
    kubeAuditRestWebhook = cluster.webhookConfiguration.webhooks[0]?.name as string;
    agent = new https.Agent({ keepAlive: true, maxSockets: TEST_USERS.length + 1 });

    const cert = await makeServerCert(dir, cluster.ca, {
      name: 'capture',
      dnsNames: [],
      ipAddresses: ['127.0.0.1'],
    });
    capture = startCaptureServer(cert);

    const fixtures = join(import.meta.dir, 'fixtures', 'policy');
    const named: [string, Policy][] = [
      ['typical', typical],
      ['edge', load(EDGE_POLICY, 'edge')],
      ['costly', load(costlyPolicy(), 'costly')],
      [
        'kubernetes-docs',
        load(readFileSync(join(fixtures, 'kubernetes-docs-audit-policy.yaml'), 'utf8'), 'docs'),
      ],
      ['falco', load(readFileSync(join(fixtures, 'falco-k8saudit-audit-policy.yaml'), 'utf8'), 'falco')],
      ...Array.from({ length: RANDOM_POLICIES }, (_, i): [string, Policy] => [
        `seed-${FIRST_SEED + i}`,
        load(randomPolicyText(createRng(FIRST_SEED + i)), `seed ${FIRST_SEED + i}`),
      ]),
    ];
    const caBundle = Buffer.from(cluster.ca.cert).toString('base64');
    const webhooks: unknown[] = [
      // The ground truth: every request, as admission describes it.
      {
        name: 'truth.kube-audit-rest.test',
        admissionReviewVersions: ['v1'],
        clientConfig: { url: capture.url('/truth'), caBundle },
        rules: [{ operations: ['*'], apiGroups: ['*'], apiVersions: ['*'], resources: ['*/*'], scope: '*' }],
        failurePolicy: 'Fail',
        sideEffects: 'None',
        timeoutSeconds: 10,
      },
    ];
    named.push(['edge, matchPolicy Exact', load(EDGE_POLICY, 'edge')]);
    named.forEach(([label, policy], i) => {
      const marked = withMarker(policy);
      const path = `/policy-${i}`;
      const webhook = `policy-${i}.kube-audit-rest.test`;
      const compiled = compileWebhookConfiguration(marked, {
        target: { url: capture.url(path) },
        caBundle,
        failurePolicy: 'Fail',
        timeoutSeconds: 10,
        webhookName: webhook,
        matchPolicy: label.endsWith('Exact') ? 'Exact' : 'Equivalent',
      });
      if (compiled.kind !== 'configuration') throw new Error(`${label}: records nothing`);
      if (compiled.match.fallback.length > 0)
        throw new Error(`${label}: ${compiled.match.fallback.join('; ')}`);
      webhooks.push(compiled.configuration.webhooks[0]);
      cases.push({ label, path, policy: marked, webhook });
    });
    const res = await cp.fetch('/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name: 'policies' },
        webhooks,
      }),
    });
    if (res.status !== 201)
      throw new Error(`registering the policies' webhooks: ${res.status} ${await res.text()}`);

    // Live once every webhook has seen one marker ConfigMap.
    let markers = 0;
    await waitUntil(
      async () => {
        const name = `policies-marker-${++markers}`;
        await callAs(
          cp,
          agent,
          { name: MARKER_USER, groups: ['system:masters'] },
          {
            method: 'POST',
            path: '/api/v1/namespaces/default/configmaps',
            body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } },
          },
        );
        return ['/truth', ...cases.map((c) => c.path)].every((path) =>
          (capture.received.get(path) ?? []).some((r) => r.name === name),
        );
      },
      EFFECTIVE_DEADLINE_MS,
      'every webhook of the policies configuration to be called',
    );

    for (const user of [...TEST_USERS, manyGroupsUser]) await bindClusterAdmin(cp, user.name);
    for (const ns of TEST_NAMESPACES.filter((n) => n !== 'default' && n !== 'kube-system')) {
      const made = await cp.fetch('/api/v1/namespaces', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }),
      });
      if (made.status !== 201) throw new Error(`namespace ${ns}: ${made.status} ${await made.text()}`);
    }
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    agent?.destroy();
    capture?.server.stop(true);
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The requests of test users that `path` received, by key. */
  const testRequests = (path: string): AdmissionRequest[] => {
    const users = new Set([...TEST_USERS.map((u) => u.name), manyGroupsUser.name]);
    return (capture.received.get(path) ?? []).filter((r) => users.has(r.userInfo.username));
  };

  it(
    'sends each webhook exactly the requests its policy records above None',
    async () => {
      // Each user's calls in order, the users side by side.
      await Promise.all(
        planCalls().map(async (calls) => {
          for (const call of calls) {
            const res = await callAs(cp, agent, call.user, call);
            made.push({
              user: call.user.name,
              status: res.status,
              text: res.text,
              connect: call.connect === true,
            });
          }
        }),
      );
      // A user in a thousand groups: the group tests of every policy run over all of them.
      for (const name of ['many-a', 'many-b']) {
        const res = await callAs(cp, agent, manyGroupsUser, {
          method: 'POST',
          path: '/api/v1/namespaces/shop/configmaps',
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } },
        });
        made.push({ user: manyGroupsUser.name, status: res.status, text: res.text, connect: false });
      }

      // Every call was admitted, and no webhook or match condition failed on the way.
      const failed = made.filter((m) =>
        m.connect ? /webhook|match ?condition/i.test(m.text) : m.status >= 300,
      );
      expect(failed).toEqual([]);
      // Each call was admitted, some more than once: a DELETE with a grace period runs validating admission
      // again as it updates and then removes the object, and an update retried after a conflict runs it
      // again. Every webhook gets each of those calls, so the sets below count them alike.
      const truth = testRequests('/truth');
      expect(new Set(truth.map(keyOf)).size).toBe(made.length);

      const summary: string[] = [];
      for (const c of cases) {
        const evaluate = createPolicyEvaluator(c.policy);
        const expected = truth
          .filter((r) => evaluate(attributesFromAdmission(fieldsOf(r))).level !== 'None')
          .map(keyOf)
          .sort();
        const reached = testRequests(c.path).map(keyOf).sort();
        expect({ policy: c.label, reached }).toEqual({ policy: c.label, reached: expected });
        summary.push(`${c.label}: ${reached.length}/${truth.length}`);
      }
      console.log(`test users' requests recorded (= calls made) per policy: ${summary.join(', ')}`);
      // The random policies are not all trivial: some record little, some much.
      const shares = cases.map((c) => testRequests(c.path).length / truth.length);
      expect(Math.min(...shares)).toBeLessThan(0.3);
      expect(Math.max(...shares)).toBeGreaterThan(0.7);
    },
    CALLS_TIMEOUT_MS,
  );

  it('writes with kube-audit-rest exactly the lines of its policy, never called for a request it drops', async () => {
    const evaluate = createPolicyEvaluator(typical);
    const expected = testRequests('/truth')
      .filter((r) => evaluate(attributesFromAdmission(fieldsOf(r))).level !== 'None')
      .map(keyOf)
      .sort();
    const users = new Set([...TEST_USERS.map((u) => u.name), manyGroupsUser.name]);
    const written = readFileSync(backend.logFile, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (JSON.parse(l) as { request: AdmissionRequest }).request)
      .filter((r) => users.has(r.userInfo.username))
      .map(keyOf)
      .sort();
    expect(written).toEqual(expected);
    const metrics = await (await fetch(`http://127.0.0.1:${backend.server.metricsPort}/metrics`)).text();
    // The policy's None decisions would be counted here; the API server never asked about one.
    expect(metrics).not.toMatch(/kube_audit_rest_policy_decisions_total\{level="None"\} [1-9]/);
    expect(metrics).toMatch(/kube_audit_rest_policy_decisions_total\{level="RequestResponse"\} [1-9]/);
  });

  it("agrees with the API server's own count of webhook calls and match-condition exclusions", async () => {
    // Background writes (the API server's own lease) may land between two reads: read until steady.
    let calls = new Map<string, number>();
    let received = new Map<string, number>();
    await waitUntil(
      async () => {
        const before = await apiServerCounter(cp, 'apiserver_admission_webhook_request_total', 'name');
        received = new Map(cases.map((c) => [c.webhook, capture.received.get(c.path)?.length ?? 0]));
        calls = await apiServerCounter(cp, 'apiserver_admission_webhook_request_total', 'name');
        return cases.every((c) => before.get(c.webhook) === calls.get(c.webhook));
      },
      EFFECTIVE_DEADLINE_MS,
      'a quiet moment in the webhook counters',
    );
    const excluded = await apiServerCounter(
      cp,
      'apiserver_admission_match_condition_exclusions_total',
      'name',
    );
    const truthCalls = capture.received.get('/truth')?.length ?? 0;
    const lines = cases.map((c) => {
      const made = calls.get(c.webhook) ?? 0;
      expect({ webhook: c.webhook, calls: made }).toEqual({
        webhook: c.webhook,
        calls: received.get(c.webhook) ?? 0,
      });
      const out = excluded.get(c.webhook) ?? 0;
      // Every admitted request is called, excluded by a match condition, or not selected by the rules.
      expect(made + out).toBeLessThanOrEqual(truthCalls);
      return `${c.label} ${made}/${out}/${truthCalls - made - out}`;
    });
    console.log(
      `of ${truthCalls} admitted requests (all users), called / excluded by match conditions / not ` +
        `selected by the rules: ${lines.join(', ')}`,
    );
  });

  it(
    'saves the calls of leases and events on a replay of the benchmark mix with the typical policy',
    async () => {
      // The policies' webhooks are done; without them the replay costs one webhook call per request at most.
      const removed = await cp.fetch(
        '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/policies',
        {
          method: 'DELETE',
        },
      );
      expect(removed.status).toBe(200);
      const node = { name: 'system:node:node-1', groups: ['system:nodes'] };
      const controller = { name: 'system:serviceaccount:kube-system:replicaset-controller', groups: [] };
      const ns = 'shop';
      const leases = 5;
      const deployments = 5;
      for (let i = 0; i < leases; i++) {
        await callAs(cp, agent, node, {
          method: 'POST',
          path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: `mix-${i}` } },
        });
      }
      for (let i = 0; i < deployments; i++) {
        await callAs(cp, agent, controller, {
          method: 'POST',
          path: `/apis/apps/v1/namespaces/${ns}/deployments`,
          body: {
            apiVersion: 'apps/v1',
            kind: 'Deployment',
            metadata: { name: `mix-${i}` },
            spec: {
              selector: { matchLabels: { app: 'mix' } },
              template: {
                metadata: { labels: { app: 'mix' } },
                spec: { containers: [{ name: 'c', image: 'x' }] },
              },
            },
          },
        });
      }
      const counters = async () => {
        const calls = await apiServerCounter(cp, 'apiserver_admission_webhook_request_total', 'name');
        const excluded = await apiServerCounter(
          cp,
          'apiserver_admission_match_condition_exclusions_total',
          'name',
        );
        return {
          calls: calls.get(kubeAuditRestWebhook) ?? 0,
          excluded: excluded.get(kubeAuditRestWebhook) ?? 0,
        };
      };
      const before = await counters();

      // The mix's kinds of request, in its proportions (testing/bench/corpus.ts), 1,000 in all.
      const mix: (() => Promise<{ status: number; text: string }>)[] = [];
      for (let i = 0; i < MIX_WEIGHTS['lease-update']; i++) {
        mix.push(() =>
          callAs(cp, agent, node, {
            method: 'PATCH',
            path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/mix-${i % leases}`,
            body: {
              spec: { renewTime: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString().replace('Z', '000Z') },
            },
            contentType: 'application/merge-patch+json',
          }),
        );
      }
      for (let i = 0; i < MIX_WEIGHTS['event-create']; i++) {
        mix.push(() =>
          callAs(cp, agent, node, {
            method: 'POST',
            path: `/api/v1/namespaces/${ns}/events`,
            body: {
              apiVersion: 'v1',
              kind: 'Event',
              metadata: { name: `mix.${i}` },
              involvedObject: { kind: 'Pod', name: 'p', namespace: ns },
              reason: 'Pulled',
              message: 'image pulled',
            },
          }),
        );
      }
      for (let i = 0; i < MIX_WEIGHTS['pod-create']; i++) {
        mix.push(() =>
          callAs(cp, agent, controller, {
            method: 'POST',
            path: `/api/v1/namespaces/${ns}/pods`,
            body: {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: `mix-${i}` },
              spec: { containers: [{ name: 'c', image: 'x' }] },
            },
          }),
        );
      }
      for (let i = 0; i < MIX_WEIGHTS['deployment-update']; i++) {
        mix.push(() =>
          callAs(cp, agent, controller, {
            method: 'PATCH',
            path: `/apis/apps/v1/namespaces/${ns}/deployments/mix-${i % deployments}`,
            body: { metadata: { annotations: { revision: String(i) } } },
            contentType: 'application/merge-patch+json',
          }),
        );
      }
      for (let i = 0; i < MIX_WEIGHTS[CONFIGMAP_1MIB]; i++) {
        mix.push(() =>
          callAs(cp, agent, controller, {
            method: 'POST',
            path: `/api/v1/namespaces/${ns}/configmaps`,
            body: {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name: `mix-${i}` },
              data: { big: 'x'.repeat(1 << 20) },
            },
          }),
        );
      }
      const total = mix.length;
      const results = [];
      for (const send of mix) results.push(await send());
      expect(results.filter((r) => r.status >= 300).map((r) => r.text.slice(0, 200))).toEqual([]);

      const after = await counters();
      const called = after.calls - before.calls;
      const recorded =
        MIX_WEIGHTS['pod-create'] + MIX_WEIGHTS['deployment-update'] + MIX_WEIGHTS[CONFIGMAP_1MIB];
      expect(total).toBe(1000);
      // Exactly the pods, deployments and ConfigMap: leases and events never leave the API server.
      expect(called).toBe(recorded);
      // Every lease update and event create was stopped by a match condition (the API server's own lease
      // renewals may add a few).
      expect(after.excluded - before.excluded).toBeGreaterThanOrEqual(total - recorded);
      console.log(
        `bench mix under the typical policy: ${total} requests, ${called} webhook calls, ` +
          `${after.excluded - before.excluded} excluded by match conditions (${(100 * (1 - called / total)).toFixed(1)}% of calls saved)`,
      );
    },
    CALLS_TIMEOUT_MS,
  );
});
