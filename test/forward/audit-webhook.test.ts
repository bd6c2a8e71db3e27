/** @module Tests of forwarding to an audit webhook receiver over real TLS: kubeconfig, EventList batches, outages, refusals, throttle, a killed forwarder. */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'bun:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Registry } from 'prom-client';
import { createAuditWebhookSink, eventListBody } from '../../src/forward/audit-webhook.ts';
import { createForwarder } from '../../src/forward/forwarder.ts';
import { loadWebhookConfig } from '../../src/forward/webhook-config.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import {
  type AuditWebhookReceiver,
  startAuditWebhookReceiver,
} from '../../testing/harness/audit-webhook-receiver.ts';
import { falcoWebhookSource } from '../../testing/harness/event-oracles.ts';
import { makeCa, makeServerCert, openssl, type TestCa } from '../helpers/certs.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';
import { appendEvents, bytes, ids, until, writePaced } from './helpers.ts';

const TOKEN = 'test-token-not-a-secret';

/** Makes a client certificate (clientAuth) signed by `ca` in `dir`. */
async function makeClientCert(dir: string, ca: TestCa): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = join(dir, 'client.key');
  const csrFile = join(dir, 'client.csr');
  const certFile = join(dir, 'client.crt');
  const extFile = join(dir, 'client.ext');
  writeFileSync(extFile, 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n');
  await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    csrFile,
    '-subj',
    '/CN=kube-audit-rest-forwarder',
  ]);
  await openssl([
    'x509',
    '-req',
    '-in',
    csrFile,
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    '-set_serial',
    '0x1234',
    '-days',
    '1',
    '-sha256',
    '-extfile',
    extFile,
    '-out',
    certFile,
  ]);
  return { certFile, keyFile };
}

/** Writes a kubeconfig for `url` with relative paths to the CA and client certificate. */
function writeKubeconfig(dir: string, url: string, user: string): string {
  const file = join(dir, 'webhook.kubeconfig');
  writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: receiver',
      '  cluster:',
      `    server: ${url}`,
      '    certificate-authority: certs/ca.crt',
      'users:',
      '- name: forwarder',
      '  user:',
      user,
      'contexts:',
      '- name: default',
      '  context: {cluster: receiver, user: forwarder}',
      'current-context: default',
      '',
    ].join('\n'),
  );
  return file;
}

