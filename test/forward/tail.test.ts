/** @module Tests of the audit log follower with real files, renames, gzip backups, prunes and truncations. */

import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { appendFileSync, readdirSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTail, type Tail, type TailPosition } from '../../src/forward/tail.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';
import { appendEvents, auditIdOf, compress, eventLine, ids, rotate } from './helpers.ts';

/** Reads until the tail has nothing more; returns the auditIDs and the last position. */
async function drain(tail: Tail): Promise<{ got: string[]; position: TailPosition | undefined }> {
  const got: string[] = [];
  let position: TailPosition | undefined;
  for (;;) {
    const read = await tail.read(100, 1 << 20);
    if (read.position) position = read.position;
    if (read.lines.length === 0) return { got, position };
    for (const line of read.lines) got.push(auditIdOf(line));
  }
}

describe('createTail', () => {
  let dir = '';
  let log = '';
  beforeEach(() => {
    dir = makeTempDir('tail');
    log = join(dir, 'audit.log');
  });
  afterEach(() => removeDir(dir));

  it('hands out whole lines only and waits for a partial last line', async () => {
    const tail = createTail({ path: log });
    appendEvents(log, ['a', 'b']);
    const half = eventLine('c');
    appendFileSync(log, half.slice(0, 20));
    const first = await drain(tail);
    expect(first.got).toEqual(['a', 'b']);
    expect(first.position?.offset).toBe(eventLine('a').length + eventLine('b').length);
    appendFileSync(log, half.slice(20));
    expect((await drain(tail)).got).toEqual(['c']);
    tail.close();
  });

  it('finishes a rotated file before the new one, including lines appended after the rename', async () => {
    const tail = createTail({ path: log });
    appendEvents(log, ids('one', 0, 3));
    expect((await drain(tail)).got).toEqual(ids('one', 0, 3));
    appendEvents(log, ids('one', 3, 5)); // not read yet
    const backup = rotate(log, new Date());
    appendEvents(backup, ['late']); // written through the old descriptor just after the rename
    appendEvents(log, ids('two', 0, 2));
    expect((await drain(tail)).got).toEqual([...ids('one', 3, 5), 'late', ...ids('two', 0, 2)]);
    tail.close();
  });

  it('reads backups oldest first when starting without a checkpoint', async () => {
    appendEvents(log, ['old-1']);
    rotate(log, new Date('2026-01-01T00:00:00Z'));
    appendEvents(log, ['mid-1']);
    compress(rotate(log, new Date('2026-01-02T00:00:00Z')));
    appendEvents(log, ['live-1']);
    const tail = createTail({ path: log });
    expect((await drain(tail)).got).toEqual(['old-1', 'mid-1', 'live-1']);
    tail.close();
  });

  it('starts at the end of the live file when asked, skipping a partial last line', async () => {
    appendEvents(log, ['before']);
    appendFileSync(log, eventLine('partial').slice(0, 10));
    const tail = createTail({ path: log, startAt: 'end' });
    expect((await drain(tail)).got).toEqual([]);
    appendFileSync(log, eventLine('partial').slice(10));
    appendEvents(log, ['after']);
    expect((await drain(tail)).got).toEqual(['partial', 'after']);
    tail.close();
  });

  it('resumes from a checkpoint inside a file that was rotated and gzipped meanwhile', async () => {
    appendEvents(log, ids('x', 0, 10));
    const first = createTail({ path: log });
    const read = await first.read(4, 1 << 20);
    expect(read.lines.map(auditIdOf)).toEqual(ids('x', 0, 4));
    first.close();
    const checkpoint = { ...(read.position as TailPosition), updatedAt: Date.now() };
    compress(rotate(log, new Date()));
    appendEvents(log, ['y-0']);
    const dropped: number[] = [];
    const second = createTail({ path: log, resumeFrom: checkpoint, onDropped: (b) => dropped.push(b) });
    expect((await drain(second)).got).toEqual([...ids('x', 4, 10), 'y-0']);
    expect(dropped).toEqual([]);
    second.close();
  });

  it('resumes inside a gzip backup and keeps counting offsets in uncompressed bytes', async () => {
    appendEvents(log, ids('g', 0, 6));
    const gz = compress(rotate(log, new Date('2026-03-01T00:00:00Z')));
    appendEvents(log, ['live']);
    const first = createTail({ path: log });
    const read = await first.read(2, 1 << 20);
    expect(read.lines.map(auditIdOf)).toEqual(['g-0', 'g-1']);
    expect(read.position?.path).toBe(gz);
    expect(read.position?.offset).toBe(eventLine('g-0').length + eventLine('g-1').length);
    first.close();
    const second = createTail({
      path: log,
      resumeFrom: { ...(read.position as TailPosition), updatedAt: 0 },
    });
    expect((await drain(second)).got).toEqual([...ids('g', 2, 6), 'live']);
    second.close();
  });

  it('counts the unread rest of a checkpointed file that was pruned, then goes on with newer files', async () => {
    appendEvents(log, ids('p', 0, 5));
    const first = createTail({ path: log });
    const read = await first.read(2, 1 << 20);
    first.close();
    const position = read.position as TailPosition;
    const backup = rotate(log, new Date());
    const fullSize = ids('p', 0, 5).reduce((n, id) => n + eventLine(id).length, 0);
    appendEvents(log, ['q-0']);
    unlinkSync(backup); // pruned by --logger-max-backups before it was forwarded
    const dropped: number[] = [];
    const second = createTail({
      path: log,
      resumeFrom: { ...position, size: fullSize, updatedAt: 0 },
      onDropped: (b) => dropped.push(b),
    });
    expect((await drain(second)).got).toEqual(['q-0']);
    expect(dropped).toEqual([fullSize - position.offset]);
    second.close();
  });

  it('counts backups pruned while the tail was held up in an older file', async () => {
    appendEvents(log, ids('a', 0, 3));
    const dropped: number[] = [];
    let clock = 1_000_000;
    const tail = createTail({
      path: log,
      readChunkBytes: 64,
      now: () => clock,
      onDropped: (b) => dropped.push(b),
    });
    const firstRead = await tail.read(1, 1 << 20); // holds file A open, mid-way
    expect(firstRead.lines.map(auditIdOf)).toEqual(['a-0']);
    rotate(log, new Date('2026-05-01T00:00:00Z'));
    appendEvents(log, ids('b', 0, 4));
    const b = rotate(log, new Date('2026-05-01T00:00:01Z'));
    appendEvents(log, ['c-0']);
    clock += 5000; // the tail lists the backups (and learns B's size) on its next read
    await tail.read(1, 1 << 20);
    const bSize = ids('b', 0, 4).reduce((n, id) => n + eventLine(id).length, 0);
    unlinkSync(b); // pruned before the tail got there
    const rest = await drain(tail);
    expect(rest.got.filter((id) => id.startsWith('b-'))).toEqual([]);
    expect(rest.got[rest.got.length - 1]).toBe('c-0');
    expect(dropped).toEqual([bSize]);
    tail.close();
  });

  it('reads a file truncated in place from the start and counts what was not yet read', async () => {
    appendEvents(log, ids('t', 0, 3));
    const dropped: number[] = [];
    const tail = createTail({ path: log, onDropped: (b) => dropped.push(b) });
    expect((await drain(tail)).got).toEqual(ids('t', 0, 3));
    truncateSync(log, 0); // copytruncate
    appendEvents(log, ['u-0']);
    expect((await drain(tail)).got).toEqual(['u-0']);
    expect(dropped).toEqual([]); // everything before the truncation had been read
    tail.close();
  });

  it('does not read a file again when lines were cut from its end (a failed write undone)', async () => {
    appendEvents(log, ids('k', 0, 3));
    const tail = createTail({ path: log });
    expect((await drain(tail)).got).toEqual(ids('k', 0, 3));
    const keep = ids('k', 0, 2).reduce((n, id) => n + eventLine(id).length, 0);
    truncateSync(log, keep);
    expect((await drain(tail)).position?.offset).toBe(keep); // noticed: the file is shorter than what was read
    appendEvents(log, ['k-9']);
    const after = await drain(tail);
    expect(after.got).toEqual(['k-9']);
    expect(after.position?.offset).toBe(keep + eventLine('k-9').length);
    tail.close();
  });

  it('reads nothing and fails nothing while the log does not exist yet', async () => {
    const tail = createTail({ path: join(dir, 'later', 'audit.log') });
    expect(await tail.read(10, 1 << 20)).toEqual({ lines: [], position: undefined });
    writeFileSync(log, ''); // another log in the parent: not followed
    expect(readdirSync(dir)).toEqual(['audit.log']);
    tail.close();
  });

  it('refuses invalid options, naming them', () => {
    expect(() => createTail({ path: '' })).toThrow('path');
    expect(() => createTail({ path: log, readChunkBytes: 0 })).toThrow('readChunkBytes');
    expect(() => createTail({ path: log, startAt: 'middle' as 'end' })).toThrow('startAt');
  });
});
