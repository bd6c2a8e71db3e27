/**
 * @module The webhook port's one route table, and the two routers built from it: Bun's own
 * (`Bun.serve({ routes })`, which production uses for speed) and a Hono app (the fallback for
 * everything the table does not match, and what in-process tests call through `app.request()`).
 *
 * Both routers call the same handler functions from the same table, guards included, so a test
 * through the Hono app runs exactly the code production runs for that path.
 */
import { Hono } from 'hono';
import type { Logger } from '../support/log.ts';
import { throttle } from '../support/throttle.ts';
import { type PathTokens, pathToken } from './caller-auth.ts';
import { errorResponse } from './refusals.ts';
import type { Webhook } from './webhook.ts';

/** A route's handler: the request and the parameters its path captured. */
export type RouteHandler = (
  req: Request,
  params: Readonly<Record<string, string>>,
) => Promise<Response> | Response;

/** One entry of the table: a method, a path in Bun's pattern syntax (`/log-request/:token`), a handler. */
export type Route = { readonly method: 'POST'; readonly path: string; readonly handler: RouteHandler };

/** How callers are told apart; see caller-auth.ts. Default: every caller is let in. */
export type CallerAuth = {
  /** With path tokens the webhook answers only at `/log-request/<token>`; `/log-request` is then 404. */
  pathTokens?: Pick<PathTokens, 'find'>;
};

/** The 404 of every path nothing serves; a wrong path token gets exactly this answer too. */
function notFound(webhook: Webhook, req: Request): Response {
  return webhook.refuse(404, 'not_found', `no route for ${req.method} ${pathOf(req.url)}`);
}

/**
 * The path of a request's URL. Bun makes the URL absolute from the Host header; when it cannot (a
 * Host such as `a/b`) the URL is the bare target, which `new URL` would refuse.
 */
function pathOf(url: string): string {
  if (url.startsWith('/')) {
    const end = url.search(/[?#]/);
    return end < 0 ? url : url.slice(0, end);
  }
  try {
    return new URL(url).pathname;
  } catch {
    return url;
  }
}

/** The table for the webhook's one path; a guard (caller authentication) wraps its handler. */
export function webhookRoutes(webhook: Webhook, auth: CallerAuth = {}): readonly Route[] {
  if (auth.pathTokens !== undefined) {
    const guard = pathToken({ tokens: auth.pathTokens, notFound: (req) => notFound(webhook, req) });
    return [
      {
        method: 'POST',
        path: '/log-request/:token',
        handler: function logRequest(req, params) {
          const caller = guard(req, params);
          return caller instanceof Response ? caller : webhook.logRequest(req, caller);
        },
      },
    ];
  }
  return [
    {
      method: 'POST',
      path: '/log-request',
      handler: function logRequest(req) {
        return webhook.logRequest(req);
      },
    },
  ];
}

/** What Bun.serve's `routes` option takes for the table: by path, then by method. */
export type BunRoutes = Record<
  string,
  Record<string, (req: Request & { params: Record<string, string> }) => Promise<Response> | Response>
>;

/** The parameters of a path that has none. */
const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

/** Builds Bun.serve's `routes` from the table. Other methods on a listed path fall through to `fetch`. */
export function bunRoutes(table: readonly Route[]): BunRoutes {
  const out: BunRoutes = {};
  for (const route of table) {
    const byMethod = out[route.path] ?? {};
    const handler = route.handler;
    // Reading `req.params` makes Bun build the object; a path without parameters never needs it.
    byMethod[route.method] = route.path.includes(':')
      ? (req) => handler(req, req.params)
      : (req) => handler(req, NO_PARAMS);
    out[route.path] = byMethod;
  }
  return out;
}

/**
 * Builds the Hono app from the table: the table's routes, 405 with `Allow` for other methods on
 * their paths, 404 elsewhere, and a 500 for anything a handler throws (logged at most once a
 * second: a client that can make it happen must not be able to flood the log).
 */
export function honoApp(table: readonly Route[], webhook: Webhook, log: Logger): Hono {
  const app = new Hono();
  for (const route of table) {
    const handler = route.handler;
    app.on(route.method, route.path, function routed(c) {
      return handler(c.req.raw, c.req.param() as Record<string, string>);
    });
  }
  for (const path of new Set(table.map((r) => r.path))) {
    const allow = allowedMethods(table, path);
    app.all(path, function methodNotAllowed(c) {
      return webhook.refuse(405, 'method_not_allowed', `method ${c.req.method} not allowed; use ${allow}`, {
        allow,
      });
    });
  }
  app.notFound(function unknownPath(c) {
    return notFound(webhook, c.req.raw);
  });
  const reportError = throttle((suppressed: number, error: Error) => {
    log.error('unexpected error while handling a request', { error, suppressedSinceLast: suppressed });
  });
  app.onError(function onError(err) {
    reportError(err);
    return errorResponse(500, 'internal', 'internal error');
  });
  return app;
}

/** The methods the table serves on `path`, as an `Allow` header lists them. */
function allowedMethods(table: readonly Route[], path: string): string {
  return [...new Set(table.filter((r) => r.path === path).map((r) => r.method))].join(', ');
}

/** Methods a web Request cannot carry (the Fetch standard forbids them), so no Request can be rebuilt with one. */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
/** Base of the URL given to a request whose own URL Bun could not make absolute; routing reads only the path. */
const STAND_IN_ORIGIN = 'https://kube-audit-rest.invalid';

/**
 * Makes the `fetch` of Bun.serve: every request its router did not take goes to the Hono app, which
 * answers 404 or 405. Bun makes `req.url` absolute from the Host header; when it cannot (a CONNECT
 * request's `host:port` target, or a Host header that is no valid host, such as `a/b`), the URL is
 * the bare target and the app could not route it. Such a request is routed by its path alone under
 * a stand-in origin (the server never reads the Host header); one with no path, or with a method no
 * web Request can carry, is refused with 405.
 */
export function webhookFallback(
  app: Hono,
  table: readonly Route[],
  webhook: Webhook,
): (req: Request) => Response | Promise<Response> {
  const allow = [...new Set(table.map((r) => r.method))].join(', ');
  return function fallback(req) {
    const url = req.url;
    if (url.startsWith('https://') || url.startsWith('http://')) return app.fetch(req);
    if (url.startsWith('/') && !FORBIDDEN_METHODS.has(req.method)) {
      let standIn: Request | undefined;
      try {
        standIn = new Request(`${STAND_IN_ORIGIN}${url}`, { method: req.method, headers: req.headers });
      } catch {
        // A target that is no URL path even under the stand-in origin: nothing here can match it.
      }
      if (standIn !== undefined) return app.fetch(standIn);
      return notFound(webhook, req);
    }
    return webhook.refuse(405, 'method_not_allowed', `method ${req.method} not allowed; use ${allow}`, {
      allow,
    });
  };
}
