/**
 * @module The server's flags: the 1.x set plus ours, in one table, parsed and validated once into a
 * readonly {@link Config}.
 *
 * Nothing below `main` reads argv or the environment; everything it needs is in the Config.
 */
import { selfManagedSettings } from '../self-managed/settings.ts';
import { FSYNC_MODES } from '../sink/file-sink.ts';
import {
  booleanFlag,
  choiceFlag,
  durationFlag,
  FlagError,
  formatDuration,
  integerFlag,
  parseFlags,
  renderHelp,
  textFlag,
  type ValuesOf,
} from './flags.ts';

/** Bytes in the "megabyte" of `--logger-max-size`: 1.x's rotation library counts MB as 1,048,576 bytes. */
export const MEGABYTE = 1024 * 1024;

/**
 * Default cap on a request body.
 *
 * The API server sends an object and, on update and delete, its old version. etcd refuses a write
 * over 1.5 MiB (`--max-request-bytes`, 1,572,864 by default), so each stored object is at most that.
 * The review carries them as JSON, where byte fields stored raw in etcd (Secret data, ConfigMap
 * binaryData) grow by 4/3 in base64: 2 × 1.5 MiB × 4/3 = 4 MiB. The rest of the review (uid, kinds,
 * userInfo with its groups and extra, options) is small; 1 MiB of headroom covers it generously.
 * A busy cluster with a raised etcd limit can raise this with `--max-request-bytes`.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 2 * 1.5 * MEGABYTE * (4 / 3) + 1 * MEGABYTE;

/**
 * Default deadline for one request, from arrival to answer. The API server waits `timeoutSeconds`
 * (10 s by default, 30 s at most) for a webhook; answering before it gives up lets it log our reason.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 8_000;

/**
 * Default time allowed to finish in-flight requests and flush after SIGTERM. Kubernetes sends
 * SIGKILL 30 s after SIGTERM by default; 15 s leaves room for the preStop delay and the kubelet.
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 15_000;

/** Largest connection cap either port's flag takes: far above any descriptor limit a pod gets. */
const MAX_CONNECTIONS_FLAG = 16 * 1024 * 1024;

/**
 * Default cap on the metrics port's connections. A scraper and the kubelet's probes use a few at a
 * time; the rest of the descriptors are the webhook's.
 */
export const DEFAULT_METRICS_MAX_CONNECTIONS = 64;

/** Default interval of the certificate files check that backs up file-change notifications. */
export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 10_000;

/** The audit line formats `--output-format` offers. */
export const OUTPUT_FORMATS = ['admissionreview', 'audit-event'] as const;

/** One of {@link OUTPUT_FORMATS}. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** How the serving certificate is obtained: `--tls-mode`. */
export const TLS_MODES = ['files', 'self-managed'] as const;

/** Kubernetes' default cluster DNS domain. */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

const HOUR_MS = 3_600_000;
/** Default CA life: 5 years (43,800 h), as kubeadm's and cert-manager's usual CAs; a new one every 4 years. */
export const DEFAULT_CA_VALIDITY_MS = 43_800 * HOUR_MS;
/** Default serving certificate life: 90 days, renewed after 60. */
export const DEFAULT_CERT_VALIDITY_MS = 2_160 * HOUR_MS;
/** Longest validity accepted: 100 years. It is only ever written into certificates, never into a timer. */
const MAX_VALIDITY_MS = 876_000 * HOUR_MS;
/** Shortest validity accepted: shorter would rotate faster than the API server picks up a new caBundle. */
export const MIN_VALIDITY_MS = 10_000;

const AUDIT_LOG = 'Audit log';
const AUDIT_CONTENT = 'What is recorded';
const SERVER = 'Webhook server';
const SELF_MANAGED = 'Self-managed TLS';
const LOGGING = 'Logging';

