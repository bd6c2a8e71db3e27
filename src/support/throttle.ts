/**
 * @module Rate-limited reporting: a log entry at most once per interval, with the number of repeats
 * it stands for, so a fault that repeats per request (a full disk, a client sending garbage) cannot
 * flood stderr.
 */

/** Reports one occurrence; called at most once per interval with the occurrences suppressed since the last call. */
export type ThrottledReport<A extends unknown[]> = (...args: A) => void;

/** Options for {@link throttle}. */
export type ThrottleOptions = {
  /** Least time between two reports, in ms. Default 1000. */
  intervalMs?: number;
  /** Clock in ms. Default: Date.now. */
  now?: () => number;
};

/** One report a second: enough to see that something is wrong and what, never enough to flood. */
const DEFAULT_INTERVAL_MS = 1_000;

/**
 * Wraps `report` so that it runs at most once per `intervalMs`; the occurrences in between are only
 * counted, and the next call that runs receives that count as `suppressed` (0 when none were).
 */
export function throttle<A extends unknown[]>(
  report: (suppressed: number, ...args: A) => void,
  options: ThrottleOptions = {},
): ThrottledReport<A> {
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const now = options.now ?? Date.now;
  let last = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return function throttled(...args: A): void {
    const t = now();
    if (t - last < intervalMs) {
      suppressed++;
      return;
    }
    last = t;
    const count = suppressed;
    suppressed = 0;
    report(count, ...args);
  };
}
