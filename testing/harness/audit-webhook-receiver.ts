/**
 * @module A receiver of the API server's audit webhook format for tests: takes EventList POSTs over HTTPS and keeps the items.
 *
 * ```ts
 * const receiver = await startAuditWebhookReceiver({ certFile, keyFile, token: 's3cret' });
 * // point a kubeconfig's cluster.server at receiver.url
 * await receiver.down();   // connections refused from now on
 * await receiver.up();     // the same port again
 * receiver.auditIDs();     // every auditID received, in arrival order, duplicates included
 * await receiver.stop();
 * ```
 *
 * It checks what a real receiver checks: POST, `kind: EventList`, `apiVersion: audit.k8s.io/v1`,
 * and the bearer token when one is set (401 otherwise). `failNext(status, n)` answers the next
 * `n` requests with `status`, for retry tests.
 */

import type { Server } from 'bun';

/** Options for {@link startAuditWebhookReceiver}. */
export type ReceiverOptions = {
  /** PEM certificate and key files for HTTPS. Default: plain HTTP. */
  certFile?: string;
  keyFile?: string;
  /** Require `Authorization: Bearer <token>`. Default: no check. */
  token?: string;
  /** PEM CA file: require client certificates signed by it. Default: none asked for. */
  clientCaFile?: string;
  /** Answer 400 to any batch holding an event whose auditID is listed here (a permanent refusal). */
  refuseAuditIDs?: ReadonlySet<string>;
};

/** A running receiver. */
export type AuditWebhookReceiver = {
  /** `https://127.0.0.1:<port>/audit` (or http). */
  readonly url: string;
  readonly port: number;
  /** Items received, parsed, in arrival order. */
  items(): Record<string, unknown>[];
  /** The auditID of every item received, in arrival order. */
  auditIDs(): string[];
  /** Requests answered 2xx, and all requests seen. */
  stats(): { accepted: number; requests: number; refused: number };
  /** Answers the next `count` requests with `status` instead of taking them. */
  failNext(status: number, count: number): void;
  /** Stops listening: connections are refused until {@link AuditWebhookReceiver.up}. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Stops for good. */
  stop(): Promise<void>;
};

/** Starts a receiver on 127.0.0.1 at a free port (or the port it had, on {@link AuditWebhookReceiver.up}). */
export async function startAuditWebhookReceiver(
  options: ReceiverOptions = {},
): Promise<AuditWebhookReceiver> {
  const received: Record<string, unknown>[] = [];
  let accepted = 0;
  let requests = 0;
  let refused = 0;
  let failing: { status: number; count: number } | undefined;
  const tls =
    options.certFile && options.keyFile
      ? {
          cert: Bun.file(options.certFile),
          key: Bun.file(options.keyFile),
          ...(options.clientCaFile
            ? { ca: Bun.file(options.clientCaFile), requestCert: true, rejectUnauthorized: true }
            : {}),
        }
      : undefined;

  async function handle(request: Request): Promise<Response> {
    requests++;
    if (request.method !== 'POST') return new Response('method not allowed', { status: 405 });
    if (options.token !== undefined && request.headers.get('authorization') !== `Bearer ${options.token}`) {
      return new Response('unauthorized', { status: 401 });
    }
    if (failing && failing.count > 0) {
      failing.count--;
      return new Response('failing on purpose', { status: failing.status });
    }
    let list: { kind?: unknown; apiVersion?: unknown; items?: unknown };
    try {
      list = (await request.json()) as typeof list;
    } catch {
      return new Response('body is not JSON', { status: 400 });
    }
    if (list.kind !== 'EventList' || list.apiVersion !== 'audit.k8s.io/v1' || !Array.isArray(list.items)) {
      return new Response('expected an audit.k8s.io/v1 EventList', { status: 400 });
    }
    const items = list.items as Record<string, unknown>[];
    if (options.refuseAuditIDs && items.some((i) => options.refuseAuditIDs?.has(String(i.auditID)))) {
      refused++;
      return new Response('refused', { status: 400 });
    }
    received.push(...items);
    accepted++;
    return new Response('{}', { headers: { 'content-type': 'application/json' } });
  }

  function listen(port: number): Server<undefined> {
    return Bun.serve({ hostname: '127.0.0.1', port, fetch: handle, ...(tls ? { tls } : {}) });
  }

  let server: Server<undefined> | undefined = listen(0);
  const port = server.port as number;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/audit`;

  return {
    url,
    port,
    items: () => received,
    auditIDs: () => received.map((i) => String(i.auditID)),
    stats: () => ({ accepted, requests, refused }),
    failNext(status, count) {
      failing = { status, count };
    },
    async down() {
      await server?.stop(true);
      server = undefined;
    },
    async up() {
      if (!server) server = listen(port);
    },
    async stop() {
      await server?.stop(true);
      server = undefined;
    },
  };
}
