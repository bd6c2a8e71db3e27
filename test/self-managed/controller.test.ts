/**
 * @module Tests of the certificate controller and the webhook reconciler against a real kube-apiserver:
 * the Secret created, raced for, rotated on the controller's clock and followed by other replicas; Secrets
 * that are not ours; the caBundle set, healed, re-read on a conflict, and not fought over.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createKubeClient,
  type KubeClient,
  secretPath,
  secretsPath,
  validatingWebhookConfigurationPath,
} from '../../src/kube/client.ts';
import { kubeconfigConnection } from '../../src/kube/config.ts';
import {
  type CertificateController,
  createCertificateController,
  ForeignSecretError,
  OWNER_ANNOTATION,
  type Secret,
} from '../../src/self-managed/controller.ts';
import { certificateFiles } from '../../src/self-managed/files.ts';
import type { RotationPolicy } from '../../src/self-managed/rotation.ts';
import { SECRET_KEYS } from '../../src/self-managed/state.ts';
import {
  caBundleDesire,
  createWebhookReconciler,
  type JsonPatchOperation,
  type ValidatingWebhookConfiguration,
  type WebhookReconciler,
} from '../../src/self-managed/webhook.ts';
import { createLogger, silentLogger } from '../../src/support/log.ts';
import {
  type ControlPlane,
  missingBinariesMessage,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../../testing/control-plane.ts';
import { waitUntil } from '../helpers/server-process.ts';
import { createAsAdmin } from '../kube/service-account.ts';

const NS = 'controller-test';
const HOUR_MS = 3_600_000;
/** Long lives, so that only the test's own clock moves anything. */
const POLICY: RotationPolicy = {
  caValidityMs: 1000 * HOUR_MS,
  servingValidityMs: 30 * HOUR_MS,
  dnsNames: ['svc', 'svc.ns.svc'],
  ipAddresses: ['127.0.0.1'],
};
const T0 = Date.now();
const DEADLINE_MS = 10_000;

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');
/** The PEM blocks of a bundle. */
const pems = (bundle: string) =>
  bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];

const missing = missingControlPlaneBinaries();

