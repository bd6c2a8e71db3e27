/**
 * @module A real single-node Kafka broker (KRaft) for tests: started from Maven Central jars under Java 17, killed and restarted at will.
 *
 * ```ts
 * const kafka = await startKafka();          // fetches jars into .cache/kafka on first use (about 45 jars)
 * await kafka.createTopic('audit', 1);
 * // produce to kafka.bootstrap ('127.0.0.1:<port>')
 * await kafka.kill();  await kafka.restart(); // SIGKILL, then the same ports and data again
 * await kafka.stop();                         // always, in afterAll
 * ```
 *
 * The broker listens on 127.0.0.1 only, on two free ports (three with `saslSsl`: TLS with SASL
 * PLAIN and SCRAM users), with its data in a temporary folder removed by `stop()`. Its heap is
 * held to 512 MiB. Readiness is a real metadata request that lists the broker, polled until a
 * deadline.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Admin, Consumer } from '@platformatic/kafka';
import type { Subprocess } from 'bun';
import { freePort } from '../../test/helpers/server-process.ts';
import { runCommand } from './command.ts';

/** The script that fetches the broker's jars (and prints their folder). */
const FETCH_SCRIPT = resolve(import.meta.dir, '../kafka/fetch.sh');

/** Heap for the broker: plenty for a test topic, small beside the other processes on a 2-core machine. */
const BROKER_HEAP = '-Xmx512m';

/** How long a (re)start may take to answer metadata: a cold JVM on a busy 2-core machine. */
const READY_DEADLINE_MS = 90_000;

/** How long one run of Kafka's storage tool may take: a cold JVM on a busy machine. */
const STORAGE_TOOL_TIMEOUT_MS = 60_000;

/** How long the jar fetch may take: minutes on a cold Maven cache. */
const FETCH_DEADLINE_MS = 600_000;

/** Between readiness probes. */
const PROBE_INTERVAL_MS = 250;

/** A running broker. */
export type KafkaBroker = {
  /** `127.0.0.1:<port>`: the bootstrap address for clients. */
  readonly bootstrap: string;
  /** The client listener's port. */
  readonly port: number;
  /** `127.0.0.1:<port>` of the SASL_SSL listener, when one was asked for. */
  readonly saslSslBootstrap: string | undefined;
  /** The broker's process id, while it runs. */
  readonly pid: number | undefined;
  /** Creates a topic with `partitions` partitions (replication 1). */
  createTopic(name: string, partitions?: number): Promise<void>;
  /** Kills the broker with SIGKILL and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts the broker again on the same ports and data; resolves when it is ready. */
  restart(): Promise<void>;
  /** Stops the broker (SIGKILL if it is running) and removes its data. Safe to call twice. */
  stop(): Promise<void>;
  /** The broker's log so far (stdout and stderr), for failure messages. */
  output(): string;
};

/** Options for {@link startKafka}. */
export type StartKafkaOptions = {
  /** Extra `server.properties` lines. Default: none. */
  properties?: Record<string, string>;
  /**
   * Adds a SASL_SSL listener: TLS with the certificate and PKCS#8 key in `pemFile` (one PEM file
   * holding both), SASL PLAIN for each of `users` (name → password), and SCRAM-SHA-256 and
   * SCRAM-SHA-512 for each of `scramUsers` (name → password; default none). The SCRAM credentials
   * go into the metadata log when the storage is formatted (`format --add-scram`, Kafka's own code
   * salting the passwords), so they cost no start time and survive a restart.
   */
  saslSsl?: { pemFile: string; users: Record<string, string>; scramUsers?: Record<string, string> };
};

/** What a SCRAM user's name and password may hold: `format --add-scram` has no quoting for `,` `[` `]` `=`. */
const SCRAM_TEXT = /^[A-Za-z0-9._-]+$/;

