import { describe, expect, it } from 'bun:test';
import { EditList } from '../../../src/audit/edits.ts';
import { encodeAdmissionReview, lineBytes } from '../../../src/audit/encode/admission-review.ts';
import type { AdmissionRecord } from '../../../src/audit/record.ts';
import { dropBodies } from '../../../src/audit/transforms/level.ts';
import { parseReview } from '../../../src/review/parse.ts';
import { forEachSeed, type Rng, referenceFields, reviewCase, show } from '../../helpers/json-gen.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TS = '2024-05-06T07:08:09.123456789Z';

function review(text: string): AdmissionRecord {
  const result = parseReview(encoder.encode(text));
  if (!result.ok)
    throw new Error(`expected a review for ${show(text)}, got ${result.reason}: ${result.message}`);
  return result.record;
}

/** The line for `text` stamped with `ts`, as a string. */
function line(
  text: string,
  ts = TS,
  cluster?: string,
  edits?: (r: AdmissionRecord, e: EditList) => void,
): string {
  const r = review(text);
  let list: EditList | undefined;
  if (edits !== undefined) {
    list = new EditList();
    edits(r, list);
  }
  const clusterToken = cluster === undefined ? undefined : encoder.encode(JSON.stringify(cluster));
  return decoder.decode(lineBytes(encodeAdmissionReview(r, list, { timestamp: ts, clusterToken })));
}

/** An RFC 3339 UTC timestamp with 0 to 9 fraction digits, as formatRfc3339Nano may produce. */
function timestamp(rng: Rng): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const digits = rng.int(10);
  let fraction = '';
  for (let k = 0; k < digits; k++) fraction += String(rng.int(10));
  const date = `${1970 + rng.int(200)}-${two(1 + rng.int(12))}-${two(1 + rng.int(28))}`;
  const time = `${two(rng.int(24))}:${two(rng.int(60))}:${two(rng.int(60))}`;
  return `${date}T${time}${digits ? `.${fraction}` : ''}Z`;
}

