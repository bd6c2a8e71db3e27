/**
 * @module Tests of the DER writer and the certificates made with it: byte-level encodings against X.690's
 * examples, and whole certificates read by `openssl x509 -text`, checked by `openssl verify` and served over a
 * real TLS handshake.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bitString,
  namedBits,
  octetString,
  oid,
  readElement,
  smallInteger,
  time,
  unsignedInteger,
} from '../../src/self-managed/der.ts';
import {
  createCaCertificate,
  createServingCertificate,
  generateKeyPair,
  ipAddressBytes,
} from '../../src/self-managed/x509.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const HOUR_MS = 3_600_000;

describe('der', () => {
  it('writes short and long length forms when the contents pass 127 and 255 bytes', () => {
    expect(hex(octetString(new Uint8Array(5)).subarray(0, 2))).toBe('0405');
    expect(hex(octetString(new Uint8Array(200)).subarray(0, 3))).toBe('0481c8');
    expect(hex(octetString(new Uint8Array(300)).subarray(0, 4))).toBe('0482012c');
    const element = readElement(octetString(new Uint8Array(300)), 0);
    expect([element.contentStart, element.end]).toEqual([4, 304]);
  });

  it('keeps integers positive and minimal when the top bit is set or zeros lead', () => {
    expect(hex(smallInteger(0))).toBe('020100');
    expect(hex(smallInteger(127))).toBe('02017f');
    expect(hex(smallInteger(128))).toBe('02020080');
    expect(hex(smallInteger(256))).toBe('02020100');
    expect(hex(unsignedInteger(Uint8Array.of(0, 0, 0x12)))).toBe('020112');
    expect(() => smallInteger(-1)).toThrow(RangeError);
  });

  it('encodes object identifiers in base 128 when arcs pass 127', () => {
    // ecdsa-with-SHA256, as every certificate signed with it carries.
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302');
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    expect(() => oid('1')).toThrow(RangeError);
  });

  it('drops trailing zero bits of named bit strings and counts them in the first byte', () => {
    expect(hex(namedBits([0]))).toBe('03020780'); // digitalSignature
    expect(hex(namedBits([0, 5, 6]))).toBe('03020186'); // + keyCertSign, cRLSign
    expect(hex(namedBits([8]))).toBe('0303070080');
    expect(hex(bitString(Uint8Array.of(0xab)))).toBe('030200ab');
  });

  it('writes UTCTime before 2050 and GeneralizedTime from 2050, in whole seconds', () => {
    const text = (bytes: Uint8Array) => Buffer.from(bytes.subarray(2)).toString('latin1');
    expect(time(new Date('2049-12-31T23:59:59.999Z'))[0]).toBe(0x17);
    expect(text(time(new Date('2049-12-31T23:59:59.999Z')))).toBe('491231235959Z');
    expect(time(new Date('2050-01-01T00:00:00Z'))[0]).toBe(0x18);
    expect(text(time(new Date('2050-01-01T00:00:00Z')))).toBe('20500101000000Z');
  });
});

describe('ipAddressBytes', () => {
  it('reads IPv4, IPv6 with :: and an embedded IPv4 address, and refuses anything else', () => {
    expect(hex(ipAddressBytes('127.0.0.1') ?? new Uint8Array())).toBe('7f000001');
    expect(hex(ipAddressBytes('::1') ?? new Uint8Array())).toBe(`${'0'.repeat(30)}01`);
    expect(hex(ipAddressBytes('fd00::a:1') ?? new Uint8Array())).toBe('fd0000000000000000000000000a0001');
    expect(hex(ipAddressBytes('::ffff:10.0.0.1') ?? new Uint8Array())).toBe(
      '00000000000000000000ffff0a000001',
    );
    expect(ipAddressBytes('1.2.3')).toBeUndefined();
    expect(ipAddressBytes('example.com')).toBeUndefined();
    expect(ipAddressBytes('fe80::1%eth0')).toBeUndefined();
  });
});

/** Runs openssl with `args`; resolves its exit status and combined output. */
async function openssl(...args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(['openssl', ...args], { stdout: 'pipe', stderr: 'pipe' });
  const [code, out, err] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, out: out + err };
}

