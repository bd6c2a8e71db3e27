/**
 * @module Test certificates made at test time with the `openssl` command: a CA, and server certificates it signs.
 *
 * ```ts
 * const dir = mkdtempSync(join(tmpdir(), 'kar-'));
 * const ca = await makeCa(dir);
 * const server = await makeServerCert(dir, ca); // CN localhost, SANs DNS:localhost and IP:127.0.0.1
 * // serve server.certFile / server.keyFile; trust ca.cert in the client
 * ```
 *
 * Keys are EC P-256 unless asked otherwise (fast to make). Each call spawns openssl; nothing is cached.
 * {@link makeCaAndServerCertInProcess} makes the same pair without openssl, for the demo.
 */

import { randomBytes, X509Certificate } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createCaCertificate,
  createServingCertificate,
  generateKeyPair,
} from '../../src/self-managed/x509.ts';

/** A certificate authority made by {@link makeCa}. */
export type TestCa = {
  /** Path of the CA certificate (PEM). */
  readonly certFile: string;
  /** Path of the CA private key (PEM). */
  readonly keyFile: string;
  /** The CA certificate's PEM text, ready for a client's `ca` option. */
  readonly cert: string;
};

/** Options for {@link makeCa}. */
export type CaOptions = {
  /** Subject common name. Default `kube-audit-rest test CA`. */
  commonName?: string;
  /** Validity in days from now. Default 2. */
  days?: number;
  /** File name stem inside `dir`: `<name>.crt` and `<name>.key`. Default `ca`. */
  name?: string;
};

/** Options for {@link makeServerCert}. */
export type ServerCertOptions = {
  /** File name stem inside `dir`: `<name>.crt` and `<name>.key`. Default `server`. */
  name?: string;
  /** Subject common name. Default `localhost`. */
  commonName?: string;
  /** DNS subject alternative names. Default `['localhost']`. */
  dnsNames?: string[];
  /** IP subject alternative names. Default `['127.0.0.1']`. */
  ipAddresses?: string[];
  /** Validity in days from now. Default 1. */
  days?: number;
  /** Key algorithm. Default `ec` (P-256); `rsa` is 2048-bit and slower to make. */
  keyType?: 'ec' | 'rsa';
  /** What the certificate is for. Default `serverAuth`; `clientAuth` makes a client certificate. */
  extendedKeyUsage?: 'serverAuth' | 'clientAuth';
};

/** A server certificate made by {@link makeServerCert}. */
export type TestServerCert = {
  /** Path of the leaf certificate (PEM, leaf only; append `ca.cert` yourself for a chain). */
  readonly certFile: string;
  /** Path of its private key (PEM). */
  readonly keyFile: string;
  /** The certificate's PEM text. */
  readonly cert: string;
  /** The key's PEM text. */
  readonly key: string;
  /** SHA-256 fingerprint as openssl prints it, `AB:CD:...`: the form node's `getPeerCertificate()` reports. */
  readonly fingerprint256: string;
};

