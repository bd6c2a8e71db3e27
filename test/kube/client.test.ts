/**
 * @module Tests of the Kubernetes client and the object watch against a real kube-apiserver: the errors
 * kube-audit-rest branches on (not found, already exists, conflict, permanent), watching one object by name
 * through a server-ended watch, and RBAC that grants a single name for get and watch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createKubeClient,
  isAlreadyExists,
  isConflict,
  isNotFound,
  isPermanent,
  KubeApiError,
  type KubeClient,
  secretPath,
  secretsPath,
} from '../../src/kube/client.ts';
import { kubeconfigConnection } from '../../src/kube/config.ts';
import { watchObject } from '../../src/kube/watch.ts';
import { silentLogger } from '../../src/support/log.ts';
import {
  type ControlPlane,
  missingBinariesMessage,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../../testing/control-plane.ts';
import { waitUntil } from '../helpers/server-process.ts';
import { createAsAdmin, serviceAccountToken, writeTokenKubeconfig } from './service-account.ts';

const NS = 'client-test';
type Secret = { metadata: { name: string; resourceVersion?: string }; data?: Record<string, string> };

/** Whatever `promise` rejects with (or fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

const missing = missingControlPlaneBinaries();

/** Starts a control plane (with `apiServerArgs`), a client of it as admin, and the namespace {@link NS}. */
async function startWithNamespace(
  apiServerArgs: readonly string[] = [],
): Promise<{ cp: ControlPlane; client: KubeClient }> {
  const cp = await startControlPlane({ apiServerArgs });
  const client = createKubeClient(kubeconfigConnection(cp.kubeconfigPath));
  await createAsAdmin(cp, '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: NS },
  });
  return { cp, client };
}

