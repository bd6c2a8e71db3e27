import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { existsSync } from 'node:fs';
import {
  type ControlPlane,
  missingBinariesMessage,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../testing/control-plane.ts';

const missing = missingControlPlaneBinaries();

/** Runs kubectl against the control plane; resolves its stdout, throws with stderr on a non-zero exit. */
async function kubectl(cp: ControlPlane, ...args: string[]): Promise<string> {
  const proc = Bun.spawn(['kubectl', `--kubeconfig=${cp.kubeconfigPath}`, ...args], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${code}: ${stderr}`);
  return stdout;
}

/** Whether a process with this PID exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('control plane (real etcd + kube-apiserver)', () => {
  if (missing.length > 0) {
    // Fail, never skip: a green run must mean the end-to-end tools were really exercised.
    it('has etcd and kube-apiserver built', () => {
      throw new Error(missingBinariesMessage(missing, Boolean(process.env.CI)));
    });
    return;
  }

  let cp: ControlPlane;
  beforeAll(async () => {
    cp = await startControlPlane();
  }, 90_000);
  afterAll(async () => {
    await cp?.stop();
  });

  it('serves /readyz and its version when started', async () => {
    const res = await cp.fetch('/version');
    expect(res.status).toBe(200);
    const version = (await res.json()) as { gitVersion: string };
    expect(version.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    expect(cp.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('creates a namespace and a configmap when driven by kubectl with the kubeconfig', async () => {
    await kubectl(cp, 'create', 'namespace', 'kubectl-ns');
    await kubectl(
      cp,
      'create',
      'configmap',
      'cm',
      '--namespace=kubectl-ns',
      '--from-literal=made-by=kubectl',
    );
    const cm = JSON.parse(
      await kubectl(cp, 'get', 'configmap', 'cm', '--namespace=kubectl-ns', '-o', 'json'),
    ) as {
      data: Record<string, string>;
    };
    expect(cm.data).toEqual({ 'made-by': 'kubectl' });
  });

  it('creates a namespace and a configmap when called with fetch and the bearer token', async () => {
    const post = (path: string, body: unknown): Promise<Response> =>
      cp.fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });

    const ns = await post('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'fetch-ns' },
    });
    expect(ns.status).toBe(201);
    const cm = await post('/api/v1/namespaces/fetch-ns/configmaps', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cm' },
      data: { 'made-by': 'fetch' },
    });
    expect(cm.status).toBe(201);
    const got = (await (await cp.fetch('/api/v1/namespaces/fetch-ns/configmaps/cm')).json()) as {
      data: Record<string, string>;
    };
    expect(got.data).toEqual({ 'made-by': 'fetch' });
  });

  it('refuses a request without the token when RBAC is on', async () => {
    const res = await fetch(`${cp.url}/api/v1/namespaces`, { tls: { ca: cp.caPem } });
    expect(res.status).toBe(403);
  });

  it('ends both processes and removes its temp dir when stopped', async () => {
    const { pids, dir } = cp;
    await cp.stop();
    expect(alive(pids.etcd)).toBe(false);
    expect(alive(pids.apiServer)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
