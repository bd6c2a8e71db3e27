/**
 * @module The operations port: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (checks).
 */
import { Hono } from 'hono';
import type { Metrics } from '../support/metrics.ts';

/** What the operations app needs. */
export type OpsDeps = {
  metrics: Metrics;
  /** Readiness checks by name; each returns true when healthy. */
  readiness: Record<string, () => boolean>;
};

/** Creates the operations app. */
export function createOpsApp(deps: OpsDeps): Hono {
  const app = new Hono();
  app.get('/metrics', async function metricsText() {
    const text = await deps.metrics.registry.metrics();
    return new Response(text, { headers: { 'content-type': deps.metrics.registry.contentType } });
  });
  app.get('/healthz', function healthz(c) {
    return c.text('ok\n');
  });
  app.get('/readyz', function readyz(c) {
    const failed = Object.entries(deps.readiness)
      .filter(([, check]) => !check())
      .map(([name]) => name);
    return failed.length === 0 ? c.text('ok\n') : c.text(`not ready: ${failed.join(', ')}\n`, 503);
  });
  return app;
}
