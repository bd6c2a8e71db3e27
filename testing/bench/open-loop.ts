/**
 * @module Open-loop (rate-limited) load: requests leave on a fixed schedule whatever the server does, as
 * the API server's traffic does, and each one's latency is recorded; for "p99 at half the maximum rate".
 *
 * wrk is closed-loop (a slow answer delays the next request, hiding the stall), and h2load's `--rps`
 * posts one fixed body (no fresh uid per request), sends a client's next request only after the last one
 * is answered, and measures from the actual send rather than the scheduled time. So this is a small
 * generator of its own, in a child process (its event loop is not the parent's): HTTP/1.1 over kept-alive
 * TLS connections (Bun.connect), request `i` due at `start + i / rate`, sent on any idle connection
 * (queued while none is idle). Two latencies per request, both to the last byte of the answer:
 * - service: from writing the request; what the server and network cost;
 * - scheduled: from the time it was due; adds any wait for an idle connection and the generator's own
 *   lateness (timers fire on millisecond ticks), so it is the pessimistic figure, free of coordinated
 *   omission.
 * After the last request is sent the generator waits for every answer (bounded), so its counts are exact.
 *
 * ```ts
 * const r = await runOpenLoop({ port, caFile, workload, rate: 5000, seconds: 20, connections: 64, run, dir });
 * ```
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'bun';
import { templateFiles } from './closed-loop.ts';
import { UID_LENGTH, uidPrefix, type Workload } from './corpus.ts';
import { pinnedCommand } from './servers.ts';

/** Options for {@link runOpenLoop}. */
export type OpenLoopOptions = {
  port: number;
  /** CA certificate file the generator trusts (the server's certificate is for `localhost`). */
  caFile: string;
  workload: Workload;
  /** Requests per second. */
  rate: number;
  seconds: number;
  /** Kept-alive connections; more than the rate ever needs at once, so queueing shows only stalls. */
  connections: number;
  /** Load run number: the first 8 hex digits of every uid. */
  run: number;
  /** Scratch directory for the template files and the config. */
  dir: string;
  /** taskset CPU list for the generator; default: not pinned. */
  cpus?: string;
  /** Longest wait for answers after the last request was sent. Default 30 s. */
  drainTimeoutMs?: number;
};

/** Latency percentiles in µs. */
export type Percentiles = { p50Us: number; p99Us: number; p999Us: number; maxUs: number };

/** What the generator saw. */
export type OpenLoopResult = {
  /** Requests written. */
  sent: number;
  /** Answered 200. */
  acknowledged: number;
  /** Answered otherwise, or lost with their connection. */
  failed: number;
  errors: Record<string, number>;
  /** Whether every request sent was answered before the drain timeout. */
  drained: boolean;
  targetRate: number;
  /** Requests sent per second of the schedule's duration. */
  achievedRate: number;
  service: Percentiles;
  scheduled: Percentiles;
  /** How late requests left against their schedule (µs): waiting for an idle connection, or for the generator. */
  lateness: Percentiles;
  /** How late the generator's timer fired against the next request's due time (µs): the generator's own delay. */
  timerLag: Percentiles;
  /** The generator's own CPU seconds (user + system) per 1,000 requests. */
  generatorCpuPer1k: number;
  /** Most requests waiting for an idle connection at once. */
  maxQueued: number;
  /** Most requests in flight at once. */
  maxInFlight: number;
};

/** What the parent hands the child. */
type ChildConfig = {
  port: number;
  caFile: string;
  templates: { head: string; tail: string }[];
  schedule: readonly number[];
  rate: number;
  seconds: number;
  connections: number;
  run: number;
  drainTimeoutMs: number;
};

/** Default wait for answers after the last request. */
const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Time from the start of the child to the first request, for the connections' TLS handshakes. */
const CONNECT_TIMEOUT_MS = 10_000;

/** Runs the generator in a child process and returns what it saw. */
export async function runOpenLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const config: ChildConfig = {
    port: options.port,
    caFile: options.caFile,
    templates: options.workload.templates.map((t) => templateFiles(join(options.dir, 'templates'), t)),
    schedule: options.workload.schedule,
    rate: options.rate,
    seconds: options.seconds,
    connections: options.connections,
    run: options.run,
    drainTimeoutMs: options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS,
  };
  const configFile = join(options.dir, `open-loop-${options.run}.json`);
  writeFileSync(configFile, JSON.stringify(config));
  const proc = Bun.spawn([...pinnedCommand(options.cpus), process.execPath, import.meta.path, configFile], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`open-loop generator exited ${code}: ${err.trim()}`);
  return JSON.parse(out) as OpenLoopResult;
}

