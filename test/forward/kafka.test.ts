/**
 * @module Tests of forwarding to a real Kafka 4.4.0 broker: round trip with acks=all, TLS with SASL PLAIN and SCRAM, and the broker killed and restarted under load.
 *
 * The broker's jars come from Maven Central into .cache/kafka on first use (testing/kafka/fetch.sh).
 */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'bun:test';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createForwarder } from '../../src/forward/forwarder.ts';
import { createKafkaSink, KAFKA_SASL_MECHANISMS, kafkaKeyOf } from '../../src/forward/kafka.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import { consumeTopic, type KafkaBroker, startKafka } from '../../testing/harness/kafka.ts';
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';
import { appendEvents, ids, until, writePaced } from './helpers.ts';

const SASL_USER = 'kar';
const SASL_PASSWORD = 'kar-test-password';
/** A second user known to SCRAM only, so a SCRAM test cannot pass by logging in some other way. */
const SCRAM_USER = 'kar-scram';
const SCRAM_PASSWORD = 'kar-scram-test-password';

/** The user and password file each offered SASL mechanism logs in with: a new mechanism needs a row, and gets tested. */
const SASL_LOGINS: Record<(typeof KAFKA_SASL_MECHANISMS)[number], { user: string; passwordFile: string }> = {
  PLAIN: { user: SASL_USER, passwordFile: 'password' },
  'SCRAM-SHA-256': { user: SCRAM_USER, passwordFile: 'scram-password' },
  'SCRAM-SHA-512': { user: SCRAM_USER, passwordFile: 'scram-password' },
};

/** Startup of a cold JVM plus, on the very first run, the jar download. */
const BROKER_START_TIMEOUT_MS = 600_000;

