import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/support/log.ts';
import { TlsMaterialError } from '../../src/tls/material.ts';
import { startTlsServer, type TlsServer } from '../../src/tls/server.ts';
import {
  makeCa,
  makeServerCert,
  type ServerCertOptions,
  type TestCa,
  type TestServerCert,
} from '../helpers/certs.ts';
import { writeSecretVolume } from '../helpers/secret-volume.ts';

/** Deadline for anything a test waits on. */
const DEADLINE_MS = 10_000;

let dir: string;
let serverCa: TestCa;
let server: TestServerCert;
let clientCa: TestCa;
let otherCa: TestCa;
let client: TestServerCert;
let otherClient: TestServerCert;
let expiredClient: TestServerCert;
let serverAuthOnly: TestServerCert;
const running: TlsServer[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-client-ca-'));
  [serverCa, clientCa, otherCa] = await Promise.all([
    makeCa(dir, { name: 'server-ca' }),
    makeCa(dir, { name: 'client-ca', commonName: 'client CA' }),
    makeCa(dir, { name: 'other-ca', commonName: 'other CA' }),
  ]);
  const asClient: ServerCertOptions = { extendedKeyUsage: 'clientAuth', dnsNames: [], ipAddresses: [] };
  [server, client, otherClient, expiredClient, serverAuthOnly] = await Promise.all([
    makeServerCert(dir, serverCa),
    makeServerCert(dir, clientCa, { ...asClient, name: 'client', commonName: 'kube-apiserver' }),
    makeServerCert(dir, otherCa, { ...asClient, name: 'other-client' }),
    makeServerCert(dir, clientCa, { ...asClient, name: 'expired-client', days: 0 }),
    makeServerCert(dir, clientCa, { name: 'server-auth-only' }),
  ]);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop(true)));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(10);
  }
}

async function serve(files: { certFile: string; keyFile: string; clientCaFile?: string }, extra = {}) {
  const s = await startTlsServer({
    hostname: '127.0.0.1',
    port: 0,
    logger: silentLogger,
    fetch: () => new Response('ok'),
    reloadIntervalMs: 0,
    drainMs: 0,
    debounceMs: 20,
    ...files,
    ...extra,
  });
  running.push(s);
  return s;
}

/** Makes one request with `cert` as the client certificate (none if undefined); 'ok' or the error's code. */
async function call(port: number, cert: TestServerCert | undefined): Promise<string> {
  try {
    const res = await fetch(`https://127.0.0.1:${port}/`, {
      tls: { ca: serverCa.cert, ...(cert ? { cert: cert.cert, key: cert.key } : {}) },
      keepalive: false,
    });
    return await res.text();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

describe('startTlsServer with clientCaFile', () => {
  it('lets in a client whose certificate the CA signed and refuses every other at the handshake', async () => {
    const s = await serve({ ...server, clientCaFile: clientCa.certFile });
    expect(await call(s.port, client)).toBe('ok');
    expect(await call(s.port, undefined)).not.toBe('ok');
    expect(await call(s.port, otherClient)).not.toBe('ok');
    // Validity is checked to the second: past notAfter means the second after it.
    await until(
      'the expired certificate has expired',
      () => Date.now() > new X509Certificate(expiredClient.cert).validToDate.getTime() + 1000,
    );
    expect(await call(s.port, expiredClient)).not.toBe('ok');
    // A certificate for servers only (extendedKeyUsage serverAuth) is no client certificate.
    expect(await call(s.port, serverAuthOnly)).not.toBe('ok');
    expect(await call(s.port, client)).toBe('ok');
  });

  it('asks no client for a certificate when clientCaFile is not given', async () => {
    const s = await serve(server);
    expect(await call(s.port, undefined)).toBe('ok');
  });

  it('follows a changed client CA in a kubelet-style Secret, with the certificate unchanged', async () => {
    const volume = join(dir, 'volume');
    const publish = (ca: TestCa) =>
      writeSecretVolume(volume, { 'tls.crt': server.cert, 'tls.key': server.key, 'ca.crt': ca.cert });
    await publish(clientCa);
    let reloads = 0;
    const s = await serve(
      {
        certFile: join(volume, 'tls.crt'),
        keyFile: join(volume, 'tls.key'),
        clientCaFile: join(volume, 'ca.crt'),
      },
      { onReload: () => reloads++ },
    );
    expect(await call(s.port, client)).toBe('ok');
    expect(await call(s.port, otherClient)).not.toBe('ok');
    await publish(otherCa);
    await until('the new CA is in force', async () => (await call(s.port, otherClient)) === 'ok');
    expect(await call(s.port, client)).not.toBe('ok');
    expect(reloads).toBe(1);
    expect(s.material.fingerprint256).toBe(server.fingerprint256);
  });

  it('keeps the previous client CA and reports when the new file is not a CA bundle', async () => {
    const caFile = join(dir, 'bundle.crt');
    await writeFile(caFile, clientCa.cert);
    const errors: Error[] = [];
    const s = await serve(
      { ...server, clientCaFile: caFile },
      { reloadIntervalMs: 20, watch: false, onReloadError: (e: Error) => errors.push(e) },
    );
    await writeFile(caFile, client.cert); // a leaf, not a CA
    await until('the refusal is reported', () => errors.length > 0);
    expect(errors[0]?.message).toBe(`client CA ${caFile}: the certificate is not a CA certificate`);
    expect(await call(s.port, client)).toBe('ok');

    await writeFile(caFile, 'not PEM');
    await until('the second refusal is reported', () => errors.length > 1);
    expect(errors[1]?.message).toBe(`client CA ${caFile}: no PEM certificate found`);
    expect(await call(s.port, client)).toBe('ok');
  });

  it('rejects at start, naming the file, when the client CA is missing or not a CA', async () => {
    const missing = join(dir, 'absent.crt');
    await expect(serve({ ...server, clientCaFile: missing })).rejects.toThrow(
      `client CA ${missing}: cannot read (ENOENT)`,
    );
    const leaf = await serve({ ...server, clientCaFile: client.certFile }).catch((e: unknown) => e);
    expect(leaf).toBeInstanceOf(TlsMaterialError);
    expect((leaf as Error).message).toBe(
      `client CA ${client.certFile}: the certificate is not a CA certificate`,
    );
  });
});
