/**
 * @module Tests of `kube-audit-rest forward`: its flags and help in process, then the compiled executable
 * beside the real webhook server under load, shipping to a real Kafka broker and to a real audit webhook
 * receiver over TLS; every event checked by the upstream Event type; SIGTERM and restart from the
 * checkpoint; the drain on SIGTERM; every compression codec and SASL SCRAM over TLS from the compiled executable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FORWARD_EXIT } from '../../src/commands/forward.ts';
import { FORWARD_FLAGS, FORWARD_HELP, parseForwardArgs } from '../../src/config/forward.ts';
import { readCheckpoint } from '../../src/forward/checkpoint.ts';
import { listLogFiles } from '../../src/forward/log-files.ts';
import {
  type AuditWebhookReceiver,
  startAuditWebhookReceiver,
} from '../../testing/harness/audit-webhook-receiver.ts';
import { checkEvents } from '../../testing/harness/event-oracles.ts';
import { consumeTopic, type KafkaBroker, startKafka } from '../../testing/harness/kafka.ts';
import { appendEvents, ids } from '../forward/helpers.ts';
import { makeCa, makeServerCert, type TestCa, type TestServerCert } from '../helpers/certs.ts';
import { DELIVERED, type ForwardProcess, startForward } from '../helpers/forward-process.ts';
import { runToExit, type ServerProcess, startServer, waitUntil } from '../helpers/server-process.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';

const REPO = join(import.meta.dir, '..', '..');
const GOLDEN_HELP = join(REPO, 'test', 'golden', 'help-forward.txt');
const LOCAL_DATA = join(REPO, 'testing', 'locally', 'data');
/** A cold JVM, plus the jar download on the very first run. */
const BROKER_START_MS = 600_000;
/** Building the Go oracles can take a minute on a cold cache. */
const ORACLE_BUILD_MS = 600_000;
/** Reviews sent per load test: with --logger-max-size=1 and ~1.5 KB lines, a few rotations. */
const REQUESTS = 3000;
/** Concurrent webhook clients. */
const CLIENTS = 4;
/** The cluster the webhook stamps on its lines. */
const CLUSTER = 'member-a';
const TOKEN = 'forward-test-token';
/** The broker's SCRAM user (SCRAM-SHA-256 and SCRAM-SHA-512) on its SASL_SSL listener. */
const SCRAM_USER = 'forwarder';
const SCRAM_PASSWORD = 'forward-test-scram-password';

/** The captured reviews; the exec one becomes two Events (ResponseStarted, ResponseComplete). */
const SAMPLES = readdirSync(LOCAL_DATA)
  .sort()
  .map((f) => JSON.parse(readFileSync(join(LOCAL_DATA, f), 'utf8')) as { request: Record<string, unknown> });

/** Review `i` of the mix, with uid `<prefix>-<i>`. */
function review(prefix: string, i: number): string {
  const sample = structuredClone(SAMPLES[i % SAMPLES.length]) as { request: Record<string, unknown> };
  sample.request.uid = `${prefix}-${i}`;
  return JSON.stringify(sample);
}

/** Whether review `i` of the mix is the exec (two Events). */
function isExec(i: number): boolean {
  return (SAMPLES[i % SAMPLES.length]?.request.operation as string) === 'CONNECT';
}

