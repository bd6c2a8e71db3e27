/**
 * End-to-end tests of who may call, behind a real kube-apiserver: it reaches kube-audit-rest at
 * `/log-request/<token>` and the line names the token's cluster; a configuration without the token is
 * refused; and, given a client certificate through its admission configuration, it passes
 * `--client-ca-file`.
 */
import { afterAll, describe, expect, it } from 'bun:test';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingBinariesMessage, missingControlPlaneBinaries } from '../testing/control-plane.ts';
import { makeCa, makeServerCert } from './helpers/certs.ts';
import {
  type E2eCluster,
  impersonate,
  type KubeAuditRestBackend,
  kubeAuditRestBackend,
  startE2eCluster,
} from './helpers/e2e-cluster.ts';
import { renderWebhookConfiguration } from './helpers/e2e-webhook.ts';

const USER = 'e2e-caller';
const OUTSIDER = 'e2e-outsider';
const TOKEN = '6b1d3f5a7c9e0b2d4f6a8c0e1b3d5f7a';
const CLUSTER = 'e2e-cluster';
/** Starting a control plane takes a few seconds here; generous for a loaded machine. */
const SETUP_TIMEOUT_MS = 90_000;

const missing = missingControlPlaneBinaries();
const clusters: E2eCluster[] = [];
let scratch: string | undefined;

afterAll(async () => {
  await Promise.all(clusters.map((c) => c.stop()));
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** The audit lines of a backend, parsed. */
async function lines(backend: KubeAuditRestBackend): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(backend.logFile, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function metrics(backend: KubeAuditRestBackend): Promise<string> {
  return (await fetch(`http://127.0.0.1:${backend.server.metricsPort}/metrics`)).text();
}

describe('who may call, behind a real kube-apiserver', () => {
  if (missing.length > 0) {
    it('has etcd and kube-apiserver built', () => {
      throw new Error(missingBinariesMessage(missing, Boolean(process.env.CI)));
    });
    return;
  }

  it(
    "is called at /log-request/<token>, names the token's cluster, and refuses a configuration without the token",
    async () => {
      scratch ??= await mkdtemp(join(tmpdir(), 'kar-e2e-auth-'));
      const tokens = join(scratch, 'tokens');
      await writeFile(tokens, `${TOKEN} ${CLUSTER}\n`);
      const cluster = await startE2eCluster({
        backend: async (cert, dir) => {
          const backend = await kubeAuditRestBackend(cert, dir, [`--path-token-file=${tokens}`]);
          return { ...backend, url: `${backend.url}/${TOKEN}` };
        },
        markerUser: USER,
        render: { failurePolicy: 'Fail', usernames: [USER] },
      });
      clusters.push(cluster);
      const backend = cluster.backend as KubeAuditRestBackend;
      // The markers reached it through the token: every line names the token's cluster.
      const marked = await lines(backend);
      expect(marked.length).toBeGreaterThan(0);
      expect(new Set(marked.map((l) => l.clusterName))).toEqual(new Set([CLUSTER]));

      // A second configuration with the plain path, failing closed, for another user.
      const plain = renderWebhookConfiguration({
        url: backend.url.slice(0, -(TOKEN.length + 1)),
        caPem: cluster.ca.cert,
        failurePolicy: 'Fail',
        usernames: [OUTSIDER],
      });
      plain.metadata.name = 'kube-audit-rest-without-token';
      for (const hook of plain.webhooks) hook.name = `without-token.${hook.name}`;
      const registered = await cluster.controlPlane.fetch(
        '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(plain) },
      );
      expect(registered.status).toBe(201);
      const outsider = impersonate(cluster.controlPlane, OUTSIDER, ['system:masters']);
      const configMap = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } });
      let attempts = 0;
      // The API server picks a new configuration up within a second or so: poll until it calls it.
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const res = await outsider.call(
          'POST',
          '/api/v1/namespaces/default/configmaps',
          configMap(`o-${attempts}`),
        );
        if (res.status !== 201) {
          expect(res.status).toBe(500);
          expect(res.text).toContain('without-token.');
          break;
        }
        attempts++;
        await Bun.sleep(100);
      }
      expect(await metrics(backend)).toMatch(
        /kube_audit_rest_invalid_requests_total\{reason="not_found"\} [1-9]/,
      );
      expect((await lines(backend)).some((l) => JSON.stringify(l).includes(OUTSIDER))).toBe(false);
    },
    SETUP_TIMEOUT_MS,
  );

  it(
    'is called with the client certificate its admission configuration names, which --client-ca-file accepts',
    async () => {
      scratch ??= await mkdtemp(join(tmpdir(), 'kar-e2e-auth-'));
      const dir = await mkdtemp(join(scratch, 'mtls-'));
      const clientCa = await makeCa(dir, { name: 'client-ca' });
      const client = await makeServerCert(dir, clientCa, {
        name: 'kube-apiserver-client',
        commonName: 'kube-apiserver',
        extendedKeyUsage: 'clientAuth',
        dnsNames: [],
        ipAddresses: [],
      });
      // The API server finds a webhook's credentials by its host in this kubeconfig; `*` is any host.
      const kubeconfig = join(dir, 'webhook-kubeconfig');
      await writeFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          users: [
            { name: '*', user: { 'client-certificate': client.certFile, 'client-key': client.keyFile } },
          ],
        }),
      );
      const admission = join(dir, 'admission.json');
      await writeFile(
        admission,
        JSON.stringify({
          apiVersion: 'apiserver.config.k8s.io/v1',
          kind: 'AdmissionConfiguration',
          plugins: [
            {
              name: 'ValidatingAdmissionWebhook',
              configuration: {
                apiVersion: 'apiserver.config.k8s.io/v1',
                kind: 'WebhookAdmissionConfiguration',
                kubeConfigFile: kubeconfig,
              },
            },
          ],
        }),
      );
      const cluster = await startE2eCluster({
        backend: (cert, backendDir) =>
          kubeAuditRestBackend(cert, backendDir, [`--client-ca-file=${clientCa.certFile}`]),
        markerUser: USER,
        render: { failurePolicy: 'Fail', usernames: [USER] },
        apiServerArgs: [`--admission-control-config-file=${admission}`],
      });
      clusters.push(cluster);
      const backend = cluster.backend as KubeAuditRestBackend;
      expect((await lines(backend)).length).toBeGreaterThan(0);
      // And a caller without the certificate is refused at the handshake.
      const anonymous = await fetch(`${backend.url}`, {
        method: 'POST',
        tls: { ca: cluster.ca.cert },
        body: '{}',
      }).then(
        (r) => r.status,
        (e: NodeJS.ErrnoException) => e.code ?? e.message,
      );
      expect(typeof anonymous).toBe('string'); // an error code: no HTTP answer at all
    },
    SETUP_TIMEOUT_MS,
  );
});
