/**
 * @module An audit Policy's resource entries (`pods`, `pods/exec`, `pods/*`, `*\/scale`, `*`) as patterns of
 * (resource, subresource): the one form that both a webhook rule and a CEL condition can state.
 *
 * An entry matches what src/audit/policy/evaluate.ts matches, string for string: `*` everything; the text
 * itself when the request names no subresource; `resource/subresource` spelt exactly so; `*\/sub` any
 * resource's `sub`; `res/*` the resource with any subresource or none. A pattern that no request can match
 * is left out: the API server takes the resource and the subresource from single URL path segments, so
 * neither ever holds a `/`, and no API serves a resource named "" or `*`, nor a subresource named `*`.
 */

/** A set of requests by URL resource: `resource` undefined is any resource, `subresource` undefined any
 *  subresource or none, and `subresource` "" none. */
export type ResourcePattern = {
  readonly resource: string | undefined;
  readonly subresource: string | undefined;
};

/** A resource name some request can carry (see the module comment). */
function possibleResource(name: string): boolean {
  return name !== '' && name !== '*' && !name.includes('/');
}

/** A subresource some request can carry; "" is none. */
function possibleSubresource(name: string): boolean {
  return name !== '*' && !name.includes('/');
}

/** The patterns one resource entry of a policy rule matches, as evaluate.ts reads the entry. */
export function patternsOfEntry(text: string): ResourcePattern[] {
  if (text === '*') return [{ resource: undefined, subresource: undefined }];
  const found: ResourcePattern[] = [{ resource: text, subresource: '' }];
  // `resource/subresource` spelt exactly so: the resource is the text up to some '/', the subresource the
  // (non-empty) rest.
  for (let slash = text.indexOf('/'); slash >= 0; slash = text.indexOf('/', slash + 1)) {
    const subresource = text.slice(slash + 1);
    if (subresource !== '') found.push({ resource: text.slice(0, slash), subresource });
  }
  if (text.startsWith('*/') && text.length > 2)
    found.push({ resource: undefined, subresource: text.slice(2) });
  if (text.endsWith('/*')) found.push({ resource: text.slice(0, -2), subresource: undefined });
  return found.filter(
    (p) =>
      (p.resource === undefined || possibleResource(p.resource)) &&
      (p.subresource === undefined || possibleSubresource(p.subresource)),
  );
}

/**
 * Drops the patterns another one covers (any-any covers all; `res` with any subresource covers `res` with
 * one; any resource with `sub` covers each resource with `sub`) and duplicates; sorted, so equal sets read
 * the same. The result is also what a webhook rule's `resources` may list together.
 */
export function minimisePatterns(patterns: Iterable<ResourcePattern>): ResourcePattern[] {
  const all = [...patterns];
  if (all.some((p) => p.resource === undefined && p.subresource === undefined)) {
    return [{ resource: undefined, subresource: undefined }];
  }
  const anySub = new Set(all.filter((p) => p.subresource === undefined).map((p) => p.resource as string));
  const anyResource = new Set(
    all.filter((p) => p.resource === undefined).map((p) => p.subresource as string),
  );
  const kept = new Map<string, ResourcePattern>();
  for (const p of all) {
    const covered =
      p.resource !== undefined &&
      p.subresource !== undefined &&
      (anySub.has(p.resource) || anyResource.has(p.subresource));
    if (!covered) kept.set(webhookResource(p), p);
  }
  return [...kept.keys()].sort().map((key) => kept.get(key) as ResourcePattern);
}

/**
 * The pattern as a webhook rule's resource entry: the API server splits an entry at its first `/`, and
 * matches `*` for any resource, `*` after the `/` for any subresource or none, and no `/` for none.
 */
export function webhookResource(p: ResourcePattern): string {
  const resource = p.resource ?? '*';
  if (p.subresource === '') return resource;
  return `${resource}/${p.subresource ?? '*'}`;
}
