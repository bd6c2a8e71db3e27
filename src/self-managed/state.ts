/**
 * @module The self-managed Secret's data: which key holds what, read into certificates and written back.
 *
 * | key               | holds                                                                       |
 * |-------------------|-----------------------------------------------------------------------------|
 * | `tls.crt`         | the serving certificate (leaf only), signed by the signing CA                |
 * | `tls.key`         | its private key (PKCS #8 PEM)                                               |
 * | `ca.crt`          | the trust bundle: next CA, signing CA, previous CA, those present, in that order |
 * | `signing-ca.crt`  | the CA that signs serving certificates now                                  |
 * | `signing-ca.key`  | its private key                                                             |
 * | `next-ca.crt`     | a CA already trusted (in `ca.crt`) that will sign from its promotion on     |
 * | `next-ca.key`     | its private key                                                             |
 * | `previous-ca.crt` | the CA that signed before the last promotion, trusted until it expires      |
 *
 * `ca.crt` is what the webhook's caBundle holds; it is written from the other keys and never read back.
 * Reading is forgiving: a key that is missing or cannot be used is reported and treated as absent, and the
 * rotation rules make what is missing.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';

/** The Secret's data keys; see the module's table. */
export const SECRET_KEYS = {
  servingCert: 'tls.crt',
  servingKey: 'tls.key',
  bundle: 'ca.crt',
  signingCert: 'signing-ca.crt',
  signingKey: 'signing-ca.key',
  nextCert: 'next-ca.crt',
  nextKey: 'next-ca.key',
  previousCert: 'previous-ca.crt',
} as const;

/** A certificate as stored and as parsed. */
export type StoredCertificate = {
  /** The PEM text as stored. */
  readonly pem: string;
  readonly x509: X509Certificate;
  /** notBefore and notAfter in epoch milliseconds. */
  readonly notBefore: number;
  readonly notAfter: number;
};

/** A certificate with its private key. */
export type StoredPair = StoredCertificate & {
  /** PKCS #8 PEM of the private key. Never log it. */
  readonly keyPem: string;
  readonly key: KeyObject;
};

/** Everything the Secret holds, each part present only when it parsed and is usable for its role. */
export type TlsState = {
  readonly signing?: StoredPair;
  readonly next?: StoredPair;
  readonly previous?: StoredCertificate;
  readonly serving?: StoredPair;
};

/** A {@link TlsState} of the parts given, leaving out those that are undefined (the type has no undefined members). */
export function tlsState(parts: {
  signing: StoredPair | undefined;
  next: StoredPair | undefined;
  previous: StoredCertificate | undefined;
  serving: StoredPair | undefined;
}): TlsState {
  const { signing, next, previous, serving } = parts;
  return {
    ...(signing && { signing }),
    ...(next && { next }),
    ...(previous && { previous }),
    ...(serving && { serving }),
  };
}

/** Parses one PEM certificate; throws with the parser's reason. */
export function storedCertificate(pem: string): StoredCertificate {
  const x509 = new X509Certificate(pem);
  return { pem, x509, notBefore: x509.validFromDate.getTime(), notAfter: x509.validToDate.getTime() };
}

/** Parses a certificate and its key and checks that they belong together; throws with the reason. */
export function storedPair(pem: string, keyPem: string): StoredPair {
  const certificate = storedCertificate(pem);
  const key = createPrivateKey(keyPem);
  if (!certificate.x509.checkPrivateKey(key)) throw new Error('the key does not match the certificate');
  return { ...certificate, keyPem, key };
}

/** The PEM text of `data[key]` (base64, as a Secret's data is), or undefined when absent or empty. */
function text(data: Readonly<Record<string, string>>, key: string): string | undefined {
  const value = data[key];
  if (value === undefined || value === '') return undefined;
  return Buffer.from(value, 'base64').toString('utf8');
}

/** The state read from a Secret's data, and a sentence for each key that was there but could not be used. */
export type ReadState = { state: TlsState; problems: string[] };

/** Reads the Secret's `data` (base64 values) into a {@link TlsState}; unusable parts are left out and reported. */
export function readState(data: Readonly<Record<string, string>> | undefined): ReadState {
  const problems: string[] = [];
  const values = data ?? {};
  const pair = (certKey: string, keyKey: string, ca: boolean): StoredPair | undefined => {
    const cert = text(values, certKey);
    const key = text(values, keyKey);
    if (cert === undefined && key === undefined) return undefined;
    if (cert === undefined || key === undefined) {
      problems.push(`${cert === undefined ? certKey : keyKey} is missing`);
      return undefined;
    }
    try {
      const parsed = storedPair(cert, key);
      if (parsed.x509.ca !== ca) throw new Error(ca ? 'not a CA certificate' : 'a CA certificate');
      return parsed;
    } catch (err) {
      problems.push(`${certKey}/${keyKey}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const signing = pair(SECRET_KEYS.signingCert, SECRET_KEYS.signingKey, true);
  const next = pair(SECRET_KEYS.nextCert, SECRET_KEYS.nextKey, true);
  const serving = pair(SECRET_KEYS.servingCert, SECRET_KEYS.servingKey, false);
  let previous: StoredCertificate | undefined;
  const previousPem = text(values, SECRET_KEYS.previousCert);
  if (previousPem !== undefined) {
    try {
      previous = storedCertificate(previousPem);
    } catch (err) {
      problems.push(`${SECRET_KEYS.previousCert}: ${(err as Error).message}`);
    }
  }
  if (signing === undefined && previous === undefined) {
    // A signing CA whose key is lost can sign nothing more, but what it signed may still be served: it
    // stays trusted, as the previous CA, while a new one takes over.
    previous = orphanedCa(text(values, SECRET_KEYS.signingCert));
  }
  return { state: tlsState({ signing, next, previous, serving }), problems };
}

/** The certificate of `pem` if it is a CA certificate, whatever became of its key; undefined otherwise. */
function orphanedCa(pem: string | undefined): StoredCertificate | undefined {
  if (pem === undefined) return undefined;
  try {
    const certificate = storedCertificate(pem);
    return certificate.x509.ca ? certificate : undefined;
  } catch {
    return undefined;
  }
}

/** The trust bundle: the PEM of the next, signing and previous CAs, those present, in that order. */
export function trustBundle(state: TlsState): string {
  return [state.next, state.signing, state.previous]
    .filter((c): c is StoredCertificate => c !== undefined)
    .map((c) => (c.pem.endsWith('\n') ? c.pem : `${c.pem}\n`))
    .join('');
}

/** The Secret's `data` for `state` (base64 values), the trust bundle included; absent parts have no key. */
export function writeState(state: TlsState): Record<string, string> {
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
  const data: Record<string, string> = {};
  const put = (key: string, value: string | undefined) => {
    if (value !== undefined) data[key] = b64(value);
  };
  put(SECRET_KEYS.servingCert, state.serving?.pem);
  put(SECRET_KEYS.servingKey, state.serving?.keyPem);
  put(SECRET_KEYS.bundle, trustBundle(state) || undefined);
  put(SECRET_KEYS.signingCert, state.signing?.pem);
  put(SECRET_KEYS.signingKey, state.signing?.keyPem);
  put(SECRET_KEYS.nextCert, state.next?.pem);
  put(SECRET_KEYS.nextKey, state.next?.keyPem);
  put(SECRET_KEYS.previousCert, state.previous?.pem);
  return data;
}
