/**
 * @module Full garbage collections paced by large request bodies, so memory follows the bodies in flight.
 *
 * A 1 MiB body is one allocation that the collector counts as "extra memory" and frees lazily: with
 * 16 such requests in flight the process held 135-161 MiB (peak RSS), against 57 for a server that
 * only reads the body, most of it bodies already answered and not yet collected. A synchronous full
 * collection frees them, but stops everything for about 15 ms. So the pacer looks at RSS once per
 * `everyBytes` of large bodies and collects only when RSS is above `rssBytes`: a stream of large
 * bodies is held near that bound, while a cluster that sends one now and then never pays the pause.
 */

/** Options for {@link createGcPacer}. */
export type GcPacerOptions = {
  /** Bodies at least this large count towards the next look at RSS. Default 256 KiB. */
  minBodyBytes?: number;
  /** Look at RSS once the counted bodies add up to this many bytes. Default 8 MiB. */
  everyBytes?: number;
  /** Collect when RSS is above this many bytes. Default 96 MiB. */
  rssBytes?: number;
  /** Reads the resident set size. Default: `process.memoryUsage.rss` (about 11 µs a call here). */
  rss?: () => number;
  /** Runs one collection. Default: a synchronous full collection, `Bun.gc(true)`. */
  collect?: () => void;
};

/** Bodies smaller than this are left to the collector's own pace: they are most requests, and cheap. */
const DEFAULT_MIN_BODY_BYTES = 256 * 1024;
/** Eight 1 MiB bodies between looks: RSS overshoots the bound by about that much at most. */
const DEFAULT_EVERY_BYTES = 8 * 1024 * 1024;
/**
 * Below the 128 MiB the Deployment requests (k8s/), with room for the overshoot. Measured with 16 x
 * 1 MiB in flight: peak RSS about 100 MiB instead of 135-161, at about 0.5 ms of CPU per request.
 */
const DEFAULT_RSS_BYTES = 96 * 1024 * 1024;

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`gc pacer: ${name} must be a positive integer, got ${value}`);
  }
}

/**
 * Creates the pacer: call the returned function with each body's size once its line is written;
 * every `everyBytes` of large bodies it reads RSS, and collects if RSS is above `rssBytes`.
 */
export function createGcPacer(options: GcPacerOptions = {}): (bodyBytes: number) => void {
  const minBodyBytes = options.minBodyBytes ?? DEFAULT_MIN_BODY_BYTES;
  const everyBytes = options.everyBytes ?? DEFAULT_EVERY_BYTES;
  const rssBytes = options.rssBytes ?? DEFAULT_RSS_BYTES;
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  const collect = options.collect ?? (() => Bun.gc(true));
  requirePositiveInteger('minBodyBytes', minBodyBytes);
  requirePositiveInteger('everyBytes', everyBytes);
  requirePositiveInteger('rssBytes', rssBytes);
  let counted = 0;
  return function afterBody(bodyBytes: number): void {
    if (bodyBytes < minBodyBytes) return;
    counted += bodyBytes;
    if (counted < everyBytes) return;
    counted = 0;
    if (rss() > rssBytes) collect();
  };
}
