/**
 * @module DER (ITU-T X.690) for the few ASN.1 types an X.509 certificate is made of: a writer that builds
 * type-length-value triples, and a reader that walks them far enough to pick a field out of a certificate.
 */

/** Universal tags used here (X.680 §8.4). */
const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  oid: 0x06,
  utf8String: 0x0c,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Bit 6 of a tag marks a constructed encoding; bits 7-8 set to 10 mark the context-specific class. */
const CONSTRUCTED = 0x20;
const CONTEXT = 0x80;

/** Lengths below 128 fit the short form, one byte (X.690 §8.1.3.4). */
const SHORT_LENGTH_LIMIT = 0x80;

/** Encodes a length in the short or the long form (X.690 §8.1.3). */
function encodeLength(length: number): Uint8Array {
  if (length < SHORT_LENGTH_LIMIT) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** Joins byte arrays. */
function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** One element: tag, length, contents. */
export function tlv(tag: number, contents: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(tag), encodeLength(contents.length), contents]);
}

/** SEQUENCE of the given encoded elements, in order. */
export function sequence(...elements: Uint8Array[]): Uint8Array {
  return tlv(TAG.sequence, concat(elements));
}

/** SET of one or more encoded elements; callers pass one (a relative distinguished name of one attribute). */
export function set(...elements: Uint8Array[]): Uint8Array {
  return tlv(TAG.set, concat(elements));
}

/** BOOLEAN; DER writes TRUE as 0xFF (X.690 §11.1). */
export function boolean(value: boolean): Uint8Array {
  return tlv(TAG.boolean, Uint8Array.of(value ? 0xff : 0x00));
}

/**
 * INTEGER from an unsigned big-endian magnitude: leading zero bytes dropped, one put back when the top bit
 * is set so the value stays positive (X.690 §8.3.2).
 */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const padded = (trimmed[0] ?? 0) & 0x80 ? concat([Uint8Array.of(0), trimmed]) : trimmed;
  return tlv(TAG.integer, padded.length === 0 ? Uint8Array.of(0) : padded);
}

/** INTEGER from a small non-negative whole number. */
export function smallInteger(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`DER integer: ${value} is not a whole number ≥ 0`);
  const bytes: number[] = [];
  for (let rest = value; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return unsignedInteger(Uint8Array.from(bytes));
}

/** OBJECT IDENTIFIER from dotted text, e.g. `2.5.29.17` (X.690 §8.19). */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map(Number);
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || arcs.some((a) => !Number.isSafeInteger(a) || a < 0))
    throw new RangeError(`DER object identifier: "${dotted}" is not dotted whole numbers`);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128: number[] = [arc % 128];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v % 128));
    bytes.push(...base128);
  }
  return tlv(TAG.oid, Uint8Array.from(bytes));
}

/** BIT STRING holding whole bytes (a public key, a signature): no unused bits. */
export function bitString(bytes: Uint8Array): Uint8Array {
  return tlv(TAG.bitString, concat([Uint8Array.of(0), bytes]));
}

/**
 * BIT STRING of named bits, such as KeyUsage, given the numbers of the bits that are set (bit 0 is the
 * first). DER drops trailing zero bits and counts them in the first byte (X.690 §11.2.2).
 */
export function namedBits(bits: readonly number[]): Uint8Array {
  const highest = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] = (bytes[bit >> 3] as number) | (0x80 >> (bit & 7));
  const unused = 7 - (highest % 8);
  return tlv(TAG.bitString, concat([Uint8Array.of(unused), bytes]));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(TAG.octetString, bytes);
}

/** UTF8String. */
export function utf8String(text: string): Uint8Array {
  return tlv(TAG.utf8String, new TextEncoder().encode(text));
}

/** UTCTime covers 1950-2049; RFC 5280 §4.1.2.5 asks for it there and for GeneralizedTime from 2050. */
const UTC_TIME_YEARS = { from: 1950, until: 2050 } as const;

/** A certificate time (RFC 5280 §4.1.2.5): UTCTime or GeneralizedTime by year, whole seconds, `Z`. */
export function time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  const two = (n: number) => String(n).padStart(2, '0');
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds());
  const encoder = new TextEncoder();
  if (year >= UTC_TIME_YEARS.from && year < UTC_TIME_YEARS.until)
    return tlv(TAG.utcTime, encoder.encode(`${two(year % 100)}${rest}Z`));
  return tlv(TAG.generalizedTime, encoder.encode(`${String(year).padStart(4, '0')}${rest}Z`));
}

/** `[n] EXPLICIT`: a context-specific constructed element wrapping one encoded element. */
export function explicit(n: number, element: Uint8Array): Uint8Array {
  return tlv(CONTEXT | CONSTRUCTED | n, element);
}

/** `[n] IMPLICIT` of a primitive type: the contents with a context-specific tag in place of the type's own. */
export function implicit(n: number, contents: Uint8Array): Uint8Array {
  return tlv(CONTEXT | n, contents);
}

/** One element found by {@link readElement}: its tag and where its contents lie in the buffer. */
export type DerElement = {
  readonly tag: number;
  /** Offset of the first byte of the element (its tag). */
  readonly start: number;
  /** Offset of the first byte of its contents. */
  readonly contentStart: number;
  /** Offset just past its contents (and so past the element). */
  readonly end: number;
};

/** Reads the element that starts at `offset`; throws on a truncated or indefinite-length encoding. */
export function readElement(der: Uint8Array, offset: number): DerElement {
  const tag = der[offset];
  const first = der[offset + 1];
  if (tag === undefined || first === undefined) throw new RangeError('DER: truncated element');
  let length = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw new RangeError('DER: unsupported length form');
    length = 0;
    for (let i = 0; i < count; i++) {
      const byte = der[contentStart + i];
      if (byte === undefined) throw new RangeError('DER: truncated length');
      length = length * 256 + byte;
    }
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > der.length) throw new RangeError('DER: element runs past the end');
  return { tag, start: offset, contentStart, end };
}

/** The elements directly inside a constructed element (a SEQUENCE's members), in order. */
export function children(der: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const child = readElement(der, at);
    out.push(child);
    at = child.end;
  }
  return out;
}
