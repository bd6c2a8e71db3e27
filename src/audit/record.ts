/**
 * @module The record: one AdmissionReview as the audit stages see it, the compact bytes plus where
 * each field is, with fields decoded only when a stage first asks for them.
 *
 * Every AdmissionReview and AdmissionRequest field kube-audit-rest reads is named here, and only
 * here: the scanners list members without knowing names, and the policy, transforms and encoders
 * ask the record. With no policy, the default format and no Secret, nothing is decoded but the
 * version check.
 */

import {
  M_ESCAPED,
  M_KEY_END,
  M_KEY_START,
  M_PARENT,
  M_VALUE_END,
  M_VALUE_START,
  MEMBER_INTS,
} from '../review/json-scan.ts';
import type { AdmissionFields } from './policy/types.ts';

/** AdmissionReview versions the API server may send (`admissionReviewVersions` in the webhook). */
export const API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;

/** One of {@link API_VERSIONS}. */
export type ApiVersion = (typeof API_VERSIONS)[number];

/** The fields of an AdmissionReview and its request that some stage reads, by where they live. */
const ROOT_FIELDS = ['kind', 'apiVersion', 'request', 'requestReceivedTimestamp', 'clusterName'] as const;
const REQUEST_FIELDS = [
  'uid',
  'kind',
  'resource',
  'subResource',
  'requestKind',
  'requestResource',
  'requestSubResource',
  'name',
  'namespace',
  'operation',
  'userInfo',
  'object',
  'oldObject',
  'dryRun',
  'options',
] as const;

/** A top-level AdmissionReview field the record locates. */
export type RootField = (typeof ROOT_FIELDS)[number];
/** An AdmissionRequest field the record locates. */
export type RequestField = (typeof REQUEST_FIELDS)[number];

/** Slot of each field in the index: root fields first, then request fields. */
const ROOT_SLOT: Record<RootField, number> = Object.fromEntries(ROOT_FIELDS.map((f, i) => [f, i])) as Record<
  RootField,
  number
>;
const REQUEST_SLOT: Record<RequestField, number> = Object.fromEntries(
  REQUEST_FIELDS.map((f, i) => [f, ROOT_FIELDS.length + i]),
) as Record<RequestField, number>;
const SLOTS = ROOT_FIELDS.length + REQUEST_FIELDS.length;
/** Ints per slot in the index: key start, value start, value end (-1 when absent). */
const SLOT_INTS = 3;

const encoder = new TextEncoder();

/** A key token's length and its first character, which tell every field named here apart. */
function keyHash(length: number, firstChar: number): number {
  return length * 256 + firstChar;
}

/** Key tokens (quotes included) by {@link keyHash}, for matching member keys without decoding them. */
function keyTable(
  names: readonly string[],
  firstSlot: number,
): Map<number, { token: Uint8Array; slot: number }[]> {
  const table = new Map<number, { token: Uint8Array; slot: number }[]>();
  names.forEach((name, i) => {
    const token = encoder.encode(JSON.stringify(name));
    const hash = keyHash(token.length, token[1] as number);
    const list = table.get(hash) ?? [];
    list.push({ token, slot: firstSlot + i });
    table.set(hash, list);
  });
  return table;
}
const ROOT_KEYS = keyTable(ROOT_FIELDS, 0);
const REQUEST_KEYS = keyTable(REQUEST_FIELDS, ROOT_FIELDS.length);

// ignoreBOM: keep a leading U+FEFF in a value (the default strips it, so "\uFEFFAdmissionReview" would pass).
const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;

/** Finds the slot a member's key names, or -1. Escaped keys (never sent by the API server) are decoded. */
function slotOf(
  bytes: Uint8Array,
  members: Int32Array,
  at: number,
  keys: Map<number, { token: Uint8Array; slot: number }[]>,
  names: readonly string[],
  firstSlot: number,
): number {
  const start = members[at + M_KEY_START] as number;
  const end = members[at + M_KEY_END] as number;
  if (members[at + M_ESCAPED] === 1) {
    const name = JSON.parse(decoder.decode(bytes.subarray(start, end))) as string;
    const i = names.indexOf(name);
    return i < 0 ? -1 : firstSlot + i;
  }
  const candidates = keys.get(keyHash(end - start, bytes[start + 1] as number));
  if (candidates === undefined) return -1;
  for (const { token, slot } of candidates) {
    let k = 2; // the opening quote and first character match
    while (k < token.length && bytes[start + k] === token[k]) k++;
    if (k === token.length) return slot;
  }
  return -1;
}

