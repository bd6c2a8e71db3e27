/**
 * @module Writes files into a directory the way the kubelet updates a mounted Secret volume.
 *
 * The kubelet's atomic writer puts each version in a fresh `..<timestamp>.<random>` directory, points a `..data`
 * symlink at it by renaming a `..data_tmp` symlink over it (one atomic rename), and exposes each key as a
 * top-level symlink `name -> ..data/name`, made once. Then it deletes the previous version's directory.
 */

import { mkdir, mkdtemp, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** `..2026_11_28_01_15_29.` — the kubelet's `..2006_01_02_15_04_05.` prefix; mkdtemp adds the random part. */
function stampPrefix(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const d = now;
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.`;
}

/**
 * Publishes a new version of `files` (file name → contents) in `dir`, creating `dir` if needed, with the
 * kubelet's symlink swap. Returns the path of the new version's directory.
 */
export async function writeSecretVolume(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const version = await mkdtemp(join(dir, stampPrefix(new Date())));
  for (const [name, contents] of Object.entries(files)) await writeFile(join(version, name), contents);

  const dataLink = join(dir, '..data');
  const previous = await readlink(dataLink).catch(() => undefined);
  const tmpLink = join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(basename(version), tmpLink);
  await rename(tmpLink, dataLink);

  for (const name of Object.keys(files)) {
    await symlink(join('..data', name), join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  if (previous !== undefined && previous !== basename(version)) {
    await rm(join(dir, previous), { recursive: true, force: true });
  }
  return version;
}
