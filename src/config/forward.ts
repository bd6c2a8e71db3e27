/**
 * @module The flags of `kube-audit-rest forward`, in one table, parsed and checked once into a
 * readonly {@link ForwardConfig}.
 *
 * The destination is chosen by which flag is set: `--kafka-brokers` for Kafka,
 * `--audit-webhook-config-file` for a receiver of the API server's audit webhook format. The
 * `--audit-webhook-*` flags mean what the API server's flags of the same names mean. Defaults of
 * the destinations come from their modules, so the help cannot disagree with what runs.
 */
import {
  DEFAULT_BUFFER_SIZE as WEBHOOK_BUFFER_SIZE,
  DEFAULT_INITIAL_BACKOFF_MS as WEBHOOK_INITIAL_BACKOFF_MS,
  DEFAULT_MAX_BACKOFF_MS as WEBHOOK_MAX_BACKOFF_MS,
  DEFAULT_MAX_BATCH_BYTES as WEBHOOK_MAX_BATCH_BYTES,
  DEFAULT_MAX_SIZE as WEBHOOK_MAX_SIZE,
  DEFAULT_MAX_WAIT_MS as WEBHOOK_MAX_WAIT_MS,
  DEFAULT_THROTTLE_BURST as WEBHOOK_THROTTLE_BURST,
  DEFAULT_THROTTLE_QPS as WEBHOOK_THROTTLE_QPS,
  DEFAULT_REQUEST_TIMEOUT_MS as WEBHOOK_TIMEOUT_MS,
} from '../forward/audit-webhook.ts';
import { DEFAULT_POLL_INTERVAL_MS } from '../forward/forwarder.ts';
import {
  DEFAULT_KAFKA_BATCH,
  DEFAULT_KAFKA_RETRY,
  DEFAULT_KAFKA_TIMEOUT_MS,
  KAFKA_COMPRESSIONS,
  KAFKA_SASL_MECHANISMS,
} from '../forward/kafka.ts';
import {
  booleanFlag,
  choiceFlag,
  durationFlag,
  FlagError,
  integerFlag,
  numberFlag,
  parseFlags,
  renderHelp,
  textFlag,
  type ValuesOf,
} from './flags.ts';
import { RECORD_FLAGS } from './serve.ts';

/**
 * Default metrics port: the forwarder runs as a sidecar in the webhook's pod, sharing its network,
 * where the webhook already listens on 55555.
 */
export const DEFAULT_FORWARD_METRICS_PORT = 55556;

/**
 * Default time to forward what is left after SIGTERM. As a native sidecar the forwarder is stopped
 * after the webhook has exited, so the file no longer grows; 10 s covers several hundred thousand
 * events to a reachable destination and fits in Kubernetes' default 30 s grace period after the
 * webhook's own stop (a 5 s preStop and, usually, well under its 15 s shutdown timeout).
 */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** Largest batch either destination may be asked for: far above what a broker or receiver takes in one request. */
const MAX_BATCH_EVENTS = 1_000_000;
/** Largest batch in bytes: 1 GiB, far above any broker's or receiver's request limit. */
const MAX_BATCH_BYTES = 1024 * 1024 * 1024;

const LOG = 'Audit log';
const FORWARDING = 'Forwarding';
const KAFKA = 'Kafka (--kafka-brokers)';
const KAFKA_SECURITY = 'Kafka TLS and SASL';
const WEBHOOK = 'Audit webhook (--audit-webhook-config-file)';
const OPS = 'Operations';

/** `forward`'s record flags: those of the server but the format, which is always audit-event. */
const FORWARD_RECORD_FLAGS = (({ outputFormat: _, ...rest }) => rest)(RECORD_FLAGS);

