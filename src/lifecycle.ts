/**
 * @module The server's life after start-up: what each signal does, and stopping what started in
 * reverse order within the shutdown deadline.
 *
 * Signals (installing a handler is also what makes Bun heed a signal as PID 1 in a container):
 * - SIGTERM, SIGINT: stop. The listener closes, requests in flight finish (each line written before
 *   its answer), then the rest stops in reverse order of start, all within `--shutdown-timeout`.
 *   A second SIGTERM or SIGINT while stopping is logged and ignored: the deadline already bounds the
 *   stop, and ending at once would cut requests whose lines may be written but not yet answered.
 * - SIGHUP: check the certificate files now.
 * - SIGUSR1: log a summary of the state (requests in flight, connections, descriptors, sink).
 * - SIGUSR2, SIGALRM: logged and ignored; their default action would end the process on the spot.
 * - SIGPIPE: Bun ignores it already (a write to a closed pipe fails with EPIPE instead), so no
 *   handler is installed: one would run for every failed write.
 */
import type { Fields, Logger } from './support/log.ts';
import { throttle } from './support/throttle.ts';

/** Something that was started and has to be stopped. */
export type Stoppable = {
  /** What it is, for the log ("webhook listener", "audit log"). */
  readonly name: string;
  /** Stops it gracefully, letting work in flight finish; resolves once stopped. */
  stop(): Promise<void> | void;
  /** Stops it at once, abandoning work in flight; called instead of, or after, `stop` once the deadline has passed. */
  abort?(): void;
};

/** Where signals come from: `process`, or an emitter in tests. */
export type SignalSource = {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
};

/** Options for {@link createLifecycle}. */
export type LifecycleOptions = {
  /** Where signals and the stop are reported. */
  log: Logger;
  /** Time allowed from the stop signal to the end of the last stop, in ms. */
  shutdownTimeoutMs: number;
  /** Runs on SIGHUP (a certificate check). Default: nothing. */
  reload?: () => void;
  /** Fields of the state summary logged on SIGUSR1. Default: none. */
  summary?: () => Fields;
  /** Signal source. Default: `process`. */
  signals?: SignalSource;
  /** Clock in ms, for the deadline. Default: Date.now. */
  now?: () => number;
};

/** A server's life after start-up; see the module comment. */
export type Lifecycle = {
  /** Records that `s` has started; everything recorded is stopped in the reverse order. */
  started(s: Stoppable): void;
  /** Whether a stop signal has arrived. */
  readonly stopping: boolean;
  /**
   * Waits for SIGTERM or SIGINT (or returns at once if one came already), stops everything started,
   * and resolves with the exit status: 0 when all stopped within the deadline, 1 otherwise.
   */
  run(): Promise<number>;
  /** Stops everything started so far, in reverse order and without a deadline: a start-up that failed halfway. */
  unwind(): Promise<void>;
  /** Removes the signal handlers. */
  dispose(): void;
};

/** The signals that stop the server. */
const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
/** Signals whose default action would end the process, and which mean nothing here. */
const IGNORED_SIGNALS = ['SIGUSR2', 'SIGALRM'] as const;
/** Exit status when the deadline passed or something failed to stop. */
const EXIT_FAILURE = 1;

/** Resolves 'late' if `work` has not settled within `ms`; rejects as `work` does. */
function within(work: Promise<void> | void, ms: number): Promise<'done' | 'late'> {
  if (!(work instanceof Promise)) return Promise.resolve('done');
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms), 'late');
  });
  return Promise.race([work.then(() => 'done' as const), late]).finally(() => clearTimeout(timer));
}

/**
 * Installs the signal handlers (at once, so that a signal during start-up is not lost) and returns
 * the lifecycle; see the module comment for what each signal does.
 */
export function createLifecycle(options: LifecycleOptions): Lifecycle {
  const { log, shutdownTimeoutMs } = options;
  const signals = options.signals ?? process;
  const now = options.now ?? Date.now;
  const stack: Stoppable[] = [];
  let stopSignal: string | undefined;
  let deadlineAt = Number.POSITIVE_INFINITY;
  let wake: ((signal: string) => void) | undefined;

  const reportRepeat = throttle((suppressed: number, signal: string) => {
    log.warn('already stopping; signal ignored (the shutdown deadline bounds the stop)', {
      signal,
      msLeft: Math.max(0, Math.round(deadlineAt - now())),
      suppressedSinceLast: suppressed,
    });
  });
  const ignoredReports = new Map<string, (signal: string) => void>();
  function reportIgnored(signal: string): void {
    let report = ignoredReports.get(signal);
    if (report === undefined) {
      report = throttle((suppressed: number, name: string) => {
        log.warn('signal ignored', { signal: name, suppressedSinceLast: suppressed });
      });
      ignoredReports.set(signal, report);
    }
    report(signal);
  }
  const reportReload = throttle((suppressed: number) => {
    log.info('SIGHUP: checking the certificate files', { suppressedSinceLast: suppressed });
  });

  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const signal of STOP_SIGNALS) {
    handlers.set(signal, function onStopSignal() {
      if (stopSignal !== undefined) return reportRepeat(signal);
      stopSignal = signal;
      wake?.(signal);
    });
  }
  handlers.set('SIGHUP', function onHangup() {
    if (stopSignal !== undefined) return reportIgnored('SIGHUP');
    reportReload();
    options.reload?.();
  });
  handlers.set('SIGUSR1', function onUser1() {
    log.info('state', options.summary?.() ?? {});
  });
  for (const signal of IGNORED_SIGNALS) handlers.set(signal, () => reportIgnored(signal));
  for (const [signal, handler] of handlers) signals.on(signal, handler);

  async function stopAll(): Promise<number> {
    let status = 0;
    let late = false;
    for (const s of stack.splice(0).reverse()) {
      if (late) {
        s.abort?.();
        continue;
      }
      try {
        if ((await within(s.stop(), deadlineAt - now())) === 'late') {
          late = true;
          status = EXIT_FAILURE;
          log.error('shutdown deadline passed; abandoning what is in flight and flushing what is queued', {
            stopping: s.name,
            deadlineMs: shutdownTimeoutMs,
          });
          s.abort?.();
        }
      } catch (error) {
        status = EXIT_FAILURE;
        log.error('did not stop cleanly', { stopping: s.name, error });
      }
    }
    return status;
  }

  return {
    started(s) {
      stack.push(s);
    },
    get stopping() {
      return stopSignal !== undefined;
    },
    async run() {
      const signal =
        stopSignal ??
        (await new Promise<string>((resolve) => {
          wake = resolve;
        }));
      deadlineAt = now() + shutdownTimeoutMs;
      log.info('stopping: finishing in-flight requests', { signal, deadlineMs: shutdownTimeoutMs });
      const status = await stopAll();
      log.info('stopped', { status });
      return status;
    },
    async unwind() {
      for (const s of stack.splice(0).reverse()) {
        try {
          await s.stop();
        } catch (error) {
          log.error('did not stop cleanly', { stopping: s.name, error });
        }
      }
    },
    dispose() {
      for (const [signal, handler] of handlers) signals.off(signal, handler);
      handlers.clear();
    },
  };
}
