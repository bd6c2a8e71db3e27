/**
 * @module Command-line flags: the 1.x set plus ours, parsed and validated once into a readonly Config.
 *
 * Nothing below `main` reads argv or the environment; everything it needs is in {@link Config}.
 */
import mri from 'mri';

/** Bytes in the "megabyte" of `--logger-max-size`: 1.x's rotation library counts MB as 1,048,576 bytes. */
export const MEGABYTE = 1024 * 1024;

/**
 * Default cap on a request body.
 *
 * The API server sends an object and, on update and delete, its old version. etcd refuses a write
 * over 1.5 MiB (`--max-request-bytes`, 1,572,864 by default), so each stored object is at most that.
 * The review carries them as JSON, where byte fields stored raw in etcd (Secret data, ConfigMap
 * binaryData) grow by 4/3 in base64: 2 × 1.5 MiB × 4/3 = 4 MiB. The rest of the review (uid, kinds,
 * userInfo with its groups and extra, options) is small; 1 MiB of headroom covers it generously.
 * A busy cluster with a raised etcd limit can raise this with `--max-request-bytes`.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 2 * 1.5 * MEGABYTE * (4 / 3) + 1 * MEGABYTE;

/**
 * Default deadline for one request, from arrival to answer. The API server waits `timeoutSeconds`
 * (10 s by default, 30 s at most) for a webhook; answering before it gives up lets it log our reason.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 8_000;

/**
 * Default time allowed to finish in-flight requests and flush after SIGTERM. Kubernetes sends
 * SIGKILL 30 s after SIGTERM by default; 15 s leaves room for the preStop delay and the kubelet.
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 15_000;

/** Default interval of the certificate files check that backs up file-change notifications. */
export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 10_000;

/** Everything the server needs to start, resolved from flags with every default applied. */
export type Config = Readonly<{
  /** Audit log path (`--logger-filename`). */
  loggerFilename: string;
  /** Write audit lines to stdout instead of the file (`--audit-to-std-log`). */
  auditToStdLog: boolean;
  /** Rotate when the file would grow past this many bytes (`--logger-max-size` × {@link MEGABYTE}). */
  loggerMaxSizeBytes: number;
  /** Rotated files to keep; 0 keeps all (`--logger-max-backups`). */
  loggerMaxBackups: number;
  /** PEM certificate chain (`--cert-filename`). */
  certFilename: string;
  /** PEM private key (`--cert-key-filename`). */
  certKeyFilename: string;
  /** HTTPS port for `/log-request` (`--server-port`). */
  serverPort: number;
  /** Plain HTTP port for `/metrics`, `/healthz`, `/readyz` (`--metrics-port`). */
  metricsPort: number;
  /** Address both listeners bind (`--bind-address`). */
  bindAddress: string;
  /** Largest request body accepted, in bytes (`--max-request-bytes`). */
  maxRequestBytes: number;
  /** Deadline for one request, in ms (`--request-timeout`). */
  requestTimeoutMs: number;
  /** Time allowed to drain on SIGTERM, in ms (`--shutdown-timeout`). */
  shutdownTimeoutMs: number;
  /** Interval of the certificate file check, in ms (`--tls-reload-interval`). */
  tlsReloadIntervalMs: number;
  /** Readable debug logs (`-v`, `--verbosity`). */
  verbose: boolean;
}>;

/** The outcome of parsing argv: a config, a request for help, or an error naming the flag. */
export type ParseResult =
  | { kind: 'config'; config: Config }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