/** The flags of `kube-audit-rest forward`, keyed by the option each fills, in the order help lists them. */
export const FORWARD_FLAGS = {
  loggerFilename: textFlag({
    name: 'logger-filename',
    placeholder: 'PATH',
    default: '/tmp/kube-audit-rest.log',
    section: LOG,
    help: 'The audit log the webhook writes (its --logger-filename); its rotated backups, .gz ones included, are read too',
  }),
  checkpointFile: textFlag({
    name: 'checkpoint-file',
    placeholder: 'PATH',
    section: LOG,
    help:
      'Where the position after the last delivered line is kept, on the same volume as the log so ' +
      'both survive together (default: <logger-filename>.checkpoint)',
  }),
  startAt: choiceFlag({
    name: 'start-at',
    values: ['oldest', 'end'] as const,
    default: 'oldest',
    section: LOG,
    help: 'Without a checkpoint: forward every line on disk (oldest), or only lines written from now (end)',
  }),
  pollIntervalMs: durationFlag({
    name: 'poll-interval',
    default: DEFAULT_POLL_INTERVAL_MS,
    section: LOG,
    help: 'How often the log is looked at when everything has been forwarded',
  }),
  drainTimeoutMs: durationFlag({
    name: 'drain-timeout',
    default: DEFAULT_DRAIN_TIMEOUT_MS,
    allowZero: true,
    section: FORWARDING,
    help:
      'After SIGTERM, keep forwarding until everything in the log is delivered, for at most this ' +
      'long; 0 stops after the batch in flight. Exit status 1 if lines were left',
  }),
  ...FORWARD_RECORD_FLAGS,
  kafkaBrokers: textFlag({
    name: 'kafka-brokers',
    placeholder: 'HOST:PORT,...',
    section: KAFKA,
    help: 'Bootstrap brokers; forwards to Kafka',
  }),
  kafkaTopic: textFlag({
    name: 'kafka-topic',
    placeholder: 'TOPIC',
    section: KAFKA,
    help: 'Topic the events go to (required with --kafka-brokers; it must exist)',
  }),
  kafkaKey: choiceFlag({
    name: 'kafka-key',
    values: ['cluster', 'object'] as const,
    default: 'cluster',
    section: KAFKA,
    help:
      "Record key: the event's cluster (its cluster_name, else --cluster-name; one partition per " +
      'cluster keeps file order) or namespace/name (order per object)',
  }),
  kafkaCompression: choiceFlag({
    name: 'kafka-compression',
    values: KAFKA_COMPRESSIONS,
    default: 'gzip',
    section: KAFKA,
    help: 'Record batch compression',
  }),
  kafkaIdempotent: booleanFlag({
    name: 'kafka-idempotent',
    default: true,
    section: KAFKA,
    help:
      'Idempotent producer, so the broker drops resends it recognises; needs the IDEMPOTENT_WRITE ' +
      'permission where ACLs are on',
  }),
  kafkaClientId: textFlag({
    name: 'kafka-client-id',
    placeholder: 'ID',
    default: 'kube-audit-rest',
    section: KAFKA,
    help: 'Client id the brokers see',
  }),
  kafkaTimeoutMs: durationFlag({
    name: 'kafka-timeout',
    default: DEFAULT_KAFKA_TIMEOUT_MS,
    section: KAFKA,
    help: 'Time to connect, and for the brokers to acknowledge a batch',
  }),
  kafkaBatchMaxSize: integerFlag({
    name: 'kafka-batch-max-size',
    placeholder: 'EVENTS',
    default: DEFAULT_KAFKA_BATCH.maxEvents,
    min: 1,
    max: MAX_BATCH_EVENTS,
    section: KAFKA,
    help: 'Most events per produce request',
  }),
  kafkaBatchMaxBytes: integerFlag({
    name: 'kafka-batch-max-bytes',
    placeholder: 'BYTES',
    default: DEFAULT_KAFKA_BATCH.maxBytes,
    min: 1,
    max: MAX_BATCH_BYTES,
    section: KAFKA,
    help: "A batch closes at this many bytes of events; keep it below the broker's message.max.bytes",
  }),
  kafkaBatchMaxWaitMs: durationFlag({
    name: 'kafka-batch-max-wait',
    default: DEFAULT_KAFKA_BATCH.maxWaitMs,
    allowZero: true,
    section: KAFKA,
    help: 'Longest wait for a batch to fill while lines keep coming',
  }),
  kafkaRetryBackoffMs: durationFlag({
    name: 'kafka-retry-backoff',
    default: DEFAULT_KAFKA_RETRY.initialBackoffMs,
    section: KAFKA,
    help: `First wait after a failed batch, doubling up to ${DEFAULT_KAFKA_RETRY.maxBackoffMs / 1000}s; retries never end`,
  }),
  kafkaTls: booleanFlag({
    name: 'kafka-tls',
    section: KAFKA_SECURITY,
    help: "TLS to the brokers, verified against the system's CAs (any --kafka-tls-* file turns it on too)",
  }),
  kafkaTlsCaFile: textFlag({
    name: 'kafka-tls-ca-file',
    placeholder: 'PATH',
    section: KAFKA_SECURITY,
    help: "PEM CA bundle the brokers' certificates are verified against",
  }),
  kafkaTlsCertFile: textFlag({
    name: 'kafka-tls-cert-file',
    placeholder: 'PATH',
    section: KAFKA_SECURITY,
    help: 'PEM client certificate, for mutual TLS (with --kafka-tls-key-file)',
  }),
  kafkaTlsKeyFile: textFlag({
    name: 'kafka-tls-key-file',
    placeholder: 'PATH',
    section: KAFKA_SECURITY,
    help: 'PEM client key',
  }),
  kafkaTlsServerName: textFlag({
    name: 'kafka-tls-server-name',
    placeholder: 'NAME',
    section: KAFKA_SECURITY,
    help: "Name the brokers' certificates are checked against (default: each broker's host)",
  }),
  kafkaTlsInsecureSkipVerify: booleanFlag({
    name: 'kafka-tls-insecure-skip-verify',
    section: KAFKA_SECURITY,
    help: "Do not verify the brokers' certificates (tests only)",
  }),
  kafkaSaslMechanism: choiceFlag({
    name: 'kafka-sasl-mechanism',
    values: ['none', ...KAFKA_SASL_MECHANISMS] as const,
    default: 'none',
    section: KAFKA_SECURITY,
    help: 'SASL authentication (with --kafka-sasl-username and --kafka-sasl-password-file)',
  }),
  kafkaSaslUsername: textFlag({
    name: 'kafka-sasl-username',
    placeholder: 'NAME',
    section: KAFKA_SECURITY,
    help: 'SASL user',
  }),
  kafkaSaslPasswordFile: textFlag({
    name: 'kafka-sasl-password-file',
    placeholder: 'PATH',
    section: KAFKA_SECURITY,
    help: 'File holding the SASL password, read again at each connection so a rotated Secret is used',
  }),
  auditWebhookConfigFile: textFlag({
    name: 'audit-webhook-config-file',
    placeholder: 'PATH',
    section: WEBHOOK,
    help:
      "kubeconfig naming the receiver, as the API server's flag of this name takes it; forwards " +
      'EventList batches to it',
  }),
  auditWebhookBatchBufferSize: integerFlag({
    name: 'audit-webhook-batch-buffer-size',
    placeholder: 'EVENTS',
    default: WEBHOOK_BUFFER_SIZE,
    min: 1,
    max: MAX_BATCH_EVENTS,
    section: WEBHOOK,
    help: "Accepted for the API server's sake; only one batch is held at a time, so it only has to be at least the batch size",
  }),
  auditWebhookBatchMaxSize: integerFlag({
    name: 'audit-webhook-batch-max-size',
    placeholder: 'EVENTS',
    default: WEBHOOK_MAX_SIZE,
    min: 1,
    max: MAX_BATCH_EVENTS,
    section: WEBHOOK,
    help: 'Most events per request',
  }),
  auditWebhookBatchMaxBytes: integerFlag({
    name: 'audit-webhook-batch-max-bytes',
    placeholder: 'BYTES',
    default: WEBHOOK_MAX_BATCH_BYTES,
    min: 1,
    max: MAX_BATCH_BYTES,
    section: WEBHOOK,
    help: 'A batch closes at this many bytes of events (a single larger event goes alone)',
  }),
  auditWebhookBatchMaxWaitMs: durationFlag({
    name: 'audit-webhook-batch-max-wait',
    default: WEBHOOK_MAX_WAIT_MS,
    allowZero: true,
    section: WEBHOOK,
    help: 'Longest wait for a batch to fill while lines keep coming',
  }),
  auditWebhookBatchThrottleEnable: booleanFlag({
    name: 'audit-webhook-batch-throttle-enable',
    default: true,
    section: WEBHOOK,
    help: 'Limit the request rate',
  }),
  auditWebhookBatchThrottleQps: numberFlag({
    name: 'audit-webhook-batch-throttle-qps',
    placeholder: 'QPS',
    default: WEBHOOK_THROTTLE_QPS,
    min: 0.001,
    max: 1_000_000,
    section: WEBHOOK,
    help: 'Requests per second when throttled',
  }),
  auditWebhookBatchThrottleBurst: integerFlag({
    name: 'audit-webhook-batch-throttle-burst',
    placeholder: 'N',
    default: WEBHOOK_THROTTLE_BURST,
    min: 1,
    max: 1_000_000,
    section: WEBHOOK,
    help: 'Requests allowed at once after a quiet spell',
  }),
  auditWebhookInitialBackoffMs: durationFlag({
    name: 'audit-webhook-initial-backoff',
    default: WEBHOOK_INITIAL_BACKOFF_MS,
    section: WEBHOOK,
    help: 'First wait after a failed request, growing 1.5x per attempt; retries never end',
  }),
  auditWebhookMaxBackoffMs: durationFlag({
    name: 'audit-webhook-max-backoff',
    default: WEBHOOK_MAX_BACKOFF_MS,
    section: WEBHOOK,
    help: 'Longest wait between attempts (raised to the initial backoff when below it)',
  }),
  auditWebhookTimeoutMs: durationFlag({
    name: 'audit-webhook-timeout',
    default: WEBHOOK_TIMEOUT_MS,
    section: WEBHOOK,
    help: 'Time for one request, from sending to the answer',
  }),
  metricsPort: integerFlag({
    name: 'metrics-port',
    placeholder: 'PORT',
    default: DEFAULT_FORWARD_METRICS_PORT,
    min: 0,
    max: 65535,
    section: OPS,
    help: 'HTTP port of /metrics, /healthz and /readyz (the webhook in the same pod uses 55555)',
  }),
  bindAddress: textFlag({
    name: 'bind-address',
    placeholder: 'ADDR',
    default: '0.0.0.0',
    section: OPS,
    help: 'Address the metrics port listens on',
  }),
  verbose: booleanFlag({
    name: 'verbosity',
    short: 'v',
    section: OPS,
    help: 'Readable debug logs instead of JSON at info level',
  }),
} as const;

