/**
 * @module Tests of the API connection settings: a kubeconfig's current context (tokens, token files,
 * client certificates, relative paths) and a pod's ServiceAccount, and the errors that name what is wrong.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inClusterConnection, KubeConfigError, kubeconfigConnection } from '../../src/kube/config.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-kubeconfig-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const CA = '-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n';

/** Writes a kubeconfig with one cluster, one user and a current context joining them; returns its path. */
async function kubeconfig(file: string, cluster: object, user: object, extra = ''): Promise<string> {
  const path = join(dir, file);
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'here',
    contexts: [{ name: 'here', context: { cluster: 'c', user: 'u' } }],
    clusters: [{ name: 'c', cluster }],
    users: [{ name: 'u', user }],
  };
  await writeFile(path, JSON.stringify(doc) + extra);
  return path;
}

describe('kubeconfigConnection', () => {
  it('reads the server, the CA data and a token from the current context', async () => {
    const path = await kubeconfig(
      'token.yaml',
      { server: 'https://127.0.0.1:6443/', 'certificate-authority-data': Buffer.from(CA).toString('base64') },
      { token: 'abc' },
    );
    const c = kubeconfigConnection(path);
    expect(c.server).toBe('https://127.0.0.1:6443');
    expect(c.ca).toBe(CA);
    expect(c.token()).toBe('abc');
    expect(c.insecureSkipVerify).toBe(false);
    expect(c.clientCert).toBeUndefined();
    expect(c.source).toBe(path);
  });

  it('reads files named relative to the kubeconfig’s directory: CA, client certificate and key, token file', async () => {
    await writeFile(join(dir, 'ca.pem'), CA);
    await writeFile(join(dir, 'client.crt'), 'CERT');
    await writeFile(join(dir, 'client.key'), 'KEY');
    await writeFile(join(dir, 'token'), 'from-file\n');
    const path = await kubeconfig(
      'files.yaml',
      {
        server: 'https://k8s.example:443',
        'certificate-authority': 'ca.pem',
        'tls-server-name': 'kubernetes',
      },
      { 'client-certificate': 'client.crt', 'client-key': 'client.key', tokenFile: 'token' },
    );
    const c = kubeconfigConnection(path);
    expect([c.ca, c.clientCert, c.clientKey, c.serverName, c.token()]).toEqual([
      CA,
      'CERT',
      'KEY',
      'kubernetes',
      'from-file',
    ]);
  });

  it('refuses credential plugins, half a client certificate and a context naming nothing, saying which', async () => {
    const cases: [object, object, string][] = [
      [{ server: 'https://a' }, { exec: { command: 'aws' } }, 'users[u].user.exec is not supported'],
      [
        { server: 'https://a' },
        { 'auth-provider': { name: 'gcp' } },
        'users[u].user.auth-provider is not supported',
      ],
      [
        { server: 'https://a' },
        { 'client-certificate-data': 'Q0VSVA==' },
        'client-certificate and client-key go together',
      ],
      [{}, {}, 'clusters[c].cluster.server is not set'],
      [{ server: 'ftp://a' }, {}, 'must be http or https'],
      [
        { server: 'https://a', 'certificate-authority': 'missing.pem' },
        {},
        'cannot read clusters[c].cluster.certificate-authority',
      ],
    ];
    for (const [i, [cluster, user, message]] of cases.entries()) {
      const path = await kubeconfig(`bad-${i}.yaml`, cluster, user);
      expect(() => kubeconfigConnection(path)).toThrow(message);
      expect(() => kubeconfigConnection(path)).toThrow(KubeConfigError);
    }
    const noContext = join(dir, 'no-context.yaml');
    await writeFile(noContext, 'apiVersion: v1\nkind: Config\n');
    expect(() => kubeconfigConnection(noContext)).toThrow(
      `kubeconfig ${noContext}: current-context is not set`,
    );
    expect(() => kubeconfigConnection(join(dir, 'absent.yaml'))).toThrow('cannot read it as YAML');
  });
});

describe('inClusterConnection', () => {
  it('reads the ServiceAccount’s CA and token and brackets an IPv6 service host', async () => {
    const sa = join(dir, 'sa');
    await Bun.write(join(sa, 'ca.crt'), CA);
    await Bun.write(join(sa, 'token'), 'pod-token\n');
    const c = inClusterConnection({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, sa);
    expect(c.server).toBe('https://[fd00::1]:443');
    expect(c.ca).toBe(CA);
    expect(c.token()).toBe('pod-token');
    expect(c.source).toBe('in-cluster');
  });

  it('says to pass --kubeconfig outside a pod, and names the directory when the token is not mounted', () => {
    expect(() => inClusterConnection({})).toThrow('pass --kubeconfig');
    expect(() =>
      inClusterConnection(
        { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' },
        join(dir, 'none'),
      ),
    ).toThrow('automountServiceAccountToken');
  });
});
