/**
 * @module Reads kube-audit-rest's audit log as it grows and finds the lines of one API call, for the
 * end-to-end suite and the demo.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** group/version/kind as an AdmissionReview carries it. */
export type GroupVersionKind = { group: string; version: string; kind: string };
/** group/version/resource as an AdmissionReview carries it. */
export type GroupVersionResource = { group: string; version: string; resource: string };

/** A Kubernetes object in a review: only `metadata` is assumed. */
export type KubeObject = {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  [field: string]: unknown;
};

/** The `request` of an AdmissionReview (v1 and v1beta1 share it). */
export type AdmissionRequest = {
  uid: string;
  kind: GroupVersionKind;
  resource: GroupVersionResource;
  subResource?: string;
  requestKind?: GroupVersionKind;
  requestResource?: GroupVersionResource;
  requestSubResource?: string;
  name?: string;
  namespace?: string;
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  userInfo: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  object: KubeObject | null;
  oldObject: KubeObject | null;
  dryRun?: boolean;
  options: KubeObject | null;
};

/** One audit line: the review plus the time kube-audit-rest received it. */
export type AuditLine = {
  kind: string;
  apiVersion: string;
  request: AdmissionRequest;
  requestReceivedTimestamp: string;
};

/** A line as read: its exact text (without `\n`) and its parsed form. */
export type AuditEntry = { readonly text: string; readonly line: AuditLine };

/** Reads appended lines on each call to `entries()`; earlier lines are parsed once. */
export type AuditLogReader = {
  /** Every line written so far, in file order. Throws if the file ends inside a line. */
  entries(): readonly AuditEntry[];
};

/** Size of each read; lines may be far longer (2 MiB and more) and are joined across reads. */
const READ_CHUNK_BYTES = 1 << 20;

/** Returns a reader of the audit log at `path` that reads only what was appended since its last call. */
export function auditLogReader(path: string): AuditLogReader {
  let offset = 0;
  const entries: AuditEntry[] = [];
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return {
    entries() {
      const fd = openSync(path, 'r');
      try {
        const size = fstatSync(fd).size;
        if (size === offset) return entries;
        const bytes = Buffer.allocUnsafe(size - offset);
        let got = 0;
        while (got < bytes.length) {
          const n = readSync(fd, bytes, got, Math.min(READ_CHUNK_BYTES, bytes.length - got), offset + got);
          if (n === 0) break;
          got += n;
        }
        const last = bytes.lastIndexOf(0x0a, got - 1);
        if (last !== got - 1) throw new Error(`${path}: ends inside a line (at byte ${offset + got})`);
        for (const text of decoder.decode(bytes.subarray(0, last)).split('\n'))
          entries.push({ text, line: JSON.parse(text) as AuditLine });
        offset += got;
        return entries;
      } finally {
        closeSync(fd);
      }
    },
  };
}

/**
 * Which lines to pick: every field must match; `subResource`, `namespace` and `name` absent mean "none" (the
 * reviews of a delete-collection call carry no name, only the old object).
 */
export type CallQuery = {
  username: string;
  operation: AdmissionRequest['operation'];
  /** API group, `''` for the core group. */
  group: string;
  resource: string;
  subResource?: string;
  namespace?: string;
  name?: string;
};

/** The entries of one API call: those whose request matches every field of `query`. */
export function linesOfCall(entries: readonly AuditEntry[], query: CallQuery): AuditEntry[] {
  return entries.filter(({ line: { request: r } }) => {
    return (
      r.userInfo.username === query.username &&
      r.operation === query.operation &&
      r.resource.group === query.group &&
      r.resource.resource === query.resource &&
      (r.subResource ?? '') === (query.subResource ?? '') &&
      (r.namespace ?? '') === (query.namespace ?? '') &&
      (r.name ?? '') === (query.name ?? '')
    );
  });
}
