/**
 * @module Keeps the named ValidatingWebhookConfiguration as kube-audit-rest needs it: each concern (a
 * {@link WebhookDesire}) looks at the configuration as it is and says what to change as JSON Patch
 * operations (RFC 6902); the reconciler applies them in one PATCH with the resourceVersion it read as a
 * precondition.
 *
 * It looks on every watch event, every minute, and when asked (the trust bundle changed), so a `kubectl apply`
 * that blanks the caBundle is put right as soon as the watch reports it. The caBundle is one concern
 * ({@link caBundleDesire}); the rules and match conditions compiled from `--policy-file` can be another.
 */

import {
  isConflict,
  isNotFound,
  type KubeClient,
  VALIDATING_WEBHOOK_CONFIGURATIONS_PATH,
  validatingWebhookConfigurationPath,
} from '../kube/client.ts';
import { type ObjectWatch, watchObject } from '../kube/watch.ts';
import type { Logger } from '../support/log.ts';

/** One JSON Patch operation (RFC 6902 §4). */
export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** One webhook of the configuration, as far as the reconciler reads it; other fields pass through. */
export type Webhook = {
  name: string;
  clientConfig?: { caBundle?: string; url?: string; service?: Record<string, unknown> };
  [field: string]: unknown;
};

/** A ValidatingWebhookConfiguration, as far as the reconciler reads it. */
export type ValidatingWebhookConfiguration = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; resourceVersion?: string; [field: string]: unknown };
  webhooks?: Webhook[];
};

/**
 * What one concern wants changed: JSON Patch operations against `current` (paths index `current.webhooks`),
 * or none when it is as wanted. Called again on every look, so it must be cheap and must not throw.
 */
export type WebhookDesire = (current: ValidatingWebhookConfiguration) => JsonPatchOperation[];

/** The JSON Patch path of a webhook's caBundle. */
function caBundlePath(index: number): string {
  return `/webhooks/${index}/clientConfig/caBundle`;
}

/** Every webhook's caBundle equal to `bundle()` (PEM), base64-encoded as the API wants; nothing while it is unknown. */
export function caBundleDesire(bundle: () => string | undefined): WebhookDesire {
  return function caBundle(current) {
    const pem = bundle();
    if (pem === undefined || pem === '') return [];
    const want = Buffer.from(pem, 'utf8').toString('base64');
    return (current.webhooks ?? []).flatMap((hook, i): JsonPatchOperation[] =>
      hook.clientConfig?.caBundle === want ? [] : [{ op: 'add', path: caBundlePath(i), value: want }],
    );
  };
}

/** How often the configuration is read regardless of watch events. */
const RESYNC_MS = 60_000;
/** Patch attempts per look: each 409 means the configuration changed after it was read. */
const MAX_PATCH_ATTEMPTS = 5;
/**
 * A patch that makes the very change the previous one made means someone undid it (a cert-manager
 * cainjector, a GitOps tool re-applying its own caBundle). Such repeats within this window count towards a
 * fight: the first {@link FIGHT_FREE_PATCHES} go at once (a user's stray apply is healed at once), each further
 * one waits twice as long as the last, up to {@link MAX_FIGHT_DELAY_MS}. New changes (a rotation) never wait.
 */
const FIGHT_WINDOW_MS = 60_000;
const FIGHT_FREE_PATCHES = 2;
const MAX_FIGHT_DELAY_MS = 30_000;
/** After a failed look (API server unreachable, say). */
const ERROR_RETRY_MS = 2_000;

/** What the reconciler reports, for metrics. */
export type WebhookObserver = {
  /** A patch was applied; `operations` are its changes (without the resourceVersion precondition). */
  patched?(operations: readonly JsonPatchOperation[]): void;
  /** A look or a patch failed (it is retried). */
  failed?(err: unknown): void;
};

/** Options for {@link createWebhookReconciler}. */
export type WebhookReconcilerOptions = {
  client: KubeClient;
  /** The configuration's name. */
  name: string;
  desires: readonly WebhookDesire[];
  log: Logger;
  /** Called before each patch so that what the desires read is current (the Secret read again). */
  beforePatch?: () => Promise<void>;
  observer?: WebhookObserver;
  /** The time, in epoch ms. Default Date.now. */
  now?: () => number;
};

/** A running reconciler. */
export type WebhookReconciler = {
  /** The configuration as last seen (after our own patches); null when it does not exist; undefined before the first look. */
  current(): ValidatingWebhookConfiguration | null | undefined;
  /** Whether every webhook of the configuration as last seen trusts `caPem` (its caBundle holds it). */
  trusts(caPem: string): boolean;
  /** Looks now; resolves when done (errors are reported, not thrown). */
  kick(): Promise<void>;
  /** Stops watching; resolves when the current look has finished. */
  stop(): Promise<void>;
};

