/**
 * @module Reads the kubeconfig file that `--audit-webhook-config-file` names, as the API server's flag of that name does.
 *
 * The current context picks a cluster (the receiver's URL and how to trust it) and a user (how to
 * present ourselves: a client certificate, a bearer token, or a user name and password). File
 * paths are relative to the kubeconfig's own directory, as kubectl and the API server resolve them.
 * YAML or JSON; Bun's YAML parser reads both.
 */

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

/** Where and how to POST audit events, resolved from a kubeconfig. */
export type WebhookTarget = {
  /** The receiver's URL (`clusters[].cluster.server`). */
  url: string;
  /** PEM CA bundle to verify the receiver; undefined: the system's CAs. */
  ca?: string;
  /** Skip verifying the receiver's certificate (`insecure-skip-tls-verify`). */
  insecureSkipVerify: boolean;
  /** Name to verify the receiver's certificate against instead of the URL's host (`tls-server-name`). */
  serverName?: string;
  /** PEM client certificate and key (`client-certificate(-data)`, `client-key(-data)`). */
  clientCert?: string;
  clientKey?: string;
  /** Bearer token (`token`, or the contents of `tokenFile`). */
  token?: string;
  /** Basic authentication (`username`, `password`). */
  basic?: { username: string; password: string };
};

function fail(file: string, what: string): never {
  throw new Error(`audit webhook config ${file}: ${what}`);
}

function find(file: string, list: unknown, kind: string, name: string): Record<string, unknown> {
  if (!Array.isArray(list)) fail(file, `${kind}s must be a list`);
  const entry = (list as (Record<string, unknown> | null)[]).find(
    (e) => e !== null && typeof e === 'object' && e.name === name,
  );
  if (!entry) fail(file, `${kind} ${JSON.stringify(name)} (named by the current context) is not defined`);
  const body = entry[kind];
  if (typeof body !== 'object' || body === null)
    fail(file, `${kind} ${JSON.stringify(name)} has no ${kind} section`);
  return body as Record<string, unknown>;
}

function optionalString(
  file: string,
  section: Record<string, unknown>,
  key: string,
  where: string,
): string | undefined {
  const value = section[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') fail(file, `${where}.${key} must be a string`);
  return value;
}

/** Reads a file-or-data pair: `<key>-data` (base64) wins over `<key>` (a path relative to the kubeconfig). */
function fileOrData(
  file: string,
  section: Record<string, unknown>,
  key: string,
  where: string,
): string | undefined {
  const data = optionalString(file, section, `${key}-data`, where);
  if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
  const path = optionalString(file, section, key, where);
  if (path === undefined) return undefined;
  const full = isAbsolute(path) ? path : resolve(dirname(file), path);
  try {
    return readFileSync(full, 'utf8');
  } catch (error) {
    fail(file, `cannot read ${where}.${key} ${full}: ${(error as Error).message}`);
  }
}

/**
 * Loads the webhook target from the kubeconfig at `file`. Throws, naming the file and the field,
 * when it cannot be read, has no current context, or names a cluster or user it does not define.
 */
export function loadWebhookConfig(file: string): WebhookTarget {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`audit webhook config ${file}: cannot read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let doc: unknown;
  try {
    doc = Bun.YAML.parse(text);
  } catch (error) {
    throw new Error(`audit webhook config ${file}: not YAML: ${(error as Error).message}`, { cause: error });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    fail(file, 'not a kubeconfig (a mapping)');
  const config = doc as Record<string, unknown>;
  const current = config['current-context'];
  if (typeof current !== 'string' || current === '') fail(file, 'current-context is not set');
  const context = find(file, config.contexts, 'context', current);
  const clusterName = context.cluster;
  if (typeof clusterName !== 'string' || clusterName === '')
    fail(file, `context ${current} names no cluster`);
  const cluster = find(file, config.clusters, 'cluster', clusterName);
  const where = `clusters[${clusterName}].cluster`;
  const server = optionalString(file, cluster, 'server', where);
  if (!server) fail(file, `${where}.server is not set`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    fail(file, `${where}.server is not a URL: ${server}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    fail(file, `${where}.server must be an http or https URL: ${server}`);
  }
  const insecure = cluster['insecure-skip-tls-verify'];
  if (insecure !== undefined && typeof insecure !== 'boolean')
    fail(file, `${where}.insecure-skip-tls-verify must be true or false`);
  const target: WebhookTarget = { url: url.toString(), insecureSkipVerify: insecure === true };
  const ca = fileOrData(file, cluster, 'certificate-authority', where);
  if (ca !== undefined) target.ca = ca;
  const serverName = optionalString(file, cluster, 'tls-server-name', where);
  if (serverName !== undefined) target.serverName = serverName;

  const userName = context.user;
  if (typeof userName === 'string' && userName !== '') {
    const user = find(file, config.users, 'user', userName);
    const uwhere = `users[${userName}].user`;
    const cert = fileOrData(file, user, 'client-certificate', uwhere);
    const key = fileOrData(file, user, 'client-key', uwhere);
    if ((cert === undefined) !== (key === undefined))
      fail(file, `${uwhere}: client-certificate and client-key go together`);
    if (cert !== undefined && key !== undefined) {
      target.clientCert = cert;
      target.clientKey = key;
    }
    const token = optionalString(file, user, 'token', uwhere);
    const tokenFile = optionalString(file, user, 'tokenFile', uwhere);
    if (token !== undefined) target.token = token;
    else if (tokenFile !== undefined) {
      const full = isAbsolute(tokenFile) ? tokenFile : resolve(dirname(file), tokenFile);
      try {
        target.token = readFileSync(full, 'utf8').trim();
      } catch (error) {
        fail(file, `cannot read ${uwhere}.tokenFile ${full}: ${(error as Error).message}`);
      }
    }
    const username = optionalString(file, user, 'username', uwhere);
    const password = optionalString(file, user, 'password', uwhere);
    if (username !== undefined) {
      if (target.token !== undefined) fail(file, `${uwhere}: username/password and token are exclusive`);
      target.basic = { username, password: password ?? '' };
    }
  }
  return target;
}
