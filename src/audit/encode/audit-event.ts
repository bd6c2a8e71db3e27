/**
 * @module The audit-event line: one `audit.k8s.io/v1` Event per stage, the form the API server's own
 * audit log takes, so that Falco, Elastic, Datadog and Sysdig read it unchanged.
 *
 * Built from the record's fields; `requestObject` is the body's own bytes with the transforms'
 * edits applied. What admission cannot know is left out rather than invented: sourceIPs,
 * userAgent, impersonatedUser, responseObject, and responseStatus unless asked for. Keys follow the
 * Go type's field order, and keys without a value are left out (consumers test for existence).
 *
 * Stages: ResponseComplete for every request; for exec, attach and portforward also
 * ResponseStarted first, as the API server writes for long-running requests. Never
 * RequestReceived: its only content is what ResponseComplete repeats a moment later, and the line
 * count would double. The policy's omitStages removes stages; none left means no line.
 */

import { eachMember, findMember } from '../../review/navigate.ts';
import type { Line } from '../../sink/sink.ts';
import { formatMicroTime } from '../../support/clock.ts';
import type { EditList } from '../edits.ts';
import type { PolicyDecision, Stage } from '../policy/types.ts';
import type { AdmissionRecord, UserInfo } from '../record.ts';

/** Prefix of the annotations kube-audit-rest adds (a DNS label, valid as an annotation prefix). */
export const ANNOTATION_PREFIX = 'kube-audit-rest/';

/** The annotation Falco's `ka.cluster.name` and others read the cluster from. */
export const CLUSTER_ANNOTATION = 'cluster_name';

/** What the Event encoder needs besides the record. */
export type EventContext = {
  /** The policy's decision (RequestResponse when there is no policy). */
  decision: PolicyDecision;
  /** When the request arrived, ns since the epoch. */
  arrived: bigint;
  /** Now, for stageTimestamp, ns since the epoch. */
  now: bigint;
  /** Cluster name for the `cluster_name` annotation, if any. */
  clusterName: string | undefined;
  /** Add a responseStatus of 201 (create) or 200 (anything else). */
  syntheticResponseStatus: boolean;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const METADATA = encoder.encode('"metadata"');
const UID = encoder.encode('"uid"');
const RESOURCE_VERSION = encoder.encode('"resourceVersion"');
const MANAGED_FIELDS = encoder.encode('"managedFields"');
const QUOTE = 0x22;

/** Subresources whose requests are long-running: the API server writes ResponseStarted for them. */
const LONG_RUNNING = new Set(['exec', 'attach', 'portforward']);

/** The query parameters of exec and attach URLs, in the order Go's url.Values sorts them. */
const STREAM_PARAMS = ['container', 'stderr', 'stdin', 'stdout', 'tty'] as const;

/** Maps an admission operation to the API server's verb (see the README's attribute mapping). */
function verbOf(operation: string): string {
  switch (operation) {
    case 'CREATE':
    case 'CONNECT':
      return 'create';
    case 'UPDATE':
      return 'update';
    case 'DELETE':
      return 'delete';
    default:
      return operation.toLowerCase();
  }
}

/** The user as the Event's `user` (authentication/v1 UserInfo), keeping only its four fields and their types. */
function userJson(info: UserInfo): string {
  const user: Record<string, unknown> = { username: typeof info.username === 'string' ? info.username : '' };
  if (typeof info.uid === 'string' && info.uid !== '') user.uid = info.uid;
  if (Array.isArray(info.groups)) user.groups = info.groups.filter((g) => typeof g === 'string');
  if (info.extra !== null && typeof info.extra === 'object' && !Array.isArray(info.extra)) {
    const extra: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(info.extra)) {
      if (Array.isArray(v)) extra[k] = v.filter((x) => typeof x === 'string');
    }
    user.extra = extra;
  }
  return JSON.stringify(user);
}

/** UserInfo's fields, and the first byte each one's value must have: a string, an array, an object. */
const USER_FIELDS: readonly (readonly [Uint8Array, number])[] = [
  [encoder.encode('"username"'), QUOTE],
  [encoder.encode('"uid"'), QUOTE],
  [encoder.encode('"groups"'), 0x5b],
  [encoder.encode('"extra"'), 0x7b],
];

/**
 * The request's userInfo as the Event's `user`: its own bytes when it holds only UserInfo's four
 * fields with values of the right kind (what the API server sends: no decoding, no re-encoding), or
 * else rebuilt from the decoded fields, so that the line always decodes as an Event.
 */
