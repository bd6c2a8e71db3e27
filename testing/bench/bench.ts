/**
 * @module `bun run bench`: kube-audit-rest under the API server's kind of load, beside the do-nothing
 * floor server, on the same machine with the same harness; prints markdown tables and writes them to
 * testing/bench/results/latest.md.
 *
 * Sections (all by default; `--only=corpus,open,...` picks some):
 * - features: the audit Policy, audit-event lines and Secret redaction, each set of flags on the mix in
 *   paired runs, and in process per body (features.ts).
 * - corpus: each captured review (corpus.ts) and the weighted mix, closed loop (wrk, as fast as the server
 *   answers): requests/s, latency, CPU seconds per 1,000 requests, peak RSS, log bytes/s; the same for the
 *   floor; our rate as a share of the floor's is the headline.
 * - open: the mix at half our maximum rate, open loop (open-loop.ts): p50/p99/p99.9 latency.
 * - memory: RSS every second under a sustained mix (growth?), and the peak with 1 MiB bodies in flight.
 * - sweep: throughput against body size, 1 KiB to 3 MiB (padded ConfigMaps).
 * - cores: the mix with server and generator sharing one core (taskset) against two.
 * - micro: micro.ts, time per call of the hot-path pieces.
 * Every kube-audit-rest run ends with the log check (log-check.ts): one whole line per acknowledged
 * request, exactly, since both generators stop issuing requests and drain before they stop.
 *
 * Flags: --quick (short runs, about 3 minutes), --only=SECTIONS, --no-build (use dist/ as it is),
 * --out=FILE. Environment (seconds unless said): BENCH_SECONDS (measured run, 10), BENCH_WARMUP_SECONDS (2),
 * BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 1), BENCH_OPEN_SECONDS (20), BENCH_OPEN_CONNECTIONS
 * (64), BENCH_SUSTAIN_SECONDS (60), BENCH_MEMORY_SECONDS (10), BENCH_MEMORY_CONNECTIONS (16),
 * BENCH_SWEEP_SECONDS (5), BENCH_DIR (scratch and audit logs; default the OS temp dir).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { CAPTURED, CONFIGMAP_1MIB, loadTemplates, mixWorkload, single } from './corpus.ts';
import { featuresSection } from './features.ts';
import { fixed, int, machine, ms, percent } from './report.ts';
import { type Context, measure, type Pair, pair, progress, withServer } from './runs.ts';
import {
  coresSection,
  corpusTables,
  type MemoryFindings,
  memorySection,
  OPEN_LOOP_SHARE,
  openLoop,
  openTable,
  sizingSection,
  sweepSection,
} from './sections.ts';
import { parseSettings, type Section } from './settings.ts';

/** Runs the chosen sections, writes the results file, and returns the exit status (1 if a log check failed). */
async function main(): Promise<number> {
  const settings = parseSettings(process.argv.slice(2), process.env);
  for (const tool of ['wrk', 'taskset', 'openssl'])
    if (!Bun.which(tool))
      throw new Error(
        `${tool} is not installed (Debian: apt-get install ${tool === 'taskset' ? 'util-linux' : tool})`,
      );
  const started = performance.now();
  if (settings.build) {
    progress('bun run build');
    const build = Bun.spawnSync([process.execPath, 'run', 'build'], {
      cwd: join(import.meta.dir, '..', '..'),
      stdout: 'ignore',
      stderr: 'pipe',
    });
    if (build.exitCode !== 0) throw new Error(`bun run build failed: ${build.stderr.toString()}`);
  }
  const work = mkdtempSync(join(settings.dir, 'kar-bench-'));
  // Certificates in a directory of their own, as in a pod (a mounted Secret): the server watches its
  // certificate's directory, so audit logs written beside it would wake the watcher on every write.
  const tlsDir = join(work, 'tls');
  mkdirSync(tlsDir);
  const ca = await makeCa(tlsDir);
  const cert = await makeServerCert(tlsDir, ca);
  const ctx: Context = {
    settings,
    work,
    ca,
    cert,
    live: new Set(),
    failures: [],
    checks: 0,
    run: Math.floor(Math.random() * 0xffff) << 12,
  };
  const interrupted = () => {
    for (const s of ctx.live) process.kill(s.pid, 'SIGKILL');
    rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', interrupted);
  process.on('SIGTERM', interrupted);

  const out: string[] = [];
  const headline: string[] = [];
  try {
    const templates = loadTemplates();
    const mix = mixWorkload(templates);
    const byName = (name: string) => {
      const template = templates.find((t) => t.name === name);
      if (template === undefined) throw new Error(`no template ${name}`);
      return single(template);
    };
    const workloads = [...CAPTURED.map(byName), byName(CONFIGMAP_1MIB), mix];
    const has = (s: Section) => settings.sections.has(s);

    let mixPair: Pair | undefined;
    if (has('corpus')) {
      const pairs: Pair[] = [];
      for (const w of workloads)
        pairs.push(await pair(ctx, w, { seconds: settings.seconds, connections: settings.connections }));
      mixPair = pairs[pairs.length - 1];
      out.push(corpusTables(workloads, pairs, ctx));
      if (mixPair !== undefined)
        headline.push(
          `- **mix: ${int(mixPair.ours.load.rps)} req/s, ${percent(mixPair.ours.load.rps / mixPair.floor.load.rps)} of the floor's ` +
            `${int(mixPair.floor.load.rps)}**; ${fixed(mixPair.ours.cpuPer1k, 3)} CPU s per 1,000 requests`,
        );
    }
    if (has('features')) {
      progress('features: policy, audit-event, redaction');
      out.push(await featuresSection(ctx, mix, join(import.meta.dir, '..', '..', 'dist', 'kube-audit-rest')));
    }
    if (has('open')) {
      let maxRate = mixPair?.ours.load.rps;
      if (maxRate === undefined) {
        const m = await withServer(ctx, 'kube-audit-rest', 'max rate', (s) =>
          measure(ctx, s, mix, { seconds: settings.seconds, connections: settings.connections }),
        );
        maxRate = m.load.rps;
      }
      const { rows, rate } = await openLoop(ctx, mix, maxRate);
      out.push(openTable(ctx, rows, rate, maxRate));
      const ours = rows.find((r) => r.kind === 'kube-audit-rest' && r.workload === 'mix');
      if (ours !== undefined)
        headline.push(
          `- **at ${int(rate)} req/s (${percent(OPEN_LOOP_SHARE)} of the maximum): p50 ${ms(ours.result.service.p50Us)} ms, ` +
            `p99 ${ms(ours.result.service.p99Us)} ms, p99.9 ${ms(ours.result.service.p999Us)} ms**`,
        );
    }
    let mem: MemoryFindings | undefined;
    if (has('memory')) {
      mem = await memorySection(ctx, mix, byName(CONFIGMAP_1MIB));
      out.push(mem.text);
    }
    if (has('sweep')) out.push(await sweepSection(ctx));
    if (has('cores')) out.push(await coresSection(ctx, mix));
    out.push(sizingSection(mixPair, mem));
    if (has('micro')) {
      progress('micro-benchmarks');
      const micro = Bun.spawnSync(
        [process.execPath, join(import.meta.dir, 'micro.ts'), ...(settings.quick ? ['--quick'] : [])],
        {
          stdout: 'pipe',
          stderr: 'pipe',
        },
      );
      if (micro.exitCode !== 0) throw new Error(`micro.ts failed: ${micro.stderr.toString()}`);
      out.push(micro.stdout.toString());
    }
  } finally {
    for (const s of ctx.live) await s.stop();
    rmSync(work, { recursive: true, force: true });
  }

  const minutes = (performance.now() - started) / 60_000;
  const args = process.argv.slice(2);
  const header = [
    '# kube-audit-rest benchmark',
    '',
    ...machine(),
    `- command: \`bun run bench${args.length > 0 ? ` ${args.join(' ')}` : ''}\`; took ${fixed(minutes, 1)} min`,
    '- one run on a machine that may be shared with other work: compare rows of one run, not runs of different days',
    '',
    ...headline,
    ...(ctx.failures.length > 0
      ? [`- **LOG CHECK FAILED**: ${ctx.failures.join('; ')}`]
      : ctx.checks > 0
        ? [
            `- audit log check: exact on all ${ctx.checks} kube-audit-rest runs (one whole line per acknowledged request)`,
          ]
        : []),
    '',
  ];
  const text = [...header, ...out].join('\n');
  mkdirSync(dirname(settings.out), { recursive: true });
  writeFileSync(settings.out, text);
  process.stdout.write(text);
  progress(`written to ${settings.out}`);
  return ctx.failures.length > 0 ? 1 : 0;
}

if (import.meta.main)
  process.exit(
    await main().catch((error: unknown) => {
      process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
      return 1;
    }),
  );
