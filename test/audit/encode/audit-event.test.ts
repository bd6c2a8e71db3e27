import { beforeAll, describe, expect, it } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../../src/audit/encode/admission-review.ts';
import { createPipeline, type PipelineOptions } from '../../../src/audit/pipeline.ts';
import type { Level, PolicyDecision, Stage } from '../../../src/audit/policy/types.ts';
import type { AdmissionRecord } from '../../../src/audit/record.ts';
import { createSecretRedactor } from '../../../src/audit/transforms/redact-secrets.ts';
import { parseReview } from '../../../src/review/parse.ts';
import { checkEvents, ensureEventOracles, falcoFields } from '../../../testing/harness/event-oracles.ts';

const REPO = join(import.meta.dir, '..', '..', '..');
const LOCAL_DATA = join(REPO, 'testing', 'locally', 'data');
const CORPUS = join(REPO, 'testing', 'bench', 'corpus');
/** 2023-11-14T22:13:20.123456789Z and 2 ms later: fixed, so lines are exact. */
const ARRIVED = 1_700_000_000_123_456_789n;
const NOW = ARRIVED + 2_000_000n;
const KEY = new TextEncoder().encode('a fixed test key of 32 bytes....');
/** Building the Go oracles can take a minute on a cold cache. */
const ORACLE_BUILD_MS = 600_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function record(text: string): AdmissionRecord {
  const parsed = parseReview(encoder.encode(text));
  if (!parsed.ok) throw new Error(`not a review: ${parsed.message}`);
  return parsed.record;
}

function decision(level: Level, omitStages: Stage[] = [], omitManagedFields = false): PolicyDecision {
  return { level, omitStages, omitManagedFields };
}

/** The Event lines for a review at a decision, as text lines (no trailing newline). */
function events(text: string, d: PolicyDecision, extra: Partial<PipelineOptions> = {}): string[] {
  const pipeline = createPipeline({
    clock: () => NOW,
    format: 'audit-event',
    decide: () => d,
    redact: createSecretRedactor({ key: KEY }),
    ...extra,
  });
  const { line } = pipeline(record(text), ARRIVED);
  if (line === undefined) return [];
  return decoder.decode(lineBytes(line)).split('\n').slice(0, -1);
}

/** Every captured review the project keeps: the local-testing samples and the bench corpus. */
function capturedReviews(): { name: string; text: string }[] {
  const out: { name: string; text: string }[] = [];
  for (const f of readdirSync(LOCAL_DATA).sort())
    out.push({ name: f, text: readFileSync(join(LOCAL_DATA, f), 'utf8') });
  for (const f of readdirSync(CORPUS).sort())
    out.push({ name: f, text: readFileSync(join(CORPUS, f), 'utf8').trim() });
  return out;
}

/** A pod create review from the local samples, changed by `edit` (privileged, host paths, ...). */
function podCreate(edit: (review: { request: Record<string, unknown> }) => void): string {
  const review = JSON.parse(readFileSync(join(LOCAL_DATA, '01-create-pod.json'), 'utf8')) as {
    request: Record<string, unknown>;
  };
  edit(review);
  return JSON.stringify(review);
}

const PRIVILEGED_POD = podCreate((r) => {
  const object = r.request.object as { spec: { containers: { securityContext?: unknown }[] } };
  for (const c of object.spec.containers) c.securityContext = { privileged: true };
});

