/**
 * @module The project's ValidatingWebhookConfiguration (k8s/base/webhook.yaml), rendered for a webhook that
 * runs outside the cluster on loopback: the same rules and settings, only the client config and the few
 * fields a test must control replaced.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The manifest the cluster install uses; the tests and the demo register exactly its rules. */
export const WEBHOOK_MANIFEST = join(import.meta.dir, '..', '..', 'k8s', 'base', 'webhook.yaml');

/** The annotation cert-manager's cainjector acts on; meaningless here, where caBundle is set directly. */
const CA_INJECT_ANNOTATION = 'cert-manager.io/inject-ca-from';

/** A CEL match condition of a webhook (admissionregistration.k8s.io/v1, GA since Kubernetes 1.30). */
export type MatchCondition = { name: string; expression: string };

/** One entry of `webhooks:` as far as these helpers touch it; other fields pass through untouched. */
export type Webhook = {
  name: string;
  admissionReviewVersions: string[];
  clientConfig: Record<string, unknown>;
  failurePolicy?: string;
  matchConditions?: MatchCondition[];
  [field: string]: unknown;
};

/** The parts of a ValidatingWebhookConfiguration these helpers read and change. */
export type WebhookConfiguration = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; annotations?: Record<string, string>; [field: string]: unknown };
  webhooks: Webhook[];
};

/** Options for {@link renderWebhookConfiguration}. */
export type RenderOptions = {
  /** The webhook's URL, e.g. `https://127.0.0.1:PORT/log-request`; replaces `clientConfig.service`. */
  url: string;
  /** PEM of the CA that signed the webhook's serving certificate; becomes `clientConfig.caBundle`. */
  caPem: string;
  /** Overrides every webhook's `failurePolicy`; default: keep the manifest's. */
  failurePolicy?: 'Fail' | 'Ignore';
  /** Only requests by these users are sent (a CEL match condition); default: every request, as deployed. */
  usernames?: readonly string[];
  /** Adds a copy of the first webhook named `v1beta1.<name>` that speaks only `admission.k8s.io/v1beta1`. */
  v1beta1Twin?: boolean;
  /** The manifest to render; default {@link WEBHOOK_MANIFEST}. */
  manifestPath?: string;
};

/** Parses the manifest with Bun's YAML parser and checks the shape these helpers rely on. */
export function loadWebhookManifest(path: string = WEBHOOK_MANIFEST): WebhookConfiguration {
  const doc = Bun.YAML.parse(readFileSync(path, 'utf8')) as WebhookConfiguration;
  if (
    doc?.kind !== 'ValidatingWebhookConfiguration' ||
    !Array.isArray(doc.webhooks) ||
    doc.webhooks.length === 0
  )
    throw new Error(`${path}: expected one ValidatingWebhookConfiguration with webhooks`);
  return doc;
}

/** Renders the manifest for a webhook at `options.url`, as described on {@link RenderOptions}. */
export function renderWebhookConfiguration(options: RenderOptions): WebhookConfiguration {
  const config = structuredClone(loadWebhookManifest(options.manifestPath));
  if (config.metadata.annotations !== undefined) {
    delete config.metadata.annotations[CA_INJECT_ANNOTATION];
    if (Object.keys(config.metadata.annotations).length === 0) delete config.metadata.annotations;
  }
  const clientConfig = { url: options.url, caBundle: Buffer.from(options.caPem).toString('base64') };
  const usernames = options.usernames;
  const byUser: MatchCondition[] =
    usernames === undefined
      ? []
      : [
          {
            name: 'only-listed-users',
            expression: `request.userInfo.username in ${JSON.stringify(usernames)}`,
          },
        ];
  const webhooks = config.webhooks.map((hook) => ({
    ...hook,
    clientConfig,
    ...(options.failurePolicy === undefined ? {} : { failurePolicy: options.failurePolicy }),
    ...(byUser.length === 0 ? {} : { matchConditions: [...(hook.matchConditions ?? []), ...byUser] }),
  }));
  const first = webhooks[0];
  if (options.v1beta1Twin === true && first !== undefined)
    webhooks.push({ ...first, name: `v1beta1.${first.name}`, admissionReviewVersions: ['v1beta1'] });
  config.webhooks = webhooks;
  return config;
}
