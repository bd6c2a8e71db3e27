/**
 * @module Writes the serving certificate and key into the files the TLS server reads, both at once: the
 * kubelet's own scheme for Secret volumes, so the server's directory watcher sees it as any Secret update.
 *
 * ```
 * <dir>/..2026_01_01_00_00_00.123_ab12/tls.crt   the new pair, in a fresh directory
 * <dir>/..data -> ..2026_01_01_00_00_00.123_ab12  swapped by one rename(2)
 * <dir>/tls.crt -> ..data/tls.crt                 stable links the server opens
 * ```
 *
 * A reader opens either the old pair or the new one, never a new certificate with an old key.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The symlink that names the current generation, as the kubelet calls it. */
const DATA_LINK = '..data';

/** Where the pair goes; both files in one directory that kube-audit-rest may write. */
export type CertificateFilesOptions = {
  certFile: string;
  keyFile: string;
};

/** Writes pairs to the files. */
export type CertificateFiles = {
  /** Whether the files hold exactly `cert` and `key` now. */
  holds(cert: string, key: string): Promise<boolean>;
  /** Makes the files hold `cert` and `key` (a no-op when they already do). */
  write(cert: string, key: string): Promise<void>;
};

/** Reads a file, or undefined when it is not there. */
async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A generation directory's name: `..` (so the server's watcher counts it) and a sortable time. */
function generationName(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '_').replace('T', '_').replace('Z', '');
  return `..${stamp}_${randomBytes(3).toString('hex')}`;
}

/**
 * Creates the writer. Throws when the two files are not in the same directory or share a name, since one
 * swap must move both.
 */
export function certificateFiles(options: CertificateFilesOptions): CertificateFiles {
  const dir = dirname(options.certFile);
  const certName = basename(options.certFile);
  const keyName = basename(options.keyFile);
  if (dirname(options.keyFile) !== dir)
    throw new Error(
      `the certificate and key files must be in one directory to be swapped together (${options.certFile}, ${options.keyFile})`,
    );
  if (certName === keyName)
    throw new Error(`the certificate and key files must differ (${options.certFile})`);
  if (certName.startsWith('..') || keyName.startsWith('..'))
    throw new Error('the certificate and key file names must not start with ".."');

  async function holds(cert: string, key: string): Promise<boolean> {
    const [c, k] = await Promise.all([readIfThere(options.certFile), readIfThere(options.keyFile)]);
    return c === cert && k === key;
  }

  /** Points `<dir>/<name>` at `..data/<name>`, replacing whatever is there in one rename. */
  async function link(name: string): Promise<void> {
    const path = join(dir, name);
    const target = join(DATA_LINK, name);
    const current = await readlink(path).catch(() => undefined);
    if (current === target) return;
    const temporary = join(dir, `.${name}.${randomBytes(3).toString('hex')}.tmp`);
    await symlink(target, temporary);
    await rename(temporary, path);
  }

  async function write(cert: string, key: string): Promise<void> {
    if (await holds(cert, key)) return;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const generation = generationName();
    await mkdir(join(dir, generation), { mode: 0o700 });
    await writeFile(join(dir, generation, certName), cert, { mode: 0o600 });
    await writeFile(join(dir, generation, keyName), key, { mode: 0o600 });
    const temporary = join(dir, `..data_tmp_${randomBytes(3).toString('hex')}`);
    await symlink(generation, temporary);
    await rename(temporary, join(dir, DATA_LINK));
    await link(certName);
    await link(keyName);
    // Older generations: nothing points at them any more.
    for (const entry of await readdir(dir)) {
      if (!entry.startsWith('..') || entry === DATA_LINK || entry === generation) continue;
      const stats = await lstat(join(dir, entry)).catch(() => undefined);
      if (stats?.isDirectory()) await rm(join(dir, entry), { recursive: true, force: true });
    }
  }

  return { holds, write };
}