describe('Kafka forwarding against a real broker', () => {
  let broker: KafkaBroker | undefined;
  let dir = '';
  let log = '';

  let certDir = '';
  let ca: TestCa;

  beforeAll(async () => {
    certDir = makeTempDir('kafka-certs');
    ca = await makeCa(certDir);
    const server = await makeServerCert(certDir, ca);
    const pemFile = join(certDir, 'broker.pem');
    writeFileSync(pemFile, `${server.key}${server.cert}`);
    writeFileSync(join(certDir, 'password'), `${SASL_PASSWORD}\n`);
    writeFileSync(join(certDir, 'scram-password'), `${SCRAM_PASSWORD}\n`);
    const started = performance.now();
    broker = await startKafka({
      saslSsl: {
        pemFile,
        users: { [SASL_USER]: SASL_PASSWORD },
        scramUsers: { [SCRAM_USER]: SCRAM_PASSWORD },
      },
    });
    console.log(`kafka broker ready in ${Math.round(performance.now() - started)} ms`);
  }, BROKER_START_TIMEOUT_MS);
  afterAll(async () => {
    await broker?.stop();
    removeDir(certDir);
  });
  beforeEach(() => {
    dir = makeTempDir('kafka');
    log = join(dir, 'audit.log');
  });
  afterEach(() => removeDir(dir));

  it('produces every line with acks=all, keyed by cluster, with its auditID header, and measures throughput', async () => {
    const b = broker as KafkaBroker;
    await b.createTopic('audit-roundtrip');
    const total = 20_000;
    appendEvents(log, ids('rt', 0, total), 600);
    const sink = createKafkaSink({
      brokers: [b.bootstrap],
      topic: 'audit-roundtrip',
      clusterName: 'test-cluster',
      compression: 'zstd',
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink,
      registry: new Registry(),
      pollIntervalMs: 20,
    });
    const started = performance.now();
    forwarder.start();
    await until(() => forwarder.metrics.value('delivered') === total, `${total} events delivered`, 120_000);
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `kafka: ${total} events (${Math.round(Bun.file(log).size / total)} B each) in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} events/s`,
    );
    await forwarder.stop();
    await sink.close();
    const records = await consumeTopic(b.bootstrap, 'audit-roundtrip', (r) => r.length >= total);
    expect(records.map((r) => r.auditID)).toEqual(ids('rt', 0, total));
    expect(new Set(records.map((r) => r.key))).toEqual(new Set(['test-cluster']));
    expect(records.every((r) => r.header === r.auditID)).toBe(true);
    const firstLine = (await Bun.file(log).text()).split('\n')[0];
    expect(records[0]?.value).toBe(firstLine as string); // the line as it is, byte for byte
  }, 180_000);

  for (const mechanism of KAFKA_SASL_MECHANISMS) {
    const login = SASL_LOGINS[mechanism];
    it(`produces over TLS with SASL ${mechanism}, verifying the broker against the CA file`, async () => {
      const b = broker as KafkaBroker;
      const topic = `audit-sasl-${mechanism.toLowerCase()}`;
      await b.createTopic(topic);
      appendEvents(log, ids(mechanism, 0, 50));
      const sink = createKafkaSink({
        brokers: [b.saslSslBootstrap as string],
        topic,
        tlsCaFile: ca.certFile,
        saslMechanism: mechanism,
        saslUsername: login.user,
        saslPasswordFile: join(certDir, login.passwordFile),
      });
      const forwarder = createForwarder({
        path: log,
        checkpointPath: join(dir, 'checkpoint.json'),
        sink,
        registry: new Registry(),
        pollIntervalMs: 20,
      });
      forwarder.start();
      try {
        await until(() => forwarder.metrics.value('delivered') === 50, '50 events', 60_000);
      } finally {
        await forwarder.stop();
        await sink.close();
      }
      const records = await consumeTopic(b.bootstrap, topic, (r) => r.length >= 50);
      expect(records.map((r) => r.auditID)).toEqual(ids(mechanism, 0, 50));
    }, 120_000);
  }

  for (const mechanism of KAFKA_SASL_MECHANISMS) {
    const login = SASL_LOGINS[mechanism];
    it(`delivers nothing and moves no checkpoint with a wrong SASL ${mechanism} password, retrying until the file holds the right one`, async () => {
      const b = broker as KafkaBroker;
      const topic = `audit-sasl-wrong-${mechanism.toLowerCase()}`;
      await b.createTopic(topic);
      appendEvents(log, ids('w', 0, 5));
      const checkpointPath = join(dir, 'checkpoint.json');
      const passwordFile = join(dir, 'password');
      writeFileSync(passwordFile, 'not-it\n');
      const sink = createKafkaSink({
        brokers: [b.saslSslBootstrap as string],
        topic,
        tlsCaFile: ca.certFile,
        saslMechanism: mechanism,
        saslUsername: login.user,
        saslPasswordFile: passwordFile,
        retry: { initialBackoffMs: 50, maxBackoffMs: 100 },
      });
      const forwarder = createForwarder({
        path: log,
        checkpointPath,
        sink,
        registry: new Registry(),
        pollIntervalMs: 20,
      });
      forwarder.start();
      try {
        await until(() => forwarder.metrics.value('retried') >= 10, 'two failed attempts', 60_000);
        expect(forwarder.metrics.value('delivered')).toBe(0);
        expect(forwarder.metrics.value('failed')).toBe(0);
        expect(existsSync(checkpointPath)).toBe(false);
        // The file is read at each login: the right password (a rotated Secret) lets the same events through.
        copyFileSync(join(certDir, login.passwordFile), passwordFile);
        await until(() => forwarder.metrics.value('delivered') === 5, '5 events after the fix', 60_000);
      } finally {
        await forwarder.stop();
        await sink.close();
      }
      expect(forwarder.metrics.value('failed')).toBe(0);
      expect(existsSync(checkpointPath)).toBe(true);
      const records = await consumeTopic(b.bootstrap, topic, (r) => r.length >= 5);
      expect(records.map((r) => r.auditID)).toEqual(ids('w', 0, 5));
    }, 120_000);
  }

  it('loses nothing when the broker is killed and restarted under load; duplicates only around the restart', async () => {
    const b = broker as KafkaBroker;
    await b.createTopic('audit-restart');
    const total = 12_000;
    const fileSink = createFileSink({ path: log, maxSizeBytes: 256 * 1024, maxBackups: 0 });
    const registry = new Registry();
    const sink = createKafkaSink({
      brokers: [b.bootstrap],
      topic: 'audit-restart',
      clusterName: 'c1',
      requestTimeoutMs: 5000,
      batch: { maxEvents: 200, maxWaitMs: 20 },
      retry: { initialBackoffMs: 200, maxBackoffMs: 1000 },
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink,
      registry,
      pollIntervalMs: 20,
    });
    forwarder.start();
    // Bounded load: `total` lines in steps of 100, paced so the run spans the outage.
    const writer = writePaced(fileSink, { prefix: 'kr', total, pad: 300, step: 100, pauseMs: 15 });
    try {
      await until(() => forwarder.metrics.value('delivered') >= total / 4, 'a quarter delivered', 60_000);
      await b.kill();
      const killedAt = writer.written();
      await until(
        () =>
          writer.written() >= Math.min(total, killedAt + total / 4) && forwarder.metrics.value('retried') > 0,
        'lines written and sends failing while the broker is down',
        60_000,
      );
      await b.restart();
      await writer.done;
      await until(
        () => forwarder.metrics.value('delivered') >= total,
        'all delivered after the restart',
        120_000,
      );
    } finally {
      await writer.done;
      await forwarder.stop();
      await sink.close();
      await fileSink.close();
    }
    const records = await consumeTopic(
      b.bootstrap,
      'audit-restart',
      (r) => new Set(r.map((x) => x.auditID)).size >= total,
    );
    const got = records.map((r) => r.auditID);
    const unique = new Set(got);
    expect([...ids('kr', 0, total)].filter((id) => !unique.has(id))).toEqual([]); // no gaps
    // Order: the first time each id appears, the ids are in file order.
    const firsts = got.filter((id, i) => got.indexOf(id) === i);
    expect(firsts).toEqual(ids('kr', 0, total));
    const duplicates = got.length - unique.size;
    const dupIndexes = got
      .map((id, i) => (got.indexOf(id) !== i ? Number(id.slice(3)) : -1))
      .filter((n) => n >= 0);
    const span = dupIndexes.length > 0 ? Math.max(...dupIndexes) - Math.min(...dupIndexes) + 1 : 0;
    console.log(
      `kafka restart: ${got.length} records, ${unique.size} unique, ${duplicates} duplicates spanning ${span} lines; retried ${forwarder.metrics.value('retried')}`,
    );
    // Duplicates come only from batches in flight at the kill: a few batches' worth, in one stretch.
    expect(span).toBeLessThanOrEqual(5 * 200);
  }, 400_000);
});