describe('kube client (real kube-apiserver)', () => {
  if (missing.length > 0) {
    it('has the control plane binaries', () => {
      throw new Error(missingBinariesMessage(missing, process.env.CI === 'true'));
    });
    return;
  }

  let cp: ControlPlane;
  let client: KubeClient;
  let dir: string;

  beforeAll(async () => {
    ({ cp, client } = await startWithNamespace());
    dir = await mkdtemp(join(tmpdir(), 'kar-kube-client-'));
  }, 90_000);
  afterAll(async () => {
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports not found, already exists and a stale resourceVersion as what they are', async () => {
    const path = secretPath(NS, 'errors');
    expect(isNotFound(await rejection(client.request('GET', path)))).toBe(true);
    const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'errors' }, data: { a: 'YQ==' } };
    const created = await client.request<Secret>('POST', secretsPath(NS), { body });
    const again = await rejection(client.request('POST', secretsPath(NS), { body }));
    expect(isAlreadyExists(again)).toBe(true);
    expect(isConflict(again)).toBe(false);
    const updated = await client.request<Secret>('PUT', path, { body: { ...created, data: { a: 'Yg==' } } });
    expect(updated.metadata.resourceVersion).not.toBe(created.metadata.resourceVersion);
    const stale = await rejection(client.request('PUT', path, { body: { ...created, data: { a: 'Yw==' } } }));
    expect(isConflict(stale)).toBe(true);
    expect((stale as Error).message).toContain('the object has been modified');
    // The same precondition in a JSON Patch.
    const patch = await rejection(
      client.request('PATCH', path, {
        contentType: 'application/json-patch+json',
        body: [
          { op: 'replace', path: '/metadata/resourceVersion', value: created.metadata.resourceVersion },
          { op: 'add', path: '/data/b', value: 'Yg==' },
        ],
      }),
    );
    expect(isConflict(patch)).toBe(true);
  });

  it('reports refused credentials as permanent and an unreachable server as status 0', async () => {
    const badToken = await writeTokenKubeconfig(cp, join(dir, 'bad-token'), 'not-a-token');
    const refused = await rejection(
      createKubeClient(kubeconfigConnection(badToken)).request('GET', secretPath(NS, 'x')),
    );
    expect(refused).toBeInstanceOf(KubeApiError);
    expect((refused as KubeApiError).status).toBe(401);
    expect(isPermanent(refused)).toBe(true);

    const nowhere = createKubeClient({
      server: 'https://127.0.0.1:1',
      insecureSkipVerify: false,
      token: () => undefined,
      source: 'test',
    });
    const down = await rejection(nowhere.request('GET', '/version'));
    expect((down as KubeApiError).status).toBe(0);
    expect((down as Error).message).toContain('no answer from https://127.0.0.1:1');
    expect(isPermanent(down)).toBe(false);
  });

  it('watches one object by name: as it is, each change, its deletion and re-creation, across server-ended watches', async () => {
    const name = 'watched';
    const other = 'unwatched';
    const seen: (string | null)[] = [];
    await client.request('POST', secretsPath(NS), {
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name },
        data: { v: Buffer.from('1').toString('base64') },
      },
    });
    const watch = watchObject<Secret>({
      client,
      collectionPath: secretsPath(NS),
      name,
      onChange: (s) => seen.push(s === null ? null : Buffer.from(s.data?.v ?? '', 'base64').toString()),
      log: silentLogger,
      watchTimeoutSeconds: 1,
    });
    try {
      await waitUntil(() => seen.length === 1, 10_000, 'the object as it is');
      const put = async (v: string) => {
        const current = await client.request<Secret>('GET', secretPath(NS, name));
        await client.request('PUT', secretPath(NS, name), {
          body: { ...current, data: { v: Buffer.from(v).toString('base64') } },
        });
      };
      await put('2');
      await waitUntil(() => seen.includes('2'), 10_000, 'the change');
      // Outlive two server-ended watches (1 s each, plus up to a quarter): the watch resumes.
      const resumedAfter = Date.now() + 2_600;
      await waitUntil(() => Date.now() > resumedAfter, 5_000, 'the watch to be resumed');
      await client.request('POST', secretsPath(NS), {
        body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: other } },
      });
      await put('3');
      await client.request('DELETE', secretPath(NS, name));
      await waitUntil(() => seen.at(-1) === null, 10_000, 'the deletion');
      await client.request('POST', secretsPath(NS), {
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name },
          data: { v: Buffer.from('4').toString('base64') },
        },
      });
      await waitUntil(() => seen.at(-1) === '4', 10_000, 'the re-creation');
      // Each version once, in order; the other Secret never.
      expect(seen).toEqual(['1', '2', '3', null, '4']);
    } finally {
      await watch.stop();
    }
  });

  it('gets and watches one Secret with RBAC that names only it, and is refused any other', async () => {
    await createAsAdmin(cp, `/api/v1/namespaces/${NS}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'one-secret' },
    });
    await createAsAdmin(cp, `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'one-secret' },
      rules: [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['mine'], verbs: ['get', 'watch'] }],
    });
    await createAsAdmin(cp, `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'one-secret' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'one-secret' },
      subjects: [{ kind: 'ServiceAccount', name: 'one-secret', namespace: NS }],
    });
    for (const name of ['mine', 'theirs'])
      await client.request('POST', secretsPath(NS), {
        body: { apiVersion: 'v1', kind: 'Secret', metadata: { name } },
      });
    const token = await serviceAccountToken(cp, NS, 'one-secret');
    const limited = createKubeClient(
      kubeconfigConnection(await writeTokenKubeconfig(cp, join(dir, 'sa'), token)),
    );

    await waitUntil(
      () =>
        limited.request('GET', secretPath(NS, 'mine')).then(
          () => true,
          () => false,
        ),
      10_000,
      'the Role to take effect',
    );
    const refused = await rejection(limited.request('GET', secretPath(NS, 'theirs')));
    expect((refused as KubeApiError).status).toBe(403);
    expect(isPermanent(refused)).toBe(true);

    const events: string[] = [];
    const abort = new AbortController();
    const watching = limited
      .watch<Secret>(
        secretsPath(NS),
        { fieldSelector: 'metadata.name=mine', timeoutSeconds: '1' },
        (e) => {
          events.push(`${e.type} ${e.object.metadata.name}`);
        },
        abort.signal,
      )
      .catch((err: unknown) => err);
    expect(await watching).toBeUndefined(); // ended by the server after 1 s, not refused
    expect(events).toEqual(['ADDED mine']);
    const otherWatch = await rejection(
      limited.watch(secretsPath(NS), { fieldSelector: 'metadata.name=theirs' }, () => {}, abort.signal),
    );
    expect((otherWatch as KubeApiError).status).toBe(403);
    const listAll = await rejection(limited.watch(secretsPath(NS), {}, () => {}, abort.signal));
    expect((listAll as KubeApiError).status).toBe(403);
  });
});

describe('watchObject after etcd compacted the version it resumes from (real kube-apiserver)', () => {
  if (missing.length > 0) return; // reported by the suite above

  let cp: ControlPlane;
  let client: KubeClient;

  beforeAll(async () => {
    // Without the watch cache, a watch reads etcd itself, so a compacted version is refused with 410 as it
    // is when a long-lived watch falls behind on a busy cluster.
    ({ cp, client } = await startWithNamespace(['--watch-cache=false']));
  }, 90_000);
  afterAll(async () => {
    await cp?.stop();
  });

  it('starts afresh, with the object as it is, when its version was compacted away (410)', async () => {
    const name = 'compacted';
    const put = async (v: string, current?: Secret) =>
      client.request<Secret>(current ? 'PUT' : 'POST', current ? secretPath(NS, name) : secretsPath(NS), {
        body: {
          ...(current ?? { apiVersion: 'v1', kind: 'Secret', metadata: { name } }),
          data: { v: Buffer.from(v).toString('base64') },
        },
      });
    const first = await put('1');
    const oldVersion = first.metadata?.resourceVersion as string;
    const latest = await put('2', await put('1b', first));
    // Compact etcd up to the latest version: everything before it is gone.
    const compacted = await fetch(`${cp.etcdUrl}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: latest.metadata?.resourceVersion, physical: true }),
    });
    expect(compacted.status).toBe(200);
    const raw = await cp.fetch(
      `${secretsPath(NS)}?watch=true&resourceVersion=${oldVersion}&timeoutSeconds=1`,
    );
    const said = `${raw.status} ${await raw.text()}`;
    expect(said).toMatch(/410|Expired|too old/);

    const seen: (string | null)[] = [];
    const watch = watchObject<Secret>({
      client,
      collectionPath: secretsPath(NS),
      name,
      resourceVersion: oldVersion,
      onChange: (s) => seen.push(s === null ? null : Buffer.from(s.data?.v ?? '', 'base64').toString()),
      log: silentLogger,
    });
    try {
      await waitUntil(() => seen.length === 1, 10_000, 'the object as it is, after the 410');
      expect(seen).toEqual(['2']);
    } finally {
      await watch.stop();
    }
  });
});
