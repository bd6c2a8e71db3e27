/**
 * @module test/setup — testing/setup/setup.sh, the one step that prepares a machine for the tests: it reads
 * a needs file, names what it cannot install, runs build scripts, and runs a command with tool folders on
 * PATH. Also checks that the repository's own needs.txt covers the tools the tests call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(import.meta.dir, '..', '..');
const SETUP = join(REPO, 'testing', 'setup', 'setup.sh');
const NEEDS = join(REPO, 'testing', 'setup', 'needs.txt');
/** The set-up with nothing to install takes well under a second; this only stops a hang. */
const SETUP_TIMEOUT_MS = 30_000;

type Result = { code: number; stdout: string; stderr: string };

/** Runs setup.sh with `args`, from the repository, with `env` over the test's own environment. */
function setup(args: string[], env: Record<string, string> = {}): Result {
  const run = Bun.spawnSync(['bash', SETUP, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdout: 'pipe',
    stderr: 'pipe',
    timeout: SETUP_TIMEOUT_MS,
  });
  return { code: run.exitCode ?? -1, stdout: run.stdout.toString(), stderr: run.stderr.toString() };
}

let dir: string;

/** Writes a needs file into the temp folder and returns its path. */
function needsFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-setup-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('testing/setup/setup.sh', () => {
  it('exits 1 naming the Debian package and the apt-get line when a command is missing and --check forbids installing', () => {
    const needs = needsFile(
      'missing.txt',
      'deb sh dash   # present everywhere\ndeb kar-no-such-command kar-no-such-package\n',
    );
    const result = setup(['--check', '--needs', needs]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Debian packages: kar-no-such-package');
    expect(result.stderr).toContain('sudo apt-get install kar-no-such-package');
    expect(result.stderr).not.toContain('dash');
  });

  it('exits 1 naming the PyPI requirement when a pip command is missing and --check forbids installing', () => {
    const needs = needsFile('pip.txt', 'pip kar-no-such-tool kar-no-such-tool==1.0\n');
    const result = setup(['--check', '--needs', needs]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('pip install kar-no-such-tool==1.0');
  });

  it('exits 2 naming the file and line when a line is not one of the four kinds', () => {
    const needs = needsFile('bad.txt', '# fine\ndeb sh dash\nbrew jq jq\n');
    const result = setup(['--check', '--needs', needs]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${needs}:3: unknown kind 'brew'`);
  });

  it('runs each build script with its arguments and stops naming the script when one fails', () => {
    const ok = join(dir, 'ok.sh');
    const fail = join(dir, 'fail.sh');
    const mark = join(dir, 'built');
    writeFileSync(ok, `echo "$1 $2" > ${mark}\n`);
    writeFileSync(fail, 'exit 3\n');
    const good = setup(['--needs', needsFile('build-ok.txt', `build ${ok} first second\n`)]);
    expect(good.code).toBe(0);
    expect(readFileSync(mark, 'utf8')).toBe('first second\n');
    const bad = setup(['--needs', needsFile('build-fail.txt', `build ${ok} a b\nbuild ${fail}\n`)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${fail} failed`);
  });

  it('runs the command after -- with each path folder in front of PATH, $VAR winning over the default', () => {
    const needs = needsFile('path.txt', 'path KAR_SETUP_TEST_DIR .cache/kar-default\n');
    const fromDefault = setup(['--needs', needs, '--', 'sh', '-c', 'echo "$PATH"']);
    expect(fromDefault.code).toBe(0);
    expect(fromDefault.stdout.split(':')[0]).toBe(join(REPO, '.cache', 'kar-default'));
    const fromVar = setup(['--needs', needs, '--', 'sh', '-c', 'echo "$PATH"'], {
      KAR_SETUP_TEST_DIR: '/opt/kar',
    });
    expect(fromVar.stdout.split(':')[0]).toBe('/opt/kar');
  });

  it("passes the command's exit status through", () => {
    const needs = needsFile('empty.txt', '# nothing needed\n');
    expect(setup(['--needs', needs, '--', 'sh', '-c', 'exit 7']).code).toBe(7);
  });

  it('finds every tool of needs.txt in place once `bun run test` has run it', () => {
    const result = setup(['--check']);
    expect({ code: result.code, stderr: result.stderr }).toEqual({
      code: 0,
      stderr: expect.stringContaining('setup: ready'),
    });
  });

  it('declares every external command the tests look up with Bun.which', () => {
    const needs = readFileSync(NEEDS, 'utf8');
    const declared = new Set(
      needs
        .split('\n')
        .map((l) => (l.split('#')[0] ?? '').trim().split(/\s+/))
        .filter((w) => w[0] === 'deb' || w[0] === 'pip')
        .map((w) => w[1]),
    );
    // Part of every Debian system (util-linux), or found through a `path` line (kubectl).
    const alwaysThere = new Set(['unshare', 'mount', 'umount', 'kubectl']);
    const looked: string[] = [];
    const walk = (folder: string) => {
      for (const name of readdirSync(folder)) {
        const path = join(folder, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts'))
          for (const m of readFileSync(path, 'utf8').matchAll(/Bun\.which\('([^']+)'\)/g))
            if (m[1] !== undefined) looked.push(m[1]);
      }
    };
    walk(join(REPO, 'test'));
    expect(looked.length).toBeGreaterThan(0);
    expect([...new Set(looked)].filter((c) => !declared.has(c) && !alwaysThere.has(c))).toEqual([]);
  });
});
