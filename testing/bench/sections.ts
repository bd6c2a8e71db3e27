/**
 * @module The bench's sections: what each one runs, and the markdown tables it prints.
 */
import {
  CONFIGMAP_1MIB,
  MIB,
  MIX_WEIGHTS,
  meanBodyBytes,
  single,
  sizedTemplate,
  type Workload,
} from './corpus.ts';
import { type OpenLoopResult, runOpenLoop } from './open-loop.ts';
import { cpuSeconds, type RssSeries } from './proc-stats.ts';
import { fixed, int, mib, ms, percent, size, table } from './report.ts';
import {
  type Context,
  closedLoop,
  type Ending,
  type Measured,
  measure,
  type Pair,
  pair,
  progress,
  withServer,
} from './runs.ts';
import type { ServerKind } from './servers.ts';

/** Body sizes of the sweep: 1 KiB to 3 MiB (the server's default cap is 5 MiB). */
const SWEEP_SIZES = [1024, 4096, 16_384, 65_536, 262_144, MIB, 3 * MIB] as const;
/** The rate of the open-loop run, as a share of the measured maximum. */
export const OPEN_LOOP_SHARE = 0.5;
/** The latency goal the open-loop table is judged against, in µs. */
const P99_GOAL_US = 2000;
/**
 * How much the last third of a sustained run's RSS samples (low and mean) must exceed the first third's to
 * count as growth: the GC sawtooth alone moves RSS by 10-20 % within seconds.
 */
const GROWTH_MARGIN = 0.1;
/** The CPU the one-core runs pin server and generator to. */
const ONE_CPU = '0';

/** The corpus section's tables: kube-audit-rest and the floor, one row per workload. */
export function corpusTables(workloads: readonly Workload[], pairs: readonly Pair[], ctx: Context): string {
  const ours = pairs.map((p, i) => {
    const w = workloads[i] as Workload;
    const o = p.ours;
    return [
      w.name,
      size(Math.round(meanBodyBytes(w))),
      int(o.load.rps),
      percent(o.load.rps / p.floor.load.rps),
      ms(o.load.p50Us),
      ms(o.load.p99Us),
      ms(o.load.p999Us),
      fixed(o.cpuPer1k, 3),
      mib(o.peakRssBytes),
      fixed(o.logBytesPerSecond / MIB, 1),
      o.check?.text ?? '',
    ];
  });
  const floor = pairs.map((p, i) => [
    (workloads[i] as Workload).name,
    int(p.floor.load.rps),
    ms(p.floor.load.p50Us),
    ms(p.floor.load.p99Us),
    ms(p.floor.load.p999Us),
    fixed(p.floor.cpuPer1k, 3),
    mib(p.floor.peakRssBytes),
  ]);
  const s = ctx.settings;
  return [
    '## Throughput per corpus entry (closed loop)',
    '',
    `wrk, ${s.threads} thread, ${s.connections} kept-alive TLS connections (one request in flight on each), ` +
      `${s.warmupSeconds} s warm-up then ${s.seconds} s measured, a fresh server per row. Latency is wrk's (at ` +
      'saturation, so mostly queueing; see the open-loop table for latency at a set rate). CPU is the server ' +
      "process's utime + stime over the measured run; peak RSS its VmHWM; log MiB/s the audit log's growth.",
    '',
    '**kube-audit-rest**',
    '',
    table(
      [
        'workload',
        'mean body',
        'req/s',
        'of floor',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'CPU s / 1k req',
        'peak RSS MiB',
        'log MiB/s',
        'log check',
      ],
      ours,
    ),
    '',
    '**floor** (floor-server.ts: reads the body, answers a fixed "allowed")',
    '',
    table(['workload', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'CPU s / 1k req', 'peak RSS MiB'], floor),
    '',
    `Mix weights per 1,000 requests: ${Object.entries(MIX_WEIGHTS)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')} (why: corpus.ts, MIX_WEIGHTS).`,
    '',
  ].join('\n');
}

/** One open-loop run: which server, which workload, what the generator saw and the server's CPU. */
export type OpenRow = {
  kind: ServerKind;
  workload: string;
  result: OpenLoopResult;
  cpuPer1k: number;
} & Ending;

/**
 * The mix at `OPEN_LOOP_SHARE` of `maxRate` on kube-audit-rest and on the floor; then, on kube-audit-rest,
 * the mix without its 1 MiB ConfigMap at the same rate, which shows how much of the tail those few large
 * bodies cause (the server handles one request at a time, so a 1 MiB body delays whatever arrives behind it).
 */
