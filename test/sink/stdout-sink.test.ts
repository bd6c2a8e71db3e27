import { afterEach, describe, expect, it } from 'bun:test';
import { closeSync, constants, fstatSync, openSync, read, readFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LineSink, SinkObserver } from '../../src/sink/sink.ts';
import { SinkWriteError } from '../../src/sink/sink.ts';
import { createStdoutSink } from '../../src/sink/stdout-sink.ts';
import { jsonLine, makeTempDir, mockWriteSync, readUids, removeDir, socketPair, waitFor } from './helpers.ts';

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

/** Reads `fd` to its end on the thread pool (waiting out EAGAIN on a non-blocking one). */
async function readToEnd(fd: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(64 * 1024);
  for (;;) {
    const n = await new Promise<number>((done, fail) =>
      read(fd, buffer, 0, buffer.length, null, (error, bytes) => {
        if (!error) done(bytes);
        else if (error.code === 'EAGAIN') setTimeout(() => done(-1), 5);
        else fail(error);
      }),
    );
    if (n === 0) return Buffer.concat(chunks);
    if (n > 0) chunks.push(Buffer.from(buffer.subarray(0, n)));
  }
}

/** Parses newline-terminated JSON lines; throws on a fragment. */
function uidsIn(bytes: Buffer): string[] {
  const text = bytes.toString();
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error('output does not end with a newline: a fragment remains');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => (JSON.parse(line) as { uid: string }).uid);
}

/**
 * The script of a child process whose standard output stalls: it writes 8 KiB lines until one is
 * rejected, reports (on stderr) how the event loop fared while that write waited, waits for the
 * sink to be ready again with no further write, writes one last line and exits.
 */
const STALLING_CHILD = `
  const { createStdoutSink } = await import(${JSON.stringify(SINK_MODULE)});
  const report = (fields) => process.stderr.write(JSON.stringify(fields) + '\\n');
  const sink = createStdoutSink({ writeTimeoutMs: 200, probeIntervalMs: 20 });
  let ticks = 0;
  setInterval(() => ticks++, 10);
  const line = (uid) => new TextEncoder().encode(JSON.stringify({ uid, pad: 'x'.repeat(8000) }) + '\\n');
  const resolved = [];
  let stall;
  for (let i = 0; i < 2000 && !stall; i++) {
    const before = ticks;
    const started = performance.now();
    await sink.write(line('a' + i)).then(
      () => resolved.push('a' + i),
      (error) => { stall = { ticks: ticks - before, ms: performance.now() - started, code: error.cause?.code }; },
    );
  }
  report({ phase: 'stalled', stall, resolved, ready: sink.ready() });
  while (!sink.ready()) await Bun.sleep(5);
  await sink.write(line('final'));
  await sink.close();
  report({ phase: 'done' });
  process.exit(0);
`;

type ChildReport = {
  phase: string;
  stall?: { ticks: number; ms: number; code: string };
  resolved?: string[];
  ready?: boolean;
};

/** Collects the JSON lines a child writes on stderr. */
function collectReports(stream: ReadableStream<Uint8Array>): ChildReport[] {
  const reports: ChildReport[] = [];
  let pending = '';
  void (async () => {
    for await (const chunk of stream) {
      pending += new TextDecoder().decode(chunk);
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const text = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          reports.push(JSON.parse(text) as ChildReport);
        } catch {
          reports.push({ phase: `unexpected: ${text}` });
        }
        newline = pending.indexOf('\n');
      }
    }
  })();
  return reports;
}