/** The flags that shape each record; shared by the server and `convert`. */
export const RECORD_FLAGS = {
  policyFile: textFlag({
    name: 'policy-file',
    placeholder: 'PATH',
    section: AUDIT_CONTENT,
    help:
      'audit.k8s.io/v1 Policy (YAML or JSON) choosing the level of each request: None writes nothing, ' +
      'Metadata drops object and oldObject, Request and RequestResponse keep them. Without it every ' +
      'request is recorded whole',
  }),
  outputFormat: choiceFlag({
    name: 'output-format',
    values: OUTPUT_FORMATS,
    default: 'admissionreview',
    section: AUDIT_CONTENT,
    help: 'admissionreview: the review as received (the 1.x line); audit-event: one audit.k8s.io/v1 Event per line',
  }),
  clusterName: textFlag({
    name: 'cluster-name',
    placeholder: 'NAME',
    section: AUDIT_CONTENT,
    help: 'Name stamped on every line: a top-level clusterName (admissionreview) or the cluster_name annotation (audit-event)',
  }),
  redactionKeyFile: textFlag({
    name: 'redaction-key-file',
    placeholder: 'PATH',
    section: AUDIT_CONTENT,
    help:
      'Key for the HMAC-SHA256 that stands in for each redacted Secret value, so equal values match ' +
      'across restarts and replicas (default: a random key per process)',
  }),
  disableSecretRedaction: booleanFlag({
    name: 'disable-secret-redaction',
    section: AUDIT_CONTENT,
    help: "Write Secrets' data and stringData values as received instead of redacting them",
  }),
  syntheticResponseStatus: booleanFlag({
    name: 'synthetic-response-status',
    section: AUDIT_CONTENT,
    help:
      'audit-event only: add responseStatus {code: 200} (201 for create), for consumers whose rules need ' +
      'one; the request may still fail after admission',
  }),
} as const;