/** One kept-alive connection. */
type Conn = {
  socket: Socket<undefined> | undefined;
  busy: boolean;
  /** The request being written and how much of it is out. */
  out: Buffer | undefined;
  written: number;
  /** Response bytes so far. */
  received: Buffer | undefined;
  due: number;
  sentAt: number;
};

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;

/** Percentiles of the first `n` entries of `values` (µs), sorted in place. */
function percentiles(values: Float64Array, n: number): Percentiles {
  const sorted = values.subarray(0, n).sort();
  const at = (p: number) =>
    Math.round(sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))] ?? Number.NaN);
  return {
    p50Us: at(0.5),
    p99Us: at(0.99),
    p999Us: at(0.999),
    maxUs: Math.round(sorted[n - 1] ?? Number.NaN),
  };
}

async function child(config: ChildConfig): Promise<OpenLoopResult> {
  const ca = readFileSync(config.caFile, 'utf8');
  const heads = config.templates.map((t) => readFileSync(t.head));
  const tails = config.templates.map((t) => readFileSync(t.tail));
  const uidHead = Buffer.from(uidPrefix(config.run, 0));
  const total = Math.round(config.rate * config.seconds);
  const intervalMs = 1000 / config.rate;
  const service = new Float64Array(total);
  const scheduled = new Float64Array(total);
  const lateness = new Float64Array(total);
  const errors: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  let acknowledged = 0;
  let failed = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let maxQueued = 0;
  let t0 = 0;
  let firstSendAt = 0;
  let lastSendAt = 0;

  const fail = (key: string) => {
    failed++;
    errors[key] = (errors[key] ?? 0) + 1;
  };

  function request(n: number): Buffer {
    const i = config.schedule[n % config.schedule.length] as number;
    const head = heads[i] as Buffer;
    const tail = tails[i] as Buffer;
    const out = Buffer.allocUnsafe(head.length + UID_LENGTH + tail.length);
    head.copy(out, 0);
    uidHead.copy(out, head.length);
    out.write(n.toString(16).padStart(12, '0'), head.length + uidHead.length, 'latin1');
    tail.copy(out, head.length + UID_LENGTH);
    return out;
  }

  const conns: Conn[] = [];
  const idle: Conn[] = [];
  /** Due indices waiting for an idle connection, oldest first. */
  const queue: number[] = [];
  let queueHead = 0;
  let next = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });

  const checkDone = () => {
    if (next >= total && queueHead >= queue.length && inFlight === 0) finish();
  };

  function flush(c: Conn): void {
    const socket = c.socket;
    if (!socket || !c.out) return;
    while (c.written < c.out.length) {
      const n = socket.write(c.out, c.written);
      if (n <= 0) return; // the rest goes out on drain
      c.written += n;
    }
    c.out = undefined;
  }

  function send(c: Conn, n: number): void {
    c.busy = true;
    c.due = t0 + n * intervalMs;
    c.out = request(n);
    c.written = 0;
    c.received = undefined;
    c.sentAt = performance.now();
    if (sent === 0) firstSendAt = c.sentAt;
    lastSendAt = c.sentAt;
    inFlight++;
    if (inFlight > maxInFlight) maxInFlight = inFlight;
    sent++;
    flush(c);
  }

  function pump(): void {
    while (queueHead < queue.length) {
      const c = idle.pop();
      if (!c) break;
      send(c, queue[queueHead++] as number);
    }
    if (queueHead === queue.length && queue.length > 0) {
      queue.length = 0;
      queueHead = 0;
    }
  }

  function done(c: Conn, ok: boolean, reason: string): void {
    const now = performance.now();
    const k = answered++;
    service[k] = (now - c.sentAt) * 1000;
    scheduled[k] = (now - c.due) * 1000;
    lateness[k] = (c.sentAt - c.due) * 1000;
    if (ok) acknowledged++;
    else fail(reason);
    c.busy = false;
    inFlight--;
  }

  function onData(c: Conn, chunk: Buffer): void {
    if (!c.busy) return; // nothing asked; a server would not send it
    c.received = c.received ? Buffer.concat([c.received, chunk]) : chunk;
    const end = c.received.indexOf(CRLFCRLF);
    if (end < 0) return;
    const head = c.received.toString('latin1', 0, end);
    const length = Number(CONTENT_LENGTH.exec(head)?.[1] ?? 0);
    if (c.received.length < end + 4 + length) return;
    const status = head.slice(9, 12);
    c.received = undefined;
    done(c, status === '200', `status ${status}`);
    idle.push(c);
    pump();
    checkDone();
  }

  function onLost(c: Conn, socket: Socket<undefined>, reason: string): void {
    if (c.socket !== socket) return; // already handled (error, then close)
    c.socket = undefined;
    if (c.busy) {
      done(c, false, reason);
      checkDone();
    } else {
      const at = idle.indexOf(c);
      if (at >= 0) idle.splice(at, 1);
    }
    // Replace it, as the API server's client would; unless the run is over.
    if (next < total) void open(c).catch((error: Error) => fail(`connect: ${error.message}`));
  }

  async function open(c: Conn): Promise<void> {
    c.socket = await Bun.connect({
      hostname: '127.0.0.1',
      port: config.port,
      tls: { ca, serverName: 'localhost' },
      socket: {
        data: (_s, chunk) => onData(c, chunk),
        drain: () => flush(c),
        close: (socket) => onLost(c, socket, 'connection closed'),
        error: (socket, error) => onLost(c, socket, error.message),
      },
    });
    c.socket.setNoDelay(true);
    idle.push(c);
    if (t0 !== 0) pump();
  }

  for (let i = 0; i < config.connections; i++)
    conns.push({
      socket: undefined,
      busy: false,
      out: undefined,
      written: 0,
      received: undefined,
      due: 0,
      sentAt: 0,
    });
  let connectTimer: Timer | undefined;
  await Promise.race([
    Promise.all(conns.map((c) => open(c))),
    new Promise((_, reject) => {
      connectTimer = setTimeout(() => reject(new Error('connections not open in time')), CONNECT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(connectTimer);

  const cpuStart = process.cpuUsage();
  const ticks = new Float64Array(total);
  let tickCount = 0;
  let wakeAt = 0;
  t0 = performance.now();
  const tick = () => {
    if (wakeAt !== 0 && tickCount < total)
      ticks[tickCount++] = Math.max(0, performance.now() - wakeAt) * 1000;
    const due = Math.min(total, Math.floor((performance.now() - t0) / intervalMs) + 1);
    while (next < due) queue.push(next++);
    if (queue.length - queueHead > maxQueued) maxQueued = queue.length - queueHead;
    pump();
    if (next < total) {
      wakeAt = t0 + next * intervalMs;
      setTimeout(tick, Math.max(0, wakeAt - performance.now()));
    } else checkDone();
  };
  tick();
  const scheduleEnd = t0 + total * intervalMs;
  let drained = true;
  await Promise.race([
    finished,
    (async () => {
      // The schedule's length, then the drain timeout.
      await Bun.sleep(Math.max(0, scheduleEnd - performance.now()) + config.drainTimeoutMs);
      drained = false;
    })(),
  ]);
  for (const c of conns) c.socket?.end();
  const cpu = process.cpuUsage(cpuStart);
  return {
    sent,
    acknowledged,
    failed,
    errors,
    drained: drained && inFlight === 0,
    targetRate: config.rate,
    achievedRate: sent > 1 ? (sent - 1) / ((lastSendAt - firstSendAt) / 1000) : 0,
    service: percentiles(service, answered),
    scheduled: percentiles(scheduled, answered),
    lateness: percentiles(lateness, answered),
    timerLag: percentiles(ticks, tickCount),
    generatorCpuPer1k: ((cpu.user + cpu.system) / 1e6 / Math.max(1, sent)) * 1000,
    maxQueued,
    maxInFlight,
  };
}

if (import.meta.main) {
  const configFile = process.argv[2];
  if (configFile === undefined) {
    process.stderr.write('usage: open-loop.ts CONFIG.json (written by runOpenLoop)\n');
    process.exit(2);
  }
  const result = await child(JSON.parse(readFileSync(configFile, 'utf8')) as ChildConfig);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
