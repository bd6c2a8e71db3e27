/**
 * @module The self-managed certificate controller: keeps the Secret's CA and serving certificate current
 * (rotation.ts decides, this module reads and writes), and the certificate files the TLS server serves equal
 * to what the Secret holds.
 *
 * Every replica runs one. Each reads the Secret (on start, on every watch event, at the time the next rotation
 * falls due, and every minute regardless), and the first to see that something is due writes the new state
 * with the resourceVersion it read; the API server refuses the others' writes (409 Conflict), and they read
 * again and take what the winner wrote. Creating a missing Secret races the same way (409 AlreadyExists). So
 * all replicas end up serving the one certificate the Secret holds.
 */

import {
  isAlreadyExists,
  isConflict,
  isNotFound,
  isPermanent,
  type KubeClient,
  secretPath,
  secretsPath,
} from '../kube/client.ts';
import { type ObjectWatch, watchObject } from '../kube/watch.ts';
import type { Logger } from '../support/log.ts';
import type { CertificateFiles } from './files.ts';
import { applySteps, nextCheck, planRotation, type RotationPolicy, type Step } from './rotation.ts';
import { readState, SECRET_KEYS, type TlsState, trustBundle, writeState } from './state.ts';

/** The Secret as far as this module reads and writes it. */
export type Secret = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  type?: string;
  data?: Record<string, string>;
  [field: string]: unknown;
};

/** Marks a Secret as kept by kube-audit-rest; one with data but without the mark is never overwritten. */
export const OWNER_ANNOTATION = 'kube-audit-rest/tls-mode';
const OWNER_VALUE = 'self-managed';

/** Write attempts per reconcile: each 409 means another replica wrote first, so a few always suffice. */
const MAX_WRITE_ATTEMPTS = 5;
/** The Secret is read again at least this often, in case a watch event was missed. */
const RESYNC_MS = 60_000;
/** A due step that waits on something (the webhook's caBundle) is looked at again after this long. */
const BLOCKED_RETRY_MS = 1_000;
/** Timers may fire a little early; waking this much after the due time finds the step due. */
const WAKE_SLACK_MS = 5;
/** After a failed reconcile: first retry, doubling up to the resync interval. */
const MIN_RETRY_MS = 500;

/** A Secret of the given name exists with data that kube-audit-rest did not write. */
export class ForeignSecretError extends Error {
  override readonly name = 'ForeignSecretError';
}

/** What the controller reports, for metrics. */
export type ControllerObserver = {
  /** A CA or serving certificate this replica made and stored (the first ones included). */
  made?(what: 'ca' | 'serving', count: number): void;
  /** A reconcile failed (it is retried). */
  failed?(err: unknown): void;
  /** The files and trust bundle now follow `state`. */
  adopted?(state: TlsState): void;
};

/** Options for {@link createCertificateController}. */
export type CertificateControllerOptions = {
  client: KubeClient;
  namespace: string;
  name: string;
  policy: RotationPolicy;
  files: CertificateFiles;
  log: Logger;
  /** Whether the webhook configuration is seen to trust a CA; a next CA is promoted only then. Default: always. */
  trusted?: (caPem: string) => boolean;
  /** Called when the trust bundle the Secret holds changes (and first when it is known). */
  onTrustBundle?: (bundle: string) => void;
  observer?: ControllerObserver;
  /** The time, in epoch ms. Default Date.now. */
  now?: () => number;
};

/** A running controller. */
export type CertificateController = {
  /** Resolves once the Secret has been read (or created) and the certificate files written; rejects on a permanent error. */
  readonly firstSync: Promise<void>;
  /** The trust bundle (PEM) the Secret holds, once known. */
  trustBundle(): string | undefined;
  /** Reads the Secret now and acts on it; resolves when done (errors are reported, not thrown). */
  refresh(): Promise<void>;
  /** Stops the watch and timers; resolves when the current reconcile has finished. */
  stop(): Promise<void>;
};

/** A short description of steps for the log: `make-next-ca (the signing CA is 80% ...)`. */
function describe(steps: readonly Step[]): string[] {
  return steps.map((s) => `${s.kind} (${s.reason})`);
}

/** Whether the Secret's own keys already hold `data` (keys of others are not ours to compare). */
function holdsData(secret: Secret, data: Record<string, string>): boolean {
  const current = secret.data ?? {};
  return Object.values(SECRET_KEYS).every((key) => current[key] === data[key]);
}

