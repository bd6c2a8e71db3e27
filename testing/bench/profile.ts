/**
 * @module `bun run testing/bench/profile.ts [--workload=mix|NAME] [--seconds=8] -- [server flags]`: runs
 * the server from source under Bun's CPU profiler while wrk sends a corpus workload, and leaves the
 * profile (Chrome format and a markdown summary) in .cache/profiles/. For finding where a hot-path
 * change spends its time; the figures to quote come from ab.ts and bench.ts, not from here.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { freePort, waitUntil } from '../../test/helpers/server-process.ts';
import { runClosedLoop } from './closed-loop.ts';
import { loadTemplates, mixWorkload, single } from './corpus.ts';

const REPO = join(import.meta.dir, '..', '..');
const OUT = join(REPO, '.cache', 'profiles');
/** Sampling interval: fine enough for a few-microsecond request. */
const INTERVAL_US = 200;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const serverFlags = dash < 0 ? [] : argv.slice(dash + 1);
  const workloadName = own.find((a) => a.startsWith('--workload='))?.slice(11) ?? 'mix';
  const seconds = Number(own.find((a) => a.startsWith('--seconds='))?.slice(10) ?? 8);
  const templates = loadTemplates();
  const template = templates.find((t) => t.name === workloadName);
  const workload = workloadName === 'mix' ? mixWorkload(templates) : template && single(template);
  if (workload === undefined)
    throw new Error(`--workload: mix or one of ${templates.map((t) => t.name).join(', ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'kar-profile-'));
  mkdirSync(OUT, { recursive: true });
  const ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca);
  const port = freePort();
  const metricsPort = freePort();
  const proc = Bun.spawn(
    [
      process.execPath,
      '--cpu-prof',
      '--cpu-prof-md',
      `--cpu-prof-dir=${OUT}`,
      `--cpu-prof-interval=${INTERVAL_US}`,
      join(REPO, 'src', 'main.ts'),
      `--server-port=${port}`,
      `--metrics-port=${metricsPort}`,
      '--bind-address=127.0.0.1',
      `--cert-filename=${cert.certFile}`,
      `--cert-key-filename=${cert.keyFile}`,
      `--logger-filename=${join(dir, 'audit.log')}`,
      '--logger-max-size=1000000',
      ...serverFlags,
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' },
  );
  try {
    await waitUntil(
      () =>
        fetch(`http://127.0.0.1:${metricsPort}/readyz`).then(
          (r) => r.status === 200,
          () => false,
        ),
      15_000,
      'server /readyz',
    );
    const before = new Set(readdirSync(OUT));
    const r = await runClosedLoop({
      port,
      workload,
      seconds,
      connections: 16,
      threads: 1,
      run: 1,
      dir,
      drainTimeoutSeconds: 30,
    });
    proc.kill('SIGTERM');
    await proc.exited;
    const made = readdirSync(OUT).filter((f) => !before.has(f));
    process.stdout.write(
      `${r.acknowledged} requests in ${seconds} s; profile: ${made.map((f) => join(OUT, f)).join(', ')}\n`,
    );
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
