/**
 * @module Tests of the rotation decisions: each rule at its moment (and not a second before), and a walk
 * through several CA lifetimes checking that every certificate that may still be served is trusted.
 */
import { describe, expect, it } from 'bun:test';
import {
  applySteps,
  CA_PROMOTE_FRACTION,
  CA_RENEW_FRACTION,
  lifePoint,
  nextCheck,
  planRotation,
  promotionTime,
  type RotationPolicy,
  SERVING_RENEW_FRACTION,
  type StepKind,
} from '../../src/self-managed/rotation.ts';
import { type StoredCertificate, type TlsState, trustBundle } from '../../src/self-managed/state.ts';

const POLICY: RotationPolicy = {
  caValidityMs: 60_000,
  servingValidityMs: 20_000,
  dnsNames: ['svc', 'svc.ns.svc'],
  ipAddresses: ['127.0.0.1'],
};
const T0 = Date.UTC(2030, 0, 1);
const always = () => true;

/** The kinds of the steps planned for `state` at `now`. */
function kinds(state: TlsState, now: number, trusted: (pem: string) => boolean = always): StepKind[] {
  return planRotation(state, now, POLICY, trusted).map((s) => s.kind);
}

/** Plans and applies at `now`. */
function step(state: TlsState, now: number, trusted: (pem: string) => boolean = always) {
  return applySteps(state, planRotation(state, now, POLICY, trusted), now, POLICY);
}

/** The PEMs in a trust bundle. */
function bundleOf(state: TlsState): string[] {
  return trustBundle(state).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
}

function signedBy(leaf: StoredCertificate, ca: StoredCertificate): boolean {
  return leaf.x509.checkIssued(ca.x509) && leaf.x509.verify(ca.x509.publicKey);
}

describe('planRotation', () => {
  it('makes a CA and a serving certificate signed by it when the Secret is empty', () => {
    expect(kinds({}, T0)).toEqual(['new-signing-ca', 'issue-serving']);
    const { state, made } = step({}, T0);
    expect(made).toEqual({ ca: 1, serving: 1 });
    expect(state.signing?.x509.ca).toBe(true);
    expect(signedBy(state.serving as StoredCertificate, state.signing as StoredCertificate)).toBe(true);
    expect(state.serving?.x509.subjectAltName).toBe('DNS:svc, DNS:svc.ns.svc, IP Address:127.0.0.1');
    expect(state.serving?.notAfter).toBe(T0 + POLICY.servingValidityMs);
    expect(state.signing?.notAfter).toBe(T0 + POLICY.caValidityMs);
    expect(bundleOf(state)).toEqual([state.signing?.pem as string]);
    expect(kinds(state, T0)).toEqual([]);
  });

  it('renews the serving certificate at two thirds of its life and not a millisecond before', () => {
    const { state } = step({}, T0);
    const due = Math.ceil(lifePoint(state.serving as StoredCertificate, SERVING_RENEW_FRACTION));
    expect(due).toBe(T0 + Math.ceil(POLICY.servingValidityMs * SERVING_RENEW_FRACTION));
    expect(kinds(state, due - 1)).toEqual([]);
    expect(kinds(state, due)).toEqual(['issue-serving']);
    const renewed = step(state, due);
    expect(renewed.made).toEqual({ ca: 0, serving: 1 });
    expect(renewed.state.signing).toBe(state.signing as NonNullable<TlsState['signing']>);
    expect(renewed.state.serving?.pem).not.toBe(state.serving?.pem);
  });

  it('adds a next CA to the bundle at 80% of the signing CA’s life, leaving the serving certificate alone', () => {
    const { state } = step({}, T0);
    const due = T0 + CA_RENEW_FRACTION * POLICY.caValidityMs;
    // The serving certificate was renewed along the way; keep it fresh to look at the CA alone.
    const fresh = step(state, due - 10_000).state;
    expect(kinds(fresh, due - 1)).toEqual([]);
    expect(kinds(fresh, due)).toEqual(['make-next-ca']);
    const { state: after, made } = step(fresh, due);
    expect(made).toEqual({ ca: 1, serving: 0 });
    expect(after.serving).toBe(fresh.serving as NonNullable<TlsState['serving']>);
    expect(bundleOf(after)).toEqual([after.next?.pem as string, after.signing?.pem as string]);
  });

  it('promotes the next CA at 90% once the webhook trusts it, reissuing the serving certificate from it', () => {
    let state = step({}, T0).state;
    state = step(state, T0 + CA_RENEW_FRACTION * POLICY.caValidityMs).state;
    const next = state.next as StoredCertificate;
    const due = promotionTime(state.signing as StoredCertificate, next);
    expect(due).toBe(T0 + CA_PROMOTE_FRACTION * POLICY.caValidityMs);
    expect(kinds(state, due - 1)).not.toContain('promote-next');
    // Not before the webhook configuration is seen to hold it.
    expect(kinds(state, due, (pem) => pem !== next.pem)).not.toContain('promote-next');
    expect(kinds(state, due)).toEqual(['promote-next', 'issue-serving']);
    const old = state.signing as StoredCertificate;
    const { state: after, made } = step(state, due);
    expect(made).toEqual({ ca: 0, serving: 1 });
    expect(after.signing?.pem).toBe(next.pem);
    expect(after.previous?.pem).toBe(old.pem);
    expect(after.next).toBeUndefined();
    expect(signedBy(after.serving as StoredCertificate, next)).toBe(true);
    expect(bundleOf(after)).toEqual([next.pem, old.pem]);
  });

  it('waits a whole gap before promoting a next CA made late, so it is trusted before it signs', () => {
    let state = step({}, T0).state;
    const late = T0 + 0.85 * POLICY.caValidityMs; // the process was down from 80% to 85%
    state = step(state, late).state;
    expect(state.next).toBeDefined();
    const due = promotionTime(state.signing as StoredCertificate, state.next as StoredCertificate);
    expect(due).toBe(late + (CA_PROMOTE_FRACTION - CA_RENEW_FRACTION) * POLICY.caValidityMs);
    expect(kinds(state, due - 1)).not.toContain('promote-next');
    expect(kinds(state, due)).toContain('promote-next');
  });

  it('drops the previous CA when it expires', () => {
    let state = step({}, T0).state;
    state = step(state, T0 + CA_RENEW_FRACTION * POLICY.caValidityMs).state;
    state = step(state, T0 + CA_PROMOTE_FRACTION * POLICY.caValidityMs).state;
    const expiry = state.previous?.notAfter as number;
    expect(kinds(state, expiry - 1)).not.toContain('drop-previous');
    expect(kinds(state, expiry)).toContain('drop-previous');
    const after = step(state, expiry).state;
    expect(after.previous).toBeUndefined();
    expect(bundleOf(after)).toEqual([after.signing?.pem as string]);
  });

  it('replaces an expired signing CA at once when there is no next CA', () => {
    const state = step({}, T0).state;
    const later = T0 + 10 * POLICY.caValidityMs;
    expect(kinds(state, later)).toEqual(['new-signing-ca', 'issue-serving']);
    const after = step(state, later).state;
    expect(after.signing?.notAfter).toBe(later + POLICY.caValidityMs);
    expect(after.previous).toBeUndefined();
  });

  it('reissues the serving certificate when its names change or it is not the signing CA’s', () => {
    const a = step({}, T0).state;
    const renamed = planRotation(a, T0, { ...POLICY, dnsNames: ['other'] }, always);
    expect(renamed.map((s) => s.kind)).toEqual(['issue-serving']);
    expect(renamed[0]?.reason).toContain('names changed');
    // The same names spelled differently are the same names.
    const respelled = { ...POLICY, dnsNames: ['SVC.NS.svc', 'svc'], ipAddresses: ['127.0.0.1'] };
    expect(planRotation(a, T0, respelled, always)).toEqual([]);
    const b = step({}, T0).state;
    const mixed: TlsState = { ...a, serving: b.serving as NonNullable<TlsState['serving']> };
    expect(planRotation(mixed, T0, POLICY, always)[0]?.reason).toContain('not the signing CA');
  });

  it('caps a serving certificate at its CA’s expiry', () => {
    let state = step({}, T0).state;
    const near = T0 + 0.85 * POLICY.caValidityMs;
    state = step(state, near).state; // renews serving (and makes the next CA)
    expect(state.serving?.notAfter).toBe(state.signing?.notAfter as number);
  });
});

