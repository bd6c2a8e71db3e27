/**
 * @module Compiles an audit Policy into the ValidatingWebhookConfiguration that calls kube-audit-rest for
 * exactly the requests the policy records above None, and for no other.
 *
 * The webhook's `rules` select what the policy's non-None rules can select (rules.ts); its match
 * conditions, which must all be true for the call to happen, state the policy's first-match decision in
 * CEL (decision.ts, cel.ts). Leading None rules each become a condition of their own ("not this rule"),
 * which keeps every expression small and says in the configuration what is left out; the rest of the
 * policy is one condition.
 *
 * When the conditions would break one of the API server's limits (size, nesting, cost), the configuration
 * keeps the rules and drops the conditions: the webhook is then called for more than the policy records
 * (kube-audit-rest still writes only what it records), never for less. The result says why.
 */
import type { Policy } from '../audit/policy/types.ts';
import { ASSUMED_MAX_GROUPS, type CelMeasure, measureCel, toCel } from './cel.ts';
import { and, type Condition, FALSE, not } from './condition.ts';
import { recordsFrom, ruleCondition } from './decision.ts';
import { type WebhookRule, webhookRules } from './rules.ts';

/** A webhook match condition. */
export type MatchCondition = { readonly name: string; readonly expression: string };

/**
 * The API server's limits on match conditions (k8s.io/apiserver v0.37.2 and cel-go v0.29.2, the same
 * since match conditions went GA in 1.30).
 */
export const LIMITS = {
  /** Conditions per webhook (admissionregistration validation). */
  conditions: 64,
  /** Code points per expression (cel-go's parser default; the API server sets no other). */
  codePoints: 100_000,
  /**
   * Nesting of brackets per expression. cel-go refuses more than 250 nested levels (kube-apiserver 1.37
   * took 241 nested parentheses and refused 251); the innermost tests add a few levels of their own.
   */
  depth: 200,
  /**
   * UTF-8 bytes of all expressions together: etcd refuses objects above 1.5 MiB by default, and the rest
   * of the configuration is small.
   */
  totalBytes: 1_000_000,
  /** Runtime cost units per expression (`PerCallLimit`). */
  costPerExpression: 1_000_000,
  /** Runtime cost units of all match conditions of one webhook (`RuntimeCELCostBudgetMatchConditions`). */
  costPerWebhook: 2_500_000,
} as const;

/** The webhook's match: rules, and the conditions that narrow them to the policy's decision. */
export type CompiledMatch = {
  readonly rules: readonly WebhookRule[];
  /** Empty when the rules alone are exact, or when the conditions fell back (see `fallback`). */
  readonly matchConditions: readonly MatchCondition[];
  /** Why the conditions were dropped, each reason a sentence; empty when the match is exact. */
  readonly fallback: readonly string[];
  /** Each condition's size, nesting and cost bound, in the order of `matchConditions` (or as they were). */
  readonly measures: readonly (CelMeasure & { readonly name: string })[];
};

/** What {@link compileMatch} returns: the match, or that the policy records nothing a webhook could see. */
export type MatchResult =
  | { readonly kind: 'match'; readonly match: CompiledMatch }
  | { readonly kind: 'nothing' };

type NamedCondition = { name: string; condition: Condition };

/** The conditions, before they are written as CEL: "not rule i" for each leading None rule, then the rest. */
function conditionsOf(policy: Policy): NamedCondition[] | 'nothing' {
  const named: NamedCondition[] = [];
  let next = 0;
  // The last condition holds the rest of the policy, so at most conditions - 1 of these.
  while (
    next < policy.rules.length &&
    policy.rules[next]?.level === 'None' &&
    named.length < LIMITS.conditions - 1
  ) {
    const matches = ruleCondition(policy.rules[next] as (typeof policy.rules)[number]);
    if (matches.kind === 'true') return 'nothing';
    if (matches.kind !== 'false') named.push({ name: `not-rule-${next}`, condition: not(matches) });
    next++;
  }
  const rest = recordsFrom(policy, next);
  if (rest.kind === 'false') return 'nothing';
  if (rest.kind !== 'true') {
    named.push({ name: next === 0 ? 'policy-records' : `rules-${next}-on-record`, condition: rest });
  }
  return named;
}

