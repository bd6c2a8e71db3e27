/**
 * @module Entry point: parse flags → open the sink → serve the webhook and the operations port → wait
 * for SIGTERM/SIGINT → drain, flush, exit.
 */
import type { Pipeline } from './audit/pipeline.ts';
import { convert, processIo } from './commands/convert.ts';
import { webhookConfig, processIo as webhookConfigIo } from './commands/webhook-config.ts';
import { CompositionError, composeRecording } from './compose.ts';
import { type Config, HELP, parseArgs } from './config/serve.ts';
import { loadPathTokens, type PathTokens } from './http/caller-auth.ts';
import { createOpsApp } from './http/ops.ts';
import { errorResponse } from './http/refusals.ts';
import { bunRoutes, honoApp, webhookRoutes } from './http/routes.ts';
import { createWebhook } from './http/webhook.ts';
import { fastScannerAvailable } from './review/json-scan-wasm.ts';
import { policyMatchDesire } from './self-managed/policy-desire.ts';
import { selfManagedSettings } from './self-managed/settings.ts';
import { type SelfManagedTls, startSelfManagedTls } from './self-managed/start.ts';
import type { WebhookDesire } from './self-managed/webhook.ts';
import { createFileSink } from './sink/file-sink.ts';
import type { LineSink } from './sink/sink.ts';
import { createStdoutSink } from './sink/stdout-sink.ts';
import { createClock } from './support/clock.ts';
import { createGcPacer } from './support/gc-pacer.ts';
import { createLogger, type Logger } from './support/log.ts';
import { createMetrics, type Metrics } from './support/metrics.ts';
import type { TlsMaterial } from './tls/material.ts';
import { startTlsServer } from './tls/server.ts';
import { compileMatch } from './webhook-config/compile.ts';
import { reportWebhookMatch } from './webhook-config/report.ts';

/** Exit status for every start-up failure (bad flag, unusable certificate, unwritable log), as 1.x. */
const EXIT_FAILURE = 1;

/**
 * Seconds a kept-alive webhook connection may sit idle. The API server's Go HTTP client drops idle
 * connections after 90 s; staying open longer means the client, not us, closes them, so it never
 * sends a request on a connection we are closing at that moment (a POST it would not retry).
 * Bun's default of 10 s would also cost a TLS handshake after every pause.
 */
const IDLE_TIMEOUT_SECONDS = 120;

/** Bun's own body limit sits above ours so that our handler answers with a clear 413 first. */
const BUN_BODY_LIMIT_SLACK_BYTES = 64 * 1024;

/**
 * How long the self-managed mode may take to read or create its Secret before the process gives up. The
 * operations port (and so the liveness probe) answers only after that; 25 s stays under the manifests'
 * liveness allowance (3 x 10 s), so a pod that cannot reach the API server exits with the reason in its log.
 */
const SELF_MANAGED_START_DEADLINE_MS = 25_000;

function openSink(config: Config, log: Logger, metrics: Metrics): LineSink {
  if (config.auditToStdLog)
    return createStdoutSink({ observer: metrics.sinkObserver, log: log.child('sink') });
  return createFileSink({
    path: config.loggerFilename,
    maxSizeBytes: config.loggerMaxSizeBytes,
    maxBackups: config.loggerMaxBackups,
    maxAgeDays: config.loggerMaxAgeDays,
    compress: config.loggerCompress,
    fsync: config.fsync,
    observer: metrics.sinkObserver,
    log: log.child('sink'),
  });
}

function certificateFields(m: TlsMaterial): Record<string, unknown> {
  return { subject: m.subject, notAfter: m.notAfter.toISOString(), sha256: m.fingerprint256 };
}

/** Resolves with the name of the first SIGTERM or SIGINT; installing the handler is what makes Bun as PID 1 heed SIGTERM. */
function nextStopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (name: string) => () => resolve(name);
    process.once('SIGTERM', on('SIGTERM'));
    process.once('SIGINT', on('SIGINT'));
  });
}

