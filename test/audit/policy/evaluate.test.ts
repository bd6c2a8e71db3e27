import { describe, expect, it } from 'bun:test';
import { attributesReadBy, createPolicyEvaluator } from '../../../src/audit/policy/evaluate.ts';
import type {
  GroupResources,
  Policy,
  PolicyRule,
  RequestAttributes,
} from '../../../src/audit/policy/types.ts';

/** A rule that selects everything, with `fields` on top. */
function rule(fields: Partial<PolicyRule>): PolicyRule {
  return {
    level: 'Metadata',
    users: [],
    userGroups: [],
    verbs: [],
    resources: [],
    namespaces: [],
    nonResourceURLs: [],
    omitStages: [],
    omitManagedFields: undefined,
    ...fields,
  };
}

function group(name: string, resources: string[] = [], resourceNames: string[] = []): GroupResources {
  return { group: name, resources, resourceNames };
}

function policy(rules: PolicyRule[], fields: Partial<Policy> = {}): Policy {
  return { rules, omitStages: [], omitManagedFields: false, ...fields };
}

const POD_UPDATE: RequestAttributes = {
  username: 'alice',
  groups: ['devs', 'system:authenticated'],
  verb: 'update',
  namespace: 'shop',
  apiGroup: '',
  resource: 'pods',
  subresource: '',
  name: 'web-0',
};

function request(fields: Partial<RequestAttributes>): RequestAttributes {
  return { ...POD_UPDATE, ...fields };
}

/** The level the one-rule policy `only` gives `attrs`: Metadata when it matches, None when not. */
function levelOf(only: Partial<PolicyRule>, attrs: Partial<RequestAttributes>) {
  return createPolicyEvaluator(policy([rule(only)]))(request(attrs)).level;
}

/** RequestAttributes that records the name of every property read, in order. */
function recording(attrs: RequestAttributes): { attrs: RequestAttributes; reads: string[] } {
  const reads: string[] = [];
  const proxy = new Proxy(attrs, {
    get(target, property, receiver) {
      reads.push(String(property));
      return Reflect.get(target, property, receiver);
    },
  });
  return { attrs: proxy, reads };
}

