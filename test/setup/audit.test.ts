import { describe, expect, it } from 'bun:test';
import { readAuditOutput } from '../../testing/setup/audit.ts';

describe('the dependency audit', () => {
  it('fails on advisories, passes a clean report, and tells an unreachable service apart', () => {
    // Output shapes of `bun audit` 1.4.4: a finding, a clean run, the advisory service refusing the request.
    const finding =
      'bun audit v1.4.4\n\nsome-package  <1.2.3\n  high: Prototype pollution - https://github.com/advisories/GHSA-abcd-1234-wxyz\n\n1 vulnerabilities (1 high)\n';
    expect(readAuditOutput(finding, 1)).toEqual({ kind: 'findings', text: finding });
    expect(readAuditOutput('bun audit v1.4.4\nNo vulnerabilities found\n', 0)).toEqual({ kind: 'clean' });
    expect(readAuditOutput('bun audit v1.4.4\nsomething went wrong\n', 1).kind).toBe('findings');
    expect(readAuditOutput('bun audit v1.4.4\n', 0)).toEqual({ kind: 'clean' });
    expect(
      readAuditOutput(
        'bun audit v1.4.4 (38afee6c8)\n\nerror: POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk - 405\n',
        0,
      ),
    ).toEqual({
      kind: 'unreachable',
      why: 'error: POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk - 405',
    });
  });
});
