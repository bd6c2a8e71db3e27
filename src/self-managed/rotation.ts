/**
 * @module When the self-managed CA and serving certificate are made, renewed, promoted and dropped: pure
 * decisions over the Secret's state and the time, and the step that carries each one out.
 *
 * The invariant: the API server trusts every certificate any replica may be serving. So a CA is trusted
 * (in the caBundle) well before anything it signed is served, and stays trusted until nothing it signed can
 * be served any more:
 *
 * 1. at {@link CA_RENEW_FRACTION} of the signing CA's life a next CA is made; it only joins the trust bundle;
 * 2. at {@link CA_PROMOTE_FRACTION}, and once the next CA has been trusted for as long as that gap (and the
 *    webhook configuration is seen to hold it), the next CA becomes the signing CA, a serving certificate is
 *    issued from it at once, and the old CA stays in the bundle as the previous CA;
 * 3. the previous CA leaves the bundle when it expires: serving certificates never outlive their CA, so by
 *    then nothing it signed can be served;
 * 4. the serving certificate is renewed at {@link SERVING_RENEW_FRACTION} of its life, when its names
 *    change, or when it is not the signing CA's.
 *
 * A missing or expired signing CA (first start, or a cluster switched off past its CA's expiry) is replaced at
 * once: then nothing better is possible, and the caBundle follows within a second.
 */
import { type StoredCertificate, type StoredPair, storedPair, type TlsState, tlsState } from './state.ts';
import { createCaCertificate, createServingCertificate, generateKeyPair, ipAddressBytes } from './x509.ts';

/**
 * A serving certificate is renewed two thirds into its life: with 90 days that leaves a month in which a
 * replica that missed the renewal (API server unreachable, say) still serves a valid certificate.
 */
export const SERVING_RENEW_FRACTION = 2 / 3;
/** A next CA is made 80% into the signing CA's life: with 5 years, a year before it expires. */
export const CA_RENEW_FRACTION = 0.8;
/**
 * The next CA signs from 90% of the old CA's life on: the 10% between (six months with 5 years) is how long
 * it sits in the caBundle, trusted but unused, before anything it signed is served.
 */
export const CA_PROMOTE_FRACTION = 0.9;
/**
 * Certificates are dated this far back, so that an API server whose clock is behind ours still finds a new
 * certificate valid. Lifetimes and renewal points are counted from the time of issue (notBefore + this).
 */
export const NOT_BEFORE_BACKDATE_MS = 60_000;

/** What the certificates must be: validity periods and the serving certificate's names. */
export type RotationPolicy = {
  /** Life of a new CA, from its issue. */
  readonly caValidityMs: number;
  /** Life of a new serving certificate, from its issue; capped at the signing CA's expiry. */
  readonly servingValidityMs: number;
  /** DNS names of the serving certificate. */
  readonly dnsNames: readonly string[];
  /** IP addresses of the serving certificate. */
  readonly ipAddresses: readonly string[];
};

/** The kinds of step, in the order {@link planRotation} lists them. */
export type StepKind =
  | 'drop-next'
  | 'drop-previous'
  | 'new-signing-ca'
  | 'promote-next'
  | 'make-next-ca'
  | 'issue-serving';

/** One change to make, and why (for the log). */
export type Step = { readonly kind: StepKind; readonly reason: string };

/** When `cert` was issued: its notBefore plus the backdating. */
function issuedAt(cert: StoredCertificate): number {
  return Math.min(cert.notBefore + NOT_BEFORE_BACKDATE_MS, cert.notAfter);
}

/** The moment `fraction` of `cert`'s life (from issue to notAfter) has passed. */
export function lifePoint(cert: StoredCertificate, fraction: number): number {
  const from = issuedAt(cert);
  return from + fraction * (cert.notAfter - from);
}

/** When the next CA may become the signing CA: see rule 2 of the module comment. */
export function promotionTime(signing: StoredCertificate, next: StoredCertificate): number {
  const gap = CA_PROMOTE_FRACTION - CA_RENEW_FRACTION;
  return Math.max(
    lifePoint(signing, CA_PROMOTE_FRACTION),
    issuedAt(next) + gap * (next.notAfter - issuedAt(next)),
  );
}

/** A canonical text for each subject alternative name, so that name sets compare whatever their spelling. */
function canonicalNames(dnsNames: readonly string[], ipAddresses: readonly string[]): string[] {
  const ips = ipAddresses.map((ip) => `IP:${Buffer.from(ipAddressBytes(ip) ?? []).toString('hex')}`);
  return [...dnsNames.map((d) => `DNS:${d.toLowerCase()}`), ...ips].sort();
}

/** The names a certificate carries, in {@link canonicalNames}' form; node renders them `DNS:a, IP Address:b`. */
function namesOf(cert: StoredCertificate): string[] {
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of (cert.x509.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4));
    else if (part.startsWith('IP Address:')) ips.push(part.slice('IP Address:'.length));
  }
  return canonicalNames(dns, ips);
}

/** Whether `leaf` was signed by `ca` (issuer name and signature). */
function signedBy(leaf: StoredCertificate, ca: StoredCertificate): boolean {
  return leaf.x509.checkIssued(ca.x509) && leaf.x509.verify(ca.x509.publicKey);
}

/** Why the serving certificate must be reissued now, or undefined when it is fine. */
function servingProblem(state: TlsState, now: number, policy: RotationPolicy): string | undefined {
  const { serving, signing } = state;
  if (serving === undefined) return 'there is no serving certificate';
  if (signing === undefined || !signedBy(serving, signing))
    return 'the serving certificate is not the signing CA’s';
  const want = canonicalNames(policy.dnsNames, policy.ipAddresses);
  if (want.join(',') !== namesOf(serving).join(',')) return 'the serving certificate’s names changed';
  if (now >= lifePoint(serving, SERVING_RENEW_FRACTION))
    return `the serving certificate is ${Math.round(SERVING_RENEW_FRACTION * 100)}% through its life`;
  return undefined;
}

