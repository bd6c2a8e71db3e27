/**
 * @module X.509 v3 certificates (RFC 5280) for the self-managed CA and serving certificate: ECDSA P-256 keys
 * from node:crypto, the certificate written with der.ts and signed with `crypto.sign`.
 *
 * node:crypto makes keys and signatures but not certificates. What a webhook's CA and serving certificate need
 * is small: a subject name, a validity period, the key, and five extensions (basic constraints, key usage,
 * extended key usage, subject alternative names, key identifiers); this module writes exactly that.
 */
import {
  createHash,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import {
  bitString,
  boolean,
  children,
  explicit,
  implicit,
  namedBits,
  octetString,
  oid,
  readElement,
  sequence,
  set,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
} from './der.ts';

/** Object identifiers used (RFC 5280 §4.2.1, RFC 5758 §3.2, X.520). */
const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). ECDSA keys sign; keyEncipherment is for RSA key transport. */
const KEY_USAGE = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

/** X.509 version 3 is written as INTEGER 2 (RFC 5280 §4.1.2.1). */
const VERSION_3 = 2;

/** Serial numbers: 16 random bytes, within RFC 5280's 20-octet limit (§4.1.2.2) and unguessable. */
const SERIAL_BYTES = 16;

/** A key identifier is 160 bits: RFC 7093 §2 method 4 takes the leftmost 160 bits of SHA-256 of the SPKI. */
const KEY_ID_BYTES = 20;

/** GeneralName tags inside subjectAltName (RFC 5280 §4.2.1.6): `[2] dNSName`, `[7] iPAddress`. */
const GENERAL_NAME = { dnsName: 2, ipAddress: 7 } as const;

/** A fresh key pair, with the private key's PEM (PKCS #8) for storing. */
export type KeyPair = {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** PKCS #8 PEM of the private key. Never log it. */
  readonly privateKeyPem: string;
};

/** Makes an ECDSA P-256 key pair: short keys, fast to make and to verify, accepted by every Kubernetes version. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKey,
    publicKey,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** Returns the 16 bytes of an IPv6 or the 4 of an IPv4 address, or undefined when `text` is neither. */
export function ipAddressBytes(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return Uint8Array.from(text.split('.').map(Number));
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let body = text;
  const tail: number[] = [];
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    // An embedded IPv4 address (::ffff:10.0.0.1) fills the last two groups.
    tail.push(
      ...body
        .slice(lastColon + 1)
        .split('.')
        .map(Number),
    );
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = body.split('::');
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const front = groups(head);
  const back = rest === undefined ? [] : groups(rest);
  const all = [...front, ...new Array(8 - front.length - back.length).fill(0), ...back];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  if (tail.length === 4) bytes.set(tail, 12);
  return bytes;
}

/** A Name of one common name: `SEQUENCE { SET { SEQUENCE { id-at-commonName, UTF8String } } }`. */
function commonNameOnly(commonName: string): Uint8Array {
  return sequence(set(sequence(oid(OID.commonName), utf8String(commonName))));
}

/** RFC 7093 §2 method 4: the leftmost 160 bits of the SHA-256 of the DER SubjectPublicKeyInfo. */
function keyIdentifier(publicKey: KeyObject): Uint8Array {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return new Uint8Array(createHash('sha256').update(spki).digest().subarray(0, KEY_ID_BYTES));
}

/** One Extension: `SEQUENCE { extnID, critical (only when TRUE: DER omits a default), extnValue }`. */
function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** A positive random serial number. */
function serialNumber(): Uint8Array {
  const bytes = new Uint8Array(randomBytes(SERIAL_BYTES));
  bytes[0] = (bytes[0] as number) & 0x7f; // positive without a padding byte
  bytes[SERIAL_BYTES - 1] = (bytes[SERIAL_BYTES - 1] as number) | 1; // never zero
  return unsignedInteger(bytes);
}

/** The DER of a PEM certificate's first block. */
function pemToDer(pem: string): Uint8Array {
  const body = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem)?.[1];
  if (body === undefined) throw new Error('no PEM certificate found');
  return new Uint8Array(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
}

