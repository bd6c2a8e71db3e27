/**
 * @module The bench's forward section: `kube-audit-rest forward` (the compiled executable) against a real
 * Kafka 4.4.0 broker and an audit webhook receiver on this machine.
 *
 * - throughput: a file written beforehand (the mix, as the webhook writes it) forwarded from its first
 *   line to the last acknowledgement: events/s, and the forwarder's CPU and peak RSS;
 * - lag and cost: the webhook under the mix at half its maximum rate (open loop), with and without a
 *   forwarder sidecar on its log, in alternating rounds. With the forwarder, its lag (bytes and seconds,
 *   from its own metrics) is sampled throughout; for both, the webhook's own CPU per request is read
 *   from /proc, so the difference is what forwarding costs the webhook.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../src/audit/encode/admission-review.ts';
import { composePipeline, type RecordOptions } from '../../src/compose.ts';
import { parseReview } from '../../src/review/parse.ts';
import { DELIVERED, type ForwardProcess, startForward } from '../../test/helpers/forward-process.ts';
import { type AuditWebhookReceiver, startAuditWebhookReceiver } from '../harness/audit-webhook-receiver.ts';
import { type KafkaBroker, startKafka } from '../harness/kafka.ts';
import { uidPrefix, type Workload } from './corpus.ts';
import { runOpenLoop } from './open-loop.ts';
import { median } from './paired.ts';
import { cpuSeconds, memory } from './proc-stats.ts';
import { fixed, int, mib, percent, table } from './report.ts';
import { type Context, progress, withServer } from './runs.ts';
import { OPEN_LOOP_SHARE } from './sections.ts';

/** Events in the throughput file: long enough that start-up is a small part (a few seconds each). */
const THROUGHPUT_EVENTS = 100_000;
const THROUGHPUT_EVENTS_QUICK = 20_000;
/**
 * A typical busy cluster's admission rate, for the sidecar's sizing: the rate k8s/README.md sizes the
 * webhook for (its CPU request covers 500 reviews/s).
 */
const TYPICAL_RATE = 500;
/** Rounds of each variant in the lag and cost runs (alternating, so drift hits both alike). */
const ROUNDS = 3;
/**
 * How often the forwarder's lag is read during a run. Each read is a scrape of its /metrics, which
 * costs the forwarder CPU of its own (the process metrics, a directory listing for the lag): twice a
 * second is thirty times what a Prometheus scraping every 15 s costs, so the CPU figures include a
 * little of it.
 */
const LAG_SAMPLE_MS = 500;
/** Longest wait for a forwarder to deliver a whole file or to catch up after a run. */
const CATCH_UP_MS = 120_000;
/**
 * The broker's record size limit, raised from its 1 MiB default: the mix holds a 1 MiB ConfigMap, whose
 * Event is a little larger than 1 MiB and would otherwise be refused (and counted as failed).
 */
const BROKER_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** The mix's lines as the webhook writes them in `format`, `count` of them, newline-terminated. */
async function mixLines(
  mix: Workload,
  count: number,
  format: RecordOptions['outputFormat'],
): Promise<Buffer> {
  let now = BigInt(Date.now()) * 1_000_000n;
  const pipeline = await composePipeline(
    {
      outputFormat: format,
      disableSecretRedaction: false,
      syntheticResponseStatus: false,
      policyFile: undefined,
      clusterName: 'bench',
      redactionKeyFile: undefined,
    },
    () => now,
  );
  const prefix = uidPrefix(0xbe, 0);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const t = mix.templates[mix.schedule[i % mix.schedule.length] as number];
    if (t === undefined) throw new Error('mix: bad schedule');
    const body = Buffer.concat([t.prefix, Buffer.from(prefix + i.toString(16).padStart(12, '0')), t.suffix]);
    const parsed = parseReview(body);
    if (!parsed.ok) throw new Error(`${t.name}: ${parsed.message}`);
    now += 1000n;
    const { line } = pipeline(parsed.record, now);
    if (line !== undefined) parts.push(lineBytes(line).slice());
  }
  return Buffer.concat(parts);
}

