/**
 * @module The bench's features section: what the audit Policy, the audit-event format and Secret
 * redaction cost per request, on the server (paired runs of the compiled executable with each set of
 * flags, side by side on the mix) and in process (the pipeline alone, per corpus body and on a Secret).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineBytes } from '../../src/audit/encode/admission-review.ts';
import type { Pipeline } from '../../src/audit/pipeline.ts';
import { composePipeline, type RecordOptions } from '../../src/compose.ts';
import { allowedAnswer } from '../../src/review/answer.ts';
import { parseReview } from '../../src/review/parse.ts';
import { createClock } from '../../src/support/clock.ts';
import { CAPTURED, readCaptured, type Workload } from './corpus.ts';
import { median, pairedRuns, pairedTable, type Variant } from './paired.ts';
import { fixed, table } from './report.ts';
import type { Context } from './runs.ts';

const REPO = join(import.meta.dir, '..', '..');
/** The policy of the README: leases and Events dropped, Metadata for Secrets and ConfigMaps, Request else. */
export const TYPICAL_POLICY = join(import.meta.dir, 'policies', 'typical.yaml');
/** A Secret create as the API server sends it (v1beta1, dry run), for redaction's cost. */
const SECRET_REVIEW = join(REPO, 'testing', 'locally', 'data', '05-v1beta1-secret-dryrun.json');
/** Rounds of the paired runs; each round starts every variant afresh. */
const ROUNDS = 3;
/** Connections per variant: five variants and their generators share two cores. */
const CONNECTIONS = 8;
/** Calls per timing round in process, and rounds (the median is reported). */
const CALLS = 10_000;
const MICRO_ROUNDS = 7;

/** The flag sets compared, the first being today's default. */
function variants(exe: string): Variant[] {
  return [
    { name: 'default', exe, args: [] },
    { name: 'redaction off', exe, args: ['--disable-secret-redaction'] },
    { name: 'policy', exe, args: [`--policy-file=${TYPICAL_POLICY}`] },
    { name: 'audit-event', exe, args: ['--output-format=audit-event'] },
    {
      name: 'audit-event + policy',
      exe,
      args: ['--output-format=audit-event', `--policy-file=${TYPICAL_POLICY}`],
    },
  ];
}

/** CPU µs per call of `fn`, median of rounds (CPU time, so other work on the machine counts less). */
function cpuPerCall(fn: () => number): number {
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  let sink = 0;
  for (let i = 0; i < CALLS; i++) sink += fn();
  const rounds: number[] = [];
  for (let r = 0; r < MICRO_ROUNDS; r++) {
    const t = cpu();
    for (let i = 0; i < CALLS; i++) sink += fn();
    rounds.push((cpu() - t) / CALLS);
  }
  if (sink === Number.MIN_VALUE) throw new Error('unreachable');
  return median(rounds);
}

/** The in-process table: parse + pipeline + answer, per body, for each feature set. */
async function inProcess(): Promise<string> {
  const clock = createClock();
  const base: RecordOptions = {
    outputFormat: 'admissionreview',
    disableSecretRedaction: false,
    syntheticResponseStatus: false,
    policyFile: undefined,
    clusterName: undefined,
    redactionKeyFile: undefined,
  };
  const sets: [string, Pipeline][] = [
    ['default', await composePipeline(base, clock)],
    ['redaction off', await composePipeline({ ...base, disableSecretRedaction: true }, clock)],
    ['policy', await composePipeline({ ...base, policyFile: TYPICAL_POLICY }, clock)],
    ['audit-event', await composePipeline({ ...base, outputFormat: 'audit-event' }, clock)],
    [
      'audit-event + policy',
      await composePipeline({ ...base, outputFormat: 'audit-event', policyFile: TYPICAL_POLICY }, clock),
    ],
  ];
  const bodies: [string, Uint8Array][] = [
    ...CAPTURED.map((name) => [name, readCaptured(name)] as [string, Uint8Array]),
    ['secret-create', readFileSync(SECRET_REVIEW)],
  ];
  const rows = bodies.map(([name, body]) => [
    name,
    ...sets.map(([, pipeline]) =>
      fixed(
        cpuPerCall(() => {
          const parsed = parseReview(body);
          if (!parsed.ok) throw new Error(`${name}: ${parsed.message}`);
          const { line } = pipeline(parsed.record, clock());
          return (line === undefined ? 0 : lineBytes(line).length) + allowedAnswer(parsed.record).length;
        }),
        2,
      ),
    ),
  ]);
  return table(['body', ...sets.map(([label]) => `${label} µs`)], rows);
}

/** Runs the section and returns its markdown. */
export async function featuresSection(ctx: Context, mix: Workload, exe: string): Promise<string> {
  const results = await pairedRuns({
    variants: variants(exe),
    workload: mix,
    rounds: ctx.settings.quick ? 1 : ROUNDS,
    seconds: ctx.settings.seconds,
    connections: CONNECTIONS,
    cert: ctx.cert,
    ca: ctx.ca,
  });
  return [
    '## What the features cost (policy, audit-event, redaction)',
    '',
    `The compiled server with each set of flags, all five serving at once, each under its own wrk on the mix ` +
      `(${CONNECTIONS} connections each), ${ctx.settings.quick ? 1 : ROUNDS} rounds of ${ctx.settings.seconds} s. ` +
      `"policy" is testing/bench/policies/typical.yaml (leases and Events not recorded, three quarters of the mix). ` +
      'With a policy the log holds fewer lines than requests: that is the policy working.',
    '',
    pairedTable(results),
    '',
    'The same in process: parse, pipeline and answer of one body, CPU µs per call (median of ' +
      `${MICRO_ROUNDS} rounds of ${CALLS.toLocaleString('en')} calls). The line is joined into one buffer here, ` +
      'which the server does not do.',
    '',
    await inProcess(),
    '',
  ].join('\n');
}
