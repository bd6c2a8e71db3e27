/**
 * @module Says how exactly a policy compiles into a webhook configuration: one log line and a gauge, so an
 * operator learns when the API server will call kube-audit-rest for more than the policy records.
 *
 * For the server (with `--policy-file`) and the live configuration; `webhook-config` warns on stderr.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Policy } from '../audit/policy/types.ts';
import type { Logger } from '../support/log.ts';
import { compileMatch } from './compile.ts';

/** The gauge's name: 1 exact, 0 rules only (calls for more than the policy records). */
export const WEBHOOK_CONFIG_EXACT_METRIC = 'kube_audit_rest_webhook_config_exact';

/** Dependencies of {@link reportWebhookMatch}. */
export type WebhookMatchReportDeps = {
  /** Where the gauge goes: the server's private registry. */
  readonly registry: Registry;
  readonly log: Logger;
};

/**
 * Compiles `policy` as `kube-audit-rest webhook-config` would, registers the gauge on `registry` set to
 * whether the match is exact, and logs the outcome: info when exact (or when the policy records nothing a
 * webhook sees, which is also exact), warn with the reasons when the conditions fall back to the rules.
 * Returns whether it is exact.
 */
export function reportWebhookMatch(policy: Policy, deps: WebhookMatchReportDeps): boolean {
  const gauge = new Gauge({
    name: WEBHOOK_CONFIG_EXACT_METRIC,
    help:
      'Whether the webhook configuration compiled from --policy-file calls kube-audit-rest for exactly ' +
      'the requests the policy records (1), or, its match conditions being too large, for every request ' +
      'its rules select (0)',
    registers: [deps.registry],
  });
  const compiled = compileMatch(policy);
  if (compiled.kind === 'nothing') {
    gauge.set(1);
    deps.log.warn('the policy records no request a webhook can see: kube-audit-rest will write nothing');
    return true;
  }
  const { match } = compiled;
  const exact = match.fallback.length === 0;
  gauge.set(exact ? 1 : 0);
  if (exact) {
    deps.log.info(
      'the policy compiles into an exact webhook configuration (kube-audit-rest webhook-config)',
      {
        rules: match.rules.length,
        matchConditions: match.matchConditions.length,
      },
    );
  } else {
    deps.log.warn(
      'the policy is too large for webhook match conditions: a configuration compiled from it calls ' +
        'kube-audit-rest for every request its rules select, and kube-audit-rest drops what the policy does not record',
      { reasons: match.fallback },
    );
  }
  return exact;
}
