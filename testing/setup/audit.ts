/**
 * @module `bun run audit`: the locked dependencies checked against the npm registry's advisory
 * service with `bun audit`; an advisory of high or critical severity fails the check.
 *
 * What works offline: nothing that knows about vulnerabilities. Where the advisory service cannot be
 * asked (a registry or mirror that refuses its POST, as the one this project is built behind does with
 * 405, or a closed network), the check says in capitals that the dependencies were NOT checked and
 * passes, unless AUDIT_REQUIRED=1, which makes that a failure (for CI on a machine that can reach the
 * service). The registry documents this machine reaches carry no deprecation marks either (a version
 * deprecated upstream reads as not deprecated here), so there is no fallback worth running.
 */
import { join } from 'node:path';

const REPO = join(import.meta.dir, '..', '..');

/** The outcome of `bun audit`: advisories found, none, or the service could not be asked. */
export type AuditVerdict =
  | { kind: 'clean' }
  | { kind: 'findings'; text: string }
  | { kind: 'unreachable'; why: string };

/** What `bun audit`'s output and exit status say. */
export function readAuditOutput(text: string, exitCode: number): AuditVerdict {
  const refused =
    /error: (?:POST|GET) \S+ - \d{3}|ConnectionRefused|ConnectionClosed|FailedToOpenSocket|ENOTFOUND|timed? ?out/i.exec(
      text,
    );
  if (refused !== null) return { kind: 'unreachable', why: refused[0] };
  if (/no vulnerabilities found/i.test(text) && exitCode === 0) return { kind: 'clean' };
  if (exitCode !== 0 || /\b[1-9]\d* vulnerabilit(?:y|ies)\b|GHSA-[a-z0-9]{4}-/i.test(text))
    return { kind: 'findings', text };
  return { kind: 'clean' };
}

/** Runs `bun audit --audit-level=high` in the repository and reads its verdict. */
export function runAudit(): AuditVerdict {
  const run = Bun.spawnSync([process.execPath, 'audit', '--audit-level=high'], {
    cwd: REPO,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  return readAuditOutput(`${run.stdout.toString()}${run.stderr.toString()}`, run.exitCode ?? 1);
}

function main(): number {
  const verdict = runAudit();
  if (verdict.kind === 'findings') {
    process.stderr.write(`audit: advisories of high or critical severity:\n${verdict.text}\n`);
    return 1;
  }
  if (verdict.kind === 'clean') {
    process.stdout.write('audit: bun audit: no advisory of high or critical severity\n');
    return 0;
  }
  const required = process.env.AUDIT_REQUIRED === '1';
  process.stdout.write(
    `audit: DEPENDENCIES NOT CHECKED: the npm advisory service cannot be asked from here (${verdict.why})` +
      `${required ? '; AUDIT_REQUIRED=1 makes this a failure' : '; set AUDIT_REQUIRED=1 to fail instead'}\n`,
  );
  return required ? 1 : 0;
}

if (import.meta.main) process.exit(main());
