/**
 * @module Where the Kubernetes API server is and how to authenticate to it: inside a pod from its
 * ServiceAccount, or from a kubeconfig file (the current context) for a kube-audit-rest that runs outside.
 *
 * Covers what a controller needs: the server URL, the CA to trust, a bearer token (re-read from its file, since
 * the kubelet replaces projected tokens well before they expire) or a client certificate. Credential plugins
 * (`exec`, `auth-provider`) are refused by name rather than half supported.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

/** Where the kubelet mounts a pod's ServiceAccount token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * How often a token file is read again. The kubelet renews a projected token at 80% of its life (an hour at
 * least), and client-go re-reads the file every minute; so do we.
 */
const TOKEN_REREAD_MS = 60_000;

/** A way to reach and authenticate to one API server. */
export type KubeConnection = {
  /** Base URL, e.g. `https://10.0.0.1:443`, without a trailing slash. */
  readonly server: string;
  /** PEM CA bundle to verify the server; undefined: the system's CAs. */
  readonly ca?: string;
  /** Skip verifying the server's certificate (`insecure-skip-tls-verify`). */
  readonly insecureSkipVerify: boolean;
  /** Name to check the server's certificate against instead of the URL's host (`tls-server-name`). */
  readonly serverName?: string;
  /** PEM client certificate and key. */
  readonly clientCert?: string;
  readonly clientKey?: string;
  /** The bearer token to send now, or undefined for none; reads the token file when it is time. */
  token(): string | undefined;
  /** Where this came from, for messages: `in-cluster` or the kubeconfig's path. */
  readonly source: string;
};

/** A kubeconfig or in-cluster set-up that cannot be used; the message names the file and the field. */
export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

/** A token read from `file`, re-read every {@link TOKEN_REREAD_MS}; a failed re-read keeps the last token. */
function tokenFromFile(file: string, now: () => number = Date.now): () => string | undefined {
  let token = readFileSync(file, 'utf8').trim();
  let readAt = now();
  return () => {
    if (now() - readAt >= TOKEN_REREAD_MS) {
      readAt = now();
      try {
        token = readFileSync(file, 'utf8').trim();
      } catch {
        // The kubelet swaps the file atomically; a failed read is momentary, and the last token is still valid.
      }
    }
    return token;
  };
}

/**
 * The connection a pod gets from its ServiceAccount: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
 * `ca.crt` and `token` from `dir`. `env` holds those two variables (main passes process.env's).
 */
export function inClusterConnection(
  env: Readonly<Record<string, string | undefined>>,
  dir: string = SERVICE_ACCOUNT_DIR,
): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port)
    throw new KubeConfigError(
      'not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset): pass --kubeconfig',
    );
  let ca: string;
  let token: () => string | undefined;
  try {
    ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
    token = tokenFromFile(join(dir, 'token'));
  } catch (error) {
    throw new KubeConfigError(
      `cannot read the ServiceAccount's credentials in ${dir} (${(error as Error).message}); ` +
        'is automountServiceAccountToken false for this pod?',
      { cause: error },
    );
  }
  const hostPart = host.includes(':') ? `[${host}]` : host; // an IPv6 address
  return {
    server: `https://${hostPart}:${port}`,
    ca,
    insecureSkipVerify: false,
    token,
    source: 'in-cluster',
  };
}

type Section = Record<string, unknown>;

/**
 * The connection of a kubeconfig file's current context. Paths inside are relative to the file's own
 * directory, as kubectl reads them; `-data` fields (base64) win over paths.
 */
