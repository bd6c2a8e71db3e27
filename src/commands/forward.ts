/**
 * @module `kube-audit-rest forward`: flags → line converter → Kafka or audit webhook sink →
 * forwarder, with /metrics, /healthz and /readyz on their own port; on SIGTERM it drains, then exits.
 *
 * The forwarding itself is src/forward/ (the file as the buffer, the checkpoint, retries); this
 * module wires it from the flags and owns the process' life: start-up errors exit 2 before
 * anything is read, a forwarder that fails exits 1, and a stop forwards what is left for up to
 * `--drain-timeout` (exit 1 if lines were left, since a pod's emptyDir goes with the pod).
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { CompositionError } from '../compose.ts';
import { FORWARD_HELP, type ForwardConfig, parseForwardArgs } from '../config/forward.ts';
import { createAuditWebhookSink } from '../forward/audit-webhook.ts';
import { type EventMeta, type EventMetaReader, parseEventMeta } from '../forward/event-meta.ts';
import { createForwarder, type Forwarder, type LineConverter } from '../forward/forwarder.ts';
import { createKafkaSink } from '../forward/kafka.ts';
import type { ForwardSink } from '../forward/sink.ts';
import { createGcPacer } from '../support/gc-pacer.ts';
import { createLogger, type Logger } from '../support/log.ts';
import { type LineConverter as ConvertLine, composeLineConverter } from './convert-line.ts';

/** Exit statuses of `forward`. */
export const FORWARD_EXIT = { ok: 0, failed: 1, unusable: 2 } as const;

/**
 * How long the destination may go without taking a batch, while lines wait, beyond the batch's own
 * wait, before /readyz says 503: long enough for a broker's leader election or a receiver's
 * restart, short enough that an outage shows within a minute or two.
 */
const READY_STALL_MS = 60_000;

/**
 * Bytes of log read between looks at RSS (see createGcPacer). Forwarding allocates in proportion to
 * what it reads (the lines, their Events, their metadata, the compressed batch); left to itself, the
 * collector let the peak RSS reach about 200 MiB while forwarding 50 MiB/s of the bench's mix. A look
 * every 16 MiB, collecting above the pacer's 96 MiB, held it to 150-160 MiB there (bench, "forward").
 */
const GC_EVERY_BYTES = 16 * 1024 * 1024;

/** Longest wait for the sink's connections to close after the forwarder stopped. */
const CLOSE_TIMEOUT_MS = 5000;

/** What `forward` needs from its surroundings; the process' own by default, replaceable in tests. */
export type ForwardIo = {
  /** Resolves with a signal's name when the process is asked to stop; called once per stop request. */
  nextStopSignal(): Promise<string>;
  /** Writes help text. */
  stdout(text: string): void;
  /** Writes a usage error. */
  stderr(text: string): void;
  /** Application logs. Default: JSON on stderr. */
  log?: Logger;
  /** Called once the operations port listens, with its port (0 in the flags picks a free one). */
  onListening?(port: number): void;
};

/**
 * Adapts `convert`'s line converter to the forwarder's: Events as they are, skipped lines as errors it
 * counts and logs. The metadata of the Events it makes is known already: `eventMeta` hands it out
 * instead of parsing each Event again (as costly as converting it), and parses only Event lines.
 */
function forwarderConverter(
  convertLine: ConvertLine,
  afterLine: (bytes: number) => void,
): { convert: LineConverter; eventMeta: EventMetaReader } {
  const known = new WeakMap<Uint8Array, EventMeta>();
  function convert(line: Uint8Array) {
    afterLine(line.length);
    const result = convertLine(line);
    switch (result.kind) {
      case 'event-line':
        return line;
      case 'events':
        for (const event of result.events) known.set(event, result.meta);
        return result.events;
      case 'not-recorded':
        return [];
      case 'skipped':
        throw new Error(result.reason);
    }
  }
  return { convert, eventMeta: (event) => known.get(event) ?? parseEventMeta(event) };
}

