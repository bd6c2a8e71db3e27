/**
 * @module omitManagedFields: `metadata.managedFields` left out of the object and the old object.
 *
 * managedFields is server-side apply's bookkeeping (which manager set which field): often half of
 * an object's bytes, and no content. The policy's omitManagedFields drops it, as the API server does.
 */

import { findMember, skipValue } from '../../review/navigate.ts';
import type { EditList } from '../edits.ts';
import type { AdmissionRecord } from '../record.ts';

const encoder = new TextEncoder();
const METADATA = encoder.encode('"metadata"');
const MANAGED_FIELDS = encoder.encode('"managedFields"');

/** Adds the edits that remove `metadata.managedFields` from `request.object` and `request.oldObject`. */
export function dropManagedFields(record: AdmissionRecord, edits: EditList): void {
  const bytes = record.bytes;
  for (const field of ['object', 'oldObject'] as const) {
    if (!record.isObject(field)) continue;
    const metadata = findMember(bytes, record.start(field), METADATA);
    if (metadata === undefined) continue;
    const managed = findMember(bytes, metadata.valueStart, MANAGED_FIELDS);
    if (managed !== undefined) edits.removeMember(managed.keyStart, skipValue(bytes, managed.valueStart));
  }
}