describe('x509 certificates', () => {
  let dir: string;
  const now = Date.now();
  const caKeys = generateKeyPair();
  const ca = createCaCertificate({
    commonName: 'kube-audit-rest-ca@test',
    keys: caKeys,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 24 * HOUR_MS),
  });
  const leafKeys = generateKeyPair();
  const leaf = createServingCertificate({
    commonName: 'kube-audit-rest.kube-audit-rest.svc',
    publicKey: leafKeys.publicKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + HOUR_MS),
    dnsNames: ['kube-audit-rest.kube-audit-rest.svc', 'localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    issuer: { certificatePem: ca, privateKey: caKeys.privateKey },
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kar-x509-'));
    await writeFile(join(dir, 'ca.crt'), ca);
    await writeFile(join(dir, 'leaf.crt'), leaf);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('makes a CA that openssl reads as a critical CA:TRUE with path length 0, allowed to sign certificates', async () => {
    const { code, out } = await openssl('x509', '-in', join(dir, 'ca.crt'), '-noout', '-text');
    expect(code).toBe(0);
    expect(out).toContain('Version: 3 (0x2)');
    expect(out).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(out).toContain('Subject: CN = kube-audit-rest-ca@test');
    expect(out).toContain('Issuer: CN = kube-audit-rest-ca@test');
    expect(out).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(out).toMatch(/Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(out)?.[1];
    expect(ski).toHaveLength(59); // 20 bytes
    expect(out).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${ski}`));
    expect((await openssl('verify', '-CAfile', join(dir, 'ca.crt'), join(dir, 'ca.crt'))).code).toBe(0);
  });

  it('makes a serving certificate that openssl verifies against its CA for TLS server use', async () => {
    const text = await openssl('x509', '-in', join(dir, 'leaf.crt'), '-noout', '-text');
    expect(text.out).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text.out).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text.out).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication/);
    expect(text.out).toContain(
      'DNS:kube-audit-rest.kube-audit-rest.svc, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    const verified = await openssl(
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      join(dir, 'ca.crt'),
      join(dir, 'leaf.crt'),
    );
    expect(verified.out).toContain('leaf.crt: OK');
    expect(verified.code).toBe(0);
    // The authority key identifier names the CA's subject key identifier.
    const caText = await openssl('x509', '-in', join(dir, 'ca.crt'), '-noout', '-text');
    const caSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(caText.out)?.[1] ?? '?';
    expect(text.out).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${caSki}`));
  });

  it('is refused by openssl verify when checked against another CA', async () => {
    const otherKeys = generateKeyPair();
    const other = createCaCertificate({
      commonName: 'kube-audit-rest-ca@test', // the same name: only the key tells them apart
      keys: otherKeys,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR_MS),
    });
    await writeFile(join(dir, 'other.crt'), other);
    const verified = await openssl('verify', '-CAfile', join(dir, 'other.crt'), join(dir, 'leaf.crt'));
    expect(verified.code).not.toBe(0);
  });

  it('writes the validity period node:crypto reads back, to the second', () => {
    const x509 = new X509Certificate(leaf);
    expect(x509.validFromDate.getTime()).toBe(Math.floor((now - 60_000) / 1000) * 1000);
    expect(x509.validToDate.getTime()).toBe(Math.floor((now + HOUR_MS) / 1000) * 1000);
    expect(x509.checkIssued(new X509Certificate(ca))).toBe(true);
    expect(x509.verify(new X509Certificate(ca).publicKey)).toBe(true);
    expect(x509.checkPrivateKey(leafKeys.privateKey)).toBe(true);
  });

  it('writes dates from 2050 on that openssl reads', async () => {
    const far = createCaCertificate({
      commonName: 'far',
      keys: caKeys,
      notBefore: new Date('2049-06-01T00:00:00Z'),
      notAfter: new Date('2051-06-01T00:00:00Z'),
    });
    await writeFile(join(dir, 'far.crt'), far);
    const { out } = await openssl('x509', '-in', join(dir, 'far.crt'), '-noout', '-dates');
    expect(out).toContain('notBefore=Jun  1 00:00:00 2049 GMT');
    expect(out).toContain('notAfter=Jun  1 00:00:00 2051 GMT');
  });

  it('is accepted in a real TLS handshake by a client that trusts only the CA', async () => {
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      tls: { cert: leaf, key: leafKeys.privateKeyPem },
      fetch: () => new Response('ok'),
    });
    try {
      const res = await fetch(`https://127.0.0.1:${server.port}/`, { tls: { ca } });
      expect(await res.text()).toBe('ok');
      const untrusted = await fetch(`https://127.0.0.1:${server.port}/`).then(
        () => 'connected',
        (err: Error) => err.message,
      );
      expect(untrusted).not.toBe('connected');
    } finally {
      await server.stop(true);
    }
  });

  it('refuses a serving certificate without names, or with an address that is not one', () => {
    const base = {
      commonName: 'x',
      publicKey: leafKeys.publicKey,
      notBefore: new Date(now),
      notAfter: new Date(now + HOUR_MS),
      issuer: { certificatePem: ca, privateKey: caKeys.privateKey },
    };
    expect(() => createServingCertificate({ ...base, dnsNames: [], ipAddresses: [] })).toThrow(
      'at least one DNS name or IP address',
    );
    expect(() => createServingCertificate({ ...base, dnsNames: [], ipAddresses: ['300.1.1.1'] })).toThrow(
      'not an IP address',
    );
  });
});
