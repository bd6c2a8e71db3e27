/**
 * @module Paired runs: several kube-audit-rest variants (an older commit, today's build, today's build with
 * other flags) serving side by side, each loaded by its own wrk over the same seconds, so the machine's
 * drift hits them alike. Used by ab.ts (the command line) and by the bench's features section.
 *
 * Caller options: in a variant's flags, `{tokens}` stands for a token file the run writes (one random
 * token, naming cluster `bench`), and that variant is loaded at `/log-request/<token>`; `{client-ca}`
 * stands for the run's CA, and every wrk then presents a client certificate it signed (wrk has no option
 * for one: testing/bench/wrk-client-cert.c, built into .cache/wrk-client-cert/, adds it). With
 * `connectionClose` every request opens a new connection, so each pays a full TLS handshake.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeServerCert, type TestCa, type TestServerCert } from '../../test/helpers/certs.ts';
import { freePort, waitUntil } from '../../test/helpers/server-process.ts';
import { runClosedLoop } from './closed-loop.ts';
import type { Workload } from './corpus.ts';
import { checkLog } from './log-check.ts';
import { cpuSeconds } from './proc-stats.ts';
import { fixed, int, table } from './report.ts';

const REPO = join(import.meta.dir, '..', '..');
/** Where built commits are kept between runs (gitignored). */
const CACHE = join(REPO, '.cache', 'ab');
/** Rotation size: larger than a run writes, so the log check reads one file. */
const NO_ROTATION_MB = 1_000_000;
/** Longest wait for a variant to answer /readyz. */
const READY_MS = 15_000;

/** The wrk shim that presents a client certificate (see the module comment). */
const CLIENT_CERT_SHIM = join(REPO, '.cache', 'wrk-client-cert', 'wrk-client-cert.so');

/** Builds the client-certificate shim for wrk once, and returns its path. */
function buildClientCertShim(): string {
  if (existsSync(CLIENT_CERT_SHIM)) return CLIENT_CERT_SHIM;
  mkdirSync(join(CLIENT_CERT_SHIM, '..'), { recursive: true });
  const source = join(import.meta.dir, 'wrk-client-cert.c');
  const out = Bun.spawnSync(['cc', '-O2', '-shared', '-fPIC', '-o', CLIENT_CERT_SHIM, source, '-ldl'], {
    stderr: 'pipe',
  });
  if (out.exitCode !== 0) throw new Error(`cannot build ${CLIENT_CERT_SHIM}: ${out.stderr.toString()}`);
  return CLIENT_CERT_SHIM;
}

/** What the `{...}` placeholders of variant flags stand for in this run, and the token behind `{tokens}`. */
type Placeholders = { tokens: string; 'client-ca': string; token: string };

/** A build and the flags it runs with. */
export type Variant = { name: string; exe: string; args: string[] };

/** Builds commit `ref` into the cache once, and returns its executable. */
export function buildRef(ref: string): string {
  const sha = Bun.spawnSync(['git', 'rev-parse', '--short=12', ref], { cwd: REPO }).stdout.toString().trim();
  if (sha === '') throw new Error(`no such commit: ${ref}`);
  const exe = join(CACHE, sha, 'kube-audit-rest');
  if (existsSync(exe)) return exe;
  const tree = mkdtempSync(join(tmpdir(), 'kar-ab-'));
  try {
    const run = (cmd: string[], cwd: string) => {
      const out = Bun.spawnSync(cmd, { cwd, stdout: 'pipe', stderr: 'pipe' });
      if (out.exitCode !== 0) throw new Error(`${cmd.join(' ')}: ${out.stderr.toString()}`);
    };
    run(['git', 'worktree', 'add', '--detach', tree, sha], REPO);
    run([process.execPath, 'install', '--frozen-lockfile'], tree);
    mkdirSync(join(CACHE, sha), { recursive: true });
    run([process.execPath, 'build', '--compile', '--minify', 'src/main.ts', '--outfile', exe], tree);
  } finally {
    Bun.spawnSync(['git', 'worktree', 'remove', '--force', tree], { cwd: REPO });
    rmSync(tree, { recursive: true, force: true });
  }
  return exe;
}

