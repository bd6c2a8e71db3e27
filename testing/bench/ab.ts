/**
 * @module `bun run testing/bench/ab.ts`: paired before-and-after runs (see paired.ts) from the command line.
 *
 *   bun run testing/bench/ab.ts --variant=before@4bfffe6 --variant=now \\
 *     --variant='event@:--output-format=audit-event' [--workload=mix|lease-update|...] [--rounds=3]
 *
 * A variant is `name`, `name@REF` (that commit, built once into .cache/ab/) or `name@REF:FLAGS` (flags
 * separated by spaces); no ref means the working tree's dist/kube-audit-rest. `{tokens}` and
 * `{client-ca}` in FLAGS, `--connection-close` and `--pinned` (one variant at a time, server and wrk
 * on a core each) are described in paired.ts:
 *
 *   bun run testing/bench/ab.ts --variant=before@main --variant=now \\
 *     --variant='token@:--path-token-file={tokens}' --variant='mtls@:--client-ca-file={client-ca}'
 * BENCH_SECONDS (5),
 * BENCH_CONNECTIONS (16 per variant) set the load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { CAPTURED, loadTemplates, mixWorkload, single, type Workload } from './corpus.ts';
import { pairedRuns, pairedTable, parseVariant } from './paired.ts';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const specs = argv.filter((a) => a.startsWith('--variant=')).map((a) => a.slice('--variant='.length));
  const workloadName = argv.find((a) => a.startsWith('--workload='))?.slice('--workload='.length) ?? 'mix';
  const rounds = Number(argv.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? 3);
  if (specs.length < 2) throw new Error('give at least two --variant= (see ab.ts)');
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 16);
  const templates = loadTemplates();
  const template = templates.find((t) => t.name === workloadName);
  const workload: Workload | undefined =
    workloadName === 'mix' ? mixWorkload(templates) : template && single(template);
  if (workload === undefined) throw new Error(`--workload: one of mix, ${CAPTURED.join(', ')}`);
  const tls = mkdtempSync(join(tmpdir(), 'kar-ab-tls-'));
  try {
    const ca = await makeCa(tls);
    const cert = await makeServerCert(tls, ca);
    const results = await pairedRuns({
      variants: specs.map(parseVariant),
      workload,
      rounds,
      seconds,
      connections,
      cert,
      ca,
      connectionClose: argv.includes('--connection-close'),
      pinned: argv.includes('--pinned'),
      warmupSeconds: Number(process.env.BENCH_WARMUP_SECONDS ?? 1),
    });
    process.stdout.write(
      `${pairedTable(results)}\n\nWorkload ${workload.name}, ${rounds} rounds of ${seconds} s, ${connections} ${argv.includes('--connection-close') ? 'clients opening a new connection per request' : 'kept-alive connections'} per variant, all variants loaded at once.\n`,
    );
  } finally {
    rmSync(tls, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