/** The `--help` text; kept as a golden file in test/golden/help.txt. */
export const HELP = `Usage:
  kube-audit-rest [OPTIONS]

Writes every AdmissionReview the Kubernetes API server sends to POST /log-request as one
JSON line, then answers "allowed". Flags take --flag=value or --flag value.

Audit log:
      --logger-filename=PATH       File the audit lines go to (default: /tmp/kube-audit-rest.log)
      --audit-to-std-log           Write audit lines to stdout instead of the file; application
                                   logs stay on stderr (default: off)
      --logger-max-size=MB         Rotate the file when it would pass this size, in MB of
                                   1,048,576 bytes (default: 500)
      --logger-max-backups=N       Rotated files to keep; 0 keeps them all (default: 1)

Webhook server:
      --cert-filename=PATH         TLS certificate chain, PEM; reloaded when it changes
                                   (default: /etc/tls/tls.crt)
      --cert-key-filename=PATH     TLS private key, PEM (default: /etc/tls/tls.key)
      --server-port=PORT           HTTPS port of POST /log-request (default: 9090)
      --metrics-port=PORT          HTTP port of /metrics, /healthz and /readyz (default: 55555)
      --bind-address=ADDR          Address both ports listen on (default: 0.0.0.0)
      --max-request-bytes=BYTES    Largest request body accepted; larger ones get 413
                                   (default: ${DEFAULT_MAX_REQUEST_BYTES})
      --request-timeout=DURATION   Deadline for receiving a request body, e.g. 8s (default: 8s)
      --shutdown-timeout=DURATION  Time to finish in-flight requests after SIGTERM (default: 15s)
      --tls-reload-interval=DURATION
                                   How often the certificate files are checked for changes,
                                   besides change notifications (default: 10s)

Logging:
  -v, --verbosity                  Readable debug logs instead of JSON at info level

Help:
  -h, --help                       Show this help and exit
`;

const STRING_FLAGS = [
  'logger-filename',
  'logger-max-size',
  'logger-max-backups',
  'cert-filename',
  'cert-key-filename',
  'server-port',
  'metrics-port',
  'bind-address',
  'max-request-bytes',
  'request-timeout',
  'shutdown-timeout',
  'tls-reload-interval',
] as const;
const BOOLEAN_FLAGS = ['audit-to-std-log', 'verbosity', 'help'] as const;
const ALIASES: Record<string, string> = { v: 'verbosity', h: 'help' };

type StringFlag = (typeof STRING_FLAGS)[number];
type BooleanFlag = (typeof BOOLEAN_FLAGS)[number];

/** A flag value that failed validation; the message names the flag. */
class FlagError extends Error {}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m)$/;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** Parses a Go-style duration (`500ms`, `8s`, `1.5m`) into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * (DURATION_UNIT_MS[m[2] as string] as number);
}

/**
 * Parses argv (without the runtime and script) into a {@link Config}. Unknown flags, missing values,
 * positional arguments and out-of-range numbers give an error that names the flag.
 */