/** Starts the controller: reads or creates the Secret, writes the files, then watches and keeps both current. */
export function createCertificateController(options: CertificateControllerOptions): CertificateController {
  const { client, namespace, name, policy, files, log } = options;
  const now = options.now ?? Date.now;
  const trusted = options.trusted ?? (() => true);
  const path = secretPath(namespace, name);
  const where = `${namespace}/${name}`;

  let stopped = false;
  let bundle: string | undefined;
  let lastProblems = '';
  let timer: ReturnType<typeof setTimeout> | undefined;
  let retryMs = MIN_RETRY_MS;
  let watch: ObjectWatch | undefined;

  async function read(): Promise<Secret | null> {
    try {
      return await client.request<Secret>('GET', path);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  function owned(secret: Secret): boolean {
    return secret.metadata.annotations?.[OWNER_ANNOTATION] === OWNER_VALUE;
  }

  function withState(secret: Secret, state: TlsState): Secret {
    const data: Record<string, string> = {};
    for (const [key, value] of Object.entries(secret.data ?? {}))
      if (!(Object.values(SECRET_KEYS) as string[]).includes(key)) data[key] = value;
    return {
      ...secret,
      metadata: {
        ...secret.metadata,
        annotations: { ...secret.metadata.annotations, [OWNER_ANNOTATION]: OWNER_VALUE },
      },
      data: { ...data, ...writeState(state) },
    };
  }

  function count(made: { ca: number; serving: number }): void {
    if (made.ca > 0) options.observer?.made?.('ca', made.ca);
    if (made.serving > 0) options.observer?.made?.('serving', made.serving);
  }

  /** Reads the Secret and brings it up to date; returns what it holds then. */
  async function bringUpToDate(): Promise<TlsState> {
    let secret = await read();
    for (let attempt = 1; ; attempt++) {
      const at = now();
      if (secret === null) {
        const steps = planRotation({}, at, policy, trusted);
        const { state, made } = applySteps({}, steps, at, policy);
        const fresh: Secret = {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name, namespace, annotations: { [OWNER_ANNOTATION]: OWNER_VALUE } },
          type: 'kubernetes.io/tls',
          data: writeState(state),
        };
        try {
          secret = await client.request<Secret>('POST', secretsPath(namespace), {
            body: fresh,
            query: { fieldManager: 'kube-audit-rest' },
          });
          count(made);
          log.info('created the Secret with a new CA and serving certificate', { secret: where });
          return state;
        } catch (err) {
          if (!isAlreadyExists(err) || attempt >= MAX_WRITE_ATTEMPTS) throw err;
          log.info('another replica created the Secret first; using it', { secret: where });
          secret = await read();
          continue;
        }
      }
      if (!owned(secret) && Object.keys(secret.data ?? {}).length > 0)
        throw new ForeignSecretError(
          `Secret ${where} holds data that kube-audit-rest did not write (no ${OWNER_ANNOTATION} annotation): ` +
            'name another with --self-managed-secret, or delete it',
        );
      const { state, problems } = readState(secret.data);
      const problemText = problems.join('; ');
      if (problemText !== lastProblems && problemText !== '')
        log.warn('parts of the Secret cannot be used and will be made again', { secret: where, problems });
      lastProblems = problemText;
      const steps = planRotation(state, at, policy, trusted);
      const { state: next, made } = applySteps(state, steps, at, policy);
      if (steps.length === 0 && owned(secret) && holdsData(secret, writeState(state))) return state;
      try {
        secret = await client.request<Secret>('PUT', path, {
          body: withState(secret, next),
          query: { fieldManager: 'kube-audit-rest' },
        });
        count(made);
        if (steps.length > 0) log.info('rotated', { secret: where, steps: describe(steps) });
        else log.info('rewrote the Secret in its own form', { secret: where });
        return next;
      } catch (err) {
        if (!isConflict(err) || attempt >= MAX_WRITE_ATTEMPTS) throw err;
        // Another replica wrote first: what it wrote is read back and acted on instead.
        log.debug('the Secret changed since it was read; reading it again', { secret: where });
        secret = await read();
      }
    }
  }

  /** Writes the files and publishes the bundle for `state`, and sets the timer for its next due step. */
  async function adopt(state: TlsState): Promise<void> {
    if (state.serving !== undefined) await files.write(state.serving.pem, state.serving.keyPem);
    const current = trustBundle(state);
    if (current !== bundle) {
      bundle = current;
      options.onTrustBundle?.(current);
    }
    options.observer?.adopted?.(state);
    const at = now();
    const due = nextCheck(state);
    schedule(due <= at ? BLOCKED_RETRY_MS : Math.min(due - at + WAKE_SLACK_MS, RESYNC_MS));
  }

  function schedule(ms: number): void {
    clearTimeout(timer);
    if (stopped) return;
    timer = setTimeout(() => void enqueue(), ms);
  }

  /**
   * Reconciles run one at a time, each from a fresh read (a watch event only says when to read: a copy it
   * carries may already be older than what this replica wrote); requests that arrive meanwhile share one run.
   */
  let running: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  function enqueue(): Promise<void> {
    if (queued !== undefined) return queued;
    const run = running.then(async () => {
      queued = undefined;
      if (stopped) return;
      try {
        await adopt(await bringUpToDate());
        retryMs = MIN_RETRY_MS;
        markSynced();
      } catch (err) {
        options.observer?.failed?.(err);
        if (err instanceof ForeignSecretError || isPermanent(err)) failSync(err);
        log.error('could not bring the Secret up to date; retrying', { secret: where, retryMs, err });
        schedule(retryMs);
        retryMs = Math.min(retryMs * 2, RESYNC_MS);
      }
    });
    queued = run;
    running = run;
    return run;
  }

  let markSynced: () => void = () => {};
  let failSync: (err: unknown) => void = () => {};
  const firstSync = new Promise<void>((resolve, reject) => {
    markSynced = resolve;
    failSync = reject;
  });
  firstSync.catch(() => {}); // the caller decides; an unobserved rejection must not end the process

  void enqueue().then(() => {
    if (stopped) return;
    watch = watchObject<Secret>({
      client,
      collectionPath: secretsPath(namespace),
      name,
      onChange: () => void enqueue(),
      log,
    });
  });

  return {
    firstSync,
    trustBundle: () => bundle,
    refresh: () => enqueue(),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await watch?.stop();
      await running;
    },
  };
}
