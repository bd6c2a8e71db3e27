/**
 * @module Wall-clock time in nanoseconds, and Go's RFC 3339 format with nanoseconds.
 *
 * `Date.now()` has millisecond resolution; 1.x stamps lines with Go's `time.Now()` in nanoseconds.
 * The clock adds a monotonic high-resolution offset to a wall-clock anchor, and re-anchors when the
 * two drift apart (an NTP step), so stamps stay close to the wall clock and never lose precision.
 */

/** Returns the current time as nanoseconds since the Unix epoch. */
export type Clock = () => bigint;

/** Options for {@link createClock}; both sources injectable for tests. */
export type ClockOptions = {
  /** Wall clock in ms. Default: Date.now. */
  wallMs?: () => number;
  /** Monotonic clock in ns. Default: process.hrtime.bigint. */
  monotonicNs?: () => bigint;
};

/** How far the two clocks may drift before re-anchoring: below the wall clock's 1 ms resolution, it is noise. */
const MAX_DRIFT_NS = 2_000_000n;
/** How often the drift is checked: cheap, and an NTP step is rare. */
const CHECK_EVERY_NS = 1_000_000_000n;

/** Creates a nanosecond wall clock; see the module comment. */
export function createClock(options: ClockOptions = {}): Clock {
  const wallMs = options.wallMs ?? Date.now;
  const mono = options.monotonicNs ?? process.hrtime.bigint;
  let anchorWall = BigInt(wallMs()) * 1_000_000n;
  let anchorMono = mono();
  let lastCheck = anchorMono;
  return function now(): bigint {
    const m = mono();
    if (m - lastCheck >= CHECK_EVERY_NS) {
      lastCheck = m;
      const wall = BigInt(wallMs()) * 1_000_000n;
      const drift = anchorWall + (m - anchorMono) - wall;
      if (drift > MAX_DRIFT_NS || drift < -MAX_DRIFT_NS) {
        anchorWall = wall;
        anchorMono = m;
      }
    }
    return anchorWall + (m - anchorMono);
  };
}

let cachedSecond = -1n;
let cachedPrefix = '';

/**
 * Formats nanoseconds since the epoch the way Go's `time.RFC3339Nano` prints a UTC time:
 * `2006-01-02T15:04:05.999999999Z` with trailing zeros of the fraction removed, and no dot at all
 * when the fraction is zero.
 */
export function formatRfc3339Nano(ns: bigint): string {
  const second = ns / 1_000_000_000n;
  const frac = Number(ns - second * 1_000_000_000n);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(Number(second) * 1000).toISOString().slice(0, 19);
  }
  if (frac === 0) return `${cachedPrefix}Z`;
  let digits = String(frac).padStart(9, '0');
  let end = digits.length;
  while (digits.charCodeAt(end - 1) === 0x30) end--;
  digits = digits.slice(0, end);
  return `${cachedPrefix}.${digits}Z`;
}

let microSecond = -1n;
let microPrefix = '';

/**
 * Formats nanoseconds since the epoch as the audit Event's timestamps need them (Kubernetes'
 * `metav1.MicroTime`): `2006-01-02T15:04:05.000000Z`, always six fractional digits, UTC.
 */
export function formatMicroTime(ns: bigint): string {
  const second = ns / 1_000_000_000n;
  const micros = Number((ns - second * 1_000_000_000n) / 1000n);
  if (second !== microSecond) {
    microSecond = second;
    microPrefix = new Date(Number(second) * 1000).toISOString().slice(0, 19);
  }
  return `${microPrefix}.${String(micros).padStart(6, '0')}Z`;
}