/** Polls `check` every 50 ms until it is true; throws `what` after `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench forward: timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** One throughput run's figures. */
type ThroughputRow = {
  destination: string;
  format: string;
  events: number;
  bytes: number;
  seconds: number;
  cpuPer1k: number;
  peakRssBytes: number;
};

let throughputRuns = 0;

/** Forwards `file` (holding `events` events) from its start with `args`, with a checkpoint of its own; returns the run's figures. */
async function throughputRun(
  ctx: Context,
  exe: string,
  file: string,
  events: number,
  args: string[],
  label: { destination: string; format: string },
): Promise<ThroughputRow> {
  const checkpoint = join(ctx.work, `forward-throughput-${++throughputRuns}.checkpoint`);
  const started = performance.now();
  const forwarder = await startForward(
    [`--logger-filename=${file}`, `--checkpoint-file=${checkpoint}`, '--drain-timeout=0s', ...args],
    exe,
  );
  try {
    const cpu0 = cpuSeconds(forwarder.proc.pid);
    await until(
      async () => (await forwarder.metric(DELIVERED)) >= events,
      CATCH_UP_MS,
      `${events} events delivered`,
    );
    const seconds = (performance.now() - started) / 1000;
    const row = {
      ...label,
      events,
      bytes: Bun.file(file).size,
      seconds,
      cpuPer1k: ((cpuSeconds(forwarder.proc.pid) - cpu0) / events) * 1000,
      peakRssBytes: memory(forwarder.proc.pid).peakRssBytes,
    };
    progress(`forward throughput, ${label.destination} (${label.format}): ${int(events / seconds)} events/s`);
    return row;
  } finally {
    await forwarder.terminate();
  }
}

/** One open-loop round on the webhook, with or without a forwarder on its log. */
type LagRound = {
  rate: number;
  forwarder: boolean;
  acknowledged: number;
  webhookCpuUsPerRequest: number;
  forwarderCpuUsPerRequest: number;
  p99Us: number;
  /** Lag samples during the measured run (forwarder rounds only). */
  lagSeconds: number[];
  lagBytes: number[];
  /** From the end of the load to the forwarder's lag reaching 0. */
  catchUpMs: number;
  /** Events delivered, and lines written (every acknowledged request of the round, warm-up included). */
  delivered: number;
  lines: number;
  forwarderPeakRssBytes: number;
  logCheck: string;
};

/** Percentile `p` of some figures (nearest rank). */
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : (s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number);
}

