/**
 * @module Closed-loop load with wrk (wrk.lua): each connection sends its next request as soon as the last
 * is answered, so the server runs flat out; this gives the maximum rate.
 *
 * The workload's templates are written as files for the Lua script, which puts a fresh uid in every
 * body. At the deadline wrk.lua stops issuing requests and marks each thread drained once all its
 * connections are idle; the driver then ends wrk with SIGINT (wrk prints its results on SIGINT). So no
 * request is in flight when the load stops, and the counts are exact: `sent` (requests written) equals
 * `completed` (responses read) unless something failed.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Template, Workload } from './corpus.ts';
import { pinnedCommand } from './servers.ts';

/** Options for {@link runClosedLoop}. */
export type ClosedLoopOptions = {
  port: number;
  workload: Workload;
  /** Seconds requests are issued for. */
  seconds: number;
  /** Kept-alive connections, one request in flight on each. */
  connections: number;
  /** wrk threads. */
  threads: number;
  /** Load run number: the first 8 hex digits of every uid; unique per run on one server. */
  run: number;
  /** Scratch directory for the template files and wrk's config. */
  dir: string;
  /** taskset CPU list for wrk; default: not pinned. */
  cpus?: string;
  /** Longest wait for requests in flight to finish after the deadline. */
  drainTimeoutSeconds: number;
  /** Request path. Default `/log-request`. */
  path?: string;
  /** Send `Connection: close`, so every request opens a new connection and makes a handshake. Default false. */
  connectionClose?: boolean;
  /** Extra environment for wrk (a client certificate through wrk-client-cert.so, say). */
  env?: Record<string, string>;
};

/** What wrk saw. Latencies are wrk's, in µs, after its own coordinated-omission correction. */
export type ClosedLoopResult = {
  /** Requests written. */
  sent: number;
  /** Responses read (any status). */
  completed: number;
  /** Responses with status 400 or more. */
  non2xx: number;
  /** Responses with a 2xx or 3xx status: acknowledged. */
  acknowledged: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  /** Whether every thread went idle before wrk was stopped (otherwise `sent - completed` were cut off). */
  drained: boolean;
  /** Acknowledged requests per second of the load window. */
  rps: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
};

/** What the request head says besides the body's length. */
type HeadOptions = { path?: string; connectionClose?: boolean };

/** The HTTP request head wrk writes before each body. */
function requestHead(bytes: number, o: HeadOptions = {}): string {
  return (
    `POST ${o.path ?? '/log-request'} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n` +
    `${o.connectionClose ? 'Connection: close\r\n' : ''}Content-Length: ${bytes}\r\n\r\n`
  );
}

/**
 * Writes a template's request files once per directory and returns their paths: `head` is the request
 * line, headers and the body up to the uid; `tail` the body after it.
 */
export function templateFiles(
  dir: string,
  template: Template,
  headOptions: HeadOptions = {},
): { head: string; tail: string } {
  mkdirSync(dir, { recursive: true });
  const head = join(dir, `${template.name}.head`);
  const tail = join(dir, `${template.name}.tail`);
  if (!existsSync(head) || !existsSync(tail)) {
    writeFileSync(
      head,
      Buffer.concat([Buffer.from(requestHead(template.bytes, headOptions)), template.prefix]),
    );
    writeFileSync(tail, template.suffix);
  }
  return { head, tail };
}

/** A Lua string literal for an ASCII path. */
function luaString(text: string): string {
  return JSON.stringify(text);
}

/** Pause between checks for the drain markers. */
const DRAIN_POLL_MS = 20;
/** Extra time wrk gets beyond the deadline and drain timeout before the driver gives up on it. */
const WRK_EXIT_GRACE_MS = 10_000;

/** Runs wrk against `https://127.0.0.1:port/log-request` (or `path`) and returns its counts and latencies. */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const { workload, seconds, connections, threads, run, dir } = options;
  if (connections % threads !== 0) throw new Error('connections must be a multiple of threads');
  const headOptions = { path: options.path, connectionClose: options.connectionClose };
  // Each request head gets its own folder of templates: the head is part of each file.
  const variant =
    options.path === undefined && !options.connectionClose ? '' : `-${Bun.hash(JSON.stringify(headOptions))}`;
  const files = workload.templates.map((t) =>
    templateFiles(join(dir, `templates${variant}`), t, headOptions),
  );
  const drainPrefix = join(dir, `drained-${run}-`);
  const config = join(dir, `wrk-${run}.lua`);
  writeFileSync(
    config,
    [
      'return {',
      `  seconds = ${seconds},`,
      `  run = ${run},`,
      `  connections = ${connections / threads},`,
      `  drained = ${luaString(drainPrefix)},`,
      `  templates = { ${files.map((f) => `{ head = ${luaString(f.head)}, tail = ${luaString(f.tail)} }`).join(', ')} },`,
      `  schedule = { ${workload.schedule.map((i) => i + 1).join(', ')} },`,
      '}',
      '',
    ].join('\n'),
  );
  const wrkSeconds = seconds + options.drainTimeoutSeconds;
  const proc = Bun.spawn(
    [
      ...pinnedCommand(options.cpus),
      'wrk',
      `-t${threads}`,
      `-c${connections}`,
      `-d${wrkSeconds}s`,
      '--timeout',
      '30s',
      '-s',
      join(import.meta.dir, 'wrk.lua'),
      `https://127.0.0.1:${options.port}${options.path ?? '/log-request'}`,
      '--',
      config,
    ],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', env: { ...process.env, ...options.env } },
  );
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  const started = performance.now();
  const hardStop = setTimeout(() => proc.kill('SIGKILL'), wrkSeconds * 1000 + WRK_EXIT_GRACE_MS);
  let drained = false;
  // Once past the deadline, poll for every thread's marker; then stop wrk at once instead of idling.
  while (proc.exitCode === null) {
    if (performance.now() - started >= seconds * 1000) {
      drained = Array.from({ length: threads }, (_, t) => existsSync(`${drainPrefix}${t}`)).every(Boolean);
      if (drained) {
        proc.kill('SIGINT');
        break;
      }
    }
    await Promise.race([proc.exited, Bun.sleep(DRAIN_POLL_MS)]);
  }
  const code = await proc.exited;
  clearTimeout(hardStop);
  const [stdout, stderr] = await output;
  const line = /^KAR-BENCH (.*)$/m.exec(stdout)?.[1];
  if (code !== 0 || line === undefined)
    throw new Error(`wrk exited ${code} without a result: ${stderr.trim() || stdout.trim()}`);
  const r = JSON.parse(line) as Omit<ClosedLoopResult, 'acknowledged' | 'drained' | 'rps'>;
  const acknowledged = r.completed - r.non2xx;
  return { ...r, acknowledged, drained, rps: acknowledged / seconds };
}