describe('createStdoutSink', () => {
  let dir = '';
  let sink: LineSink | undefined;
  const fds: number[] = [];
  const spies: { mockRestore(): void }[] = [];
  const children: ReturnType<typeof Bun.spawn>[] = [];

  afterEach(async () => {
    for (const spy of spies.splice(0)) spy.mockRestore();
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
      await child.exited;
    }
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
    sink = createStdoutSink({ fd: fifo.writer, writeTimeoutMs: 30_000 });
    await sink.write(line);
    expect(eagain).toBeGreaterThan(0);
    expect(await drainer?.exited).toBe(0);
    const drained = readFileSync(outPath);
    expect(drained.length).toBe(fifo.filled + line.length);
    expect(drained.subarray(fifo.filled)).toEqual(Buffer.from(line));
    expect(sink.ready()).toBe(true);
  });

  it('rejects a line the pipe does not take within the timeout, and keeps the event loop running meanwhile', async () => {
    dir = makeTempDir('stdout-sink');
    const fifo = fullFifo(dir);
    fds.push(fifo.reader, fifo.writer);
    const failed: string[] = [];
    const observer: SinkObserver = {
      failed: (_lines, error) => failed.push(`${(error as NodeJS.ErrnoException).code}`),
    };
    sink = createStdoutSink({ fd: fifo.writer, writeTimeoutMs: 200, observer });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const started = performance.now();
    const error = await sink.write(jsonLine('stuck')).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    clearInterval(timer);
    expect(elapsed).toBeGreaterThanOrEqual(195);
    expect(ticks).toBeGreaterThanOrEqual(10); // about 20: the timers fired while the line waited
    expect(error).toBeInstanceOf(SinkWriteError);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ETIMEDOUT');
    expect(sink.ready()).toBe(false);
    // While the stall lasts, later lines fail at once rather than queueing behind it.
    const fastStart = performance.now();
    await expect(sink.write(jsonLine('next'))).rejects.toBeInstanceOf(SinkWriteError);
    expect(performance.now() - fastStart).toBeLessThan(100);
    expect(failed).toEqual(['ETIMEDOUT', 'EAGAIN']);
  });

  it('finishes a line cut by a stalled reader before any other byte, and is ready again with no write once it reads', async () => {
    dir = makeTempDir('stdout-sink');
    const fifo = join(dir, 'fifo');
    const out = join(dir, 'out');
    expect(Bun.spawnSync(['mkfifo', fifo]).exitCode).toBe(0);
    const reader = Bun.spawn(['cat', fifo], { stdout: Bun.file(out) });
    children.push(reader);
    let writer = -1;
    await waitFor(
      () => {
        try {
          writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
          return true;
        } catch {
          return false; // ENXIO until cat has the FIFO open
        }
      },
      5000,
      'cat to open the FIFO',
    );
    const ready: boolean[] = [];
    sink = createStdoutSink({
      fd: writer,
      writeTimeoutMs: 100,
      probeIntervalMs: 10,
      observer: { readyChanged: (value) => ready.push(value) },
    });
    await sink.write(jsonLine('first', 100));
    await waitFor(() => Bun.file(out).size === 100, 5000, 'cat to copy the first line');
    reader.kill('SIGSTOP');
    // A signal is delivered asynchronously: wait until the reader really is stopped ("T" in its stat).
    const stopped = () => /^\d+ \(.*\) T /.test(readFileSync(`/proc/${reader.pid}/stat`, 'utf8'));
    await waitFor(stopped, 5000, 'cat to be stopped');
    // Far larger than the pipe: part of it goes in, then the pipe is full and the reader is stopped.
    await expect(sink.write(jsonLine('cut', 1024 * 1024))).rejects.toBeInstanceOf(SinkWriteError);
    await expect(sink.write(jsonLine('refused', 100))).rejects.toBeInstanceOf(SinkWriteError);
    expect(sink.ready()).toBe(false);
    reader.kill('SIGCONT');
    await waitFor(() => sink?.ready() === true, 5000, 'the probe to finish the cut line');
    expect(ready).toEqual([false, true]);
    await sink.write(jsonLine('after', 100));
    await sink.close();
    sink = undefined;
    closeSync(writer);
    expect(await reader.exited).toBe(0);
    // The cut line was finished (its caller was told it failed: the count errs towards loss), and
    // the next acknowledged line starts on a line of its own.
    expect(readUids(out)).toEqual(['first', 'cut', 'after']);
  });

  it('rejects at once when maxQueuedBytes are waiting', async () => {
    dir = makeTempDir('stdout-sink');
    const fifo = fullFifo(dir);
    fds.push(fifo.reader, fifo.writer);
    sink = createStdoutSink({ fd: fifo.writer, writeTimeoutMs: 100, maxQueuedBytes: 1000 });
    const first = sink.write(jsonLine('a', 800)).catch((e: unknown) => e);
    const error = await sink.write(jsonLine('b', 800)).catch((e: unknown) => e);
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('ENOBUFS');
    expect(await first).toBeInstanceOf(SinkWriteError);
  });

  for (const kind of ['a blocking FIFO', 'a blocking socket'] as const) {
    it(`keeps a child's event loop running, and lines whole, when its standard output is ${kind} nobody reads`, async () => {
      dir = makeTempDir('stdout-sink');
      let readEnd: number;
      let childEnd: number;
      if (kind === 'a blocking FIFO') {
        const fifo = join(dir, 'fifo');
        expect(Bun.spawnSync(['mkfifo', fifo]).exitCode).toBe(0);
        readEnd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
        childEnd = openSync(fifo, constants.O_WRONLY); // blocking, as a runtime's pipe usually is
      } else {
        [readEnd, childEnd] = socketPair();
      }
      fds.push(readEnd);
      const child = Bun.spawn([process.execPath, '-e', STALLING_CHILD], {
        stdin: 'ignore',
        stdout: childEnd,
        stderr: 'pipe',
      });
      children.push(child);
      closeSync(childEnd);
      const flags = Number.parseInt(
        /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/${child.pid}/fdinfo/1`, 'utf8'))?.[1] ?? 'x',
        8,
      );
      expect(flags & constants.O_NONBLOCK).toBe(0); // the child's standard output really blocks
      const reports = collectReports(child.stderr as ReadableStream<Uint8Array>);
      await waitFor(() => reports.length > 0, 20_000, 'the child to report a stalled write');
      const stalled = reports[0] as ChildReport;
      expect(stalled.phase).toBe('stalled');
      expect(stalled.stall?.code).toBe('ETIMEDOUT');
      expect(stalled.stall?.ms).toBeGreaterThanOrEqual(150);
      expect(stalled.stall?.ticks).toBeGreaterThanOrEqual(8); // its 10 ms timer kept firing
      expect(stalled.ready).toBe(false);

      const output = await readToEnd(readEnd); // the reader comes back
      expect(await child.exited).toBe(0);
      expect(reports.map((r) => r.phase)).toEqual(['stalled', 'done']);
      const uids = uidsIn(output); // throws on a fragment
      const resolved = stalled.resolved ?? [];
      expect(uids.slice(0, resolved.length)).toEqual(resolved);
      expect(uids.at(-1)).toBe('final');
      // Between them, only lines whose callers were told they failed (the cut line or chunk).
      expect(uids.length - resolved.length - 1).toBeLessThanOrEqual(8);
      expect(new Set(uids).size).toBe(uids.length);
    }, 60_000);
  }

  it('throws when an option is impossible', () => {
    expect(() => createStdoutSink({ fd: -1 })).toThrow(RangeError);
    expect(() => createStdoutSink({ writeTimeoutMs: -5 })).toThrow(RangeError);
    expect(() => createStdoutSink({ writeTimeoutMs: Number.NaN })).toThrow(RangeError);
    expect(() => createStdoutSink({ maxQueuedBytes: 0 })).toThrow(RangeError);
  });
});
