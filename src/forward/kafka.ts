/**
 * @module Kafka as a forwarding destination: an idempotent producer with acks=all, TLS and SASL, one batch in flight.
 *
 * The client is `@platformatic/kafka` (pure JavaScript, so it runs on Bun; kafkajs is in
 * maintenance mode and Confluent's native client does not load in Bun). Ordering: the forwarder
 * sends one batch at a time and waits for its acknowledgement, and the idempotent producer keeps a
 * single request in flight per connection with sequence numbers, so within a partition records
 * land in file order and a retry inside the client is deduplicated by the broker. Every event of
 * a cluster shares its key (`key: 'cluster'`, the default), so one partition holds them all, in
 * file order; with `key: 'object'` order holds per object.
 */

import { readFileSync } from 'node:fs';
import type { SASLMechanismValue } from '@platformatic/kafka';
import { ProduceAcks, Producer, stringSerializer } from '@platformatic/kafka';
import type { Logger } from '../support/log.ts';
import { silentLogger } from '../support/log.ts';
import type { EventMeta } from './event-meta.ts';
import type { BatchLimits, ForwardEvent, ForwardSink, RetryPolicy } from './sink.ts';
import { DeliveryError, validateDelivery } from './sink.ts';

/** Record compression codecs the client implements (zstd needs a runtime with zlib's zstd, which Bun has). */
export const KAFKA_COMPRESSIONS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;

/** One of {@link KAFKA_COMPRESSIONS}. */
export type KafkaCompression = (typeof KAFKA_COMPRESSIONS)[number];

/** What a record's key is: the cluster's name (one partition per cluster, file order kept), or `namespace/name`. */
export type KafkaKey = 'cluster' | 'object';

/** SASL mechanisms offered. */
export const KAFKA_SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;

/** Default batch: many small records per request, and a short wait so lag stays low. */
export const DEFAULT_KAFKA_BATCH: BatchLimits = {
  maxEvents: 1000,
  // Below the broker's default message.max.bytes (1,048,588) even before compression.
  maxBytes: 1024 * 1024 - 1024,
  maxWaitMs: 100,
};

/** Default backoff: brokers come back within seconds (leader election); cap at 30 s so recovery is quick. */
export const DEFAULT_KAFKA_RETRY: RetryPolicy = {
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
  factor: 2,
  jitter: 0.2,
};

/** Default time the broker has to acknowledge a request, and to connect. */
export const DEFAULT_KAFKA_TIMEOUT_MS = 30_000;

/**
 * Attempts inside the client before a send fails to the forwarder (whose own retries never end).
 * The client's retries reuse the idempotent sequence numbers, so the broker drops their duplicates.
 */
const CLIENT_RETRIES = 3;

/** Broker error ids that refuse the records themselves: sending them again cannot succeed. */
const PERMANENT_ERRORS = ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE'];

/** Options for {@link createKafkaSink}, one per `--kafka-*` flag. */
export type KafkaSinkOptions = {
  /** Bootstrap brokers, `host:port` (`--kafka-brokers`). Required, at least one. */
  brokers: string[];
  /** The topic (`--kafka-topic`). Required; it must exist (topics are not created). */
  topic: string;
  /** Record key (`--kafka-key`). Default `'cluster'`. */
  key?: KafkaKey;
  /** The cluster name used as the key when an event has no `cluster_name` annotation (`--cluster-name`). Default "". */
  clusterName?: string;
  /** Record compression (`--kafka-compression`). Default `'gzip'`: every consumer library reads it. */
  compression?: KafkaCompression;
  /** Idempotent producer (`--kafka-idempotent`). Default true; needs IDEMPOTENT_WRITE on the cluster when ACLs are on. */
  idempotent?: boolean;
  /** Client id the broker sees (`--kafka-client-id`). Default `kube-audit-rest`. */
  clientId?: string;
  /** TLS to the brokers (`--kafka-tls`). Default false; any of the files below turns it on. */
  tls?: boolean;
  /** PEM CA bundle to verify brokers (`--kafka-tls-ca-file`). Default: the system's CAs. */
  tlsCaFile?: string;
  /** PEM client certificate (`--kafka-tls-cert-file`); needs `tlsKeyFile`. */
  tlsCertFile?: string;
  /** PEM client key (`--kafka-tls-key-file`); needs `tlsCertFile`. */
  tlsKeyFile?: string;
  /** Name to verify the brokers' certificates against (`--kafka-tls-server-name`). Default: the broker host. */
  tlsServerName?: string;
  /** Do not verify the brokers' certificates (`--kafka-tls-insecure-skip-verify`). Default false. */
  tlsInsecureSkipVerify?: boolean;
  /** SASL mechanism (`--kafka-sasl-mechanism`). Default: no SASL. */
  saslMechanism?: (typeof KAFKA_SASL_MECHANISMS)[number];
  /** SASL user (`--kafka-sasl-username`); required with a mechanism. */
  saslUsername?: string;
  /** File holding the SASL password (`--kafka-sasl-password-file`), read at every (re)connection so it can rotate. */
  saslPasswordFile?: string;
  /** Request and connection timeout, ms (`--kafka-timeout`). Default 30 s. */
  requestTimeoutMs?: number;
  /** Batch limits (`--kafka-batch-max-size`, `--kafka-batch-max-bytes`, `--kafka-batch-max-wait`). Default 1000 events, ~1 MiB, 100 ms. */
  batch?: Partial<BatchLimits>;
  /** Backoff between attempts (`--kafka-retry-backoff` sets the initial one). Default 1 s doubling to 30 s, ±20%. */
  retry?: Partial<RetryPolicy>;
  /** Where connection problems are logged. Default: silent. */
  log?: Logger;
};

