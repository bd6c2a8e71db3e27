/** @module Tests of listing the audit log and its backups in rotation order. */

import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { listLogFiles } from '../../src/forward/log-files.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';

describe('listLogFiles', () => {
  let dir = '';
  beforeEach(() => {
    dir = makeTempDir('log-files');
  });
  afterEach(() => removeDir(dir));

  it('lists backups oldest first, the live file last, a plain backup over its .gz twin, and nothing else', () => {
    for (const name of [
      'audit.log',
      'audit-2026-01-02T00-00-00.000.log.gz',
      'audit-2026-01-01T00-00-00.000.log',
      'audit-2026-01-03T00-00-00.000.log',
      'audit-2026-01-03T00-00-00.000.log.gz',
      'audit-2026-01-04T00-00-00.000.log.gz.tmp',
      'audit-2026-13-01T00-00-00.000.log',
      'other.log',
      'checkpoint.json',
    ]) {
      writeFileSync(join(dir, name), name);
    }
    const files = listLogFiles(join(dir, 'audit.log'));
    expect(files.map((f) => [basename(f.path), f.compressed, f.live])).toEqual([
      ['audit-2026-01-01T00-00-00.000.log', false, false],
      ['audit-2026-01-02T00-00-00.000.log.gz', true, false],
      ['audit-2026-01-03T00-00-00.000.log', false, false],
      ['audit.log', false, true],
    ]);
    expect(files[0]?.order).toBe(Date.parse('2026-01-01T00:00:00Z'));
  });
});