/** The server's flags, keyed by the option each fills, in the order help lists them. */
export const SERVE_FLAGS = {
  loggerFilename: textFlag({
    name: 'logger-filename',
    placeholder: 'PATH',
    default: '/tmp/kube-audit-rest.log',
    section: AUDIT_LOG,
    help: 'File the audit lines go to',
  }),
  auditToStdLog: booleanFlag({
    name: 'audit-to-std-log',
    section: AUDIT_LOG,
    help: 'Write audit lines to stdout instead of the file; application logs stay on stderr',
  }),
  loggerMaxSizeBytes: integerFlag({
    name: 'logger-max-size',
    placeholder: 'MB',
    default: 500,
    min: 1,
    max: 1024 * 1024,
    scale: MEGABYTE,
    section: AUDIT_LOG,
    help: 'Rotate the file when it would pass this size, in MB of 1,048,576 bytes',
  }),
  loggerMaxBackups: integerFlag({
    name: 'logger-max-backups',
    placeholder: 'N',
    default: 1,
    min: 0,
    max: 100_000,
    section: AUDIT_LOG,
    help: 'Rotated files to keep; 0 keeps them all',
  }),
  loggerMaxAgeDays: integerFlag({
    name: 'logger-max-age',
    placeholder: 'DAYS',
    default: 0,
    min: 0,
    max: 100_000,
    section: AUDIT_LOG,
    help: 'Delete rotated files older than this many days (by the time in their name); 0 keeps any age',
  }),
  loggerCompress: booleanFlag({
    name: 'logger-compress',
    section: AUDIT_LOG,
    help: 'Gzip each rotated file to <name>.gz, in the background',
  }),
  fsync: choiceFlag({
    name: 'fsync',
    values: FSYNC_MODES,
    default: 'never',
    section: AUDIT_LOG,
    help:
      'never: a line is acknowledged once the kernel has it (survives a crash of kube-audit-rest, not of the ' +
      'node); always: once it is on stable storage, one fsync shared by the requests that arrive together',
  }),
  onWriteError: choiceFlag({
    name: 'on-write-error',
    values: ['allow', 'deny'] as const,
    default: 'allow',
    section: AUDIT_LOG,
    help:
      'What to answer when a line cannot be written: allow (counted in ' +
      'kube_audit_rest_unrecorded_requests_total) or deny (allowed: false; with failurePolicy: Fail no ' +
      'change goes ahead unrecorded)',
  }),
  ...RECORD_FLAGS,
  certFilename: textFlag({
    name: 'cert-filename',
    placeholder: 'PATH',
    default: '/etc/tls/tls.crt',
    section: SERVER,
    help: 'TLS certificate chain, PEM; reloaded when it changes',
  }),
  certKeyFilename: textFlag({
    name: 'cert-key-filename',
    placeholder: 'PATH',
    default: '/etc/tls/tls.key',
    section: SERVER,
    help: 'TLS private key, PEM',
  }),
  serverPort: integerFlag({
    name: 'server-port',
    placeholder: 'PORT',
    default: 9090,
    min: 0,
    max: 65535,
    section: SERVER,
    help: 'HTTPS port of POST /log-request',
  }),
  metricsPort: integerFlag({
    name: 'metrics-port',
    placeholder: 'PORT',
    default: 55555,
    min: 0,
    max: 65535,
    section: SERVER,
    help: 'HTTP port of /metrics, /healthz and /readyz',
  }),
  bindAddress: textFlag({
    name: 'bind-address',
    placeholder: 'ADDR',
    default: '0.0.0.0',
    section: SERVER,
    help: 'Address both ports listen on',
  }),
  maxRequestBytes: integerFlag({
    name: 'max-request-bytes',
    placeholder: 'BYTES',
    default: DEFAULT_MAX_REQUEST_BYTES,
    min: 1024,
    max: 1024 * MEGABYTE,
    section: SERVER,
    help: 'Largest request body accepted; larger ones get 413',
  }),
  requestTimeoutMs: durationFlag({
    name: 'request-timeout',
    default: DEFAULT_REQUEST_TIMEOUT_MS,
    section: SERVER,
    help: 'Deadline for receiving a request body, e.g. 8s',
  }),
  shutdownTimeoutMs: durationFlag({
    name: 'shutdown-timeout',
    default: DEFAULT_SHUTDOWN_TIMEOUT_MS,
    section: SERVER,
    help: 'Time to finish in-flight requests after SIGTERM',
  }),
  tlsReloadIntervalMs: durationFlag({
    name: 'tls-reload-interval',
    default: DEFAULT_TLS_RELOAD_INTERVAL_MS,
    section: SERVER,
    help: 'How often the certificate, client CA and path token files are checked for changes, besides change notifications',
  }),
  // Who may call the webhook (src/http/caller-auth.ts, src/tls/server.ts; docs/security.md).
  pathTokenFile: textFlag({
    name: 'path-token-file',
    placeholder: 'PATH',
    section: 'Who may call',
    help:
      'Answer only at POST /log-request/<token>. One token per line (16 to 512 of A-Z a-z 0-9 . _ ~ -), ' +
      "optionally followed by a cluster name stamped on that caller's lines instead of --cluster-name; " +
      'reloaded when it changes',
  }),
  clientCaFile: textFlag({
    name: 'client-ca-file',
    placeholder: 'PATH',
    section: 'Who may call',
    help: 'Require a client certificate signed by one of these CAs (PEM); reloaded with the certificate',
  }),
  // Connection caps (src/http/connection-cap.ts, src/http/ops-server.ts).
  maxConnections: {
    ...integerFlag({
      name: 'max-connections',
      placeholder: 'N',
      default: 0,
      min: 0,
      max: MAX_CONNECTIONS_FLAG,
      section: SERVER,
      help:
        'Most webhook connections open at once; at the cap the listener closes, and new connections are ' +
        'refused until fewer than 90% of it are open. 0: derived from the descriptor limit (ulimit -n), ' +
        'leaving room for the metrics port and a burst of new connections, at most 16384',
    }),
    shownDefault: 'derived',
  },
  metricsMaxConnections: integerFlag({
    name: 'metrics-max-connections',
    placeholder: 'N',
    default: DEFAULT_METRICS_MAX_CONNECTIONS,
    min: 1,
    max: MAX_CONNECTIONS_FLAG,
    section: SERVER,
    help: 'Most connections open at once on the metrics port; more are closed as they arrive',
  }),
  // Self-managed TLS: kube-audit-rest keeps its own CA and serving certificate in a Secret, and the
  // webhook configuration's caBundle current (src/self-managed/).
  tlsMode: choiceFlag({
    name: 'tls-mode',
    values: TLS_MODES,
    default: 'files',
    section: SELF_MANAGED,
    help:
      'files: serve --cert-filename and --cert-key-filename as given (cert-manager, a mounted Secret); ' +
      'self-managed: make a CA and serving certificate, keep them in --self-managed-secret, rotate them, ' +
      'write them to those two files and keep the caBundle of --webhook-configuration-name current',
  }),
  selfManagedSecret: textFlag({
    name: 'self-managed-secret',
    placeholder: 'NAMESPACE/NAME',
    section: SELF_MANAGED,
    help: 'The Secret holding the CA and serving certificate; created when absent. Required in self-managed mode',
  }),
  webhookConfigurationName: textFlag({
    name: 'webhook-configuration-name',
    placeholder: 'NAME',
    section: SELF_MANAGED,
    help: 'ValidatingWebhookConfiguration whose webhooks get the CA as caBundle (default: none is changed)',
  }),
  serviceName: textFlag({
    name: 'service-name',
    placeholder: 'NAME',
    section: SELF_MANAGED,
    help: 'Service the API server calls; the serving certificate gets its DNS names (with --service-namespace)',
  }),
  serviceNamespace: textFlag({
    name: 'service-namespace',
    placeholder: 'NAMESPACE',
    section: SELF_MANAGED,
    help: "The Service's namespace",
  }),
  clusterDomain: textFlag({
    name: 'cluster-domain',
    placeholder: 'DOMAIN',
    default: DEFAULT_CLUSTER_DOMAIN,
    section: SELF_MANAGED,
    help: "The cluster's DNS domain, for the Service's longest name",
  }),
  selfManagedExtraDns: textFlag({
    name: 'self-managed-extra-dns',
    placeholder: 'NAME[,NAME]',
    section: SELF_MANAGED,
    help: 'More DNS names for the serving certificate, e.g. the host of a webhook URL outside the cluster',
  }),
  selfManagedExtraIp: textFlag({
    name: 'self-managed-extra-ip',
    placeholder: 'IP[,IP]',
    section: SELF_MANAGED,
    help: 'IP addresses for the serving certificate, e.g. of a webhook URL outside the cluster',
  }),
  kubeconfig: textFlag({
    name: 'kubeconfig',
    placeholder: 'PATH',
    section: SELF_MANAGED,
    help: "Kubeconfig whose current context reaches the API server (default: the pod's ServiceAccount)",
  }),
  selfManagedCaValidityMs: durationFlag({
    name: 'self-managed-ca-validity',
    default: DEFAULT_CA_VALIDITY_MS,
    maxMs: MAX_VALIDITY_MS,
    section: SELF_MANAGED,
    help: 'Life of each CA; the next is made at 80% of it and signs from 90% on',
  }),
  selfManagedCertValidityMs: durationFlag({
    name: 'self-managed-cert-validity',
    default: DEFAULT_CERT_VALIDITY_MS,
    maxMs: MAX_VALIDITY_MS,
    section: SELF_MANAGED,
    help: 'Life of each serving certificate; renewed at two thirds of it',
  }),
  verbose: booleanFlag({
    name: 'verbosity',
    short: 'v',
    section: LOGGING,
    help: 'Readable debug logs instead of JSON at info level',
  }),
} as const;

