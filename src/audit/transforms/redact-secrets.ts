/**
 * @module Secret redaction: every value of a Secret's `data` and `stringData`, and its
 * `kubectl.kubernetes.io/last-applied-configuration` annotation, replaced by a keyed hash.
 *
 * The marker is `"redacted:hmac-sha256:<base64url>"`, an HMAC-SHA256 of the value under a key the
 * operator provides (or one made at start). Equal values give equal markers, so a change of value
 * stays visible and a rotation can be told from a no-op, while the value does not reach the disk.
 * A plain hash would not do: a short password is found again by hashing guesses.
 *
 * `data` values are hashed as the bytes they encode (base64-decoded) and `stringData` values as
 * their UTF-8 bytes, so the same secret written either way (the API server moves stringData into
 * data) gives the same marker. Keys are kept. Applies to the object and the old object, on every
 * operation and version; anything else in the review (a ConfigMap, a Pod's env, exec arguments, a
 * custom resource) is not a Secret and is written as it came (see the README).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { eachMember, findMember, skipValue } from '../../review/navigate.ts';
import type { EditList } from '../edits.ts';
import type { AdmissionRecord } from '../record.ts';

/** What the marker starts with; the rest is the base64url HMAC. */
export const REDACTED_PREFIX = 'redacted:hmac-sha256:';

/** Length of a key made at start: as long as the hash, the most HMAC-SHA256 makes use of. */
const RANDOM_KEY_BYTES = 32;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SECRET_TOKEN = encoder.encode('"Secret"');
const SECRETS_TOKEN = encoder.encode('"secrets"');
const DATA = encoder.encode('"data"');
const STRING_DATA = encoder.encode('"stringData"');
const METADATA = encoder.encode('"metadata"');
const ANNOTATIONS = encoder.encode('"annotations"');
const LAST_APPLIED = encoder.encode('"kubectl.kubernetes.io/last-applied-configuration"');
const QUOTE = 0x22;
const LBRACE = 0x7b;
const BACKSLASH = 0x5c;

/** Options for {@link createSecretRedactor}. */
export type RedactorOptions = {
  /** HMAC key. Default: 32 random bytes made now, so markers compare equal within this process only. */
  key?: Uint8Array;
};

/** Adds the edits that redact a Secret in the record; does nothing for anything else. */
export type Redactor = (record: AdmissionRecord, edits: EditList) => void;

/**
 * Whether the bytes `[start, end)` contain `token`. Searches for the token's second byte (its first
 * is a quote, of which JSON has many) and compares around each hit.
 */
function contains(bytes: Uint8Array, start: number, end: number, token: Uint8Array): boolean {
  if (start < 0) return false;
  const second = token[1] as number;
  for (
    let i = bytes.indexOf(second, start + 1);
    i >= 0 && i - 1 + token.length <= end;
    i = bytes.indexOf(second, i + 1)
  ) {
    if (equalsToken(bytes, i - 1, i - 1 + token.length, token)) return true;
  }
  return false;
}

/** `request.kind` of a Secret exactly as the API server writes it. */
const SECRET_KIND = encoder.encode('{"group":"","version":"v1","kind":"Secret"}');

/**
 * Whether the review is about a core Secret. The API server writes a Secret's `kind` always the same
 * way, so one comparison settles the usual case; anything else is decoded only when its `kind` or
 * resource mentions a Secret at all, so redaction, on by default, costs the other requests almost
 * nothing.
 */
export function isSecret(record: AdmissionRecord): boolean {
  const bytes = record.bytes;
  const ks = record.start('kind');
  if (ks >= 0) {
    // The API server always names the object's kind: it settles the question.
    const ke = record.end('kind');
    if (equalsToken(bytes, ks, ke, SECRET_KIND)) return true;
    if (!contains(bytes, ks, ke, SECRET_TOKEN) && !bytes.subarray(ks, ke).includes(BACKSLASH)) return false;
    const kind = record.kind;
    return kind?.kind === 'Secret' && (kind.group ?? '') === '';
  }
  for (const field of ['requestResource', 'resource'] as const) {
    if (!contains(bytes, record.start(field), record.end(field), SECRETS_TOKEN)) continue;
    const r = field === 'resource' ? record.resource : record.requestResource;
    if (r?.resource === 'secrets' && (r.group ?? '') === '') return true;
  }
  return false;
}

/** Decodes a JSON string token; undefined when the token is not a string. */
function stringToken(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (bytes[start] !== QUOTE) return undefined;
  const token = bytes.subarray(start, end);
  return token.includes(BACKSLASH)
    ? (JSON.parse(decoder.decode(token)) as string)
    : decoder.decode(token.subarray(1, -1));
}

/** Creates a redactor with its key; see the module comment for what it changes. */
export function createSecretRedactor(options: RedactorOptions = {}): Redactor {
  const key = options.key ?? randomBytes(RANDOM_KEY_BYTES);

  function marker(value: Uint8Array | string): Uint8Array {
    const mac = createHmac('sha256', key).update(value).digest('base64url');
    return encoder.encode(`"${REDACTED_PREFIX}${mac}"`);
  }

  /** The marker for a value token: strings by their content, anything else by its JSON text. */
  function markValue(bytes: Uint8Array, start: number, end: number, base64: boolean): Uint8Array {
    const text = stringToken(bytes, start, end);
    if (text === undefined) return marker(bytes.subarray(start, end));
    if (base64) {
      const decoded = Buffer.from(text, 'base64');
      // Buffer skips what is not base64; hash the text itself unless it round-trips.
      if (decoded.toString('base64') === text) return marker(decoded);
    }
    return marker(text);
  }

  /** Redacts every value of the map at `[start, end)`, or the whole value when it is not an object. */
  function redactMap(bytes: Uint8Array, start: number, end: number, base64: boolean, edits: EditList): void {
    if (bytes[start] !== LBRACE) {
      if (bytes[start] !== 0x6e /* null */) edits.replace(start, end, markValue(bytes, start, end, base64));
      return;
    }
    eachMember(bytes, start, (m) => {
      edits.replace(m.valueStart, m.valueEnd, markValue(bytes, m.valueStart, m.valueEnd, base64));
      return false;
    });
  }

  function redactObject(bytes: Uint8Array, start: number, edits: EditList): void {
    // Every data and stringData member, should the object repeat one.
    eachMember(bytes, start, (m) => {
      const isData = equalsToken(bytes, m.keyStart, m.keyEnd, DATA);
      if (isData || equalsToken(bytes, m.keyStart, m.keyEnd, STRING_DATA)) {
        redactMap(bytes, m.valueStart, m.valueEnd, isData, edits);
      } else if (equalsToken(bytes, m.keyStart, m.keyEnd, METADATA)) {
        const annotations = findMember(bytes, m.valueStart, ANNOTATIONS);
        if (annotations === undefined) return false;
        const applied = findMember(bytes, annotations.valueStart, LAST_APPLIED);
        if (applied !== undefined) {
          const end = skipValue(bytes, applied.valueStart);
          edits.replace(applied.valueStart, end, markValue(bytes, applied.valueStart, end, false));
        }
      }
      return false;
    });
  }

  return function redactSecrets(record, edits) {
    if (!isSecret(record)) return;
    for (const field of ['object', 'oldObject'] as const) {
      if (record.isObject(field)) redactObject(record.bytes, record.start(field), edits);
    }
  };
}

function equalsToken(bytes: Uint8Array, start: number, end: number, token: Uint8Array): boolean {
  if (end - start !== token.length) return false;
  for (let k = 0; k < token.length; k++) if (bytes[start + k] !== token[k]) return false;
  return true;
}
