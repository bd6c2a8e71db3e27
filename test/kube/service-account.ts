/**
 * @module Test helpers that give a process a ServiceAccount's identity on the test control plane: objects
 * applied as the admin, a token from the TokenRequest API, and a kubeconfig holding it.
 */
import { writeFile } from 'node:fs/promises';
import type { ControlPlane } from '../../testing/control-plane.ts';

/** Creates (POST) an object as the admin at `path`; throws unless the API server answers 201. */
export async function createAsAdmin(cp: ControlPlane, path: string, object: object): Promise<unknown> {
  const res = await cp.fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(object),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Asks the TokenRequest API for a token of ServiceAccount `namespace/name`, valid for an hour. */
export async function serviceAccountToken(
  cp: ControlPlane,
  namespace: string,
  name: string,
): Promise<string> {
  const review = (await createAsAdmin(cp, `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  })) as { status: { token: string } };
  return review.status.token;
}

/** Writes a kubeconfig for the control plane that authenticates with `token`; returns its path. */
export async function writeTokenKubeconfig(cp: ControlPlane, path: string, token: string): Promise<string> {
  const ca = Buffer.from(cp.caPem).toString('base64');
  await writeFile(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'test',
      clusters: [{ name: 'test', cluster: { server: cp.url, 'certificate-authority-data': ca } }],
      users: [{ name: 'sa', user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'sa' } }],
    }),
    { mode: 0o600 },
  );
  return path;
}