/** Parses one `host:port`; throws naming the flag. */
function parseBroker(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new RangeError(`kafka: brokers entry must be host:port, got ${JSON.stringify(text)}`);
  }
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

function readPem(option: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`kafka: cannot read ${option} ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Returns the record key for an event; see {@link KafkaKey}. */
export function kafkaKeyOf(mode: KafkaKey, meta: EventMeta, clusterName: string): string {
  if (mode === 'cluster') return meta.cluster ?? clusterName;
  if (!meta.name) return meta.namespace ?? '';
  return meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;
}

/** Whether a client error means the records themselves are refused. */
function isPermanent(error: unknown): boolean {
  const seen = new Set<unknown>();
  const stack: unknown[] = [error];
  while (stack.length > 0) {
    const e = stack.pop();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const record = e as { apiId?: unknown; errors?: unknown; cause?: unknown };
    if (typeof record.apiId === 'string' && PERMANENT_ERRORS.includes(record.apiId)) return true;
    if (Array.isArray(record.errors)) stack.push(...record.errors);
    stack.push(record.cause);
  }
  return false;
}

/**
 * Creates the Kafka sink. Validates every option (throwing with its name), reads the TLS files
 * now (so a wrong path fails at start); connects lazily on the first send.
 */
export function createKafkaSink(options: KafkaSinkOptions): ForwardSink {
  if (!Array.isArray(options.brokers) || options.brokers.length === 0) {
    throw new RangeError('kafka: brokers (--kafka-brokers) must list at least one host:port');
  }
  const brokers = options.brokers.map(parseBroker);
  if (typeof options.topic !== 'string' || !/^[a-zA-Z0-9._-]{1,249}$/.test(options.topic)) {
    throw new RangeError(
      `kafka: topic (--kafka-topic) must be 1-249 characters of [a-zA-Z0-9._-], got ${JSON.stringify(options.topic)}`,
    );
  }
  const key = options.key ?? 'cluster';
  if (key !== 'cluster' && key !== 'object') {
    throw new RangeError(`kafka: key (--kafka-key) must be 'cluster' or 'object', got ${String(key)}`);
  }
  const compression = options.compression ?? 'gzip';
  if (!KAFKA_COMPRESSIONS.includes(compression)) {
    throw new RangeError(
      `kafka: compression (--kafka-compression) must be one of ${KAFKA_COMPRESSIONS.join(', ')}, got ${String(compression)}`,
    );
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_KAFKA_TIMEOUT_MS;
  if (!Number.isFinite(requestTimeoutMs) || requestTimeoutMs <= 0) {
    throw new RangeError(
      `kafka: requestTimeoutMs (--kafka-timeout) must be positive, got ${requestTimeoutMs}`,
    );
  }
  const batch: BatchLimits = { ...DEFAULT_KAFKA_BATCH, ...options.batch };
  const merged = { ...DEFAULT_KAFKA_RETRY, ...options.retry };
  // A larger initial backoff alone raises the cap with it rather than being refused.
  const retry: RetryPolicy =
    options.retry?.maxBackoffMs === undefined
      ? { ...merged, maxBackoffMs: Math.max(merged.maxBackoffMs, merged.initialBackoffMs) }
      : merged;
  validateDelivery('kafka', batch, retry);
  if ((options.tlsCertFile === undefined) !== (options.tlsKeyFile === undefined)) {
    throw new RangeError(
      'kafka: tlsCertFile and tlsKeyFile (--kafka-tls-cert-file, --kafka-tls-key-file) go together',
    );
  }
  const useTls =
    options.tls === true ||
    options.tlsCaFile !== undefined ||
    options.tlsCertFile !== undefined ||
    options.tlsInsecureSkipVerify === true;
  const tls = useTls
    ? {
        ...(options.tlsCaFile ? { ca: readPem('tlsCaFile (--kafka-tls-ca-file)', options.tlsCaFile) } : {}),
        ...(options.tlsCertFile
          ? { cert: readPem('tlsCertFile (--kafka-tls-cert-file)', options.tlsCertFile) }
          : {}),
        ...(options.tlsKeyFile
          ? { key: readPem('tlsKeyFile (--kafka-tls-key-file)', options.tlsKeyFile) }
          : {}),
        ...(options.tlsServerName ? { servername: options.tlsServerName } : {}),
        rejectUnauthorized: options.tlsInsecureSkipVerify !== true,
      }
    : undefined;
  let sasl: { mechanism: SASLMechanismValue; username: string; password: () => string } | undefined;
  if (options.saslMechanism !== undefined) {
    if (!KAFKA_SASL_MECHANISMS.includes(options.saslMechanism)) {
      throw new RangeError(
        `kafka: saslMechanism (--kafka-sasl-mechanism) must be one of ${KAFKA_SASL_MECHANISMS.join(', ')}, got ${String(options.saslMechanism)}`,
      );
    }
    if (!options.saslUsername)
      throw new RangeError('kafka: saslUsername (--kafka-sasl-username) is required with SASL');
    if (!options.saslPasswordFile) {
      throw new RangeError('kafka: saslPasswordFile (--kafka-sasl-password-file) is required with SASL');
    }
    const passwordFile = options.saslPasswordFile;
    readPem('saslPasswordFile (--kafka-sasl-password-file)', passwordFile); // fail now, not at the first connection
    sasl = {
      mechanism: options.saslMechanism,
      username: options.saslUsername,
      // Read at each authentication, so a rotated Secret is picked up; a trailing newline is not part of it.
      password: () => readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, ''),
    };
  }
  const idempotent = options.idempotent ?? true;
  const clusterName = options.clusterName ?? '';
  const log = (options.log ?? silentLogger).child('forward-kafka');
  const producer = new Producer<Buffer, Buffer, string, string>({
    clientId: options.clientId ?? 'kube-audit-rest',
    bootstrapBrokers: brokers,
    idempotent,
    acks: ProduceAcks.ALL,
    compression,
    timeout: requestTimeoutMs,
    connectTimeout: requestTimeoutMs,
    requestTimeout: requestTimeoutMs,
    retries: CLIENT_RETRIES,
    retryDelay: Math.min(retry.initialBackoffMs, 1000),
    autocreateTopics: false,
    serializers: { headerKey: stringSerializer, headerValue: stringSerializer },
    ...(tls ? { tls } : {}),
    ...(sasl ? { sasl } : {}),
  });
  const topic = options.topic;

  async function send(events: readonly ForwardEvent[], signal: AbortSignal): Promise<void> {
    const messages = events.map(({ bytes, meta }) => ({
      topic,
      key: Buffer.from(kafkaKeyOf(key, meta, clusterName)),
      value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      ...(meta.auditID !== undefined ? { headers: { auditID: meta.auditID } } : {}),
      ...(meta.receivedAtMs !== undefined ? { timestamp: BigInt(meta.receivedAtMs) } : {}),
    }));
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () =>
        reject(new DeliveryError('kafka: send aborted (forwarder stopping)', { permanent: false }));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      await Promise.race([producer.send({ messages }), aborted]);
    } catch (error) {
      if (error instanceof DeliveryError) throw error;
      const permanent = isPermanent(error);
      if (!permanent) log.debug('kafka send failed', { error });
      throw new DeliveryError(`kafka: send to topic ${topic} failed: ${(error as Error).message}`, {
        permanent,
        cause: error,
      });
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  async function close(): Promise<void> {
    await producer.close(true);
  }

  return { name: 'kafka', batch, retry, send, close };
}
