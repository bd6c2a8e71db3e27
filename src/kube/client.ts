/**
 * @module A small Kubernetes API client on fetch: JSON requests with the API server's Status errors turned
 * into {@link KubeApiError}, and watches read as a stream of newline-delimited events.
 *
 * kube-audit-rest touches two objects (one Secret, one ValidatingWebhookConfiguration) with get, create,
 * update, patch and watch; that is a few dozen lines over fetch, against a general client's generated
 * models, WebSocket, proxy and OpenID dependencies.
 */
import type { KubeConnection } from './config.ts';

/**
 * Deadline of one ordinary request. The API server's own default request timeout is 60 s, but a write to
 * one small object answers in milliseconds; 15 s fails a hung connection well before anyone waits on it.
 */
const REQUEST_TIMEOUT_MS = 15_000;

/** What the API server answers a failed request with (`meta/v1` Status). */
type Status = { kind?: string; code?: number; reason?: string; message?: string };

/** A request the API server refused, or that did not reach it; `status` is 0 for the latter. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  /** The HTTP status, or 0 when there was no answer (connection refused, timeout, TLS failure). */
  readonly status: number;
  /** The Status reason, e.g. `Conflict`, `AlreadyExists`, `NotFound`, `Forbidden`, `Expired`. */
  readonly reason: string;

  constructor(message: string, status: number, reason: string, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
    this.reason = reason;
  }
}

/** Whether `err` is the API server saying the object does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

/** Whether `err` is a write refused because the object changed since it was read (resourceVersion). */
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409 && err.reason !== 'AlreadyExists';
}

/** Whether `err` is a create refused because the object exists. */
export function isAlreadyExists(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409 && err.reason === 'AlreadyExists';
}

/** Whether `err` means the watch's resourceVersion is too old to resume from (410 Gone, reason Expired). */
export function isExpired(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 410;
}

/** Whether retrying `err` cannot help: the credentials or permissions are wrong, or the request is. */
export function isPermanent(err: unknown): boolean {
  return err instanceof KubeApiError && [400, 401, 403, 422].includes(err.status);
}

/** One watch event: the object as it is now (or was, for DELETED). BOOKMARK carries only a resourceVersion. */
export type WatchEvent<T> = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: T };

/** Options of one request. */
export type RequestOptions = {
  /** JSON-encoded unless a string. */
  body?: unknown;
  /** Default `application/json`. */
  contentType?: string;
  /** Query parameters. */
  query?: Record<string, string | undefined>;
  /** Ends the request early. */
  signal?: AbortSignal;
};

