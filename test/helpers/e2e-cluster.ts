/**
 * @module A real kube-apiserver calling a webhook on loopback: the shared set-up of the end-to-end suite, the
 * review capture script and the demo. Starts the control plane and the webhook side by side, registers the
 * rendered k8s/base/webhook.yaml (or a configuration given), and waits (polling with marker objects) until the API server uses it.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlPlane, startControlPlane } from '../../testing/control-plane.ts';
import { makeCaAndServerCertInProcess, type TestCa, type TestServerCert } from './certs.ts';
import type { AdmissionRequest } from './e2e-audit-log.ts';
import { type RenderOptions, renderWebhookConfiguration, type WebhookConfiguration } from './e2e-webhook.ts';
import { type ServerProcess, startServer, waitUntil } from './server-process.ts';

/** How long a registered webhook configuration may take before the API server calls it. */
const WEBHOOK_EFFECTIVE_DEADLINE_MS = 20_000;
/** Namespace of the marker ConfigMaps; `default` always exists. */
const MARKER_NAMESPACE = 'default';
/** Name prefix of the marker ConfigMaps that show the webhook is in use. */
export const MARKER_PREFIX = 'kar-marker-';

/** The webhook end of the set-up: where the API server sends reviews and what it has received. */
export type WebhookBackend = {
  /** `https://127.0.0.1:PORT/log-request`. */
  readonly url: string;
  /** How many reviews received so far contain `text` (used to spot a marker object's uid). */
  countContaining(text: string): number;
  /** Stops the backend; resolves when it is gone. */
  stop(): Promise<void>;
};

/** Makes the backend, given the serving certificate signed by the set-up's CA and a scratch directory. */
export type BackendFactory = (cert: TestServerCert, dir: string) => Promise<WebhookBackend>;

/** A JSON answer from the API server. */
export type ApiResult = { status: number; body: unknown; text: string };

/** Calls the API server as one impersonated user. */
export type UserClient = {
  /** The impersonated user's name. */
  readonly username: string;
  /** Sends `body` (JSON-encoded unless a string) with `contentType` (default `application/json`). */
  call(method: string, path: string, body?: unknown, contentType?: string): Promise<ApiResult>;
};

/** A running set-up; `stop()` it, pass or fail. */
export type E2eCluster = {
  readonly controlPlane: ControlPlane;
  readonly backend: WebhookBackend;
  readonly ca: TestCa;
  /** The configuration as registered. */
  readonly webhookConfiguration: WebhookConfiguration;
  /** Marker ConfigMaps created until the webhook answered (at least 1). */
  readonly markers: number;
  /** Stops the backend and the control plane and removes the scratch directory. Idempotent. */
  stop(): Promise<void>;
};

/** Options for {@link startE2eCluster}. */
export type E2eClusterOptions = {
  /** Starts the webhook; e.g. {@link kubeAuditRestBackend}. */
  backend: BackendFactory;
  /** The user the marker objects are created as; must be selected by `render.usernames` if that is set. */
  markerUser: string;
  /** How to render k8s/base/webhook.yaml; `url` and `caPem` are filled in. */
  render?: Omit<RenderOptions, 'url' | 'caPem'>;
  /** Extra kube-apiserver flags (its own audit log, say). */
  apiServerArgs?: readonly string[];
  /** Registers this configuration instead of the rendered manifest (`render` is then unused). */
  webhookConfiguration?: (target: { url: string; caPem: string }) => WebhookConfiguration;
};

/**
 * Returns a client that calls the API server with the admin token, impersonating `username` in `group`.
 * One group at most: fetch's Headers join repeated `Impersonate-Group` headers into one value, which the
 * API server would read as a single group named "a, b".
 */
export function impersonate(cp: ControlPlane, username: string, groups: readonly string[] = []): UserClient {
  if (groups.length > 1)
    throw new Error('impersonate() takes at most one group (fetch joins repeated headers)');
  return {
    username,
    async call(method, path, body, contentType = 'application/json') {
      const headers = new Headers({ 'Impersonate-User': username, Accept: 'application/json' });
      for (const group of groups) headers.append('Impersonate-Group', group);
      if (body !== undefined) headers.set('Content-Type', contentType);
      const res = await cp.fetch(path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: res.status, body: parsed, text };
    },
  };
}

/** Binds `username` to the cluster-admin ClusterRole, as the admin (whose calls the webhook does not see). */
export async function bindClusterAdmin(cp: ControlPlane, username: string): Promise<void> {
  const res = await cp.fetch('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `cluster-admin-${username.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: username }],
    }),
  });
  if (res.status !== 201)
    throw new Error(`binding ${username} to cluster-admin: ${res.status} ${await res.text()}`);
}

/** A backend running the compiled kube-audit-rest executable with its audit log in `dir`. */
export type KubeAuditRestBackend = WebhookBackend & {
  readonly server: ServerProcess;
  /** The audit log file. */
  readonly logFile: string;
};

