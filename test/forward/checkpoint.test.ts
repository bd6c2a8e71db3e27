/** @module Tests of the forwarding checkpoint file: round trip, atomic replacement, refusal of damaged files. */

import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Checkpoint, readCheckpoint, writeCheckpoint } from '../../src/forward/checkpoint.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';

const sample: Checkpoint = {
  file: { dev: '2049', ino: '18446744073709551615', fingerprint: 'a'.repeat(64), fingerprintBytes: 1024 },
  path: '/var/log/audit.log',
  offset: 4096,
  size: 8192,
  order: 1_764_892_800_000,
  updatedAt: 1_764_892_801_000,
};

describe('checkpoint', () => {
  let dir = '';
  beforeEach(() => {
    dir = makeTempDir('checkpoint');
  });
  afterEach(() => removeDir(dir));

  it('reads back what it wrote, a 64-bit inode included', () => {
    const path = join(dir, 'cp.json');
    writeCheckpoint(path, sample);
    expect(readCheckpoint(path)).toEqual(sample);
    expect(existsSync(`${path}.tmp`)).toBe(false);
  });

  it('replaces the previous checkpoint whole', () => {
    const path = join(dir, 'cp.json');
    writeCheckpoint(path, { ...sample, path: `/${'x'.repeat(500)}` });
    writeCheckpoint(path, sample);
    expect(readCheckpoint(path)).toEqual(sample);
    expect(readFileSync(path, 'utf8').endsWith('}\n')).toBe(true);
  });

  it('says there is none when the file does not exist', () => {
    expect(readCheckpoint(join(dir, 'none.json'))).toBeUndefined();
  });

  it('refuses a damaged file, naming it and the field', () => {
    const path = join(dir, 'cp.json');
    writeFileSync(path, '{"version":1');
    expect(() => readCheckpoint(path)).toThrow(`checkpoint file ${path}: not JSON`);
    writeFileSync(path, JSON.stringify({ version: 2 }));
    expect(() => readCheckpoint(path)).toThrow('version must be 1');
    writeFileSync(path, JSON.stringify({ version: 1, ...sample, offset: 9000 }));
    expect(() => readCheckpoint(path)).toThrow('offset must not exceed size');
    writeFileSync(
      path,
      JSON.stringify({ version: 1, ...sample, file: { ...sample.file, fingerprint: 'zz' } }),
    );
    expect(() => readCheckpoint(path)).toThrow('file.fingerprint');
  });

  it('fails with the path when the directory is missing', () => {
    const path = join(dir, 'missing', 'cp.json');
    expect(() => writeCheckpoint(path, sample)).toThrow(`cannot write checkpoint file ${path}`);
  });
});