describe('nextCheck', () => {
  it('keeps every certificate that may be served trusted, and trusted before it is served, over five CA lifetimes', () => {
    let state: TlsState = {};
    let now = T0;
    const firstTrusted = new Map<string, number>();
    const served: { leaf: StoredCertificate; issuer: string }[] = [];
    const counts = { ca: 0, serving: 0, promotions: 0 };
    let firstCa: string | undefined;
    const gap = (CA_PROMOTE_FRACTION - CA_RENEW_FRACTION) * POLICY.caValidityMs;
    while (now < T0 + 5 * POLICY.caValidityMs) {
      const steps = planRotation(state, now, POLICY, always);
      // Nothing is due before the time nextCheck gave.
      if (now > T0) expect(steps.length).toBeGreaterThan(0);
      if (steps.some((s) => s.kind === 'promote-next')) counts.promotions++;
      const applied = applySteps(state, steps, now, POLICY);
      state = applied.state;
      counts.ca += applied.made.ca;
      counts.serving += applied.made.serving;
      for (const pem of bundleOf(state)) if (!firstTrusted.has(pem)) firstTrusted.set(pem, now);
      const signing = state.signing as StoredCertificate;
      if (applied.made.serving > 0) {
        served.push({ leaf: state.serving as StoredCertificate, issuer: signing.pem });
        // Trusted for a whole gap before it signs anything, except the very first CA.
        firstCa ??= signing.pem;
        if (signing.pem !== firstCa)
          expect(now - (firstTrusted.get(signing.pem) as number)).toBeGreaterThanOrEqual(gap);
      }
      // Every serving certificate that has not expired chains to a CA in the bundle.
      const bundle = bundleOf(state);
      for (const { leaf, issuer } of served) if (now < leaf.notAfter) expect(bundle).toContain(issuer);
      expect(planRotation(state, now, POLICY, always)).toEqual([]);
      const wake = nextCheck(state);
      expect(wake).toBeGreaterThan(now);
      expect(planRotation(state, Math.ceil(wake) - 1, POLICY, always)).toEqual([]);
      now = Math.ceil(wake);
    }
    // A new CA every 80% of a life (48 s): made at 0, 48, ..., 288 s; promoted 6 s after each but the first.
    expect(counts.ca).toBe(7);
    expect(counts.promotions).toBe(6);
    expect(counts.serving).toBeGreaterThan(5 * 3);
  });

  it('is Infinity for an empty state', () => {
    expect(nextCheck({})).toBe(Number.POSITIVE_INFINITY);
  });
});
