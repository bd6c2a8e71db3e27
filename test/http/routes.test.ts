import { describe, expect, it } from 'bun:test';
import { createPipeline } from '../../src/audit/pipeline.ts';
import { honoApp, webhookFallback, webhookRoutes } from '../../src/http/routes.ts';
import { createWebhook } from '../../src/http/webhook.ts';
import type { LineSink } from '../../src/sink/sink.ts';
import { createLogger, silentLogger } from '../../src/support/log.ts';
import { createMetrics, type Metrics } from '../../src/support/metrics.ts';

const noSink: LineSink = {
  write: () => Promise.resolve(),
  ready: () => true,
  flushSync: () => {},
  close: () => Promise.resolve(),
};

function setup() {
  const metrics: Metrics = createMetrics();
  const entries: string[] = [];
  const log = createLogger({ write: (t) => entries.push(t) });
  const webhook = createWebhook({
    pipeline: createPipeline({ clock: () => 0n }),
    sink: noSink,
    metrics,
    clock: () => 0n,
    log: silentLogger,
    maxRequestBytes: 1024,
    requestTimeoutMs: 1_000,
  });
  const routes = webhookRoutes(webhook);
  const app = honoApp(routes, webhook, log);
  return { metrics, entries, fallback: webhookFallback(app, routes, webhook) };
}

/**
 * A request as Bun.serve hands it over when it cannot make the URL absolute (a CONNECT target, or a
 * Host header that is no valid host): `url` is the bare request target. A web Request cannot be made
 * so, hence the stand-in object.
 */
function bunRequest(method: string, target: string): Request {
  return { method, url: target, headers: new Headers({ host: 'a/b' }) } as unknown as Request;
}

async function answer(res: Response | Promise<Response>) {
  const r = await res;
  return {
    status: r.status,
    allow: r.headers.get('allow'),
    ...((await r.json()) as { reason: string; message: string }),
  };
}

describe('webhookFallback', () => {
  it('routes a request with a bare path target by its path: 405 on the webhook path, 404 elsewhere', async () => {
    const { fallback } = setup();
    expect(await answer(fallback(bunRequest('GET', '/log-request?timeout=10s')))).toMatchObject({
      status: 405,
      allow: 'POST',
      reason: 'method_not_allowed',
    });
    expect(await answer(fallback(bunRequest('PROPFIND', '/elsewhere')))).toMatchObject({
      status: 404,
      reason: 'not_found',
      message: 'no route for PROPFIND /elsewhere',
    });
  });

  it('answers 405 to CONNECT to an authority, and to TRACE with a bare path (no Request can carry either)', async () => {
    const { fallback, metrics } = setup();
    for (const [method, target] of [
      ['CONNECT', 'example.com:443'],
      ['TRACE', '/log-request'],
      ['TRACK', '/x'],
    ] as const) {
      expect(await answer(fallback(bunRequest(method, target)))).toMatchObject({
        status: 405,
        allow: 'POST',
        message: `method ${method} not allowed; use POST`,
      });
    }
    const text = await metrics.registry.metrics();
    expect(text).toContain('kube_audit_rest_invalid_requests_total{reason="method_not_allowed"} 3');
  });

  it('passes an absolute URL to the app as it is', async () => {
    const { fallback } = setup();
    const res = await fallback(new Request('https://webhook.example/elsewhere', { method: 'DELETE' }));
    expect(await answer(res)).toMatchObject({ status: 404, message: 'no route for DELETE /elsewhere' });
  });
});

describe('honoApp', () => {
  it('answers 500 for a handler that throws, logging once a second however many fail', async () => {
    const { entries } = setup();
    const webhook = createWebhook({
      pipeline: createPipeline({ clock: () => 0n }),
      sink: noSink,
      metrics: createMetrics(),
      clock: () => 0n,
      log: silentLogger,
      maxRequestBytes: 1024,
      requestTimeoutMs: 1_000,
    });
    const log = createLogger({ write: (t) => entries.push(t) });
    const app = honoApp(
      [{ method: 'POST', path: '/boom', handler: () => Promise.reject(new Error('boom')) }],
      webhook,
      log,
    );
    for (let i = 0; i < 20; i++) {
      const res = await app.request('/boom', { method: 'POST' });
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ code: 500, reason: 'internal', message: 'internal error' });
    }
    expect(entries).toHaveLength(1);
    expect(entries[0]).toContain('unexpected error while handling a request');
  });
});
