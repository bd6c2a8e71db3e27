/**
 * @module What happens to a record, in order: decide (the audit Policy) → edit (level, managed
 * fields, Secret redaction) → encode (admissionreview or audit-event). The caller writes the line.
 *
 * Features that are off cost nothing: with no policy, no Secret and the default format, there is
 * no decision to make, no edit and no field decoded, and the line is 1.x's, byte for byte.
 */
import type { OutputFormat } from '../config/serve.ts';
import type { Line } from '../sink/sink.ts';
import { type Clock, formatRfc3339Nano } from '../support/clock.ts';
import { EditList } from './edits.ts';
import { encodeAdmissionReview } from './encode/admission-review.ts';
import { encodeAuditEvent } from './encode/audit-event.ts';
import type { PolicyDecision } from './policy/types.ts';
import type { AdmissionRecord } from './record.ts';
import { dropBodies } from './transforms/level.ts';
import { dropManagedFields } from './transforms/managed-fields.ts';
import { isSecret, type Redactor } from './transforms/redact-secrets.ts';

/** The decision when there is no policy: everything admission shows is recorded. */
export const RECORD_EVERYTHING: PolicyDecision = Object.freeze({
  level: 'RequestResponse',
  omitStages: Object.freeze([]),
  omitManagedFields: false,
});

/** What a pipeline is made of; absent parts are features turned off. */
export type PipelineOptions = {
  /** The policy's decision for a record; undefined: record everything ({@link RECORD_EVERYTHING}). */
  decide?: (record: AdmissionRecord) => PolicyDecision;
  /** The line format. Default admissionreview. */
  format?: OutputFormat;
  /** Secret redaction; undefined turns it off. */
  redact?: Redactor;
  /** Cluster name stamped on every line unless the request brings its own; undefined: none. */
  clusterName?: string;
  /** audit-event only: add a synthetic 2xx responseStatus. Default false. */
  syntheticResponseStatus?: boolean;
  /** Clock for the audit-event stage timestamp. */
  clock: Clock;
};

/** What the pipeline made of one record: the decision, and the line to write (none at level None). */
export type Recorded = { decision: PolicyDecision; line: Line | undefined };

/** Turns a record into its line; `clusterName` overrides the configured one (a path token's cluster). */
export type Pipeline = (record: AdmissionRecord, arrived: bigint, clusterName?: string) => Recorded;

const encoder = new TextEncoder();

/** Creates the pipeline; see the module comment for its order. */
export function createPipeline(options: PipelineOptions): Pipeline {
  const { decide, redact, clock } = options;
  const format = options.format ?? 'admissionreview';
  const synthetic = options.syntheticResponseStatus ?? false;
  const configuredCluster = options.clusterName;
  const configuredToken =
    configuredCluster === undefined ? undefined : encoder.encode(JSON.stringify(configuredCluster));

  return function record(rec, arrived, clusterName) {
    const decision = decide === undefined ? RECORD_EVERYTHING : decide(rec);
    if (decision.level === 'None') return { decision, line: undefined };

    let edits: EditList | undefined;
    if (decision.level === 'Metadata') {
      // Nothing of the bodies is written, so there is nothing to redact in them.
      if (format === 'admissionreview') {
        edits = new EditList();
        dropBodies(rec, edits);
      }
    } else {
      if (decision.omitManagedFields) {
        edits = new EditList();
        dropManagedFields(rec, edits);
      }
      if (redact !== undefined && isSecret(rec)) {
        edits ??= new EditList();
        redact(rec, edits);
      }
    }

    const cluster = clusterName ?? configuredCluster;
    if (format === 'admissionreview') {
      const clusterToken =
        clusterName === undefined ? configuredToken : encoder.encode(JSON.stringify(clusterName));
      return {
        decision,
        line: encodeAdmissionReview(rec, edits, { timestamp: formatRfc3339Nano(arrived), clusterToken }),
      };
    }
    const line = encodeAuditEvent(rec, edits, {
      decision,
      arrived,
      now: clock(),
      clusterName: cluster,
      syntheticResponseStatus: synthetic,
    });
    return { decision, line };
  };
}