function userBytes(record: AdmissionRecord): string {
  const bytes = record.bytes;
  const start = record.start('userInfo');
  if (start < 0 || bytes[start] !== 0x7b) return '{"username":""}';
  let clean = true;
  let hasUsername = false;
  eachMember(bytes, start, (m) => {
    const field = USER_FIELDS.findIndex(([key]) => equalsToken(bytes, m.keyStart, m.keyEnd, key));
    if (field === 0) hasUsername = true;
    clean = field >= 0 && (USER_FIELDS[field] as readonly [Uint8Array, number])[1] === bytes[m.valueStart];
    return !clean;
  });
  if (clean && hasUsername) return decoder.decode(bytes.subarray(start, record.end('userInfo')));
  return userJson(record.userInfo);
}

/** An object's `metadata.uid` and `metadata.resourceVersion`, for objectRef. */
type Identity = { uid: string | undefined; resourceVersion: string | undefined };

function equalsToken(bytes: Uint8Array, start: number, end: number, token: Uint8Array): boolean {
  if (end - start !== token.length) return false;
  for (let k = 0; k < token.length; k++) if (bytes[start + k] !== token[k]) return false;
  return true;
}

/**
 * Reads `metadata.uid` and `metadata.resourceVersion` of an object in one pass over its metadata,
 * stopping before `managedFields`: the API server writes ObjectMeta in its Go field order, where both
 * come early and managedFields (often the bulk of the bytes) comes last.
 */
function identityOf(record: AdmissionRecord, field: 'object' | 'oldObject'): Identity {
  const found: Identity = { uid: undefined, resourceVersion: undefined };
  if (!record.isObject(field)) return found;
  const bytes = record.bytes;
  const metadata = findMember(bytes, record.start(field), METADATA);
  if (metadata === undefined) return found;
  const text = (start: number, end: number) =>
    bytes[start] === QUOTE ? (JSON.parse(decoder.decode(bytes.subarray(start, end))) as string) : undefined;
  eachMember(bytes, metadata.valueStart, (m) => {
    if (equalsToken(bytes, m.keyStart, m.keyEnd, UID)) found.uid = text(m.valueStart, m.valueEnd);
    else if (equalsToken(bytes, m.keyStart, m.keyEnd, RESOURCE_VERSION)) {
      found.resourceVersion = text(m.valueStart, m.valueEnd);
    }
    const next = m.valueEnd + 1; // the next member's key, if any
    const done = found.uid !== undefined && found.resourceVersion !== undefined;
    return done || equalsToken(bytes, next, next + MANAGED_FIELDS.length, MANAGED_FIELDS);
  });
  return found;
}

/** The request's resource coordinates as its URL had them. */
type Target = {
  group: string;
  version: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
};

function targetOf(record: AdmissionRecord): Target {
  const gvr = record.requestResource ?? record.resource ?? {};
  const sub = record.requestResource !== undefined ? record.requestSubResource : record.subResource;
  return {
    group: typeof gvr.group === 'string' ? gvr.group : '',
    version: typeof gvr.version === 'string' ? gvr.version : '',
    resource: typeof gvr.resource === 'string' ? gvr.resource : '',
    subresource: sub ?? '',
    // A Namespace is cluster-scoped: admission names it in `namespace` too, its URL and objectRef do not.
    namespace: gvr.group === '' && gvr.resource === 'namespaces' ? '' : (record.namespace ?? ''),
    name: record.name ?? '',
  };
}

/** The connect options' query parameters (exec, attach, portforward), as the API server's URL carries them. */
function connectQuery(record: AdmissionRecord, subresource: string, query: URLSearchParams): void {
  if (!record.isObject('object')) return;
  const options = record.decode('object') as Record<string, unknown>;
  if (subresource === 'exec' && Array.isArray(options.command)) {
    for (const c of options.command) if (typeof c === 'string') query.append('command', c);
  }
  if (subresource === 'portforward' && Array.isArray(options.ports)) {
    for (const p of options.ports) if (typeof p === 'number') query.append('ports', String(p));
  }
  for (const param of STREAM_PARAMS) {
    const v = options[param];
    if (param === 'container' ? typeof v === 'string' && v !== '' : v === true)
      query.append(param, String(v));
  }
}

/**
 * The request's URI as the API server saw it: `/api/v1/...` for the core group, `/apis/<group>/<version>/...`
 * otherwise; a create posts to the collection (no name) unless it is to a subresource.
 */
