/**
 * @module Self-managed TLS put together: the API connection, the certificate controller (Secret and files),
 * the webhook reconciler (caBundle) and their metrics. The TLS server knows nothing of it: it serves the
 * files, which this keeps current.
 */
import type { Registry } from 'prom-client';
import { createKubeClient } from '../kube/client.ts';
import { inClusterConnection, type KubeConnection, kubeconfigConnection } from '../kube/config.ts';
import type { Logger } from '../support/log.ts';
import { type CertificateController, createCertificateController } from './controller.ts';
import { certificateFiles } from './files.ts';
import { createSelfManagedMetrics } from './metrics.ts';
import type { SelfManagedSettings } from './settings.ts';
import {
  caBundleDesire,
  createWebhookReconciler,
  type WebhookDesire,
  type WebhookReconciler,
} from './webhook.ts';

/** What {@link startSelfManagedTls} needs. */
export type SelfManagedTlsDeps = {
  log: Logger;
  /** The registry the metrics go on. */
  registry: Registry;
  /** `KUBERNETES_SERVICE_HOST` and `_PORT`, for the in-cluster connection (main passes process.env). */
  env: Readonly<Record<string, string | undefined>>;
  /**
   * More concerns for the webhook configuration besides its caBundle, e.g. rules and match conditions compiled
   * from the audit policy. Default none.
   */
  webhookDesires?: readonly WebhookDesire[];
};

/** The running self-managed TLS. */
export type SelfManagedTls = {
  /** Resolves once the certificate files hold what the Secret holds; rejects when the Secret cannot be used at all. */
  readonly firstSync: Promise<void>;
  /** Whether the certificate files have been written from the Secret. */
  ready(): boolean;
  /** Stops the controllers (the files stay). */
  stop(): Promise<void>;
};

/** The API connection the settings ask for: the kubeconfig's current context, or the pod's ServiceAccount. */
export function connectionFor(settings: SelfManagedSettings, env: SelfManagedTlsDeps['env']): KubeConnection {
  return settings.kubeconfig === undefined
    ? inClusterConnection(env)
    : kubeconfigConnection(settings.kubeconfig);
}

/**
 * Starts keeping the Secret, the certificate files and (when named) the webhook configuration's caBundle
 * current. Throws a KubeConfigError when the API connection cannot be set up.
 */
export function startSelfManagedTls(settings: SelfManagedSettings, deps: SelfManagedTlsDeps): SelfManagedTls {
  const client = createKubeClient(connectionFor(settings, deps.env));
  const metrics = createSelfManagedMetrics(deps.registry);
  let webhook: WebhookReconciler | undefined;
  let synced = false;

  const controller: CertificateController = createCertificateController({
    client,
    namespace: settings.secretNamespace,
    name: settings.secretName,
    policy: {
      caValidityMs: settings.caValidityMs,
      servingValidityMs: settings.certValidityMs,
      dnsNames: settings.dnsNames,
      ipAddresses: settings.ipAddresses,
    },
    files: certificateFiles({ certFile: settings.certFile, keyFile: settings.keyFile }),
    log: deps.log.child('self-managed'),
    // A next CA signs only once the webhook configuration is seen to trust it.
    ...(settings.webhookConfigurationName !== undefined && {
      trusted: (pem) => webhook?.trusts(pem) ?? false,
    }),
    onTrustBundle: () => void webhook?.kick(),
    observer: {
      made: (what, count) => metrics.made(what, count),
      failed: () => metrics.failed('secret'),
      adopted: (state) => {
        if (state.signing !== undefined) metrics.caExpiry(state.signing.notAfter);
      },
    },
  });
  void controller.firstSync.then(() => {
    synced = true;
  });

  if (settings.webhookConfigurationName !== undefined) {
    webhook = createWebhookReconciler({
      client,
      name: settings.webhookConfigurationName,
      desires: [caBundleDesire(() => controller.trustBundle()), ...(deps.webhookDesires ?? [])],
      // Patch from the Secret as it is now, never from a copy another replica has since replaced.
      beforePatch: () => controller.refresh(),
      log: deps.log.child('webhook-configuration'),
      observer: {
        patched: (operations) => {
          if (operations.some((o) => o.path.endsWith('/clientConfig/caBundle'))) metrics.caBundlePatched();
        },
        failed: () => metrics.failed('webhook'),
      },
    });
  }

  return {
    firstSync: controller.firstSync,
    ready: () => synced,
    async stop() {
      await Promise.all([controller.stop(), webhook?.stop()]);
    },
  };
}
