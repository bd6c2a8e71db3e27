/**
 * @module Forwarding to Falco's k8saudit webhook source, its real code from its Go module, run by a small Go driver.
 *
 * The driver (test/forward/falco-k8saudit) is built into .cache/falco-k8saudit on first use. It
 * serves the plugin's HTTPS endpoint and prints each event the plugin accepted.
 */

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'bun:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import { createAuditWebhookSink } from '../../src/forward/audit-webhook.ts';
import { createForwarder } from '../../src/forward/forwarder.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import { makeCa, makeServerCert, type TestCa } from '../helpers/certs.ts';
import { makeTempDir, removeDir } from '../sink/helpers.ts';
import { bytes, eventLine, ids, until } from './helpers.ts';

const DRIVER_SOURCE = resolve(import.meta.dir, 'falco-k8saudit');
const DRIVER = resolve(import.meta.dir, '../../.cache/falco-k8saudit/falco-k8saudit');

/** Building the plugin with cgo on 2 cores, cold module cache included. */
const BUILD_TIMEOUT_MS = 600_000;

async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** A running driver: the auditIDs it printed so far. */
type Falco = { auditIDs: string[]; stop(): Promise<void> };

async function startFalco(port: number, pemFile: string): Promise<Falco> {
  const proc = Bun.spawn([DRIVER, `https://127.0.0.1:${port}/k8s-audit`, pemFile], {
    stdout: 'pipe',
    stderr: 'inherit',
  });
  const auditIDs: string[] = [];
  let ready = false;
  void (async () => {
    let rest = '';
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      rest += decoder.decode(chunk, { stream: true });
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (line === 'ready') ready = true;
        else if (line !== '') auditIDs.push((JSON.parse(line) as { auditID: string }).auditID);
      }
    }
  })();
  // The plugin starts listening right after this, from a goroutine; until it does, the forwarder retries.
  await until(() => ready, 'the driver to open the plugin', 30_000);
  return {
    auditIDs,
    async stop() {
      proc.kill('SIGKILL');
      await proc.exited;
    },
  };
}

describe("Falco's k8saudit webhook source as the receiver", () => {
  let certDir = '';
  let ca: TestCa;
  let pemFile = '';
  let dir = '';
  let log = '';
  let falco: Falco | undefined;

  beforeAll(async () => {
    const build = Bun.spawn(['go', 'build', '-o', DRIVER, '.'], {
      cwd: DRIVER_SOURCE,
      stdout: 'inherit',
      stderr: 'inherit',
      env: { ...process.env, CGO_ENABLED: '1' },
    });
    expect(await build.exited).toBe(0);
    certDir = makeTempDir('falco-certs');
    mkdirSync(join(certDir, 'certs'));
    ca = await makeCa(join(certDir, 'certs'));
    const server = await makeServerCert(join(certDir, 'certs'), ca);
    pemFile = join(certDir, 'falco.pem');
    writeFileSync(pemFile, `${server.cert}${server.key}`);
  }, BUILD_TIMEOUT_MS);
  afterAll(() => removeDir(certDir));
  beforeEach(() => {
    dir = makeTempDir('falco');
    log = join(dir, 'audit.log');
  });
  afterEach(async () => {
    await falco?.stop();
    falco = undefined;
    removeDir(dir);
  });

  it('delivers every event under load to a Falco that is down at first and comes up later', async () => {
    const port = await freePort();
    const kubeconfig = join(certDir, 'falco.kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters:
- name: falco
  cluster: {server: "https://127.0.0.1:${port}/k8s-audit", certificate-authority: certs/ca.crt}
contexts:
- name: falco
  context: {cluster: falco}
current-context: falco
`,
    );
    const total = 3000;
    const fileSink = createFileSink({ path: log, maxSizeBytes: 64 * 1024, maxBackups: 0 });
    const forwarder = createForwarder({
      path: log,
      checkpointPath: join(dir, 'checkpoint.json'),
      sink: createAuditWebhookSink({
        configFile: kubeconfig,
        maxBatchWaitMs: 20,
        throttleQps: 100,
        initialBackoffMs: 50,
        maxBackoffMs: 200,
      }),
      registry: new Registry(),
      pollIntervalMs: 10,
    });
    forwarder.start();
    let written = 0;
    const writer = (async () => {
      while (written < total) {
        const step = ids('falco', written, Math.min(total, written + 50));
        await Promise.all(step.map((id) => fileSink.write(bytes(eventLine(id, 200)))));
        written += step.length;
        await Bun.sleep(5);
      }
    })();
    try {
      await until(
        () => written >= total / 3 && forwarder.metrics.value('retried') > 0,
        'retries while Falco is down',
        60_000,
      );
      falco = await startFalco(port, pemFile);
      await writer;
      const f = falco;
      await until(() => f.auditIDs.length >= total, `${total} events through Falco's plugin`, 60_000);
    } finally {
      await writer;
      await forwarder.stop();
      await fileSink.close();
    }
    expect(falco.auditIDs).toEqual(ids('falco', 0, total));
  }, 120_000);
});
