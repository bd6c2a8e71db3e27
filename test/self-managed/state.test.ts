/**
 * @module Tests of the self-managed Secret's schema: what is written under which key, and what reading
 * makes of keys that are missing, mismatched or not certificates at all.
 */
import { describe, expect, it } from 'bun:test';
import { applySteps, planRotation, type RotationPolicy } from '../../src/self-managed/rotation.ts';
import { readState, SECRET_KEYS, type TlsState, writeState } from '../../src/self-managed/state.ts';

const POLICY: RotationPolicy = {
  caValidityMs: 60_000,
  servingValidityMs: 20_000,
  dnsNames: ['svc'],
  ipAddresses: [],
};
const T0 = Date.UTC(2030, 0, 1);

/** A state with all four parts: signing, next, previous (after one promotion) and serving. */
function fullState(): TlsState {
  let state: TlsState = {};
  for (const at of [0, 48_000, 54_000, 55_000]) {
    state = applySteps(
      state,
      planRotation(state, T0 + at, POLICY, () => true),
      T0 + at,
      POLICY,
    ).state;
  }
  // Promoted at 54 s, so there is no next CA until 80% of the new one's life: make one now to fill every key.
  return applySteps(state, [{ kind: 'make-next-ca', reason: 'test' }], T0 + 55_000, POLICY).state;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');

describe('writeState and readState', () => {
  it('writes every part under its key, the bundle as next + signing + previous, and reads it all back', () => {
    const state = fullState();
    const data = writeState(state);
    expect(Object.keys(data).sort()).toEqual(Object.values(SECRET_KEYS).sort());
    expect(unb64(data[SECRET_KEYS.bundle])).toBe(
      `${state.next?.pem}${state.signing?.pem}${state.previous?.pem}`,
    );
    expect(unb64(data['tls.crt'])).toBe(state.serving?.pem as string);
    const { state: back, problems } = readState(data);
    expect(problems).toEqual([]);
    expect(back.signing?.pem).toBe(state.signing?.pem as string);
    expect(back.signing?.keyPem).toBe(state.signing?.keyPem as string);
    expect(back.next?.pem).toBe(state.next?.pem as string);
    expect(back.previous?.pem).toBe(state.previous?.pem as string);
    expect(back.serving?.keyPem).toBe(state.serving?.keyPem as string);
    expect(writeState(back)).toEqual(data);
  });

  it('reads an empty or absent data map as an empty state without problems', () => {
    expect(readState(undefined)).toEqual({ state: {}, problems: [] });
    expect(readState({})).toEqual({ state: {}, problems: [] });
    expect(writeState({})).toEqual({});
  });

  it('leaves out and reports a part whose key is missing, does not match, or is the wrong kind', () => {
    const state = fullState();
    const data = writeState(state);
    const { state: read, problems } = readState({
      ...data,
      [SECRET_KEYS.signingKey]: data[SECRET_KEYS.nextKey] as string, // the next CA's key
      [SECRET_KEYS.nextKey]: '',
      [SECRET_KEYS.servingCert]: data[SECRET_KEYS.previousCert] as string, // a CA where a leaf belongs
      [SECRET_KEYS.previousCert]: b64('not a certificate'),
    });
    // The signing CA's certificate stays trusted as the previous CA: what it signed may still be served.
    expect(Object.keys(read)).toEqual(['previous']);
    expect(read.previous?.pem).toBe(state.signing?.pem as string);
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toContain(
      'signing-ca.crt/signing-ca.key: the key does not match the certificate',
    );
    expect(problems.join('\n')).toContain('next-ca.key is missing');
    expect(problems.join('\n')).toContain('tls.crt/tls.key:');
    expect(problems.join('\n')).toContain('previous-ca.crt:');
  });

  it('reads a CA certificate in a leaf’s place, or a leaf in a CA’s, as the wrong kind', () => {
    const state = fullState();
    const data = writeState(state);
    const { problems } = readState({
      [SECRET_KEYS.signingCert]: data[SECRET_KEYS.servingCert] as string,
      [SECRET_KEYS.signingKey]: data[SECRET_KEYS.servingKey] as string,
    });
    expect(problems).toEqual(['signing-ca.crt/signing-ca.key: not a CA certificate']);
  });
});
