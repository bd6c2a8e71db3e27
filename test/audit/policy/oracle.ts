/**
 * @module Runs policy-oracle (testing/policy-oracle): k8s.io/apiserver's own audit Policy loading and
 * evaluation, built from the Go module proxy. The build script skips when the binary is up to date; a
 * failed build throws, so a test that needs the oracle fails rather than skips.
 */
import { join } from 'node:path';
import { runCommand } from '../../../testing/harness/command.ts';

const REPO = join(import.meta.dir, '..', '..', '..');
const BUILD_SCRIPT = join(REPO, 'testing', 'policy-oracle', 'build.sh');

/** Where build.sh puts the binary: $POLICY_ORACLE_BIN_DIR, as for the script, else its default directory. */
export const ORACLE_BIN = join(
  process.env.POLICY_ORACLE_BIN_DIR ?? join(REPO, '.cache', 'policy-oracle-bin'),
  'policy-oracle',
);

/** A cold build compiles a good part of k8s.io/apiserver: minutes on two busy cores. */
export const ORACLE_BUILD_TIMEOUT_MS = 15 * 60_000;

/** upstream's decision, as policy-oracle prints it (omitStages sorted, each once). */
export type OracleDecision = { level: string; omitStages: string[]; omitManagedFields: boolean };

/** What upstream's loader says of a policy file: refused (with its error), or accepted, strictly or not. */
export type OracleCheck = { accepted: boolean; strict?: boolean; error?: string };

/** Builds the oracle if it is missing or older than its sources; throws with the build's output on failure. */
export async function buildOracle(): Promise<void> {
  await runCommand(['bash', BUILD_SCRIPT]);
}

/** Upstream's decision for each review line, evaluated under the policy in `policyFile`. */
export async function oracleDecisions(
  policyFile: string,
  reviewLines: readonly string[],
): Promise<OracleDecision[]> {
  const oracle = Bun.spawn([ORACLE_BIN, policyFile], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
  oracle.stdin.write(`${reviewLines.join('\n')}\n`);
  await oracle.stdin.end();
  const [stdout, stderr, code] = await Promise.all([
    new Response(oracle.stdout).text(),
    new Response(oracle.stderr).text(),
    oracle.exited,
  ]);
  if (code !== 0) throw new Error(`policy-oracle ${policyFile} exited ${code}: ${stderr}`);
  const lines = stdout.trimEnd().split('\n');
  if (lines.length !== reviewLines.length) {
    throw new Error(
      `policy-oracle answered ${lines.length} lines for ${reviewLines.length} reviews: ${stderr}`,
    );
  }
  return lines.map((line) => JSON.parse(line) as OracleDecision);
}

/** Whether upstream's LoadPolicyFromFile accepts `policyFile`, and whether its strict decoding did. */
export async function oracleCheck(policyFile: string): Promise<OracleCheck> {
  const oracle = Bun.spawn([ORACLE_BIN, '-check', policyFile], { stdout: 'pipe', stderr: 'pipe' });
  const [stdout, code] = await Promise.all([new Response(oracle.stdout).text(), oracle.exited]);
  if (code !== 0) throw new Error(`policy-oracle -check ${policyFile} exited ${code}`);
  return JSON.parse(stdout) as OracleCheck;
}
