/**
 * @module The audit Policy's vocabulary (`audit.k8s.io/v1`), and the two views of a request it is evaluated on.
 *
 * The shapes follow k8s.io/apiserver v0.37.2: `pkg/apis/audit` for the Policy, `pkg/audit` for the decision
 * (`RequestAuditConfig`) and `pkg/authorization/authorizer` for the attributes a rule tests.
 */

/** How much of a request an audit record keeps, least to most. */
export const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;

/** One of {@link LEVELS}: None drops the request, Metadata keeps no bodies, Request keeps the request body. */
export type Level = (typeof LEVELS)[number];

/** The stages at which the API server may emit an audit event, in the order they happen. */
export const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;

/** One of {@link STAGES}. */
export type Stage = (typeof STAGES)[number];

/** What the evaluator returns, and nothing else (as upstream's EvaluatePolicyRule). */
export type PolicyDecision = {
  readonly level: Level;
  /** The policy's omitStages together with the matching rule's, each once, in {@link STAGES} order. */
  readonly omitStages: readonly Stage[];
  /** The matching rule's omitManagedFields when it sets one, else the policy's. */
  readonly omitManagedFields: boolean;
};

/**
 * What a rule may test, as the API server's policy sees a resource request. Read lazily: an
 * implementation may compute each property on first access, so the evaluator reads only what the
 * rule at hand tests (e.g. never `name` unless a rule has resourceNames).
 */
export interface RequestAttributes {
  /** The authenticated user's name. */
  readonly username: string;
  readonly groups: readonly string[];
  /** The API verb in lower case: create, update, delete (what admission can show; see attributes.ts). */
  readonly verb: string;
  /** "" for a cluster-scoped resource. */
  readonly namespace: string;
  /** "" for the core group. */
  readonly apiGroup: string;
  /** The resource as the URL names it, e.g. `pods`. */
  readonly resource: string;
  /** "" when the URL names none, else e.g. `exec`, `scale`, `status`. */
  readonly subresource: string;
  /** "" when the URL names no object (a create POSTs to the collection). */
  readonly name: string;
}

/** A group, version and resource as an AdmissionRequest carries them (every member may be absent). */
export type AdmissionResource = { group?: string; version?: string; resource?: string };

/** The AdmissionRequest fields the mapping reads; the record implements it with lazily decoded getters. */
export interface AdmissionFields {
  /** CREATE, UPDATE, DELETE or CONNECT. */
  readonly operation: string;
  readonly userInfo: { username?: string; groups?: readonly string[] };
  /** The resource being admitted, possibly converted (`matchPolicy: Equivalent`). */
  readonly resource: AdmissionResource | undefined;
  readonly subResource: string | undefined;
  /** The resource the caller's URL named, when the API server sent it. */
  readonly requestResource: AdmissionResource | undefined;
  readonly requestSubResource: string | undefined;
  /** The object's kind. The mapping does not read it: the policy matches the URL's resource, not the kind. */
  readonly kind: { group?: string; version?: string; kind?: string } | undefined;
  readonly name: string | undefined;
  readonly namespace: string | undefined;
}

/** Resources of one API group that a rule selects (`GroupResources`). */
export type GroupResources = {
  /** "" is the core group, "*" every group. */
  readonly group: string;
  /** `pods`, `pods/exec`, `pods/*`, `*\/scale` or `*`; empty means every resource of the group. */
  readonly resources: readonly string[];
  /** Object names; empty means every object. Only allowed beside resources. */
  readonly resourceNames: readonly string[];
};

/** One rule of a Policy (`PolicyRule`); an empty list selects everything for that field. */
export type PolicyRule = {
  readonly level: Level;
  readonly users: readonly string[];
  readonly userGroups: readonly string[];
  readonly verbs: readonly string[];
  readonly resources: readonly GroupResources[];
  readonly namespaces: readonly string[];
  /** Validated, but never matches an admission request: admission only sees resource requests. */
  readonly nonResourceURLs: readonly string[];
  readonly omitStages: readonly Stage[];
  /** Overrides the policy's omitManagedFields when set. */
  readonly omitManagedFields: boolean | undefined;
};

/** A validated audit Policy: ordered rules, the first that matches decides. */
export type Policy = {
  readonly rules: readonly PolicyRule[];
  readonly omitStages: readonly Stage[];
  readonly omitManagedFields: boolean;
};