export async function openLoop(
  ctx: Context,
  mix: Workload,
  maxRate: number,
): Promise<{ rows: OpenRow[]; rate: number }> {
  const rate = Math.max(1, Math.round(maxRate * OPEN_LOOP_SHARE));
  const big = mix.templates.findIndex((t) => t.name === CONFIGMAP_1MIB);
  const small: Workload = {
    ...mix,
    name: `mix without ${CONFIGMAP_1MIB}`,
    schedule: mix.schedule.filter((i) => i !== big),
  };
  const rows: OpenRow[] = [];
  for (const [kind, workload] of [
    ['kube-audit-rest', mix],
    ['floor', mix],
    ['kube-audit-rest', small],
  ] as const) {
    const row = await withServer(ctx, kind, `open loop, ${workload.name} (${kind})`, async (session) => {
      await closedLoop(ctx, session, workload, ctx.settings.warmupSeconds, ctx.settings.connections);
      const run = ++ctx.run;
      session.runs.add(run);
      const cpu0 = cpuSeconds(session.server.pid);
      const result = await runOpenLoop({
        port: session.server.port,
        caFile: ctx.ca.certFile,
        workload,
        rate,
        seconds: ctx.settings.openSeconds,
        connections: ctx.settings.openConnections,
        run,
        dir: ctx.work,
      });
      const cpu = cpuSeconds(session.server.pid) - cpu0;
      session.acknowledged += result.acknowledged;
      // Non-200 answers are never logged; a request lost with its connection may have been.
      session.unknown += result.sent - result.acknowledged;
      return { kind, workload: workload.name, result, cpuPer1k: (cpu / result.acknowledged) * 1000 };
    });
    progress(
      `open loop, ${workload.name}, ${kind} at ${int(rate)} req/s: p99 ${ms(row.result.service.p99Us)} ms, ` +
        `log ${row.check?.text ?? '-'}`,
    );
    rows.push(row);
  }
  return { rows, rate };
}

/** The open-loop section's table and the verdict against the 2 ms goal. */
export function openTable(ctx: Context, rows: readonly OpenRow[], rate: number, maxRate: number): string {
  const ours = rows.find((r) => r.kind === 'kube-audit-rest' && r.workload === 'mix');
  const goal =
    ours === undefined
      ? ''
      : `p99 ${ms(ours.result.service.p99Us)} ms from the write (${ms(ours.result.scheduled.p99Us)} ms from the scheduled time): ` +
        `${ours.result.service.p99Us < P99_GOAL_US ? 'under' : 'over'} the 2 ms goal.`;
  return [
    `## Latency at a set rate (open loop, mix at ${percent(OPEN_LOOP_SHARE)} of the maximum)`,
    '',
    `open-loop.ts: ${int(rate)} req/s (${percent(OPEN_LOOP_SHARE)} of kube-audit-rest's ${int(maxRate)} req/s on the mix), ` +
      `evenly spaced, ${ctx.settings.openSeconds} s after a ${ctx.settings.warmupSeconds} s closed-loop warm-up, ` +
      `${ctx.settings.openConnections} kept-alive connections; the floor gets the same rate. p50/p99/p99.9/max are ` +
      'from writing the request to the last byte of the answer; "from schedule" adds the wait for an idle ' +
      'connection and the generator\'s own delay ("lateness"). The generator dispatches on timers that fire about ' +
      'once a millisecond ("timer lag": how late they fire), so requests leave in small bursts; it shares the ' +
      "machine with the server (its CPU per request is shown), so the floor's row is the harness's own noise.",
    '',
    table(
      [
        'server',
        'workload',
        'sent',
        'achieved req/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'max ms',
        'from schedule p50 / p99 / p99.9 ms',
        'lateness p99 ms',
        'generator timer lag p99 ms',
        'max queued',
        'CPU s / 1k req',
        'generator CPU s / 1k req',
        'log check',
      ],
      rows.map((r) => [
        r.kind,
        r.workload,
        int(r.result.sent),
        int(r.result.achievedRate),
        ms(r.result.service.p50Us),
        ms(r.result.service.p99Us),
        ms(r.result.service.p999Us),
        ms(r.result.service.maxUs),
        `${ms(r.result.scheduled.p50Us)} / ${ms(r.result.scheduled.p99Us)} / ${ms(r.result.scheduled.p999Us)}`,
        ms(r.result.lateness.p99Us),
        ms(r.result.timerLag.p99Us),
        int(r.result.maxQueued),
        fixed(r.cpuPer1k, 3),
        fixed(r.result.generatorCpuPer1k, 3),
        r.check?.text ?? '',
      ]),
    ),
    '',
    goal,
    '',
  ].join('\n');
}

