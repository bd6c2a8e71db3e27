/**
 * @module The server (the command run without a subcommand): flags → pipeline → audit log → metrics
 * port → webhook port → connection cap, each recorded with the lifecycle as it starts, so a failure
 * halfway and the shutdown both stop what started in reverse order.
 */
import type { Pipeline } from '../audit/pipeline.ts';
import { CompositionError, composeRecording } from '../compose.ts';
import { type Config, HELP, parseArgs } from '../config/serve.ts';
import { loadPathTokens, type PathTokens } from '../http/caller-auth.ts';
import {
  type ConnectionCap,
  createDescriptorCounter,
  type DescriptorCounter,
  defaultMaxConnections,
  largestSafeMaxConnections,
  readDescriptorLimit,
  startConnectionCap,
} from '../http/connection-cap.ts';
import { createOpsApp } from '../http/ops.ts';
import { type OpsServer, startOpsServer } from '../http/ops-server.ts';
import { errorResponse } from '../http/refusals.ts';
import { bunRoutes, honoApp, webhookFallback, webhookRoutes } from '../http/routes.ts';
import { createWebhook } from '../http/webhook.ts';
import { createLifecycle } from '../lifecycle.ts';
import { fastScannerAvailable } from '../review/json-scan-wasm.ts';
import type { SelfManagedTls } from '../self-managed/start.ts';
import type { WebhookDesire } from '../self-managed/webhook.ts';
import { createFileSink } from '../sink/file-sink.ts';
import type { LineSink } from '../sink/sink.ts';
import { createStdoutSink } from '../sink/stdout-sink.ts';
import { createClock } from '../support/clock.ts';
import { createGcPacer } from '../support/gc-pacer.ts';
import { createLogger, type Fields, type Logger } from '../support/log.ts';
import { createMetrics, type Metrics } from '../support/metrics.ts';
import { throttle } from '../support/throttle.ts';
import type { TlsMaterial } from '../tls/material.ts';
import { startTlsServer, type TlsServer } from '../tls/server.ts';

/**
 * How long the self-managed mode may take to read or create its Secret before the process gives up. The
 * operations port (and so the liveness probe) answers only after that; 25 s stays under the manifests'
 * liveness allowance (3 x 10 s), so a pod that cannot reach the API server exits with the reason in its log.
 */
const SELF_MANAGED_START_DEADLINE_MS = 25_000;

/** Exit status for every start-up failure (bad flag, unusable certificate, unwritable log), as 1.x. */
const EXIT_FAILURE = 1;

/**
 * Seconds a kept-alive webhook connection may sit idle. The API server's Go HTTP client drops idle
 * connections after 90 s; staying open longer means the client, not us, closes them, so it never
 * sends a request on a connection we are closing at that moment (a POST it would not retry).
 * Bun's default of 10 s would also cost a TLS handshake after every pause.
 */
const IDLE_TIMEOUT_SECONDS = 120;

/**
 * Bun's own body limit, set as high as it goes so that every body reaches our handler, which
 * refuses one over `--max-request-bytes` with our 413 (unread when its Content-Length says so).
 * Bun would otherwise answer a body over its limit itself, with an empty 413 and no count.
 */
const BUN_BODY_LIMIT_BYTES = Number.MAX_SAFE_INTEGER;

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

/** The cap in force and how it was chosen, or why none can be. */
type CapPlan =
  | { ok: true; maxConnections: number; baseline: number; limit: number; derived: boolean }
  | { ok: false; message: string };

/** Works out `--max-connections` against the descriptor limit, with the descriptors open now as the baseline. */
function planCap(config: Config, descriptors: DescriptorCounter, limit: number): CapPlan {
  const baseline = descriptors.count();
  const largest = largestSafeMaxConnections(limit, baseline, config.metricsMaxConnections);
  if (config.maxConnections === 0) {
    const maxConnections = defaultMaxConnections(limit, baseline, config.metricsMaxConnections);
    return { ok: true, maxConnections, baseline, limit, derived: true };
  }
  if (config.maxConnections > largest) {
    return {
      ok: false,
      message:
        `--max-connections=${config.maxConnections} leaves too few of the ${limit} descriptors this process may open ` +
        `(ulimit -n) for the metrics port (--metrics-max-connections=${config.metricsMaxConnections}), the ${baseline} ` +
        `open at start and a burst of new connections; use at most ${Math.max(0, largest)}, or raise the limit`,
    };
  }
  return { ok: true, maxConnections: config.maxConnections, baseline, limit, derived: false };
}

