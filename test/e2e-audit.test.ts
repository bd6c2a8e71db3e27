/**
 * The audit Policy and both line formats behind a real kube-apiserver: what the policy drops is never
 * written, Metadata drops the bodies, omitManagedFields drops managedFields, Secrets never reach the
 * disk in clear, and the answer's auditAnnotations reach the API server's own audit log as the join key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JOIN_KEY } from '../src/review/answer.ts';
import { missingBinariesMessage, missingControlPlaneBinaries } from '../testing/control-plane.ts';
import { checkEvents } from '../testing/harness/event-oracles.ts';
import {
  type E2eCluster,
  impersonate,
  type KubeAuditRestBackend,
  kubeAuditRestBackend,
  startE2eCluster,
  type UserClient,
} from './helpers/e2e-cluster.ts';
import { waitUntil } from './helpers/server-process.ts';

const USER = 'policy-user';
const GROUPS = ['system:masters'];
const NS = 'audit';
/** Control plane, webhook registration and (first run) the Go oracles' build. */
const SETUP_TIMEOUT_MS = 600_000;
/** How long a line may take to appear after the call that causes it. */
const LINE_DEADLINE_MS = 10_000;

/** The policy under test: each rule is reached by one kind of call below. */
const POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  # Noise: never written.
  - level: None
    resources: [{ group: "", resources: [events] }]
  - level: None
    namespaces: [quiet]
  # Secrets and Services: who and what, never the bodies.
  - level: Metadata
    resources: [{ group: "", resources: [secrets, services] }]
  # Workloads: the bodies without managedFields.
  - level: Request
    omitManagedFields: true
    resources: [{ group: apps }]
  # Everything else whole.
  - level: RequestResponse
`;

/** The API server's own audit policy: everything at Metadata, so each call leaves an event with annotations. */
const APISERVER_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`;

const missing = missingControlPlaneBinaries();
if (missing.length > 0) throw new Error(missingBinariesMessage(missing, process.env.CI !== undefined));

type Line = Record<string, unknown> & {
  request?: {
    uid: string;
    name?: string;
    namespace?: string;
    object?: unknown;
    oldObject?: unknown;
    operation: string;
  };
  auditID?: string;
  objectRef?: { resource?: string; name?: string; namespace?: string };
  requestObject?: Record<string, unknown>;
  level?: string;
};

