/**
 * @module Runs the audit Event oracles (testing/event-oracles: the API server's Go types and Falco's k8saudit
 * plugin code) over Event lines, building them first when their sources changed.
 */
import { join } from 'node:path';
import { freePort } from '../../test/helpers/server-process.ts';
import { runCommand } from './command.ts';

const REPO = join(import.meta.dir, '..', '..');
const BUILD_SCRIPT = join(REPO, 'testing', 'event-oracles', 'build.sh');
/** A cold build takes about 40 s on 2 shared cores; a Go build that runs far past that is stuck. */
const BUILD_TIMEOUT_MS = 600_000;
/** The oracles read a few hundred lines in well under a second; this only stops a hung process. */
const RUN_TIMEOUT_MS = 60_000;

/** Where the oracles live: `binDir` defaults to `$EVENT_ORACLES_BIN_DIR`, else `<repo>/.cache/event-oracles-bin`. */
export type EventOraclesOptions = { readonly binDir?: string };

/** event-check's verdict on one line: `ok` exactly when `errors` is empty. */
export type EventCheck = { readonly line: number; readonly ok: boolean; readonly errors: readonly string[] };

/** A value the plugin set: a string for a plain field, a list of strings for a list field. */
export type FalcoFieldValue = string | readonly string[];

/**
 * What Falco's k8saudit plugin made of one event. `error` is set when the plugin refused the line or the
 * event (and then nothing was extracted); `fields` holds each field the plugin set, keyed by its name with
 * its argument (`ka.uri.param[command]`); a field it left unset (Falco's `<NA>`) is absent; `errors` holds
 * the fields whose extraction failed.
 */
export type FalcoFields = {
  readonly line: number;
  readonly event: number;
  readonly error?: string;
  readonly fields: Readonly<Record<string, FalcoFieldValue>>;
  readonly errors: Readonly<Record<string, string>>;
};

function binDirOf(options: EventOraclesOptions): string {
  return options.binDir ?? process.env.EVENT_ORACLES_BIN_DIR ?? join(REPO, '.cache', 'event-oracles-bin');
}

/**
 * Builds the oracles with testing/event-oracles/build.sh when they are missing or older than their sources,
 * and returns the folder that holds them. A failed build throws with the build's output: tests that need an
 * oracle fail rather than skip.
 */
export async function ensureEventOracles(options: EventOraclesOptions = {}): Promise<string> {
  const binDir = binDirOf(options);
  await runCommand(['bash', BUILD_SCRIPT], {
    env: { ...process.env, EVENT_ORACLES_BIN_DIR: binDir },
    timeoutMs: BUILD_TIMEOUT_MS,
  });
  return binDir;
}

