/** @module Tests of the line converter `convert` and `forward` share: levels kept, cluster names, metadata, passthrough. */
import { describe, expect, it } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineBytes } from '../../src/audit/encode/admission-review.ts';
import { createPipeline } from '../../src/audit/pipeline.ts';
import { type ConvertOptions, composeLineConverter, parseRfc3339 } from '../../src/commands/convert-line.ts';
import { parseEventMeta } from '../../src/forward/event-meta.ts';
import { parseReview } from '../../src/review/parse.ts';

const REPO = join(import.meta.dir, '..', '..');
const LOCAL_DATA = join(REPO, 'testing', 'locally', 'data');
const CORPUS = join(REPO, 'testing', 'bench', 'corpus');
const ARRIVED = 1_700_000_000_123_456_789n;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const NO_FLAGS: ConvertOptions = {
  policyFile: undefined,
  clusterName: undefined,
  redactionKeyFile: undefined,
  disableSecretRedaction: false,
  syntheticResponseStatus: false,
};

/** Every captured review: the local-testing samples and the bench corpus, compact. */
function reviews(): { name: string; text: string }[] {
  return [
    ...readdirSync(LOCAL_DATA).map((f) => ({ name: f, text: readFileSync(join(LOCAL_DATA, f), 'utf8') })),
    ...readdirSync(CORPUS).map((f) => ({ name: f, text: readFileSync(join(CORPUS, f), 'utf8') })),
  ].map(({ name, text }) => ({ name, text: JSON.stringify(JSON.parse(text)) }));
}

/** The admissionreview line the webhook writes for `text` at `level`, with `clusterName` if given; no newline. */
function written(text: string, level: 'Metadata' | 'RequestResponse', clusterName?: string): Uint8Array {
  const parsed = parseReview(encoder.encode(text));
  if (!parsed.ok) throw new Error(parsed.message);
  const pipeline = createPipeline({
    clock: () => ARRIVED,
    decide: () => ({ level, omitStages: [], omitManagedFields: false }),
    ...(clusterName === undefined ? {} : { clusterName }),
  });
  const { line } = pipeline(parsed.record, ARRIVED);
  if (line === undefined) throw new Error('no line');
  const bytes = lineBytes(line);
  return bytes.slice(0, bytes.length - 1);
}

function events(
  result: ReturnType<Awaited<ReturnType<typeof composeLineConverter>>>,
): Record<string, unknown>[] {
  if (result.kind !== 'events') throw new Error(`expected events, got ${JSON.stringify(result)}`);
  return result.events.map((e) => JSON.parse(decoder.decode(e)) as Record<string, unknown>);
}

describe('composeLineConverter', () => {
  it('knows without parsing what parsing each Event it makes would find', async () => {
    for (const clusterName of [undefined, 'flag-cluster']) {
      const convert = await composeLineConverter({ ...NO_FLAGS, clusterName });
      for (const { name, text } of reviews()) {
        for (const lineCluster of [undefined, 'line-cluster']) {
          const result = convert(written(text, 'RequestResponse', lineCluster));
          if (result.kind !== 'events') throw new Error(`${name}: ${JSON.stringify(result)}`);
          for (const event of result.events)
            expect({ name, meta: result.meta as unknown }).toEqual({ name, meta: parseEventMeta(event) });
          expect(result.meta.cluster).toBe(lineCluster ?? clusterName);
        }
      }
    }
  });

  it('never labels a line written at Metadata above it, with or without a policy that would', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kar-convert-line-'));
    try {
      const everything = join(dir, 'policy.yaml');
      writeFileSync(
        everything,
        'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n',
      );
      const pod = reviews().find((r) => r.name === '01-create-pod.json')?.text as string;
      for (const policyFile of [undefined, everything]) {
        const convert = await composeLineConverter({ ...NO_FLAGS, policyFile });
        const [whole] = events(convert(written(pod, 'RequestResponse')));
        const [metadata] = events(convert(written(pod, 'Metadata')));
        expect(whole).toMatchObject({ level: 'RequestResponse', requestObject: expect.any(Object) });
        expect(metadata?.level).toBe('Metadata');
        expect(metadata).not.toHaveProperty('requestObject');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('makes two Events of an exec, keeps the line time as both timestamps, and passes Event lines through', async () => {
    const convert = await composeLineConverter(NO_FLAGS);
    const exec = reviews().find((r) => r.name === '04-exec-connect.json')?.text as string;
    const made = events(convert(written(exec, 'RequestResponse')));
    expect(made.map((e) => e.stage)).toEqual(['ResponseStarted', 'ResponseComplete']);
    for (const e of made) {
      expect(e.requestReceivedTimestamp).toBe('2023-11-14T22:13:20.123456Z');
      expect(e.stageTimestamp).toBe('2023-11-14T22:13:20.123456Z');
    }
    const eventLine = encoder.encode(JSON.stringify(made[0]));
    expect(convert(eventLine)).toEqual({ kind: 'event-line' });
  });

  it('skips what kube-audit-rest did not write, saying why without the line', async () => {
    const convert = await composeLineConverter(NO_FLAGS);
    const pod = JSON.parse(reviews().find((r) => r.name === '01-create-pod.json')?.text as string);
    const notJson = convert(encoder.encode('not json, secret-value'));
    expect(notJson.kind).toBe('skipped');
    expect(JSON.stringify(notJson)).not.toContain('secret-value');
    expect(convert(encoder.encode(JSON.stringify(pod)))).toEqual({
      kind: 'skipped',
      reason: 'no requestReceivedTimestamp in RFC 3339 form: not a line kube-audit-rest wrote',
    });
  });

  it('records nothing of a line the policy leaves out', async () => {
    // The bench's typical policy records no Lease at all.
    const policyFile = join(REPO, 'testing', 'bench', 'policies', 'typical.yaml');
    const convert = await composeLineConverter({ ...NO_FLAGS, policyFile });
    const lease = reviews().find((r) => r.name === 'lease-update.jsonl')?.text as string;
    expect(convert(written(lease, 'RequestResponse'))).toEqual({ kind: 'not-recorded' });
  });
});

describe('parseRfc3339', () => {
  it('reads up to nine fractional digits exactly', () => {
    expect(parseRfc3339('2023-11-14T22:13:20.123456789Z')).toBe(ARRIVED);
    expect(parseRfc3339('2023-11-14T22:13:20Z')).toBe(1_700_000_000_000_000_000n);
    expect(parseRfc3339('yesterday')).toBeUndefined();
  });
});