/** Where the events go. */
export type Destination = 'kafka' | 'audit-webhook';

/** Everything `forward` needs, with every default applied and the destination resolved. */
export type ForwardConfig = Omit<ValuesOf<typeof FORWARD_FLAGS>, 'checkpointFile'> & {
  /** `--checkpoint-file`, or `<logger-filename>.checkpoint`. */
  readonly checkpointFile: string;
  /** Which destination flag was given. */
  readonly destination: Destination;
  /** `--kafka-brokers` split at commas (empty for the audit webhook). */
  readonly kafkaBrokerList: readonly string[];
};

/** The outcome of parsing `forward`'s argv. */
export type ForwardParse =
  | { kind: 'config'; config: ForwardConfig }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

/** `forward --help`; kept as a golden file in test/golden/help-forward.txt. */
export const FORWARD_HELP = renderHelp({
  usage: [
    'kube-audit-rest forward --kafka-brokers=HOST:PORT,... --kafka-topic=TOPIC [OPTIONS]',
    'kube-audit-rest forward --audit-webhook-config-file=KUBECONFIG [OPTIONS]',
  ],
  about:
    "Sends the audit log the webhook writes to Kafka, or to a receiver of the API server's audit " +
    'webhook format (EventList batches), at least once and in file order. The file is the buffer: ' +
    'while the destination is down nothing is read and nothing lost, and a checkpoint written after ' +
    'each acknowledged batch says where to resume. Event lines are sent as they are; admissionreview ' +
    'lines become Events as `convert` makes them (the policy applies again, a line written at ' +
    "Metadata stays Metadata, a line's own clusterName wins over --cluster-name). On SIGTERM it " +
    'forwards what is left for up to --drain-timeout, then exits. Exit status: 0 stopped with ' +
    'everything forwarded (or --drain-timeout=0), 1 forwarding failed or lines were left after the ' +
    'drain, 2 nothing could start (bad flags, an unusable policy, kubeconfig, file or port).',
  table: FORWARD_FLAGS,
});