/** Everything the server needs to start, resolved from flags with every default applied. */
export type Config = ValuesOf<typeof SERVE_FLAGS>;

/** The outcome of parsing argv: a config, a request for help, or an error naming the flag. */
export type ParseResult =
  | { kind: 'config'; config: Config }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

/** The `--help` text; kept as a golden file in test/golden/help.txt. */
export const HELP = renderHelp({
  usage: [
    'kube-audit-rest [OPTIONS]                    serve the webhook',
    'kube-audit-rest convert [OPTIONS] [FILE...]  admissionreview lines to Event lines',
    'kube-audit-rest webhook-config [OPTIONS]     a webhook configuration compiled from a policy',
    'kube-audit-rest forward [OPTIONS]            the audit log to Kafka or an audit webhook',
  ],
  about:
    'Writes every AdmissionReview the Kubernetes API server sends to POST /log-request as one JSON ' +
    'line, then answers "allowed". Flags take --flag=value or --flag value. Durations are Go ' +
    'durations: 500ms, 8s, 1m30s, 1h.',
  table: SERVE_FLAGS,
});

/** Checks what no single flag can: combinations. Throws FlagError naming the flags. */
function checkCombinations(config: Config): void {
  if (config.serverPort !== 0 && config.serverPort === config.metricsPort) {
    throw new FlagError(`--server-port and --metrics-port must differ (both ${config.serverPort})`);
  }
  if (config.syntheticResponseStatus && config.outputFormat !== 'audit-event') {
    throw new FlagError('--synthetic-response-status needs --output-format=audit-event');
  }
  if (config.auditToStdLog) {
    for (const [on, flag] of [
      [config.loggerMaxAgeDays > 0, 'logger-max-age'],
      [config.loggerCompress, 'logger-compress'],
      [config.fsync !== 'never', 'fsync'],
    ] as const) {
      if (on) throw new FlagError(`--${flag} applies to the log file and has no use with --audit-to-std-log`);
    }
  }
  if (config.disableSecretRedaction && config.redactionKeyFile !== undefined) {
    throw new FlagError('--redaction-key-file has no use with --disable-secret-redaction');
  }
  checkSelfManaged(config);
}

