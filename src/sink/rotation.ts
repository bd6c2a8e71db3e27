/**
 * @module Backup names for size rotation, made and recognised the way lumberjack (kube-audit-rest 1.x) does, and which backups to prune or compress.
 *
 * `/var/log/audit.log` rotated at 2026-11-28 00:15:29.123 UTC becomes
 * `/var/log/audit-2026-11-28T00-15-29.123.log`: the base name without its extension, `-`, the UTC
 * time in the Go layout `2006-01-02T15-04-05.000`, then the extension; compressed, lumberjack
 * appends `.gz`. A file in the same directory counts as a backup only if its name is exactly that
 * shape with a valid time, so unrelated files are never pruned. Everything here is pure.
 */

import { basename, dirname, join } from 'node:path';
import type { PruneReason } from './sink.ts';

/** Matches the Go layout `2006-01-02T15-04-05.000`: fixed widths, exactly three fraction digits. */
const BACKUP_TIME_PATTERN = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})$/;

/** lumberjack's suffix for compressed backups: `<backup>.gz`. */
export const COMPRESS_SUFFIX = '.gz';

/**
 * Suffix of a compression in progress: `<backup>.gz.tmp`, renamed to `<backup>.gz` once complete
 * and synced. Neither kube-audit-rest nor lumberjack takes such a name for a backup, so a crash
 * mid-compression leaves nothing that later counts as one.
 */
export const COMPRESS_TEMP_SUFFIX = `${COMPRESS_SUFFIX}.tmp`;

/** One day in ms: `--logger-max-age` counts days, as lumberjack's MaxAge does (24 h each). */
const DAY_MS = 24 * 60 * 60 * 1000;

/** How many later milliseconds {@link freeBackupName} tries before giving up; a full second of collisions. */
const MAX_NAME_ATTEMPTS = 1000;

/** A log path split the way lumberjack splits it to make and recognise backup names. */
export type LogName = {
  /** The directory that holds the log and its backups. */
  dir: string;
  /** The base name without its extension, plus `-`: every backup name starts with it. */
  prefix: string;
  /** The extension from the last `.` of the base name (Go's `filepath.Ext`), or `""`. */
  ext: string;
};

/**
 * Splits a log path into directory, backup prefix and extension. The extension follows Go's
 * `filepath.Ext` (from the last dot of the base name, so `.audit` has extension `.audit` and an
 * empty stem), not Node's `extname`, so names match what 1.x produced.
 */
export function splitLogName(path: string): LogName {
  const base = basename(path);
  const dot = base.lastIndexOf('.');
  const ext = dot === -1 ? '' : base.slice(dot);
  return { dir: dirname(path), prefix: `${base.slice(0, base.length - ext.length)}-`, ext };
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}

/** Formats a time in UTC as the Go layout `2006-01-02T15-04-05.000`. */
export function formatBackupTime(at: Date): string {
  return (
    `${pad(at.getUTCFullYear(), 4)}-${pad(at.getUTCMonth() + 1, 2)}-${pad(at.getUTCDate(), 2)}` +
    `T${pad(at.getUTCHours(), 2)}-${pad(at.getUTCMinutes(), 2)}-${pad(at.getUTCSeconds(), 2)}` +
    `.${pad(at.getUTCMilliseconds(), 3)}`
  );
}

/**
 * Parses a `2006-01-02T15-04-05.000` time (UTC); undefined unless the text has exactly that shape
 * and names a real instant (no month 13, no February 30, no second 60), as Go's `time.Parse` demands.
 */
export function parseBackupTime(text: string): Date | undefined {
  const m = BACKUP_TIME_PATTERN.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second, milli] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const at = new Date(0);
  // setUTCFullYear rather than Date.UTC, which maps years 0-99 to 1900-1999.
  at.setUTCFullYear(year, month - 1, day);
  at.setUTCHours(hour, minute, second, milli);
  return formatBackupTime(at) === text ? at : undefined;
}

/** Makes the backup path for `logPath` rotated at `at`, e.g. `/tmp/a.log` → `/tmp/a-2026-11-28T00-15-29.123.log`. */
export function backupName(logPath: string, at: Date): string {
  const { dir, prefix, ext } = splitLogName(logPath);
  return join(dir, `${prefix}${formatBackupTime(at)}${ext}`);
}

/** Reads the time out of `fileName` if it is `prefix`, a valid time, then exactly `ext`. */
function timeFromName(fileName: string, name: LogName, ext: string): Date | undefined {
  if (fileName.length < name.prefix.length + ext.length) return undefined;
  if (!fileName.startsWith(name.prefix) || !fileName.endsWith(ext)) return undefined;
  return parseBackupTime(fileName.slice(name.prefix.length, fileName.length - ext.length));
}