/** Where each field's key and value are: {@link SLOT_INTS} numbers per field, -1 when absent. */
export type FieldIndex = number[];

/** Why a scanned body cannot be indexed: a field that matters appears twice. */
export type IndexError = { ok: false; field: string };

/**
 * Builds the field index from the scanner's member list: for each field, where its key and value
 * are. A field that some stage reads appearing twice is an error (which one would the API server's
 * own decoding have kept?), reported with its dotted name.
 */
export function indexFields(
  bytes: Uint8Array,
  members: Int32Array,
  membersFrom: number,
  count: number,
): FieldIndex | IndexError {
  // A plain array: the JIT allocates it inline, where a typed array costs a call into the runtime.
  const index: FieldIndex = new Array(SLOTS * SLOT_INTS);
  for (let i = 0; i < SLOTS * SLOT_INTS; i++) index[i] = -1;
  let requestMember = -2; // the member number of `request`; -2 until found
  for (let m = 0; m < count; m++) {
    const at = membersFrom + m * MEMBER_INTS;
    const parent = members[at + M_PARENT] as number;
    let slot: number;
    if (parent === -1) slot = slotOf(bytes, members, at, ROOT_KEYS, ROOT_FIELDS, 0);
    else if (parent === requestMember)
      slot = slotOf(bytes, members, at, REQUEST_KEYS, REQUEST_FIELDS, ROOT_FIELDS.length);
    else continue;
    if (slot < 0) continue;
    const to = slot * SLOT_INTS;
    if (index[to] !== -1) {
      const name =
        slot < ROOT_FIELDS.length
          ? ROOT_FIELDS[slot]
          : `request.${REQUEST_FIELDS[slot - ROOT_FIELDS.length]}`;
      return { ok: false, field: name as string };
    }
    index[to] = members[at + M_KEY_START] as number;
    index[to + 1] = members[at + M_VALUE_START] as number;
    index[to + 2] = members[at + M_VALUE_END] as number;
    if (slot === ROOT_SLOT.request) requestMember = m;
  }
  return index;
}

/** Where a top-level field's value starts in an index from {@link indexFields}, or -1 when absent. */
export function rootValueStart(index: FieldIndex, field: RootField): number {
  return index[ROOT_SLOT[field] * SLOT_INTS + 1] as number;
}

/** Where a top-level field's value ends in an index from {@link indexFields}. */
export function rootValueEnd(index: FieldIndex, field: RootField): number {
  return index[ROOT_SLOT[field] * SLOT_INTS + 2] as number;
}

/** A `{group, version, resource}` as admission writes it. */
export type GroupVersionResource = { group?: string; version?: string; resource?: string };
/** A `{group, version, kind}` as admission writes it. */
export type GroupVersionKind = { group?: string; version?: string; kind?: string };
/** The requesting user as admission shows it (authentication.k8s.io/v1 UserInfo). */
export type UserInfo = {
  username?: string;
  uid?: string;
  groups?: readonly string[];
  extra?: Readonly<Record<string, readonly string[]>>;
};

/** Marks a lazily decoded field not yet decoded. */
const UNSET: unique symbol = Symbol('unset');

/**
 * One AdmissionReview: the compact body, where its fields are, and their values decoded on first
 * use. Field accessors never throw: a value of the wrong JSON type reads as absent, since the
 * record must be written whatever a caller sent.
 */
export class AdmissionRecord implements AdmissionFields {
  #operation: string | typeof UNSET = UNSET;
  #userInfo: UserInfo | typeof UNSET = UNSET;
  #resource: GroupVersionResource | undefined | typeof UNSET = UNSET;
  #requestResource: GroupVersionResource | undefined | typeof UNSET = UNSET;
  #kind: GroupVersionKind | undefined | typeof UNSET = UNSET;

  /**
   * @param bytes the compact body; the line is built from views of it
   * @param apiVersion the review's version, already checked
   * @param index where each field is, from {@link indexFields}
   */
  constructor(
    readonly bytes: Uint8Array,
    readonly apiVersion: ApiVersion,
    private readonly index: FieldIndex,
  ) {}

  /** Where a top-level field's value starts, or -1 when absent. */
  rootStart(field: RootField): number {
    return rootValueStart(this.index, field);
  }

  /** Where a top-level field's value ends. */
  rootEnd(field: RootField): number {
    return rootValueEnd(this.index, field);
  }

