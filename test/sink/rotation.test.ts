import { describe, expect, it } from 'bun:test';
import {
  backupName,
  backupTimeFromName,
  formatBackupTime,
  freeBackupName,
  parseBackupTime,
  planBackups,
  splitLogName,
} from '../../src/sink/rotation.ts';

const AT = new Date('2026-11-28T00:15:29.123Z');

describe('formatBackupTime', () => {
  it('formats in UTC with the Go layout 2006-01-02T15-04-05.000', () => {
    expect(formatBackupTime(AT)).toBe('2026-11-28T00-15-29.123');
  });

  it('pads every field when the values are small', () => {
    expect(formatBackupTime(new Date('0987-01-02T03:04:05.006Z'))).toBe('0987-01-02T03-04-05.006');
  });
});

describe('parseBackupTime', () => {
  it('reads back what formatBackupTime wrote', () => {
    expect(parseBackupTime('2026-11-28T00-15-29.123')?.toISOString()).toBe(AT.toISOString());
  });

  it('keeps two-digit years as written rather than moving them to the 1900s', () => {
    expect(parseBackupTime('0050-06-01T00-00-00.000')?.getUTCFullYear()).toBe(50);
  });

  it('returns undefined when the text is not exactly the layout or not a real instant', () => {
    for (const text of [
      '2026-13-01T00-00-00.000',
      '2026-02-30T00-00-00.000',
      '2026-11-28T24-00-00.000',
      '2026-11-28T00-15-60.000',
      '2026-11-28T00-15-29.12',
      '2026-11-28T00-15-29.1234',
      '2026-11-28T00:15:29.123',
      '2026-11-28T00-15-29',
      ' 2026-11-28T00-15-29.123',
      '',
    ]) {
      expect(parseBackupTime(text)).toBeUndefined();
    }
  });
});

describe('splitLogName', () => {
  it('splits at the last dot of the base name like Go filepath.Ext', () => {
    expect(splitLogName('/tmp/kube-audit-rest.log')).toEqual({
      dir: '/tmp',
      prefix: 'kube-audit-rest-',
      ext: '.log',
    });
    expect(splitLogName('/a.b/c.tar.gz')).toEqual({ dir: '/a.b', prefix: 'c.tar-', ext: '.gz' });
  });

  it('has an empty extension when the base name has no dot', () => {
    expect(splitLogName('/var/log/audit')).toEqual({ dir: '/var/log', prefix: 'audit-', ext: '' });
  });

  it('treats a leading dot as the extension when the name is a dotfile', () => {
    expect(splitLogName('/x/.audit')).toEqual({ dir: '/x', prefix: '-', ext: '.audit' });
  });
});

describe('backupName', () => {
  it('inserts - and the UTC time between the base name and the extension', () => {
    expect(backupName('/tmp/kube-audit-rest.log', AT)).toBe(
      '/tmp/kube-audit-rest-2026-11-28T00-15-29.123.log',
    );
  });

  it('appends the time when the file has no extension', () => {
    expect(backupName('/var/log/audit', AT)).toBe('/var/log/audit-2026-11-28T00-15-29.123');
  });
});

describe('backupTimeFromName', () => {
  const name = splitLogName('/tmp/kube-audit-rest.log');

  it('reads the time from a backup name and from its compressed twin', () => {
    expect(backupTimeFromName('kube-audit-rest-2026-11-28T00-15-29.123.log', name)?.getTime()).toBe(
      AT.getTime(),
    );
    expect(backupTimeFromName('kube-audit-rest-2026-11-28T00-15-29.123.log.gz', name)?.getTime()).toBe(
      AT.getTime(),
    );
  });

  it('returns undefined when the name is not a backup of this log', () => {
    for (const fileName of [
      'kube-audit-rest.log',
      'kube-audit-rest-.log',
      'kube-audit-rest-notatime.log',
      'kube-audit-rest-2026-11-28T00-15-29.123.log.bak',
      'kube-audit-rest-2026-11-28T00-15-29.123.txt',
      'other-2026-11-28T00-15-29.123.log',
      'kube-audit-rest-x-2026-11-28T00-15-29.123.log',
    ]) {
      expect(backupTimeFromName(fileName, name)).toBeUndefined();
    }
  });
});

describe('freeBackupName', () => {
  it('returns the plain name when nothing has it', () => {
    const chosen = freeBackupName('/tmp/a.log', AT, () => false);
    expect(chosen.path).toBe('/tmp/a-2026-11-28T00-15-29.123.log');
    expect(chosen.at.getTime()).toBe(AT.getTime());
  });

  it('moves on by one millisecond at a time when names are taken', () => {
    const taken = new Set(['/tmp/a-2026-11-28T00-15-29.123.log', '/tmp/a-2026-11-28T00-15-29.124.log']);
    const chosen = freeBackupName('/tmp/a.log', AT, (path) => taken.has(path));
    expect(chosen.path).toBe('/tmp/a-2026-11-28T00-15-29.125.log');
    expect(chosen.at.getTime()).toBe(AT.getTime() + 2);
  });

  it('throws when a whole second of names is taken', () => {
    expect(() => freeBackupName('/tmp/a.log', AT, () => true)).toThrow(/no free backup name/);
  });
});