/** The `format` arguments that store SCRAM-SHA-256 and SCRAM-SHA-512 credentials for each user. */
function addScramArgs(users: Record<string, string>): string[] {
  return Object.entries(users).flatMap(([name, password]) => {
    if (!SCRAM_TEXT.test(name) || !SCRAM_TEXT.test(password)) {
      throw new RangeError(
        `kafka harness: SCRAM user ${JSON.stringify(name)} or its password holds characters outside ${SCRAM_TEXT}`,
      );
    }
    return ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((mechanism) => [
      '--add-scram',
      `${mechanism}=[name=${name},password=${password}]`,
    ]);
  });
}

/** The listener lines for a SASL_SSL listener beside the PLAINTEXT one. */
function saslSslProperties(
  port: number,
  controllerPort: number,
  saslPort: number,
  saslSsl: NonNullable<StartKafkaOptions['saslSsl']>,
): Record<string, string> {
  const plainUsers = Object.entries(saslSsl.users)
    .map(([name, password]) => `user_${name}="${password}"`)
    .join(' ');
  return {
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort},SASL_SSL://127.0.0.1:${saslPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port},SASL_SSL://127.0.0.1:${saslPort}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL',
    'sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
    'listener.name.sasl_ssl.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
    'listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config':
      'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config':
      'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    'listener.name.sasl_ssl.ssl.keystore.type': 'PEM',
    'listener.name.sasl_ssl.ssl.keystore.location': saslSsl.pemFile,
  };
}

/** Fetches the broker's jars if needed; returns their folder. The first run downloads from Maven Central. */
export async function kafkaLibDir(): Promise<string> {
  const out = await runCommand(['bash', FETCH_SCRIPT], { timeoutMs: FETCH_DEADLINE_MS });
  const lines = out.trim().split('\n');
  return lines[lines.length - 1] as string;
}