/** Runs the webhook server with its flags and resolves with the exit status once it has stopped. */
export async function serve(argv: readonly string[]): Promise<number> {
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
  const startedAt = Date.now();

  /** What self-managed mode keeps in the webhook configuration besides its caBundle. */
  const webhookDesires: WebhookDesire[] = [];
  let pipeline: Pipeline;
  try {
    const recording = await composeRecording(config, clock);
    pipeline = recording.pipeline;
    if (recording.policy !== undefined) {
      // Loaded only with a policy, as self-managed TLS below: a server without either keeps these modules
      // out of its heap (see src/main.ts on what loading unused modules cost per request).
      const { reportWebhookMatch } = await import('../webhook-config/report.ts');
      const { compileMatch } = await import('../webhook-config/compile.ts');
      const { policyMatchDesire } = await import('../self-managed/policy-desire.ts');
      reportWebhookMatch(recording.policy, { registry: metrics.registry, log: log.child('policy') });
      const compiled = compileMatch(recording.policy);
      if (compiled.kind === 'match') webhookDesires.push(policyMatchDesire(compiled.match));
    }
  } catch (err) {
    if (!(err instanceof CompositionError)) throw err;
    process.stderr.write(`kube-audit-rest: ${err.message}\n`);
    return EXIT_FAILURE;
  }

  let pathTokens: PathTokens | undefined;
  let selfManaged: SelfManagedTls | undefined;
  let sink: LineSink | undefined;
  let tls: TlsServer | undefined;
  let ops: OpsServer | undefined;
  let cap: ConnectionCap | undefined;
  const lifecycle = createLifecycle({
    log,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    reload: () => {
      void tls?.reloadNow();
      void pathTokens?.reloadNow();
    },
    summary: () => stateSummary(),
  });
  const fail = async (): Promise<number> => {
    await lifecycle.unwind();
    lifecycle.dispose();
    return EXIT_FAILURE;
  };

  // Who may call: path tokens here, the client CA in startTlsServer below (docs/security.md).
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
      return fail();
    }
    const tokens = pathTokens;
    lifecycle.started({ name: 'path tokens', stop: () => tokens.close() });
  }

  try {
    sink = openSink(config, log, metrics);
  } catch (err) {
    log.error('cannot open the audit log', { path: config.loggerFilename, error: err });
    return fail();
  }
  const openedSink = sink;
  lifecycle.started({
    name: 'audit log',
    stop: () => openedSink.close(),
    abort: () => openedSink.flushSync(),
  });

  // Self-managed TLS (--tls-mode=self-managed): the certificate files the server reads are written from a
  // Secret this process keeps current, together with the webhook configuration's caBundle.
  if (config.tlsMode === 'self-managed') {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `reading or creating the self-managed Secret did not finish within ${SELF_MANAGED_START_DEADLINE_MS} ms`,
            ),
          ),
        SELF_MANAGED_START_DEADLINE_MS,
      );
    });
    try {
      const { startSelfManagedTls } = await import('../self-managed/start.ts');
      const { selfManagedSettings } = await import('../self-managed/settings.ts');
      selfManaged = startSelfManagedTls(selfManagedSettings(config), {
        log,
        registry: metrics.registry,
        env: process.env,
        webhookDesires,
      });
      const started = selfManaged;
      lifecycle.started({ name: 'self-managed TLS', stop: () => started.stop() });
      await Promise.race([started.firstSync, late]);
    } catch (err) {
      log.error('self-managed TLS: no certificate to serve', {
        secret: config.selfManagedSecret,
        error: err,
      });
      return fail();
    } finally {
      clearTimeout(timer);
    }
  }

  const webhookLog = log.child('webhook');
  const webhook = createWebhook({
    pipeline,
    sink: openedSink,
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
  const fallback = webhookFallback(app, routes, webhook);

  // The metrics port opens first and closes last, so readiness can be asked while the webhook drains.
  const opsLog = log.child('metrics');
  const opsApp = createOpsApp({
    metrics,
    readiness: {
      certificate: () => tls?.isReady() ?? false,
      sink: () => openedSink.ready(),
      serving: () => !lifecycle.stopping,
      connections: () => !(cap?.reached() ?? false),
      ...(selfManaged !== undefined && { selfManaged: () => selfManaged?.ready() ?? false }),
    },
    log: opsLog,
  });
  try {
    ops = await startOpsServer({
      app: opsApp,
      port: config.metricsPort,
      hostname: config.bindAddress,
      maxConnections: config.metricsMaxConnections,
      log: opsLog,
    });
  } catch (err) {
    log.error('cannot listen on the metrics port', { port: config.metricsPort, error: err });
    return fail();
  }
  const openedOps = ops;
  lifecycle.started({ name: 'metrics listener', stop: () => openedOps.stop() });

  const reportHandlerError = throttle((suppressed: number, error: Error) => {
    webhookLog.error('unexpected error while handling a request', { error, suppressedSinceLast: suppressed });
  });
  try {
    tls = await startTlsServer({
      certFile: config.certFilename,
      keyFile: config.certKeyFilename,
      clientCaFile: config.clientCaFile,
      routes: bunRoutes(routes),
      fetch: fallback,
      onError(error) {
        reportHandlerError(error);
        return errorResponse(500, 'internal', 'internal error');
      },
      logger: log.child('tls'),
      port: config.serverPort,
      hostname: config.bindAddress,
      maxRequestBodySize: BUN_BODY_LIMIT_BYTES,
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
    return fail();
  }
  const openedTls = tls;
  lifecycle.started({
    name: 'webhook listener',
    stop: () => openedTls.stop(false),
    abort: () => void openedTls.stop(true),
  });
  metrics.certExpiry.set(openedTls.material.notAfter.getTime() / 1000);

  // The cap starts last (so it stops first, and never reopens the listener during the drain).
  let descriptors: DescriptorCounter | undefined;
  try {
    descriptors = createDescriptorCounter();
  } catch (err) {
    log.warn('cannot count open descriptors (no /proc?); webhook connections are not capped', { error: err });
  }
  const limit = readDescriptorLimit();
  let capFields: Fields = { maxConnections: 'none' };
  if (descriptors !== undefined && limit !== undefined) {
    const plan = planCap(config, descriptors, limit);
    if (!plan.ok) {
      log.error(plan.message);
      return fail();
    }
    const counter = descriptors;
    cap = startConnectionCap({
      maxConnections: plan.maxConnections,
      baseline: plan.baseline,
      descriptors: counter,
      otherConnections: () => openedOps.connections(),
      pause: () => openedTls.pause(),
      resume: () => openedTls.resume(),
      log: log.child('connections'),
      onReached: () => metrics.connectionCapReached.inc(),
    });
    const runningCap = cap;
    lifecycle.started({ name: 'connection cap', stop: () => runningCap.stop() });
    capFields = {
      maxConnections: plan.maxConnections,
      derivedFrom: plan.derived ? `ulimit -n ${plan.limit}` : undefined,
      descriptorLimit: plan.limit,
      descriptorsAtStart: plan.baseline,
    };
    if (plan.maxConnections > largestSafeMaxConnections(limit, plan.baseline, config.metricsMaxConnections)) {
      log.warn('the descriptor limit is low: a burst of new connections may still use up every descriptor', {
        descriptorLimit: limit,
        maxConnections: plan.maxConnections,
      });
    }
  } else if (limit === undefined) {
    log.info('no descriptor limit; webhook connections are not capped');
  }

  function stateSummary(): Fields {
    return {
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      stopping: lifecycle.stopping,
      accepting: tls?.accepting() ?? false,
      webhookConnections: cap?.connections(),
      connectionCapReached: cap?.reached() ?? false,
      metricsConnections: ops?.connections(),
      openDescriptors: descriptors?.count(),
      descriptorLimit: limit,
      sinkReady: sink?.ready() ?? false,
      certificateNotAfter: tls?.material.notAfter.toISOString(),
    };
  }

  if (!fastScannerAvailable) {
    log.warn('the WebAssembly JSON scanner cannot run here; the TypeScript one does the work, more slowly');
  }
  log.info('serving', {
    webhook: `https://${config.bindAddress}:${openedTls.port}/log-request${pathTokens === undefined ? '' : '/<token>'}`,
    ...(pathTokens === undefined ? {} : { pathTokens: pathTokens.size }),
    ...(config.clientCaFile === undefined ? {} : { clientCaFile: config.clientCaFile }),
    metrics: `http://${config.bindAddress}:${openedOps.port}/metrics`,
    auditLog: config.auditToStdLog ? 'stdout' : config.loggerFilename,
    certificate: certificateFields(openedTls.material),
    connections: capFields,
  });
  return lifecycle.run();
}
