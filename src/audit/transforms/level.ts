/**
 * @module Level Metadata: the request's object and oldObject are not recorded.
 *
 * Both members are removed from the line (rather than set to null), so that a reader cannot take
 * "not recorded" for "there was none": an update always has an old object. `options` stays: it
 * holds how the request was made (dry run, field manager, propagation policy), not content.
 */
import type { EditList } from '../edits.ts';
import type { AdmissionRecord } from '../record.ts';

/** Adds the edits that remove `request.object` and `request.oldObject`. */
export function dropBodies(record: AdmissionRecord, edits: EditList): void {
  for (const field of ['object', 'oldObject'] as const) {
    const key = record.keyStart(field);
    if (key >= 0) edits.removeMember(key, record.end(field));
  }
}
