import { describe, expect, it } from 'bun:test';
import {
  minimisePatterns,
  patternsOfEntry,
  type ResourcePattern,
  webhookResource,
} from '../../src/webhook-config/resource-patterns.ts';

const ANY = undefined;
const p = (resource: string | undefined, subresource: string | undefined): ResourcePattern => ({
  resource,
  subresource,
});

describe('patternsOfEntry', () => {
  it('reads each form of a policy resource entry', () => {
    expect(patternsOfEntry('*')).toEqual([p(ANY, ANY)]);
    expect(patternsOfEntry('pods')).toEqual([p('pods', '')]);
    expect(patternsOfEntry('pods/exec')).toEqual([p('pods', 'exec')]);
    // `res/*` matches the resource with any subresource or none (no subresource check upstream).
    expect(patternsOfEntry('pods/*')).toEqual([p('pods', ANY)]);
    expect(patternsOfEntry('*/scale')).toEqual([p(ANY, 'scale')]);
  });

  it('leaves out what no request can match, for the degenerate forms the API server accepts', () => {
    for (const entry of ['*/*', '*/', '/*', 'pods/', '/', 'a/b/c']) {
      expect({ entry, patterns: patternsOfEntry(entry) }).toEqual({ entry, patterns: [] });
    }
  });
});

describe('minimisePatterns', () => {
  it('drops what a wider pattern covers, and duplicates, and sorts', () => {
    expect(minimisePatterns([p('pods', ''), p(ANY, ANY), p('x', 'y')])).toEqual([p(ANY, ANY)]);
    expect(minimisePatterns([p('pods', 'exec'), p('pods', ANY), p('pods', '')])).toEqual([p('pods', ANY)]);
    expect(minimisePatterns([p('deployments', 'scale'), p(ANY, 'scale'), p('pods', 'status')])).toEqual([
      p(ANY, 'scale'),
      p('pods', 'status'),
    ]);
    expect(minimisePatterns([p('b', ''), p('a', ''), p('b', '')])).toEqual([p('a', ''), p('b', '')]);
  });
});

describe('webhookResource', () => {
  it('writes the entry a webhook rule matches the same requests with', () => {
    expect(webhookResource(p(ANY, ANY))).toBe('*/*');
    expect(webhookResource(p(ANY, ''))).toBe('*');
    expect(webhookResource(p(ANY, 'scale'))).toBe('*/scale');
    expect(webhookResource(p('pods', ANY))).toBe('pods/*');
    expect(webhookResource(p('pods', ''))).toBe('pods');
    expect(webhookResource(p('pods', 'exec'))).toBe('pods/exec');
  });
});
