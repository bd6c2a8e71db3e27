/**
 * @module test/shell-scripts — shellcheck on every shell script in the repository (tracked, or new and not
 * ignored), at its default severity: any finding, style included, fails.
 */
import { describe, expect, it } from 'bun:test';
import { resolve } from 'node:path';

const REPO = resolve(import.meta.dir, '..');
/** shellcheck takes well under a second per script; this only stops a hang. */
const SHELLCHECK_TIMEOUT_MS = 30_000;

/** The repository's `*.sh` files: tracked ones plus untracked ones git does not ignore. */
function shellScripts(): string[] {
  const git = Bun.spawnSync(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '--', '*.sh'], {
    cwd: REPO,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  if (git.exitCode !== 0) throw new Error(`git ls-files failed: ${git.stderr.toString()}`);
  return [...new Set(git.stdout.toString().split('\n').filter(Boolean))].sort();
}

const shellcheck = Bun.which('shellcheck');
const scripts = shellScripts();

describe('shell scripts', () => {
  if (shellcheck === null) {
    // Fail, never skip: CI installs the Debian package shellcheck.
    it('has shellcheck on PATH', () => {
      throw new Error('shellcheck is not on PATH: apt-get install shellcheck');
    });
    return;
  }

  it('finds shell scripts to check', () => {
    expect(scripts).toContain('k8s/scripts/make-certs.sh');
  });

  for (const script of scripts) {
    it(`finds nothing in ${script} when shellcheck reads it`, async () => {
      const proc = Bun.spawn([shellcheck, '--format=gcc', script], {
        cwd: REPO,
        stdout: 'pipe',
        stderr: 'pipe',
        timeout: SHELLCHECK_TIMEOUT_MS,
      });
      const [code, stdout, stderr] = await Promise.all([
        proc.exited,
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
      ]);
      expect({ findings: stdout, stderr, code }).toEqual({ findings: '', stderr: '', code: 0 });
    });
  }
});