/** Reads `name`, `name@REF` or `name@REF:FLAGS` (see ab.ts). */
export function parseVariant(spec: string): Variant {
  const at = spec.indexOf('@');
  const name = at < 0 ? spec : spec.slice(0, at);
  const rest = at < 0 ? '' : spec.slice(at + 1);
  const colon = rest.indexOf(':');
  const ref = colon < 0 ? rest : rest.slice(0, colon);
  const args =
    colon < 0
      ? []
      : rest
          .slice(colon + 1)
          .split(' ')
          .filter(Boolean);
  return { name, exe: ref === '' ? join(REPO, 'dist', 'kube-audit-rest') : buildRef(ref), args };
}

type Running = { variant: Variant; proc: Bun.Subprocess; port: number; logFile: string; path: string };

async function start(
  variant: Variant,
  dir: string,
  certFile: string,
  keyFile: string,
  placeholders: Placeholders,
): Promise<Running> {
  const args = variant.args.map((a) =>
    a.replaceAll('{tokens}', placeholders.tokens).replaceAll('{client-ca}', placeholders['client-ca']),
  );
  const path = variant.args.some((a) => a.includes('{tokens}'))
    ? `/log-request/${placeholders.token}`
    : '/log-request';
  const port = freePort();
  const metricsPort = freePort();
  const logFile = join(dir, `${variant.name}-${Date.now()}.log`);
  const proc = Bun.spawn(
    [
      variant.exe,
      `--server-port=${port}`,
      `--metrics-port=${metricsPort}`,
      '--bind-address=127.0.0.1',
      `--cert-filename=${certFile}`,
      `--cert-key-filename=${keyFile}`,
      `--logger-filename=${logFile}`,
      `--logger-max-size=${NO_ROTATION_MB}`,
      ...args,
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'ignore' },
  );
  await waitUntil(
    async () => {
      if (proc.exitCode !== null) throw new Error(`${variant.name} exited ${proc.exitCode}`);
      return fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
    },
    READY_MS,
    `${variant.name} /readyz`,
  );
  return { variant, proc, port, logFile, path };
}

/** What each variant spent and wrote, round by round. */
export type PairedResult = {
  variant: Variant;
  /** Server CPU µs per acknowledged request, per round. */
  cpuUs: number[];
  /** Acknowledged requests per second, per round. */
  rps: number[];
  /** Log lines found against requests acknowledged, per round (as text). */
  checks: string;
};

/** Options for {@link pairedRuns}. */
export type PairedOptions = {
  variants: readonly Variant[];
  workload: Workload;
  rounds: number;
  seconds: number;
  /** Connections per variant. */
  connections: number;
  /** The serving certificate every variant uses. */
  cert: TestServerCert;
  /** The CA that signed it; `{client-ca}` stands for it, and client certificates are made with it. */
  ca: TestCa;
  /** A new connection per request (each pays a handshake). Default false: kept-alive connections. */
  connectionClose?: boolean;
  /**
   * One variant at a time instead of all at once, the server pinned to CPU 0 and its wrk to CPU 1, the
   * order turning each round: no variant competes with another for a core, at the price of drift between
   * runs. Default false.
   */
  pinned?: boolean;
  /** Seconds of load before each measured run, so the JIT has compiled the hot path. Default 1. */
  warmupSeconds?: number;
};

/** Pins every thread of `pid` to `cpus` (taskset). */
function pin(pid: number, cpus: string): void {
  const out = Bun.spawnSync(['taskset', '-a', '-p', '-c', cpus, String(pid)], {
    stdout: 'ignore',
    stderr: 'pipe',
  });
  if (out.exitCode !== 0) throw new Error(`taskset ${cpus} ${pid}: ${out.stderr.toString().trim()}`);
}

