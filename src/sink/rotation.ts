/**
 * @module Backup names for size rotation, made and recognised the way lumberjack (kube-audit-rest 1.x) does.
 *
 * `/var/log/audit.log` rotated at 2026-11-28 00:15:29.123 UTC becomes
 * `/var/log/audit-2026-11-28T00-15-29.123.log`: the base name without its extension, `-`, the UTC
 * time in the Go layout `2006-01-02T15-04-05.000`, then the extension. A file in the same directory
 * counts as a backup only if its name is exactly that shape with a valid time, so unrelated files
 * are never pruned. Everything here is pure except {@link pruneBackups}.
 */

import { readdirSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Matches the Go layout `2006-01-02T15-04-05.000`: fixed widths, exactly three fraction digits. */
const BACKUP_TIME_PATTERN = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{3})$/;

/** lumberjack's suffix for compressed backups; recognised so a later compressing mode prunes the same set. */
const COMPRESS_SUFFIX = '.gz';

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

/**
 * Reads the rotation time out of a file name in the log's directory; undefined if the name is not a
 * backup of that log. Like lumberjack it strips the prefix and extension (or extension + `.gz`)
 * before parsing, so a stem that looks like a date cannot confuse it.
 */
export function backupTimeFromName(fileName: string, name: LogName): Date | undefined {
  for (const ext of [name.ext, `${name.ext}${COMPRESS_SUFFIX}`]) {
    if (fileName.length < name.prefix.length + ext.length) continue;
    if (!fileName.startsWith(name.prefix) || !fileName.endsWith(ext)) continue;
    const at = parseBackupTime(fileName.slice(name.prefix.length, fileName.length - ext.length));
    if (at) return at;
  }
  return undefined;
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

/**
 * Chooses which of the directory entries `fileNames` to delete so that at most `maxBackups` backups
 * of `logPath` remain (0 keeps all). Newest by the time in the name are kept; a backup and its `.gz`
 * twin count once, as in lumberjack; names that are not backups are never chosen.
 */
export function selectBackupsToRemove(
  fileNames: readonly string[],
  logPath: string,
  maxBackups: number,
): string[] {
  if (maxBackups === 0) return [];
  const name = splitLogName(logPath);
  const backups: { fileName: string; time: number }[] = [];
  for (const fileName of fileNames) {
    const at = backupTimeFromName(fileName, name);
    if (at) backups.push({ fileName, time: at.getTime() });
  }
  // Newest first; equal times (a file and its .gz twin) fall back to name order so the result is stable.
  backups.sort((a, b) => b.time - a.time || (a.fileName < b.fileName ? -1 : 1));
  const kept = new Set<string>();
  const remove: string[] = [];
  for (const { fileName } of backups) {
    kept.add(fileName.endsWith(COMPRESS_SUFFIX) ? fileName.slice(0, -COMPRESS_SUFFIX.length) : fileName);
    if (kept.size > maxBackups) remove.push(fileName);
  }
  return remove;
}

/**
 * Deletes the oldest backups of `logPath` beyond `maxBackups` (0 keeps all). Returns the paths it
 * removed and the errors it met (a failed unlink does not stop the others); never throws.
 */
export function pruneBackups(logPath: string, maxBackups: number): { removed: string[]; errors: Error[] } {
  const removed: string[] = [];
  const errors: Error[] = [];
  if (maxBackups === 0) return { removed, errors };
  const { dir } = splitLogName(logPath);
  let fileNames: string[];
  try {
    fileNames = readdirSync(dir, { withFileTypes: true })
      .filter((entry) => !entry.isDirectory())
      .map((entry) => entry.name);
  } catch (error) {
    errors.push(error as Error);
    return { removed, errors };
  }
  for (const fileName of selectBackupsToRemove(fileNames, logPath, maxBackups)) {
    const path = join(dir, fileName);
    try {
      unlinkSync(path);
      removed.push(path);
    } catch (error) {
      errors.push(error as Error);
    }
  }
  return { removed, errors };
}
