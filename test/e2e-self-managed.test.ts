/**
 * @module End-to-end, self-managed TLS: the compiled kube-audit-rest against a real kube-apiserver, as
 * k8s/base deploys it: its ServiceAccount with k8s/base's RBAC (a token from the TokenRequest API, in a
 * kubeconfig), the Secret and webhook names from k8s/base's Deployment, and k8s/base's webhook rendered for
 * loopback with `failurePolicy: Fail` and no caBundle. The test prepares no certificate.
 *
 * In order, on one control plane: from nothing to a live webhook; rotations (20 s serving certificates,
 * 60 s CAs: serving renewals, a next CA, its promotion and the old CA's removal) under continuous API
 * traffic with every call counted; a blanked caBundle healed (patch and replace); two processes started at
 * once against no Secret, their creates held by a gate webhook until both have come, ending with one CA. Needs `bash testing/k8s-tools/build.sh` and kubectl.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:tls';
import {
  type ControlPlane,
  missingBinariesMessage,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../testing/control-plane.ts';
import { makeCa, makeServerCert } from './helpers/certs.ts';
import { auditLogReader } from './helpers/e2e-audit-log.ts';
import { impersonate, type UserClient } from './helpers/e2e-cluster.ts';
import { renderWebhookConfiguration, type WebhookConfiguration } from './helpers/e2e-webhook.ts';
import { runToExit, type ServerProcess, startServer, waitUntil } from './helpers/server-process.ts';
import { serviceAccountToken, writeTokenKubeconfig } from './kube/service-account.ts';

const REPO = resolve(import.meta.dir, '..');
/** The impersonated user whose calls the webhook configuration selects. */
const USER = 'self-managed-e2e-user';
/** Where the test's ConfigMaps go. */
const NS = 'default';
/** The serving certificate's and the CA's lives: short enough to see every kind of rotation in a minute. */
const CERT_VALIDITY = '20s';
const CA_VALIDITY_MS = 60_000;
/** The API server picks up a new webhook configuration within a second or two; the patch comes first. */
const LIVE_DEADLINE_MS = 20_000;
/** The whole CA cycle: next CA at 48 s, promotion at 54 s, the old CA gone at 60 s after the first start. */
const ROTATION_DEADLINE_MS = CA_VALIDITY_MS + 30_000;
/** Concurrent API clients during the rotations, and the pause each takes between calls (about 100 calls/s in all). */
const TRAFFIC_WORKERS = 4;
const TRAFFIC_PAUSE_MS = 30;
const HEAL_DEADLINE_MS = 5_000;
/** How long the create gate holds a lone request before letting it through (the API server waits 10 s). */
const GATE_HOLD_MS = 8_000;

const missing = [...missingControlPlaneBinaries(), ...(Bun.which('kubectl') === null ? ['kubectl'] : [])];

type Secret = {
  metadata: { resourceVersion: string; annotations?: Record<string, string> };
  data: Record<string, string>;
};

/** The PEM certificates of a bundle. */
function pems(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');

/** The certificate a TLS handshake with 127.0.0.1:`port` presents (not verified here). */
function servedCertificate(port: number): Promise<X509Certificate> {
  return new Promise((done, fail) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.end();
      if (cert === undefined) fail(new Error('no certificate'));
      else done(cert);
    });
    socket.on('error', fail);
  });
}

/** A counter or gauge from Prometheus text: the sum of the samples of `name` whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Runs openssl; resolves its exit status and output. */
async function openssl(...args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(['openssl', ...args], { stdout: 'pipe', stderr: 'pipe' });
  const [code, out, err] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, out: out + err };
}

