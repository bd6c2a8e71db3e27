import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTlsMaterial, parseTlsMaterial, TlsMaterialError } from '../../src/tls/material.ts';
import type { TestCa, TestServerCert } from '../helpers/certs.ts';
import { makeCa, makeServerCert } from '../helpers/certs.ts';

let dir: string;
let ca: TestCa;
let server: TestServerCert;
let other: TestServerCert;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-tls-'));
  ca = await makeCa(dir);
  server = await makeServerCert(dir, ca, { name: 'server' });
  other = await makeServerCert(dir, ca, { name: 'other', commonName: 'other', dnsNames: ['other.example'] });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `text` to a new file in the temp dir and returns its path. */
async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** The rejection of `promise`, which must reject with a TlsMaterialError. */
async function failure(promise: Promise<unknown>): Promise<TlsMaterialError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TlsMaterialError);
  return err as TlsMaterialError;
}

describe('loadTlsMaterial', () => {
  it('describes the leaf when the pair is valid', async () => {
    const material = await loadTlsMaterial(server.certFile, server.keyFile);
    expect(material.cert).toBe(server.cert);
    expect(material.key).toBe(server.key);
    expect(material.fingerprint256).toBe(server.fingerprint256);
    expect(material.subject).toBe('CN=localhost');
    expect(material.issuer).toBe('CN=kube-audit-rest test CA');
    expect(material.sans).toEqual(['DNS:localhost', 'IP:127.0.0.1']);
    const day = 24 * 60 * 60 * 1000;
    expect(material.notAfter.getTime() - material.notBefore.getTime()).toBe(day);
    expect(Math.abs(material.notBefore.getTime() - Date.now())).toBeLessThan(5 * 60 * 1000);
  });

  it('keeps the whole chain and describes its first certificate when the file holds a chain', async () => {
    const chainFile = await file('chain.crt', `${server.cert}${ca.cert}`);
    const material = await loadTlsMaterial(chainFile, server.keyFile);
    expect(material.cert).toBe(`${server.cert}${ca.cert}`);
    expect(material.fingerprint256).toBe(server.fingerprint256);
  });

  it('names the certificate file and the errno when it is missing', async () => {
    const missing = join(dir, 'nope.crt');
    const err = await failure(loadTlsMaterial(missing, server.keyFile));
    expect(err.message).toBe(`certificate ${missing}: cannot read (ENOENT)`);
    expect(err.file).toBe(missing);
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('names the key file when it is missing', async () => {
    const missing = join(dir, 'nope.key');
    const err = await failure(loadTlsMaterial(server.certFile, missing));
    expect(err.message).toBe(`key ${missing}: cannot read (ENOENT)`);
    expect(err.file).toBe(missing);
  });

  it('says no PEM certificate was found when the certificate file holds garbage', async () => {
    const garbage = await file('garbage.crt', 'this is not a certificate\n');
    const err = await failure(loadTlsMaterial(garbage, server.keyFile));
    expect(err.message).toBe(`certificate ${garbage}: no PEM certificate found`);
    expect(err.file).toBe(garbage);
  });

  it('says which block cannot be parsed when a PEM block is corrupt', async () => {
    const corrupt = await file(
      'corrupt.crt',
      `${server.cert}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`,
    );
    const err = await failure(loadTlsMaterial(corrupt, server.keyFile));
    expect(err.message).toStartWith(`certificate ${corrupt}: cannot parse certificate 2 of 2 (`);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('says no PEM private key was found when the key file holds a certificate', async () => {
    const err = await failure(loadTlsMaterial(server.certFile, server.certFile));
    expect(err.message).toBe(`key ${server.certFile}: no PEM private key found`);
  });

  it('says the key cannot be parsed when its PEM body is garbage', async () => {
    const badKey = await file(
      'bad.key',
      '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n',
    );
    const err = await failure(loadTlsMaterial(server.certFile, badKey));
    expect(err.message).toStartWith(`key ${badKey}: cannot parse private key (`);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('refuses a key that belongs to another certificate', async () => {
    const err = await failure(loadTlsMaterial(server.certFile, other.keyFile));
    expect(err.message).toBe(`key ${other.keyFile} does not match certificate ${server.certFile}`);
    expect(err.file).toBeUndefined();
  });

  it('never puts key material in an error message', async () => {
    const err = await failure(loadTlsMaterial(server.certFile, other.keyFile));
    const body = other.key.split('\n')[1] ?? '';
    expect(body.length).toBeGreaterThan(20);
    expect(err.message).not.toContain(body);
  });
});

describe('parseTlsMaterial', () => {
  it('lists every SAN kind when the certificate has several', async () => {
    const multi = await makeServerCert(dir, ca, {
      name: 'multi',
      dnsNames: ['a.example', 'b.example'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const material = parseTlsMaterial('c', 'k', multi.cert, multi.key);
    expect(material.sans).toEqual(['DNS:a.example', 'DNS:b.example', 'IP:127.0.0.1', 'IP:0:0:0:0:0:0:0:1']);
  });
});
