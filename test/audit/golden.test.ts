import { describe, expect, it } from 'bun:test';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../src/audit/encode/admission-review.ts';
import { createPipeline } from '../../src/audit/pipeline.ts';
import type { PolicyDecision } from '../../src/audit/policy/types.ts';
import { createSecretRedactor } from '../../src/audit/transforms/redact-secrets.ts';
import type { OutputFormat } from '../../src/config/serve.ts';
import { parseReview } from '../../src/review/parse.ts';

/**
 * Golden files of both line formats, made from the reviews the real API server sent (testing/locally/data:
 * a create, a scale subresource, a delete, an exec CONNECT, a v1beta1 dry-run Secret, a body with its own
 * timestamp) at each level. `UPDATE_GOLDEN=1 bun test test/audit/golden.test.ts` writes them anew; the diff
 * is then the review of a format change.
 */
const REPO = join(import.meta.dir, '..', '..');
const DATA = join(REPO, 'testing', 'locally', 'data');
const GOLDEN = join(import.meta.dir, '..', 'golden', 'formats');
const ARRIVED = 1_764_294_518_123_456_789n;
const NOW = ARRIVED + 1_500_000n;
const KEY = new TextEncoder().encode('golden-files-redaction-key-32-by');

const DECISIONS: readonly PolicyDecision[] = [
  { level: 'RequestResponse', omitStages: [], omitManagedFields: false },
  { level: 'Request', omitStages: [], omitManagedFields: true },
  { level: 'Metadata', omitStages: [], omitManagedFields: false },
];

function render(format: OutputFormat): string {
  let out = '';
  for (const file of readdirSync(DATA).sort()) {
    const parsed = parseReview(readFileSync(join(DATA, file)));
    if (!parsed.ok) throw new Error(`${file}: ${parsed.message}`);
    for (const d of DECISIONS) {
      const pipeline = createPipeline({
        clock: () => NOW,
        format,
        decide: () => d,
        redact: createSecretRedactor({ key: KEY }),
        clusterName: 'golden-cluster',
      });
      const { line } = pipeline(parsed.record, ARRIVED);
      if (line !== undefined) out += new TextDecoder().decode(lineBytes(line));
    }
  }
  return out;
}

describe('line formats', () => {
  for (const format of ['admissionreview', 'audit-event'] as const) {
    it(`match test/golden/formats/${format}.jsonl for every captured review and level`, () => {
      const file = join(GOLDEN, `${format}.jsonl`);
      const text = render(format);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
      expect(text).toBe(readFileSync(file, 'utf8'));
    });
  }
});