/** The self-managed flags: meaningless in files mode, checked together in self-managed mode. */
function checkSelfManaged(config: Config): void {
  if (config.tlsMode === 'files') {
    const given: [boolean, string][] = [
      [config.selfManagedSecret !== undefined, 'self-managed-secret'],
      [config.webhookConfigurationName !== undefined, 'webhook-configuration-name'],
      [config.serviceName !== undefined, 'service-name'],
      [config.serviceNamespace !== undefined, 'service-namespace'],
      [config.clusterDomain !== DEFAULT_CLUSTER_DOMAIN, 'cluster-domain'],
      [config.selfManagedExtraDns !== undefined, 'self-managed-extra-dns'],
      [config.selfManagedExtraIp !== undefined, 'self-managed-extra-ip'],
      [config.kubeconfig !== undefined, 'kubeconfig'],
      [config.selfManagedCaValidityMs !== DEFAULT_CA_VALIDITY_MS, 'self-managed-ca-validity'],
      [config.selfManagedCertValidityMs !== DEFAULT_CERT_VALIDITY_MS, 'self-managed-cert-validity'],
    ];
    for (const [on, flag] of given) if (on) throw new FlagError(`--${flag} needs --tls-mode=self-managed`);
    return;
  }
  for (const [ms, flag] of [
    [config.selfManagedCaValidityMs, 'self-managed-ca-validity'],
    [config.selfManagedCertValidityMs, 'self-managed-cert-validity'],
  ] as const) {
    if (ms < MIN_VALIDITY_MS)
      throw new FlagError(`--${flag} must be at least ${formatDuration(MIN_VALIDITY_MS)}`);
  }
  try {
    selfManagedSettings(config);
  } catch (err) {
    throw new FlagError((err as Error).message);
  }
}

/**
 * Parses the server's argv (without the runtime and script) into a {@link Config}. Unknown flags,
 * missing values, positional arguments, out-of-range numbers and impossible combinations give an
 * error that names the flag.
 */
export function parseArgs(argv: readonly string[]): ParseResult {
  const parsed = parseFlags(SERVE_FLAGS, argv);
  if (parsed.kind !== 'values') return parsed;
  try {
    checkCombinations(parsed.values);
  } catch (err) {
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
  return { kind: 'config', config: Object.freeze({ ...parsed.values }) };
}