export function requestUriOf(record: AdmissionRecord, t: Target): string {
  let path = t.group === '' ? `/api/${t.version}` : `/apis/${t.group}/${t.version}`;
  if (t.namespace !== '') path += `/namespaces/${encodeURIComponent(t.namespace)}`;
  path += `/${t.resource}`;
  const named = !(record.operation === 'CREATE' && t.subresource === '');
  if (named && t.name !== '') path += `/${encodeURIComponent(t.name)}`;
  if (t.subresource !== '') path += `/${t.subresource}`;
  if (!record.dryRun && record.operation !== 'CONNECT') return path;
  const query = new URLSearchParams();
  if (record.dryRun) query.append('dryRun', 'All');
  if (record.operation === 'CONNECT') connectQuery(record, t.subresource, query);
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}

function objectRefJson(record: AdmissionRecord, t: Target): string {
  const ref: Record<string, string> = {};
  const put = (key: string, value: string | undefined) => {
    if (value !== undefined && value !== '') ref[key] = value;
  };
  put('resource', t.resource);
  put('namespace', t.namespace);
  put('name', t.name);
  const identity = identityOf(record, record.isObject('object') ? 'object' : 'oldObject');
  put('uid', identity.uid);
  put('apiGroup', t.group);
  put('apiVersion', t.version);
  put('resourceVersion', identity.resourceVersion);
  put('subresource', t.subresource);
  return JSON.stringify(ref);
}

/** The field whose bytes are the Event's requestObject: the object, or the options of a delete. */
function requestObjectField(record: AdmissionRecord): 'object' | 'options' | undefined {
  const field = record.operation === 'DELETE' ? 'options' : 'object';
  return record.present(field) ? field : undefined;
}

/**
 * Builds the Event line(s) for a record at the decision's level (never None: the pipeline writes
 * nothing then), or undefined when omitStages leaves no stage.
 */
export function encodeAuditEvent(
  record: AdmissionRecord,
  edits: EditList | undefined,
  ctx: EventContext,
): Line | undefined {
  const t = targetOf(record);
  const stages: Stage[] =
    LONG_RUNNING.has(t.subresource) && record.operation === 'CONNECT'
      ? ['ResponseStarted', 'ResponseComplete']
      : ['ResponseComplete'];
  const kept = stages.filter((s) => !ctx.decision.omitStages.includes(s));
  if (kept.length === 0) return undefined;

  const verb = verbOf(record.operation);
  // The annotations, written directly: their keys need no escaping and only the values vary.
  let annotations = '{"authorization.k8s.io/decision":"allow"';
  if (ctx.clusterName !== undefined)
    annotations += `,"${CLUSTER_ANNOTATION}":${JSON.stringify(ctx.clusterName)}`;
  annotations +=
    `,"${ANNOTATION_PREFIX}operation":${JSON.stringify(record.operation)}` +
    `,"${ANNOTATION_PREFIX}dry-run":"${record.dryRun}"` +
    `,"${ANNOTATION_PREFIX}admission-uid":${JSON.stringify(record.uid)}` +
    `,"${ANNOTATION_PREFIX}old-object":"${record.present('oldObject')}"}`;

  // Everything but the stage is the same for each stage's line.
  const start = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"${ctx.decision.level}","auditID":${decoder.decode(record.uidToken)},"stage":"`;
  const rest =
    `","requestURI":${JSON.stringify(requestUriOf(record, t))},"verb":"${verb}",` +
    `"user":${userBytes(record)},"objectRef":${objectRefJson(record, t)}` +
    (ctx.syntheticResponseStatus
      ? `,"responseStatus":{"metadata":{},"code":${verb === 'create' ? 201 : 200}}`
      : '');
  const tail = encoder.encode(
    `,"requestReceivedTimestamp":"${formatMicroTime(ctx.arrived)}","stageTimestamp":"${formatMicroTime(ctx.now)}",` +
      `"annotations":${annotations}}\n`,
  );

  const field = ctx.decision.level === 'Metadata' ? undefined : requestObjectField(record);
  const pieces: Uint8Array[] = [];
  for (const stage of kept) {
    const head = start + stage + rest;
    if (field === undefined) {
      pieces.push(encoder.encode(head), tail);
      continue;
    }
    pieces.push(encoder.encode(`${head},"requestObject":`));
    if (edits === undefined) pieces.push(record.bytes.subarray(record.start(field), record.end(field)));
    else edits.pieces(record.bytes, record.start(field), record.end(field), pieces);
    pieces.push(tail);
  }
  return pieces;
}