/** Runs openssl with the given arguments; rejects with its stderr when it fails. */
export async function openssl(args: string[], stdin?: string): Promise<string> {
  const proc = Bun.spawn(['openssl', ...args], {
    stdin: stdin === undefined ? 'ignore' : new TextEncoder().encode(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`openssl ${args[0]} exited ${code}: ${err.trim()}`);
  return out;
}

function keyArgs(keyType: 'ec' | 'rsa'): string[] {
  return keyType === 'ec'
    ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
    : ['-newkey', 'rsa:2048'];
}

/** Makes a self-signed CA certificate and key in `dir` (which must exist). */
export async function makeCa(dir: string, options: CaOptions = {}): Promise<TestCa> {
  const name = options.name ?? 'ca';
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await openssl([
    'req',
    '-x509',
    ...keyArgs('ec'),
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    String(options.days ?? 2),
    '-subj',
    `/CN=${options.commonName ?? 'kube-audit-rest test CA'}`,
  ]);
  return { certFile, keyFile, cert: await readFile(certFile, 'utf8') };
}

/**
 * Makes a server certificate signed by `ca`, with its key, in `dir`; for serverAuth (or clientAuth),
 * with the given SANs. `days: 0` makes one whose validity ends the second it starts.
 */
export async function makeServerCert(
  dir: string,
  ca: TestCa,
  options: ServerCertOptions = {},
): Promise<TestServerCert> {
  const name = options.name ?? 'server';
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const extFile = join(dir, `${name}.ext`);
  const sans = [
    ...(options.dnsNames ?? ['localhost']).map((n) => `DNS:${n}`),
    ...(options.ipAddresses ?? ['127.0.0.1']).map((ip) => `IP:${ip}`),
  ];
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${options.extendedKeyUsage ?? 'serverAuth'}`,
    ...(sans.length > 0 ? [`subjectAltName=${sans.join(',')}`] : []),
  ];
  await writeFile(extFile, `${ext.join('\n')}\n`);
  try {
    const subj = `/CN=${options.commonName ?? 'localhost'}`;
    const keyType = options.keyType ?? 'ec';
    await openssl([
      'req',
      '-new',
      ...keyArgs(keyType),
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      csrFile,
      '-subj',
      subj,
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
      // A random serial rather than -CAcreateserial, so parallel calls never share a serial file.
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      '-days',
      String(options.days ?? 1),
      '-sha256',
      '-extfile',
      extFile,
      '-out',
      certFile,
    ]);
  } finally {
    await Promise.all([rm(csrFile, { force: true }), rm(extFile, { force: true })]);
  }
  const printed = await openssl(['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256']);
  const fingerprint256 = printed.trim().split('=')[1] ?? '';
  return {
    certFile,
    keyFile,
    cert: await readFile(certFile, 'utf8'),
    key: await readFile(keyFile, 'utf8'),
    fingerprint256,
  };
}

/**
 * Makes a CA and a server certificate it signs, for `ipAddresses` and `dnsNames`, without the openssl command:
 * with kube-audit-rest's own X.509 writer (src/self-managed/x509.ts, what `--tls-mode=self-managed` serves in
 * production) and node:crypto's P-256 keys. What the README's demo and the real-apiserver suite use, so they
 * run on a machine that has no openssl. Files as {@link makeCa} and {@link makeServerCert} name them.
 */
export async function makeCaAndServerCertInProcess(
  dir: string,
  options: { readonly dnsNames?: readonly string[]; readonly ipAddresses?: readonly string[] } = {},
): Promise<{ ca: TestCa; server: TestServerCert }> {
  const now = Date.now();
  const notBefore = new Date(now - CLOCK_SKEW_MS);
  const caKeys = generateKeyPair();
  const caPem = createCaCertificate({
    commonName: 'kube-audit-rest test CA',
    keys: caKeys,
    notBefore,
    notAfter: new Date(now + 2 * DAY_MS),
  });
  const serverKeys = generateKeyPair();
  const serverPem = createServingCertificate({
    commonName: 'localhost',
    publicKey: serverKeys.publicKey,
    notBefore,
    notAfter: new Date(now + DAY_MS),
    dnsNames: options.dnsNames ?? ['localhost'],
    ipAddresses: options.ipAddresses ?? ['127.0.0.1'],
    issuer: { certificatePem: caPem, privateKey: caKeys.privateKey },
  });
  const files = {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
  };
  await Promise.all([
    writeFile(files.caCert, caPem),
    writeFile(files.caKey, caKeys.privateKeyPem, { mode: 0o600 }),
    writeFile(files.cert, serverPem),
    writeFile(files.key, serverKeys.privateKeyPem, { mode: 0o600 }),
  ]);
  return {
    ca: { certFile: files.caCert, keyFile: files.caKey, cert: caPem },
    server: {
      certFile: files.cert,
      keyFile: files.key,
      cert: serverPem,
      key: serverKeys.privateKeyPem,
      fingerprint256: new X509Certificate(serverPem).fingerprint256,
    },
  };
}

/** A day in ms. */
const DAY_MS = 86_400_000;
/** Certificates start a minute in the past, so a clock slightly behind still takes them as valid. */
const CLOCK_SKEW_MS = 60_000;