/** Starts dist/kube-audit-rest (built if missing) with `cert`, logging to `<dir>/audit.log`. */
export async function kubeAuditRestBackend(
  cert: TestServerCert,
  dir: string,
  extraArgs: readonly string[] = [],
): Promise<KubeAuditRestBackend> {
  const logFile = join(dir, 'audit.log');
  const server = await startServer([
    `--cert-filename=${cert.certFile}`,
    `--cert-key-filename=${cert.keyFile}`,
    `--logger-filename=${logFile}`,
    ...extraArgs,
  ]);
  return {
    server,
    logFile,
    url: `https://127.0.0.1:${server.port}/log-request`,
    countContaining(text) {
      // Read whole on each call: it is used while the log holds only a few marker lines.
      return readFileSync(logFile, 'utf8').split(text).length - 1;
    },
    async stop() {
      if (server.proc.exitCode === null && server.proc.signalCode === null) await server.terminate();
    },
  };
}

/** Creates marker ConfigMaps as `client` until `backend` has received every webhook's review of one. */
async function waitForWebhook(
  client: UserClient,
  backend: WebhookBackend,
  webhooks: number,
): Promise<number> {
  let markers = 0;
  let lastError = '';
  await waitUntil(
    async () => {
      markers++;
      const res = await client.call('POST', `/api/v1/namespaces/${MARKER_NAMESPACE}/configmaps`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `${MARKER_PREFIX}${markers}` },
      });
      const uid = (res.body as { metadata?: { uid?: string } } | undefined)?.metadata?.uid;
      if (res.status !== 201 || uid === undefined) {
        lastError = `marker ${markers}: ${res.status} ${res.text}`;
        return false;
      }
      return backend.countContaining(uid) >= webhooks;
    },
    WEBHOOK_EFFECTIVE_DEADLINE_MS,
    `the API server to call the webhook (created ${markers} markers; last error: ${lastError || 'none'})`,
  );
  return markers;
}

/**
 * Starts the control plane and the backend in parallel (serving certificate for IP 127.0.0.1 from a CA made
 * now), registers the rendered webhook configuration as admin, and returns once the API server calls it.
 */
export async function startE2eCluster(options: E2eClusterOptions): Promise<E2eCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'kar-e2e-'));
  let controlPlane: ControlPlane | undefined;
  let backend: WebhookBackend | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const results = await Promise.allSettled([backend?.stop(), controlPlane?.stop()]);
      await rm(dir, { recursive: true, force: true });
      const failure = results.find((r) => r.status === 'rejected');
      if (failure !== undefined) throw failure.reason;
    })();
    return stopped;
  };
  try {
    // Made in process (no openssl): the README's demo runs this on a machine with only Node.js, npm and Go.
    const { ca, server: cert } = await makeCaAndServerCertInProcess(dir, {
      dnsNames: [],
      ipAddresses: ['127.0.0.1'],
    });
    const [cpResult, backendResult] = await Promise.allSettled([
      startControlPlane(options.apiServerArgs === undefined ? {} : { apiServerArgs: options.apiServerArgs }),
      options.backend(cert, dir),
    ]);
    if (cpResult.status === 'fulfilled') controlPlane = cpResult.value;
    if (backendResult.status === 'fulfilled') backend = backendResult.value;
    if (cpResult.status === 'rejected') throw cpResult.reason;
    if (backendResult.status === 'rejected') throw backendResult.reason;
    const cp = controlPlane as ControlPlane;
    const hook = backend as WebhookBackend;

    const config =
      options.webhookConfiguration?.({ url: hook.url, caPem: ca.cert }) ??
      renderWebhookConfiguration({ ...options.render, url: hook.url, caPem: ca.cert });
    const res = await cp.fetch('/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(config),
    });
    if (res.status !== 201)
      throw new Error(`registering the webhook configuration: ${res.status} ${await res.text()}`);
    const markerClient = impersonate(cp, options.markerUser, ['system:masters']);
    const markers = await waitForWebhook(markerClient, hook, config.webhooks.length);
    return { controlPlane: cp, backend: hook, ca, webhookConfiguration: config, markers, stop };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}

/** One request body as the API server sent it, byte for byte, with the parts a capture script picks by. */
export type CapturedReview = { raw: Buffer; apiVersion: string; request: AdmissionRequest };

/** A webhook backend that records every body into `store` and allows every request; for capture scripts. */
export function captureBackend(store: CapturedReview[]): BackendFactory {
  return async (cert) => {
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      tls: { cert: cert.cert, key: cert.key },
      async fetch(req) {
        const raw = Buffer.from(await req.arrayBuffer());
        const review = JSON.parse(raw.toString('utf8')) as { apiVersion: string; request: AdmissionRequest };
        store.push({ raw, apiVersion: review.apiVersion, request: review.request });
        return Response.json({
          kind: 'AdmissionReview',
          apiVersion: review.apiVersion,
          response: { uid: review.request.uid, allowed: true },
        });
      },
    });
    const backend: WebhookBackend = {
      url: `https://127.0.0.1:${server.port}/log-request`,
      countContaining: (text) => store.filter((c) => c.raw.includes(text)).length,
      stop: () => server.stop(true),
    };
    return backend;
  };
}
