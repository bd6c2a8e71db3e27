/** @module testing/control-plane — a real etcd + kube-apiserver on loopback, for end-to-end tests. */
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Where testing/k8s-tools/build.sh puts the binaries: `$K8S_BIN_DIR`, else `<repo>/.cache/k8s-bin`. */
export const defaultBinDir: string =
  process.env.K8S_BIN_DIR ?? resolve(import.meta.dir, '..', '.cache', 'k8s-bin');

/** The binaries that {@link startControlPlane} runs. */
export const controlPlaneBinaries = ['etcd', 'kube-apiserver'] as const;

/** Options for {@link startControlPlane}; every field is optional. */
export interface ControlPlaneOptions {
  /** Folder holding `etcd` and `kube-apiserver` (default {@link defaultBinDir}). */
  binDir?: string;
  /** How long etcd plus kube-apiserver may take to become ready, in ms (default 60 000). */
  readyTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL, in ms (default 5 000). */
  stopTimeoutMs?: number;
  /** Extra kube-apiserver flags, appended after the defaults (a later flag wins). */
  apiServerArgs?: readonly string[];
  /** Keep the temp dir (logs, certs, etcd data) after `stop()`, for debugging. Also: env KEEP_CONTROL_PLANE=1. */
  keepDir?: boolean;
}

/** Paths of the processes' combined stdout+stderr logs. */
export interface ControlPlaneLogs {
  /** etcd's log. */
  etcd: string;
  /** kube-apiserver's log. */
  apiServer: string;
}

