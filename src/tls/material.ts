/**
 * @module TLS material: reads a certificate chain and private key from disk and checks that they belong together.
 *
 * Only node:crypto is used, so a pair that passes here is one BoringSSL (inside Bun.serve) accepts too. Nothing
 * here logs, and no error message ever contains key material: only file names and the parser's reason.
 */

import type { KeyObject } from 'node:crypto';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** A validated certificate chain and private key, with the facts about the leaf that logs and metrics need. */
export type TlsMaterial = {
  /** The certificate file's PEM text as read: the leaf first, then any intermediates. */
  readonly cert: string;
  /** The private key's PEM text. Never log it. */
  readonly key: string;
  /** End of the leaf's validity period. */
  readonly notAfter: Date;
  /** Start of the leaf's validity period. */
  readonly notBefore: Date;
  /** SHA-256 fingerprint of the leaf's DER, as `AB:CD:...` (the form `tls.getPeerCertificate()` reports). */
  readonly fingerprint256: string;
  /** The leaf's subject, as node:crypto renders it (e.g. `CN=kube-audit-rest`). */
  readonly subject: string;
  /** The leaf's issuer, rendered the same way. */
  readonly issuer: string;
  /** The leaf's subject alternative names, e.g. `['DNS:localhost', 'IP:127.0.0.1']`; empty if it has none. */
  readonly sans: readonly string[];
};

/** A certificate or key that cannot be used; the message names the file (or the pair) and the reason. */
export class TlsMaterialError extends Error {
  override readonly name = 'TlsMaterialError';
  /** The file at fault, or undefined when the fault is the pair (key does not match certificate). */
  readonly file: string | undefined;

  constructor(message: string, file: string | undefined, options?: ErrorOptions) {
    super(message, options);
    this.file = file;
  }
}

/** One PEM certificate block, header to footer; RFC 7468 §2 allows whitespace around the base64 body. */
const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The private-key labels RFC 7468 and OpenSSL use: PKCS#8 (plain and encrypted), PKCS#1 RSA, SEC 1 EC. */
const KEY_HEADER = /-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----/;

/** Reads the certificate and key files as text, without checking them; errors name the file. */
export async function readTlsFiles(
  certFile: string,
  keyFile: string,
): Promise<{ cert: string; key: string }> {
  const [cert, key] = await Promise.all([readText('certificate', certFile), readText('key', keyFile)]);
  return { cert, key };
}

async function readText(what: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new TlsMaterialError(`${what} ${file}: cannot read (${reason})`, file, { cause: err });
  }
}

/**
 * Checks already-read PEM text and describes it: every certificate block must parse, the key must parse, and the
 * key must be the leaf's. `certFile` and `keyFile` are used only in error messages.
 */
export function parseTlsMaterial(certFile: string, keyFile: string, cert: string, key: string): TlsMaterial {
  const blocks = cert.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) {
    throw new TlsMaterialError(`certificate ${certFile}: no PEM certificate found`, certFile);
  }
  const chain = blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      const which = blocks.length === 1 ? 'the certificate' : `certificate ${i + 1} of ${blocks.length}`;
      const message = `certificate ${certFile}: cannot parse ${which} (${(err as Error).message})`;
      throw new TlsMaterialError(message, certFile, { cause: err });
    }
  });
  const leaf = chain[0] as X509Certificate; // blocks.length > 0 was checked above

  if (!KEY_HEADER.test(key)) throw new TlsMaterialError(`key ${keyFile}: no PEM private key found`, keyFile);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    const message = `key ${keyFile}: cannot parse private key (${(err as Error).message})`;
    throw new TlsMaterialError(message, keyFile, { cause: err });
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsMaterialError(`key ${keyFile} does not match certificate ${certFile}`, undefined);
  }

  return {
    cert,
    key,
    notAfter: leaf.validToDate,
    notBefore: leaf.validFromDate,
    fingerprint256: leaf.fingerprint256,
    subject: leaf.subject.replaceAll('\n', ', '),
    issuer: leaf.issuer.replaceAll('\n', ', '),
    sans: parseSans(leaf.subjectAltName),
  };
}

/**
 * Splits node:crypto's `subjectAltName` rendering (`DNS:a, IP Address:127.0.0.1`) into entries, shortening
 * `IP Address` to `IP`. Node quotes a value that itself holds `, ` as a JSON string, so split outside quotes only.
 */
function parseSans(rendered: string | undefined): string[] {
  if (!rendered) return [];
  const out: string[] = [];
  for (const part of rendered.match(/(?:[^,"]|"(?:\\.|[^"\\])*")+/g) ?? []) {
    const entry = part.trim();
    if (entry) out.push(entry.startsWith('IP Address:') ? `IP:${entry.slice('IP Address:'.length)}` : entry);
  }
  return out;
}

/**
 * Reads a certificate chain and private key from disk and validates them as a pair.
 *
 * Rejects with a {@link TlsMaterialError} that names the file and the reason, e.g.
 * `certificate /etc/tls/tls.crt: no PEM certificate found` or `key /etc/tls/tls.key does not match certificate
 * /etc/tls/tls.crt`, with the underlying error as `cause`.
 */
export async function loadTlsMaterial(certFile: string, keyFile: string): Promise<TlsMaterial> {
  const { cert, key } = await readTlsFiles(certFile, keyFile);
  return parseTlsMaterial(certFile, keyFile, cert, key);
}

/**
 * Checks the PEM text of a client CA bundle: at least one certificate, every block parses, and each is
 * a CA (basicConstraints CA:TRUE), since a leaf there would let exactly that one certificate in and is
 * almost always a mistake (the server's own certificate given by accident, say). `file` names the
 * bundle in error messages. Returns the text unchanged, for Bun.serve's `ca` option.
 */
export function parseClientCa(file: string, pem: string): string {
  const blocks = pem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) throw new TlsMaterialError(`client CA ${file}: no PEM certificate found`, file);
  for (const [i, block] of blocks.entries()) {
    const which = blocks.length === 1 ? 'the certificate' : `certificate ${i + 1} of ${blocks.length}`;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      const message = `client CA ${file}: cannot parse ${which} (${(err as Error).message})`;
      throw new TlsMaterialError(message, file, { cause: err });
    }
    if (!cert.ca) throw new TlsMaterialError(`client CA ${file}: ${which} is not a CA certificate`, file);
  }
  return pem;
}