/** Starts the reconciler: a first look, then a watch on the configuration and a resync timer. */
export function createWebhookReconciler(options: WebhookReconcilerOptions): WebhookReconciler {
  const { client, name, desires, log } = options;
  const now = options.now ?? Date.now;
  const path = validatingWebhookConfigurationPath(name);
  let current: ValidatingWebhookConfiguration | null | undefined;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let missingReported = false;
  /** When the recent repeats of the same patch were made. */
  const recentPatches: number[] = [];
  /** The operations of the last patch, to tell a repeat from a new change. */
  let lastOperations = '';

  function wanted(config: ValidatingWebhookConfiguration): JsonPatchOperation[] {
    return desires.flatMap((desire) => desire(config));
  }

  async function read(): Promise<ValidatingWebhookConfiguration | null> {
    try {
      return await client.request<ValidatingWebhookConfiguration>('GET', path);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** How long to hold back the next patch when patches have come close together; 0 when they have not. */
  function fightDelay(): number {
    const at = now();
    while (recentPatches.length > 0 && at - (recentPatches[0] as number) > FIGHT_WINDOW_MS)
      recentPatches.shift();
    const over = recentPatches.length - FIGHT_FREE_PATCHES;
    const last = recentPatches.at(-1);
    if (over < 0 || last === undefined) return 0;
    return Math.max(0, last + Math.min(1000 * 2 ** over, MAX_FIGHT_DELAY_MS) - at);
  }

  /** Reads the configuration and patches what the desires want; resolves when to look again, in ms. */
  async function look(): Promise<number> {
    let config = await read();
    for (let attempt = 1; ; attempt++) {
      current = config;
      if (config === null) {
        if (!missingReported)
          log.warn('the webhook configuration does not exist (yet); watching for it', { name });
        missingReported = true;
        return RESYNC_MS;
      }
      missingReported = false;
      if (wanted(config).length === 0) return RESYNC_MS;
      const repeat = JSON.stringify(wanted(config)) === lastOperations;
      const delay = repeat ? fightDelay() : 0;
      if (delay > 0) {
        log.warn(
          'the webhook configuration keeps being changed back; is another tool writing its caBundle?',
          {
            name,
            repeatsLastMinute: recentPatches.length,
            delayMs: delay,
          },
        );
        return delay;
      }
      await options.beforePatch?.();
      const operations = wanted(config);
      if (operations.length === 0) return RESYNC_MS;
      try {
        config = await client.request<ValidatingWebhookConfiguration>('PATCH', path, {
          contentType: 'application/json-patch+json',
          // The resourceVersion as read, as a precondition: the API server answers 409 Conflict when the
          // configuration changed since (the indexes in the paths might then point elsewhere).
          body: [
            { op: 'replace', path: '/metadata/resourceVersion', value: config.metadata.resourceVersion },
            ...operations,
          ],
          query: { fieldManager: 'kube-audit-rest' },
        });
        current = config;
        const done = JSON.stringify(operations);
        if (done === lastOperations) recentPatches.push(now());
        else recentPatches.length = 0;
        lastOperations = done;
        options.observer?.patched?.(operations);
        log.info('patched the webhook configuration', {
          name,
          changed: operations.map((o) => o.path),
        });
        return RESYNC_MS;
      } catch (err) {
        if (!isConflict(err) || attempt >= MAX_PATCH_ATTEMPTS) throw err;
        config = await read();
      }
    }
  }

  function schedule(ms: number): void {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => void kick(), ms);
  }

  let running: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  function kick(): Promise<void> {
    if (queued !== undefined) return queued;
    const run = running.then(async () => {
      queued = undefined;
      if (stopped) return;
      try {
        schedule(await look());
      } catch (err) {
        options.observer?.failed?.(err);
        log.error('could not bring the webhook configuration up to date; retrying', { name, err });
        schedule(ERROR_RETRY_MS);
      }
    });
    queued = run;
    running = run;
    return run;
  }

  void kick();
  const watch: ObjectWatch = watchObject<ValidatingWebhookConfiguration>({
    client,
    collectionPath: VALIDATING_WEBHOOK_CONFIGURATIONS_PATH,
    name,
    onChange: () => void kick(),
    log,
  });

  return {
    current: () => current,
    trusts(caPem) {
      const hooks = current?.webhooks ?? [];
      const want = caPem.trim();
      return (
        hooks.length > 0 &&
        hooks.every((hook) =>
          Buffer.from(hook.clientConfig?.caBundle ?? '', 'base64')
            .toString('utf8')
            .includes(want),
        )
      );
    },
    kick,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await watch.stop();
      await running;
    },
  };
}