describe('self-managed TLS end to end (real kube-apiserver)', () => {
  if (missing.length > 0) {
    it('has kube-apiserver, etcd and kubectl', () => {
      throw new Error(missingBinariesMessage(missing, process.env.CI === 'true'));
    });
    return;
  }

  let cp: ControlPlane;
  let dir: string;
  let api: UserClient;
  let kubeconfig: string;
  /** k8s/base's self-managed flags (Secret, webhook configuration, Service). */
  let baseFlags: string[];
  let secretPath: string;
  let webhookPath: string;
  let webhookName: string;
  let registered: WebhookConfiguration;
  const processes: ServerProcess[] = [];
  let first: ServerProcess;
  let firstStarted: number;
  let firstLog: string;

  const kubectl = async (args: string[], stdin?: string): Promise<string> => {
    const proc = Bun.spawn(['kubectl', `--kubeconfig=${cp.kubeconfigPath}`, ...args], {
      cwd: REPO,
      stdin: stdin === undefined ? 'ignore' : Buffer.from(stdin),
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const [code, out, err] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    if (code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${err}`);
    return out;
  };
  const adminJson = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const res = await cp.fetch(path, init);
    const text = await res.text();
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  };
  const getSecret = () => adminJson<Secret>(secretPath);
  const getWebhook = () => adminJson<WebhookConfiguration>(webhookPath);
  const caBundles = async () =>
    (await getWebhook()).webhooks.map((w) => unb64(w.clientConfig.caBundle as string));

  /** Starts kube-audit-rest in self-managed mode as k8s/base configures it, with files in `<dir>/<name>`. */
  async function startSelfManaged(name: string): Promise<{ server: ServerProcess; logFile: string }> {
    const logFile = join(dir, name, 'audit.log');
    await Bun.write(logFile, '');
    const server = await startServer([
      ...baseFlags,
      `--kubeconfig=${kubeconfig}`,
      '--self-managed-extra-ip=127.0.0.1', // the API server calls https://127.0.0.1:PORT
      `--self-managed-ca-validity=${CA_VALIDITY_MS / 1000}s`,
      `--self-managed-cert-validity=${CERT_VALIDITY}`,
      `--cert-filename=${join(dir, name, 'tls', 'tls.crt')}`,
      `--cert-key-filename=${join(dir, name, 'tls', 'tls.key')}`,
      `--logger-filename=${logFile}`,
    ]);
    processes.push(server);
    return { server, logFile };
  }

  const metricsOf = async (server: ServerProcess) =>
    (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();

  /** Creates a ConfigMap as {@link USER}; resolves its uid, or the failure's status and text. */
  async function createConfigMap(
    name: string,
  ): Promise<{ ok: true; uid: string } | { ok: false; why: string }> {
    const res = await api.call('POST', `/api/v1/namespaces/${NS}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name },
    });
    const uid = (res.body as { metadata?: { uid?: string } } | undefined)?.metadata?.uid;
    return res.status === 201 && uid !== undefined
      ? { ok: true, uid }
      : { ok: false, why: `${res.status} ${res.text.slice(0, 300)}` };
  }

  beforeAll(async () => {
    cp = await startControlPlane();
    dir = await mkdtemp(join(tmpdir(), 'kar-e2e-self-managed-'));
    api = impersonate(cp, USER, ['system:masters']);
    // k8s/base's Namespace, ServiceAccount and RBAC, applied for real.
    const base = Bun.YAML.parse(await kubectl(['kustomize', 'k8s/base'])) as {
      kind: string;
      apiVersion: string;
      metadata: { name: string; namespace?: string };
      spec?: { template: { spec: { containers: { args: string[] }[] } } };
    }[];
    const rbac = base.filter(
      (o) => ['Namespace', 'ServiceAccount'].includes(o.kind) || o.apiVersion.startsWith('rbac.'),
    );
    await kubectl(
      ['apply', '--server-side', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
    );
    const args = base.find((o) => o.kind === 'Deployment')?.spec?.template.spec.containers[0]?.args ?? [];
    baseFlags = args.filter((a) =>
      /^--(tls-mode|self-managed-secret|webhook-configuration-name|service-)/.test(a),
    );
    expect(baseFlags).toHaveLength(5);
    const [secretNamespace, secretName] = (
      baseFlags.find((a) => a.startsWith('--self-managed-secret='))?.split('=')[1] ?? ''
    ).split('/');
    secretPath = `/api/v1/namespaces/${secretNamespace}/secrets/${secretName}`;
    webhookName = baseFlags.find((a) => a.startsWith('--webhook-configuration-name='))?.split('=')[1] ?? '';
    webhookPath = `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${webhookName}`;
    const account = base.find((o) => o.kind === 'ServiceAccount')?.metadata;
    const token = await serviceAccountToken(cp, account?.namespace ?? '', account?.name ?? '');
    kubeconfig = await writeTokenKubeconfig(cp, join(dir, 'kubeconfig'), token);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(
      processes.map((p) =>
        p.proc.exitCode === null && p.proc.signalCode === null ? p.terminate() : undefined,
      ),
    );
    await cp?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('goes from nothing to a live webhook with failurePolicy Fail, with no certificate prepared', async () => {
    firstStarted = performance.now();
    const started = await startSelfManaged('first');
    first = started.server;
    firstLog = started.logFile;
    const secret = await getSecret();
    expect(secret.metadata.annotations?.['kube-audit-rest/tls-mode']).toBe('self-managed');

    // k8s/base's webhook, for loopback, failing closed, without a caBundle.
    const rendered = renderWebhookConfiguration({
      url: `https://127.0.0.1:${first.port}/log-request`,
      caPem: '',
      failurePolicy: 'Fail',
      usernames: [USER],
    });
    expect(rendered.metadata.name).toBe(webhookName);
    for (const hook of rendered.webhooks) delete hook.clientConfig.caBundle;
    registered = await adminJson<WebhookConfiguration>(
      '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(rendered),
      },
    );
    const registeredAt = performance.now();

    const log = auditLogReader(firstLog);
    let attempts = 0;
    let lastFailure = '';
    let liveUid = '';
    await waitUntil(
      async () => {
        const result = await createConfigMap(`live-${++attempts}`);
        if (!result.ok) {
          lastFailure = result.why;
          return false;
        }
        liveUid = result.uid;
        return true;
      },
      LIVE_DEADLINE_MS,
      `a create through the webhook (last failure: ${lastFailure})`,
    );
    const liveMs = performance.now() - registeredAt;
    expect(log.entries().some((e) => e.line.request.object?.metadata?.uid === liveUid)).toBe(true);
    // The API server refused the calls made before the caBundle was in (failurePolicy Fail), and only those.
    if (attempts > 1) expect(lastFailure).toContain('failed calling webhook');

    const bundle = unb64(secret.data['ca.crt']);
    expect(await caBundles()).toEqual(registered.webhooks.map(() => bundle));
    const served = await servedCertificate(first.port);
    expect(served.raw.toString('base64')).toBe(
      new X509Certificate(unb64(secret.data['tls.crt'])).raw.toString('base64'),
    );
    expect(served.subjectAltName).toBe(
      'DNS:kube-audit-rest, DNS:kube-audit-rest.kube-audit-rest, DNS:kube-audit-rest.kube-audit-rest.svc, ' +
        'DNS:kube-audit-rest.kube-audit-rest.svc.cluster.local, IP Address:127.0.0.1',
    );
    await writeFile(join(dir, 'ca.crt'), bundle);
    await writeFile(join(dir, 'served.crt'), served.toString());
    const verified = await openssl(
      'verify',
      '-purpose',
      'sslserver',
      '-CAfile',
      join(dir, 'ca.crt'),
      join(dir, 'served.crt'),
    );
    expect(verified.out).toContain(': OK');
    console.log(
      `self-managed e2e: ready ${Math.round(first.startupMs)} ms after start; live ${Math.round(liveMs)} ms after ` +
        `the webhook configuration was registered (${attempts} creates, ${attempts - 1} refused before the caBundle)`,
    );
  });

  it(
    'rotates serving certificates and the CA under continuous API traffic without one failed call',
    async () => {
      const name = registered.webhooks[0]?.name ?? '';
      const apiBefore = await (await cp.fetch('/metrics')).text();
      const firstCa = unb64((await getSecret()).data['signing-ca.crt']);
      const uids: string[] = [];
      const failures: string[] = [];
      let stop = false;
      let calls = 0;
      const bundleSizes = new Set<number>();
      const workers = Array.from({ length: TRAFFIC_WORKERS }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          calls++;
          const result = await createConfigMap(`rotation-${w}-${i}`);
          if (result.ok) uids.push(result.uid);
          else failures.push(result.why);
          await Bun.sleep(TRAFFIC_PAUSE_MS);
        }
      });
      const trafficStart = performance.now();
      try {
        // Until the first CA has been replaced and has left the caBundle again.
        await waitUntil(
          async () => {
            const bundles = await caBundles();
            const bundle = bundles[0] ?? '';
            bundleSizes.add(pems(bundle).length);
            return (
              pems(bundle).length === 1 &&
              !bundle.includes(firstCa.trim()) &&
              bundles.every((b) => b === bundle)
            );
          },
          Math.max(ROTATION_DEADLINE_MS - (performance.now() - firstStarted), 10_000),
          'the first CA to be replaced and dropped from the caBundle',
        );
      } finally {
        stop = true;
        await Promise.all(workers);
      }
      const trafficMs = performance.now() - trafficStart;
      const apiAfter = await (await cp.fetch('/metrics')).text();
      const ours = await metricsOf(first);

      const delta = (metric: string, labels: Record<string, string>) =>
        sample(apiAfter, metric, labels) - sample(apiBefore, metric, labels);
      const rejections = delta('apiserver_admission_webhook_rejection_count', { name });
      const callsOk = delta('apiserver_admission_webhook_request_total', { name, code: '200' });
      const callsAll = delta('apiserver_admission_webhook_request_total', { name });
      const figures = {
        trafficSeconds: Math.round(trafficMs / 100) / 10,
        clientCalls: calls,
        clientFailures: failures.length,
        webhookCallsByApiServer: callsAll,
        webhookCallsNot200: callsAll - callsOk,
        webhookRejections: rejections,
        caRotations: sample(ours, 'kube_audit_rest_self_managed_rotations_total', { what: 'ca' }),
        servingRotations: sample(ours, 'kube_audit_rest_self_managed_rotations_total', { what: 'serving' }),
        caBundlePatches: sample(ours, 'kube_audit_rest_webhook_cabundle_patches_total'),
        reloads: sample(ours, 'kube_audit_rest_certificate_reloads_total', { result: 'success' }),
        reloadFailures: sample(ours, 'kube_audit_rest_certificate_reloads_total', { result: 'failure' }),
        reconcileErrors: sample(ours, 'kube_audit_rest_self_managed_reconcile_errors_total'),
        caBundleSizesSeen: [...bundleSizes].sort(),
      };
      console.log(`self-managed e2e rotation: ${JSON.stringify(figures)}`);

      expect(failures.slice(0, 3)).toEqual([]);
      expect(rejections).toBe(0);
      expect(callsAll).toBe(callsOk);
      expect(callsOk).toBeGreaterThanOrEqual(uids.length);
      // The first CA, the next one; several serving certificates, one at the promotion; each reloaded.
      expect(figures.caRotations).toBe(2);
      expect(figures.servingRotations).toBeGreaterThanOrEqual(4);
      // Each new serving certificate after the first is a reload (two within the server's 200 ms debounce would be one).
      expect(figures.reloads).toBeGreaterThanOrEqual(3);
      expect(figures.reloads).toBeLessThanOrEqual(figures.servingRotations - 1);
      expect(figures.reloadFailures).toBe(0);
      expect(figures.caBundleSizesSeen).toEqual([1, 2]);
      // The self-managed metrics pass Prometheus' own lint, as the others do.
      const promtool = Bun.spawn(['promtool', 'check', 'metrics'], {
        stdin: Buffer.from(ours),
        stdout: 'pipe',
        stderr: 'pipe',
      });
      const [lint, lintOut, lintErr] = await Promise.all([
        promtool.exited,
        new Response(promtool.stdout).text(),
        new Response(promtool.stderr).text(),
      ]);
      expect({ lint, findings: (lintOut + lintErr).trim() }).toEqual({ lint: 0, findings: '' });
      // Every call that succeeded was written.
      const logged = new Set(
        auditLogReader(firstLog)
          .entries()
          .map((e) => e.line.request.object?.metadata?.uid),
      );
      expect(uids.filter((uid) => !logged.has(uid))).toEqual([]);
      expect(uids.length).toBeGreaterThan(500);
    },
    ROTATION_DEADLINE_MS + 30_000,
  );

  it('puts a blanked caBundle back within seconds, after a patch and after a replace', async () => {
    const want = (await caBundles()).join();
    const collection = webhookPath.slice(0, webhookPath.lastIndexOf('/'));
    const watch = await watchEvents<WebhookConfiguration>(collection, webhookName);
    const bundlesOf = (c: WebhookConfiguration) =>
      c.webhooks.map((w) => unb64(w.clientConfig.caBundle as string)).join();
    /** Blanks the caBundle with `blank`; resolves the time from the blanking to the repair, as the watch saw them. */
    const heal = async (blank: () => Promise<unknown>): Promise<number> => {
      const from = watch.events.length;
      await blank();
      await waitUntil(
        () => watch.events.slice(from).some((e) => bundlesOf(e.object) === want),
        HEAL_DEADLINE_MS,
        'the caBundle back',
      );
      const seen = watch.events.slice(from);
      const blanked = seen.findIndex((e) => bundlesOf(e.object) !== want);
      const healed = seen.findIndex((e, i) => i > blanked && bundlesOf(e.object) === want);
      expect(blanked).toBeGreaterThanOrEqual(0);
      expect(healed).toBeGreaterThan(blanked);
      return (seen[healed]?.at ?? 0) - (seen[blanked]?.at ?? 0);
    };
    try {
      const afterPatch = await heal(() =>
        adminJson(webhookPath, {
          method: 'PATCH',
          headers: { 'Content-Type': 'application/json-patch+json' },
          body: JSON.stringify([{ op: 'remove', path: '/webhooks/0/clientConfig/caBundle' }]),
        }),
      );
      // As `kubectl replace -f` of the manifest does: the whole object, without caBundle.
      const afterReplace = await heal(async () => {
        const replaced = await getWebhook();
        for (const hook of replaced.webhooks) delete hook.clientConfig.caBundle;
        await kubectl(['replace', '-f', '-'], JSON.stringify(replaced));
      });
      expect(afterPatch).toBeLessThan(HEAL_DEADLINE_MS);
      expect(afterReplace).toBeLessThan(HEAL_DEADLINE_MS);
      const created = await createConfigMap('after-heal');
      expect(created.ok).toBe(true);
      console.log(
        `self-managed e2e heal: ${Math.round(afterPatch)} ms after a JSON patch, ${Math.round(afterReplace)} ms after a replace (blank to repair, as a watch saw them)`,
      );
    } finally {
      await watch.stop();
    }
  });

  it('ends with one CA when two processes start at once against no Secret and race to create it', async () => {
    await first.terminate();
    await cp.fetch(secretPath, { method: 'DELETE' });
    await waitUntil(async () => (await cp.fetch(secretPath)).status === 404, 5_000, 'the Secret to be gone');
    const secretName = secretPath.slice(secretPath.lastIndexOf('/') + 1);
    const collection = secretPath.slice(0, secretPath.lastIndexOf('/'));

    // A gate in front of the Secret's creation: a webhook that holds each create until two have come, so
    // both processes' creates reach the API server's storage together and one must lose.
    const gate = await startCreateGate(secretName);
    // Every version of the Secret from now on, as the API server records them.
    const secretWatch = await watchEvents<unknown>(collection, secretName);

    let a: { server: ServerProcess };
    let b: { server: ServerProcess };
    try {
      [a, b] = await Promise.all([startSelfManaged('replica-a'), startSelfManaged('replica-b')]);
    } finally {
      await gate.stop();
    }
    expect(gate.held()).toBe(2);
    const secret = await getSecret();
    const cas = pems(unb64(secret.data['ca.crt']));
    expect(cas).toHaveLength(1);
    const ca = new X509Certificate(cas[0] as string);
    const leaf = new X509Certificate(unb64(secret.data['tls.crt']));
    for (const server of [a.server, b.server]) {
      const served = await servedCertificate(server.port);
      expect(served.fingerprint256).toBe(leaf.fingerprint256);
      expect(served.verify(ca.publicKey)).toBe(true);
    }
    const made = await Promise.all(
      [a.server, b.server].map(async (s) =>
        sample(await metricsOf(s), 'kube_audit_rest_self_managed_rotations_total', { what: 'ca' }),
      ),
    );
    expect(made.reduce((x, y) => x + y, 0)).toBe(1);
    const logs = [a.server.stderr(), b.server.stderr()].join('');
    expect(logs.split('created the Secret with a new CA').length - 1).toBe(1);
    expect(logs.split('another replica created the Secret first').length - 1).toBe(1);
    // Both replicas keep the webhook's caBundle at that one CA.
    await waitUntil(
      async () => (await caBundles()).every((bundle) => bundle === cas[0]),
      HEAL_DEADLINE_MS,
      'the caBundle',
    );
    await secretWatch.stop();
    // One create, and nothing rewrote it since: the API server recorded a single version.
    expect(secretWatch.events.map((e) => e.type)).toEqual(['ADDED']);
    console.log(
      `self-managed e2e two replicas: both creates reached the API server together; one CA (made ${made.join(' + ')}), ` +
        'the loser got 409 AlreadyExists and serves the winner’s certificate',
    );
  });

  it('exits at start with the API server’s reason when its RBAC does not cover the Secret', async () => {
    const started = performance.now();
    const { code, stderr } = await runToExit([
      ...baseFlags.map((a) =>
        a.startsWith('--self-managed-secret=') ? '--self-managed-secret=kube-audit-rest/not-granted' : a,
      ),
      `--kubeconfig=${kubeconfig}`,
      `--cert-filename=${join(dir, 'refused', 'tls.crt')}`,
      `--cert-key-filename=${join(dir, 'refused', 'tls.key')}`,
      `--logger-filename=${join(dir, 'refused.log')}`,
      '--server-port=0',
      '--metrics-port=0',
      '--bind-address=127.0.0.1',
    ]);
    expect(code).toBe(1);
    expect(stderr).toContain('self-managed TLS: no certificate to serve');
    expect(stderr).toContain('403 Forbidden');
    expect(stderr).toContain('secrets \\"not-granted\\" is forbidden');
    expect(performance.now() - started).toBeLessThan(10_000); // refused at once, not after the start deadline
  });

  it('keeps the webhook configuration compiled from --policy-file, so the API server never calls for what it drops', async () => {
    // Only the process under test serves from here on; the configuration is pointed at it.
    await Promise.all(
      processes.map((p) =>
        p.proc.exitCode === null && p.proc.signalCode === null ? p.terminate() : undefined,
      ),
    );
    const policyFile = join(dir, 'policy.yaml');
    await writeFile(
      policyFile,
      `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  namespaces: [quiet]\n- level: RequestResponse\n  users: ["${USER}"]\n`,
    );
    await adminJson('/api/v1/namespaces', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'quiet' } }),
    });
    const logFile = join(dir, 'policy', 'audit.log');
    await Bun.write(logFile, '');
    const server = await startServer([
      ...baseFlags,
      `--kubeconfig=${kubeconfig}`,
      '--self-managed-extra-ip=127.0.0.1',
      `--cert-filename=${join(dir, 'policy', 'tls', 'tls.crt')}`,
      `--cert-key-filename=${join(dir, 'policy', 'tls', 'tls.key')}`,
      `--logger-filename=${logFile}`,
      `--policy-file=${policyFile}`,
    ]);
    processes.push(server);
    await adminJson(webhookPath, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json-patch+json' },
      body: JSON.stringify([
        {
          op: 'replace',
          path: '/webhooks/0/clientConfig/url',
          value: `https://127.0.0.1:${server.port}/log-request`,
        },
      ]),
    });
    const compiled = async () => {
      const hook = (await getWebhook()).webhooks[0] as unknown as {
        matchConditions?: { expression: string }[];
      };
      return (hook.matchConditions ?? []).some((c) => c.expression.includes('quiet'));
    };
    await waitUntil(compiled, HEAL_DEADLINE_MS, 'the compiled match conditions in the webhook configuration');

    const log = auditLogReader(logFile);
    const quiet = await api.call('POST', '/api/v1/namespaces/quiet/configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'dropped' },
    });
    expect(quiet.status).toBe(201);
    let keptUid = '';
    await waitUntil(
      async () => {
        if (keptUid === '') {
          const kept = await createConfigMap(`recorded-${Date.now()}`);
          if (kept.ok) keptUid = kept.uid;
        }
        return keptUid !== '' && log.entries().some((e) => e.line.request.object?.metadata?.uid === keptUid);
      },
      LIVE_DEADLINE_MS,
      'the recorded ConfigMap in the log',
    );
    expect(log.entries().some((e) => e.line.request.namespace === 'quiet')).toBe(false);
    // Not even asked: the API server's match conditions kept the call away, so no None decision was made.
    expect(sample(await metricsOf(server), 'kube_audit_rest_policy_decisions_total', { level: 'None' })).toBe(
      0,
    );

    // A user's edit of the match is undone, as a blanked caBundle is.
    await adminJson(webhookPath, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json-patch+json' },
      body: JSON.stringify([{ op: 'remove', path: '/webhooks/0/matchConditions' }]),
    });
    await waitUntil(compiled, HEAL_DEADLINE_MS, 'the compiled match conditions back');
  });

  /**
   * Watches object `name` in `collection` as the admin from now on (from the collection's resourceVersion
   * when it resolves), recording each event with the time it arrived.
   */
  async function watchEvents<T>(
    collection: string,
    name: string,
  ): Promise<{ events: { type: string; object: T; at: number }[]; stop(): Promise<void> }> {
    const events: { type: string; object: T; at: number }[] = [];
    const abort = new AbortController();
    // Every change after this list is delivered, however soon after it the watch itself starts.
    const list = await adminJson<{ metadata: { resourceVersion: string } }>(collection);
    const running = (async () => {
      const res = await cp.fetch(
        `${collection}?watch=1&resourceVersion=${list.metadata.resourceVersion}&fieldSelector=metadata.name%3D${name}`,
        { signal: abort.signal },
      );
      const decoder = new TextDecoder();
      let text = '';
      for await (const chunk of res.body as ReadableStream<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        const lines = text.split('\n');
        text = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.trim()) continue;
          const event = JSON.parse(line) as { type: string; object: T };
          events.push({ ...event, at: performance.now() });
        }
      }
    })().catch(() => {});
    return {
      events,
      async stop() {
        abort.abort();
        await running;
      },
    };
  }

  /**
   * Registers a webhook that holds each create of Secret `name` until a second one arrives (or 8 s pass),
   * then allows both; creates of `gate-marker-*` Secrets pass at once and show when it is in use.
   */
  async function startCreateGate(name: string): Promise<{ held(): number; stop(): Promise<void> }> {
    const ca = await makeCa(dir, { name: 'gate-ca' });
    const cert = await makeServerCert(dir, ca, { name: 'gate', dnsNames: [], ipAddresses: ['127.0.0.1'] });
    const waiting: (() => void)[] = [];
    const markers = new Set<string>();
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      tls: { cert: cert.cert, key: cert.key },
      async fetch(req) {
        const review = (await req.json()) as { apiVersion: string; request: { uid: string; name?: string } };
        const objectName = review.request.name ?? '';
        if (objectName.startsWith('gate-marker-')) markers.add(objectName);
        else {
          const release = new Promise<void>((done) => waiting.push(done));
          if (waiting.length >= 2) for (const done of waiting) done();
          await Promise.race([release, Bun.sleep(GATE_HOLD_MS)]);
        }
        return Response.json({
          apiVersion: review.apiVersion,
          kind: 'AdmissionReview',
          response: { uid: review.request.uid, allowed: true },
        });
      },
    });
    const gatePath = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';
    await adminJson(gatePath, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name: 'self-managed-e2e-gate' },
        webhooks: [
          {
            name: 'gate.self-managed-e2e.test',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            timeoutSeconds: 10,
            clientConfig: {
              url: `https://127.0.0.1:${server.port}/`,
              caBundle: Buffer.from(ca.cert).toString('base64'),
            },
            rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['secrets'] }],
            matchConditions: [
              {
                name: 'the-secret-or-a-marker',
                expression: `object.metadata.name == ${JSON.stringify(name)} || object.metadata.name.startsWith("gate-marker-")`,
              },
            ],
          },
        ],
      }),
    });
    let marker = 0;
    await waitUntil(
      async () => {
        const markerName = `gate-marker-${++marker}`;
        await cp.fetch(`/api/v1/namespaces/${NS}/secrets`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: markerName } }),
        });
        return markers.has(markerName);
      },
      LIVE_DEADLINE_MS,
      'the gate webhook to be in use',
    );
    return {
      held: () => waiting.length,
      async stop() {
        await cp.fetch(`${gatePath}/self-managed-e2e-gate`, { method: 'DELETE' });
        await server.stop(true);
      },
    };
  }
});
