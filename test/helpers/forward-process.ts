/**
 * @module Starts `kube-audit-rest forward` from the compiled executable for process-level tests and the
 * bench, and reads its metrics.
 */
import { tmpdir } from 'node:os';
import { collect, ensureExecutable, freePort, waitUntil } from './server-process.ts';

/** How long the forwarder may take to answer /healthz after start. */
const READY_DEADLINE_MS = 15_000;

/** A running `kube-audit-rest forward`. */
export type ForwardProcess = {
  readonly proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  readonly metricsPort: number;
  /** Everything it wrote to stderr so far (its application logs). */
  stderr(): string;
  /** The value of one series of its /metrics, e.g. `kube_audit_rest_forward_events_total{result="delivered"}`; NaN when absent. */
  metric(series: string): Promise<number>;
  /** The values of several series from one scrape, in the order asked. */
  metrics(series: readonly string[]): Promise<number[]>;
  /** Sends SIGTERM and resolves with the exit status. */
  terminate(): Promise<number>;
};

/** Reads one series' value from a Prometheus text exposition; NaN when it is not there. */
export function seriesValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

/**
 * Starts `kube-audit-rest forward` with `args` and a free metrics port on 127.0.0.1, and waits until
 * /readyz answers (the forwarder has started). `exe` defaults to dist/kube-audit-rest, built if missing.
 */
export async function startForward(args: readonly string[], exe?: string): Promise<ForwardProcess> {
  const executable = exe ?? (await ensureExecutable());
  const metricsPort = freePort();
  const proc = Bun.spawn(
    [executable, 'forward', `--metrics-port=${metricsPort}`, '--bind-address=127.0.0.1', ...args],
    // Run from outside the repository, so nothing can come from its node_modules: the executable carries it all.
    { cwd: tmpdir(), stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' },
  );
  const stderr = collect(proc.stderr);
  void collect(proc.stdout);
  try {
    await waitUntil(
      async () => {
        if (proc.exitCode !== null)
          throw new Error(`forward exited ${proc.exitCode} before ready: ${stderr()}`);
        return fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
          (r) => r.status === 200,
          () => false,
        );
      },
      READY_DEADLINE_MS,
      'kube-audit-rest forward /healthz',
    );
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return {
    proc,
    metricsPort,
    stderr,
    async metric(series) {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
      return seriesValue(text, series);
    },
    async metrics(series) {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
      return series.map((s) => seriesValue(text, s));
    },
    async terminate() {
      proc.kill('SIGTERM');
      return proc.exited;
    },
  };
}

/** The delivered-events series of the forwarder's metrics. */
export const DELIVERED = 'kube_audit_rest_forward_events_total{result="delivered"}';