/** Builds the sink the flags name; throws with the flag's name when an option or file is unusable. */
function openSink(config: ForwardConfig, log: Logger): ForwardSink {
  if (config.destination === 'kafka') {
    return createKafkaSink({
      brokers: [...config.kafkaBrokerList],
      topic: config.kafkaTopic as string,
      key: config.kafkaKey,
      clusterName: config.clusterName ?? '',
      compression: config.kafkaCompression,
      idempotent: config.kafkaIdempotent,
      clientId: config.kafkaClientId,
      tls: config.kafkaTls,
      ...(config.kafkaTlsCaFile !== undefined ? { tlsCaFile: config.kafkaTlsCaFile } : {}),
      ...(config.kafkaTlsCertFile !== undefined ? { tlsCertFile: config.kafkaTlsCertFile } : {}),
      ...(config.kafkaTlsKeyFile !== undefined ? { tlsKeyFile: config.kafkaTlsKeyFile } : {}),
      ...(config.kafkaTlsServerName !== undefined ? { tlsServerName: config.kafkaTlsServerName } : {}),
      tlsInsecureSkipVerify: config.kafkaTlsInsecureSkipVerify,
      ...(config.kafkaSaslMechanism !== 'none'
        ? {
            saslMechanism: config.kafkaSaslMechanism,
            saslUsername: config.kafkaSaslUsername as string,
            saslPasswordFile: config.kafkaSaslPasswordFile as string,
          }
        : {}),
      requestTimeoutMs: config.kafkaTimeoutMs,
      batch: {
        maxEvents: config.kafkaBatchMaxSize,
        maxBytes: config.kafkaBatchMaxBytes,
        maxWaitMs: config.kafkaBatchMaxWaitMs,
      },
      retry: { initialBackoffMs: config.kafkaRetryBackoffMs },
      log,
    });
  }
  return createAuditWebhookSink({
    configFile: config.auditWebhookConfigFile as string,
    bufferSize: config.auditWebhookBatchBufferSize,
    maxBatchSize: config.auditWebhookBatchMaxSize,
    maxBatchWaitMs: config.auditWebhookBatchMaxWaitMs,
    maxBatchBytes: config.auditWebhookBatchMaxBytes,
    throttleEnable: config.auditWebhookBatchThrottleEnable,
    throttleQps: config.auditWebhookBatchThrottleQps,
    throttleBurst: config.auditWebhookBatchThrottleBurst,
    initialBackoffMs: config.auditWebhookInitialBackoffMs,
    maxBackoffMs: Math.max(config.auditWebhookMaxBackoffMs, config.auditWebhookInitialBackoffMs),
    requestTimeoutMs: config.auditWebhookTimeoutMs,
    log,
  });
}

/** The current value of a gauge without labels on `registry`, or 0 when it is not there. */
async function gaugeValue(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values[0]?.value ?? 0;
}

/** Creates the operations handler: /metrics, /healthz, and /readyz answering 503 with the reason. */
function createOpsHandler(registry: Registry, ready: () => Promise<string | undefined>) {
  return async function ops(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return new Response('method not allowed\n', { status: 405, headers: { allow: 'GET, HEAD' } });
    }
    if (pathname === '/metrics') {
      return new Response(await registry.metrics(), { headers: { 'content-type': registry.contentType } });
    }
    if (pathname === '/healthz') return new Response('ok\n');
    if (pathname === '/readyz') {
      const reason = await ready();
      return reason === undefined
        ? new Response('ok\n')
        : new Response(`not ready: ${reason}\n`, { status: 503 });
    }
    return new Response('not found\n', { status: 404 });
  };
}

