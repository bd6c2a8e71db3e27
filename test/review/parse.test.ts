import { describe, expect, it } from 'bun:test';
import type { AdmissionRecord } from '../../src/audit/record.ts';
import { MAX_DEPTH } from '../../src/review/json-scan.ts';
import { type InvalidReason, parseReview } from '../../src/review/parse.ts';
import { forEachSeed, referenceCompactText, reviewCase, show } from '../helpers/json-gen.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const V1 = 'admission.k8s.io/v1';
const V1BETA1 = 'admission.k8s.io/v1beta1';

/** A compact review body around a request object text. */
function body(request: string, apiVersion = V1): string {
  return `{"kind":"AdmissionReview","apiVersion":"${apiVersion}","request":${request}}`;
}

function accepted(text: string): AdmissionRecord {
  const result = parseReview(encoder.encode(text));
  if (!result.ok)
    throw new Error(`expected a review for ${show(text)}, got ${result.reason}: ${result.message}`);
  return result.record;
}

/** The text of a top-level value, or undefined when absent. */
function rootText(record: AdmissionRecord, field: 'requestReceivedTimestamp' | 'kind'): string | undefined {
  const start = record.rootStart(field);
  return start < 0 ? undefined : decoder.decode(record.bytes.subarray(start, record.rootEnd(field)));
}

function refusal(text: string | Uint8Array): InvalidReason | 'ok' {
  const result = parseReview(typeof text === 'string' ? encoder.encode(text) : text);
  return result.ok ? 'ok' : result.reason;
}

/** Asserts that every text is refused with `reason`. */
function expectRefused(reason: InvalidReason, texts: readonly string[]): void {
  for (const text of texts) expect([text, refusal(text)]).toEqual([text, reason]);
}