/** Flags that only mean something with Kafka, or only with an audit webhook, when given with the other. */
const KAFKA_ONLY = [
  'kafkaTopic',
  'kafkaTlsCaFile',
  'kafkaTlsCertFile',
  'kafkaTlsKeyFile',
  'kafkaTlsServerName',
  'kafkaSaslUsername',
  'kafkaSaslPasswordFile',
] as const;

/** Checks what no single flag can: the destination, and flags that need another. Throws FlagError. */
function resolve(values: ValuesOf<typeof FORWARD_FLAGS>): ForwardConfig {
  const kafka = values.kafkaBrokers !== undefined;
  const webhook = values.auditWebhookConfigFile !== undefined;
  if (kafka === webhook) {
    throw new FlagError(
      kafka
        ? 'choose one destination: --kafka-brokers and --audit-webhook-config-file were both given'
        : 'a destination is required: --kafka-brokers (with --kafka-topic) or --audit-webhook-config-file',
    );
  }
  const brokers = (values.kafkaBrokers ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  if (kafka) {
    if (brokers.length === 0) throw new FlagError('--kafka-brokers must list at least one HOST:PORT');
    if (values.kafkaTopic === undefined)
      throw new FlagError('--kafka-topic is required with --kafka-brokers');
    if (values.kafkaSaslMechanism !== 'none') {
      if (values.kafkaSaslUsername === undefined || values.kafkaSaslPasswordFile === undefined) {
        throw new FlagError(
          `--kafka-sasl-mechanism=${values.kafkaSaslMechanism} needs --kafka-sasl-username and --kafka-sasl-password-file`,
        );
      }
    }
    if ((values.kafkaTlsCertFile === undefined) !== (values.kafkaTlsKeyFile === undefined)) {
      throw new FlagError('--kafka-tls-cert-file and --kafka-tls-key-file go together');
    }
  } else {
    const stray = KAFKA_ONLY.find((k) => values[k] !== undefined);
    if (stray !== undefined) {
      throw new FlagError(`--${FORWARD_FLAGS[stray].name} needs --kafka-brokers`);
    }
    if (values.auditWebhookBatchMaxSize > values.auditWebhookBatchBufferSize) {
      throw new FlagError('--audit-webhook-batch-max-size must not exceed --audit-webhook-batch-buffer-size');
    }
  }
  if (values.disableSecretRedaction && values.redactionKeyFile !== undefined) {
    throw new FlagError('--redaction-key-file has no use with --disable-secret-redaction');
  }
  const checkpointFile = values.checkpointFile ?? `${values.loggerFilename}.checkpoint`;
  if (checkpointFile === values.loggerFilename) {
    throw new FlagError('--checkpoint-file must not be the audit log itself');
  }
  return {
    ...values,
    checkpointFile,
    destination: kafka ? 'kafka' : 'audit-webhook',
    kafkaBrokerList: brokers,
  };
}

/**
 * Parses `forward`'s argv (after the word `forward`) into a {@link ForwardConfig}. Unknown flags,
 * missing values, positional arguments, out-of-range numbers and impossible combinations give an
 * error that names the flag.
 */
export function parseForwardArgs(argv: readonly string[]): ForwardParse {
  const parsed = parseFlags(FORWARD_FLAGS, argv);
  if (parsed.kind !== 'values') return parsed;
  try {
    return { kind: 'config', config: Object.freeze(resolve(parsed.values)) };
  } catch (err) {
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
}
