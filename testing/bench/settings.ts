/**
 * @module The bench's settings: flags and environment, read once in main() and passed down.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The parts of the bench, in the order they run; `--only` picks some. */
export const SECTIONS = ['corpus', 'features', 'open', 'memory', 'sweep', 'cores', 'micro'] as const;

/** One of {@link SECTIONS}. */
export type Section = (typeof SECTIONS)[number];

/** Everything the run is told, resolved once from flags and environment. */
export type Settings = {
  quick: boolean;
  build: boolean;
  sections: ReadonlySet<Section>;
  out: string;
  dir: string;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  threads: number;
  openSeconds: number;
  openConnections: number;
  sustainSeconds: number;
  memorySeconds: number;
  memoryConnections: number;
  sweepSeconds: number;
};

/** Resolves the settings from `argv` (flags) and `env`; throws on an unknown flag or a bad value. */
export function parseSettings(argv: readonly string[], env: NodeJS.ProcessEnv): Settings {
  const flag = (name: string) => argv.includes(`--${name}`);
  const option = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  for (const a of argv)
    if (!/^--(quick|no-build|only=.+|out=.+)$/.test(a))
      throw new Error(`unknown argument ${a}; see bench.ts`);
  const quick = flag('quick');
  const num = (name: string, normal: number, short: number) => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? (quick ? short : normal) : Number(raw);
    if (!Number.isFinite(value) || value <= 0)
      throw new Error(`${name} must be a positive number, got ${raw}`);
    return value;
  };
  const only = option('only');
  const sections = new Set<Section>(
    only === undefined
      ? SECTIONS
      : only.split(',').map((s) => {
          if (!(SECTIONS as readonly string[]).includes(s))
            throw new Error(`--only: unknown section ${s}; sections: ${SECTIONS.join(', ')}`);
          return s as Section;
        }),
  );
  const settings: Settings = {
    quick,
    build: !flag('no-build'),
    sections,
    out: option('out') ?? join(import.meta.dir, 'results', 'latest.md'),
    dir: env.BENCH_DIR || tmpdir(),
    seconds: Math.round(num('BENCH_SECONDS', 10, 3)),
    warmupSeconds: Math.round(num('BENCH_WARMUP_SECONDS', 2, 1)),
    connections: Math.round(num('BENCH_CONNECTIONS', 32, 32)),
    threads: Math.round(num('BENCH_THREADS', 1, 1)),
    openSeconds: num('BENCH_OPEN_SECONDS', 20, 5),
    openConnections: Math.round(num('BENCH_OPEN_CONNECTIONS', 64, 64)),
    sustainSeconds: Math.round(num('BENCH_SUSTAIN_SECONDS', 60, 10)),
    memorySeconds: Math.round(num('BENCH_MEMORY_SECONDS', 10, 3)),
    memoryConnections: Math.round(num('BENCH_MEMORY_CONNECTIONS', 16, 16)),
    sweepSeconds: Math.round(num('BENCH_SWEEP_SECONDS', 5, 2)),
  };
  if (settings.connections % settings.threads !== 0)
    throw new Error('BENCH_CONNECTIONS must be a multiple of BENCH_THREADS');
  return settings;
}