/** Resolves with `promise`, or with undefined after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Runs `forward` with its argv (after the word `forward`) and resolves with the exit status once it has stopped. */
export async function forward(argv: readonly string[], io: ForwardIo): Promise<number> {
  const parsed = parseForwardArgs(argv);
  if (parsed.kind === 'help') {
    io.stdout(FORWARD_HELP);
    return FORWARD_EXIT.ok;
  }
  if (parsed.kind === 'error') {
    io.stderr(
      `kube-audit-rest forward: ${parsed.message}\nRun kube-audit-rest forward --help for the flags.\n`,
    );
    return FORWARD_EXIT.unusable;
  }
  const config = parsed.config;
  const appLog = io.log ?? createLogger({ verbose: config.verbose });
  const log = appLog.child('forward-command');

  let convertLine: ConvertLine;
  try {
    convertLine = await composeLineConverter(config);
  } catch (err) {
    if (!(err instanceof CompositionError)) throw err;
    io.stderr(`kube-audit-rest forward: ${err.message}\n`);
    return FORWARD_EXIT.unusable;
  }

  let sink: ForwardSink;
  try {
    sink = openSink(config, appLog);
  } catch (err) {
    io.stderr(`kube-audit-rest forward: ${(err as Error).message}\n`);
    return FORWARD_EXIT.unusable;
  }

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let forwarder: Forwarder;
  try {
    forwarder = createForwarder({
      path: config.loggerFilename,
      checkpointPath: config.checkpointFile,
      sink,
      registry,
      ...forwarderConverter(convertLine, createGcPacer({ minBodyBytes: 1, everyBytes: GC_EVERY_BYTES })),
      startAt: config.startAt,
      pollIntervalMs: config.pollIntervalMs,
      log: appLog,
    });
  } catch (err) {
    io.stderr(`kube-audit-rest forward: ${(err as Error).message}\n`);
    await sink.close();
    return FORWARD_EXIT.unusable;
  }

  let started = false;
  let stopping = false;
  const stallLimitS = (sink.batch.maxWaitMs + READY_STALL_MS) / 1000;
  const ready = async (): Promise<string | undefined> => {
    if (!started) return 'not started';
    if (stopping) return 'stopping';
    const age = await gaugeValue(registry, 'kube_audit_rest_forward_checkpoint_age_seconds');
    return age > stallLimitS
      ? `${sink.name} has taken no batch for ${Math.round(age)}s while lines wait`
      : undefined;
  };
  let ops: ReturnType<typeof Bun.serve>;
  try {
    ops = Bun.serve({
      port: config.metricsPort,
      hostname: config.bindAddress,
      development: false,
      fetch: createOpsHandler(registry, ready),
    });
  } catch (err) {
    log.error('cannot listen on the metrics port', { port: config.metricsPort, error: err });
    await sink.close();
    return FORWARD_EXIT.unusable;
  }

  try {
    forwarder.start();
  } catch (err) {
    log.error('cannot start forwarding', { checkpoint: config.checkpointFile, error: err });
    ops.stop(true);
    await sink.close();
    return FORWARD_EXIT.unusable;
  }
  started = true;
  io.onListening?.(ops.port as number);
  log.info('forwarding', {
    auditLog: config.loggerFilename,
    checkpoint: config.checkpointFile,
    destination: config.destination,
    ...(config.destination === 'kafka'
      ? { brokers: config.kafkaBrokerList, topic: config.kafkaTopic }
      : { config: config.auditWebhookConfigFile }),
    metrics: `http://${config.bindAddress}:${ops.port}/metrics`,
  });

  const outcome = await Promise.race([
    io.nextStopSignal().then((signal) => ({ signal })),
    forwarder.done.then(
      () => ({ failed: undefined }),
      (error: unknown) => ({ failed: error }),
    ),
  ]);
  stopping = true;
  let status: number = FORWARD_EXIT.ok;
  if ('signal' in outcome) {
    // A second signal while draining stops at once.
    void io.nextStopSignal().then(() => {
      log.warn('second stop signal: stopping without draining');
      void forwarder.stop();
    });
    if (config.drainTimeoutMs > 0) {
      log.info('stopping: forwarding what is left', {
        signal: outcome.signal,
        drainTimeoutMs: config.drainTimeoutMs,
      });
      const drained = await forwarder.drain(config.drainTimeoutMs);
      if (!drained) {
        const lagBytes = await gaugeValue(registry, 'kube_audit_rest_forward_lag_bytes');
        log.error(
          'stopped before everything was forwarded; the rest goes on the next start, from the checkpoint, if the log outlives this pod',
          {
            lagBytes,
            drainTimeoutMs: config.drainTimeoutMs,
          },
        );
        status = FORWARD_EXIT.failed;
      }
    } else {
      log.info('stopping', { signal: outcome.signal });
      await forwarder.stop();
    }
  } else {
    // The forwarder logged the error; a restart resumes from the checkpoint.
    await forwarder.stop().catch(() => {});
    status = FORWARD_EXIT.failed;
  }
  const closed = await within(
    sink.close().then(
      () => true,
      (error: unknown) => {
        log.warn('closing the destination failed', { error });
        return true;
      },
    ),
    CLOSE_TIMEOUT_MS,
  );
  if (closed === undefined)
    log.warn('the destination did not close in time', { timeoutMs: CLOSE_TIMEOUT_MS });
  ops.stop(true);
  log.info('stopped', {
    status,
    delivered: forwarder.metrics.value('delivered'),
    failed: forwarder.metrics.value('failed'),
    dropped: forwarder.metrics.value('dropped'),
  });
  return status;
}

/** The process' own signals and streams for {@link forward}. */
export function processForwardIo(): ForwardIo {
  return {
    nextStopSignal: () =>
      new Promise((resolve) => {
        const on = (name: string) => () => {
          process.off('SIGTERM', term);
          process.off('SIGINT', int);
          resolve(name);
        };
        const term = on('SIGTERM');
        const int = on('SIGINT');
        process.once('SIGTERM', term);
        process.once('SIGINT', int);
      }),
    stdout: (text) => {
      process.stdout.write(text);
    },
    stderr: (text) => {
      process.stderr.write(text);
    },
  };
}