for (const format of ['admissionreview', 'audit-event'] as const) {
  describe(`a policy behind a real kube-apiserver, ${format} lines`, () => {
    let dir: string;
    let cluster: E2eCluster;
    let backend: KubeAuditRestBackend;
    let api: UserClient;
    let apiserverAudit: string;

    /** Every line written so far, parsed. */
    const lines = (): Line[] =>
      readFileSync(backend.logFile, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Line);
    const nameOf = (l: Line) => l.request?.name ?? l.objectRef?.name;
    const namespaceOf = (l: Line) => l.request?.namespace ?? l.objectRef?.namespace;
    /** Waits for, and returns, the lines about the object `name` in `namespace`. */
    const linesAbout = async (namespace: string, name: string): Promise<Line[]> => {
      let found: Line[] = [];
      await waitUntil(
        () => {
          found = lines().filter((l) => nameOf(l) === name && namespaceOf(l) === namespace);
          return found.length > 0;
        },
        LINE_DEADLINE_MS,
        `a line about ${namespace}/${name}`,
      );
      return found;
    };
    const call = async (method: string, path: string, body?: unknown, contentType?: string) => {
      const res = await api.call(method, path, body, contentType);
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
      return res.body as { metadata?: { uid?: string } };
    };

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'kar-e2e-audit-'));
      const policyFile = join(dir, 'policy.yaml');
      writeFileSync(policyFile, POLICY);
      writeFileSync(join(dir, 'apiserver-policy.yaml'), APISERVER_POLICY);
      apiserverAudit = join(dir, 'apiserver-audit.log');
      cluster = await startE2eCluster({
        backend: (cert, d) =>
          kubeAuditRestBackend(cert, d, [
            `--policy-file=${policyFile}`,
            `--output-format=${format}`,
            '--cluster-name=e2e',
          ]),
        markerUser: USER,
        render: { failurePolicy: 'Fail', usernames: [USER] },
        apiServerArgs: [
          `--audit-policy-file=${join(dir, 'apiserver-policy.yaml')}`,
          `--audit-log-path=${apiserverAudit}`,
          '--audit-log-format=json',
        ],
      });
      backend = cluster.backend as KubeAuditRestBackend;
      api = impersonate(cluster.controlPlane, USER, GROUPS);
      for (const ns of [NS, 'quiet'])
        await call('POST', '/api/v1/namespaces', {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: ns },
        });
    }, SETUP_TIMEOUT_MS);

    afterAll(async () => {
      await cluster?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('writes nothing for what the policy records at None, and answers allowed', async () => {
      await call('POST', `/api/v1/namespaces/${NS}/events`, {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'noise' },
        involvedObject: { kind: 'Pod', name: 'p', namespace: NS },
        reason: 'Test',
        message: 'm',
      });
      await call('POST', '/api/v1/namespaces/quiet/configmaps', {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'hushed' },
      });
      // A call the policy records, made after both: once its line is there, theirs would be too.
      await call('POST', `/api/v1/namespaces/${NS}/configmaps`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'after-noise' },
      });
      await linesAbout(NS, 'after-noise');
      expect(lines().filter((l) => nameOf(l) === 'noise' || nameOf(l) === 'hushed')).toEqual([]);
      const metrics = await (await fetch(`http://127.0.0.1:${backend.server.metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/kube_audit_rest_policy_decisions_total\{level="None"\} [1-9]/);
    });

    it('writes Secrets at Metadata: no bodies, and no value in the file', async () => {
      await call('POST', `/api/v1/namespaces/${NS}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'meta' },
        stringData: { token: 'never-on-disk-1' },
      });
      await call(
        'PATCH',
        `/api/v1/namespaces/${NS}/secrets/meta`,
        { stringData: { token: 'never-on-disk-2' } },
        'application/merge-patch+json',
      );
      const about = await linesAbout(NS, 'meta');
      for (const l of about) {
        if (format === 'admissionreview') {
          expect(l.request).not.toHaveProperty('object');
          expect(l.request).not.toHaveProperty('oldObject');
        } else {
          expect(l.level).toBe('Metadata');
          expect(l).not.toHaveProperty('requestObject');
        }
      }
      const text = readFileSync(backend.logFile, 'utf8');
      for (const secret of [
        'never-on-disk-1',
        'never-on-disk-2',
        Buffer.from('never-on-disk-1').toString('base64'),
      ]) {
        expect(text).not.toContain(secret);
      }
    });

    it('keeps a ConfigMap whole at RequestResponse: only Secrets are redacted', async () => {
      await call('POST', `/api/v1/namespaces/${NS}/configmaps`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'cm' },
        data: { a: 'b' },
      });
      const [l] = await linesAbout(NS, 'cm');
      const object = (format === 'admissionreview' ? l?.request?.object : l?.requestObject) as {
        data?: Record<string, string>;
      };
      expect(object.data).toEqual({ a: 'b' }); // a ConfigMap is not redacted
    });

    it('drops managedFields where the rule says omitManagedFields, and keeps them elsewhere', async () => {
      await call('POST', `/apis/apps/v1/namespaces/${NS}/deployments`, {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] },
          },
        },
      });
      const [deploy] = await linesAbout(NS, 'web');
      const object = (format === 'admissionreview' ? deploy?.request?.object : deploy?.requestObject) as {
        metadata: Record<string, unknown>;
        spec: unknown;
      };
      expect(object.spec).toBeDefined();
      expect(object.metadata.name).toBe('web');
      expect(object.metadata).not.toHaveProperty('managedFields');
      const [cm] = await linesAbout(NS, 'cm');
      const cmObject = (format === 'admissionreview' ? cm?.request?.object : cm?.requestObject) as {
        metadata: Record<string, unknown>;
      };
      expect(cmObject.metadata).toHaveProperty('managedFields');
    });

    it('stamps the cluster name on every line', () => {
      for (const l of lines()) {
        if (format === 'admissionreview') expect(l.clusterName).toBe('e2e');
        else expect((l.annotations as Record<string, string>).cluster_name).toBe('e2e');
      }
    });

    if (format === 'audit-event') {
      it(
        'writes only lines the upstream Event type decodes strictly',
        async () => {
          const text = readFileSync(backend.logFile, 'utf8')
            .split('\n')
            .filter((l) => l !== '');
          const verdicts = await checkEvents(text);
          expect(verdicts.filter((v) => !v.ok)).toEqual([]);
        },
        SETUP_TIMEOUT_MS,
      );
    }

    it("gets its answer's auditAnnotations into the API server's own audit log, joined on the uid", async () => {
      const [deploy] = await linesAbout(NS, 'web');
      const uid = format === 'admissionreview' ? deploy?.request?.uid : deploy?.auditID;
      expect(typeof uid).toBe('string');
      const webhook = cluster.webhookConfiguration.webhooks[0]?.name as string;
      let joined: Record<string, unknown> | undefined;
      await waitUntil(
        () => {
          joined = readFileSync(apiserverAudit, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l) as { annotations?: Record<string, string> } & Record<string, unknown>)
            .find((e) => e.annotations?.[`${webhook}/${JOIN_KEY}`] === uid);
          return joined !== undefined;
        },
        LINE_DEADLINE_MS,
        `the API server's audit event annotated with ${webhook}/${JOIN_KEY}=${uid}`,
      );
      expect(joined).toMatchObject({ verb: 'create', objectRef: { resource: 'deployments', namespace: NS } });
    });
  });
}
