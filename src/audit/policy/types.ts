/**
 * @module The audit Policy's vocabulary: levels, stages, the decision, and what a rule may test.
 */

/** How much of a request is recorded, as the API server's audit levels. */
export type Level = 'None' | 'Metadata' | 'Request' | 'RequestResponse';
/** The API server's audit stages. */
export type Stage = 'RequestReceived' | 'ResponseStarted' | 'ResponseComplete' | 'Panic';

/** What the evaluator returns, and nothing else (as upstream's EvaluatePolicyRule). */
export type PolicyDecision = {
  readonly level: Level;
  readonly omitStages: readonly Stage[];
  readonly omitManagedFields: boolean;
};

/** What a rule may test, as the API server's policy sees a resource request; read lazily. */
export interface RequestAttributes {
  readonly username: string;
  readonly groups: readonly string[];
  readonly verb: string;
  readonly namespace: string;
  readonly apiGroup: string;
  readonly resource: string;
  readonly subresource: string;
  readonly name: string;
}

type Gvr = { group?: string; version?: string; resource?: string };

/** The AdmissionRequest fields the mapping reads; the record implements it with lazily decoded getters. */
export interface AdmissionFields {
  readonly operation: string;
  readonly userInfo: { username?: string; groups?: readonly string[] };
  readonly resource: Gvr | undefined;
  readonly subResource: string | undefined;
  readonly requestResource: Gvr | undefined;
  readonly requestSubResource: string | undefined;
  readonly kind: { group?: string; version?: string; kind?: string } | undefined;
  readonly name: string | undefined;
  readonly namespace: string | undefined;
}