describe('parseReview', () => {
  it('accepts a v1 review and returns the compact body, version, uid token and no timestamp', () => {
    const review = accepted(
      ' {\n  "kind": "AdmissionReview",\n  "apiVersion": "admission.k8s.io/v1",\n  "request": {"uid": "705ab4f5", "operation": "CREATE"}\n}\n',
    );
    expect(decoder.decode(review.bytes)).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5","operation":"CREATE"}}',
    );
    expect(review.apiVersion).toBe(V1);
    expect(decoder.decode(review.uidToken)).toBe('"705ab4f5"');
    expect(rootText(review, 'requestReceivedTimestamp')).toBeUndefined();
    expect(review.operation).toBe('CREATE');
  });

  it('accepts a v1beta1 review', () => {
    const review = accepted(body('{"uid":"u-1"}', V1BETA1));
    expect(review.apiVersion).toBe(V1BETA1);
    expect(decoder.decode(review.uidToken)).toBe('"u-1"');
  });

  it('reports the span of an existing requestReceivedTimestamp of any type', () => {
    for (const value of ['"2024-01-01T00:00:00Z"', '12', 'null', '{"a":[1]}']) {
      const review = accepted(`{"requestReceivedTimestamp":${value},${body('{"uid":"u"}').slice(1)}`);
      expect(rootText(review, 'requestReceivedTimestamp')).toBe(value);
    }
  });

  it('accepts kind, apiVersion and uid spelled with escapes, keys included', () => {
    const review = accepted(
      '{"\\u006bind":"Admission\\u0052eview","apiVersion":"admission.k8s.io\\/v1beta1","\\u0072equest":{"\\u0075id":"\\u0061"}}',
    );
    expect(review.apiVersion).toBe(V1BETA1);
    expect(decoder.decode(review.uidToken)).toBe('"\\u0061"');
  });

  it('passes the scanner reason through when the body is not valid JSON', () => {
    expect(refusal('')).toBe('empty');
    expect(refusal('{"kind":')).toBe('syntax');
    expect(refusal(`${body('{"uid":"u"}')} x`)).toBe('trailing_data');
    expect(
      refusal(Uint8Array.from([...encoder.encode(body('{"uid":"')), 0xc0, 0x80, ...encoder.encode('"}}')])),
    ).toBe('invalid_utf8');
    expect(refusal(`{"kind":${'['.repeat(MAX_DEPTH)}${']'.repeat(MAX_DEPTH)}}`)).toBe('too_deep');
  });

  it('refuses any field it reads given twice, however spelled, naming it', () => {
    for (const [text, field] of [
      ['{"kind":"a","kind":"a"}', 'kind'],
      ['{"kind":"a","\\u006bind":"b"}', 'kind'],
      ['{"apiVersion":1,"x":2,"apiVersion":1}', 'apiVersion'],
      ['{"request":{},"request":{}}', 'request'],
      ['{"request":1,"request":{"uid":"u"}}', 'request'],
      ['{"requestReceivedTimestamp":1,"requestReceivedTimestamp":2}', 'requestReceivedTimestamp'],
      [body('{"uid":"a","uid":"b"}'), 'request.uid'],
      [body('{"uid":"a","x":{"y":1},"\\u0075id":"a"}'), 'request.uid'],
      [body('{"uid":"a","operation":"CREATE","operation":"DELETE"}'), 'request.operation'],
      [body('{"uid":"a","object":{},"object":{}}'), 'request.object'],
      [body('{"uid":"a","userInfo":{"username":"x"},"userInfo":{"username":"y"}}'), 'request.userInfo'],
    ] as const) {
      const result = parseReview(encoder.encode(text));
      expect([text, result.ok ? 'ok' : result.message]).toEqual([text, `duplicate key "${field}"`]);
    }
  });

  it('accepts repeats of keys it does not read, and read names repeated in other objects', () => {
    for (const text of [
      body('{"uid":"u","a":1,"a":2}'),
      `{"uid":1,"uid":2,${body('{"uid":"u"}').slice(1)}`,
      body('{"uid":"u","object":{"uid":"v","uid":"w","metadata":{"name":"a","name":"b"}}}'),
      body('{"uid":"u","x":{"kind":1,"kind":2}}'),
    ]) {
      expect([text, refusal(text)]).toEqual([text, 'ok']);
    }
  });

  it('reads request fields only directly inside the top-level request object', () => {
    const nested = accepted(
      body('{"object":{"uid":"c","operation":"X"},"l":[{"uid":"d"}],"uid":"late"}').replace(
        '{"kind"',
        '{"uid":"a","metadata":{"uid":"b"},"kind"',
      ),
    );
    expect(nested.uid).toBe('late');
    expect(nested.operation).toBe('');
  });

  it('decodes fields lazily and reads a field of the wrong type as absent', () => {
    const review = accepted(
      body(
        '{"uid":"u\\u00e9","operation":7,"userInfo":"bob","name":"n\\"q","namespace":null,"kind":{"group":"","kind":"Pod"},"dryRun":true}',
      ),
    );
    expect(review.uid).toBe('u\u00e9');
    expect(review.operation).toBe('');
    expect(review.userInfo).toEqual({});
    expect(review.name).toBe('n"q');
    expect(review.namespace).toBeUndefined();
    expect(review.kind).toEqual({ group: '', kind: 'Pod' });
    expect(review.dryRun).toBe(true);
    expect(review.present('object')).toBe(false);
  });

  it('refuses a body that is not an object as not_object', () => {
    expectRefused('not_object', [
      '[]',
      '[{"kind":"AdmissionReview"}]',
      '"AdmissionReview"',
      '1',
      'null',
      'true',
    ]);
  });

  it('refuses a missing, misspelled or non-string kind as wrong_kind', () => {
    expectRefused('wrong_kind', [
      `{"apiVersion":"${V1}","request":{"uid":"u"}}`,
      body('{"uid":"u"}').replace('AdmissionReview', 'admissionreview'),
      body('{"uid":"u"}').replace('AdmissionReview', 'AdmissionReview '),
      body('{"uid":"u"}').replace('AdmissionReview', 'AdmissionRequest'),
      body('{"uid":"u"}').replace('"AdmissionReview"', '1'),
      body('{"uid":"u"}').replace('"AdmissionReview"', 'null'),
      body('{"uid":"u"}').replace('"AdmissionReview"', '["AdmissionReview"]'),
      body('{"uid":"u"}').replace('"AdmissionReview"', '{"kind":"AdmissionReview"}'),
      '{"request":{"kind":"AdmissionReview","uid":"u"}}',
    ]);
  });

  it('keeps a leading byte order mark in kind and apiVersion, so they do not match', () => {
    // TextDecoder strips a leading U+FEFF by default; these values must not be read as the real ones.
    expect(refusal(body('{"uid":"u"}').replace('"AdmissionReview"', '"\ufeffAdmissionReview"'))).toBe(
      'wrong_kind',
    );
    expect(refusal(body('{"uid":"u"}', `\ufeff${V1}`))).toBe('wrong_api_version');
    expect(decoder.decode(accepted(body('{"uid":"\ufeff"}')).uidToken)).toBe('"\ufeff"');
  });

  it('refuses a missing, unknown or non-string apiVersion as wrong_api_version', () => {
    expectRefused('wrong_api_version', [
      '{"kind":"AdmissionReview","request":{"uid":"u"}}',
      body('{"uid":"u"}', 'admission.k8s.io/v2'),
      body('{"uid":"u"}', 'v1'),
      body('{"uid":"u"}', 'admission.k8s.io/V1'),
      body('{"uid":"u"}', 'admission.k8s.io/v1 '),
      body('{"uid":"u"}', ''),
      body('{"uid":"u"}').replace(`"${V1}"`, '1'),
      body('{"uid":"u"}').replace(`"${V1}"`, 'null'),
      body('{"uid":"u"}').replace(`"${V1}"`, `["${V1}"]`),
    ]);
  });

  it('refuses a missing request, or one that is not an object, as missing_request', () => {
    expectRefused('missing_request', [
      `{"kind":"AdmissionReview","apiVersion":"${V1}"}`,
      `{"kind":"AdmissionReview","apiVersion":"${V1}","response":{"uid":"u"}}`,
      body('null'),
      body('[]'),
      body('[{"uid":"u"}]'),
      body('"u"'),
      body('1'),
      body('true'),
      `{"kind":"AdmissionReview","apiVersion":"${V1}","metadata":{"request":{"uid":"u"}}}`,
    ]);
  });

  it('refuses a request without a uid of its own as missing_uid', () => {
    expectRefused('missing_uid', [
      body('{}'),
      body('{"operation":"CREATE"}'),
      body('{"object":{"metadata":{"uid":"u"}}}'),
      body('{"UID":"u","uid ":"v"}'),
      `{"uid":"u",${body('{}').slice(1)}`,
    ]);
  });

  it('refuses a uid that is not a non-empty string as invalid_uid', () => {
    expectRefused('invalid_uid', [
      body('{"uid":123}'),
      body('{"uid":null}'),
      body('{"uid":""}'),
      body('{"uid":true}'),
      body('{"uid":{}}'),
      body('{"uid":["u"]}'),
    ]);
  });

  it('gives every refusal a message', () => {
    const result = parseReview(encoder.encode(body('{"uid":""}')));
    expect(result.ok ? '' : result.message).toBe('request.uid must not be empty');
    const number = parseReview(encoder.encode(body('{"uid":1}')));
    expect(number.ok ? '' : number.message).toBe('request.uid must be a string');
  });

  it('accepts every generated valid review, whatever the key order, whitespace and decoys', () => {
    forEachSeed(50_000, 1_000, (rng) => {
      const c = reviewCase(rng);
      const review = accepted(c.text);
      expect(decoder.decode(review.bytes)).toBe(referenceCompactText(c.text));
      expect(decoder.decode(review.uidToken)).toBe(c.uid ?? '');
      expect<string>(review.apiVersion).toBe(JSON.parse(c.apiVersion ?? '""') as string);
    });
  });
});