/** Whether RSS grew over a sustained run: the last third's low and mean both above the first third's by the margin. */
function growth(rss: RssSeries): string {
  const { firstThird: a, lastThird: b } = rss;
  const grew =
    b.minBytes > a.minBytes * (1 + GROWTH_MARGIN) && b.meanBytes > a.meanBytes * (1 + GROWTH_MARGIN);
  return grew ? `grows (low ${mib(a.minBytes)} → ${mib(b.minBytes)} MiB)` : 'no growth seen';
}

/** The memory section's text and the peaks sizing needs. */
export type MemoryFindings = { text: string; sustainedPeakBytes: number; bigPeakBytes: number };

/** Runs the memory section: RSS under a sustained mix, and the peak with 1 MiB bodies in flight. */
export async function memorySection(ctx: Context, mix: Workload, big: Workload): Promise<MemoryFindings> {
  const s = ctx.settings;
  const sustained = await withServer(ctx, 'kube-audit-rest', 'sustained mix', (session) =>
    measure(ctx, session, mix, { seconds: s.sustainSeconds, connections: s.connections, sampleRss: true }),
  );
  const rss = sustained.rss as RssSeries;
  progress(`sustained mix: RSS ${mib(rss.startBytes)} → ${mib(rss.endBytes)} MiB, ${growth(rss)}`);
  const bigPair = await pair(ctx, big, {
    seconds: s.memorySeconds,
    connections: s.memoryConnections,
    sampleRss: true,
  });
  const bigRow = (name: string, m: Measured & Ending) => [
    name,
    int(m.load.rps),
    mib(m.idleRssBytes),
    mib((m.rss as RssSeries).maxBytes),
    mib(m.peakRssBytes),
    mib((m.rss as RssSeries).endBytes),
    m.check?.text ?? '',
  ];
  const text = [
    '## Memory',
    '',
    `**Sustained mix**: kube-audit-rest, ${s.sustainSeconds} s closed loop at ${s.connections} connections after a ` +
      `${s.warmupSeconds} s warm-up; RSS (VmRSS) sampled every second. RSS rises and falls with each collection, ` +
      `so growth means the last third's low and mean both above the first third's by ${percent(GROWTH_MARGIN)}.`,
    '',
    table(
      [
        'req/s',
        'idle RSS MiB',
        'start MiB',
        'end MiB',
        'max MiB',
        'peak (VmHWM) MiB',
        'slope MiB/min',
        'first third low / mean MiB',
        'last third low / mean MiB',
        'verdict',
        'log check',
      ],
      [
        [
          int(sustained.load.rps),
          mib(sustained.idleRssBytes),
          mib(rss.startBytes),
          mib(rss.endBytes),
          mib(rss.maxBytes),
          mib(sustained.peakRssBytes),
          fixed(rss.slopeBytesPerMinute / MIB, 2),
          `${mib(rss.firstThird.minBytes)} / ${mib(rss.firstThird.meanBytes)}`,
          `${mib(rss.lastThird.minBytes)} / ${mib(rss.lastThird.meanBytes)}`,
          growth(rss),
          sustained.check?.text ?? '',
        ],
      ],
    ),
    '',
    `**1 MiB bodies, ${s.memoryConnections} in flight**: ${s.memoryConnections} connections posting the 1 MiB ConfigMap ` +
      `back to back for ${s.memorySeconds} s after a ${s.warmupSeconds} s warm-up.`,
    '',
    table(
      [
        'server',
        'req/s',
        'idle RSS MiB',
        'max sampled RSS MiB',
        'peak (VmHWM) MiB',
        'RSS at the end MiB',
        'log check',
      ],
      [bigRow('kube-audit-rest', bigPair.ours), bigRow('floor', bigPair.floor)],
    ),
    '',
    'RSS samples of the sustained run (s: MiB): ' +
      rss.samples
        .filter((_, i) => i % Math.max(1, Math.round(rss.samples.length / 12)) === 0)
        .map((x) => `${x.t.toFixed(0)}: ${mib(x.rssBytes)}`)
        .join(', '),
    '',
  ].join('\n');
  return { text, sustainedPeakBytes: sustained.peakRssBytes, bigPeakBytes: bigPair.ours.peakRssBytes };
}

