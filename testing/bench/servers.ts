/**
 * @module The two servers the bench drives, started alike on loopback: kube-audit-rest (the compiled
 * executable, as the container runs it) and the floor (floor-server.ts, a do-nothing Bun.serve TLS server).
 * Either can be pinned to CPUs with taskset once it is up.
 */
import { join } from 'node:path';
import type { TestServerCert } from '../../test/helpers/certs.ts';
import { freePort, startServer, waitUntil } from '../../test/helpers/server-process.ts';

/** Which server. */
export type ServerKind = 'kube-audit-rest' | 'floor';

/** A server under load. */
export type BenchServer = {
  readonly kind: ServerKind;
  readonly pid: number;
  readonly port: number;
  /** The audit log (kube-audit-rest only). */
  readonly logFile: string | undefined;
  /** SIGTERM, then the exit status; kube-audit-rest flushes and closes its log first. */
  stop(): Promise<number>;
};

/** Options for {@link startBenchServer}. */
export type BenchServerOptions = {
  kind: ServerKind;
  cert: TestServerCert;
  /** Directory for the audit log. */
  dir: string;
  /** taskset CPU list (e.g. `0`) for every thread of the server; default: not pinned. */
  cpus?: string;
};

/** How long the floor may take to listen. */
const FLOOR_READY_MS = 15_000;
/**
 * Rotation size for the bench: larger than any run writes, so the log check reads one file. (The 3 MiB
 * sweep point writes a few GB; rotation's cost is one rename per 500 MB by default, not what is measured.)
 */
const NO_ROTATION_MB = 1_000_000;

/** Starts a server and waits until it serves (kube-audit-rest: /readyz 200; floor: the port accepts). */
export async function startBenchServer(options: BenchServerOptions): Promise<BenchServer> {
  const { cert, dir } = options;
  let server: BenchServer;
  if (options.kind === 'kube-audit-rest') {
    const logFile = join(dir, `audit-${Date.now()}-${Math.random().toString(36).slice(2)}.log`);
    const proc = await startServer([
      `--cert-filename=${cert.certFile}`,
      `--cert-key-filename=${cert.keyFile}`,
      `--logger-filename=${logFile}`,
      `--logger-max-size=${NO_ROTATION_MB}`,
    ]);
    server = {
      kind: options.kind,
      pid: proc.proc.pid,
      port: proc.port,
      logFile,
      stop: () => proc.terminate(),
    };
  } else {
    const port = freePort();
    const proc = Bun.spawn(
      [process.execPath, join(import.meta.dir, 'floor-server.ts'), String(port), cert.certFile, cert.keyFile],
      { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' },
    );
    try {
      await waitUntil(
        async () => {
          if (proc.exitCode !== null) throw new Error(`floor server exited ${proc.exitCode}`);
          return Bun.connect({ hostname: '127.0.0.1', port, socket: { data() {} } }).then(
            (s) => {
              s.end();
              return true;
            },
            () => false,
          );
        },
        FLOOR_READY_MS,
        `floor server on port ${port}`,
      );
    } catch (error) {
      proc.kill('SIGKILL');
      throw error;
    }
    server = {
      kind: options.kind,
      pid: proc.pid,
      port,
      logFile: undefined,
      async stop() {
        proc.kill('SIGTERM');
        return proc.exited;
      },
    };
  }
  if (options.cpus !== undefined) {
    try {
      pin(server.pid, options.cpus);
    } catch (error) {
      await server.stop();
      throw error;
    }
  }
  return server;
}

/** Pins every thread of process `pid` to `cpus` (threads it starts later inherit the mask). */
function pin(pid: number, cpus: string): void {
  const out = Bun.spawnSync(['taskset', '-a', '-p', '-c', cpus, String(pid)], {
    stdout: 'ignore',
    stderr: 'pipe',
  });
  if (out.exitCode !== 0) throw new Error(`taskset ${cpus} ${pid}: ${out.stderr.toString().trim()}`);
}

/** The command prefix that runs a load generator on `cpus` (empty when not pinned). */
export function pinnedCommand(cpus: string | undefined): string[] {
  return cpus === undefined ? [] : ['taskset', '-c', cpus];
}
