/**
 * @module The operations port's listener: plain HTTP with a hard cap on open connections.
 *
 * Served by node:http rather than Bun.serve because node:http counts its connections and closes
 * those beyond `maxConnections` as they arrive, which Bun.serve cannot do; the port answers a probe
 * or a scrape now and then, so the slower request path does not matter. Each request is handed to
 * the operations app (a Hono app) as a web Request.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Hono } from 'hono';
import type { Logger } from '../support/log.ts';
import { throttle } from '../support/throttle.ts';

/** Options for {@link startOpsServer}. */
export type OpsServerOptions = {
  /** The app that answers `/metrics`, `/healthz` and `/readyz`. */
  app: Hono;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to listen on. */
  hostname: string;
  /** Most connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** Where failures are logged (rate-limited). */
  log: Logger;
};

/** A running operations listener. */
export type OpsServer = {
  /** The port listened on. */
  readonly port: number;
  /** Connections open now. */
  connections(): number;
  /** Stops listening and closes every connection. */
  stop(): Promise<void>;
};

/**
 * Time a connection may take to send a request head, and to finish its request, in ms. A probe or a
 * scrape sends its request at once; a connection that does not is holding one of the few places.
 */
const REQUEST_TIMEOUT_MS = 10_000;
/** Time a kept-alive connection may sit idle between requests, in ms (Prometheus scrapes every 15-60 s, so it reconnects). */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** The type of a plain-text answer (health checks, refusals). */
const DEFAULT_CONTENT_TYPE = 'text/plain; charset=utf-8';
/** Base of the URL handed to the app: the Host header is the client's to choose, and the app routes by path only. */
const URL_BASE = 'http://ops.invalid';

/** Answers one node:http request through the app. */
async function serveThroughApp(app: Hono, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    // Every path here is read-only; and a web Request cannot even be made for CONNECT or TRACE.
    const text = `method ${req.method} not allowed; use GET\n`;
    res.writeHead(405, {
      allow: 'GET, HEAD',
      'content-type': DEFAULT_CONTENT_TYPE,
      'content-length': String(text.length),
    });
    res.end(text);
    return;
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
  }
  let url: URL;
  try {
    url = new URL(req.url ?? '/', URL_BASE);
  } catch {
    url = new URL('/', URL_BASE);
  }
  // The app's routes take no body; one sent anyway is read and dropped by node:http.
  const answer = await app.fetch(new Request(`${URL_BASE}${url.pathname}`, { method: req.method, headers }));
  const body = new Uint8Array(await answer.arrayBuffer());
  res.writeHead(answer.status, {
    // A Response made from a string carries its type only when Bun.serve sends it: name it here.
    'content-type': DEFAULT_CONTENT_TYPE,
    ...Object.fromEntries(answer.headers),
    'content-length': String(body.length),
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Answers CONNECT, which node:http hands to a `connect` listener instead of the request handler. */
function refuseConnect(_req: IncomingMessage, socket: Duplex): void {
  const body = 'method CONNECT not allowed; use GET\n';
  socket.end(
    `HTTP/1.1 405 Method Not Allowed\r\nallow: GET, HEAD\r\ncontent-type: ${DEFAULT_CONTENT_TYPE}\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Starts the operations listener; rejects if the port cannot be bound. */
export function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { app, log } = options;
  const reportFailure = throttle((suppressed: number, error: unknown) => {
    log.error('operations request failed', { error, suppressedSinceLast: suppressed });
  });
  let open = 0;
  const server = createServer(function opsRequest(req, res) {
    serveThroughApp(app, req, res).catch((error: unknown) => {
      reportFailure(error);
      if (!res.headersSent) res.writeHead(500, { 'content-type': DEFAULT_CONTENT_TYPE });
      res.end('internal error\n');
    });
  });
  server.maxConnections = options.maxConnections;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.on('connect', refuseConnect);
  server.on('connection', (socket) => {
    open++;
    socket.once('close', () => {
      open--;
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.hostname, () => {
      server.off('error', reject);
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address !== null ? address.port : options.port,
        connections: () => open,
        stop: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