/** Feeds `lines` to one oracle process on stdin and returns its stdout lines, parsed. */
async function runOracle(
  binDir: string,
  tool: string,
  args: readonly string[],
  lines: readonly string[],
): Promise<unknown[]> {
  lines.forEach((line, i) => {
    if (line.includes('\n')) throw new Error(`line ${i + 1} contains a newline; an Event line must not`);
  });
  const proc = Bun.spawn([join(binDir, tool), ...args], {
    stdin: new TextEncoder().encode(lines.length === 0 ? '' : `${lines.join('\n')}\n`),
    stdout: 'pipe',
    stderr: 'pipe',
    timeout: RUN_TIMEOUT_MS,
  });
  const [stdout, stderr, status] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${status}: ${stderr}`);
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

/**
 * Decodes each line strictly into the API server's audit/v1 Event and checks the fields consumers need;
 * with `list`, each line is an EventList body as the audit webhook backend sends it. One verdict per line,
 * in order.
 */
export async function checkEvents(
  lines: readonly string[],
  options: EventOraclesOptions & { readonly list?: boolean } = {},
): Promise<EventCheck[]> {
  const binDir = await ensureEventOracles(options);
  const out = await runOracle(binDir, 'event-check', options.list ? ['--list'] : [], lines);
  const verdicts = out.map((v, i) => {
    const r = v as Partial<EventCheck>;
    if (r.line !== i + 1 || typeof r.ok !== 'boolean' || !Array.isArray(r.errors)) {
      throw new Error(`event-check printed an unexpected result at ${i + 1}: ${JSON.stringify(v)}`);
    }
    return { line: r.line, ok: r.ok, errors: r.errors };
  });
  if (verdicts.length !== lines.length) {
    throw new Error(`event-check gave ${verdicts.length} verdicts for ${lines.length} lines`);
  }
  return verdicts;
}

/**
 * Runs Falco's k8saudit plugin code over the lines and returns what it extracted, one entry per event (an
 * Event line gives one; a line the plugin refuses gives one with `error` and `event` -1). `argFields` adds
 * fields with an argument (`ka.req.pod.containers.image[1]`) to the defaults: every field whose argument is
 * optional, plus `ka.uri.param[command]` and `ka.uri.param[container]`.
 */
export async function falcoFields(
  lines: readonly string[],
  options: EventOraclesOptions & { readonly argFields?: readonly string[] } = {},
): Promise<FalcoFields[]> {
  const binDir = await ensureEventOracles(options);
  const out = await runOracle(binDir, 'falco-fields', options.argFields ?? [], lines);
  return out.map((v) => {
    const r = v as { line?: unknown; event?: unknown; error?: unknown; fields?: unknown; errors?: unknown };
    if (typeof r.line !== 'number' || r.line < 1 || r.line > lines.length) {
      throw new Error(`falco-fields printed an unexpected result: ${JSON.stringify(v)}`);
    }
    return {
      line: r.line,
      event: typeof r.event === 'number' ? r.event : -1,
      ...(typeof r.error === 'string' ? { error: r.error } : {}),
      fields: (r.fields ?? {}) as Record<string, FalcoFieldValue>,
      errors: (r.errors ?? {}) as Record<string, string>,
    };
  });
}

/** One event Falco's k8saudit webhook source delivered: its arrival number (from 1) and what was extracted. */
export type FalcoReceived = {
  readonly received: number;
  readonly fields: Readonly<Record<string, FalcoFieldValue>>;
  readonly errors: Readonly<Record<string, string>>;
};

/** Falco's k8saudit webhook source; see {@link falcoWebhookSource}. */
export type FalcoWebhookSource = {
  /** Where the source listens once started (https, loopback, path `/k8s-audit`). */
  readonly url: string;
  /** Starts the source's process; it binds `url` itself, a moment later. */
  start(): Promise<void>;
  /** Every event delivered so far, in arrival order. */
  events(): readonly FalcoReceived[];
  /** Stops the source (SIGTERM) and waits for its process to end; throws when it failed. */
  stop(): Promise<void>;
};

/**
 * Prepares Falco's k8saudit plugin as a webhook source (falco-fields `--webhook`): the plugin's own HTTPS
 * server and payload parser, given `certFile` and `keyFile` as the one PEM file (written into `pemDir`) that
 * its `sslCertificate` option takes, printing every event's fields as it arrives. Its URL is known before
 * it starts, so a sender can be pointed at it while it is down. Nothing waits for it to listen: a sender
 * retries until it does, as an audit webhook backend must.
 */
export async function falcoWebhookSource(
  options: EventOraclesOptions & {
    readonly certFile: string;
    readonly keyFile: string;
    readonly pemDir: string;
  },
): Promise<FalcoWebhookSource> {
  const binDir = await ensureEventOracles(options);
  const pem = join(options.pemDir, 'falco.pem');
  await Bun.write(pem, `${await Bun.file(options.keyFile).text()}${await Bun.file(options.certFile).text()}`);
  const url = `https://127.0.0.1:${freePort()}/k8s-audit`;
  const received: FalcoReceived[] = [];
  let proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'> | undefined;
  let reading: Promise<void> = Promise.resolve();

  async function read(stdout: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = '';
    for await (const chunk of stdout) {
      rest += decoder.decode(chunk, { stream: true });
      for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n')) {
        const r = JSON.parse(rest.slice(0, nl)) as Partial<FalcoReceived>;
        if (typeof r.received !== 'number') throw new Error(`falco-fields printed ${rest.slice(0, nl)}`);
        received.push({ received: r.received, fields: r.fields ?? {}, errors: r.errors ?? {} });
        rest = rest.slice(nl + 1);
      }
    }
  }

  return {
    url,
    async start() {
      if (proc) throw new Error('the Falco webhook source is already started');
      proc = Bun.spawn([join(binDir, 'falco-fields'), `--webhook=${url}`, `--ssl-certificate=${pem}`], {
        stdin: 'ignore',
        stdout: 'pipe',
        stderr: 'pipe',
      });
      reading = read(proc.stdout);
    },
    events: () => received,
    async stop() {
      if (!proc) return;
      proc.kill('SIGTERM');
      const [status, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text(), reading]);
      if (status !== 0) throw new Error(`falco-fields --webhook exited ${status}: ${stderr}`);
    },
  };
}