export function parseArgs(argv: readonly string[]): ParseResult {
  const problem = checkFlagNames(argv);
  if (problem !== undefined) return { kind: 'error', message: problem };
  const args: Args = mri(argv as string[], {
    string: [...STRING_FLAGS],
    boolean: [...BOOLEAN_FLAGS],
    alias: ALIASES,
  });
  if (args._.length > 0) return { kind: 'error', message: `unexpected argument "${args._[0]}"` };

  try {
    if (bool(args, 'help')) return { kind: 'help' };
    const auditToStdLog = bool(args, 'audit-to-std-log');
    const config: Config = {
      loggerFilename: nonEmpty(args, 'logger-filename', '/tmp/kube-audit-rest.log'),
      auditToStdLog,
      loggerMaxSizeBytes: integer(args, 'logger-max-size', 500, 1, 1024 * 1024) * MEGABYTE,
      loggerMaxBackups: integer(args, 'logger-max-backups', 1, 0, 100_000),
      certFilename: nonEmpty(args, 'cert-filename', '/etc/tls/tls.crt'),
      certKeyFilename: nonEmpty(args, 'cert-key-filename', '/etc/tls/tls.key'),
      serverPort: integer(args, 'server-port', 9090, 0, 65535),
      metricsPort: integer(args, 'metrics-port', 55555, 0, 65535),
      bindAddress: nonEmpty(args, 'bind-address', '0.0.0.0'),
      maxRequestBytes: integer(args, 'max-request-bytes', DEFAULT_MAX_REQUEST_BYTES, 1024, 1024 * MEGABYTE),
      requestTimeoutMs: duration(args, 'request-timeout', DEFAULT_REQUEST_TIMEOUT_MS),
      shutdownTimeoutMs: duration(args, 'shutdown-timeout', DEFAULT_SHUTDOWN_TIMEOUT_MS),
      tlsReloadIntervalMs: duration(args, 'tls-reload-interval', DEFAULT_TLS_RELOAD_INTERVAL_MS),
      verbose: bool(args, 'verbosity'),
    };
    if (config.serverPort !== 0 && config.serverPort === config.metricsPort) {
      throw new FlagError(`--server-port and --metrics-port must differ (both ${config.serverPort})`);
    }
    return { kind: 'config', config: Object.freeze(config) };
  } catch (err) {
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
}

type Args = mri.Argv<Record<string, unknown>>;

const STRING_SET = new Set<string>(STRING_FLAGS);
const BOOLEAN_SET = new Set<string>(BOOLEAN_FLAGS);

/**
 * Checks flag names and shapes before mri sees them: mri reads `--no-x` as `x=false`, takes `-1` for a
 * flag, and moves a boolean's `=value` into the positional arguments, all of which would hide the
 * flag the user actually got wrong.
 */
function checkFlagNames(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return undefined;
    if (!arg.startsWith('-') || arg === '-') continue;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (STRING_SET.has(name)) {
        const next = argv[i + 1];
        if (eq < 0 && next !== undefined && next.startsWith('-') && next !== '-') {
          return /^-\d/.test(next)
            ? `--${name} must be a whole number, got "${next}"`
            : `--${name} needs a value`;
        }
        if (eq < 0) i++; // the next argument is the value
        continue;
      }
      if (BOOLEAN_SET.has(name)) {
        const value = eq < 0 ? 'true' : arg.slice(eq + 1);
        if (value !== 'true' && value !== 'false') {
          return `--${name} takes no value (or true/false), got "${value}"`;
        }
        continue;
      }
      return `unknown flag --${name}`;
    }
    if (/^-\d/.test(arg)) return `negative numbers are not accepted (${arg})`;
    for (const letter of arg.slice(1)) {
      if (!(letter in ALIASES)) return `unknown flag -${letter}`;
    }
  }
  return undefined;
}

/** The last value given for a flag (mri collects repeats into an array; the last one wins, as in 1.x). */
function last(args: Args, name: StringFlag | BooleanFlag): unknown {
  const v: unknown = args[name];
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function bool(args: Args, name: BooleanFlag): boolean {
  const v = last(args, name);
  if (v === undefined || v === false) return false;
  if (v === true || v === 'true') return true;
  if (v === 'false') return false;
  throw new FlagError(`--${name} takes no value (or true/false), got "${String(v)}"`);
}

function text(args: Args, name: StringFlag): string | undefined {
  const v = last(args, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new FlagError(`--${name} needs a value`);
  return v;
}

function nonEmpty(args: Args, name: StringFlag, fallback: string): string {
  return text(args, name) ?? fallback;
}

function integer(args: Args, name: StringFlag, fallback: number, min: number, max: number): number {
  const v = text(args, name);
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw new FlagError(`--${name} must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new FlagError(`--${name} must be between ${min} and ${max}, got ${v}`);
  return n;
}

function duration(args: Args, name: StringFlag, fallback: number): number {
  const v = text(args, name);
  if (v === undefined) return fallback;
  const ms = parseDuration(v);
  if (ms === undefined || ms <= 0) {
    throw new FlagError(`--${name} must be a positive duration such as 500ms, 8s or 1m, got "${v}"`);
  }
  return ms;
}
