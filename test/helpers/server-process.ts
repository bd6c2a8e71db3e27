/**
 * @module Starts the compiled kube-audit-rest executable for process-level tests and talks to it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The executable `bun run build` makes; process-level tests run exactly what the container runs. */
export const EXECUTABLE = join(import.meta.dir, '..', '..', 'dist', 'kube-audit-rest');

/** How long the server may take to answer /readyz after start. */
const READY_DEADLINE_MS = 15_000;
/** Pause between readiness polls. */
const POLL_INTERVAL_MS = 20;

/** Builds dist/kube-audit-rest when missing (`bun run test` builds it before the tests run). */
export async function ensureExecutable(): Promise<string> {
  if (existsSync(EXECUTABLE)) return EXECUTABLE;
  const build = Bun.spawn([process.execPath, 'run', 'build'], {
    cwd: join(import.meta.dir, '..', '..'),
    stdout: 'ignore',
    stderr: 'pipe',
  });
  if ((await build.exited) !== 0)
    throw new Error(`bun run build failed: ${await new Response(build.stderr).text()}`);
  return EXECUTABLE;
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): number {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** A running kube-audit-rest process. */
export type ServerProcess = {
  readonly proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  readonly port: number;
  readonly metricsPort: number;
  /** Milliseconds from spawn to the first 200 from /readyz. */
  readonly startupMs: number;
  /** Everything the process wrote to stderr so far (its application logs). */
  stderr(): string;
  /** Everything the process wrote to stdout so far. */
  stdout(): string;
  /** Sends SIGTERM and resolves with the exit status. */
  terminate(): Promise<number>;
};

/** Collects a stream's text as it arrives; the function returns what has come so far. */
export function collect(stream: ReadableStream<Uint8Array>): () => string {
  let text = '';
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  })();
  return () => text;
}

/** Polls `check` until it returns true, or rejects with `what` after `timeoutMs`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(POLL_INTERVAL_MS);
  }
}

/** Options for {@link startServer}. */
export type StartOptions = {
  /** Runs the executable with this descriptor limit (`ulimit -n`, soft and hard). Default: this process's. */
  descriptorLimit?: number;
  /** A descriptor to give the executable as its standard output. Default: a pipe read by {@link ServerProcess.stdout}. */
  stdoutFd?: number;
};

/** The command, run through `sh` with `ulimit -n` when a descriptor limit is asked for. */
function withLimit(command: string[], options: StartOptions): string[] {
  if (options.descriptorLimit === undefined) return command;
  return ['sh', '-c', `ulimit -n ${options.descriptorLimit} && exec "$@"`, 'sh', ...command];
}

/** Starts the executable on free loopback ports with `args` added, and waits until /readyz says 200. */
export async function startServer(args: string[], options: StartOptions = {}): Promise<ServerProcess> {
  const exe = await ensureExecutable();
  const port = freePort();
  let metricsPort = freePort();
  while (metricsPort === port) metricsPort = freePort();
  const started = performance.now();
  const command = [
    exe,
    `--server-port=${port}`,
    `--metrics-port=${metricsPort}`,
    '--bind-address=127.0.0.1',
    ...args,
  ];
  const spawned = Bun.spawn(withLimit(command, options), {
    stdin: 'ignore',
    stdout: options.stdoutFd ?? 'pipe',
    stderr: 'pipe',
  });
  // With a descriptor given there is no stdout stream; the type below describes the usual case.
  const proc = spawned as unknown as Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  const stderr = collect(proc.stderr);
  const stdout = options.stdoutFd === undefined ? collect(proc.stdout) : () => '';
  try {
    await waitUntil(
      async () => {
        if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode} before ready: ${stderr()}`);
        return fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
          (r) => r.status === 200,
          () => false,
        );
      },
      READY_DEADLINE_MS,
      'kube-audit-rest /readyz',
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  const startupMs = performance.now() - started;
  return {
    proc,
    port,
    metricsPort,
    startupMs,
    stderr,
    stdout,
    async terminate() {
      proc.kill('SIGTERM');
      return proc.exited;
    },
  };
}

/** Runs the executable to completion (for flag and start-up errors) and returns its status and output. */
export async function runToExit(
  args: string[],
  options: StartOptions = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(withLimit([await ensureExecutable(), ...args], options), {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Makes a minimal valid AdmissionReview v1 body with the given uid. */
export function reviewBody(uid: string, extra = ''): string {
  return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":${JSON.stringify(uid)},"operation":"CREATE"${extra}}}`;
}