/**
 * Reads the rotation time out of a file name in the log's directory; undefined if the name is not a
 * backup of that log. Like lumberjack it strips the prefix and extension (or extension + `.gz`)
 * before parsing, so a stem that looks like a date cannot confuse it.
 */
export function backupTimeFromName(fileName: string, name: LogName): Date | undefined {
  return (
    timeFromName(fileName, name, name.ext) ?? timeFromName(fileName, name, `${name.ext}${COMPRESS_SUFFIX}`)
  );
}

/**
 * Picks a backup path for a rotation at `at` that does not exist yet. If the name is taken (two
 * rotations within one millisecond, or a backup left by an earlier run) it tries the following
 * milliseconds, so the name stays in lumberjack's format, sorts after the one it collided with and
 * nothing is overwritten. Throws if {@link MAX_NAME_ATTEMPTS} names in a row are taken.
 */
export function freeBackupName(
  logPath: string,
  at: Date,
  exists: (path: string) => boolean,
): { path: string; at: Date } {
  for (let i = 0; i < MAX_NAME_ATTEMPTS; i++) {
    const candidate = new Date(at.getTime() + i);
    const path = backupName(logPath, candidate);
    if (!exists(path)) return { path, at: candidate };
  }
  throw new Error(`no free backup name for ${logPath} within ${MAX_NAME_ATTEMPTS} ms of ${at.toISOString()}`);
}

/** What to do with the files of a log's directory, as {@link planBackups} decides. */
export type BackupPlan = {
  /** Backups (plain or `.gz`) to delete, and why. */
  remove: { fileName: string; reason: PruneReason }[];
  /** Uncompressed backups to gzip, oldest first. */
  compress: string[];
  /** Temporary files of compressions that did not finish (a crash, or a stop): to delete. */
  leftovers: string[];
};

/** Options for {@link planBackups}. */
export type BackupPlanOptions = {
  /** Backups kept, newest first; 0 keeps any number. */
  maxBackups: number;
  /** Backups whose name's time is older than this many days are deleted; 0 keeps any age. */
  maxAgeDays: number;
  /** Whether uncompressed backups are to be gzipped. */
  compress: boolean;
  /** The present time, for maxAgeDays. */
  now: Date;
};

/**
 * Decides, from the names in the log's directory, which backups of `logPath` to delete and which
 * to compress, in lumberjack's order: beyond `maxBackups` newest (a backup and its `.gz` twin count
 * once) go first; of the rest, those whose name's time is more than `maxAgeDays` days before `now`;
 * the remaining uncompressed ones are compressed. A backup and its `.gz` twin both present means a
 * compression that was interrupted after its rename: the plain one is compressed again (the new
 * `.gz` replaces the old), as lumberjack does, so nothing is lost if the `.gz` was a partial one
 * left by 1.x. Names that are not backups are never chosen, except leftover temporary files.
 */
export function planBackups(
  fileNames: readonly string[],
  logPath: string,
  options: BackupPlanOptions,
): BackupPlan {
  const name = splitLogName(logPath);
  const backups: { fileName: string; time: number }[] = [];
  const leftovers: string[] = [];
  for (const fileName of fileNames) {
    const at = backupTimeFromName(fileName, name);
    if (at) {
      backups.push({ fileName, time: at.getTime() });
    } else if (timeFromName(fileName, name, `${name.ext}${COMPRESS_TEMP_SUFFIX}`)) {
      leftovers.push(fileName);
    }
  }
  // Newest first; equal times (a file and its .gz twin) fall back to name order so the result is stable.
  backups.sort((a, b) => b.time - a.time || (a.fileName < b.fileName ? -1 : 1));
  const remove: BackupPlan['remove'] = [];
  let remaining = backups;
  if (options.maxBackups > 0) {
    const kept = new Set<string>();
    remaining = [];
    for (const backup of backups) {
      const { fileName } = backup;
      kept.add(fileName.endsWith(COMPRESS_SUFFIX) ? fileName.slice(0, -COMPRESS_SUFFIX.length) : fileName);
      if (kept.size > options.maxBackups) remove.push({ fileName, reason: 'max-backups' });
      else remaining.push(backup);
    }
  }
  if (options.maxAgeDays > 0) {
    const cutoff = options.now.getTime() - options.maxAgeDays * DAY_MS;
    const young: typeof backups = [];
    for (const backup of remaining) {
      if (backup.time < cutoff) remove.push({ fileName: backup.fileName, reason: 'max-age' });
      else young.push(backup);
    }
    remaining = young;
  }
  const compress = options.compress
    ? remaining
        .filter(({ fileName }) => !fileName.endsWith(COMPRESS_SUFFIX))
        .map(({ fileName }) => fileName)
        .reverse()
    : [];
  return { remove, compress, leftovers };
}