/** A running etcd + kube-apiserver pair; call `stop()` when done, pass or fail. */
export interface ControlPlane {
  /** kube-apiserver's base URL, `https://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  /** Bearer token of user `admin` in group `system:masters` (bypasses RBAC). */
  token: string;
  /**
   * PEM of the CA that signed the serving cert. The apiserver generates both itself at start (self-signed:
   * `<dir>/certs/apiserver.crt` holds leaf then CA); the leaf's SANs are IP 127.0.0.1, IP 10.0.0.1 and
   * `kubernetes[.default[.svc]]` -- not `localhost`, so connect to 127.0.0.1.
   */
  caPem: string;
  /** File holding {@link ControlPlane.caPem}. */
  caPath: string;
  /** A kubeconfig (server, CA, token) for kubectl / clients: `kubectl --kubeconfig PATH ...`. */
  kubeconfigPath: string;
  /** etcd's client URL, `http://127.0.0.1:PORT`. */
  etcdUrl: string;
  /** The temp dir holding logs, certs, keys, the kubeconfig and etcd's data; removed by `stop()`. */
  dir: string;
  /** Log file paths. */
  logs: ControlPlaneLogs;
  /** Process ids. */
  pids: { etcd: number; apiServer: number };
  /** Milliseconds from spawning kube-apiserver until `/readyz` answered 200. */
  apiServerReadyMs: number;
  /** `fetch` against the apiserver: `path` is appended to `url`; adds the bearer token and trusts `caPem`. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** SIGTERM both processes (SIGKILL after the stop deadline), wait for them, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Lists the {@link controlPlaneBinaries} missing from `binDir` (empty when all are there). */
export function missingControlPlaneBinaries(binDir: string = defaultBinDir): string[] {
  return controlPlaneBinaries.filter((name) => !existsSync(join(binDir, name)));
}

type Proc = ReturnType<typeof Bun.spawn>;

/** Reserves `count` distinct free loopback TCP ports (bound together, then released). */
async function freePorts(count: number): Promise<number[]> {
  const listeners = Array.from({ length: count }, () =>
    Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

/** Spawns a long-running process with stdout and stderr appended to `logPath`. */
function spawnLogged(cmd: string[], logPath: string): Proc {
  const fd = openSync(logPath, 'a');
  try {
    return Bun.spawn(cmd, { stdin: 'ignore', stdout: fd, stderr: fd });
  } finally {
    closeSync(fd);
  }
}

/** Last `lines` lines of a log file, or a note that it can't be read. */
function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (error) {
    return `(cannot read ${path}: ${String(error)})`;
  }
}

/** Resolves when `proc` exits or after `ms`; true when it exited. */
async function exitedWithin(proc: Proc, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((done) => {
    timer = setTimeout(() => done(false), ms);
  });
  const exited = await Promise.race([proc.exited.then(() => true as const), timeout]);
  clearTimeout(timer);
  return exited;
}

/** SIGTERM, then SIGKILL if the process is still there after `ms`; waits for it to exit. */
async function terminate(proc: Proc, ms: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  if (!(await exitedWithin(proc, ms))) {
    proc.kill('SIGKILL');
    await proc.exited;
  }
}

/**
 * Polls `check` every 100 ms until it returns true, `proc` exits, or `deadline` (epoch ms) passes; throws on the
 * latter two with `what` and the log tail.
 */
async function waitFor(
  what: string,
  proc: Proc,
  logPath: string,
  deadline: number,
  check: () => Promise<boolean>,
): Promise<void> {
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `${what}: process exited (${proc.exitCode ?? proc.signalCode}); log ${logPath}:\n${tail(logPath)}`,
      );
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${what}: not ready before deadline; log ${logPath}:\n${tail(logPath)}`);
    await Bun.sleep(100);
  }
}

/** The last PEM certificate in a bundle (the apiserver writes its self-signed leaf first, then its CA). */
function lastCertificate(bundle: string): string {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const last = blocks.at(-1);
  if (last === undefined) throw new Error('no PEM certificate in the apiserver cert file');
  return `${last}\n`;
}

/** A kubeconfig YAML for `server` with `caPem` and a bearer `token`. */
function kubeconfig(server: string, caPem: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: ${server}
      certificate-authority-data: ${ca}
users:
  - name: admin
    user:
      token: ${token}
contexts:
  - name: test
    context:
      cluster: test
      user: admin
current-context: test
`;
}

const live = new Set<Proc>();
let exitHookInstalled = false;

/** SIGKILLs processes still running when the test process exits without calling `stop()`. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const proc of live) proc.kill('SIGKILL');
  });
}

/**
 * Starts etcd (free loopback ports, temp data dir, no fsync) and then kube-apiserver on `127.0.0.1:<free port>`
 * with envtest-like flags, token auth (`admin`, `system:masters`), RBAC and service-account keys made with
 * node:crypto; resolves once `/readyz` answers 200. On failure both processes are killed, etcd's data removed,
 * and the error names the log files (kept) with their last lines.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = options.binDir ?? defaultBinDir;
  const missing = missingControlPlaneBinaries(binDir);
  if (missing.length > 0) {
    throw new Error(`missing ${missing.join(', ')} in ${binDir}: run bash testing/k8s-tools/build.sh`);
  }
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 5_000;
  const keepDir = options.keepDir ?? process.env.KEEP_CONTROL_PLANE === '1';
  const deadline = Date.now() + readyTimeoutMs;

  const dir = await mkdtemp(join(tmpdir(), 'kar-control-plane-'));
  const certDir = join(dir, 'certs');
  const etcdData = join(dir, 'etcd-data');
  await mkdir(certDir, { mode: 0o700 });
  const logs: ControlPlaneLogs = { etcd: join(dir, 'etcd.log'), apiServer: join(dir, 'kube-apiserver.log') };
  const token = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('hex');
  const [etcdPort, etcdPeerPort, apiPort] = (await freePorts(3)) as [number, number, number];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const url = `https://127.0.0.1:${apiPort}`;

  const procs: Proc[] = [];
  let stopped: Promise<void> | undefined;
  const stop = (removeAll: boolean): Promise<void> => {
    stopped ??= (async () => {
      // apiserver first, so it does not spin on a vanished etcd
      for (const proc of [...procs].reverse()) {
        await terminate(proc, stopTimeoutMs);
        live.delete(proc);
      }
      if (keepDir) return;
      await rm(removeAll ? dir : etcdData, { recursive: true, force: true });
    })();
    return stopped;
  };

  try {
    // Service-account signing key pair (ECDSA P-256: instant to generate), made in process: no openssl needed.
    const saKey = join(dir, 'sa.key');
    const saPub = join(dir, 'sa.pub');
    const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(saKey, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(saPub, sa.publicKey.export({ type: 'spki', format: 'pem' }));
    const tokenFile = join(dir, 'tokens.csv');
    await writeFile(tokenFile, `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });

    installExitHook();
    const etcd = spawnLogged(
      [
        join(binDir, 'etcd'),
        `--data-dir=${etcdData}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${etcdPeerUrl}`,
        `--initial-advertise-peer-urls=${etcdPeerUrl}`,
        '--name=kar-test',
        `--initial-cluster=kar-test=${etcdPeerUrl}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      logs.etcd,
    );
    procs.push(etcd);
    live.add(etcd);
    await waitFor('etcd', etcd, logs.etcd, deadline, async () => {
      const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1_000) });
      return res.ok;
    });

    const apiStart = performance.now();
    const apiServer = spawnLogged(
      [
        join(binDir, 'kube-apiserver'),
        `--etcd-servers=${etcdUrl}`,
        `--cert-dir=${certDir}`,
        `--secure-port=${apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        `--token-auth-file=${tokenFile}`,
        `--service-account-issuer=${url}`,
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        // No controller-manager creates default ServiceAccounts, so pods would be refused (as envtest does).
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        // Single apiserver on loopback: no kubernetes-service endpoint to reconcile.
        '--endpoint-reconciler-type=none',
        ...(options.apiServerArgs ?? []),
      ],
      logs.apiServer,
    );
    procs.push(apiServer);
    live.add(apiServer);

    let caPem = '';
    const caPath = join(dir, 'ca.crt');
    await waitFor('kube-apiserver (serving cert)', apiServer, logs.apiServer, deadline, async () => {
      const bundle = await readFile(join(certDir, 'apiserver.crt'), 'utf8');
      caPem = lastCertificate(bundle);
      return true;
    });
    await writeFile(caPath, caPem);
    const tls = { ca: caPem };
    const apiFetch = (path: string, init: RequestInit = {}): Promise<Response> => {
      const headers = new Headers(init.headers);
      headers.set('Authorization', `Bearer ${token}`);
      return fetch(`${url}${path}`, { ...init, headers, tls });
    };
    await waitFor('kube-apiserver /readyz', apiServer, logs.apiServer, deadline, async () => {
      const res = await apiFetch('/readyz', { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status === 200;
    });
    const apiServerReadyMs = Math.round(performance.now() - apiStart);

    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(url, caPem, token), { mode: 0o600 });
    return {
      url,
      token,
      caPem,
      caPath,
      kubeconfigPath,
      etcdUrl,
      dir,
      logs,
      pids: { etcd: etcd.pid, apiServer: apiServer.pid },
      apiServerReadyMs,
      fetch: apiFetch,
      stop: () => stop(true),
    };
  } catch (error) {
    await stop(false);
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      `control plane failed to start (logs kept: ${logs.etcd}, ${logs.apiServer}): ${message}`,
      {
        cause: error,
      },
    );
  }
}

/**
 * Returns the error message for test suites that find control-plane binaries missing: they fail, never
 * skip, so a green run always means the real tools ran. In CI it names .ci/run as what is broken.
 */
export function missingBinariesMessage(missing: readonly string[], ci: boolean): string {
  const how = 'bash testing/k8s-tools/build.sh';
  return ci
    ? `CI: ${missing.join(', ')} missing in ${defaultBinDir}; .ci/run must run \`${how}\` before bun test`
    : `${missing.join(', ')} missing in ${defaultBinDir}: run \`${how}\` once (about 6 min on 2 cores with a cold Go build cache)`;
}
