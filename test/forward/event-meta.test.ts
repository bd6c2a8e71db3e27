/** @module Tests of reading auditID, cluster, object and time from Event and AdmissionReview lines. */

import { describe, expect, it } from 'bun:test';
import { parseEventMeta } from '../../src/forward/event-meta.ts';
import { bytes } from './helpers.ts';

describe('parseEventMeta', () => {
  it('reads an audit.k8s.io/v1 Event', () => {
    const line = JSON.stringify({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      auditID: 'a1',
      objectRef: { namespace: 'ns', name: 'pod-1', resource: 'pods' },
      annotations: { cluster_name: 'prod' },
      requestReceivedTimestamp: '2026-12-05T10:00:00.123456Z',
    });
    expect(parseEventMeta(bytes(line))).toEqual({
      auditID: 'a1',
      namespace: 'ns',
      name: 'pod-1',
      cluster: 'prod',
      receivedAtMs: Date.parse('2026-12-05T10:00:00.123Z'),
    });
  });

  it('reads a kube-audit-rest AdmissionReview line, with a nanosecond timestamp', () => {
    const line = JSON.stringify({
      kind: 'AdmissionReview',
      apiVersion: 'admission.k8s.io/v1',
      request: { uid: 'u1', namespace: 'kube-system', name: 'cm' },
      requestReceivedTimestamp: '2026-12-05T10:00:00.123456789Z',
    });
    expect(parseEventMeta(bytes(line))).toEqual({
      auditID: 'u1',
      namespace: 'kube-system',
      name: 'cm',
      receivedAtMs: Date.parse('2026-12-05T10:00:00.123Z'),
    });
  });

  it('returns undefined for a line that is not a JSON object', () => {
    expect(parseEventMeta(bytes('not json'))).toBeUndefined();
    expect(parseEventMeta(bytes('[1,2]'))).toBeUndefined();
    expect(parseEventMeta(bytes('{"auditID":5}'))).toEqual({});
  });
});
