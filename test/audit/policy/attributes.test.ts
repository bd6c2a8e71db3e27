import { describe, expect, it } from 'bun:test';
import { attributesFromAdmission } from '../../../src/audit/policy/attributes.ts';
import { createPolicyEvaluator } from '../../../src/audit/policy/evaluate.ts';
import { loadPolicy } from '../../../src/audit/policy/load.ts';
import type { AdmissionFields, RequestAttributes } from '../../../src/audit/policy/types.ts';

const PODS = { group: '', version: 'v1', resource: 'pods' };

/** A pod update in namespace shop by alice, with `fields` on top. */
function fields(overrides: Partial<AdmissionFields>): AdmissionFields {
  return {
    operation: 'UPDATE',
    userInfo: { username: 'alice', groups: ['devs', 'system:authenticated'] },
    resource: PODS,
    subResource: undefined,
    requestResource: PODS,
    requestSubResource: undefined,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    name: 'web-0',
    namespace: 'shop',
    ...overrides,
  };
}

/** All eight attributes, read into a plain object. */
function all(attrs: RequestAttributes) {
  const { username, groups, verb, namespace, apiGroup, resource, subresource, name } = attrs;
  return { username, groups, verb, namespace, apiGroup, resource, subresource, name };
}

/** AdmissionFields that record which field is read, in order. */
function recording(source: AdmissionFields): { fields: AdmissionFields; reads: string[] } {
  const reads: string[] = [];
  const proxy = new Proxy(source, {
    get(target, property, receiver) {
      reads.push(String(property));
      return Reflect.get(target, property, receiver);
    },
  });
  return { fields: proxy, reads };
}

describe('attributesFromAdmission', () => {
  it('maps a pod update to what the API server sees', () => {
    expect(all(attributesFromAdmission(fields({})))).toEqual({
      username: 'alice',
      groups: ['devs', 'system:authenticated'],
      verb: 'update',
      namespace: 'shop',
      apiGroup: '',
      resource: 'pods',
      subresource: '',
      name: 'web-0',
    });
  });

  it('maps CREATE, UPDATE and DELETE to their verbs, CONNECT to create, anything else to no verb', () => {
    const verb = (operation: string) => attributesFromAdmission(fields({ operation })).verb;
    expect(['CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'PATCH', ''].map(verb)).toEqual([
      'create',
      'update',
      'delete',
      'create',
      '',
      '',
    ]);
  });

  it("takes the URL's resource and subresource from requestResource when it is there", () => {
    const attrs = attributesFromAdmission(
      fields({
        resource: { group: 'extensions', version: 'v1beta1', resource: 'deployments' },
        subResource: 'scale',
        requestResource: { group: 'apps', version: 'v1', resource: 'deployments' },
        requestSubResource: 'scale',
      }),
    );
    expect([attrs.apiGroup, attrs.resource, attrs.subresource]).toEqual(['apps', 'deployments', 'scale']);
  });

  it('pairs requestSubResource with requestResource: its absence means no subresource', () => {
    const attrs = attributesFromAdmission(fields({ subResource: 'status', requestSubResource: undefined }));
    expect([attrs.resource, attrs.subresource]).toEqual(['pods', '']);
  });

  it('falls back to resource and subResource without requestResource', () => {
    const attrs = attributesFromAdmission(
      fields({ requestResource: undefined, subResource: 'exec', requestSubResource: 'ignored' }),
    );
    expect([attrs.apiGroup, attrs.resource, attrs.subresource]).toEqual(['', 'pods', 'exec']);
    const bare = attributesFromAdmission(fields({ requestResource: undefined, resource: undefined }));
    expect([bare.apiGroup, bare.resource, bare.subresource]).toEqual(['', '', '']);
  });

  it('drops the name of a create without subresource, which POSTs to the collection', () => {
    expect(attributesFromAdmission(fields({ operation: 'CREATE' })).name).toBe('');
    const binding = fields({ operation: 'CREATE', subResource: 'binding', requestSubResource: 'binding' });
    expect(attributesFromAdmission(binding).name).toBe('web-0');
    const exec = fields({ operation: 'CONNECT', subResource: 'exec', requestSubResource: 'exec' });
    expect(attributesFromAdmission(exec).name).toBe('web-0');
    expect(attributesFromAdmission(fields({ operation: 'DELETE' })).name).toBe('web-0');
    expect(attributesFromAdmission(fields({ name: undefined })).name).toBe('');
  });

  it('makes a Namespace create cluster-scoped, and keeps the namespace of its update and delete', () => {
    const namespaces = { group: '', version: 'v1', resource: 'namespaces' };
    const namespace = (operation: string, sub?: string) =>
      attributesFromAdmission(
        fields({
          operation,
          resource: namespaces,
          requestResource: namespaces,
          subResource: sub,
          requestSubResource: sub,
          name: 'team-a',
          namespace: 'team-a',
        }),
      ).namespace;
    expect(namespace('CREATE')).toBe('');
    expect(namespace('UPDATE')).toBe('team-a');
    expect(namespace('DELETE')).toBe('team-a');
    expect(namespace('UPDATE', 'finalize')).toBe('team-a');
    expect(attributesFromAdmission(fields({ operation: 'CREATE' })).namespace).toBe('shop');
    const otherGroup = { group: 'example.com', version: 'v1', resource: 'namespaces' };
    expect(
      attributesFromAdmission(fields({ operation: 'CREATE', requestResource: otherGroup, namespace: 'x' }))
        .namespace,
    ).toBe('x');
  });

  it('reads a missing user, groups and namespace as empty', () => {
    const attrs = attributesFromAdmission(fields({ userInfo: {}, namespace: undefined }));
    expect([attrs.username, attrs.groups, attrs.namespace]).toEqual(['', [], '']);
  });

  it('reads only the fields each attribute needs, once', () => {
    const user = recording(fields({}));
    const attrs = attributesFromAdmission(user.fields);
    expect(attrs.username).toBe('alice');
    expect(user.reads).toEqual(['userInfo']);
    expect(attrs.verb).toBe('update');
    expect(user.reads).toEqual(['userInfo', 'operation']);
    expect([attrs.username, attrs.verb]).toEqual(['alice', 'update']);
    expect(user.reads).toEqual(['userInfo', 'operation']);

    const resource = recording(fields({}));
    const resourceAttrs = attributesFromAdmission(resource.fields);
    expect([resourceAttrs.apiGroup, resourceAttrs.resource, resourceAttrs.subresource]).toEqual([
      '',
      'pods',
      '',
    ]);
    expect(resource.reads).toEqual(['requestResource', 'requestSubResource']);
    expect(resourceAttrs.name).toBe('web-0');
    expect(resource.reads).toEqual(['requestResource', 'requestSubResource', 'operation', 'name']);
    expect(resource.reads).not.toContain('kind');
  });

  it('reads, under a policy, only the AdmissionRequest fields its rules test', () => {
    const loaded = loadPolicy(
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  users: [system:kube-proxy]\n' +
        '- level: Request\n  verbs: [delete]\n- level: Metadata\n',
      'p.yaml',
    );
    if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
    const evaluate = createPolicyEvaluator(loaded.policy);
    const update = recording(fields({}));
    expect(evaluate(attributesFromAdmission(update.fields)).level).toBe('Metadata');
    expect(update.reads).toEqual(['userInfo', 'operation']);
  });
});