  /** Where a request field's key token starts (for removing the whole member), or -1 when absent. */
  keyStart(field: RequestField): number {
    return this.index[REQUEST_SLOT[field] * SLOT_INTS] as number;
  }

  /** Where a request field's value starts, or -1 when absent. */
  start(field: RequestField): number {
    return this.index[REQUEST_SLOT[field] * SLOT_INTS + 1] as number;
  }

  /** Where a request field's value ends. */
  end(field: RequestField): number {
    return this.index[REQUEST_SLOT[field] * SLOT_INTS + 2] as number;
  }

  /** Whether a request field is present with a value other than null. */
  present(field: RequestField): boolean {
    const start = this.start(field);
    return start >= 0 && this.bytes[start] !== 0x6e; /* n of null */
  }

  /** Whether a request field is present and an object. */
  isObject(field: RequestField): boolean {
    const start = this.start(field);
    return start >= 0 && this.bytes[start] === LBRACE;
  }

  /** The raw JSON of a request field, as a view of the body, or undefined when absent. */
  raw(field: RequestField): Uint8Array | undefined {
    const start = this.start(field);
    return start < 0 ? undefined : this.bytes.subarray(start, this.end(field));
  }

  /** The uid's JSON string token exactly as sent (quotes included), to echo in the answer. */
  get uidToken(): Uint8Array {
    return this.bytes.subarray(this.start('uid'), this.end('uid'));
  }

  /** Decodes a request field's value, or undefined when absent. */
  decode(field: RequestField): unknown {
    const start = this.start(field);
    if (start < 0) return undefined;
    const end = this.end(field);
    const bytes = this.bytes;
    // Strings without escapes, the usual case, need no JSON parser.
    if (bytes[start] === QUOTE && bytes.subarray(start, end).indexOf(BACKSLASH) < 0) {
      return decoder.decode(bytes.subarray(start + 1, end - 1));
    }
    return JSON.parse(decoder.decode(bytes.subarray(start, end)));
  }

  /** A request field that should be a string, or undefined when absent or of another type. */
  string(field: RequestField): string | undefined {
    const start = this.start(field);
    if (start < 0 || this.bytes[start] !== QUOTE) return undefined;
    return this.decode(field) as string;
  }

  /** A request field that should be an object, or undefined when absent or of another type. */
  private object<T>(field: RequestField): T | undefined {
    return this.isObject(field) ? (this.decode(field) as T) : undefined;
  }

  /** The request's uid (decoded). */
  get uid(): string {
    return this.string('uid') ?? '';
  }

  /** CREATE, UPDATE, DELETE or CONNECT; '' if absent. */
  get operation(): string {
    if (this.#operation === UNSET) this.#operation = this.string('operation') ?? '';
    return this.#operation;
  }

  /** The requesting user; {} if absent. */
  get userInfo(): UserInfo {
    if (this.#userInfo === UNSET) this.#userInfo = this.object<UserInfo>('userInfo') ?? {};
    return this.#userInfo;
  }

  /** The resource the request was converted to (`resource`). */
  get resource(): GroupVersionResource | undefined {
    if (this.#resource === UNSET) this.#resource = this.object<GroupVersionResource>('resource');
    return this.#resource;
  }

  /** The resource the request's URL named (`requestResource`), when admission says it. */
  get requestResource(): GroupVersionResource | undefined {
    if (this.#requestResource === UNSET)
      this.#requestResource = this.object<GroupVersionResource>('requestResource');
    return this.#requestResource;
  }

  /** The subresource (`subResource`), or undefined. */
  get subResource(): string | undefined {
    return this.string('subResource');
  }

  /** The subresource the request's URL named (`requestSubResource`), or undefined. */
  get requestSubResource(): string | undefined {
    return this.string('requestSubResource');
  }

  /** The object's kind (`kind`). */
  get kind(): GroupVersionKind | undefined {
    if (this.#kind === UNSET) this.#kind = this.object<GroupVersionKind>('kind');
    return this.#kind;
  }

  /** The object's name, or undefined (a create with a generated name has none). */
  get name(): string | undefined {
    return this.string('name');
  }

  /** The namespace, or undefined for cluster-scoped objects. */
  get namespace(): string | undefined {
    return this.string('namespace');
  }

  /** Whether the request is a dry run. */
  get dryRun(): boolean {
    const start = this.start('dryRun');
    return start >= 0 && this.bytes[start] === 0x74; /* t of true */
  }
}