/** The limits `measures` break, each as a sentence; empty when none. */
function brokenLimits(
  measures: readonly (CelMeasure & { name: string })[],
  expressions: readonly string[],
): string[] {
  const broken: string[] = [];
  for (const m of measures) {
    if (m.codePoints > LIMITS.codePoints) {
      broken.push(
        `condition ${m.name} is ${m.codePoints} characters long (the API server takes ${LIMITS.codePoints})`,
      );
    }
    if (m.depth > LIMITS.depth) {
      broken.push(`condition ${m.name} nests ${m.depth} deep (at most ${LIMITS.depth} is safe to parse)`);
    }
    if (m.cost > LIMITS.costPerExpression) {
      broken.push(
        `condition ${m.name} may cost ${m.cost} units for a user in ${ASSUMED_MAX_GROUPS} groups ` +
          `(the API server allows ${LIMITS.costPerExpression} per expression)`,
      );
    }
  }
  const bytes = expressions.reduce((sum, text) => sum + Buffer.byteLength(text), 0);
  if (bytes > LIMITS.totalBytes) {
    broken.push(
      `the conditions are ${bytes} bytes together (at most ${LIMITS.totalBytes} fit in the object)`,
    );
  }
  const total = measures.reduce((sum, m) => sum + m.cost, 0);
  if (total > LIMITS.costPerWebhook) {
    broken.push(
      `the conditions together may cost ${total} units for a user in ${ASSUMED_MAX_GROUPS} groups ` +
        `(the API server allows ${LIMITS.costPerWebhook} per webhook)`,
    );
  }
  return broken;
}

/**
 * Compiles `policy` into the webhook's rules and match conditions. Returns `nothing` when no request that
 * reaches admission is recorded above None (every rule that could match is None, or none can match).
 */
export function compileMatch(policy: Policy): MatchResult {
  const rules = webhookRules(policy);
  const named = conditionsOf(policy);
  if (named === 'nothing' || rules.length === 0) return { kind: 'nothing' };
  const written = named.map(({ name, condition }) => {
    const expression = toCel(condition);
    return { name, expression, measure: { name, ...measureCel(condition, expression) } };
  });
  const measures = written.map((w) => w.measure);
  const fallback = brokenLimits(
    measures,
    written.map((w) => w.expression),
  );
  return {
    kind: 'match',
    match: {
      rules,
      matchConditions:
        fallback.length > 0 ? [] : written.map(({ name, expression }) => ({ name, expression })),
      fallback,
      measures,
    },
  };
}

/** Where the API server sends the reviews. */
export type ClientTarget =
  | {
      readonly service: {
        readonly name: string;
        readonly namespace: string;
        readonly path: string;
        readonly port: number;
      };
    }
  | { readonly url: string };

/** Options for {@link compileWebhookConfiguration}; defaults as in k8s/base/webhook.yaml. */
export type WebhookConfigOptions = {
  /** Where the API server calls kube-audit-rest. */
  readonly target: ClientTarget;
  /** The configuration's metadata.name. Default `kube-audit-rest`. */
  readonly name?: string;
  /** The webhook's name (three or more dot-separated segments). Default `<service>.<namespace>.svc`
   *  for a service, `kube-audit-rest.external.webhook` for a URL. */
  readonly webhookName?: string;
  /** base64 of the PEM CA bundle that signed kube-audit-rest's certificate. Default: none (cert-manager's
   *  cainjector or the system trust store). */
  readonly caBundle?: string;
  /** Default `Ignore`: API calls go ahead unrecorded rather than fail while kube-audit-rest is away. */
  readonly failurePolicy?: 'Ignore' | 'Fail';
  /** Default 5. */
  readonly timeoutSeconds?: number;
  /** Default `Equivalent`. The conditions test the URL's resource, so either is exact. */
  readonly matchPolicy?: 'Equivalent' | 'Exact';
  /** Default `["v1", "v1beta1"]`. */
  readonly admissionReviewVersions?: readonly string[];
  /** Extra metadata.annotations (the policy's digest, say). */
  readonly annotations?: Readonly<Record<string, string>>;
};

