/**
 * @module The operations port: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (checks).
 */
import { Hono } from 'hono';
import { type Logger, silentLogger } from '../support/log.ts';
import type { Metrics } from '../support/metrics.ts';
import { throttle } from '../support/throttle.ts';

/** What the operations app needs. */
export type OpsDeps = {
  metrics: Metrics;
  /** Readiness checks by name; each returns true when healthy. */
  readiness: Record<string, () => boolean>;
  /** Where a failing route is logged, at most once a second. Default: nowhere. */
  log?: Logger;
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
  const log = deps.log ?? silentLogger;
  const reportError = throttle((suppressed: number, error: Error) => {
    log.error('operations request failed', { error, suppressedSinceLast: suppressed });
  });
  app.onError(function onError(err, c) {
    reportError(err);
    return c.text('internal error\n', 500);
  });
  return app;
}
