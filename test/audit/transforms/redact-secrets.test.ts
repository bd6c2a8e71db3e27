/** @module Tests of Secret redaction run twice: the markers of a redacted line are kept as they are. */
import { describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../../src/audit/encode/admission-review.ts';
import { createPipeline } from '../../../src/audit/pipeline.ts';
import { createSecretRedactor, REDACTED_PREFIX } from '../../../src/audit/transforms/redact-secrets.ts';
import { parseReview } from '../../../src/review/parse.ts';

const SECRET = join(
  import.meta.dir,
  '..',
  '..',
  '..',
  'testing',
  'locally',
  'data',
  '05-v1beta1-secret-dryrun.json',
);
const ARRIVED = 1_700_000_000_123_456_789n;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs a body through a pipeline with redaction under `key`; returns the line without its newline. */
function redactOnce(body: Uint8Array, key: string): Uint8Array {
  const parsed = parseReview(body);
  if (!parsed.ok) throw new Error(parsed.message);
  const pipeline = createPipeline({
    clock: () => ARRIVED,
    redact: createSecretRedactor({ key: encoder.encode(key) }),
  });
  const { line } = pipeline(parsed.record, ARRIVED);
  if (line === undefined) throw new Error('no line');
  const bytes = lineBytes(line);
  return bytes.slice(0, bytes.length - 1);
}

type Secret = { request: { object: { data: Record<string, string> } } };

describe('createSecretRedactor', () => {
  it('leaves the markers of an already redacted line unchanged, even under another key', () => {
    const body = encoder.encode(JSON.stringify(JSON.parse(readFileSync(SECRET, 'utf8'))));
    const once = redactOnce(body, 'the first key, 32 bytes long....');
    const twice = redactOnce(once, 'another key, also 32 bytes......');
    const data = (JSON.parse(decoder.decode(once)) as Secret).request.object.data;
    expect(Object.keys(data).length).toBeGreaterThan(0);
    for (const value of Object.values(data)) expect(value.startsWith(REDACTED_PREFIX)).toBe(true);
    expect(decoder.decode(twice)).toBe(decoder.decode(once));
  });

  it('still hashes a value that only looks like the start of a marker', () => {
    const review = JSON.parse(readFileSync(SECRET, 'utf8')) as Secret;
    const fake = `${REDACTED_PREFIX}short`;
    review.request.object.data = { a: Buffer.from(fake).toString('base64') };
    const out = JSON.parse(
      decoder.decode(redactOnce(encoder.encode(JSON.stringify(review)), 'k'.repeat(32))),
    ) as Secret;
    expect(out.request.object.data.a).toMatch(new RegExp(`^${REDACTED_PREFIX}[A-Za-z0-9_-]{43}$`));
  });
});
