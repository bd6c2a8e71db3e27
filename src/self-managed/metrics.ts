/**
 * @module The self-managed TLS metrics: certificates made, caBundle patches, failed reconciles.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** What the self-managed controllers count. */
export type SelfManagedMetrics = {
  /** Counts certificates this replica made and stored. */
  made(what: 'ca' | 'serving', count: number): void;
  /** Counts one patch of the webhook configuration's caBundle. */
  caBundlePatched(): void;
  /** Counts one failed reconcile of the Secret or of the webhook configuration. */
  failed(what: 'secret' | 'webhook'): void;
  /** Sets the expiry of the newest CA in the trust bundle, in epoch ms. */
  caExpiry(epochMs: number): void;
};

/** Registers the self-managed metrics on `registry`; every label value starts at 0 so alerts see the series. */
export function createSelfManagedMetrics(registry: Registry): SelfManagedMetrics {
  const registers = [registry];
  const rotations = new Counter({
    name: 'kube_audit_rest_self_managed_rotations_total',
    help:
      'CAs (what="ca") and serving certificates (what="serving") this replica made and stored in the Secret, ' +
      'the first ones included; summed over replicas, the rotations that happened',
    labelNames: ['what'] as const,
    registers,
  });
  const patches = new Counter({
    name: 'kube_audit_rest_webhook_cabundle_patches_total',
    help: 'Patches this replica made to the webhook configuration to set its caBundle (at a rotation, or to undo a change)',
    registers,
  });
  const errors = new Counter({
    name: 'kube_audit_rest_self_managed_reconcile_errors_total',
    help: 'Failed attempts to bring the Secret (what="secret") or the webhook configuration (what="webhook") up to date; each is retried',
    labelNames: ['what'] as const,
    registers,
  });
  const caExpiry = new Gauge({
    name: 'kube_audit_rest_self_managed_ca_expiry_timestamp_seconds',
    help: 'Expiry (notAfter) of the CA that signs the serving certificate, as a Unix time in seconds',
    registers,
  });
  for (const what of ['ca', 'serving']) rotations.inc({ what }, 0);
  for (const what of ['secret', 'webhook']) errors.inc({ what }, 0);
  return {
    made: (what, count) => rotations.inc({ what }, count),
    caBundlePatched: () => patches.inc(),
    failed: (what) => errors.inc({ what }),
    caExpiry: (epochMs) => caExpiry.set(epochMs / 1000),
  };
}
