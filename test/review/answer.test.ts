import { describe, expect, it } from 'bun:test';
import type { AdmissionRecord } from '../../src/audit/record.ts';
import { allowedAnswer, deniedAnswer, JOIN_KEY } from '../../src/review/answer.ts';
import { parseReview } from '../../src/review/parse.ts';
import { forEachSeed, reviewCase } from '../helpers/json-gen.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const V1 = 'admission.k8s.io/v1';
const V1BETA1 = 'admission.k8s.io/v1beta1';

function body(request: string, apiVersion = V1): string {
  return `{"kind":"AdmissionReview","apiVersion":"${apiVersion}","request":${request}}`;
}

function accepted(text: string): AdmissionRecord {
  const result = parseReview(encoder.encode(text));
  if (!result.ok) throw new Error(`expected a review, got ${result.reason}: ${result.message}`);
  return result.record;
}

describe('allowedAnswer', () => {
  const head = (v: string): string => `{"kind":"AdmissionReview","apiVersion":"${v}","response":{"uid":`;
  const tail = (uid: string): string => `,"allowed":true,"auditAnnotations":{"${JOIN_KEY}":${uid}}}}`;

  it('answers a v1 review with a v1 allowed response carrying the uid', () => {
    expect(
      decoder.decode(allowedAnswer(accepted(body('{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}')))),
    ).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"auditAnnotations":{"request-uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}}}',
    );
  });

  it('answers a v1beta1 review with a v1beta1 allowed response', () => {
    expect(decoder.decode(allowedAnswer(accepted(body('{"uid":"u"}', V1BETA1))))).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":"u","allowed":true,"auditAnnotations":{"request-uid":"u"}}}',
    );
  });

  it('copies the uid token verbatim, escapes and all, and the answer parses to the same uid', () => {
    const uids = [
      '"a\\"b"',
      '"back\\\\slash"',
      '"\\\\\\""',
      '"ü中😀"',
      '"\\u00e9\\u00E9"',
      '"\\ud83d\\ude00"',
      '"\\ud800"',
      '"\\udfff\\ud800"',
      '"x\\/y\\b\\f\\n\\r\\t"',
      '"\\u0000"',
      '"\u007f"',
    ];
    for (const uid of uids) {
      for (const version of [V1, V1BETA1]) {
        const answer = allowedAnswer(
          accepted(body(` { "operation" : "DELETE" , "uid" :\t${uid} } `, version)),
        );
        expect(decoder.decode(answer)).toBe(`${head(version)}${uid}${tail(uid)}`);
        const token = encoder.encode(uid);
        const at = encoder.encode(head(version)).length;
        expect(answer.subarray(at, at + token.length)).toEqual(token);
        const parsed = JSON.parse(decoder.decode(answer)) as {
          response: { uid: string; allowed: boolean; auditAnnotations: Record<string, string> };
        };
        expect(parsed.response.uid).toBe(JSON.parse(uid) as string);
        expect(parsed.response.auditAnnotations[JOIN_KEY]).toBe(JSON.parse(uid) as string);
        expect(parsed.response.allowed).toBe(true);
      }
    }
  });

  it('answers every generated review with valid JSON echoing its uid', () => {
    forEachSeed(60_000, 1_000, (rng) => {
      const c = reviewCase(rng);
      const review = accepted(c.text);
      const answer = JSON.parse(decoder.decode(allowedAnswer(review))) as {
        kind: string;
        apiVersion: string;
        response: { uid: string; allowed: boolean; auditAnnotations: Record<string, string> };
      };
      const uid = JSON.parse(c.uid ?? '') as string;
      expect(answer).toEqual({
        kind: 'AdmissionReview',
        apiVersion: review.apiVersion,
        response: { uid, allowed: true, auditAnnotations: { [JOIN_KEY]: uid } },
      });
    });
  });
});

describe('deniedAnswer', () => {
  it('answers allowed: false with a 500 status whose message says why, and the join key', () => {
    for (const version of [V1, V1BETA1]) {
      const text = decoder.decode(deniedAnswer(accepted(body('{"uid":"u\\"1"}', version)), 'disk "full"'));
      expect(JSON.parse(text)).toEqual({
        kind: 'AdmissionReview',
        apiVersion: version,
        response: {
          uid: 'u"1',
          allowed: false,
          auditAnnotations: { [JOIN_KEY]: 'u"1' },
          status: { code: 500, message: 'disk "full"' },
        },
      });
    }
  });
});