/**
 * Decides what must change in `state` at `now`. `trusted(caPem)` says whether the webhook configuration is
 * seen to trust a CA (always true when no configuration is managed); a next CA is not promoted before it is.
 * An empty list means the state is as it should be until {@link nextCheck}.
 */
export function planRotation(
  state: TlsState,
  now: number,
  policy: RotationPolicy,
  trusted: (caPem: string) => boolean,
): Step[] {
  const steps: Step[] = [];
  const live = (c: StoredCertificate | undefined) => c !== undefined && now < c.notAfter;
  const next = live(state.next) ? state.next : undefined;
  if (state.next !== undefined && next === undefined)
    steps.push({ kind: 'drop-next', reason: 'the next CA expired' });
  if (state.previous !== undefined && !live(state.previous))
    steps.push({ kind: 'drop-previous', reason: 'the previous CA expired' });

  let newSigner = false;
  if (!live(state.signing)) {
    const why = state.signing === undefined ? 'there is no signing CA' : 'the signing CA expired';
    steps.push(
      next !== undefined ? { kind: 'promote-next', reason: why } : { kind: 'new-signing-ca', reason: why },
    );
    newSigner = true;
  } else if (state.signing !== undefined && next === undefined) {
    if (now >= lifePoint(state.signing, CA_RENEW_FRACTION))
      steps.push({
        kind: 'make-next-ca',
        reason: `the signing CA is ${Math.round(CA_RENEW_FRACTION * 100)}% through its life`,
      });
  } else if (state.signing !== undefined && next !== undefined) {
    if (now >= promotionTime(state.signing, next) && trusted(next.pem)) {
      steps.push({ kind: 'promote-next', reason: 'the next CA has been trusted long enough' });
      newSigner = true;
    }
  }

  const problem = newSigner ? 'the signing CA changed' : servingProblem(state, now, policy);
  if (problem !== undefined) steps.push({ kind: 'issue-serving', reason: problem });
  return steps;
}

/**
 * When {@link planRotation} may next have something to do, as epoch ms (it may be in the past when a step
 * waits on the webhook configuration). Infinity when nothing is stored.
 */
export function nextCheck(state: TlsState): number {
  const times: number[] = [];
  if (state.serving) times.push(lifePoint(state.serving, SERVING_RENEW_FRACTION));
  if (state.signing) {
    times.push(state.signing.notAfter);
    times.push(
      state.next ? promotionTime(state.signing, state.next) : lifePoint(state.signing, CA_RENEW_FRACTION),
    );
  }
  if (state.next) times.push(state.next.notAfter);
  if (state.previous) times.push(state.previous.notAfter);
  return Math.min(...times);
}

/** Makes a CA valid from now (backdated) for `validityMs`; its name carries the time so generations differ. */
export function makeCa(now: number, validityMs: number): StoredPair {
  const keys = generateKeyPair();
  const pem = createCaCertificate({
    commonName: `kube-audit-rest-ca@${Math.floor(now / 1000)}`,
    keys,
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(now + validityMs),
  });
  return storedPair(pem, keys.privateKeyPem);
}

/** Makes a serving certificate signed by `ca`, valid from now (backdated) until `policy`'s validity or the CA's expiry. */
export function makeServing(ca: StoredPair, now: number, policy: RotationPolicy): StoredPair {
  const keys = generateKeyPair();
  const pem = createServingCertificate({
    commonName: policy.dnsNames[0] ?? policy.ipAddresses[0] ?? 'kube-audit-rest',
    publicKey: keys.publicKey,
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(Math.min(now + policy.servingValidityMs, ca.notAfter)),
    dnsNames: policy.dnsNames,
    ipAddresses: policy.ipAddresses,
    issuer: { certificatePem: ca.pem, privateKey: ca.key },
  });
  return storedPair(pem, keys.privateKeyPem);
}

/** The state after `steps`, and how many CAs and serving certificates were made for it. */
export type Applied = { state: TlsState; made: { ca: number; serving: number } };

/** Carries out `steps` (from {@link planRotation}) on `state`, in order, making keys and certificates as needed. */
export function applySteps(
  state: TlsState,
  steps: readonly Step[],
  now: number,
  policy: RotationPolicy,
): Applied {
  let { signing, next, previous, serving } = state;
  const made = { ca: 0, serving: 0 };
  const retire = (old: StoredPair | undefined) =>
    old !== undefined && now < old.notAfter
      ? { pem: old.pem, x509: old.x509, notBefore: old.notBefore, notAfter: old.notAfter }
      : undefined;
  for (const step of steps) {
    switch (step.kind) {
      case 'drop-next':
        next = undefined;
        break;
      case 'drop-previous':
        previous = undefined;
        break;
      case 'new-signing-ca':
        previous = retire(signing) ?? previous;
        signing = makeCa(now, policy.caValidityMs);
        made.ca++;
        break;
      case 'promote-next':
        previous = retire(signing) ?? previous;
        signing = next;
        next = undefined;
        break;
      case 'make-next-ca':
        next = makeCa(now, policy.caValidityMs);
        made.ca++;
        break;
      case 'issue-serving':
        if (signing === undefined) throw new Error('issue-serving without a signing CA');
        serving = makeServing(signing, now, policy);
        made.serving++;
        break;
    }
  }
  return { state: tlsState({ signing, next, previous, serving }), made };
}
