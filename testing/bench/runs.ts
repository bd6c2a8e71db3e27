/**
 * @module How the bench runs a server and measures it: a fresh server per measurement, a warm-up, a
 * measured closed-loop run with the server's CPU, memory and log growth, and the log check at the end.
 */
import { rmSync, statSync } from 'node:fs';
import type { TestCa, TestServerCert } from '../../test/helpers/certs.ts';
import { type ClosedLoopResult, runClosedLoop } from './closed-loop.ts';
import type { Workload } from './corpus.ts';
import { checkLog } from './log-check.ts';
import { cpuSeconds, memory, type RssSeries, sampleRss } from './proc-stats.ts';
import { int, ms, percent, type Verdict, verdict } from './report.ts';
import { type BenchServer, type ServerKind, startBenchServer } from './servers.ts';
import type { Settings } from './settings.ts';

/** RSS sampling interval of the memory section. */
const RSS_SAMPLE_MS = 1000;
/** Longest wait for requests in flight after a closed-loop deadline (3 MiB bodies at 32 connections). */
const DRAIN_TIMEOUT_SECONDS = 30;

/** What one bench shares across sections. */
export type Context = {
  settings: Settings;
  work: string;
  ca: TestCa;
  cert: TestServerCert;
  /** Servers running now, stopped on Ctrl-C. */
  live: Set<BenchServer>;
  /** Log checks that failed; the bench exits 1 if any did. */
  failures: string[];
  /** Log checks made. */
  checks: number;
  run: number;
};

/** A server's run: which load runs it saw and what they acknowledged, for its log check. */
export type Session = {
  server: BenchServer;
  runs: Set<number>;
  acknowledged: number;
  /** Requests whose fate the generator could not see: cut off in flight, or lost with a connection. */
  unknown: number;
  idleRssBytes: number;
};

/** What a server's run ends with. */
export type Ending = { peakRssBytes: number; check: Verdict | undefined };

/** Writes a progress line to stderr (the tables go to stdout). */
export function progress(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

/** Starts a server, runs `body`, stops it, and checks its log (kube-audit-rest). */
export async function withServer<T>(
  ctx: Context,
  kind: ServerKind,
  label: string,
  body: (session: Session) => Promise<T>,
  cpus?: string,
): Promise<T & Ending> {
  const server = await startBenchServer({
    kind,
    cert: ctx.cert,
    dir: ctx.work,
    ...(cpus === undefined ? {} : { cpus }),
  });
  ctx.live.add(server);
  const session: Session = {
    server,
    runs: new Set(),
    acknowledged: 0,
    unknown: 0,
    idleRssBytes: memory(server.pid).rssBytes,
  };
  let result: T;
  let peakRssBytes: number;
  try {
    result = await body(session);
    peakRssBytes = memory(server.pid).peakRssBytes;
  } finally {
    await server.stop();
    ctx.live.delete(server);
  }
  let check: Verdict | undefined;
  if (server.logFile !== undefined) {
    check = verdict(checkLog(server.logFile, session.runs), session.acknowledged, session.unknown);
    rmSync(server.logFile, { force: true });
    ctx.checks++;
    if (!check.ok) ctx.failures.push(`${label}: ${check.text}`);
  }
  return { ...result, peakRssBytes, check };
}

/** One closed-loop run on a session's server. */
export async function closedLoop(
  ctx: Context,
  session: Session,
  workload: Workload,
  seconds: number,
  connections: number,
  cpus?: string,
): Promise<ClosedLoopResult> {
  const run = ++ctx.run;
  session.runs.add(run);
  const r = await runClosedLoop({
    port: session.server.port,
    workload,
    seconds,
    connections,
    threads: ctx.settings.threads,
    run,
    dir: ctx.work,
    drainTimeoutSeconds: DRAIN_TIMEOUT_SECONDS,
    ...(cpus === undefined ? {} : { cpus }),
  });
  session.acknowledged += r.acknowledged;
  session.unknown += r.sent - r.completed;
  return r;
}

/** A measured closed-loop run and what the server spent on it. */
export type Measured = {
  load: ClosedLoopResult;
  /** Server CPU seconds per 1,000 acknowledged requests. */
  cpuPer1k: number;
  /** Audit log bytes written per second of the run. */
  logBytesPerSecond: number;
  idleRssBytes: number;
  rss: RssSeries | undefined;
};

/** Warm-up, then a measured closed-loop run with CPU, log growth and (optionally) RSS samples. */
export async function measure(
  ctx: Context,
  session: Session,
  workload: Workload,
  options: { seconds: number; connections: number; cpus?: string; sampleRss?: boolean },
): Promise<Measured> {
  const { server } = session;
  await closedLoop(ctx, session, workload, ctx.settings.warmupSeconds, options.connections, options.cpus);
  const logSize = () => (server.logFile === undefined ? 0 : statSync(server.logFile).size);
  const sampler = options.sampleRss ? sampleRss(server.pid, RSS_SAMPLE_MS) : undefined;
  const cpu0 = cpuSeconds(server.pid);
  const log0 = logSize();
  const load = await closedLoop(ctx, session, workload, options.seconds, options.connections, options.cpus);
  const cpu = cpuSeconds(server.pid) - cpu0;
  const rss = sampler?.stop();
  return {
    load,
    cpuPer1k: (cpu / load.acknowledged) * 1000,
    logBytesPerSecond: (logSize() - log0) / options.seconds,
    idleRssBytes: session.idleRssBytes,
    rss,
  };
}

/** The same workload measured on kube-audit-rest and on the floor. */
export type Pair = { ours: Measured & Ending; floor: Measured & Ending };

/** Measures one workload on kube-audit-rest, then on the floor, alike. */
export async function pair(
  ctx: Context,
  workload: Workload,
  options: { seconds: number; connections: number; cpus?: string; sampleRss?: boolean },
): Promise<Pair> {
  const run = (kind: ServerKind) =>
    withServer(
      ctx,
      kind,
      `${workload.name} (${kind})`,
      (s) => measure(ctx, s, workload, options),
      options.cpus,
    );
  const ours = await run('kube-audit-rest');
  const floor = await run('floor');
  progress(
    `${workload.name}${options.cpus === undefined ? '' : ` on CPU ${options.cpus}`}: ${int(ours.load.rps)} req/s ` +
      `(floor ${int(floor.load.rps)}, ${percent(ours.load.rps / floor.load.rps)}), p99 ${ms(ours.load.p99Us)} ms, ` +
      `log ${ours.check?.text}`,
  );
  return { ours, floor };
}