describe('self-managed controllers (real kube-apiserver)', () => {
  if (missing.length > 0) {
    it('has the control plane binaries', () => {
      throw new Error(missingBinariesMessage(missing, process.env.CI === 'true'));
    });
    return;
  }

  let cp: ControlPlane;
  let client: KubeClient;
  let dir: string;
  /** The controllers' clock; tests move it. */
  let clock = T0;
  const running: { stop(): Promise<void> }[] = [];

  /** A controller for Secret `name`, writing to `<dir>/<replica>/tls.{crt,key}`, counting what it makes. */
  function replica(
    name: string,
    replicaName: string,
    trusted: (pem: string) => boolean = () => true,
    log = silentLogger,
  ) {
    const certFile = join(dir, replicaName, 'tls.crt');
    const keyFile = join(dir, replicaName, 'tls.key');
    const made = { ca: 0, serving: 0 };
    const controller = createCertificateController({
      client,
      namespace: NS,
      name,
      policy: POLICY,
      files: certificateFiles({ certFile, keyFile }),
      log,
      now: () => clock,
      trusted,
      observer: {
        made: (what, n) => {
          made[what] += n;
        },
      },
    });
    running.push(controller);
    return { controller, made, certFile, keyFile };
  }

  const getSecret = (name: string) => client.request<Secret>('GET', secretPath(NS, name));

  beforeAll(async () => {
    cp = await startControlPlane();
    dir = await mkdtemp(join(tmpdir(), 'kar-controller-'));
    client = createKubeClient(kubeconfigConnection(cp.kubeconfigPath));
    await createAsAdmin(cp, '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
  }, 90_000);
  afterAll(async () => {
    await Promise.all(running.map((r) => r.stop()));
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates the Secret with a CA and a serving certificate and writes the files, when there is none', async () => {
    const a = replica('fresh', 'fresh-a');
    await a.controller.firstSync;
    const secret = await getSecret('fresh');
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(secret.metadata.annotations?.[OWNER_ANNOTATION]).toBe('self-managed');
    expect(Object.keys(secret.data ?? {}).sort()).toEqual([
      'ca.crt',
      'signing-ca.crt',
      'signing-ca.key',
      'tls.crt',
      'tls.key',
    ]);
    expect(await readFile(a.certFile, 'utf8')).toBe(unb64(secret.data?.['tls.crt']));
    expect(await readFile(a.keyFile, 'utf8')).toBe(unb64(secret.data?.['tls.key']));
    const ca = new X509Certificate(unb64(secret.data?.['ca.crt']));
    const leaf = new X509Certificate(await readFile(a.certFile, 'utf8'));
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(a.controller.trustBundle()).toBe(unb64(secret.data?.['ca.crt']));
    expect(a.made).toEqual({ ca: 1, serving: 1 });
  });

  it('ends with one CA, served by both, when two replicas start at once against no Secret', async () => {
    const lines: string[] = [];
    const log = createLogger({ write: (line) => void lines.push(line) });
    const [a, b] = [replica('raced', 'raced-a', undefined, log), replica('raced', 'raced-b', undefined, log)];
    await Promise.all([a.controller.firstSync, b.controller.firstSync]);
    // Both found no Secret and tried to create one; the API server refused the second (409 AlreadyExists).
    expect(lines.filter((l) => l.includes('created the Secret with a new CA'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('another replica created the Secret first'))).toHaveLength(1);
    const secret = await getSecret('raced');
    expect(pems(unb64(secret.data?.['ca.crt']))).toHaveLength(1);
    expect(a.made.ca + b.made.ca).toBe(1);
    const served = await Promise.all([readFile(a.certFile, 'utf8'), readFile(b.certFile, 'utf8')]);
    expect(served).toEqual([unb64(secret.data?.['tls.crt']), unb64(secret.data?.['tls.crt'])]);
    // Nothing was rewritten after the create: the Secret is at the version the create made.
    const fresh = await client.request<Secret>('GET', secretPath(NS, 'raced'));
    expect(fresh.metadata.resourceVersion).toBe(secret.metadata.resourceVersion);
  });

  it('rotates on its clock, promotes a next CA only once trusted, and the other replica follows through the watch', async () => {
    let trusted = false;
    const a = replica('rotating', 'rotating-a', () => trusted);
    await a.controller.firstSync;
    const b = replica('rotating', 'rotating-b', () => trusted);
    await b.controller.firstSync;
    const first = await getSecret('rotating');
    const firstCa = unb64(first.data?.[SECRET_KEYS.signingCert]);
    const followed = async (what: string) => {
      const secret = await getSecret('rotating');
      const want = unb64(secret.data?.['tls.crt']);
      await waitUntil(
        async () => (await readFile(b.certFile, 'utf8')) === want,
        DEADLINE_MS,
        `replica b to follow ${what}`,
      );
      expect(await readFile(a.certFile, 'utf8')).toBe(want);
      return secret;
    };

    // Two thirds into the serving certificate's life: a new one, from the same CA.
    clock = T0 + (2 / 3) * POLICY.servingValidityMs + 1000;
    await a.controller.refresh();
    const renewed = await followed('the serving renewal');
    expect(renewed.data?.['tls.crt']).not.toBe(first.data?.['tls.crt']);
    expect(unb64(renewed.data?.[SECRET_KEYS.signingCert])).toBe(firstCa);

    // 80% into the CA's life: a next CA, trusted but not signing.
    clock = T0 + 0.8 * POLICY.caValidityMs + 1000;
    await a.controller.refresh();
    const withNext = await followed('the next CA');
    const nextCa = unb64(withNext.data?.[SECRET_KEYS.nextCert]);
    expect(pems(unb64(withNext.data?.['ca.crt']))).toEqual([nextCa, firstCa]);
    await waitUntil(() => b.controller.trustBundle() === nextCa + firstCa, DEADLINE_MS, 'replica b’s bundle');

    // 90%: promotion is due but waits until the webhook is seen to trust the next CA.
    clock = T0 + 0.9 * POLICY.caValidityMs + 1000;
    await a.controller.refresh();
    expect(unb64((await getSecret('rotating')).data?.[SECRET_KEYS.signingCert])).toBe(firstCa);
    trusted = true;
    await a.controller.refresh();
    const promoted = await followed('the promotion');
    expect(unb64(promoted.data?.[SECRET_KEYS.signingCert])).toBe(nextCa);
    expect(unb64(promoted.data?.[SECRET_KEYS.previousCert])).toBe(firstCa);
    const leaf = new X509Certificate(unb64(promoted.data?.['tls.crt']));
    expect(leaf.verify(new X509Certificate(nextCa).publicKey)).toBe(true);

    // The first CA expires: it leaves the bundle.
    clock = T0 + POLICY.caValidityMs + 1000;
    await b.controller.refresh();
    const dropped = await getSecret('rotating');
    expect(pems(unb64(dropped.data?.['ca.crt']))).toEqual([nextCa]);
    expect(a.made.ca + b.made.ca).toBe(2);
    clock = T0;
  });

  it('refuses a Secret that holds data it did not write, and adopts an empty one', async () => {
    await createAsAdmin(cp, secretsPath(NS), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'foreign' },
      data: { 'tls.crt': b64('someone else’s') },
    });
    const foreign = replica('foreign', 'foreign');
    const refused = await foreign.controller.firstSync.then(
      () => 'synced',
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ForeignSecretError);
    expect((refused as Error).message).toContain('holds data that kube-audit-rest did not write');
    expect(unb64((await getSecret('foreign')).data?.['tls.crt'])).toBe('someone else’s');

    await createAsAdmin(cp, secretsPath(NS), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'empty' },
    });
    const adopter = replica('empty', 'empty');
    await adopter.controller.firstSync;
    const adopted = await getSecret('empty');
    expect(adopted.metadata.annotations?.[OWNER_ANNOTATION]).toBe('self-managed');
    expect(adopted.type).toBe('Opaque');
    expect(await readFile(adopter.certFile, 'utf8')).toBe(unb64(adopted.data?.['tls.crt']));
  });

  it('makes again what someone broke in the Secret, from the watch', async () => {
    const a = replica('broken', 'broken');
    await a.controller.firstSync;
    const before = await getSecret('broken');
    await client.request('PUT', secretPath(NS, 'broken'), {
      body: { ...before, data: { ...before.data, [SECRET_KEYS.signingKey]: b64('garbage') } },
    });
    await waitUntil(
      async () =>
        (await getSecret('broken')).data?.[SECRET_KEYS.signingCert] !==
        before.data?.[SECRET_KEYS.signingCert],
      DEADLINE_MS,
      'a new signing CA',
    );
    const after = await getSecret('broken');
    await waitUntil(
      async () => (await readFile(a.certFile, 'utf8')) === unb64(after.data?.['tls.crt']),
      DEADLINE_MS,
      'the files to follow',
    );
    // The old CA had not expired: it stays trusted, since its certificate may still be served.
    expect(pems(unb64(after.data?.['ca.crt']))).toEqual([
      unb64(after.data?.[SECRET_KEYS.signingCert]),
      unb64(before.data?.[SECRET_KEYS.signingCert]),
    ]);
  });

  describe('webhook reconciler', () => {
    const BUNDLE = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const configPath = (name: string) => validatingWebhookConfigurationPath(name);
    const getConfig = (name: string) =>
      client.request<ValidatingWebhookConfiguration>('GET', configPath(name));

    /** A configuration with two webhooks calling a URL, without caBundle. */
    function configuration(name: string) {
      const hook = (n: string) => ({
        name: `${n}.${name}.example.com`,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: 'Ignore',
        clientConfig: { url: 'https://127.0.0.1:1/log-request' },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['configmaps'] }],
      });
      return {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name },
        webhooks: [hook('one'), hook('two')],
      };
    }
    const bundles = (config: ValidatingWebhookConfiguration) =>
      (config.webhooks ?? []).map((w) => unb64(w.clientConfig?.caBundle));

    function reconciler(
      name: string,
      extra: { beforePatch?: () => Promise<void>; log?: ReturnType<typeof createLogger> } = {},
    ) {
      const patches: JsonPatchOperation[][] = [];
      const r: WebhookReconciler = createWebhookReconciler({
        client,
        name,
        desires: [caBundleDesire(() => BUNDLE)],
        log: extra.log ?? silentLogger,
        ...(extra.beforePatch && { beforePatch: extra.beforePatch }),
        observer: { patched: (ops) => void patches.push([...ops]) },
      });
      running.push(r);
      return { r, patches };
    }

    it('waits for a missing configuration, sets every caBundle when it appears, and heals a blanked one', async () => {
      const { r, patches } = reconciler('healing');
      await waitUntil(() => r.current() === null, DEADLINE_MS, 'the first look');
      expect(r.trusts(BUNDLE)).toBe(false);
      await client.request('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
        body: configuration('healing'),
      });
      await waitUntil(
        async () => bundles(await getConfig('healing')).every((b) => b === BUNDLE),
        DEADLINE_MS,
        'caBundle',
      );
      expect(r.trusts(BUNDLE)).toBe(true);
      expect(patches).toHaveLength(1);
      expect(patches[0]?.map((o) => o.path)).toEqual([
        '/webhooks/0/clientConfig/caBundle',
        '/webhooks/1/clientConfig/caBundle',
      ]);

      await client.request('PATCH', configPath('healing'), {
        contentType: 'application/json-patch+json',
        body: [{ op: 'remove', path: '/webhooks/1/clientConfig/caBundle' }],
      });
      const blanked = performance.now();
      await waitUntil(async () => bundles(await getConfig('healing'))[1] === BUNDLE, DEADLINE_MS, 'the heal');
      expect(performance.now() - blanked).toBeLessThan(2_000);
      expect(patches.at(-1)?.map((o) => o.path)).toEqual(['/webhooks/1/clientConfig/caBundle']);
    });

    it('reads the configuration again and patches that when it changed between read and patch', async () => {
      await client.request('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
        body: configuration('racing'),
      });
      let interfered = false;
      const { patches } = reconciler('racing', {
        async beforePatch() {
          if (interfered) return;
          interfered = true;
          // Someone reorders the webhooks after our read: patching index 0 by the old read would be wrong.
          const config = await getConfig('racing');
          await client.request('PUT', configPath('racing'), {
            body: { ...config, webhooks: [...(config.webhooks ?? [])].reverse() },
          });
        },
      });
      await waitUntil(
        async () => bundles(await getConfig('racing')).every((b) => b === BUNDLE),
        DEADLINE_MS,
        'caBundle',
      );
      expect(interfered).toBe(true);
      expect(patches).toHaveLength(1);
      expect((await getConfig('racing')).webhooks?.map((w) => w.name)).toEqual([
        'two.racing.example.com',
        'one.racing.example.com',
      ]);
    });

    it('holds back, and says so, when another writer keeps undoing its caBundle', async () => {
      await client.request('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
        body: configuration('fought'),
      });
      const lines: string[] = [];
      const { patches } = reconciler('fought', { log: createLogger({ write: (l) => void lines.push(l) }) });
      // The other writer: blanks the caBundle whenever it sees it set, for three seconds.
      const until = Date.now() + 3_000;
      let blanks = 0;
      while (Date.now() < until) {
        const config = await getConfig('fought');
        if (bundles(config).some((b) => b !== '')) {
          await client
            .request('PATCH', configPath('fought'), {
              contentType: 'application/json-patch+json',
              body: (config.webhooks ?? []).flatMap((w, i) =>
                w.clientConfig?.caBundle
                  ? [{ op: 'remove', path: `/webhooks/${i}/clientConfig/caBundle` }]
                  : [],
              ),
            })
            .then(
              () => blanks++,
              () => {},
            );
        }
        await Bun.sleep(20);
      }
      // Unchecked, each blanking would be undone within milliseconds (about a hundred times in 3 s); held
      // back: the first patch, two repeats at once, then one after 1 s and one after 2 s more.
      expect(blanks).toBeGreaterThanOrEqual(3);
      expect(patches.length).toBeGreaterThanOrEqual(4);
      expect(patches.length).toBeLessThanOrEqual(6);
      expect(lines.join('')).toContain('is another tool writing its caBundle?');
    });
  });
});

/** Keeps the type import used when the suite is skipped. */
export type { CertificateController };