/** POSTs `count` reviews to the webhook (at `path`) from `clients` clients; resolves with the uids acknowledged. */
async function sendReviews(
  server: ServerProcess,
  ca: TestCa,
  prefix: string,
  count: number,
  path = '/log-request',
): Promise<string[]> {
  const acked: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < count) {
        const i = next++;
        const res = await fetch(`https://127.0.0.1:${server.port}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: review(prefix, i),
          tls: { ca: ca.cert },
        });
        const text = await res.text();
        if (res.status !== 200 || !text.includes('"allowed":true'))
          throw new Error(`review ${i}: ${res.status}`);
        acked.push(`${prefix}-${i}`);
      }
    }),
  );
  return acked;
}

/** The uids of the log's lines, file by file in the order the forwarder reads them (oldest backup first). */
function uidsByFile(logPath: string): string[][] {
  return listLogFiles(logPath).map((f) =>
    readFileSync(f.path, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (JSON.parse(l) as { request: { uid: string } }).request.uid),
  );
}

/** Each id once, at its first place. */
function firstSeen(list: readonly string[]): string[] {
  return [...new Set(list)];
}

/** The compression codec of every record batch in a partition's segment files (Kafka's v2 batch layout). */
function batchCodecs(broker: KafkaBroker, topic: string): string[] {
  const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];
  const dir = join(readlinkSync(`/proc/${broker.pid}/cwd`), 'data', `${topic}-0`);
  const out: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.log'))) {
    const bytes = readFileSync(join(dir, file));
    // baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8, crc int32, attributes int16.
    for (let at = 0; at + 23 <= bytes.length; ) {
      const length = bytes.readInt32BE(at + 8);
      out.push(codecs[bytes.readInt16BE(at + 21) & 0x7] ?? 'unknown');
      at += 12 + length;
    }
  }
  return out;
}

/** A kubeconfig for the receiver at `url`, trusting `caFile`, with the test token. */
function kubeconfig(dir: string, url: string, caFile: string): string {
  const file = join(dir, 'receiver.kubeconfig');
  writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: receiver',
      `  cluster: {server: "${url}", certificate-authority: "${caFile}"}`,
      'users:',
      `- name: forwarder`,
      `  user: {token: ${TOKEN}}`,
      'contexts:',
      '- name: default',
      '  context: {cluster: receiver, user: forwarder}',
      'current-context: default',
      '',
    ].join('\n'),
  );
  return file;
}

/** Admissionreview lines as the webhook writes them (compact, timestamped), for uids `<prefix>-0..count-1`. */
function writtenLines(prefix: string, count: number): string {
  let out = '';
  for (let i = 0; i < count; i++) {
    const r = JSON.parse(review(prefix, i)) as Record<string, unknown>;
    r.requestReceivedTimestamp = new Date().toISOString().replace('Z', '123456Z');
    out += `${JSON.stringify(r)}\n`;
  }
  return out;
}

describe('forward flags', () => {
  it('fills the defaults and resolves the checkpoint beside the log', () => {
    const parsed = parseForwardArgs(['--kafka-brokers=k1:9092, k2:9093', '--kafka-topic=audit']);
    if (parsed.kind !== 'config') throw new Error(JSON.stringify(parsed));
    expect(parsed.config).toMatchObject({
      destination: 'kafka',
      kafkaBrokerList: ['k1:9092', 'k2:9093'],
      loggerFilename: '/tmp/kube-audit-rest.log',
      checkpointFile: '/tmp/kube-audit-rest.log.checkpoint',
      metricsPort: 55556,
      kafkaIdempotent: true,
      kafkaCompression: 'gzip',
      kafkaKey: 'cluster',
      drainTimeoutMs: 10_000,
      startAt: 'oldest',
      auditWebhookBatchThrottleEnable: true,
    });
    const off = parseForwardArgs([
      '--audit-webhook-config-file=k',
      '--audit-webhook-batch-throttle-enable=false',
    ]);
    expect(off.kind === 'config' && off.config.auditWebhookBatchThrottleEnable).toBe(false);
    const notIdempotent = parseForwardArgs([
      '--kafka-brokers=k:1',
      '--kafka-topic=t',
      '--kafka-idempotent=false',
    ]);
    expect(notIdempotent.kind === 'config' && notIdempotent.config.kafkaIdempotent).toBe(false);
  });

  it('refuses a missing or doubled destination and flags that need another, naming them', () => {
    const error = (argv: string[]) => {
      const parsed = parseForwardArgs(argv);
      return parsed.kind === 'error' ? parsed.message : JSON.stringify(parsed);
    };
    expect(error([])).toContain('--kafka-brokers (with --kafka-topic) or --audit-webhook-config-file');
    expect(error(['--kafka-brokers=k:1', '--kafka-topic=t', '--audit-webhook-config-file=x'])).toBe(
      'choose one destination: --kafka-brokers and --audit-webhook-config-file were both given',
    );
    expect(error(['--kafka-brokers=k:1'])).toBe('--kafka-topic is required with --kafka-brokers');
    expect(error(['--kafka-brokers=,', '--kafka-topic=t'])).toBe(
      '--kafka-brokers must list at least one HOST:PORT',
    );
    expect(error(['--audit-webhook-config-file=x', '--kafka-topic=t'])).toBe(
      '--kafka-topic needs --kafka-brokers',
    );
    expect(error(['--kafka-brokers=k:1', '--kafka-topic=t', '--kafka-sasl-mechanism=PLAIN'])).toBe(
      '--kafka-sasl-mechanism=PLAIN needs --kafka-sasl-username and --kafka-sasl-password-file',
    );
    expect(error(['--kafka-brokers=k:1', '--kafka-topic=t', '--kafka-compression=brotli'])).toContain(
      '--kafka-compression must be one of none, gzip, snappy, lz4, zstd',
    );
    expect(error(['--audit-webhook-config-file=x', '--checkpoint-file=/tmp/kube-audit-rest.log'])).toBe(
      '--checkpoint-file must not be the audit log itself',
    );
    expect(error(['--audit-webhook-config-file=x', '--audit-webhook-batch-max-size=20000'])).toBe(
      '--audit-webhook-batch-max-size must not exceed --audit-webhook-batch-buffer-size',
    );
  });

  it('keeps the flag names the issue reserves', () => {
    const names = Object.values(FORWARD_FLAGS).map((f) => f.name);
    for (const name of [
      'logger-filename',
      'checkpoint-file',
      'metrics-port',
      'kafka-brokers',
      'kafka-topic',
      'audit-webhook-config-file',
      'cluster-name',
      'policy-file',
    ]) {
      expect(names).toContain(name);
    }
  });

  it('matches its --help golden file', () => {
    expect(FORWARD_HELP).toBe(readFileSync(GOLDEN_HELP, 'utf8'));
  });
});

describe('kube-audit-rest forward, the executable', () => {
  let dir = '';
  let ca: TestCa;
  let cert: TestServerCert;
  let broker: KafkaBroker | undefined;
  const running: (ServerProcess | ForwardProcess)[] = [];

  beforeAll(async () => {
    dir = makeTempDir('forward-cmd');
    ca = await makeCa(dir);
    cert = await makeServerCert(dir, ca);
    const pemFile = join(dir, 'broker.pem');
    writeFileSync(pemFile, `${readFileSync(cert.keyFile, 'utf8')}${readFileSync(cert.certFile, 'utf8')}`);
    writeFileSync(join(dir, 'scram-password'), `${SCRAM_PASSWORD}\n`);
    broker = await startKafka({
      saslSsl: { pemFile, users: {}, scramUsers: { [SCRAM_USER]: SCRAM_PASSWORD } },
    });
  }, BROKER_START_MS);
  afterAll(async () => {
    for (const p of running) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    await broker?.stop();
    removeDir(dir);
  });

  /** Starts the webhook server writing admissionreview lines with a cluster name, rotating every 1 MB. */
  async function webhook(logPath: string, extra = [`--cluster-name=${CLUSTER}`]): Promise<ServerProcess> {
    const server = await startServer([
      `--cert-filename=${cert.certFile}`,
      `--cert-key-filename=${cert.keyFile}`,
      `--logger-filename=${logPath}`,
      '--logger-max-size=1',
      '--logger-max-backups=50',
      ...extra,
    ]);
    running.push(server);
    return server;
  }

  async function forwarder(args: string[]): Promise<ForwardProcess> {
    const p = await startForward(args);
    running.push(p);
    return p;
  }

  it('prints its help, and exits 2 naming the problem on bad flags or an unusable file', async () => {
    const help = await runToExit(['forward', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(FORWARD_HELP);
    const none = await runToExit(['forward']);
    expect(none.code).toBe(FORWARD_EXIT.unusable);
    expect(none.stderr).toContain('a destination is required');
    const policy = join(dir, 'bad-policy.yaml');
    writeFileSync(policy, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n');
    const badPolicy = await runToExit([
      'forward',
      '--audit-webhook-config-file=x',
      `--policy-file=${policy}`,
    ]);
    expect(badPolicy.code).toBe(FORWARD_EXIT.unusable);
    expect(badPolicy.stderr).toContain('--policy-file');
    const noConfig = await runToExit(['forward', `--audit-webhook-config-file=${join(dir, 'missing')}`]);
    expect(noConfig.code).toBe(FORWARD_EXIT.unusable);
    expect(noConfig.stderr).toContain('cannot read');
    const badBroker = await runToExit(['forward', '--kafka-brokers=nohost', '--kafka-topic=t']);
    expect(badBroker.code).toBe(FORWARD_EXIT.unusable);
    expect(badBroker.stderr).toContain('host:port');
    // A checkpoint that is not one: a person should look at it before anything is sent again.
    const receiverConfig = kubeconfig(dir, 'http://127.0.0.1:9/audit', ca.certFile);
    const checkpoint = join(dir, 'garbage.checkpoint');
    writeFileSync(checkpoint, '{"version":1,"file":{}}');
    const badCheckpoint = await runToExit([
      'forward',
      `--audit-webhook-config-file=${receiverConfig}`,
      `--logger-filename=${join(dir, 'none.log')}`,
      `--checkpoint-file=${checkpoint}`,
      '--metrics-port=0',
    ]);
    expect(badCheckpoint.code).toBe(FORWARD_EXIT.unusable);
    expect(badCheckpoint.stderr).toContain(`checkpoint file ${checkpoint}`);
    // A metrics port in use.
    const taken = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    try {
      const busy = await runToExit([
        'forward',
        `--audit-webhook-config-file=${receiverConfig}`,
        '--bind-address=127.0.0.1',
        `--metrics-port=${taken.port}`,
      ]);
      expect(busy.code).toBe(FORWARD_EXIT.unusable);
      expect(busy.stderr).toContain('cannot listen on the metrics port');
    } finally {
      taken.stop(true);
    }
  }, 60_000);

  it(
    'ships what the webhook writes under load to Kafka, in file order, and resumes from the checkpoint after SIGTERM',
    async () => {
      const b = broker as KafkaBroker;
      await b.createTopic('audit-load');
      const logDir = join(dir, 'kafka-load');
      mkdirSync(logDir);
      const logPath = join(logDir, 'audit.log');
      const server = await webhook(logPath);
      const args = [
        `--logger-filename=${logPath}`,
        `--kafka-brokers=${b.bootstrap}`,
        '--kafka-topic=audit-load',
        '--poll-interval=20ms',
        '--drain-timeout=0s',
      ];
      const first = await forwarder(args);
      // The operations port: ready once started, the forwarding metrics and the process' own.
      const ops = `http://127.0.0.1:${first.metricsPort}`;
      expect(await fetch(`${ops}/readyz`).then((r) => r.status)).toBe(200);
      const metricsText = await fetch(`${ops}/metrics`).then((r) => r.text());
      for (const series of [
        'kube_audit_rest_forward_lag_seconds',
        'kube_audit_rest_forward_dropped_bytes_total',
        'process_resident_memory_bytes',
      ]) {
        expect(metricsText).toContain(`# TYPE ${series} `);
      }
      expect(await fetch(`${ops}/nothing-here`).then((r) => r.status)).toBe(404);
      const load = sendReviews(server, ca, 'k', REQUESTS);
      // Stop the first forwarder once it has shipped part of the load, while the load goes on.
      await waitUntil(async () => (await first.metric(DELIVERED)) >= 300, 60_000, 'a first part delivered');
      expect(await first.terminate()).toBe(0);
      const checkpoint = readCheckpoint(`${logPath}.checkpoint`);
      expect(checkpoint?.offset).toBeGreaterThan(0);
      const second = await forwarder(args);
      const acked = await load;
      expect(acked).toHaveLength(REQUESTS);
      const events = REQUESTS + Array.from({ length: REQUESTS }, (_, i) => i).filter(isExec).length;
      const uids = new Set(acked);
      const records = await consumeTopic(
        b.bootstrap,
        'audit-load',
        (r) => new Set(r.map((x) => x.auditID)).size >= uids.size,
      );
      expect(await second.terminate()).toBe(0);

      // Every line at least once, in the order the files hold them; duplicates at most one batch.
      const files = uidsByFile(logPath);
      expect(files.length).toBeGreaterThan(1); // the load rotated the log
      expect(firstSeen(records.map((r) => r.auditID))).toEqual(files.flat());
      expect(new Set(records.map((r) => r.auditID))).toEqual(uids);
      expect(records.length - events).toBeLessThanOrEqual(1000);
      // The exec's two stages, in order.
      const exec = records.filter((r) => r.auditID === 'k-3');
      expect(exec.slice(0, 2).map((r) => r.stage)).toEqual(['ResponseStarted', 'ResponseComplete']);
      // The webhook's cluster name is the key and the annotation; the header is the auditID.
      expect(new Set(records.map((r) => r.key))).toEqual(new Set([CLUSTER]));
      expect(records.every((r) => r.header === r.auditID)).toBe(true);
      const annotations = new Set(
        records.map(
          (r) => (JSON.parse(r.value) as { annotations: Record<string, string> }).annotations.cluster_name,
        ),
      );
      expect(annotations).toEqual(new Set([CLUSTER]));
      // Each one decodes strictly as the API server's audit/v1 Event.
      const verdicts = await checkEvents(records.map((r) => r.value));
      expect(verdicts.filter((v) => !v.ok)).toEqual([]);
      // Application logs never carry event contents (names from the reviews, the Secret's name).
      for (const text of ['web-0', 'db-password', 'k-7"'])
        expect(first.stderr() + second.stderr()).not.toContain(text);
    },
    ORACLE_BUILD_MS,
  );

  it(
    "names each member cluster in central mode: the path token's cluster becomes the Event's and the Kafka key",
    async () => {
      const b = broker as KafkaBroker;
      await b.createTopic('audit-central', 2);
      const logDir = join(dir, 'central');
      mkdirSync(logDir);
      const logPath = join(logDir, 'audit.log');
      const tokens = { 'prod-eu-1': 'tokenAAAAAAAAAAAAAAAAAAAA', 'prod-us-2': 'tokenBBBBBBBBBBBBBBBBBBBB' };
      const tokenFile = join(logDir, 'tokens');
      writeFileSync(
        tokenFile,
        Object.entries(tokens)
          .map(([cluster, token]) => `${token} ${cluster}\n`)
          .join(''),
      );
      const server = await webhook(logPath, [`--path-token-file=${tokenFile}`]);
      // Without a token the webhook does not record.
      const refused = await fetch(`https://127.0.0.1:${server.port}/log-request`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: review('none', 0),
        tls: { ca: ca.cert },
      });
      expect(refused.status).not.toBe(200);
      const f = await forwarder([
        `--logger-filename=${logPath}`,
        `--kafka-brokers=${b.bootstrap}`,
        '--kafka-topic=audit-central',
        '--poll-interval=20ms',
      ]);
      const sent = await Promise.all(
        Object.entries(tokens).map(async ([cluster, token]) => ({
          cluster,
          uids: await sendReviews(server, ca, cluster, 300, `/log-request/${token}`),
        })),
      );
      const total = sent.reduce((n, x) => n + x.uids.length, 0);
      const records = await consumeTopic(
        b.bootstrap,
        'audit-central',
        (r) => new Set(r.map((x) => x.auditID)).size >= total,
      );
      expect(await f.terminate()).toBe(0);
      expect(new Set(records.map((r) => r.auditID)).size).toBe(total);
      for (const { cluster, uids } of sent) {
        const mine = records.filter((r) => uids.includes(r.auditID));
        expect(new Set(mine.map((r) => r.auditID)).size).toBe(uids.length);
        expect(new Set(mine.map((r) => r.key))).toEqual(new Set([cluster]));
        const names = mine.map(
          (r) => (JSON.parse(r.value) as { annotations: Record<string, string> }).annotations.cluster_name,
        );
        expect(new Set(names)).toEqual(new Set([cluster]));
      }
      const verdicts = await checkEvents(records.map((r) => r.value));
      expect(verdicts.filter((v) => !v.ok)).toEqual([]);
    },
    ORACLE_BUILD_MS,
  );

  it('compresses with gzip, snappy, lz4 and zstd from the compiled executable', async () => {
    const b = broker as KafkaBroker;
    for (const codec of ['gzip', 'snappy', 'lz4', 'zstd'] as const) {
      const topic = `audit-${codec}`;
      await b.createTopic(topic);
      const logDir = join(dir, `codec-${codec}`);
      mkdirSync(logDir);
      const logPath = join(logDir, 'audit.log');
      appendEvents(logPath, ids(codec, 0, 2000), 300);
      const f = await forwarder([
        `--logger-filename=${logPath}`,
        `--kafka-brokers=${b.bootstrap}`,
        `--kafka-topic=${topic}`,
        `--kafka-compression=${codec}`,
      ]);
      await waitUntil(async () => (await f.metric(DELIVERED)) === 2000, 60_000, `2000 events with ${codec}`);
      expect(await f.terminate()).toBe(0);
      const records = await consumeTopic(b.bootstrap, topic, (r) => r.length >= 2000);
      expect(records.map((r) => r.auditID)).toEqual(ids(codec, 0, 2000));
      const codecs = batchCodecs(b, topic);
      expect(codecs.length).toBeGreaterThan(0);
      expect(new Set(codecs)).toEqual(new Set([codec]));
    }
  }, 300_000);

  it('produces over TLS with SASL SCRAM-SHA-512 from the flags, the password read from its file', async () => {
    const b = broker as KafkaBroker;
    await b.createTopic('audit-scram');
    const logDir = join(dir, 'scram');
    mkdirSync(logDir);
    const logPath = join(logDir, 'audit.log');
    appendEvents(logPath, ids('scram', 0, 200));
    const f = await forwarder([
      `--logger-filename=${logPath}`,
      `--kafka-brokers=${b.saslSslBootstrap as string}`,
      '--kafka-topic=audit-scram',
      `--kafka-tls-ca-file=${ca.certFile}`,
      '--kafka-sasl-mechanism=SCRAM-SHA-512',
      `--kafka-sasl-username=${SCRAM_USER}`,
      `--kafka-sasl-password-file=${join(dir, 'scram-password')}`,
    ]);
    await waitUntil(async () => (await f.metric(DELIVERED)) === 200, 60_000, '200 events over SCRAM');
    expect(await f.terminate()).toBe(0);
    const records = await consumeTopic(b.bootstrap, 'audit-scram', (r) => r.length >= 200);
    expect(records.map((r) => r.auditID)).toEqual(ids('scram', 0, 200));
  }, 120_000);

  describe('to an audit webhook receiver over TLS', () => {
    let receiver: AuditWebhookReceiver | undefined;
    let receiverCert: TestServerCert;

    beforeAll(async () => {
      receiverCert = await makeServerCert(dir, ca, { name: 'receiver' });
    });

    async function startReceiver(): Promise<AuditWebhookReceiver> {
      await receiver?.stop();
      receiver = await startAuditWebhookReceiver({
        certFile: receiverCert.certFile,
        keyFile: receiverCert.keyFile,
        token: TOKEN,
      });
      return receiver;
    }
    afterAll(async () => {
      await receiver?.stop();
    });

    it(
      'ships what the webhook writes under load as EventList batches the upstream type decodes',
      async () => {
        const r = await startReceiver();
        const logDir = join(dir, 'webhook-load');
        mkdirSync(logDir);
        const logPath = join(logDir, 'audit.log');
        const server = await webhook(logPath);
        const f = await forwarder([
          `--logger-filename=${logPath}`,
          `--audit-webhook-config-file=${kubeconfig(logDir, r.url, ca.certFile)}`,
          '--audit-webhook-batch-max-wait=200ms',
          '--audit-webhook-batch-throttle-enable=false',
          '--audit-webhook-initial-backoff=100ms',
        ]);
        const acked = await sendReviews(server, ca, 'w', REQUESTS);
        await waitUntil(() => new Set(r.auditIDs()).size === acked.length, 60_000, 'every review received');
        expect(await f.terminate()).toBe(0);
        expect(firstSeen(r.auditIDs())).toEqual(uidsByFile(logPath).flat());
        const verdicts = await checkEvents(r.items().map((item) => JSON.stringify(item)));
        expect(verdicts.filter((v) => !v.ok)).toEqual([]);
        expect(new Set(r.items().map((i) => (i.annotations as Record<string, string>).cluster_name))).toEqual(
          new Set([CLUSTER]),
        );
      },
      ORACLE_BUILD_MS,
    );

    it('forwards what is left on SIGTERM before exiting, and resumes from the checkpoint when it did not', async () => {
      const r = await startReceiver();
      const logDir = join(dir, 'drain');
      mkdirSync(logDir);
      const logPath = join(logDir, 'audit.log');
      const total = 3000;
      writeFileSync(logPath, writtenLines('d', total));
      // Throttled to about 1,000 events a second: the file takes ~3 s to forward.
      const args = [
        `--logger-filename=${logPath}`,
        `--audit-webhook-config-file=${kubeconfig(logDir, r.url, ca.certFile)}`,
        '--audit-webhook-batch-max-size=50',
        '--audit-webhook-batch-throttle-qps=20',
        '--audit-webhook-batch-throttle-burst=1',
        '--poll-interval=20ms',
      ];
      // Without a drain: stops after the batch in flight, with most of the file left.
      const quick = await forwarder([...args, '--drain-timeout=0s']);
      await waitUntil(() => r.auditIDs().length > 0, 30_000, 'a first batch');
      expect(await quick.terminate()).toBe(0);
      const afterQuick = new Set(r.auditIDs()).size;
      expect(afterQuick).toBeLessThan(total);
      expect(readCheckpoint(`${logPath}.checkpoint`)?.offset).toBeLessThan(Bun.file(logPath).size);

      // With a drain: SIGTERM at once, and everything is delivered before it exits 0.
      const draining = await forwarder([...args, '--drain-timeout=60s']);
      expect(await draining.terminate()).toBe(0);
      const all = r.auditIDs();
      expect(new Set(all).size).toBe(total);
      expect(firstSeen(all)).toEqual(ids('d', 0, total));
      // An exec is two events; beyond those, at most one batch was sent twice.
      const events = total + ids('d', 0, total).filter((_, i) => isExec(i)).length;
      expect(all.length - events).toBeLessThanOrEqual(50);
      expect(readCheckpoint(`${logPath}.checkpoint`)?.offset).toBe(Bun.file(logPath).size);
      expect(draining.stderr()).toContain('forwarding what is left');
    }, 120_000);

    it('gives up the drain at --drain-timeout while the receiver is down, exits 1 and keeps the checkpoint', async () => {
      const r = await startReceiver();
      const logDir = join(dir, 'drain-down');
      mkdirSync(logDir);
      const logPath = join(logDir, 'audit.log');
      writeFileSync(logPath, writtenLines('x', 10));
      await r.down();
      const f = await forwarder([
        `--logger-filename=${logPath}`,
        `--audit-webhook-config-file=${kubeconfig(logDir, r.url, ca.certFile)}`,
        '--audit-webhook-batch-max-wait=10ms',
        '--audit-webhook-initial-backoff=100ms',
        '--drain-timeout=1s',
      ]);
      await waitUntil(
        async () => (await f.metric('kube_audit_rest_forward_events_total{result="retried"}')) > 0,
        30_000,
        'a failed attempt',
      );
      const started = performance.now();
      expect(await f.terminate()).toBe(FORWARD_EXIT.failed);
      expect(performance.now() - started).toBeLessThan(10_000);
      const entries = f
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: string; msg: string; lagBytes?: number });
      const gaveUp = entries.find((e) => e.msg.startsWith('stopped before everything was forwarded'));
      expect(gaveUp?.level).toBe('error');
      expect(gaveUp?.lagBytes).toBe(Bun.file(logPath).size);
      expect(readCheckpoint(`${logPath}.checkpoint`)).toBeUndefined();
    }, 60_000);
  });
});
