/**
 * @module What the process-level suites share: a temporary directory with a test CA and a server
 * certificate, the flags that serve it, and small readers of the running server's metrics and log.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.ts';
import type { ServerProcess } from '../helpers/server-process.ts';

/** A temporary directory with a CA and a certificate for localhost and 127.0.0.1. */
export type ProcessFixture = {
  readonly dir: string;
  readonly ca: TestCa;
  /** `--cert-filename` and `--cert-key-filename` for the certificate. */
  readonly tlsArgs: string[];
  /** Removes the directory. */
  cleanup(): void;
};

/** Makes the directory and the certificates (openssl, a few hundred ms). */
export async function makeProcessFixture(prefix: string): Promise<ProcessFixture> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca);
  return {
    dir,
    ca,
    tlsArgs: [`--cert-filename=${cert.certFile}`, `--cert-key-filename=${cert.keyFile}`],
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Reads one sample of the running server's metrics (`name` with its labels, as printed); NaN when absent. */
export async function metric(server: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

/** The uids of the audit lines in `file`, in order. */
export function loggedUids(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid);
}

/** The application log entries (JSON lines on stderr) with the given level. */
export function logEntries(server: ServerProcess, level?: string): Record<string, unknown>[] {
  return server
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => level === undefined || e.level === level);
}
