import { afterEach, describe, expect, it } from 'bun:test';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { CompressionResult, LineSink, PruneReason, SinkObserver } from '../../src/sink/sink.ts';
import { jsonLine, listDir, makeTempDir, readUids, removeDir, waitFor } from './helpers.ts';

const FILE_SINK_MODULE = resolve(import.meta.dir, '../../src/sink/file-sink.ts');
const AT = new Date('2026-11-28T00:15:29.123Z');
const DAY_MS = 24 * 60 * 60 * 1000;

/** Records compressions and prunes. */
function recorder() {
  const compressed: [CompressionResult, string][] = [];
  const pruned: [PruneReason, string][] = [];
  const observer: SinkObserver = {
    compressed: (result, backup) => compressed.push([result, backup]),
    pruned: (backup, reason) => pruned.push([reason, backup]),
  };
  return { compressed, pruned, observer };
}

describe('createFileSink backups (max age, compression)', () => {
  let dir = '';
  let sink: LineSink | undefined;
  let child: ReturnType<typeof Bun.spawn> | undefined;

  afterEach(async () => {
    child?.kill('SIGKILL');
    await child?.exited;
    child = undefined;
    await sink?.close().catch(() => {});
    sink = undefined;
    removeDir(dir);
    dir = '';
  });

  it('gzips a rotated backup to <backup>.gz, mode 0600, and then removes the plain one', async () => {
    dir = makeTempDir('backups');
    const path = join(dir, 'audit.log');
    const { compressed, observer } = recorder();
    sink = createFileSink({
      path,
      maxSizeBytes: 1000,
      maxBackups: 0,
      compress: true,
      now: () => AT,
      observer,
    });
    await Promise.all(Array.from({ length: 4 }, (_, i) => sink?.write(jsonLine(`a${i}`, 200))));
    await sink.write(jsonLine('b', 300)); // rotates: the four lines go to the backup
    const backup = join(dir, 'audit-2026-11-28T00-15-29.123.log');
    await waitFor(() => compressed.length > 0, 5000, 'the compression');
    expect(compressed).toEqual([['success', backup]]);
    expect(listDir(dir)).toEqual(['audit-2026-11-28T00-15-29.123.log.gz', 'audit.log']);
    expect(statSync(`${backup}.gz`).mode & 0o777).toBe(0o600);
    const text = gunzipSync(readFileSync(`${backup}.gz`)).toString();
    expect(
      text
        .split('\n')
        .slice(0, -1)
        .map((line) => (JSON.parse(line) as { uid: string }).uid),
    ).toEqual(['a0', 'a1', 'a2', 'a3']);
    expect(readUids(path)).toEqual(['b']);
  });

  it('prunes by count counting a backup and its .gz once, and compresses what is kept', async () => {
    dir = makeTempDir('backups');
    for (const name of [
      'audit-2026-01-01T00-00-00.000.log.gz',
      'audit-2026-01-02T00-00-00.000.log',
      'audit-2026-01-03T00-00-00.000.log',
    ]) {
      writeFileSync(join(dir, name), jsonLine(name));
    }
    mkdirSync(join(dir, 'audit-2020-01-01T00-00-00.000.log')); // a directory is never a backup
    const { compressed, pruned, observer } = recorder();
    sink = createFileSink({ path: join(dir, 'audit.log'), maxBackups: 2, compress: true, observer });
    await waitFor(() => compressed.length === 2, 5000, 'both compressions');
    expect(pruned).toEqual([['max-backups', join(dir, 'audit-2026-01-01T00-00-00.000.log.gz')]]);
    expect(listDir(dir)).toEqual([
      'audit-2020-01-01T00-00-00.000.log',
      'audit-2026-01-02T00-00-00.000.log.gz',
      'audit-2026-01-03T00-00-00.000.log.gz',
      'audit.log',
    ]);
  });

  it('deletes backups older than maxAgeDays at start and later on its timer, with no rotation', async () => {
    dir = makeTempDir('backups');
    const names = ['audit-2026-11-01T00-00-00.000.log', 'audit-2026-11-25T00-00-00.000.log.gz'];
    for (const name of names) writeFileSync(join(dir, name), jsonLine(name));
    let now = AT.getTime();
    const { pruned, observer } = recorder();
    sink = createFileSink({
      path: join(dir, 'audit.log'),
      maxBackups: 0,
      maxAgeDays: 7,
      now: () => new Date(now),
      backupCheckIntervalMs: 20,
      observer,
    });
    await waitFor(() => pruned.length === 1, 2000, 'the first pass');
    expect(pruned).toEqual([['max-age', join(dir, names[0] as string)]]);
    now += 4 * DAY_MS; // the second backup is now 7 days and 15 hours old
    await waitFor(() => pruned.length === 2, 2000, 'a timed pass');
    expect(listDir(dir)).toEqual(['audit.log']);
  });

  it('counts a failed compression and keeps the backup when the temporary name is taken', async () => {
    dir = makeTempDir('backups');
    const backup = join(dir, 'audit-2026-01-02T00-00-00.000.log');
    writeFileSync(backup, jsonLine('kept'));
    mkdirSync(`${backup}.gz.tmp`); // not ours to remove, and it makes the exclusive create fail
    const { compressed, observer } = recorder();
    sink = createFileSink({ path: join(dir, 'audit.log'), compress: true, observer });
    await waitFor(() => compressed.length === 1, 2000, 'the compression attempt');
    expect(compressed).toEqual([['failure', backup]]);
    expect(readUids(backup)).toEqual(['kept']);
    expect(existsSync(`${backup}.gz`)).toBe(false);
  });

  it('leaves the backup whole and no .gz when killed mid-compression, and finishes at the next start', async () => {
    dir = makeTempDir('backups');
    const path = join(dir, 'audit.log');
    const backup = join(dir, 'audit-2026-01-02T00-00-00.000.log');
    // Random base64 lines compress slowly enough (about a second) to be caught in the middle.
    const content = `${randomBytes(24 * 1024 * 1024)
      .toString('base64')
      .replace(/(.{4000})/g, '$1\n')}\n`;
    writeFileSync(backup, content);
    const script = `
      const { createFileSink } = await import(${JSON.stringify(FILE_SINK_MODULE)});
      createFileSink({ path: ${JSON.stringify(path)}, compress: true });
      setInterval(() => {}, 1000);
    `;
    child = Bun.spawn([process.execPath, '-e', script], { stdout: 'ignore', stderr: 'inherit' });
    const temp = `${backup}.gz.tmp`;
    await waitFor(() => existsSync(temp) && statSync(temp).size > 0, 10_000, 'the compression to start');
    child.kill('SIGKILL');
    await child.exited;
    child = undefined;
    expect(existsSync(temp)).toBe(true);
    expect(existsSync(`${backup}.gz`)).toBe(false);
    expect(readFileSync(backup, 'utf8') === content).toBe(true);

    const { compressed, observer } = recorder();
    sink = createFileSink({ path, compress: true, observer });
    await waitFor(() => compressed.length === 1, 20_000, 'the compression after the restart');
    expect(compressed).toEqual([['success', backup]]);
    expect(listDir(dir)).toEqual(['audit-2026-01-02T00-00-00.000.log.gz', 'audit.log']);
    expect(gunzipSync(readFileSync(`${backup}.gz`)).toString() === content).toBe(true);
  }, 60_000);
});