/** Starts a broker and waits until it answers metadata; throws with its log if it does not in time. */
export async function startKafka(options: StartKafkaOptions = {}): Promise<KafkaBroker> {
  const lib = await kafkaLibDir();
  const classpath = `${lib}/*`;
  const dir = mkdtempSync(join(tmpdir(), 'kar-kafka-'));
  const port = freePort();
  const controllerPort = freePort();
  const bootstrap = `127.0.0.1:${port}`;
  const saslPort = options.saslSsl ? freePort() : undefined;
  const saslSslBootstrap = saslPort ? `127.0.0.1:${saslPort}` : undefined;
  const props: Record<string, string> = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.bootstrap.servers': `127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${bootstrap}`,
    'controller.listener.names': 'CONTROLLER',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name': 'PLAINTEXT',
    'log.dirs': join(dir, 'data'),
    'offsets.topic.replication.factor': '1',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'share.coordinator.state.topic.replication.factor': '1',
    'share.coordinator.state.topic.min.isr': '1',
    'group.initial.rebalance.delay.ms': '0',
    'auto.create.topics.enable': 'false',
    ...(options.saslSsl ? saslSslProperties(port, controllerPort, saslPort as number, options.saslSsl) : {}),
    ...options.properties,
  };
  const propsFile = join(dir, 'server.properties');
  writeFileSync(
    propsFile,
    `${Object.entries(props)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n')}\n`,
  );
  const clusterId = (
    await runCommand(['java', '-cp', classpath, 'kafka.tools.StorageTool', 'random-uuid'], {
      timeoutMs: STORAGE_TOOL_TIMEOUT_MS,
    })
  )
    .trim()
    .split('\n')
    .pop() as string;
  await runCommand(
    [
      'java',
      '-cp',
      classpath,
      'kafka.tools.StorageTool',
      'format',
      '-t',
      clusterId,
      '-c',
      propsFile,
      '--standalone',
      ...addScramArgs(options.saslSsl?.scramUsers ?? {}),
    ],
    { timeoutMs: STORAGE_TOOL_TIMEOUT_MS },
  );

  let proc: Subprocess<'ignore', 'pipe', 'pipe'> | undefined;
  let log = '';
  let stopped = false;

  async function drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      log += decoder.decode(chunk, { stream: true });
      if (log.length > 200_000) log = log.slice(-100_000); // keep the tail only
    }
  }

  async function ready(): Promise<void> {
    const deadline = Date.now() + READY_DEADLINE_MS;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (proc?.exitCode !== null && proc?.exitCode !== undefined) {
        throw new Error(`kafka broker exited with ${proc.exitCode} while starting:\n${log.slice(-4000)}`);
      }
      const admin = new Admin({
        clientId: 'kar-test-probe',
        bootstrapBrokers: [bootstrap],
        retries: 0,
        timeout: 2000,
        connectTimeout: 2000,
      });
      try {
        const metadata = await admin.metadata({ topics: [] });
        if (metadata.brokers.size > 0) return;
      } catch (error) {
        lastError = error;
      } finally {
        await admin.close().catch(() => {});
      }
      await Bun.sleep(PROBE_INTERVAL_MS);
    }
    throw new Error(
      `kafka broker not ready within ${READY_DEADLINE_MS} ms (${String(lastError)}):\n${log.slice(-4000)}`,
    );
  }

  async function launch(): Promise<void> {
    proc = Bun.spawn(['java', BROKER_HEAP, '-XX:+UseSerialGC', '-cp', classpath, 'kafka.Kafka', propsFile], {
      cwd: dir,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    void drain(proc.stdout);
    void drain(proc.stderr);
    await ready();
  }

  async function kill(): Promise<void> {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    p.kill('SIGKILL');
    await p.exited;
  }

  const broker: KafkaBroker = {
    bootstrap,
    port,
    saslSslBootstrap,
    get pid() {
      return proc && proc.exitCode === null ? proc.pid : undefined;
    },
    async createTopic(name, partitions = 1) {
      const admin = new Admin({ clientId: 'kar-test-admin', bootstrapBrokers: [bootstrap] });
      try {
        await admin.createTopics({ topics: [name], partitions, replicas: 1 });
      } finally {
        await admin.close();
      }
    },
    kill,
    async restart() {
      if (stopped) throw new Error('kafka broker was stopped');
      await kill();
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
    output: () => log,
  };
  try {
    await launch();
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return broker;
}

/** One record read back by {@link consumeTopic}: the Event's auditID and stage, the key, the auditID header. */
export type ConsumedRecord = {
  auditID: string;
  stage: string;
  key: string;
  header: string | undefined;
  /** The record's value, the Event line as produced. */
  value: string;
};

/** How long {@link consumeTopic} reads by default before it gives up. */
const CONSUME_DEADLINE_MS = 90_000;

/**
 * Reads `topic` from its start, in partition order, with a consumer group of its own, until `enough` says so
 * or `ms` pass; returns what it read either way, for the test to judge.
 */
export async function consumeTopic(
  bootstrap: string,
  topic: string,
  enough: (records: ConsumedRecord[]) => boolean,
  ms = CONSUME_DEADLINE_MS,
): Promise<ConsumedRecord[]> {
  const consumer = new Consumer({
    clientId: 'kar-test-consumer',
    groupId: `kar-test-${crypto.randomUUID()}`,
    bootstrapBrokers: [bootstrap],
  });
  const records: ConsumedRecord[] = [];
  const stream = await consumer.consume({
    topics: [topic],
    mode: 'earliest',
    autocommit: false,
    maxWaitTime: 200,
  });
  const deadline = setTimeout(() => void stream.close(), ms);
  try {
    for await (const message of stream) {
      const value = message.value.toString();
      const event = JSON.parse(value) as { auditID: string; stage: string };
      const header = message.headerEntries.find(([k]) => String(k) === 'auditID')?.[1];
      records.push({
        auditID: event.auditID,
        stage: event.stage,
        key: message.key.toString(),
        header: header === undefined ? undefined : String(header),
        value,
      });
      if (enough(records)) break;
    }
  } finally {
    clearTimeout(deadline);
    await stream.close().catch(() => {});
    await consumer.close(true).catch(() => {});
  }
  return records;
}