async function lagRound(
  ctx: Context,
  mix: Workload,
  rate: number,
  exe: string,
  broker: KafkaBroker | undefined,
  topic: string,
): Promise<LagRound> {
  const withForwarder = broker !== undefined;
  const round = await withServer(
    ctx,
    'kube-audit-rest',
    `forward ${withForwarder ? 'with' : 'without'} forwarder`,
    async (session) => {
      const logFile = session.server.logFile as string;
      let forwarder: ForwardProcess | undefined;
      if (broker) {
        forwarder = await startForward(
          [
            `--logger-filename=${logFile}`,
            `--kafka-brokers=${broker.bootstrap}`,
            `--kafka-topic=${topic}`,
            '--drain-timeout=0s',
          ],
          exe,
        );
      }
      try {
        const open = async (seconds: number) => {
          const run = ++ctx.run;
          session.runs.add(run);
          const result = await runOpenLoop({
            port: session.server.port,
            caFile: ctx.ca.certFile,
            workload: mix,
            rate,
            seconds,
            connections: ctx.settings.openConnections,
            run,
            dir: ctx.work,
          });
          session.acknowledged += result.acknowledged;
          session.unknown += result.sent - result.acknowledged;
          return result;
        };
        const caughtUp = async () =>
          forwarder === undefined || (await forwarder.metric('kube_audit_rest_forward_lag_bytes')) === 0;
        await open(ctx.settings.warmupSeconds);
        await until(caughtUp, CATCH_UP_MS, 'the forwarder to catch up after the warm-up');
        const lagSeconds: number[] = [];
        const lagBytes: number[] = [];
        let sampling = true;
        const sampler = (async () => {
          while (sampling && forwarder) {
            const [seconds, bytes] = await forwarder.metrics([
              'kube_audit_rest_forward_lag_seconds',
              'kube_audit_rest_forward_lag_bytes',
            ]);
            lagSeconds.push(seconds as number);
            lagBytes.push(bytes as number);
            await Bun.sleep(LAG_SAMPLE_MS);
          }
        })();
        const webhookCpu0 = cpuSeconds(session.server.pid);
        const forwarderCpu0 = forwarder ? cpuSeconds(forwarder.proc.pid) : 0;
        const result = await open(ctx.settings.openSeconds);
        const webhookCpu = cpuSeconds(session.server.pid) - webhookCpu0;
        const forwarderCpu = forwarder ? cpuSeconds(forwarder.proc.pid) - forwarderCpu0 : 0;
        const ended = performance.now();
        await until(caughtUp, CATCH_UP_MS, 'the forwarder to catch up after the run');
        const catchUpMs = performance.now() - ended;
        sampling = false;
        await sampler;
        return {
          rate,
          forwarder: withForwarder,
          acknowledged: result.acknowledged,
          webhookCpuUsPerRequest: (webhookCpu / result.acknowledged) * 1e6,
          forwarderCpuUsPerRequest: (forwarderCpu / result.acknowledged) * 1e6,
          p99Us: result.service.p99Us,
          lagSeconds,
          lagBytes,
          catchUpMs,
          delivered: forwarder ? await forwarder.metric(DELIVERED) : 0,
          lines: session.acknowledged,
          forwarderPeakRssBytes: forwarder ? memory(forwarder.proc.pid).peakRssBytes : 0,
        };
      } finally {
        await forwarder?.terminate();
      }
    },
  );
  return { ...round, logCheck: round.check?.text ?? '' };
}

/** Runs the section; `maxRate` is the webhook's closed-loop rate on the mix. Returns its markdown and headline lines. */
export async function forwardSection(
  ctx: Context,
  mix: Workload,
  maxRate: number,
  exe: string,
): Promise<{ text: string; headline: string[] }> {
  progress('forward: starting a Kafka broker');
  const broker = await startKafka({ properties: { 'message.max.bytes': String(BROKER_MAX_MESSAGE_BYTES) } });
  let receiver: AuditWebhookReceiver | undefined;
  try {
    const events = ctx.settings.quick ? THROUGHPUT_EVENTS_QUICK : THROUGHPUT_EVENTS;
    const admission = join(ctx.work, 'forward-admissionreview.log');
    const auditEvent = join(ctx.work, 'forward-audit-event.log');
    writeFileSync(admission, await mixLines(mix, events, 'admissionreview'));
    writeFileSync(auditEvent, await mixLines(mix, events, 'audit-event'));
    receiver = await startAuditWebhookReceiver();
    const kubeconfig = join(ctx.work, 'receiver.kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{name: r, cluster: {server: "${receiver.url}"}}]\n` +
        'contexts: [{name: r, context: {cluster: r}}]\ncurrent-context: r\n',
    );
    const rows: ThroughputRow[] = [];
    let topics = 0;
    const kafka = async (compression: string) => {
      const topic = `bench-throughput-${++topics}`;
      await broker.createTopic(topic);
      return [
        `--kafka-brokers=${broker.bootstrap}`,
        `--kafka-topic=${topic}`,
        `--kafka-compression=${compression}`,
      ];
    };
    // The broker's first produce requests run cold (JIT): one run first that is not reported.
    await throughputRun(ctx, exe, admission, events, await kafka('gzip'), {
      destination: 'warm-up',
      format: '',
    });
    for (const [file, format] of [
      [admission, 'admissionreview'],
      [auditEvent, 'audit-event'],
    ] as const) {
      rows.push(
        await throughputRun(ctx, exe, file, events, await kafka('gzip'), {
          destination: 'Kafka, gzip (default)',
          format,
        }),
      );
    }
    rows.push(
      await throughputRun(ctx, exe, admission, events, await kafka('zstd'), {
        destination: 'Kafka, zstd',
        format: 'admissionreview',
      }),
    );
    rows.push(
      await throughputRun(
        ctx,
        exe,
        admission,
        events,
        [
          `--audit-webhook-config-file=${kubeconfig}`,
          '--audit-webhook-batch-throttle-enable=false',
          '--audit-webhook-batch-max-wait=100ms',
        ],
        { destination: 'audit webhook, 400 per batch, throttle off', format: 'admissionreview' },
      ),
    );

    const rate = Math.max(1, Math.round(maxRate * OPEN_LOOP_SHARE));
    await broker.createTopic('bench-lag');
    const rounds: LagRound[] = [];
    const count = ctx.settings.quick ? 1 : ROUNDS;
    for (let r = 0; r < count; r++) {
      // without, with; then with, without: each variant goes first as often as second.
      const order = r % 2 === 0 ? [false, true] : [true, false];
      for (const withForwarder of order) {
        const round = await lagRound(ctx, mix, rate, exe, withForwarder ? broker : undefined, 'bench-lag');
        progress(
          `forward lag round ${r + 1} ${withForwarder ? 'with' : 'without'} forwarder: webhook ` +
            `${fixed(round.webhookCpuUsPerRequest, 1)} µs/request` +
            (withForwarder ? `, lag p99 ${fixed(pct(round.lagSeconds, 0.99), 3)} s` : ''),
        );
        rounds.push(round);
      }
    }
    // The sidecar at a typical rate: what to request for it.
    const typical = await lagRound(ctx, mix, TYPICAL_RATE, exe, broker, 'bench-lag');
    progress(
      `forward at ${TYPICAL_RATE} req/s: forwarder ${fixed(typical.forwarderCpuUsPerRequest, 1)} µs/request`,
    );
    return report(ctx, rows, rounds, typical, rate, maxRate);
  } finally {
    await receiver?.stop();
    await broker.stop();
  }
}