/** Rejects after `ms` with a message naming what took too long. */
function deadline(ms: number, what: string): { promise: Promise<never>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Runs kube-audit-rest with `argv` (a subcommand and its flags, or the server's flags) and resolves with the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'convert') return convert(argv.slice(1), processIo());
  if (argv[0] === 'webhook-config') return webhookConfig(argv.slice(1), webhookConfigIo());
  return serve(argv);
}

/** Runs the webhook server with its flags and resolves with the exit status once it has stopped. */
async function serve(argv: readonly string[]): Promise<number> {
  const parsed = parseArgs(argv);
  if (parsed.kind === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.kind === 'error') {
    process.stderr.write(`kube-audit-rest: ${parsed.message}\nRun kube-audit-rest --help for the flags.\n`);
    return EXIT_FAILURE;
  }
  const config = parsed.config;
  const log = createLogger({ verbose: config.verbose });
  const metrics = createMetrics();

  const clock = createClock();
  /** What self-managed mode keeps in the webhook configuration besides its caBundle. */
  const webhookDesires: WebhookDesire[] = [];
  let pipeline: Pipeline;
  try {
    const recording = await composeRecording(config, clock);
    pipeline = recording.pipeline;
    if (recording.policy !== undefined) {
      reportWebhookMatch(recording.policy, { registry: metrics.registry, log: log.child('policy') });
      const compiled = compileMatch(recording.policy);
      if (compiled.kind === 'match') webhookDesires.push(policyMatchDesire(compiled.match));
    }
  } catch (err) {
    if (!(err instanceof CompositionError)) throw err;
    process.stderr.write(`kube-audit-rest: ${err.message}\n`);
    return EXIT_FAILURE;
  }

  // Who may call: path tokens here, the client CA in startTlsServer below (docs/security.md).
  let pathTokens: PathTokens | undefined;
  if (config.pathTokenFile !== undefined) {
    try {
      pathTokens = await loadPathTokens({
        file: config.pathTokenFile,
        logger: log,
        reloadIntervalMs: config.tlsReloadIntervalMs,
        onReload: () => metrics.pathTokenReloads.inc({ result: 'success' }),
        onReloadError: () => metrics.pathTokenReloads.inc({ result: 'failure' }),
      });
    } catch (err) {
      process.stderr.write(`kube-audit-rest: ${(err as Error).message}\n`);
      return EXIT_FAILURE;
    }
  }

  let sink: LineSink;
  try {
    sink = openSink(config, log, metrics);
  } catch (err) {
    log.error('cannot open the audit log', { path: config.loggerFilename, error: err });
    return EXIT_FAILURE;
  }

  // Self-managed TLS (--tls-mode=self-managed): the certificate files the server reads are written from a
  // Secret this process keeps current, together with the webhook configuration's caBundle.
  let selfManaged: SelfManagedTls | undefined;
  if (config.tlsMode === 'self-managed') {
    const limit = deadline(SELF_MANAGED_START_DEADLINE_MS, 'reading or creating the self-managed Secret');
    try {
      selfManaged = startSelfManagedTls(selfManagedSettings(config), {
        log,
        registry: metrics.registry,
        env: process.env,
        webhookDesires,
      });
      await Promise.race([selfManaged.firstSync, limit.promise]);
    } catch (err) {
      log.error('self-managed TLS: no certificate to serve', {
        secret: config.selfManagedSecret,
        error: err,
      });
      await selfManaged?.stop();
      await sink.close();
      return EXIT_FAILURE;
    } finally {
      limit.cancel();
    }
  }

  const webhookLog = log.child('webhook');
  const webhook = createWebhook({
    pipeline,
    sink,
    metrics,
    clock,
    log: webhookLog,
    maxRequestBytes: config.maxRequestBytes,
    requestTimeoutMs: config.requestTimeoutMs,
    onWriteError: config.onWriteError,
    afterBody: createGcPacer(),
  });

  const routes = webhookRoutes(webhook, { pathTokens });
  const app = honoApp(routes, webhook, webhookLog);
  let tls: Awaited<ReturnType<typeof startTlsServer>>;
  try {
    tls = await startTlsServer({
      certFile: config.certFilename,
      keyFile: config.certKeyFilename,
      clientCaFile: config.clientCaFile,
      routes: bunRoutes(routes),
      fetch: (req, server) => app.fetch(req, server),
      onError(error) {
        webhookLog.error('unexpected error while handling a request', { error });
        return errorResponse(500, 'internal', 'internal error');
      },
      logger: log.child('tls'),
      port: config.serverPort,
      hostname: config.bindAddress,
      maxRequestBodySize: config.maxRequestBytes + BUN_BODY_LIMIT_SLACK_BYTES,
      idleTimeout: IDLE_TIMEOUT_SECONDS,
      reloadIntervalMs: config.tlsReloadIntervalMs,
      onReload(material) {
        metrics.certReloads.inc({ result: 'success' });
        metrics.certExpiry.set(material.notAfter.getTime() / 1000);
      },
      onReloadError() {
        metrics.certReloads.inc({ result: 'failure' });
      },
    });
  } catch (err) {
    log.error('cannot serve HTTPS with the given certificate', {
      cert: config.certFilename,
      key: config.certKeyFilename,
      error: err,
    });
    await selfManaged?.stop();
    await sink.close();
    return EXIT_FAILURE;
  }
  metrics.certExpiry.set(tls.material.notAfter.getTime() / 1000);

  let stopping = false;
  const ops = createOpsApp({
    metrics,
    readiness: {
      certificate: () => tls.isReady(),
      sink: () => sink.ready(),
      serving: () => !stopping,
      ...(selfManaged !== undefined && { selfManaged: () => selfManaged.ready() }),
    },
  });
  let opsServer: ReturnType<typeof Bun.serve>;
  try {
    opsServer = Bun.serve({
      port: config.metricsPort,
      hostname: config.bindAddress,
      development: false,
      fetch: (req) => ops.fetch(req),
    });
  } catch (err) {
    log.error('cannot listen on the metrics port', { port: config.metricsPort, error: err });
    await tls.stop(true);
    await selfManaged?.stop();
    await sink.close();
    return EXIT_FAILURE;
  }

  process.on('SIGHUP', () => {
    log.info('SIGHUP: reloading the certificate');
    void tls.reloadNow();
    void pathTokens?.reloadNow();
  });
  if (!fastScannerAvailable) {
    log.warn('the WebAssembly JSON scanner cannot run here; the TypeScript one does the work, more slowly');
  }
  log.info('serving', {
    webhook: `https://${config.bindAddress}:${tls.port}/log-request${pathTokens === undefined ? '' : '/<token>'}`,
    ...(pathTokens === undefined ? {} : { pathTokens: pathTokens.size }),
    ...(config.clientCaFile === undefined ? {} : { clientCaFile: config.clientCaFile }),
    metrics: `http://${config.bindAddress}:${opsServer.port}/metrics`,
    auditLog: config.auditToStdLog ? 'stdout' : config.loggerFilename,
    certificate: certificateFields(tls.material),
  });

  const signal = await nextStopSignal();
  stopping = true;
  log.info('stopping: finishing in-flight requests', { signal, deadlineMs: config.shutdownTimeoutMs });
  const limit = deadline(config.shutdownTimeoutMs, 'shutdown');
  let status = 0;
  try {
    // In-flight requests each finish their write before answering, so once the listener has
    // drained, every acknowledged line is in the sink; close() writes any queued remainder.
    await Promise.race([tls.stop(false), limit.promise]);
    await Promise.race([Promise.all([sink.close(), selfManaged?.stop()]), limit.promise]);
  } catch (err) {
    log.error('shutdown deadline passed; closing connections and flushing what is queued', { error: err });
    sink.flushSync();
    status = EXIT_FAILURE;
    void tls.stop(true);
  } finally {
    limit.cancel();
  }
  opsServer.stop(true);
  await pathTokens?.close();
  log.info('stopped', { status });
  return status;
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2)));
}
