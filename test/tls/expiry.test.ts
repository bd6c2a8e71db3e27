import { describe, expect, it } from 'bun:test';
import { createLogger } from '../../src/support/log.ts';
import { createExpiryWarner } from '../../src/tls/expiry.ts';
import type { TlsMaterial } from '../../src/tls/material.ts';

const DAY_MS = 86_400_000;
const START = Date.parse('2026-01-01T00:00:00Z');

/** A certificate's facts, valid from START for `days`. */
function material(fingerprint: string, days: number): TlsMaterial {
  return {
    cert: '',
    key: '',
    notBefore: new Date(START),
    notAfter: new Date(START + days * DAY_MS),
    fingerprint256: fingerprint,
    subject: 'CN=kube-audit-rest',
    issuer: 'CN=ca',
    sans: [],
  };
}

/** A warner on a clock the test moves, and the warnings it logged. */
function warner() {
  let now = START;
  const warnings: Array<{ msg: string; daysLeft?: number; fingerprint256: string }> = [];
  const check = createExpiryWarner({
    logger: createLogger({ write: (t) => warnings.push(JSON.parse(t)) }),
    now: () => now,
  });
  return {
    check,
    warnings,
    at(day: number) {
      now = START + day * DAY_MS;
    },
  };
}

describe('createExpiryWarner', () => {
  it('warns once as each of 14, 7 and 1 days left is crossed, and once more at expiry', () => {
    const w = warner();
    const cert = material('AA', 90);
    for (let hour = 0; hour <= 91 * 24; hour++) {
      w.at(hour / 24);
      w.check(cert);
    }
    expect(w.warnings.map((e) => e.msg)).toEqual([
      'certificate expires within 14 days',
      'certificate expires within 7 days',
      'certificate expires within 1 day',
      'certificate has expired',
    ]);
    expect(w.warnings[0]?.daysLeft).toBe(14);
  });

  it('warns of the nearest threshold only when a certificate is first seen with few days left', () => {
    const w = warner();
    w.at(85.5);
    w.check(material('AA', 90));
    w.check(material('AA', 90));
    expect(w.warnings.map((e) => [e.msg, e.daysLeft])).toEqual([['certificate expires within 7 days', 4.5]]);
  });

  it('starts again for a new certificate and says nothing while one has more than 14 days left', () => {
    const w = warner();
    w.at(80);
    w.check(material('AA', 90));
    w.check(material('BB', 180)); // renewed
    w.at(100);
    w.check(material('BB', 180));
    expect(w.warnings.map((e) => [e.msg, e.fingerprint256])).toEqual([
      ['certificate expires within 14 days', 'AA'],
    ]);
    w.at(170);
    w.check(material('BB', 180));
    expect(w.warnings.at(-1)).toMatchObject({
      msg: 'certificate expires within 14 days',
      fingerprint256: 'BB',
    });
  });

  it('warns when a certificate loaded is already expired or not yet valid', () => {
    const w = warner();
    w.at(-1);
    w.check(material('AA', 90));
    w.at(95);
    w.check(material('BB', 90));
    expect(w.warnings.map((e) => e.msg)).toEqual(['certificate is not valid yet', 'certificate has expired']);
  });
});
