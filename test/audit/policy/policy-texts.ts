/**
 * @module Policy texts shared by load.test.ts, which checks what our loader makes of them, and
 * differential.test.ts, which checks that k8s.io/apiserver reads them alike: the valid ones accepted and
 * evaluated the same, each invalid one refused too or, where `upstream` is 'warns', accepted after a warning
 * (the unknown and duplicated fields kube-audit-rest refuses outright).
 */

/** One refused policy: its text (as file `p.yaml`), our messages, and what upstream's loader does with it. */
export type InvalidPolicy = {
  readonly name: string;
  readonly text: string;
  readonly errors: readonly string[];
  /** 'refuses': the API server refuses it too. 'warns': it only logs a warning and uses what it understood. */
  readonly upstream: 'refuses' | 'warns';
};

const HEAD = 'apiVersion: audit.k8s.io/v1\nkind: Policy\n';
const LEVELS = 'one of None, Metadata, Request, RequestResponse';
const STAGES = 'one of RequestReceived, ResponseStarted, ResponseComplete, Panic';

/** Valid policies that exercise the decoding: every field, nulls, YAML 1.1 scalars, JSON, aliases. */
export const VALID_POLICIES = {
  everyField: `${HEAD}omitStages: [RequestReceived]
omitManagedFields: true
metadata: {name: audit, labels: {team: platform}}
rules:
- level: RequestResponse
  users: [alice]
  userGroups: [devs]
  verbs: [create, update]
  namespaces: ["", shop]
  resources:
  - group: apps
    resources: [deployments, "*/scale"]
    resourceNames: [api]
  - group: "*"
  omitStages: [Panic, RequestReceived]
  omitManagedFields: false
- level: None
  nonResourceURLs: ["/healthz*"]
`,
  nulls: `${HEAD}omitStages:
omitManagedFields: ~
rules:
- level: None
  users:
  verbs: []
  resources:
  - group:
    resources: [pods]
  omitManagedFields: null
- level: Metadata
`,
  yaml11: `${HEAD}omitManagedFields: yes
rules:
- level: None
  namespaces: [2001-01-01, 1:20]
  omitManagedFields: off
- level: Request
  omitManagedFields: Y
`,
  json: '{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata"}]}',
  aliases: `${HEAD}rules:
- level: None
  users: &admins [alice, bob]
- level: Metadata
  users: *admins
`,
} as const;

