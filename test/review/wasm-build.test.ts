import { describe, expect, it } from 'bun:test';
import { join } from 'node:path';

const root = join(import.meta.dir, '..', '..');

describe('src/review/wasm/json-scan.wasm.ts', () => {
  it('is what src/review/wasm/json-scan.c compiles to', () => {
    // clang and wasm-ld come from Debian (clang, lld); .ci/run installs them. Missing means a broken
    // setup, not a pass: the committed module must never drift from its source.
    for (const tool of ['clang', 'wasm-ld']) {
      if (Bun.which(tool) === null) throw new Error(`${tool} is not installed: apt-get install clang lld`);
    }
    const run = Bun.spawnSync(['bash', join(root, 'src', 'review', 'wasm', 'build.sh'), '--check'], {
      stdout: 'pipe',
      stderr: 'pipe',
    });
    expect(run.stderr.toString()).toBe('');
    expect(run.exitCode).toBe(0);
  });
});