describe('audit webhook forwarding over TLS', () => {
  let certDir = '';
  let ca: TestCa;
  let serverCert: { certFile: string; keyFile: string };
  let clientCert: { certFile: string; keyFile: string };
  let dir = '';
  let log = '';
  let receiver: AuditWebhookReceiver | undefined;

  beforeAll(async () => {
    certDir = makeTempDir('webhook-certs');
    mkdirSync(join(certDir, 'certs'));
    ca = await makeCa(join(certDir, 'certs'));
    serverCert = await makeServerCert(join(certDir, 'certs'), ca);
    clientCert = await makeClientCert(join(certDir, 'certs'), ca);
  }, 60_000);
  afterAll(() => removeDir(certDir));
  beforeEach(() => {
    dir = makeTempDir('webhook');
    log = join(dir, 'audit.log');
  });
  afterEach(async () => {
    await receiver?.stop();
    receiver = undefined;
    removeDir(dir);
  });

  function kubeconfig(url: string): string {
    return writeKubeconfig(
      certDir,
      url,
      // Relative paths: resolved against the kubeconfig's directory.
      `    client-certificate: ${relative(certDir, clientCert.certFile)}\n    client-key: ${relative(certDir, clientCert.keyFile)}\n    token: ${TOKEN}`,
    );
  }

  it('POSTs EventList batches with a client certificate and a token, and measures throughput', async () => {
    receiver = await startAuditWebhookReceiver({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      clientCaFile: ca.certFile,
      token: TOKEN,
    });
    const total = 20_000;
    appendEvents(log, ids('wh', 0, total), 600);
    const sink = createAuditWebhookSink({
      configFile: kubeconfig(receiver.url),
      throttleEnable: false,
      maxBatchWaitMs: 50,
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink,
      registry: new Registry(),
      pollIntervalMs: 10,
    });
    const started = performance.now();
    forwarder.start();
    const r = receiver;
    await until(() => r.auditIDs().length >= total, `${total} events`, 120_000);
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `audit webhook (TLS, batches of 400, no throttle): ${total} events in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} events/s`,
    );
    await forwarder.stop();
    expect(r.auditIDs()).toEqual(ids('wh', 0, total));
    expect(r.stats().accepted).toBe(total / 400);
    expect(r.items()[0]?.kind).toBe('Event');
  }, 180_000);

  it('loses nothing while the receiver is down under load, and counts the retries', async () => {
    receiver = await startAuditWebhookReceiver({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      token: TOKEN,
    });
    const r = receiver;
    const total = 6000;
    const fileSink = createFileSink({ path: log, maxSizeBytes: 128 * 1024, maxBackups: 0 });
    const sink = createAuditWebhookSink({
      configFile: kubeconfig(r.url),
      maxBatchWaitMs: 20,
      throttleQps: 200,
      throttleBurst: 20,
      initialBackoffMs: 50,
      maxBackoffMs: 300,
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink,
      registry: new Registry(),
      pollIntervalMs: 10,
    });
    forwarder.start();
    const writer = writePaced(fileSink, { prefix: 'dn', total, pad: 300, step: 50, pauseMs: 10 });
    try {
      await until(() => r.auditIDs().length >= total / 5, 'a fifth received', 60_000);
      await r.down();
      const downAt = writer.written();
      await until(
        () =>
          writer.written() >= Math.min(total, downAt + total / 4) && forwarder.metrics.value('retried') > 0,
        'lines written and sends failing while the receiver is down',
        60_000,
      );
      r.failNext(503, 3); // coming back, it first answers "unavailable"
      await r.up();
      await writer.done;
      await until(
        () => new Set(r.auditIDs()).size >= total,
        'everything after the receiver came back',
        60_000,
      );
    } finally {
      await writer.done;
      await forwarder.stop();
      await fileSink.close();
    }
    const got = r.auditIDs();
    expect([...new Set(got)]).toEqual(ids('dn', 0, total));
    expect(got.length).toBe(total); // a refused connection delivers nothing, so nothing comes twice
    expect(forwarder.metrics.value('retried')).toBeGreaterThan(0);
    console.log(`audit webhook outage: retried ${forwarder.metrics.value('retried')} event sends, 0 lost`);
  }, 180_000);

  it("delivers every event to Falco's own k8saudit webhook source, which starts only after lines piled up under load", async () => {
    const total = 3000;
    const fileSink = createFileSink({ path: log, maxSizeBytes: 128 * 1024, maxBackups: 0 });
    // The source's URL is fixed before it runs, so the forwarder retries against a closed port first.
    const source = await falcoWebhookSource({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      pemDir: dir,
    });
    const sink = createAuditWebhookSink({
      configFile: kubeconfig(source.url),
      maxBatchWaitMs: 20,
      throttleEnable: false,
      initialBackoffMs: 50,
      maxBackoffMs: 300,
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink,
      registry: new Registry(),
      pollIntervalMs: 10,
    });
    forwarder.start();
    const writer = writePaced(fileSink, { prefix: 'falco', total, pad: 300, step: 50, pauseMs: 10 });
    const auditIds = () => new Set(source.events().map((e) => e.fields['ka.auditid']));
    try {
      await until(
        () => writer.written() >= total / 3 && forwarder.metrics.value('retried') > 0,
        'lines written and sends failing while the source is not running',
        60_000,
      );
      await source.start();
      await writer.done;
      await until(() => auditIds().size >= total, 'every event through the Falco source', 60_000);
    } finally {
      await writer.done;
      await forwarder.stop();
      await fileSink.close();
      await source.stop();
    }
    // Every event once, in the order of the file: a refused connection delivers nothing, so nothing comes twice.
    expect(source.events().map((e) => e.fields['ka.auditid'])).toEqual(ids('falco', 0, total));
    for (const e of source.events()) {
      const id = e.fields['ka.auditid'] as string;
      expect(e.errors).toEqual({});
      expect(e.fields['ka.verb']).toBe('create');
      expect(e.fields['ka.target.resource']).toBe('configmaps');
      expect(e.fields['ka.target.name']).toBe(`cm-${id}`);
    }
    console.log(
      `Falco k8saudit webhook source: ${source.events().length} events for ${total} lines, ` +
        `${forwarder.metrics.value('retried')} event sends retried while it was not running`,
    );
  }, 180_000);

  it('skips only the event the receiver refuses for good, counting it failed', async () => {
    receiver = await startAuditWebhookReceiver({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      token: TOKEN,
      refuseAuditIDs: new Set(['bad-7']),
    });
    const r = receiver;
    appendEvents(log, ids('bad', 0, 20));
    const sink = createAuditWebhookSink({
      configFile: kubeconfig(r.url),
      throttleEnable: false,
      maxBatchWaitMs: 10,
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'cp'),
      sink,
      registry: new Registry(),
    });
    forwarder.start();
    await until(
      () => r.auditIDs().length === 19 && forwarder.metrics.value('failed') === 1,
      '19 events and 1 failure',
    );
    await forwarder.stop();
    expect(r.auditIDs()).toEqual(ids('bad', 0, 20).filter((id) => id !== 'bad-7'));
  }, 30_000);

  it('retries a receiver that refuses the token, as a configuration problem, never dropping', async () => {
    receiver = await startAuditWebhookReceiver({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      token: 'other',
    });
    const r = receiver;
    appendEvents(log, ids('tok', 0, 3));
    const sink = createAuditWebhookSink({
      configFile: kubeconfig(r.url),
      throttleEnable: false,
      maxBatchWaitMs: 10,
      initialBackoffMs: 10,
      maxBackoffMs: 20,
    });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'cp'),
      sink,
      registry: new Registry(),
    });
    forwarder.start();
    await until(() => r.stats().requests >= 3, 'three attempts');
    await forwarder.stop();
    expect(forwarder.metrics.value('failed')).toBe(0);
    expect(forwarder.metrics.value('retried')).toBeGreaterThanOrEqual(6);
  }, 30_000);

  it('sends again only the batch in flight when the forwarder process is killed', async () => {
    receiver = await startAuditWebhookReceiver({
      certFile: serverCert.certFile,
      keyFile: serverCert.keyFile,
      token: TOKEN,
    });
    const r = receiver;
    const total = 5000;
    appendEvents(log, ids('kill', 0, total), 200);
    const script = join(import.meta.dir, 'fixtures', 'forward-process.ts');
    const args = [process.execPath, script, log, join(dir, 'checkpoint.json'), kubeconfig(r.url)];
    const first = Bun.spawn(args, { stdout: 'ignore', stderr: 'inherit' });
    try {
      await until(() => r.auditIDs().length >= 1000, '1000 events before the kill', 60_000);
    } finally {
      first.kill('SIGKILL');
      await first.exited;
    }
    const second = Bun.spawn(args, { stdout: 'ignore', stderr: 'inherit' });
    try {
      await until(() => new Set(r.auditIDs()).size >= total, 'all events after the restart', 60_000);
    } finally {
      second.kill('SIGTERM');
      await second.exited;
    }
    const got = r.auditIDs();
    expect([...new Set(got)]).toEqual(ids('kill', 0, total));
    const duplicates = got.length - new Set(got).size;
    console.log(`forwarder killed with SIGKILL: ${duplicates} duplicates (batches of 100)`);
    expect(duplicates).toBeLessThanOrEqual(100); // at most the batch acknowledged but not checkpointed
  }, 120_000);
});