/** Every validation rule of the API server, then our stricter decoding, one case (or more) each. */
export const INVALID_POLICIES: readonly InvalidPolicy[] = [
  {
    name: 'a rule without a level',
    text: `${HEAD}rules:\n- verbs: [create]\n`,
    errors: [`p.yaml:4:3: rules[0].level: required: ${LEVELS}`],
    upstream: 'refuses',
  },
  {
    name: 'a rule whose level is null',
    text: `${HEAD}rules:\n- level:\n`,
    errors: [`p.yaml:4:3: rules[0].level: required: ${LEVELS}`],
    upstream: 'refuses',
  },
  {
    name: 'an unknown level (levels are case-sensitive)',
    text: `${HEAD}rules:\n- level: metadata\n`,
    errors: [`p.yaml:4:10: rules[0].level: "metadata" is not a level: ${LEVELS}`],
    upstream: 'refuses',
  },
  {
    name: "an unknown stage in the policy's omitStages",
    text: `${HEAD}omitStages: [RequestReceived, Done]\nrules:\n- level: None\n`,
    errors: [`p.yaml:3:31: omitStages[1]: "Done" is not a stage: ${STAGES}`],
    upstream: 'refuses',
  },
  {
    name: "an unknown stage in a rule's omitStages",
    text: `${HEAD}rules:\n- level: None\n- level: Metadata\n  omitStages: [responseComplete]\n`,
    errors: [`p.yaml:6:16: rules[1].omitStages[0]: "responseComplete" is not a stage: ${STAGES}`],
    upstream: 'refuses',
  },
  {
    name: 'a group with capitals',
    text: `${HEAD}rules:\n- level: None\n  resources:\n  - group: Apps\n`,
    errors: [
      'p.yaml:6:12: rules[0].resources[0].group: "Apps" must be "", "*" or a lower-case DNS subdomain',
    ],
    upstream: 'refuses',
  },
  {
    name: 'a group with its version',
    text: `${HEAD}rules:\n- level: None\n  resources:\n  - group: ""\n  - group: rbac.authorization.k8s.io/v1\n`,
    errors: [
      'p.yaml:7:12: rules[0].resources[1].group: "rbac.authorization.k8s.io/v1" must be "", "*" or a lower-case ' +
        'DNS subdomain (the group alone, without a version)',
    ],
    upstream: 'refuses',
  },
  {
    name: 'a group longer than a DNS subdomain may be',
    text: `${HEAD}rules:\n- level: None\n  resources:\n  - group: ${'a'.repeat(254)}\n`,
    errors: [
      'p.yaml:6:12: rules[0].resources[0].group: is 254 characters long; a DNS subdomain has at most 253',
    ],
    upstream: 'refuses',
  },
  {
    name: 'resourceNames without resources',
    text: `${HEAD}rules:\n- level: None\n  resources:\n  - group: ""\n    resourceNames: [kube-root-ca.crt]\n`,
    errors: [
      'p.yaml:7:20: rules[0].resources[0].resourceNames: needs resources beside it: names select objects of the ' +
        'resources listed',
    ],
    upstream: 'refuses',
  },
  {
    name: 'a non-resource URL without its leading slash',
    text: `${HEAD}rules:\n- level: None\n  nonResourceURLs: [healthz]\n`,
    errors: ['p.yaml:5:21: rules[0].nonResourceURLs[0]: "healthz" must be "*" or begin with "/"'],
    upstream: 'refuses',
  },
  {
    name: 'a non-resource URL with a wildcard before its end',
    text: `${HEAD}rules:\n- level: None\n  nonResourceURLs: ["/*/healthz", "/api*"]\n`,
    errors: [
      'p.yaml:5:21: rules[0].nonResourceURLs[0]: "/*/healthz" may have "*" only as its last character',
    ],
    upstream: 'refuses',
  },
  {
    name: 'non-resource URLs beside resources',
    text: `${HEAD}rules:\n- level: None\n  nonResourceURLs: ["/metrics"]\n  resources: [{group: ""}]\n`,
    errors: [
      'p.yaml:5:20: rules[0].nonResourceURLs: a rule selects resources (resources, namespaces) or non-resource ' +
        'URLs, not both',
    ],
    upstream: 'refuses',
  },
  {
    name: 'non-resource URLs beside namespaces',
    text: `${HEAD}rules:\n- level: None\n  namespaces: [default]\n  nonResourceURLs: ["/metrics"]\n`,
    errors: [
      'p.yaml:6:20: rules[0].nonResourceURLs: a rule selects resources (resources, namespaces) or non-resource ' +
        'URLs, not both',
    ],
    upstream: 'refuses',
  },
  {
    name: 'no rules',
    text: `${HEAD}rules: []\n`,
    errors: ['p.yaml:3:8: rules: a policy needs at least one rule (with none, nothing is recorded)'],
    upstream: 'refuses',
  },
  {
    name: 'no rules field',
    text: `${HEAD}omitStages: [Panic]\n`,
    errors: ['p.yaml: rules: a policy needs at least one rule (with none, nothing is recorded)'],
    upstream: 'refuses',
  },
  {
    name: 'an older apiVersion',
    text: 'apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: None\n',
    errors: [
      'p.yaml:1:13: apiVersion: must be "audit.k8s.io/v1", not "audit.k8s.io/v1beta1" (the API server no longer ' +
        'serves the older versions; the fields are the same)',
    ],
    upstream: 'refuses',
  },
  {
    name: 'no apiVersion',
    text: 'kind: Policy\nrules:\n- level: None\n',
    errors: ['p.yaml: apiVersion: required: "audit.k8s.io/v1"'],
    upstream: 'refuses',
  },
  {
    name: 'another kind',
    text: 'apiVersion: audit.k8s.io/v1\nkind: PolicyList\nrules:\n- level: None\n',
    errors: ['p.yaml:2:7: kind: must be "Policy", not "PolicyList"'],
    upstream: 'refuses',
  },
  {
    name: 'a list where a mapping belongs',
    text: `${HEAD}rules:\n- [level, None]\n`,
    errors: ['p.yaml:4:3: rules[0]: must be a mapping (a rule), not a list'],
    upstream: 'refuses',
  },
  {
    name: 'a string where a list belongs',
    text: `${HEAD}rules:\n- level: None\n  users: alice\n`,
    errors: ['p.yaml:5:10: rules[0].users: must be a list, not "alice"'],
    upstream: 'refuses',
  },
  {
    name: 'an unquoted YAML 1.1 boolean where a string belongs',
    text: `${HEAD}rules:\n- level: None\n  namespaces: [default, on]\n`,
    errors: [
      'p.yaml:5:25: rules[0].namespaces[1]: must be a string, not the boolean on (quote it: the API server reads ' +
        'it as YAML 1.1, where it is not a string)',
    ],
    upstream: 'refuses',
  },
  {
    name: 'an unquoted number where a string belongs',
    text: `${HEAD}rules:\n- level: None\n  users: [0777]\n`,
    errors: [
      'p.yaml:5:11: rules[0].users[0]: must be a string, not the number 0777 (quote it: the API server reads it ' +
        'as YAML 1.1, where it is not a string)',
    ],
    upstream: 'refuses',
  },
  {
    name: 'a string where a boolean belongs',
    text: `${HEAD}rules:\n- level: None\n  omitManagedFields: "true"\n`,
    errors: ['p.yaml:5:22: rules[0].omitManagedFields: must be true or false, not "true"'],
    upstream: 'refuses',
  },
  {
    name: 'a YAML syntax error',
    text: `${HEAD}rules:\n- level: [None\n`,
    errors: ['p.yaml:5:1: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    upstream: 'refuses',
  },
  {
    name: 'invalid JSON',
    text: '{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None"},]}',
    errors: [
      'p.yaml: not valid JSON (a text that starts with "{" is read as JSON): Unexpected comma at the end of ' +
        'array expression',
    ],
    upstream: 'refuses',
  },
  {
    name: 'an unknown field in a rule',
    text: `${HEAD}rules:\n- level: None\n  verb: [create]\n`,
    errors: [
      'p.yaml:5:3: rules[0]: unknown field "verb" (known: level, users, userGroups, verbs, resources, namespaces, ' +
        'nonResourceURLs, omitStages, omitManagedFields)',
    ],
    upstream: 'warns',
  },
  {
    name: 'a field name in the wrong case',
    text: `${HEAD}rules:\n- level: None\n  resources:\n  - group: ""\n    Resources: [pods]\n`,
    errors: ['p.yaml:7:5: rules[0].resources[0]: unknown field "Resources" (did you mean "resources"?)'],
    upstream: 'warns',
  },
  {
    name: 'an unknown field at the top',
    text: `${HEAD}omitStage: [RequestReceived]\nrules:\n- level: None\n`,
    errors: [
      'p.yaml:3:1: unknown field "omitStage" (known: apiVersion, kind, metadata, rules, omitStages, ' +
        'omitManagedFields)',
    ],
    upstream: 'warns',
  },
  {
    name: 'a duplicated field',
    text: `${HEAD}rules:\n- level: RequestResponse\n  resources: [{group: ""}]\n  level: None\n`,
    errors: ['p.yaml:6:3: rules[0]: duplicated field "level"'],
    upstream: 'warns',
  },
  {
    name: 'a duplicated field in JSON',
    text: '{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None"}], "kind": "Policy"}',
    errors: ['p.yaml:1:83: duplicated field "kind"'],
    upstream: 'warns',
  },
];