/** The API calls kube-audit-rest makes. */
export type KubeClient = {
  /** Sends a request to `path` (e.g. `/api/v1/namespaces/ns/secrets/name`) and resolves the JSON answer. */
  request<T>(method: string, path: string, options?: RequestOptions): Promise<T>;
  /**
   * Watches `path` (a collection) with `query` (fieldSelector, resourceVersion, ...), calling `onEvent` for each
   * event in order. Resolves when the server ends the watch; rejects with a {@link KubeApiError} (410 when the
   * resourceVersion expired) or when `signal` aborts.
   */
  watch<T>(
    path: string,
    query: Record<string, string | undefined>,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void>;
};

/** Options for {@link createKubeClient}. */
export type KubeClientOptions = {
  /** Sent as User-Agent, so the API server's audit log names us. Default `kube-audit-rest`. */
  userAgent?: string;
  /** Deadline of one non-watch request, in ms. Default {@link REQUEST_TIMEOUT_MS}. */
  requestTimeoutMs?: number;
};

/** Turns a failed response into a {@link KubeApiError} with the Status message when there is one. */
async function apiError(method: string, path: string, res: Response): Promise<KubeApiError> {
  const text = await res.text().catch(() => '');
  let status: Status = {};
  try {
    status = JSON.parse(text) as Status;
  } catch {
    // not a Status: keep the text
  }
  const detail = status.message ?? text.slice(0, 200);
  const reason = status.reason ?? res.statusText;
  return new KubeApiError(`${method} ${path}: ${res.status} ${reason}: ${detail}`, res.status, reason);
}

/** Creates a client for `connection`. */
export function createKubeClient(connection: KubeConnection, options: KubeClientOptions = {}): KubeClient {
  const userAgent = options.userAgent ?? 'kube-audit-rest';
  const requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const tls = {
    ...(connection.ca !== undefined && { ca: connection.ca }),
    ...(connection.clientCert !== undefined && { cert: connection.clientCert, key: connection.clientKey }),
    ...(connection.serverName !== undefined && { serverName: connection.serverName }),
    rejectUnauthorized: !connection.insecureSkipVerify,
  };

  function url(path: string, query: Record<string, string | undefined> = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    const search = params.toString();
    return `${connection.server}${path}${search ? `?${search}` : ''}`;
  }

  function headers(contentType: string | undefined): Headers {
    const h = new Headers({ Accept: 'application/json', 'User-Agent': userAgent });
    const token = connection.token();
    if (token !== undefined && token !== '') h.set('Authorization', `Bearer ${token}`);
    if (contentType !== undefined) h.set('Content-Type', contentType);
    return h;
  }

  async function send(
    method: string,
    path: string,
    init: {
      query?: Record<string, string | undefined>;
      body?: string;
      contentType?: string;
      signal: AbortSignal;
      timeout?: number | boolean;
    },
  ): Promise<Response> {
    try {
      return await fetch(url(path, init.query), {
        method,
        headers: headers(init.contentType),
        ...(init.body !== undefined && { body: init.body }),
        signal: init.signal,
        tls,
        ...(init.timeout !== undefined && { timeout: init.timeout }),
      });
    } catch (error) {
      if (init.signal.aborted && (error as Error).name === 'AbortError') throw error;
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).name;
      throw new KubeApiError(
        `${method} ${path}: no answer from ${connection.server} (${(error as Error).message})`,
        0,
        reason,
        { cause: error },
      );
    }
  }

  return {
    async request<T>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
      const signals = [AbortSignal.timeout(requestTimeoutMs), ...(o.signal ? [o.signal] : [])];
      const body =
        o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
      const res = await send(method, path, {
        ...(o.query && { query: o.query }),
        ...(body !== undefined && { body, contentType: o.contentType ?? 'application/json' }),
        signal: AbortSignal.any(signals),
      });
      if (!res.ok) throw await apiError(method, path, res);
      return (await res.json()) as T;
    },

    async watch<T>(
      path: string,
      query: Record<string, string | undefined>,
      onEvent: (event: WatchEvent<T>) => void,
      signal: AbortSignal,
    ): Promise<void> {
      // No idle timer of Bun's own: the server ends the watch at its timeoutSeconds, and bookmarks keep it busy.
      const res = await send('GET', path, { query: { ...query, watch: 'true' }, signal, timeout: false });
      if (!res.ok) throw await apiError('WATCH', path, res);
      if (res.body === null) return;
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of res.body) {
        buffered += decoder.decode(chunk, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf('\n');
          if (line === '') continue;
          const event = JSON.parse(line) as { type: string; object: unknown };
          if (event.type === 'ERROR') {
            const status = event.object as Status;
            throw new KubeApiError(
              `WATCH ${path}: ${status.code ?? 0} ${status.reason ?? ''}: ${status.message ?? ''}`,
              status.code ?? 0,
              status.reason ?? '',
            );
          }
          onEvent(event as WatchEvent<T>);
        }
      }
    },
  };
}

/** The path of a namespaced Secret. */
export function secretPath(namespace: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
}

/** The path of the Secrets collection of a namespace (for create and watch). */
export function secretsPath(namespace: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
}

/** The path of the ValidatingWebhookConfigurations collection (for watch). */
export const VALIDATING_WEBHOOK_CONFIGURATIONS_PATH =
  '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';

/** The path of one ValidatingWebhookConfiguration. */
export function validatingWebhookConfigurationPath(name: string): string {
  return `${VALIDATING_WEBHOOK_CONFIGURATIONS_PATH}/${encodeURIComponent(name)}`;
}
