/**
 * @module Runs a command to completion for the test harnesses (a build script testing/setup/needs.txt lists,
 * a tool of a broker): its standard output, or an error that names the command, its exit status and the end
 * of what it printed, so a test that needs the command's result fails with the reason.
 */

/** How much of a failed command's output goes into the error: the end, where build tools say what broke. */
const OUTPUT_TAIL_CHARS = 8_000;

/** What {@link runCommand} takes besides the command. */
export type RunCommandOptions = {
  /** The command's environment. Default: this process's. */
  readonly env?: Record<string, string | undefined>;
  /** Kills the command after this many ms (it then fails). Default: no limit. */
  readonly timeoutMs?: number;
};

/** Runs `cmd` with no input and resolves with its standard output; rejects when it exits other than 0. */
export async function runCommand(cmd: readonly string[], options: RunCommandOptions = {}): Promise<string> {
  const proc = Bun.spawn([...cmd], {
    env: options.env ?? process.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
  });
  const [stdout, stderr, status] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (status !== 0) {
    const output = `${stdout}${stderr}`.trim().slice(-OUTPUT_TAIL_CHARS);
    throw new Error(`${cmd.join(' ')} failed (exit ${status}):\n${output}`);
  }
  return stdout;
}
