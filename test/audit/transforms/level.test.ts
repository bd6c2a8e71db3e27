/** @module Tests of the level transform: Metadata removes the bodies, and a line without them is never labelled above Metadata again. */
import { describe, expect, it } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../../src/audit/encode/admission-review.ts';
import { createPipeline } from '../../../src/audit/pipeline.ts';
import type { Level, PolicyDecision } from '../../../src/audit/policy/types.ts';
import type { AdmissionRecord } from '../../../src/audit/record.ts';
import { capToWritten } from '../../../src/audit/transforms/level.ts';
import { parseReview } from '../../../src/review/parse.ts';

const LOCAL_DATA = join(import.meta.dir, '..', '..', '..', 'testing', 'locally', 'data');
const ARRIVED = 1_700_000_000_123_456_789n;
const encoder = new TextEncoder();

function record(bytes: Uint8Array): AdmissionRecord {
  const parsed = parseReview(bytes);
  if (!parsed.ok) throw new Error(`not a review: ${parsed.message}`);
  return parsed.record;
}

function decision(level: Level): PolicyDecision {
  return { level, omitStages: ['RequestReceived'], omitManagedFields: true };
}

/** The admissionreview line the webhook writes for a sample at `level`, without its newline. */
function written(sample: string, level: Level): Uint8Array {
  const review = JSON.stringify(JSON.parse(readFileSync(join(LOCAL_DATA, sample), 'utf8')));
  const pipeline = createPipeline({ clock: () => ARRIVED, decide: () => decision(level) });
  const { line } = pipeline(record(encoder.encode(review)), ARRIVED);
  if (line === undefined) throw new Error('no line');
  const bytes = lineBytes(line);
  return bytes.subarray(0, bytes.length - 1);
}

describe('capToWritten', () => {
  for (const sample of ['01-create-pod.json', '02-scale-deployment.json', '03-delete-configmap.json']) {
    it(`keeps the decision for a line written with its bodies, and caps it at Metadata once they were dropped (${sample})`, () => {
      const whole = record(written(sample, 'RequestResponse'));
      const metadata = record(written(sample, 'Metadata'));
      for (const level of ['Request', 'RequestResponse'] as const) {
        expect(capToWritten(whole, decision(level))).toEqual(decision(level));
        expect(capToWritten(metadata, decision(level))).toEqual(decision('Metadata'));
      }
      for (const level of ['Metadata', 'None'] as const) {
        expect(capToWritten(whole, decision(level))).toEqual(decision(level));
        expect(capToWritten(metadata, decision(level))).toEqual(decision(level));
      }
    });
  }
});