describe('createPolicyEvaluator', () => {
  it('takes the first rule that matches, in order', () => {
    const evaluate = createPolicyEvaluator(
      policy([
        rule({ level: 'None', users: ['bob'] }),
        rule({ level: 'RequestResponse', resources: [group('', ['pods'])] }),
        rule({ level: 'Metadata' }),
      ]),
    );
    expect(evaluate(request({})).level).toBe('RequestResponse');
    expect(evaluate(request({ username: 'bob' })).level).toBe('None');
    expect(evaluate(request({ resource: 'secrets' })).level).toBe('Metadata');
  });

  it("answers None with the policy's omitStages and omitManagedFields when no rule matches", () => {
    const evaluate = createPolicyEvaluator(
      policy([rule({ users: ['bob'], omitStages: ['Panic'], omitManagedFields: false })], {
        omitStages: ['ResponseStarted', 'RequestReceived', 'ResponseStarted'],
        omitManagedFields: true,
      }),
    );
    expect(evaluate(request({}))).toEqual({
      level: 'None',
      omitStages: ['RequestReceived', 'ResponseStarted'],
      omitManagedFields: true,
    });
  });

  it("omits the policy's stages and the rule's together, each once, in the order they happen", () => {
    const evaluate = createPolicyEvaluator(
      policy([rule({ omitStages: ['Panic', 'RequestReceived'] })], {
        omitStages: ['ResponseComplete', 'Panic'],
      }),
    );
    expect(evaluate(request({})).omitStages).toEqual(['RequestReceived', 'ResponseComplete', 'Panic']);
  });

  it("takes the rule's omitManagedFields when it sets one, else the policy's", () => {
    const evaluate = (ruleValue: boolean | undefined, policyValue: boolean) =>
      createPolicyEvaluator(
        policy([rule({ omitManagedFields: ruleValue })], { omitManagedFields: policyValue }),
      )(request({})).omitManagedFields;
    expect(evaluate(undefined, true)).toBe(true);
    expect(evaluate(undefined, false)).toBe(false);
    expect(evaluate(false, true)).toBe(false);
    expect(evaluate(true, false)).toBe(true);
  });

  it('returns one frozen decision per rule, shared between requests', () => {
    const evaluate = createPolicyEvaluator(policy([rule({ verbs: ['delete'] })]));
    const first = evaluate(request({}));
    expect(evaluate(request({ username: 'bob' }))).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.omitStages)).toBe(true);
  });

  it('matches users by exact name, userGroups by any one group, verbs exactly', () => {
    expect(levelOf({ users: ['alice'] }, {})).toBe('Metadata');
    expect(levelOf({ users: ['Alice', 'alice@example.com'] }, {})).toBe('None');
    expect(levelOf({ userGroups: ['ops', 'devs'] }, {})).toBe('Metadata');
    expect(levelOf({ userGroups: ['ops'] }, {})).toBe('None');
    expect(levelOf({ userGroups: ['devs'] }, { groups: [] })).toBe('None');
    expect(levelOf({ verbs: ['update'] }, {})).toBe('Metadata');
    expect(levelOf({ verbs: ['UPDATE', 'patch'] }, {})).toBe('None');
  });

  it('needs every selector of a rule to match', () => {
    expect(levelOf({ users: ['alice'], verbs: ['delete'] }, {})).toBe('None');
    expect(levelOf({ users: ['alice'], verbs: ['update'], namespaces: ['shop'] }, {})).toBe('Metadata');
  });

  it('matches namespaces exactly, "" being cluster-scoped', () => {
    expect(levelOf({ namespaces: ['shop'] }, {})).toBe('Metadata');
    expect(levelOf({ namespaces: ['shop'] }, { namespace: '' })).toBe('None');
    expect(levelOf({ namespaces: [''] }, { namespace: '', resource: 'nodes' })).toBe('Metadata');
    expect(levelOf({ namespaces: [''] }, {})).toBe('None');
  });

  it('matches a group by name or "*", and an entry without resources takes the whole group', () => {
    expect(levelOf({ resources: [group('')] }, { subresource: 'exec' })).toBe('Metadata');
    expect(levelOf({ resources: [group('apps')] }, {})).toBe('None');
    expect(levelOf({ resources: [group('apps')] }, { apiGroup: 'apps', resource: 'deployments' })).toBe(
      'Metadata',
    );
    expect(levelOf({ resources: [group('*', ['pods'])] }, {})).toBe('Metadata');
    expect(levelOf({ resources: [group('apps', ['pods']), group('', ['pods'])] }, {})).toBe('Metadata');
  });

  it('matches pods only without subresource, and pods/exec only with it', () => {
    const pods = { resources: [group('', ['pods'])] };
    expect(levelOf(pods, {})).toBe('Metadata');
    expect(levelOf(pods, { subresource: 'log' })).toBe('None');
    const exec = { resources: [group('', ['pods/exec'])] };
    expect(levelOf(exec, { subresource: 'exec' })).toBe('Metadata');
    expect(levelOf(exec, {})).toBe('None');
    expect(levelOf(exec, { subresource: 'attach' })).toBe('None');
  });

  it('matches "*" with or without subresource, "*/scale" on any resource, "pods/*" on pods itself too', () => {
    const any = { resources: [group('', ['*'])] };
    expect(levelOf(any, { resource: 'secrets' })).toBe('Metadata');
    expect(levelOf(any, { subresource: 'status' })).toBe('Metadata');
    const scale = { resources: [group('*', ['*/scale'])] };
    expect(levelOf(scale, { apiGroup: 'apps', resource: 'deployments', subresource: 'scale' })).toBe(
      'Metadata',
    );
    expect(levelOf(scale, { subresource: 'status' })).toBe('None');
    expect(levelOf(scale, {})).toBe('None');
    const podsAny = { resources: [group('', ['pods/*'])] };
    expect(levelOf(podsAny, { subresource: 'exec' })).toBe('Metadata');
    expect(levelOf(podsAny, {})).toBe('Metadata'); // upstream does not check that there is a subresource
    expect(levelOf(podsAny, { resource: 'secrets' })).toBe('None');
  });

  it('matches degenerate resource forms exactly as upstream spells them', () => {
    expect(levelOf({ resources: [group('', ['*/'])] }, {})).toBe('None');
    expect(levelOf({ resources: [group('', ['pods/'])] }, {})).toBe('None');
    expect(levelOf({ resources: [group('', ['*/*'])] }, { subresource: 'exec' })).toBe('None');
    expect(levelOf({ resources: [group('', ['pods/exec/x'])] }, { subresource: 'exec' })).toBe('None');
    expect(levelOf({ resources: [group('', ['pods/exec/x'])] }, { subresource: 'exec/x' })).toBe('Metadata');
  });

  it('matches resourceNames against the name, for the resources beside them only', () => {
    const named = { resources: [group('', ['configmaps'], ['controller-leader'])] };
    expect(levelOf(named, { resource: 'configmaps', name: 'controller-leader' })).toBe('Metadata');
    expect(levelOf(named, { resource: 'configmaps', name: 'other' })).toBe('None');
    expect(levelOf(named, { resource: 'configmaps', name: '' })).toBe('None');
    const twoGroups = { resources: [group('', ['configmaps'], ['a']), group('', ['configmaps'])] };
    expect(levelOf(twoGroups, { resource: 'configmaps', name: 'b' })).toBe('Metadata');
  });

  it('never matches a rule of nonResourceURLs: admission only sees resource requests', () => {
    const evaluate = createPolicyEvaluator(
      policy([rule({ level: 'RequestResponse', nonResourceURLs: ['*'] }), rule({ level: 'Request' })]),
    );
    expect(evaluate(request({})).level).toBe('Request');
  });

  it('reads only the attributes the rule at hand tests, in upstream order', () => {
    const evaluateUsers = createPolicyEvaluator(
      policy([rule({ users: ['bob'] }), rule({ verbs: ['update'] })]),
    );
    const first = recording(POD_UPDATE);
    evaluateUsers(first.attrs);
    expect(first.reads).toEqual(['username', 'verb']);

    const evaluateResources = createPolicyEvaluator(
      policy([
        rule({ namespaces: ['shop'], resources: [group('apps', ['deployments']), group('', ['pods'])] }),
      ]),
    );
    const second = recording(POD_UPDATE);
    expect(evaluateResources(second.attrs).level).toBe('Metadata');
    expect(second.reads).toEqual(['namespace', 'apiGroup', 'resource', 'subresource']);

    const evaluateNames = createPolicyEvaluator(
      policy([
        rule({ resources: [group('apps', ['deployments'], ['api']), group('', ['pods'], ['web-0'])] }),
      ]),
    );
    const third = recording(POD_UPDATE);
    expect(evaluateNames(third.attrs).level).toBe('Metadata');
    expect(third.reads).toEqual(['apiGroup', 'name', 'resource', 'subresource']);

    const evaluateNothing = createPolicyEvaluator(policy([rule({ level: 'Request' })]));
    const fourth = recording(POD_UPDATE);
    evaluateNothing(fourth.attrs);
    expect(fourth.reads).toEqual([]);
  });
});

describe('attributesReadBy', () => {
  it('lists the attributes some rule tests, and no other', () => {
    expect([...attributesReadBy(policy([rule({ level: 'None' })]))]).toEqual([]);
    expect([
      ...attributesReadBy(
        policy([
          rule({ verbs: ['create'], users: ['a'] }),
          rule({ resources: [group('', ['pods'], ['x'])] }),
        ]),
      ),
    ]).toEqual(['username', 'verb', 'apiGroup', 'resource', 'subresource', 'name']);
    expect([
      ...attributesReadBy(policy([rule({ userGroups: ['g'], namespaces: [''], resources: [group('')] })])),
    ]).toEqual(['groups', 'namespace', 'apiGroup']);
  });
});
