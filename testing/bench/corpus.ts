/**
 * @module The benchmark corpus: captured AdmissionReviews (testing/bench/corpus/*.jsonl, see
 * capture-corpus.ts) turned into request templates split at the uid, padded ConfigMaps of exact sizes,
 * and the weighted mix.
 *
 * Every request the load generators send carries a fresh uid of the same length as the captured one
 * (36 characters, UUID-shaped), so bodies keep their exact size and the audit log check can match lines
 * to requests one to one: `RRRRRRRR-WWWW-4000-8000-CCCCCCCCCCCC`, with R the load run, W the worker (wrk
 * thread or generator) and C its request counter, in hex.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where capture-corpus.ts writes the captured reviews and the bench reads them. */
export const CORPUS_DIR = join(import.meta.dir, 'corpus');

/** The data value of the captured ConfigMap that {@link paddedConfigMap} replaces with padding. */
export const PAD_PLACEHOLDER = '@@BENCH-PADDING@@';

/** Length of every uid the generators write: that of a UUID, as the API server sends. */
export const UID_LENGTH = 36;

/** One request body, split where the uid goes: the body is `prefix + uid + suffix`. */
export type Template = {
  /** Row name in the tables, e.g. `lease-update`. */
  readonly name: string;
  /** Bytes before the uid's characters (through the opening quote). */
  readonly prefix: Buffer;
  /** Bytes after the uid's characters (from the closing quote). */
  readonly suffix: Buffer;
  /** Body size in bytes: prefix + 36 + suffix. */
  readonly bytes: number;
};

/** The captured corpus entries, in the order the tables show them. */
export const CAPTURED = ['lease-update', 'event-create', 'pod-create', 'deployment-update'] as const;

/** One captured entry's name. */
export type CapturedName = (typeof CAPTURED)[number];

/** Name of the padded 1 MiB ConfigMap create in the tables. */
export const CONFIGMAP_1MIB = 'configmap-1mib';

/** 1 MiB: the size the issue asks of the big ConfigMap (a ConfigMap's data may not exceed 1 MiB). */
export const MIB = 1024 * 1024;

/**
 * The mix, in requests per thousand. A busy cluster's admission traffic is mostly small writes on a
 * timer: every kubelet renews its node Lease every 10 s and every leader-elected controller its Lease
 * every 2 s (half the mix); kubelets and controllers record Events (a quarter). Pod creates come with
 * rollouts and jobs (a tenth); updates that carry object and oldObject of a larger object (Deployments,
 * and the status updates they stand for here) make most of the rest. One request in a thousand is a
 * 1 MiB ConfigMap (or a Helm release Secret): rare, but it is what stresses memory and the write path.
 */
export const MIX_WEIGHTS: Readonly<Record<CapturedName | typeof CONFIGMAP_1MIB, number>> = {
  'lease-update': 500,
  'event-create': 250,
  'pod-create': 100,
  'deployment-update': 149,
  [CONFIGMAP_1MIB]: 1,
};

/** Reads a captured review as the API server sent it. */
export function readCaptured(name: string): Buffer {
  return readFileSync(join(CORPUS_DIR, `${name}.jsonl`));
}

/** Splits a review body at its `request.uid`; throws unless the uid is where and as long as expected. */
export function templateOf(name: string, body: Buffer): Template {
  const review = JSON.parse(body.toString('utf8')) as { request?: { uid?: unknown } };
  const uid = review.request?.uid;
  if (typeof uid !== 'string' || uid.length !== UID_LENGTH)
    throw new Error(`${name}: request.uid must be a ${UID_LENGTH}-character string`);
  const marker = Buffer.from(`"request":{"uid":"${uid}"`);
  const at = body.indexOf(marker);
  if (at < 0 || body.indexOf(marker, at + 1) >= 0)
    throw new Error(`${name}: expected "request":{"uid":... exactly once`);
  const start = at + marker.length - UID_LENGTH - 1;
  return {
    name,
    prefix: body.subarray(0, start),
    suffix: body.subarray(start + UID_LENGTH),
    bytes: body.length,
  };
}

/** A line of the padding: a config file's worth of text with JSON-escaped newlines, as ConfigMaps hold. */
const PAD_LINE = 'service.endpoint.timeout_ms = 2500  # set by the platform team\\n';

