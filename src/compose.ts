/**
 * @module Builds the audit pipeline from the record flags, for the server and for `convert` alike:
 * the policy file loaded and validated, the redaction key read, the format chosen. No request is
 * handled here; a problem with a file is an error naming the flag, raised before anything starts.
 */
import { readFileSync } from 'node:fs';
import { createPipeline, type Pipeline, RECORD_EVERYTHING } from './audit/pipeline.ts';
import type { Policy } from './audit/policy/types.ts';
import { capToWritten } from './audit/transforms/level.ts';
import { createSecretRedactor, type Redactor } from './audit/transforms/redact-secrets.ts';
import type { ValuesOf } from './config/flags.ts';
import type { RECORD_FLAGS } from './config/serve.ts';
import type { Clock } from './support/clock.ts';

/** The record flags' values (see RECORD_FLAGS). */
export type RecordOptions = ValuesOf<typeof RECORD_FLAGS>;

/** Where the records come from, when that changes what the pipeline may do. */
export type PipelineSource = {
  /**
   * The records are lines written earlier (`convert`, `forward`), not requests: a line whose bodies
   * were removed at level Metadata is never labelled above Metadata again (see capToWritten).
   * Default false.
   */
  writtenLines?: boolean;
};

/** A problem with a file a flag names; `message` says which flag and what is wrong. */
export class CompositionError extends Error {
  override readonly name = 'CompositionError';
}

/** Shortest redaction key accepted: 128 bits, the least an HMAC key should carry. */
export const MIN_REDACTION_KEY_BYTES = 16;

/** Reads `--redaction-key-file` and makes the redactor, or none with `--disable-secret-redaction`. */
function buildRedactor(options: RecordOptions): Redactor | undefined {
  if (options.disableSecretRedaction) return undefined;
  if (options.redactionKeyFile === undefined) return createSecretRedactor();
  let key: Uint8Array;
  try {
    key = readFileSync(options.redactionKeyFile);
  } catch (err) {
    throw new CompositionError(`--redaction-key-file: cannot read ${options.redactionKeyFile}`, {
      cause: err,
    });
  }
  if (key.length < MIN_REDACTION_KEY_BYTES) {
    throw new CompositionError(
      `--redaction-key-file: the key must be at least ${MIN_REDACTION_KEY_BYTES} bytes, got ${key.length}`,
    );
  }
  return createSecretRedactor({ key });
}

/** The pipeline the flags describe, and the policy it decides with (undefined without --policy-file). */
export type Recording = { pipeline: Pipeline; policy: Policy | undefined };

/**
 * Builds the pipeline the flags describe. Rejects with a CompositionError whose message lists every
 * problem in the policy file (each with its rule index and field) or names the unreadable file.
 */
export async function composePipeline(
  options: RecordOptions,
  clock: Clock,
  source: PipelineSource = {},
): Promise<Pipeline> {
  return (await composeRecording(options, clock, source)).pipeline;
}

/** {@link composePipeline}, also returning the loaded policy (the server reports what it compiles to). */
export async function composeRecording(
  options: RecordOptions,
  clock: Clock,
  source: PipelineSource = {},
): Promise<Recording> {
  let decide: Parameters<typeof createPipeline>[0]['decide'];
  let policy: Policy | undefined;
  if (options.policyFile !== undefined) {
    // The policy's modules (and the YAML parser) are loaded only when there is a policy.
    const { loadPolicyFile } = await import('./audit/policy/load.ts');
    const { createPolicyEvaluator } = await import('./audit/policy/evaluate.ts');
    const { attributesFromAdmission } = await import('./audit/policy/attributes.ts');
    const loaded = await loadPolicyFile(options.policyFile);
    if (!loaded.ok) {
      throw new CompositionError(
        `--policy-file: ${options.policyFile} is not a usable audit Policy:\n  ${loaded.errors.join('\n  ')}`,
      );
    }
    policy = loaded.policy;
    const evaluate = createPolicyEvaluator(loaded.policy);
    decide = (record) => evaluate(attributesFromAdmission(record));
  }
  if (source.writtenLines) {
    const first = decide ?? (() => RECORD_EVERYTHING);
    decide = (record) => capToWritten(record, first(record));
  }
  const redact = buildRedactor(options);
  const pipeline = createPipeline({
    format: options.outputFormat,
    syntheticResponseStatus: options.syntheticResponseStatus,
    clock,
    ...(decide === undefined ? {} : { decide }),
    ...(redact === undefined ? {} : { redact }),
    ...(options.clusterName === undefined ? {} : { clusterName: options.clusterName }),
  });
  return { pipeline, policy };
}
