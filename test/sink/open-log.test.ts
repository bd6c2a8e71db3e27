import { afterEach, describe, expect, it } from 'bun:test';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { createFileSink } from '../../src/sink/file-sink.ts';
import { openLogFile, probeSpace } from '../../src/sink/open-log.ts';
import type { LineSink } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { isRoot, jsonLine, listDir, makeTempDir, readUids, recordingLogger, removeDir } from './helpers.ts';

const OPEN_LOG_MODULE = resolve(import.meta.dir, '../../src/sink/open-log.ts');

/** The error `call` throws (fails the test if it does not throw). */
function thrownBy(call: () => unknown): Error & { code?: string } {
  try {
    call();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('createFileSink and openLogFile on a path that is not a plain file', () => {
  let dir = '';
  let sink: LineSink | undefined;

  afterEach(async () => {
    await sink?.close().catch(() => {});
    sink = undefined;
    removeDir(dir);
    dir = '';
  });

  it('refuses a symbolic link at the log path at start and leaves its target alone', () => {
    dir = makeTempDir('open-log');
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious\n', { mode: 0o644 });
    const path = join(dir, 'audit.log');
    symlinkSync(victim, path);
    const error = thrownBy(() => createFileSink({ path }));
    expect(error.message).toContain('is a symbolic link');
    expect(error.code).toBe('ELOOP');
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(statSync(victim).mode & 0o777).toBe(0o644);
  });

  it('refuses a FIFO at the path at start without blocking, whether or not it has a reader', () => {
    dir = makeTempDir('open-log');
    const path = join(dir, 'audit.log');
    expect(Bun.spawnSync(['mkfifo', path]).exitCode).toBe(0);
    // No reader: a blocking open would hang here for ever.
    expect(thrownBy(() => createFileSink({ path })).code).toBe('EFTYPE');
    const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const error = thrownBy(() => createFileSink({ path }));
      expect(error.code).toBe('EFTYPE');
      expect(error.message).toContain('FIFO');
      expect(error.message).toContain('--audit-to-std-log');
    } finally {
      closeSync(reader);
    }
  });

  it.skipIf(!isRoot)('refuses a character device and a directory at the path', () => {
    dir = makeTempDir('open-log');
    const device = join(dir, 'null');
    expect(Bun.spawnSync(['mknod', device, 'c', '1', '3']).exitCode).toBe(0);
    expect(thrownBy(() => createFileSink({ path: device })).message).toContain('character device');
    mkdirSync(join(dir, 'sub'));
    expect(thrownBy(() => createFileSink({ path: join(dir, 'sub') })).code).toBe('EFTYPE');
  });

  it('narrows an existing file readable by others to 0600, with a warning', async () => {
    dir = makeTempDir('open-log');
    const path = join(dir, 'audit.log');
    writeFileSync(path, jsonLine('old'));
    chmodSync(path, 0o644);
    const { log, entries } = recordingLogger();
    sink = createFileSink({ path, log });
    expect(statSync(path).mode & 0o7777).toBe(0o600);
    expect(entries.filter((e) => e.level === 'warn').map((e) => e.previousMode)).toEqual(['0644']);
    await sink.write(jsonLine('new'));
    expect(readUids(path)).toEqual(['old', 'new']);
  });

  it.skipIf(!isRoot)('refuses a wide file it cannot narrow (another user owns it)', () => {
    dir = makeTempDir('open-log');
    chmodSync(dir, 0o755);
    const path = join(dir, 'audit.log');
    writeFileSync(path, '');
    chmodSync(path, 0o666); // root's file, writable by all: the unprivileged child can open it, not chmod it
    const script = `
      process.setgid(65534);
      process.setuid(65534);
      const { openLogFile } = await import(${JSON.stringify(OPEN_LOG_MODULE)});
      try { openLogFile(${JSON.stringify(path)}); console.log('opened'); }
      catch (error) { console.log(error.code + ' ' + error.message); }
    `;
    const child = Bun.spawnSync([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' });
    expect(child.stderr.toString()).toBe('');
    expect(child.stdout.toString()).toContain('EPERM');
    expect(child.stdout.toString()).toContain('has mode 0666');
    expect(statSync(path).mode & 0o777).toBe(0o666);
  });

  it('refuses a symbolic link planted at the path after start, on every retry', async () => {
    dir = makeTempDir('open-log');
    const path = join(dir, 'audit.log');
    const victim = join(dir, 'victim');
    writeFileSync(victim, '');
    sink = createFileSink({ path, probeIntervalMs: 5 });
    await sink.write(jsonLine('a'));
    unlinkSync(path);
    symlinkSync(victim, path);
    const error = await sink.write(jsonLine('b')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SinkWriteError);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ELOOP');
    await Bun.sleep(50); // probes meanwhile meet the same link
    expect(sink.ready()).toBe(false);
    await expect(sink.write(jsonLine('c'))).rejects.toBeInstanceOf(SinkWriteError);
    expect(readFileSync(victim, 'utf8')).toBe('');
  });

  it('refuses a symbolic link that replaced the file under another name (rename check)', async () => {
    dir = makeTempDir('open-log');
    const path = join(dir, 'audit.log');
    const victim = join(dir, 'victim');
    writeFileSync(victim, '');
    sink = createFileSink({ path, renameCheckIntervalMs: 0 });
    await sink.write(jsonLine('a'));
    const moved = join(dir, 'moved.log');
    // The file lives on under another name, so only the rename check can notice.
    Bun.spawnSync(['mv', path, moved]);
    symlinkSync(victim, path);
    await expect(sink.write(jsonLine('b'))).rejects.toBeInstanceOf(SinkWriteError);
    expect(readFileSync(victim, 'utf8')).toBe('');
    expect(readUids(moved)).toEqual(['a']);
  });

  it('refuses a directory replaced by a symbolic link and creates nothing where it points', async () => {
    dir = makeTempDir('open-log');
    const sub = join(dir, 'logs');
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(sub);
    mkdirSync(elsewhere);
    const path = join(sub, 'audit.log');
    sink = createFileSink({ path, probeIntervalMs: 5 });
    await sink.write(jsonLine('a'));
    rmSync(sub, { recursive: true });
    symlinkSync(elsewhere, sub);
    const error = await sink.write(jsonLine('b')).catch((e: unknown) => e);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ELOOP');
    await Bun.sleep(50);
    expect(sink.ready()).toBe(false);
    expect(listDir(elsewhere)).toEqual([]);
  });

  it('follows a symbolic link in the directory given at start, and keeps to the directory it resolved', async () => {
    dir = makeTempDir('open-log');
    const real = join(dir, 'real');
    mkdirSync(real);
    symlinkSync(real, join(dir, 'link'));
    sink = createFileSink({ path: join(dir, 'link', 'audit.log') });
    await sink.write(jsonLine('a'));
    expect(readUids(join(real, 'audit.log'))).toEqual(['a']);
  });

  it('refuses a descriptor reached through a symbolic link higher up the path', () => {
    dir = makeTempDir('open-log');
    mkdirSync(join(dir, 'real', 'sub'), { recursive: true });
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    // The sink resolves its directory once at start; a path that still holds a link is what a swap
    // of an ancestor after start looks like.
    const error = thrownBy(() => openLogFile(join(dir, 'link', 'sub', 'audit.log')));
    expect(error.code).toBe('ELOOP');
    expect(error.message).toContain('reached through a symbolic link');
  });
});

describe('probeSpace', () => {
  let dir = '';
  afterEach(() => removeDir(dir));

  it('writes and removes its file, and replaces a stale one left by a crash', () => {
    dir = makeTempDir('probe');
    expect(probeSpace(dir, '.probe', 8192, true)).toBeUndefined();
    expect(listDir(dir)).toEqual([]);
    writeFileSync(join(dir, '.probe'), 'stale');
    expect(probeSpace(dir, '.probe', 4096, false)).toBeUndefined();
    expect(existsSync(join(dir, '.probe'))).toBe(false);
  });

  it('returns the error, naming the directory, when the directory is gone', () => {
    dir = makeTempDir('probe');
    const error = probeSpace(join(dir, 'missing'), '.probe', 4096, false);
    expect(error?.message).toContain(join(dir, 'missing'));
    expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
  });
});
