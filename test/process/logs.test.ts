/**
 * Process-level: request content never reaches the application log, even with `-v` and a review
 * crafted to put object content where the debug entry reads identifiers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { join } from 'node:path';
import { type ServerProcess, startServer, waitUntil } from '../helpers/server-process.ts';
import { loggedUids, makeProcessFixture, type ProcessFixture } from './fixture.ts';

let fx: ProcessFixture;
let server: ServerProcess;
let logFile: string;

beforeAll(async () => {
  fx = await makeProcessFixture('kar-logs-');
  logFile = join(fx.dir, 'audit.log');
  server = await startServer([...fx.tlsArgs, `--logger-filename=${logFile}`, '-v']);
});

afterAll(async () => {
  if (server.proc.exitCode === null) expect(await server.terminate()).toBe(0);
  fx.cleanup();
});

async function post(body: string): Promise<Response> {
  return fetch(`https://127.0.0.1:${server.port}/log-request`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    tls: { ca: fx.ca.cert },
  });
}

/** A review whose identifier fields hold objects, arrays, numbers and booleans carrying `marker`. */
function craftedReview(uid: string, marker: string): string {
  const secret = { password: `${marker}-password`, data: { token: `${marker}-token` } };
  return JSON.stringify({
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid,
      operation: { verb: `${marker}-operation`, ...secret },
      kind: { group: { g: `${marker}-group` }, version: 'v1', kind: [`${marker}-kind`, secret] },
      resource: { group: '', version: 'v1', resource: 'secrets' },
      subResource: { s: `${marker}-subresource` },
      namespace: [`${marker}-namespace`],
      name: { n: `${marker}-name`, ...secret },
      userInfo: { username: { u: `${marker}-user` }, groups: [`${marker}-group`], extra: secret },
      object: { kind: 'Secret', apiVersion: 'v1', data: { key: `${marker}-object` } },
      oldObject: null,
    },
  });
}

describe('application log with -v', () => {
  it('keeps the object content of a crafted review out of stderr, logging only its uid', async () => {
    const res = await post(craftedReview('crafted-1', 'SENTINEL'));
    expect(res.status).toBe(200);
    expect(loggedUids(logFile)).toContain('crafted-1');
    await waitUntil(() => server.stderr().includes('uid="crafted-1"'), 5_000, 'the debug entry');
    expect(server.stderr()).not.toContain('SENTINEL');
  });

  it('cuts each identifier to 253 characters in the debug entry', async () => {
    const long = 'n'.repeat(10_000);
    const body = JSON.stringify({
      kind: 'AdmissionReview',
      apiVersion: 'admission.k8s.io/v1',
      request: { uid: 'long-name', name: long, namespace: 'ns', operation: 'CREATE' },
    });
    expect((await post(body)).status).toBe(200);
    await waitUntil(() => server.stderr().includes('uid="long-name"'), 5_000, 'the debug entry');
    expect(server.stderr()).toContain(`name="${'n'.repeat(253)}…"`);
    expect(server.stderr()).not.toContain('n'.repeat(254));
  });

  it('logs no content of a refused body', async () => {
    for (const body of [
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"x","object":"REFUSED-SENTINEL"}`,
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{"uid":"REFUSED-SENTINEL"}}`,
      `{"kind":"REFUSED-SENTINEL"}`,
      `REFUSED-SENTINEL`,
    ]) {
      expect((await post(body)).status).toBe(400);
    }
    await waitUntil(
      () => server.stderr().split('request refused').length > 4,
      5_000,
      'the four refusals to be logged',
    );
    expect(server.stderr()).not.toContain('REFUSED-SENTINEL');
  });
});
