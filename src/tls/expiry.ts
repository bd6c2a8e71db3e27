/**
 * @module Warns in the log as the serving certificate's expiry nears: once when fewer than 14 days
 * are left, again under 7 and under 1, and at every load of a certificate already expired or not yet valid.
 *
 * A certificate that expires breaks every call from the API server (with `failurePolicy: Ignore` they
 * go ahead unrecorded), so the warning comes early enough for a person to act on a failed renewal:
 * cert-manager renews 30 days early by default, so a certificate seen with 14 days left has missed
 * more than two weeks of renewal attempts.
 */

import type { Logger } from '../support/log.ts';
import type { TlsMaterial } from './material.ts';

/** Days before expiry at which to warn, largest first. */
export const EXPIRY_WARNING_DAYS: readonly number[] = [14, 7, 1];

const DAY_MS = 86_400_000;

/** Options for {@link createExpiryWarner}. */
export type ExpiryWarnerOptions = {
  /** Where warnings go (component `tls`). */
  logger: Logger;
  /** The time now, in ms. Default Date.now. */
  now?: () => number;
  /** Thresholds in days. Default {@link EXPIRY_WARNING_DAYS}. */
  thresholdsDays?: readonly number[];
};

/**
 * Creates a check to call with the certificate being served whenever it loads and then periodically;
 * each call warns when the time left has crossed a threshold not yet warned of for that certificate.
 */
export function createExpiryWarner(options: ExpiryWarnerOptions): (material: TlsMaterial) => void {
  const now = options.now ?? Date.now;
  const thresholds = [...(options.thresholdsDays ?? EXPIRY_WARNING_DAYS)].sort((a, b) => b - a);
  /** The smallest threshold already warned of, by certificate fingerprint; one entry: the one served. */
  let warned: { fingerprint: string; days: number } | undefined;

  return function checkExpiry(material: TlsMaterial): void {
    const fields = {
      subject: material.subject,
      fingerprint256: material.fingerprint256,
      notBefore: material.notBefore.toISOString(),
      notAfter: material.notAfter.toISOString(),
    };
    const t = now();
    const leftMs = material.notAfter.getTime() - t;
    const isNew = warned?.fingerprint !== material.fingerprint256;
    if (isNew) warned = undefined;
    if (leftMs <= 0) {
      if (warned === undefined || warned.days > 0) options.logger.warn('certificate has expired', fields);
      warned = { fingerprint: material.fingerprint256, days: 0 };
      return;
    }
    if (isNew && t < material.notBefore.getTime())
      options.logger.warn('certificate is not valid yet', fields);
    const crossed = thresholds.filter((days) => leftMs <= days * DAY_MS).at(-1);
    if (crossed === undefined || (warned !== undefined && warned.days <= crossed)) return;
    warned = { fingerprint: material.fingerprint256, days: crossed };
    const daysLeft = Math.floor((leftMs / DAY_MS) * 10) / 10;
    options.logger.warn(`certificate expires within ${crossed} day${crossed === 1 ? '' : 's'}`, {
      ...fields,
      daysLeft,
    });
  };
}
