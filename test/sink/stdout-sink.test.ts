import { afterEach, describe, expect, it } from 'bun:test';
import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LineSink } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { createStdoutSink } from '../../src/sink/stdout-sink.ts';
import { jsonLine, makeTempDir, mockWriteSync, removeDir } from './helpers.ts';

const SINK_MODULE = resolve(import.meta.dir, '../../src/sink/stdout-sink.ts');

/** Opens both ends of a FIFO without blocking and fills it until the kernel answers EAGAIN. */
function fullFifo(dir: string): { path: string; reader: number; writer: number; filled: number } {
  const path = join(dir, 'fifo');
  const made = Bun.spawnSync(['mkfifo', path]);
  if (made.exitCode !== 0) throw new Error(`mkfifo failed: ${made.stderr.toString()}`);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const chunk = new Uint8Array(4096).fill(0x2e);
  let filled = 0;
  for (;;) {
    try {
      filled += writeSync(writer, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  return { path, reader, writer, filled };
}

describe('createStdoutSink', () => {
  let dir = '';
  let sink: LineSink | undefined;
  const fds: number[] = [];
  const spies: { mockRestore(): void }[] = [];

  afterEach(async () => {
    for (const spy of spies.splice(0)) spy.mockRestore();
    await sink?.close().catch(() => {});
    sink = undefined;
    for (const fd of fds.splice(0)) closeSync(fd);
    removeDir(dir);
    dir = '';
  });

  it('writes bare lines, nothing around them, when given a file descriptor', async () => {
    dir = makeTempDir('stdout-sink');
    const path = join(dir, 'out');
    const fd = openSync(path, 'a');
    fds.push(fd);
    sink = createStdoutSink({ fd });
    const lines = [jsonLine('a', 40), jsonLine('b', 70), jsonLine('c')];
    await Promise.all(lines.map((line) => sink?.write(line)));
    expect(readFileSync(path)).toEqual(Buffer.concat(lines));
  });

  it('writes to file descriptor 1 when no descriptor is given', async () => {
    const script = `
      const { createStdoutSink } = await import(${JSON.stringify(SINK_MODULE)});
      const sink = createStdoutSink();
      const enc = new TextEncoder();
      await Promise.all([sink.write(enc.encode('{"a":1}\\n')), sink.write(enc.encode('{"b":2}\\n'))]);
      await sink.close();
    `;
    const child = Bun.spawnSync([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' });
    expect(child.stderr.toString()).toBe('');
    expect(child.stdout.toString()).toBe('{"a":1}\n{"b":2}\n');
  });

  it('leaves the descriptor open when closed', async () => {
    dir = makeTempDir('stdout-sink');
    const fd = openSync(join(dir, 'out'), 'a');
    fds.push(fd);
    sink = createStdoutSink({ fd });
    await sink.close();
    expect(() => fstatSync(fd)).not.toThrow();
    await expect(sink.write(jsonLine('late'))).rejects.toThrow('sink closed');
  });

  it('waits and retries when a full pipe answers EAGAIN until a reader drains it', async () => {
    dir = makeTempDir('stdout-sink');
    const fifo = fullFifo(dir);
    fds.push(fifo.reader, fifo.writer);
    const line = jsonLine('through-the-pipe', 300);
    const outPath = join(dir, 'drained');
    let eagain = 0;
    let drainer: ReturnType<typeof Bun.spawn> | undefined;
    spies.push(
      mockWriteSync((real, _call, fd, bytes, offset, length) => {
        try {
          return real(fd, bytes, offset, length);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EAGAIN' && eagain++ === 0) {
            // Only once the pipe has refused the line does another process start draining it,
            // while this one waits in the sink's retry loop.
            drainer = Bun.spawn(['head', '-c', String(fifo.filled + line.length), fifo.path], {
              stdout: Bun.file(outPath),
            });
          }
          throw error;
        }
      }),
    );
    sink = createStdoutSink({ fd: fifo.writer, eagainTimeoutMs: 30_000 });
    await sink.write(line);
    expect(eagain).toBeGreaterThan(0);
    expect(await drainer?.exited).toBe(0);
    const drained = readFileSync(outPath);
    expect(drained.length).toBe(fifo.filled + line.length);
    expect(drained.subarray(fifo.filled)).toEqual(Buffer.from(line));
    expect(sink.ready()).toBe(true);
  });

  it('rejects the batch when the pipe stays full past the bound', async () => {
    dir = makeTempDir('stdout-sink');
    const fifo = fullFifo(dir);
    fds.push(fifo.reader, fifo.writer);
    sink = createStdoutSink({ fd: fifo.writer, eagainTimeoutMs: 20 });
    const started = performance.now();
    const error = await sink.write(jsonLine('stuck')).catch((e: unknown) => e);
    expect(performance.now() - started).toBeGreaterThanOrEqual(19);
    expect(error).toBeInstanceOf(SinkWriteError);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('EAGAIN');
    expect(sink.ready()).toBe(false);
  });

  it('throws when an option is impossible', () => {
    expect(() => createStdoutSink({ fd: -1 })).toThrow(RangeError);
    expect(() => createStdoutSink({ eagainTimeoutMs: -5 })).toThrow(RangeError);
    expect(() => createStdoutSink({ eagainTimeoutMs: Number.NaN })).toThrow(RangeError);
  });
});
