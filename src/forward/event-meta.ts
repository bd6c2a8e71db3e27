/**
 * @module What the forwarder needs to know about one event: its audit ID, cluster, object and time.
 *
 * Read from the line by a JSON parse, once per event on the forwarding side (never on the
 * webhook's hot path). Both line formats are understood: an `audit.k8s.io/v1` Event (`auditID`,
 * `objectRef`, `annotations`, `requestReceivedTimestamp`) and a kube-audit-rest AdmissionReview
 * line (`request.uid`, `request.namespace`, `request.name`, top-level `requestReceivedTimestamp`).
 */

/** The annotation that names an event's cluster; Falco's k8saudit plugin reads the same key (`ka.cluster.name`). */
export const CLUSTER_NAME_ANNOTATION = 'cluster_name';

/** What one event says about itself; every field is absent when the line does not carry it. */
export type EventMeta = {
  /** The event's audit ID (an AdmissionReview line's `request.uid`): the key for deduplication downstream. */
  auditID?: string;
  /** The cluster name annotation, when the line has one. */
  cluster?: string;
  /** The object's namespace ("" or absent for cluster-scoped objects). */
  namespace?: string;
  /** The object's name. */
  name?: string;
  /** When the API server received the request, ms since the epoch; for the lag metric. */
  receivedAtMs?: number;
};

/** Reads an event's metadata from its line; returns undefined if the line is not a JSON object. */
export type EventMetaReader = (line: Uint8Array) => EventMeta | undefined;

const decoder = new TextDecoder();

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Reads {@link EventMeta} from an Event or AdmissionReview line by parsing it as JSON. */
export function parseEventMeta(line: Uint8Array): EventMeta | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(decoder.decode(line));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const d = doc as Record<string, unknown>;
  const meta: EventMeta = {};
  const received = Date.parse(text(d.requestReceivedTimestamp) ?? '');
  if (Number.isFinite(received)) meta.receivedAtMs = received;
  const annotations = d.annotations as Record<string, unknown> | undefined;
  const cluster = text(annotations?.[CLUSTER_NAME_ANNOTATION]);
  if (cluster !== undefined) meta.cluster = cluster;
  if (d.kind === 'AdmissionReview') {
    const request = d.request as Record<string, unknown> | undefined;
    const uid = text(request?.uid);
    const namespace = text(request?.namespace);
    const name = text(request?.name);
    if (uid !== undefined) meta.auditID = uid;
    if (namespace !== undefined) meta.namespace = namespace;
    if (name !== undefined) meta.name = name;
    return meta;
  }
  const auditID = text(d.auditID);
  if (auditID !== undefined) meta.auditID = auditID;
  const ref = d.objectRef as Record<string, unknown> | undefined;
  const namespace = text(ref?.namespace);
  const name = text(ref?.name);
  if (namespace !== undefined) meta.namespace = namespace;
  if (name !== undefined) meta.name = name;
  return meta;
}
