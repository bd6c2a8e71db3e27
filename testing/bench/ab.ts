/**
 * @module `bun run testing/bench/ab.ts`: paired before-and-after runs. Several kube-audit-rest variants
 * (an older commit, today's build, today's build with other flags) run side by side, each loaded by its
 * own wrk over the same seconds, so the machine's drift hits them alike; each reports its CPU per
 * request from /proc and its log check.
 *
 *   bun run testing/bench/ab.ts --variant=before@4bfffe6 --variant=now \
 *     --variant='event@:--output-format=audit-event' [--workload=mix|lease-update|...] [--rounds=3]
 *
 * A variant is `name`, `name@REF` (that commit, built once into .cache/ab/) or `name@REF:FLAGS` (flags
 * separated by spaces); no ref means the working tree's dist/kube-audit-rest. BENCH_SECONDS (5),
 * BENCH_CONNECTIONS (16 per variant) set the load.
 *
 * Caller options: in FLAGS, `{tokens}` stands for a token file the run writes (one random token,
 * naming cluster `bench`), and that variant is loaded at `/log-request/<token>`; `{client-ca}` stands
 * for the run's CA, and every wrk then presents a client certificate it signed (wrk has no option
 * for one: testing/bench/wrk-client-cert.c, built into .cache/wrk-client-cert/, adds it). With
 * `--connection-close` every request opens a new connection, so each pays a full TLS handshake.
 *
 *   bun run testing/bench/ab.ts --variant=before@main --variant=now \
 *     --variant='token@:--path-token-file={tokens}' --variant='mtls@:--client-ca-file={client-ca}'
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { freePort, waitUntil } from '../../test/helpers/server-process.ts';
import { runClosedLoop } from './closed-loop.ts';
import { CAPTURED, loadTemplates, mixWorkload, single, type Workload } from './corpus.ts';
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

type Variant = { name: string; exe: string; args: string[] };

/** Builds commit `ref` into the cache once, and returns its executable. */
function buildRef(ref: string): string {
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

function parseVariant(spec: string): Variant {
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

/** What the `{...}` placeholders of variant flags stand for in this run, and the token behind `{tokens}`. */
type Placeholders = { tokens: string; 'client-ca': string; token: string };

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

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const specs = argv.filter((a) => a.startsWith('--variant=')).map((a) => a.slice('--variant='.length));
  const workloadName = argv.find((a) => a.startsWith('--workload='))?.slice('--workload='.length) ?? 'mix';
  const rounds = Number(argv.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? 3);
  const connectionClose = argv.includes('--connection-close');
  if (specs.length < 2) throw new Error('give at least two --variant= (see ab.ts)');
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 16);
  const variants = specs.map(parseVariant);
  const templates = loadTemplates();
  const workload: Workload =
    workloadName === 'mix'
      ? mixWorkload(templates)
      : single(
          templates.find((t) => t.name === workloadName) ??
            (() => {
              throw new Error(`--workload: one of mix, ${CAPTURED.join(', ')}`);
            })(),
        );

  const dir = mkdtempSync(join(tmpdir(), 'kar-ab-run-'));
  const ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca);
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
    for (let r = 0; r < rounds; r++) {
      const servers = await Promise.all(
        variants.map((v) => start(v, dir, cert.certFile, cert.keyFile, placeholders)),
      );
      try {
        // Warm-up, then the measured run, all variants at once.
        const load = async (seconds: number) => {
          const runs = servers.map(() => ++run);
          const cpu0 = servers.map((s) => cpuSeconds(s.proc.pid));
          const results = await Promise.all(
            servers.map((s, i) =>
              runClosedLoop({
                port: s.port,
                workload,
                seconds,
                connections,
                threads: 1,
                run: runs[i] as number,
                dir,
                drainTimeoutSeconds: 30,
                path: s.path,
                connectionClose,
                ...(wrkEnv === undefined ? {} : { env: wrkEnv }),
              }),
            ),
          );
          return { runs, results, cpu: servers.map((s, i) => cpuSeconds(s.proc.pid) - (cpu0[i] as number)) };
        };
        const warm = await load(1);
        const measured = await load(seconds);
        servers.forEach((s, i) => {
          const acked = measured.results[i]?.acknowledged ?? 0;
          cpu[i]?.push(((measured.cpu[i] as number) / acked) * 1e6);
          rps[i]?.push(acked / seconds);
          const check = checkLog(s.logFile, new Set([warm.runs[i] as number, measured.runs[i] as number]));
          const ackedAll = acked + (warm.results[i]?.acknowledged ?? 0);
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = variants.map((v, i) => [
    v.name,
    v.args.join(' ') || '(defaults)',
    (cpu[i] ?? []).map((x) => fixed(x, 1)).join(' / '),
    fixed(median(cpu[i] ?? []), 1),
    int(median(rps[i] ?? [])),
    checks[i] as string,
  ]);
  process.stdout.write(
    `${table(['variant', 'flags', 'CPU µs per request, each round', 'median', 'req/s (median)', 'log lines / acknowledged'], rows)}\n\n` +
      `Workload ${workload.name}, ${rounds} rounds of ${seconds} s, ${connections} ${connectionClose ? 'clients opening a new connection per request' : 'kept-alive connections'} per variant, all variants loaded at once.\n`,
  );
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor(s.length / 2)] as number);
}

if (import.meta.main) await main();