describe('createAuditWebhookSink', () => {
  it('holds requests to the throttle rate', async () => {
    const receiver = await startAuditWebhookReceiver();
    try {
      const sink = createAuditWebhookSink({
        target: { url: receiver.url, insecureSkipVerify: false },
        throttleQps: 20,
        throttleBurst: 2,
      });
      const event = { bytes: bytes('{"auditID":"t"}'), meta: {} };
      const started = performance.now();
      for (let i = 0; i < 8; i++) await sink.send([event], new AbortController().signal);
      // 2 at once from the burst, then 6 at 20 per second: at least 300 ms.
      expect(performance.now() - started).toBeGreaterThanOrEqual(290);
      expect(receiver.stats().accepted).toBe(8);
    } finally {
      await receiver.stop();
    }
  });

  it('refuses invalid options, naming the flag', () => {
    const target = { url: 'https://127.0.0.1:1/', insecureSkipVerify: false };
    expect(() => createAuditWebhookSink({})).toThrow('--audit-webhook-config-file');
    expect(() => createAuditWebhookSink({ target, maxBatchSize: 0 })).toThrow(
      '--audit-webhook-batch-max-size',
    );
    expect(() => createAuditWebhookSink({ target, maxBatchSize: 500, bufferSize: 100 })).toThrow(
      '--audit-webhook-batch-buffer-size',
    );
    expect(() => createAuditWebhookSink({ target, throttleQps: -1 })).toThrow(
      '--audit-webhook-batch-throttle-qps',
    );
  });

  it('joins events into an audit.k8s.io/v1 EventList without re-encoding them', () => {
    const body = eventListBody([
      { bytes: bytes('{"auditID":"a"}'), meta: {} },
      { bytes: bytes('{"auditID":"b"}'), meta: {} },
    ]);
    expect(JSON.parse(new TextDecoder().decode(body))).toEqual({
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      metadata: {},
      items: [{ auditID: 'a' }, { auditID: 'b' }],
    });
  });
});