/** Runs every variant at once under its own wrk, `rounds` times; see the module comment. */
export async function pairedRuns(options: PairedOptions): Promise<PairedResult[]> {
  const { variants, workload, rounds, seconds, connections, cert, ca } = options;
  const connectionClose = options.connectionClose ?? false;
  const warmupSeconds = options.warmupSeconds ?? 1;
  const dir = mkdtempSync(join(tmpdir(), 'kar-ab-run-'));
  const token = randomBytes(32).toString('hex');
  const placeholders: Placeholders = { tokens: join(dir, 'tokens'), 'client-ca': ca.certFile, token };
  writeFileSync(placeholders.tokens, `${token} bench\n`);
  let wrkEnv: Record<string, string> | undefined;
  if (variants.some((v) => v.args.some((a) => a.includes('{client-ca}')))) {
    // Every variant's wrk presents the certificate, so the clients differ in nothing; a server
    // that does not ask for one never sees it.
    const client = await makeServerCert(dir, ca, {
      name: 'client',
      extendedKeyUsage: 'clientAuth',
      dnsNames: [],
      ipAddresses: [],
    });
    wrkEnv = {
      LD_PRELOAD: buildClientCertShim(),
      KAR_CLIENT_CERT: client.certFile,
      KAR_CLIENT_KEY: client.keyFile,
    };
  }
  const cpu: number[][] = variants.map(() => []);
  const rps: number[][] = variants.map(() => []);
  const checks: string[] = variants.map(() => '');
  let run = 0;
  try {
    // Each round: all variants at once, or (pinned) one group per variant in a turning order.
    const groups = (r: number): number[][] =>
      options.pinned ? variants.map((_, i) => [(i + r) % variants.length]) : [variants.map((_, i) => i)];
    for (let r = 0; r < rounds; r++) {
      for (const group of groups(r)) {
        const servers = await Promise.all(
          group.map((i) => start(variants[i] as Variant, dir, cert.certFile, cert.keyFile, placeholders)),
        );
        if (options.pinned) for (const s of servers) pin(s.proc.pid, '0');
        try {
          // Warm-up, then the measured run, the group's variants at once.
          const load = async (seconds: number) => {
            const runs = servers.map(() => ++run);
            const cpu0 = servers.map((s) => cpuSeconds(s.proc.pid));
            const results = await Promise.all(
              servers.map((s, k) =>
                runClosedLoop({
                  port: s.port,
                  workload,
                  seconds,
                  connections,
                  threads: 1,
                  run: runs[k] as number,
                  dir,
                  path: s.path,
                  connectionClose,
                  ...(options.pinned ? { cpus: '1' } : {}),
                  ...(wrkEnv === undefined ? {} : { env: wrkEnv }),
                  drainTimeoutSeconds: 30,
                }),
              ),
            );
            return {
              runs,
              results,
              cpu: servers.map((s, k) => cpuSeconds(s.proc.pid) - (cpu0[k] as number)),
            };
          };
          const warm = await load(warmupSeconds);
          const measured = await load(seconds);
          servers.forEach((s, k) => {
            const i = group[k] as number;
            const acked = measured.results[k]?.acknowledged ?? 0;
            cpu[i]?.push(((measured.cpu[k] as number) / acked) * 1e6);
            rps[i]?.push(acked / seconds);
            const check = checkLog(s.logFile, new Set([warm.runs[k] as number, measured.runs[k] as number]));
            const ackedAll = acked + (warm.results[k]?.acknowledged ?? 0);
            checks[i] +=
              `${r > 0 ? ', ' : ''}${check.benchLines}/${ackedAll} lines${check.badLines > 0 ? ` (${check.badLines} bad)` : ''}`;
          });
        } finally {
          for (const s of servers) {
            s.proc.kill('SIGTERM');
            await s.proc.exited;
            if (existsSync(s.logFile)) rmSync(s.logFile);
          }
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return variants.map((variant, i) => ({
    variant,
    cpuUs: cpu[i] ?? [],
    rps: rps[i] ?? [],
    checks: checks[i] as string,
  }));
}

/** The median of some figures. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor(s.length / 2)] as number);
}

/** The markdown table of paired results, with each variant's CPU relative to the first one's. */
export function pairedTable(results: readonly PairedResult[]): string {
  const base = median(results[0]?.cpuUs ?? []);
  return table(
    [
      'variant',
      'flags',
      'CPU µs per request, each round',
      'median',
      'vs first',
      'req/s (median)',
      'log lines / acknowledged',
    ],
    results.map((r) => [
      r.variant.name,
      r.variant.args.join(' ') || '(defaults)',
      r.cpuUs.map((x) => fixed(x, 1)).join(' / '),
      fixed(median(r.cpuUs), 1),
      `${fixed(median(r.cpuUs) / base, 3)}×`,
      int(median(r.rps)),
      r.checks,
    ]),
  );
}
