/**
 * @module The cap on open webhook connections, enforced on the process's file descriptors.
 *
 * Why: at the descriptor limit `accept()` fails with EMFILE, Bun's listener retries it at once in a
 * loop (a core at 100 %), and the metrics port cannot accept either, so probes fail and the pod is
 * restarted. Bun.serve has no connection limit and tells nothing of connections opening or closing,
 * so the cap watches the one thing that runs out: the count of open descriptors. Linux 6.2 and later
 * give it as the size of /proc/self/fd (about 1 µs to read); older kernels need the directory listed,
 * which is done only once descriptor number `threshold - 1` is in use (one fstat), since the kernel
 * always hands out the lowest free number.
 *
 * The check runs on a timer, off the request path, more often the nearer the count is to the cap.
 * When the webhook's share (descriptors above the count at start, less the metrics port's
 * connections) reaches the cap, the listener closes: new connections are refused by the kernel,
 * requests in flight finish, idle kept-alive connections close. Once the share is back below 90 % of
 * the cap, the listener opens again. Between two checks Bun may accept up to its whole listen queue
 * (512) in one go, which is why the default cap leaves twice that much room ({@link ACCEPT_BURST}).
 */
import { fstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { Logger } from '../support/log.ts';
import { throttle } from '../support/throttle.ts';

/** Reads the process's open descriptor count. */
export type DescriptorCounter = {
  /** Whether {@link DescriptorCounter.count} is cheap (one stat) rather than a directory listing. */
  readonly cheap: boolean;
  /** The number of open descriptors. */
  count(): number;
  /** Whether at least `n` descriptors may be open: one fstat; when true, `count` tells for sure. */
  mayBeAtLeast(n: number): boolean;
};

/**
 * Connections Bun can accept between two checks: its listen queue is 512 long and one wake-up
 * accepts all that is queued. Twice that covers what arrives while it does.
 */
export const ACCEPT_BURST = 1_024;
/**
 * Descriptors kept for what the process opens besides connections while it runs: the new file at a
 * rotation and its gzip, a listing of /proc/self/fd, the certificate files at a reload.
 */
export const WORKING_DESCRIPTORS = 32;
/**
 * Highest default cap. An idle TLS connection costs Bun about 5 kB (measured: 3,000 connections,
 * +14.8 MB RSS), so 16,384 of them stay within the 512 MiB memory limit of the manifests with room
 * for the bodies in flight; the API server uses a few hundred at most.
 */
export const MAX_DEFAULT_CONNECTIONS = 16_384;

/** Reads the soft "Max open files" limit from a /proc limits file; undefined when unlimited or unreadable. */
export function readDescriptorLimit(limitsFile = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (m === null || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/** Options for {@link createDescriptorCounter}. */
export type DescriptorCounterOptions = {
  /** The directory listing the descriptors. Default: this process's, /proc/self/fd. */
  fdDir?: string;
  /** Count by listing the directory even where its size gives the count (to test the older kernels' way). Default false. */
  list?: boolean;
};

/** Creates a counter of the descriptors listed in /proc/self/fd; throws when there is no such directory. */
export function createDescriptorCounter(options: DescriptorCounterOptions = {}): DescriptorCounter {
  const fdDir = options.fdDir ?? '/proc/self/fd';
  // Linux 6.2+ reports the number of open descriptors as the directory's size; before, it is 0.
  const cheap = statSync(fdDir).size > 0 && options.list !== true;
  return {
    cheap,
    count() {
      if (cheap) return statSync(fdDir).size;
      return readdirSync(fdDir).length - 1; // less the listing's own descriptor
    },
    mayBeAtLeast(n) {
      if (n <= 0) return true;
      // The kernel hands out the lowest free number, so n descriptors in use mean number n-1 was taken.
      try {
        fstatSync(n - 1);
        return true;
      } catch {
        return false;
      }
    },
  };
}

/**
 * The default `--max-connections` for a descriptor limit: what is left of the limit after the
 * descriptors open at start (`baseline`), the metrics port's cap, {@link WORKING_DESCRIPTORS} and one
 * {@link ACCEPT_BURST}, at most {@link MAX_DEFAULT_CONNECTIONS}. Where the limit is too low to leave a
 * whole burst, half of what remains (a burst may then still reach the limit). Never below 1.
 */
export function defaultMaxConnections(
  limit: number,
  baseline: number,
  metricsMaxConnections: number,
): number {
  const room = limit - baseline - metricsMaxConnections - WORKING_DESCRIPTORS;
  return Math.max(1, Math.min(MAX_DEFAULT_CONNECTIONS, Math.max(Math.floor(room / 2), room - ACCEPT_BURST)));
}

/** The largest `--max-connections` that still leaves a burst and the metrics port their descriptors. */
export function largestSafeMaxConnections(
  limit: number,
  baseline: number,
  metricsMaxConnections: number,
): number {
  return limit - baseline - metricsMaxConnections - WORKING_DESCRIPTORS - ACCEPT_BURST;
}

/** What {@link startConnectionCap} needs. */
export type ConnectionCapOptions = {
  /** Most webhook connections open at once. */
  maxConnections: number;
  /** Descriptors open before any connection (taken right after the listeners opened). */
  baseline: number;
  /** Counts the process's descriptors. */
  descriptors: DescriptorCounter;
  /** Connections open on the metrics port now; they are not the webhook's. */
  otherConnections: () => number;
  /** Closes the webhook listener. */
  pause: () => void;
  /** Opens the webhook listener again; may throw (then the cap stays reached and retries). */
  resume: () => void;
  /** Where reaching the cap and recovering are logged (rate-limited). */
  log: Logger;
  /** Told each time the cap is reached. Default: nothing. */
  onReached?: () => void;
  /** Longest pause between two checks, in ms. Default 500. */
  maxIntervalMs?: number;
};

/** A running cap. */
export type ConnectionCap = {
  /** Whether the cap is reached (the listener closed). */
  reached(): boolean;
  /** The webhook's share of open descriptors at the last check. */
  connections(): number;
  /** Stops checking; the listener stays as it is. */
  stop(): void;
};

/** Default longest pause between checks: a count far from the cap needs no closer watch. */
const DEFAULT_MAX_INTERVAL_MS = 500;
/** Shortest pause between checks, near the cap: one event-loop turn's worth of accepts. */
const MIN_INTERVAL_MS = 1;
/**
 * Connections assumed to arrive per ms at most, to space the checks by the room left: measured here,
 * Bun took at most 113 new connections per ms in a flood of 8,000 from one client.
 */
const ARRIVALS_PER_MS = 128;
/** The listener opens again once the webhook's share is below this fraction of the cap. */
const RESUME_FRACTION = 0.9;
/** Without a cheap count, how often descriptor number `baseline + cap - 1` is looked at (one fstat). */
const UNCOUNTED_INTERVAL_MS = 5;
/** While the cap holds, how often the count is checked for the way back. */
const REACHED_INTERVAL_MS = 100;

/** Starts enforcing the cap; see the module comment. */
export function startConnectionCap(options: ConnectionCapOptions): ConnectionCap {
  const { maxConnections, baseline, descriptors, log } = options;
  const maxIntervalMs = options.maxIntervalMs ?? DEFAULT_MAX_INTERVAL_MS;
  const resumeBelow = Math.max(1, Math.floor(maxConnections * RESUME_FRACTION));
  let reached = false;
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const reportReached = throttle((suppressed: number, connections: number) => {
    log.warn('connection cap reached; new webhook connections are refused until some close', {
      maxConnections,
      connections,
      suppressedSinceLast: suppressed,
    });
  });
  const reportResumed = throttle((suppressed: number, connections: number) => {
    log.info('below the connection cap again; accepting webhook connections', {
      connections,
      suppressedSinceLast: suppressed,
    });
  });
  const reportResumeFailed = throttle((suppressed: number, error: unknown) => {
    log.error('cannot listen again after the connection cap; retrying', {
      error,
      suppressedSinceLast: suppressed,
    });
  });

  /** The webhook's share of the open descriptors; as good as infinite when they cannot be listed (EMFILE). */
  function share(): number {
    try {
      return Math.max(0, descriptors.count() - baseline - options.otherConnections());
    } catch {
      return Number.POSITIVE_INFINITY;
    }
  }

  /** Checks once; returns the pause before the next check. */
  function check(): number {
    if (reached) {
      last = share();
      if (last >= resumeBelow) return REACHED_INTERVAL_MS;
      try {
        options.resume();
      } catch (error) {
        reportResumeFailed(error);
        return REACHED_INTERVAL_MS;
      }
      reached = false;
      reportResumed(last);
      return MIN_INTERVAL_MS;
    }
    // Without a cheap count, list the descriptors only once the total may have reached the cap.
    if (!descriptors.cheap && !descriptors.mayBeAtLeast(baseline + maxConnections)) {
      return UNCOUNTED_INTERVAL_MS;
    }
    last = share();
    const room = maxConnections - last;
    if (room > 0) {
      return Math.min(maxIntervalMs, Math.max(MIN_INTERVAL_MS, Math.floor(room / ARRIVALS_PER_MS)));
    }
    reached = true;
    options.pause();
    options.onReached?.();
    reportReached(last);
    return REACHED_INTERVAL_MS;
  }

  function tick(): void {
    if (stopped) return;
    timer = setTimeout(tick, check());
    timer.unref();
  }
  last = share();
  tick();

  return {
    reached: () => reached,
    connections: () => last,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
