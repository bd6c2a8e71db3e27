/**
 * @module What a process costs, read from /proc: CPU time (utime + stime), resident memory now (VmRSS)
 * and at its peak (VmHWM), and an RSS sampler with a least-squares slope for the memory table.
 */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat times; `getconf CLK_TCK` is 100 on every Linux we run on. */
const CLOCK_TICKS = readClockTicks();

function readClockTicks(): number {
  const out = Bun.spawnSync(['getconf', 'CLK_TCK'], { stdout: 'pipe', stderr: 'ignore' });
  const ticks = Number(out.stdout.toString().trim());
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
}

/** Returns the CPU seconds (user + system) process `pid` has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses; the fields after its last ')' do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 (utime) and 15 (stime) of proc(5); fields[0] is field 3.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS;
}

/** Resident memory of a process, in bytes. */
export type Memory = { rssBytes: number; peakRssBytes: number };

/** Returns process `pid`'s resident set size now (VmRSS) and its peak since it started (VmHWM). */
export function memory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssBytes: kb('VmRSS') * 1024, peakRssBytes: kb('VmHWM') * 1024 };
}

/** RSS samples taken while a load ran, and what they say. */
export type RssSeries = {
  /** Seconds since sampling began, and RSS in bytes at that time. */
  samples: { t: number; rssBytes: number }[];
  startBytes: number;
  endBytes: number;
  maxBytes: number;
  /** Least-squares slope over all samples, in bytes per minute (the GC sawtooth makes it noisy). */
  slopeBytesPerMinute: number;
  /**
   * Lowest and mean RSS of the first and the last third of the samples. The lows are the troughs after
   * collections, so they follow what stays alive; a leak lifts both the lows and the means.
   */
  firstThird: { minBytes: number; meanBytes: number };
  lastThird: { minBytes: number; meanBytes: number };
};

/** Samples process `pid`'s RSS every `intervalMs` until `stop()` is called. */
export function sampleRss(pid: number, intervalMs: number): { stop(): RssSeries } {
  const started = performance.now();
  const samples: { t: number; rssBytes: number }[] = [];
  const take = () => {
    try {
      samples.push({ t: (performance.now() - started) / 1000, rssBytes: memory(pid).rssBytes });
    } catch {
      // The process is gone; the series ends here.
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      const rss = samples.map((s) => s.rssBytes);
      const third = Math.max(1, Math.floor(rss.length / 3));
      return {
        samples,
        startBytes: rss[0] ?? Number.NaN,
        endBytes: rss[rss.length - 1] ?? Number.NaN,
        maxBytes: Math.max(...rss),
        slopeBytesPerMinute: slope(samples) * 60,
        firstThird: lowAndMean(rss.slice(0, third)),
        lastThird: lowAndMean(rss.slice(-third)),
      };
    },
  };
}

function lowAndMean(values: readonly number[]): { minBytes: number; meanBytes: number } {
  return {
    minBytes: Math.min(...values),
    meanBytes: values.reduce((sum, v) => sum + v, 0) / Math.max(1, values.length),
  };
}

/** Least-squares slope of RSS over time, in bytes per second; 0 with fewer than two samples. */
function slope(samples: readonly { t: number; rssBytes: number }[]): number {
  const n = samples.length;
  if (n < 2) return 0;
  let st = 0;
  let sr = 0;
  for (const s of samples) {
    st += s.t;
    sr += s.rssBytes;
  }
  const mt = st / n;
  const mr = sr / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (s.rssBytes - mr);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
