import { describe, expect, it } from 'bun:test';
import { Histogram, Registry } from 'prom-client';
import { createMetrics } from '../../src/support/metrics.ts';

const NAME = 'kube_audit_rest_request_duration_seconds';

/** The lines of one metric family in a registry's text output. */
async function family(registry: Registry, name: string): Promise<string[]> {
  const text = await registry.metrics();
  return text.split('\n').filter((line) => line.startsWith(name) || line.includes(` ${name} `));
}

describe('createMetrics', () => {
  it("prints the request duration histogram exactly as prom-client's Histogram would", async () => {
    const metrics = createMetrics();
    const reference = new Registry();
    const buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 2.5, 10];
    const promHistogram = new Histogram({
      name: NAME,
      help: 'Time from the arrival of a valid request to its answer, including the write',
      buckets,
      registers: [reference],
    });
    // On a bound, between bounds, below the first, above the last, and zero.
    const values = [0, 0.00005, 0.0001, 0.0003, 0.001, 0.0042, 0.5, 0.75, 10, 11, 120, 0.00025];
    for (const v of values) {
      metrics.requestDuration.observe(v);
      promHistogram.observe(v);
    }
    const ours = await family(metrics.registry, NAME);
    expect(ours).toEqual(await family(reference, NAME));
    expect(ours).toContain(`${NAME}_count ${values.length}`);
    expect(ours).toContain(`${NAME}_bucket{le="0.0001"} 3`);
    expect(ours).toContain(`${NAME}_bucket{le="10"} 10`);
  });

  it('empties the histogram when the registry is reset', async () => {
    const metrics = createMetrics();
    metrics.requestDuration.observe(0.002);
    metrics.registry.resetMetrics();
    expect(await family(metrics.registry, NAME)).toContain(`${NAME}_count 0`);
  });

  it('starts every refusal reason and both results of each reload counter at 0', async () => {
    const text = await createMetrics().registry.metrics();
    for (const reason of [
      'not_found',
      'syntax',
      'too_large',
      'method_not_allowed',
      'wrong_kind',
      'internal',
    ]) {
      expect(text).toContain(`kube_audit_rest_invalid_requests_total{reason="${reason}"} 0`);
    }
    expect(text.match(/^kube_audit_rest_invalid_requests_total\{/gm)).toHaveLength(18);
    for (const name of ['certificate_reloads_total', 'path_token_reloads_total']) {
      expect(text).toContain(`kube_audit_rest_${name}{result="success"} 0`);
      expect(text).toContain(`kube_audit_rest_${name}{result="failure"} 0`);
    }
  });
});