/** The section's markdown and headline. */
function report(
  ctx: Context,
  rows: readonly ThroughputRow[],
  rounds: readonly LagRound[],
  typical: LagRound,
  rate: number,
  maxRate: number,
): { text: string; headline: string[] } {
  const withF = rounds.filter((r) => r.forwarder);
  const without = rounds.filter((r) => !r.forwarder);
  const webhookWith = median(withF.map((r) => r.webhookCpuUsPerRequest));
  const webhookWithout = median(without.map((r) => r.webhookCpuUsPerRequest));
  const forwarderCpu = median(withF.map((r) => r.forwarderCpuUsPerRequest));
  const lagS = withF.flatMap((r) => r.lagSeconds);
  const lagB = withF.flatMap((r) => r.lagBytes);
  const kafkaDefault = rows[0];
  const text = [
    '## Forwarding (`kube-audit-rest forward`)',
    '',
    'The compiled executable against a real Kafka 4.4.0 broker (one node, KRaft, on this machine, ' +
      `message.max.bytes raised to ${BROKER_MAX_MESSAGE_BYTES / 1024 / 1024} MiB for the mix's 1 MiB ConfigMap) ` +
      'and the test audit webhook receiver (plain HTTP on loopback). The broker, the forwarder and the load share ' +
      'the two cores.',
    '',
    `Throughput: ${int(rows[0]?.events ?? 0)} lines of the mix, written beforehand as the webhook writes them, ` +
      'forwarded by a freshly started forwarder (its start and first connection included) to the last ' +
      "acknowledgement, after one unreported run that warms the broker's JIT up. " +
      'admissionreview lines are converted to Events on the way (as `convert` does); audit-event lines go as they are.',
    '',
    table(
      [
        'destination',
        'line format',
        'events',
        'file MiB',
        'seconds',
        'events/s',
        'MiB/s',
        'forwarder CPU s / 1k events',
        'forwarder peak RSS MiB',
      ],
      rows.map((r) => [
        r.destination,
        r.format,
        int(r.events),
        mib(r.bytes),
        fixed(r.seconds, 2),
        int(r.events / r.seconds),
        fixed(r.bytes / 1024 / 1024 / r.seconds, 1),
        fixed(r.cpuPer1k, 3),
        mib(r.peakRssBytes),
      ]),
    ),
    '',
    `Lag and cost: the webhook under the mix at ${int(rate)} req/s (${percent(OPEN_LOOP_SHARE)} of its ` +
      `${int(maxRate)} req/s), open loop, ${ctx.settings.openSeconds} s after a ${ctx.settings.warmupSeconds} s ` +
      `warm-up, ${withF.length} round(s) with a forwarder to Kafka on its log (default flags: gzip, batches ` +
      'of up to 1,000 events or 100 ms, log polled every 250 ms when caught up) and as many without, alternating. ' +
      `Lag sampled every ${LAG_SAMPLE_MS} ms from the forwarder's own metrics; "catch-up" is from the end of the ` +
      'load to a lag of 0.',
    '',
    table(
      [
        'round',
        'req/s',
        'forwarder',
        'acknowledged',
        'webhook CPU µs / request',
        'forwarder CPU µs / request',
        'webhook p99 ms',
        'lag s p50 / p99 / max',
        'lag KiB p50 / p99 / max',
        'catch-up ms',
        'delivered / lines',
        'forwarder peak RSS MiB',
        'log check',
      ],
      [...rounds, typical].map((r, i) => [
        i < rounds.length ? String(i + 1) : 'typical',
        int(r.rate),
        r.forwarder ? 'yes' : 'no',
        int(r.acknowledged),
        fixed(r.webhookCpuUsPerRequest, 1),
        r.forwarder ? fixed(r.forwarderCpuUsPerRequest, 1) : '',
        fixed(r.p99Us / 1000, 2),
        r.forwarder
          ? `${fixed(pct(r.lagSeconds, 0.5), 3)} / ${fixed(pct(r.lagSeconds, 0.99), 3)} / ${fixed(pct(r.lagSeconds, 1), 3)}`
          : '',
        r.forwarder
          ? `${int(pct(r.lagBytes, 0.5) / 1024)} / ${int(pct(r.lagBytes, 0.99) / 1024)} / ${int(pct(r.lagBytes, 1) / 1024)}`
          : '',
        r.forwarder ? int(r.catchUpMs) : '',
        r.forwarder ? `${int(r.delivered)} / ${int(r.lines)}` : '',
        r.forwarder ? mib(r.forwarderPeakRssBytes) : '',
        r.logCheck,
      ]),
    ),
    '',
    `Medians: the webhook's own CPU per request ${fixed(webhookWithout, 1)} µs without a forwarder, ` +
      `${fixed(webhookWith, 1)} µs with one (${percent(webhookWith / webhookWithout - 1)}); the forwarder itself ` +
      `${fixed(forwarderCpu, 1)} µs per request. Lag over all forwarder rounds: p50 ${fixed(pct(lagS, 0.5), 3)} s, ` +
      `p99 ${fixed(pct(lagS, 0.99), 3)} s, max ${fixed(pct(lagS, 1), 3)} s; ${int(pct(lagB, 0.99) / 1024)} KiB ` +
      'at p99.',
    '',
    `The sidecar at ${int(TYPICAL_RATE)} req/s ("typical" row, for its resources): ` +
      `${fixed((typical.forwarderCpuUsPerRequest * typical.rate) / 1e6, 3)} CPU cores, peak RSS ` +
      `${mib(typical.forwarderPeakRssBytes)} MiB, lag p99 ${fixed(pct(typical.lagSeconds, 0.99), 3)} s.`,
    '',
  ].join('\n');
  const headline = [
    `- **forward: ${int(kafkaDefault ? kafkaDefault.events / kafkaDefault.seconds : Number.NaN)} events/s to Kafka** ` +
      `(gzip, admissionreview lines converted); at ${int(rate)} req/s lag p99 ${fixed(pct(lagS, 0.99), 3)} s; ` +
      `webhook CPU per request ${fixed(webhookWithout, 1)} → ${fixed(webhookWith, 1)} µs with the sidecar ` +
      `(+ ${fixed(forwarderCpu, 1)} µs in the forwarder)`,
  ];
  return { text, headline };
}