describe('planBackups', () => {
  const log = '/var/log/audit.log';
  const now = new Date('2026-01-10T00:00:00.000Z');
  const names = [
    'audit.log',
    'audit-2026-01-01T00-00-00.000.log',
    'audit-2026-01-03T00-00-00.000.log',
    'audit-2026-01-02T00-00-00.000.log',
    'audit-2025-12-31T23-59-59.999.log',
    'audit-junk.log',
    'notes.txt',
  ];
  const keepAll = { maxBackups: 0, maxAgeDays: 0, compress: false, now };

  function removed(plan: ReturnType<typeof planBackups>): string[] {
    return plan.remove.map(({ fileName, reason }) => `${reason} ${fileName}`).sort();
  }

  it('keeps the newest maxBackups backups by the time in their names', () => {
    expect(removed(planBackups(names, log, { ...keepAll, maxBackups: 2 }))).toEqual([
      'max-backups audit-2025-12-31T23-59-59.999.log',
      'max-backups audit-2026-01-01T00-00-00.000.log',
    ]);
  });

  it('removes nothing when there is no maximum count, age or compression', () => {
    expect(planBackups(names, log, keepAll)).toEqual({ remove: [], compress: [], leftovers: [] });
  });

  it('counts a backup and its .gz twin once when both exist', () => {
    const withTwin = [
      'audit-2026-01-02T00-00-00.000.log',
      'audit-2026-01-02T00-00-00.000.log.gz',
      'audit-2026-01-01T00-00-00.000.log.gz',
    ];
    expect(removed(planBackups(withTwin, log, { ...keepAll, maxBackups: 1 }))).toEqual([
      'max-backups audit-2026-01-01T00-00-00.000.log.gz',
    ]);
  });

  it('removes backups older than maxAgeDays by the time in their names, to the millisecond', () => {
    const names = [
      'audit-2026-01-03T00-00-00.000.log', // exactly 7 days old: kept, as lumberjack keeps it
      'audit-2026-01-02T23-59-59.999.log.gz', // a millisecond older: removed
      'audit-2026-01-09T00-00-00.000.log',
    ];
    expect(removed(planBackups(names, log, { ...keepAll, maxAgeDays: 7 }))).toEqual([
      'max-age audit-2026-01-02T23-59-59.999.log.gz',
    ]);
  });

  it('applies maxBackups first and maxAgeDays to what is left, as lumberjack does', () => {
    const plan = planBackups(names, log, { ...keepAll, maxBackups: 3, maxAgeDays: 8 });
    expect(removed(plan)).toEqual([
      'max-age audit-2026-01-01T00-00-00.000.log',
      'max-backups audit-2025-12-31T23-59-59.999.log',
    ]);
  });

  it('compresses the uncompressed backups that are kept, oldest first', () => {
    const files = [
      'audit-2026-01-03T00-00-00.000.log',
      'audit-2026-01-02T00-00-00.000.log.gz',
      'audit-2026-01-04T00-00-00.000.log',
      'audit-2020-01-01T00-00-00.000.log',
      'audit.log',
    ];
    const plan = planBackups(files, log, { ...keepAll, maxBackups: 3, compress: true });
    expect(plan.compress).toEqual(['audit-2026-01-03T00-00-00.000.log', 'audit-2026-01-04T00-00-00.000.log']);
    expect(removed(plan)).toEqual(['max-backups audit-2020-01-01T00-00-00.000.log']);
  });

  it('compresses again a backup whose .gz twin exists, since that .gz may be partial', () => {
    const files = ['audit-2026-01-03T00-00-00.000.log', 'audit-2026-01-03T00-00-00.000.log.gz'];
    expect(planBackups(files, log, { ...keepAll, compress: true }).compress).toEqual([
      'audit-2026-01-03T00-00-00.000.log',
    ]);
  });

  it('lists the temporary files of unfinished compressions, and nothing that merely looks like one', () => {
    const files = [
      'audit-2026-01-03T00-00-00.000.log.gz.tmp',
      'audit-2026-01-03T00-00-00.000.log.tmp',
      'audit.log.gz.tmp',
      'other-2026-01-03T00-00-00.000.log.gz.tmp',
    ];
    const plan = planBackups(files, log, keepAll);
    expect(plan.leftovers).toEqual(['audit-2026-01-03T00-00-00.000.log.gz.tmp']);
    expect(plan.remove).toEqual([]);
  });
});