/** A ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1) with one webhook. */
export type ValidatingWebhookConfiguration = {
  apiVersion: 'admissionregistration.k8s.io/v1';
  kind: 'ValidatingWebhookConfiguration';
  metadata: { name: string; labels: Record<string, string>; annotations?: Record<string, string> };
  webhooks: [
    {
      name: string;
      admissionReviewVersions: string[];
      clientConfig: Record<string, unknown>;
      rules: WebhookRule[];
      matchConditions?: MatchCondition[];
      failurePolicy: string;
      matchPolicy: string;
      sideEffects: 'None';
      timeoutSeconds: number;
    },
  ];
};

/** What {@link compileWebhookConfiguration} returns. */
export type CompileResult =
  | {
      readonly kind: 'configuration';
      readonly configuration: ValidatingWebhookConfiguration;
      readonly match: CompiledMatch;
    }
  | { readonly kind: 'nothing' };

/** The name of the one webhook, by default. */
function defaultWebhookName(target: ClientTarget): string {
  return 'service' in target
    ? `${target.service.name}.${target.service.namespace}.svc`
    : 'kube-audit-rest.external.webhook';
}

/**
 * Compiles `policy` into a ValidatingWebhookConfiguration whose one webhook the API server calls for
 * exactly the requests the policy records above None (or, when `match.fallback` is not empty, for every
 * request the rules select). Returns `nothing` when the policy records no request a webhook can see.
 */
export function compileWebhookConfiguration(policy: Policy, options: WebhookConfigOptions): CompileResult {
  const compiled = compileMatch(policy);
  if (compiled.kind === 'nothing') return compiled;
  const { match } = compiled;
  const target = options.target;
  const clientConfig: Record<string, unknown> =
    'service' in target ? { service: { ...target.service } } : { url: target.url };
  if (options.caBundle !== undefined) clientConfig.caBundle = options.caBundle;
  const annotations = options.annotations ?? {};
  return {
    kind: 'configuration',
    match,
    configuration: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: {
        name: options.name ?? 'kube-audit-rest',
        labels: { 'app.kubernetes.io/name': 'kube-audit-rest' },
        ...(Object.keys(annotations).length === 0 ? {} : { annotations: { ...annotations } }),
      },
      webhooks: [
        {
          name: options.webhookName ?? defaultWebhookName(target),
          admissionReviewVersions: [...(options.admissionReviewVersions ?? ['v1', 'v1beta1'])],
          clientConfig,
          rules: match.rules.map((rule) => ({ ...rule })),
          ...(match.matchConditions.length === 0
            ? {}
            : { matchConditions: match.matchConditions.map((c) => ({ ...c })) }),
          failurePolicy: options.failurePolicy ?? 'Ignore',
          matchPolicy: options.matchPolicy ?? 'Equivalent',
          sideEffects: 'None',
          timeoutSeconds: options.timeoutSeconds ?? 5,
        },
      ],
    },
  };
}

/**
 * Returns the conditions {@link compileMatch} writes, joined into one and not yet CEL: when it holds for a
 * request that the rules select, the webhook is called.
 */
export function matchConditionOf(policy: Policy): Condition {
  const named = conditionsOf(policy);
  return named === 'nothing' ? FALSE : and(...named.map((n) => n.condition));
}
