/**
 * @module Level Metadata: the request's object and oldObject are not recorded.
 *
 * Both members are removed from the line (rather than set to null), so that a reader cannot take
 * "not recorded" for "there was none": an update always has an old object. `options` stays: it
 * holds how the request was made (dry run, field manager, propagation policy), not content.
 */
import type { EditList } from '../edits.ts';
import type { PolicyDecision } from '../policy/types.ts';
import type { AdmissionRecord } from '../record.ts';

/** Adds the edits that remove `request.object` and `request.oldObject`. */
export function dropBodies(record: AdmissionRecord, edits: EditList): void {
  for (const field of ['object', 'oldObject'] as const) {
    const key = record.keyStart(field);
    if (key >= 0) edits.removeMember(key, record.end(field));
  }
}

/**
 * Returns the decision capped at what a line written earlier still holds. The API server always
 * sends both `object` and `oldObject` (null when there is none), so a review with neither member
 * had them removed at level Metadata by {@link dropBodies}: converting it again (`convert`,
 * `forward`) must not label it Request or RequestResponse, whatever the policy now says, since the
 * bodies are gone. Lower decisions (Metadata, None) stand.
 */
export function capToWritten(record: AdmissionRecord, decision: PolicyDecision): PolicyDecision {
  if (decision.level !== 'Request' && decision.level !== 'RequestResponse') return decision;
  if (record.keyStart('object') >= 0 || record.keyStart('oldObject') >= 0) return decision;
  return { ...decision, level: 'Metadata' };
}