export function kubeconfigConnection(file: string): KubeConnection {
  const fail = (what: string): never => {
    throw new KubeConfigError(`kubeconfig ${file}: ${what}`);
  };
  const readText = (path: string, what: string): string => {
    const full = isAbsolute(path) ? path : resolve(dirname(file), path);
    try {
      return readFileSync(full, 'utf8');
    } catch (error) {
      return fail(`cannot read ${what} ${full}: ${(error as Error).message}`);
    }
  };
  const string = (section: Section, key: string, where: string): string | undefined => {
    const value = section[key];
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') fail(`${where}.${key} must be a string`);
    return value as string;
  };
  const fileOrData = (section: Section, key: string, where: string): string | undefined => {
    const data = string(section, `${key}-data`, where);
    if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
    const path = string(section, key, where);
    return path === undefined ? undefined : readText(path, `${where}.${key}`);
  };
  const named = (list: unknown, kind: string, name: string): Section => {
    const entry = Array.isArray(list)
      ? (list as unknown[]).find((e) => typeof e === 'object' && e !== null && (e as Section).name === name)
      : undefined;
    if (entry === undefined) fail(`${kind} "${name}" (named by the current context) is not defined`);
    const body = (entry as Section)[kind];
    if (typeof body !== 'object' || body === null) fail(`${kind} "${name}" has no ${kind} section`);
    return body as Section;
  };

  let doc: unknown;
  try {
    doc = Bun.YAML.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new KubeConfigError(`kubeconfig ${file}: cannot read it as YAML (${(error as Error).message})`, {
      cause: error,
    });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail('not a kubeconfig (a mapping)');
  const config = doc as Section;
  const current = config['current-context'];
  if (typeof current !== 'string' || current === '') fail('current-context is not set');
  const context = named(config.contexts, 'context', current as string);
  const clusterName = context.cluster;
  if (typeof clusterName !== 'string' || clusterName === '') fail(`context "${current}" names no cluster`);
  const cluster = named(config.clusters, 'cluster', clusterName as string);
  const where = `clusters[${clusterName}].cluster`;
  const server = string(cluster, 'server', where) ?? fail(`${where}.server is not set`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    return fail(`${where}.server is not a URL: ${server}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    fail(`${where}.server must be http or https: ${server}`);
  const insecure = cluster['insecure-skip-tls-verify'];
  if (insecure !== undefined && typeof insecure !== 'boolean')
    fail(`${where}.insecure-skip-tls-verify must be true or false`);

  let token: () => string | undefined = () => undefined;
  let clientCert: string | undefined;
  let clientKey: string | undefined;
  const userName = context.user;
  if (typeof userName === 'string' && userName !== '') {
    const user = named(config.users, 'user', userName);
    const uwhere = `users[${userName}].user`;
    for (const unsupported of ['exec', 'auth-provider', 'username']) {
      if (user[unsupported] !== undefined)
        fail(`${uwhere}.${unsupported} is not supported: use a token, a token file or a client certificate`);
    }
    clientCert = fileOrData(user, 'client-certificate', uwhere);
    clientKey = fileOrData(user, 'client-key', uwhere);
    if ((clientCert === undefined) !== (clientKey === undefined))
      fail(`${uwhere}: client-certificate and client-key go together`);
    const fixed = string(user, 'token', uwhere);
    const tokenFile = string(user, 'tokenFile', uwhere);
    if (fixed !== undefined) token = () => fixed;
    else if (tokenFile !== undefined) {
      const full = isAbsolute(tokenFile) ? tokenFile : resolve(dirname(file), tokenFile);
      try {
        token = tokenFromFile(full);
      } catch (error) {
        fail(`cannot read ${uwhere}.tokenFile ${full}: ${(error as Error).message}`);
      }
    }
  }
  const ca = fileOrData(cluster, 'certificate-authority', where);
  const serverName = string(cluster, 'tls-server-name', where);
  return {
    server: server.replace(/\/+$/, ''),
    ...(ca !== undefined && { ca }),
    insecureSkipVerify: insecure === true,
    ...(serverName !== undefined && { serverName }),
    ...(clientCert !== undefined && clientKey !== undefined && { clientCert, clientKey }),
    token,
    source: file,
  };
}
