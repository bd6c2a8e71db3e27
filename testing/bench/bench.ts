/**
 * @module `bun run bench`: kube-audit-rest against the do-nothing floor server, same harness, same machine.
 *
 * Starts each server in turn on a free loopback port, drives it with wrk (kept-alive TLS connections,
 * many requests in flight, as the API server does) posting a sample AdmissionReview, and prints
 * requests per second, latency and our ratio to the floor. Afterwards it checks that the audit log
 * holds one whole line per answered request.
 *
 * Environment: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32), BENCH_THREADS (default 1).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { ensureExecutable, freePort, waitUntil } from '../../test/helpers/server-process.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);
const threads = Number(process.env.BENCH_THREADS ?? 1);
/** Warm-up before each measured run, so the JIT has compiled the hot path. */
const WARMUP_SECONDS = 3;

const root = join(import.meta.dir, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'kar-bench-'));

type Result = { name: string; rps: number; p50: string; p99: string; requests: number; non2xx: number };

function parseWrk(name: string, out: string): Result {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
  const str = (re: RegExp) => re.exec(out)?.[1] ?? '?';
  return {
    name,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: str(/\s50%\s+(\S+)/),
    p99: str(/\s99%\s+(\S+)/),
    requests: num(/(\d+) requests in/),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

async function wrk(port: number, script: string, duration: number): Promise<string> {
  const proc = Bun.spawn(
    [
      'wrk',
      `-t${threads}`,
      `-c${connections}`,
      `-d${duration}s`,
      '--latency',
      '-s',
      script,
      `https://127.0.0.1:${port}/log-request`,
    ],
    { stdout: 'pipe', stderr: 'pipe' },
  );
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`wrk failed (${code}): ${err}`);
  return out;
}

async function waitForPort(port: number): Promise<void> {
  await waitUntil(
    () =>
      Bun.connect({ hostname: '127.0.0.1', port, socket: { data() {} } }).then(
        (s) => {
          s.end();
          return true;
        },
        () => false,
      ),
    15_000,
    `port ${port}`,
  );
}

try {
  if (!Bun.which('wrk')) throw new Error('wrk is not installed (Debian package "wrk")');
  const exe = await ensureExecutable();
  const ca = await makeCa(work);
  const cert = await makeServerCert(work, ca);
  const body = readFileSync(join(root, 'testing', 'locally', 'data', '01-create-pod.json'), 'utf8').trim();
  const script = join(work, 'post.lua');
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ${JSON.stringify(body)}\n`,
  );
  console.log(
    `body ${Buffer.byteLength(body)} bytes; wrk ${threads} thread(s), ${connections} connections, ${seconds} s after ${WARMUP_SECONDS} s warm-up`,
  );

  const results: Result[] = [];
  for (const name of ['floor', 'kube-audit-rest'] as const) {
    const port = freePort();
    const logFile = join(work, 'audit.log');
    const proc =
      name === 'floor'
        ? Bun.spawn(
            [
              process.execPath,
              join(import.meta.dir, 'floor-server.ts'),
              String(port),
              cert.certFile,
              cert.keyFile,
            ],
            {
              stderr: 'ignore',
            },
          )
        : Bun.spawn(
            [
              exe,
              `--server-port=${port}`,
              `--metrics-port=${freePort()}`,
              '--bind-address=127.0.0.1',
              `--cert-filename=${cert.certFile}`,
              `--cert-key-filename=${cert.keyFile}`,
              `--logger-filename=${logFile}`,
              '--logger-max-size=100000',
            ],
            { stderr: 'ignore' },
          );
    try {
      await waitForPort(port);
      const warm = parseWrk(name, await wrk(port, script, WARMUP_SECONDS));
      const result = parseWrk(name, await wrk(port, script, seconds));
      results.push(result);
      if (name === 'kube-audit-rest') {
        proc.kill('SIGTERM');
        await proc.exited;
        const lines = readFileSync(logFile, 'utf8').split('\n');
        const last = lines.pop();
        const whole = lines.every((l) => l.endsWith('}'));
        const answered = warm.requests + result.requests - warm.non2xx - result.non2xx;
        console.log(
          `log check: ${lines.length} lines for ${answered} answered requests (wrk may cut requests in flight at its end), every line whole: ${whole && last === ''}`,
        );
      }
    } finally {
      proc.kill('SIGTERM');
      await proc.exited;
    }
  }

  console.log('\n| server | requests/s | p50 | p99 | non-2xx |');
  console.log('|---|---|---|---|---|');
  for (const r of results)
    console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.non2xx} |`);
  const [floor, ours] = results;
  if (floor && ours)
    console.log(`\nkube-audit-rest at ${((ours.rps / floor.rps) * 100).toFixed(1)}% of the floor`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