/** Runs the body-size sweep, kube-audit-rest and the floor at each size. */
export async function sweepSection(ctx: Context): Promise<string> {
  const s = ctx.settings;
  const rows: string[][] = [];
  for (const bytes of SWEEP_SIZES) {
    const w = single(sizedTemplate(bytes, `configmap-${size(bytes).replace(' ', '')}`));
    const p = await pair(ctx, w, { seconds: s.sweepSeconds, connections: s.connections });
    rows.push([
      size(bytes),
      int(p.ours.load.rps),
      fixed((p.ours.load.rps * bytes) / MIB, 1),
      fixed(p.ours.cpuPer1k, 3),
      fixed(((p.ours.cpuPer1k / 1000) * 1e6) / (bytes / 1024), 1),
      ms(p.ours.load.p99Us),
      mib(p.ours.peakRssBytes),
      int(p.floor.load.rps),
      percent(p.ours.load.rps / p.floor.load.rps),
      p.ours.check?.text ?? '',
    ]);
  }
  return [
    '## Cost against body size (closed loop)',
    '',
    `The captured ConfigMap create padded to each size (config-file text with \`\\n\` escapes); ${s.connections} ` +
      `connections, ${s.warmupSeconds} s warm-up, ${s.sweepSeconds} s measured, a fresh server per row. The server's ` +
      'default `--max-request-bytes` is 5 MiB; a ConfigMap holds at most 1 MiB of data, so the 3 MiB row stands for an ' +
      'update of a large object (object and oldObject) or a big custom resource.',
    '',
    table(
      [
        'body',
        'req/s',
        'body MiB/s',
        'CPU s / 1k req',
        'CPU µs / KiB',
        'p99 ms',
        'peak RSS MiB',
        'floor req/s',
        'of floor',
        'log check',
      ],
      rows,
    ),
    '',
  ].join('\n');
}

/** Runs the mix unpinned and with server and wrk on one CPU, kube-audit-rest and the floor each. */
export async function coresSection(ctx: Context, mix: Workload): Promise<string> {
  const s = ctx.settings;
  const rows: string[][] = [];
  for (const cpus of [undefined, ONE_CPU]) {
    const p = await pair(ctx, mix, {
      seconds: s.seconds,
      connections: s.connections,
      ...(cpus === undefined ? {} : { cpus }),
    });
    const label = cpus === undefined ? '2 (not pinned)' : `1 (taskset -c ${cpus}: server and wrk)`;
    for (const [name, m] of [
      ['kube-audit-rest', p.ours],
      ['floor', p.floor],
    ] as const)
      rows.push([
        label,
        name,
        int(m.load.rps),
        name === 'floor' ? '' : percent(p.ours.load.rps / p.floor.load.rps),
        fixed(m.cpuPer1k, 3),
        ms(m.load.p50Us),
        ms(m.load.p99Us),
        m.check?.text ?? '',
      ]);
  }
  return [
    '## One core against two (mix, closed loop)',
    '',
    'With one core the server and wrk take turns on CPU 0, so the rate is what one core does for both; with two, ' +
      'each has a core (the server is one JavaScript thread plus Bun helper threads).',
    '',
    table(['CPUs', 'server', 'req/s', 'of floor', 'CPU s / 1k req', 'p50 ms', 'p99 ms', 'log check'], rows),
    '',
  ].join('\n');
}

/** The resources per 1,000 requests per second, derived from the mix and memory measurements. */
export function sizingSection(mix: Pair | undefined, mem: MemoryFindings | undefined): string {
  if (mix === undefined) return '';
  const cores = mix.ours.cpuPer1k; // CPU seconds per 1,000 requests = cores busy at 1,000 requests/s
  const rows = [
    [
      'CPU, busy',
      `${fixed(cores * 1000, 0)} millicores`,
      'CPU s per 1,000 requests of the mix (corpus table)',
    ],
    [
      'CPU, to request',
      `${fixed(cores * 2000, 0)} millicores`,
      `twice busy: run at or under ${percent(OPEN_LOOP_SHARE)} of the maximum, where the open-loop latency was measured`,
    ],
    [
      'memory, mix',
      `${mib(mem?.sustainedPeakBytes ?? mix.ours.peakRssBytes)} MiB peak RSS`,
      'hardly depends on the rate',
    ],
  ];
  if (mem !== undefined)
    rows.push([
      'memory, large objects',
      `${mib(mem.bigPeakBytes)} MiB peak RSS`,
      `with ${'1 MiB'} bodies on every connection of the memory section`,
    ]);
  return [
    '## Sizing: per 1,000 requests per second of the mix',
    '',
    table(['resource', 'value', 'from'], rows),
    '',
  ].join('\n');
}