describe('loadWebhookConfig', () => {
  let dir = '';
  beforeEach(() => {
    dir = makeTempDir('kubeconfig');
  });
  afterEach(() => removeDir(dir));

  it('reads inline data, relative files and a token file', () => {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'token'), 'abc\n');
    const file = join(dir, 'k.yaml');
    writeFileSync(
      file,
      [
        'clusters:',
        '- name: c',
        '  cluster:',
        '    server: https://falco.example:9765/k8s-audit',
        `    certificate-authority-data: ${Buffer.from('CA PEM').toString('base64')}`,
        '    tls-server-name: falco',
        'users:',
        '- name: u',
        '  user: {tokenFile: sub/token}',
        'contexts:',
        '- {name: x, context: {cluster: c, user: u}}',
        'current-context: x',
      ].join('\n'),
    );
    expect(loadWebhookConfig(file)).toEqual({
      url: 'https://falco.example:9765/k8s-audit',
      ca: 'CA PEM',
      serverName: 'falco',
      insecureSkipVerify: false,
      token: 'abc',
    });
  });

  it('says what is missing', () => {
    const file = join(dir, 'k.yaml');
    writeFileSync(file, 'clusters: []\ncontexts: []\n');
    expect(() => loadWebhookConfig(file)).toThrow('current-context is not set');
    writeFileSync(file, 'clusters: []\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n');
    expect(() => loadWebhookConfig(file)).toThrow(
      'cluster "c" (named by the current context) is not defined',
    );
    writeFileSync(
      file,
      'clusters: [{name: c, cluster: {server: "ftp://x"}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n',
    );
    expect(() => loadWebhookConfig(file)).toThrow('must be an http or https URL');
    expect(() => loadWebhookConfig(join(dir, 'missing'))).toThrow('cannot read');
  });
});