/**
 * Makes the captured ConfigMap create exactly `bytes` long by putting padding text (with `\n` escapes, as
 * a config file in a ConfigMap has) in place of its placeholder value. Throws if `bytes` is smaller than
 * the review without padding.
 */
export function paddedConfigMap(bytes: number): Buffer {
  const base = readCaptured('configmap-create');
  const placeholder = Buffer.from(PAD_PLACEHOLDER);
  const at = base.indexOf(placeholder);
  if (at < 0) throw new Error(`configmap-create: placeholder ${PAD_PLACEHOLDER} not found`);
  const fixed = base.length - placeholder.length;
  const padBytes = bytes - fixed;
  if (padBytes < 0) throw new Error(`a padded ConfigMap cannot be smaller than ${fixed} bytes`);
  const whole = Math.floor(padBytes / PAD_LINE.length);
  // The rest is plain letters, so no escape is ever cut in half.
  const pad = PAD_LINE.repeat(whole) + 'x'.repeat(padBytes - whole * PAD_LINE.length);
  const out = Buffer.concat([base.subarray(0, at), Buffer.from(pad), base.subarray(at + placeholder.length)]);
  if (out.length !== bytes) throw new Error(`padding made ${out.length} bytes, not ${bytes}`);
  return out;
}

/** Templates of the captured entries and the 1 MiB ConfigMap, by name, in table order. */
export function loadTemplates(): Template[] {
  return [
    ...CAPTURED.map((name) => templateOf(name, readCaptured(name))),
    templateOf(CONFIGMAP_1MIB, paddedConfigMap(MIB)),
  ];
}

/** A padded ConfigMap create of exactly `bytes`, as a template named by its size. */
export function sizedTemplate(bytes: number, name: string): Template {
  return templateOf(name, paddedConfigMap(bytes));
}

/** A workload: templates and the order they are sent in (indices into `templates`, cycled). */
export type Workload = {
  readonly name: string;
  readonly templates: readonly Template[];
  readonly schedule: readonly number[];
};

/** A workload that sends one template only. */
export function single(template: Template): Workload {
  return { name: template.name, templates: [template], schedule: [0] };
}

/**
 * The mix of {@link MIX_WEIGHTS} as a schedule of 1,000 requests, shuffled with a fixed seed so every run
 * sends the same sequence; generators cycle through it from different offsets.
 */
export function mixWorkload(templates: readonly Template[]): Workload {
  const schedule: number[] = [];
  for (const [name, weight] of Object.entries(MIX_WEIGHTS)) {
    const index = templates.findIndex((t) => t.name === name);
    if (index < 0) throw new Error(`mix: no template ${name}`);
    for (let i = 0; i < weight; i++) schedule.push(index);
  }
  let seed = 0x2545f491;
  for (let i = schedule.length - 1; i > 0; i--) {
    // xorshift32: deterministic, good enough to spread the big requests out.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const j = (seed >>> 0) % (i + 1);
    [schedule[i], schedule[j]] = [schedule[j] as number, schedule[i] as number];
  }
  return { name: 'mix', templates, schedule };
}

/** Mean body size of a workload's schedule, in bytes. */
export function meanBodyBytes(workload: Workload): number {
  let sum = 0;
  for (const i of workload.schedule) sum += workload.templates[i]?.bytes ?? 0;
  return sum / workload.schedule.length;
}

/**
 * The first 24 characters of every uid `worker` sends in load run `run`, `RRRRRRRR-WWWW-4000-8000-`; the
 * request counter in 12 hex digits completes it (see the module comment; wrk.lua builds the same).
 */
export function uidPrefix(run: number, worker: number): string {
  return `${run.toString(16).padStart(8, '0')}-${worker.toString(16).padStart(4, '0')}-4000-8000-`;
}

const BENCH_UID = /^([0-9a-f]{8})-[0-9a-f]{4}-4000-8000-[0-9a-f]{12}$/;

/** Whether `uid` is one a bench generator made ({@link uidPrefix}), and of which run. */
export function runOfUid(uid: string): number | undefined {
  const match = BENCH_UID.exec(uid);
  return match?.[1] === undefined ? undefined : Number.parseInt(match[1], 16);
}