/** PEM text of a DER certificate, base64 in lines of 64 (RFC 7468 §2). */
function derToPem(der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/**
 * The subject Name of a certificate, byte for byte: a certificate it issues must carry exactly these bytes
 * as its issuer, since chain building compares names as encoded.
 */
function subjectOf(certificateDer: Uint8Array): Uint8Array {
  const certificate = readElement(certificateDer, 0);
  const tbs = children(certificateDer, certificate)[0];
  if (tbs === undefined) throw new Error('certificate has no TBSCertificate');
  const fields = children(certificateDer, tbs);
  // version [0] is there in v3 certificates: version, serial, signature, issuer, validity, subject.
  const subject = fields[(fields[0]?.tag ?? 0) === 0xa0 ? 5 : 4];
  if (subject === undefined) throw new Error('certificate has no subject');
  return certificateDer.subarray(subject.start, subject.end);
}

/** What both kinds of certificate have. */
type Body = {
  subject: Uint8Array;
  issuer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  publicKey: KeyObject;
  authorityKeyId: Uint8Array;
  extensions: Uint8Array[];
  signingKey: KeyObject;
};

/** Writes the TBSCertificate, signs it with ECDSA-SHA256 and returns the certificate's PEM (RFC 5280 §4.1). */
function signCertificate(body: Body): string {
  const algorithm = sequence(oid(OID.ecdsaWithSha256)); // parameters absent (RFC 5758 §3.2)
  const subjectKeyId = keyIdentifier(body.publicKey);
  const tbs = sequence(
    explicit(0, smallInteger(VERSION_3)),
    serialNumber(),
    algorithm,
    body.issuer,
    sequence(time(body.notBefore), time(body.notAfter)),
    body.subject,
    new Uint8Array(body.publicKey.export({ type: 'spki', format: 'der' })),
    explicit(
      3,
      sequence(
        ...body.extensions,
        extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId)),
        extension(OID.authorityKeyIdentifier, false, sequence(implicit(0, body.authorityKeyId))),
      ),
    ),
  );
  const signature = sign('sha256', tbs, { key: body.signingKey, dsaEncoding: 'der' });
  return derToPem(sequence(tbs, algorithm, bitString(new Uint8Array(signature))));
}

/** Options for {@link createCaCertificate}. */
export type CaCertificateOptions = {
  commonName: string;
  keys: KeyPair;
  notBefore: Date;
  notAfter: Date;
};

/**
 * Makes a self-signed CA certificate that may sign serving certificates and nothing else: basic constraints
 * `cA` with path length 0, key usage certificate signing (plus digital signature), both critical.
 */
export function createCaCertificate(options: CaCertificateOptions): string {
  const name = commonNameOnly(options.commonName);
  return signCertificate({
    subject: name,
    issuer: name,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    publicKey: options.keys.publicKey,
    authorityKeyId: keyIdentifier(options.keys.publicKey),
    signingKey: options.keys.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence(boolean(true), smallInteger(0))),
      extension(
        OID.keyUsage,
        true,
        namedBits([KEY_USAGE.digitalSignature, KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
      ),
    ],
  });
}

/** Options for {@link createServingCertificate}. */
export type ServingCertificateOptions = {
  /** The subject's common name; clients go by the alternative names. */
  commonName: string;
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** DNS names it is valid for. */
  dnsNames: readonly string[];
  /** IP addresses it is valid for (IPv4 or IPv6 text). */
  ipAddresses: readonly string[];
  /** The signing CA: its certificate (PEM) and private key. */
  issuer: { certificatePem: string; privateKey: KeyObject };
};

/**
 * Makes a TLS server certificate signed by `issuer`: not a CA, key usage digital signature (critical), extended
 * key usage server authentication, and the DNS names and IP addresses as subject alternative names.
 */
export function createServingCertificate(options: ServingCertificateOptions): string {
  const names = [
    ...options.dnsNames.map((dns) => implicit(GENERAL_NAME.dnsName, new TextEncoder().encode(dns))),
    ...options.ipAddresses.map((ip) => {
      const bytes = ipAddressBytes(ip);
      if (bytes === undefined) throw new RangeError(`not an IP address: "${ip}"`);
      return implicit(GENERAL_NAME.ipAddress, bytes);
    }),
  ];
  if (names.length === 0)
    throw new RangeError('a serving certificate needs at least one DNS name or IP address');
  const issuerDer = pemToDer(options.issuer.certificatePem);
  const issuerKey = new X509Certificate(options.issuer.certificatePem).publicKey;
  return signCertificate({
    subject: commonNameOnly(options.commonName),
    issuer: subjectOf(issuerDer),
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    publicKey: options.publicKey,
    authorityKeyId: keyIdentifier(issuerKey),
    signingKey: options.issuer.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence()),
      extension(OID.keyUsage, true, namedBits([KEY_USAGE.digitalSignature])),
      extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
      extension(OID.subjectAltName, false, sequence(...names)),
    ],
  });
}