describe('createKafkaSink', () => {
  it('refuses invalid options, naming the flag', () => {
    expect(() => createKafkaSink({ brokers: [], topic: 't' })).toThrow('--kafka-brokers');
    expect(() => createKafkaSink({ brokers: ['nohost'], topic: 't' })).toThrow('host:port');
    expect(() => createKafkaSink({ brokers: ['h:1'], topic: 'bad topic' })).toThrow('--kafka-topic');
    expect(() => createKafkaSink({ brokers: ['h:1'], topic: 't', compression: 'brotli' as 'gzip' })).toThrow(
      '--kafka-compression',
    );
    expect(() => createKafkaSink({ brokers: ['h:1'], topic: 't', saslMechanism: 'PLAIN' })).toThrow(
      '--kafka-sasl-username',
    );
    expect(() => createKafkaSink({ brokers: ['h:1'], topic: 't', tlsCaFile: '/nonexistent/ca.pem' })).toThrow(
      '--kafka-tls-ca-file',
    );
    expect(() => createKafkaSink({ brokers: ['h:1'], topic: 't', tlsCertFile: '/x' })).toThrow('go together');
  });

  it('keys by cluster or by namespace/name', () => {
    expect(kafkaKeyOf('cluster', { cluster: 'prod' }, 'fallback')).toBe('prod');
    expect(kafkaKeyOf('cluster', {}, 'fallback')).toBe('fallback');
    expect(kafkaKeyOf('object', { namespace: 'ns', name: 'n' }, '')).toBe('ns/n');
    expect(kafkaKeyOf('object', { name: 'node-1' }, '')).toBe('node-1');
  });
});