describe('encodeAdmissionReview', () => {
  it('appends requestReceivedTimestamp as the last key and a newline when the body has none', () => {
    expect(
      line(
        '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"a":1}}}',
      ),
    ).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"a":1}},"requestReceivedTimestamp":"2024-05-06T07:08:09.123456789Z"}\n',
    );
  });

  it('writes the compacted body, not the whitespace the request came with', () => {
    expect(
      line(
        ' {\n\t"request" : { "uid" : "a b" , "x" : [ 1 , { } ] } ,\r\n "apiVersion":"admission.k8s.io/v1beta1", "kind":"AdmissionReview" }\n',
        '2024-01-01T00:00:00Z',
      ),
    ).toBe(
      '{"request":{"uid":"a b","x":[1,{}]},"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","requestReceivedTimestamp":"2024-01-01T00:00:00Z"}\n',
    );
  });

  it('keeps integer-like keys, escapes and number spellings byte for byte', () => {
    expect(
      line(
        '{"1":1,"0":-0,"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"\\u00e9\\/","n":12345678901234567890,"e":1E+5}}',
      ),
    ).toBe(
      '{"1":1,"0":-0,"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"\\u00e9\\/","n":12345678901234567890,"e":1E+5},"requestReceivedTimestamp":"2024-05-06T07:08:09.123456789Z"}\n',
    );
  });

  it('replaces an existing string value in place, first, middle or last', () => {
    const rest = '"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}';
    expect(line(`{"requestReceivedTimestamp":"old",${rest}}`)).toBe(
      `{"requestReceivedTimestamp":"${TS}",${rest}}\n`,
    );
    expect(
      line(
        '{"kind":"AdmissionReview","requestReceivedTimestamp":"","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}',
      ),
    ).toBe(
      '{"kind":"AdmissionReview","requestReceivedTimestamp":"2024-05-06T07:08:09.123456789Z","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}\n',
    );
    expect(
      line(`{${rest},"requestReceivedTimestamp":"a much longer old value than the new one, really"}`),
    ).toBe(`{${rest},"requestReceivedTimestamp":"${TS}"}\n`);
  });

  it('replaces an existing value of any type with the string, keeping the key where it was', () => {
    const head = '{"kind":"AdmissionReview","requestReceivedTimestamp":';
    const tail = ',"apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}';
    for (const value of [
      '0',
      '-1.5e+3',
      'null',
      'true',
      'false',
      '[]',
      '[1,"a"]',
      '{}',
      '{ "a" : { "b" : [ ] } }',
    ]) {
      expect([value, line(`${head}${value}${tail}`)]).toEqual([value, `${head}"${TS}"${tail}\n`]);
    }
  });

  it('replaces the value of a key spelled with escapes and keeps the spelling', () => {
    expect(
      line(
        '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","requestReceived\\u0054imestamp":1,"request":{"uid":"u"}}',
      ),
    ).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","requestReceived\\u0054imestamp":"2024-05-06T07:08:09.123456789Z","request":{"uid":"u"}}\n',
    );
  });

  it('leaves requestReceivedTimestamp keys inside nested objects alone and appends the top-level one', () => {
    const body =
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","requestReceivedTimestamp":1}}';
    expect(line(body)).toBe(`${body.slice(0, -1)},"requestReceivedTimestamp":"${TS}"}\n`);
  });

  it('stamps every generated review and changes nothing else', () => {
    forEachSeed(70_000, 1_500, (rng) => {
      const c = reviewCase(rng);
      const r = review(c.text);
      const ts = timestamp(rng);
      const out = lineBytes(encodeAdmissionReview(r, undefined, { timestamp: ts, clusterToken: undefined }));
      const text = decoder.decode(out);

      // One line: a single newline, at the end.
      expect(text.indexOf('\n')).toBe(text.length - 1);
      const json = out.subarray(0, -1);

      // The value: requestReceivedTimestamp is ts; with the old value restored (or the key removed)
      // the rest is the body, key order included.
      const stamped = JSON.parse(text) as Record<string, unknown>;
      const body = JSON.parse(decoder.decode(r.bytes)) as Record<string, unknown>;
      expect(stamped.requestReceivedTimestamp).toBe(ts);
      if (c.timestamp === undefined) {
        expect(Object.keys(stamped)).toEqual([...Object.keys(body), 'requestReceivedTimestamp']);
        delete stamped.requestReceivedTimestamp;
      } else {
        expect(Object.keys(stamped)).toEqual(Object.keys(body));
        stamped.requestReceivedTimestamp = JSON.parse(c.timestamp) as unknown;
      }
      expect(stamped).toEqual(body);

      // The bytes: found independently, the stamped token is "ts"; putting the old token back (or
      // taking the appended member off) gives the compact body exactly.
      const span = referenceFields(json).timestamp;
      if (span === undefined) throw new Error('no requestReceivedTimestamp in the line');
      const before = decoder.decode(json.subarray(0, span.start));
      expect(decoder.decode(json.subarray(span.start, span.end))).toBe(`"${ts}"`);
      const after = decoder.decode(json.subarray(span.end));
      if (c.timestamp === undefined) expect(before.endsWith(',"requestReceivedTimestamp":')).toBe(true);
      const restored =
        c.timestamp === undefined
          ? `${before.slice(0, -',"requestReceivedTimestamp":'.length)}${after}`
          : `${before}${c.timestamp}${after}`;
      expect(restored).toBe(decoder.decode(r.bytes));
      if (c.timestamp === undefined) expect(after).toBe('}');
    });
  });

  it('adds clusterName just before the timestamp, or replaces the value of one the body has', () => {
    const body = '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}';
    expect(line(body, TS, 'prod "eu"')).toBe(
      `${body.slice(0, -1)},"clusterName":"prod \\"eu\\"","requestReceivedTimestamp":"${TS}"}\n`,
    );
    const withOld = `{"clusterName":7,"requestReceivedTimestamp":"x",${body.slice(1)}`;
    expect(line(withOld, TS, 'c')).toBe(
      `{"clusterName":"c","requestReceivedTimestamp":"${TS}",${body.slice(1)}\n`,
    );
  });

  it('applies the edits with the timestamp: level Metadata removes object and oldObject whole', () => {
    const body =
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"a":1},"oldObject":{"b":2},"dryRun":false}}';
    expect(line(body, TS, undefined, dropBodies)).toBe(
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","dryRun":false},"requestReceivedTimestamp":"${TS}"}\n`,
    );
    const last =
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":null,"oldObject":{"b":2}}}';
    expect(line(last, TS, undefined, dropBodies)).toBe(
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"},"requestReceivedTimestamp":"${TS}"}\n`,
    );
  });
});