const CLUSTER_ADMIN_BINDING = JSON.stringify({
  kind: 'AdmissionReview',
  apiVersion: 'admission.k8s.io/v1',
  request: {
    uid: 'a9d5c1f0-0000-4000-8000-000000000001',
    kind: { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRoleBinding' },
    resource: { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterrolebindings' },
    requestKind: { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRoleBinding' },
    requestResource: { group: 'rbac.authorization.k8s.io', version: 'v1', resource: 'clusterrolebindings' },
    name: 'eve-admin',
    operation: 'CREATE',
    userInfo: { username: 'eve', groups: ['system:authenticated'] },
    object: {
      kind: 'ClusterRoleBinding',
      apiVersion: 'rbac.authorization.k8s.io/v1',
      metadata: { name: 'eve-admin', uid: '5b6c7d8e-0000-4000-8000-000000000002' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'eve' }],
    },
    oldObject: null,
    dryRun: false,
    options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
  },
});

beforeAll(async () => {
  await ensureEventOracles();
}, ORACLE_BUILD_MS);

describe('encodeAuditEvent through the pipeline, judged by the upstream Event type', () => {
  it('writes lines that decode strictly as audit.k8s.io/v1 Events, for every captured review, level and option', async () => {
    const lines: string[] = [];
    const sources: string[] = [];
    for (const { name, text } of [
      ...capturedReviews(),
      { name: 'privileged', text: PRIVILEGED_POD },
      { name: 'crb', text: CLUSTER_ADMIN_BINDING },
    ]) {
      for (const level of ['Metadata', 'Request', 'RequestResponse'] as const) {
        for (const extra of [{}, { clusterName: 'prod-eu-1', syntheticResponseStatus: true }]) {
          for (const line of events(text, decision(level, [], level === 'Request'), extra)) {
            lines.push(line);
            sources.push(`${name} ${level} ${JSON.stringify(extra)}`);
          }
        }
      }
    }
    expect(lines.length).toBeGreaterThan(80);
    const verdicts = await checkEvents(lines);
    const failed = verdicts.filter((v) => !v.ok).map((v) => `${sources[v.line - 1]}: ${v.errors.join('; ')}`);
    expect(failed).toEqual([]);
  });

  it('is refused by the oracle when a timestamp has three digits, so the check above can fail', async () => {
    const line = events(
      readFileSync(join(LOCAL_DATA, '01-create-pod.json'), 'utf8'),
      decision('Metadata'),
    )[0] as string;
    const broken = line.replace(/"stageTimestamp":"([^"]*)\.(\d{3})\d{3}Z"/, '"stageTimestamp":"$1.$2Z"');
    expect(broken).not.toBe(line);
    const [verdict] = await checkEvents([broken]);
    expect(verdict?.ok).toBe(false);
  });
});

describe('the Event fields', () => {
  const pod = readFileSync(join(LOCAL_DATA, '01-create-pod.json'), 'utf8');
  const exec = readFileSync(join(LOCAL_DATA, '04-exec-connect.json'), 'utf8');

  it('keeps the object at Request, drops it at Metadata, and takes the delete options as the request object', () => {
    const request = JSON.parse(events(pod, decision('Request'))[0] as string) as Record<string, unknown>;
    expect((request.requestObject as { kind: string }).kind).toBe('Pod');
    const metadata = JSON.parse(events(pod, decision('Metadata'))[0] as string) as Record<string, unknown>;
    expect('requestObject' in metadata).toBe(false);
    const del = JSON.parse(
      events(
        readFileSync(join(LOCAL_DATA, '03-delete-configmap.json'), 'utf8'),
        decision('Request'),
      )[0] as string,
    ) as Record<string, unknown>;
    expect(del.requestObject).toEqual({ kind: 'DeleteOptions', apiVersion: 'meta.k8s.io/v1' });
    expect(del.verb).toBe('delete');
    expect(del.requestURI).toBe('/api/v1/namespaces/shop/configmaps/settings');
  });

  it('drops managedFields from the request object when the policy says so', () => {
    const kept = events(pod, decision('Request', [], false))[0] as string;
    const dropped = events(pod, decision('Request', [], true))[0] as string;
    expect(kept).toContain('"managedFields"');
    expect(dropped).not.toContain('"managedFields"');
    const object = (JSON.parse(dropped) as { requestObject: { metadata: Record<string, unknown> } })
      .requestObject;
    expect(object.metadata.name).toBe('web-0');
  });

  it('writes ResponseStarted then ResponseComplete for exec, honouring omitStages, and nothing when both are omitted', () => {
    expect(events(exec, decision('Metadata')).map((l) => (JSON.parse(l) as { stage: string }).stage)).toEqual(
      ['ResponseStarted', 'ResponseComplete'],
    );
    expect(
      events(exec, decision('Metadata', ['ResponseStarted'])).map(
        (l) => (JSON.parse(l) as { stage: string }).stage,
      ),
    ).toEqual(['ResponseComplete']);
    expect(events(exec, decision('Metadata', ['ResponseStarted', 'ResponseComplete']))).toEqual([]);
    expect(events(pod, decision('Metadata', ['ResponseComplete']))).toEqual([]);
  });

  it('builds the request URI as the API server saw it: collection for a create, dry run and exec parameters in the query', () => {
    const uri = (text: string) =>
      (JSON.parse(events(text, decision('Metadata'))[0] as string) as { requestURI: string }).requestURI;
    expect(uri(pod)).toBe('/api/v1/namespaces/shop/pods');
    expect(uri(exec)).toBe(
      '/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=id&container=web&stdin=true&stdout=true&tty=true',
    );
    expect(uri(readFileSync(join(LOCAL_DATA, '02-scale-deployment.json'), 'utf8'))).toBe(
      '/apis/apps/v1/namespaces/shop/deployments/api/scale',
    );
    expect(uri(readFileSync(join(LOCAL_DATA, '05-v1beta1-secret-dryrun.json'), 'utf8'))).toBe(
      '/api/v1/namespaces/shop/secrets?dryRun=All',
    );
    expect(uri(CLUSTER_ADMIN_BINDING)).toBe('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings');
  });

  it('leaves out objectRef keys without a value, and names the admission uid, operation and old object in annotations', () => {
    const e = JSON.parse(
      events(CLUSTER_ADMIN_BINDING, decision('Metadata'), { clusterName: 'c1' })[0] as string,
    ) as {
      objectRef: Record<string, string>;
      annotations: Record<string, string>;
      auditID: string;
    };
    expect(e.objectRef).toEqual({
      resource: 'clusterrolebindings',
      name: 'eve-admin',
      uid: '5b6c7d8e-0000-4000-8000-000000000002',
      apiGroup: 'rbac.authorization.k8s.io',
      apiVersion: 'v1',
    });
    expect(e.auditID).toBe('a9d5c1f0-0000-4000-8000-000000000001');
    expect(e.annotations).toEqual({
      'authorization.k8s.io/decision': 'allow',
      cluster_name: 'c1',
      'kube-audit-rest/operation': 'CREATE',
      'kube-audit-rest/dry-run': 'false',
      'kube-audit-rest/admission-uid': 'a9d5c1f0-0000-4000-8000-000000000001',
      'kube-audit-rest/old-object': 'false',
    });
  });

  it('redacts Secret values in the request object', () => {
    const secret = readFileSync(join(LOCAL_DATA, '05-v1beta1-secret-dryrun.json'), 'utf8');
    const e = JSON.parse(events(secret, decision('RequestResponse'))[0] as string) as {
      requestObject: { data: Record<string, string> };
    };
    for (const v of Object.values(e.requestObject.data)) expect(v).toMatch(/^redacted:hmac-sha256:/);
    const plain = JSON.parse(secret) as { request: { object: { data: Record<string, string> } } };
    for (const v of Object.values(plain.request.object.data)) expect(JSON.stringify(e)).not.toContain(v);
  });
});

describe("Falco's k8saudit plugin reading our events", () => {
  it('extracts the fields its rules read, for a pod, a privileged pod, an exec, a cluster-admin binding and a Secret', async () => {
    const cases = [
      readFileSync(join(LOCAL_DATA, '01-create-pod.json'), 'utf8'),
      PRIVILEGED_POD,
      readFileSync(join(LOCAL_DATA, '04-exec-connect.json'), 'utf8'),
      CLUSTER_ADMIN_BINDING,
      readFileSync(join(LOCAL_DATA, '05-v1beta1-secret-dryrun.json'), 'utf8'),
    ];
    const lines = cases.map(
      (text) => events(text, decision('RequestResponse'), { clusterName: 'prod-eu-1' })[0] as string,
    );
    const got = await falcoFields(lines);
    for (const g of got) {
      expect(g.error).toBeUndefined();
      expect(g.fields['ka.auth.decision']).toBe('allow');
      expect(g.fields['ka.cluster.name']).toBe('prod-eu-1');
    }
    const [pod, privileged, exec, crb, secret] = got.map((g) => g.fields);
    expect(pod).toMatchObject({
      'ka.verb': 'create',
      'ka.user.name': 'alice@example.com',
      'ka.target.resource': 'pods',
      'ka.target.namespace': 'shop',
      'ka.target.name': 'web-0',
      'ka.uri': '/api/v1/namespaces/shop/pods',
      'ka.req.pod.containers.image': ['nginx:1.27'],
      'ka.req.pod.containers.privileged': [],
    });
    expect(pod?.['ka.target.subresource']).toBeUndefined();
    expect(privileged?.['ka.req.pod.containers.privileged']).toEqual(['true']);
    expect(exec).toMatchObject({
      'ka.verb': 'create',
      'ka.user.name': 'bob',
      'ka.target.resource': 'pods',
      'ka.target.subresource': 'exec',
      'ka.uri.param[command]': 'sh',
    });
    expect(crb).toMatchObject({
      'ka.verb': 'create',
      'ka.user.name': 'eve',
      'ka.target.resource': 'clusterrolebindings',
      'ka.target.name': 'eve-admin',
    });
    expect(crb?.['ka.target.namespace']).toBeUndefined();
    expect(secret).toMatchObject({
      'ka.verb': 'create',
      'ka.target.resource': 'secrets',
      'ka.target.name': 'db-password',
    });
  });
});
