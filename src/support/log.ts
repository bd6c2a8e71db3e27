/**
 * @module Application logs: structured JSON lines on stderr, or readable lines when verbose.
 *
 * Audit lines never go through here. Callers pass fields they chose; request bodies are never
 * among them (they hold Secrets), only identifiers such as uid, kind and user.
 */

/** Severity of an application log entry. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

/** Fields attached to one log entry; values must be JSON-serialisable. */
export type Fields = Record<string, unknown>;

/** A logger bound to one component name. */
export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** Whether debug entries are written; lets callers skip building fields. */
  readonly debugEnabled: boolean;
  /** Returns a logger that writes the same way under another component name. */
  child(component: string): Logger;
}

/** Options for {@link createLogger}. */
export type LoggerOptions = {
  /** Readable `time level component msg k=v` lines and debug entries. Default false: JSON, info and up. */
  verbose?: boolean;
  /** Where entries go. Default: stderr. */
  write?: (text: string) => void;
  /** Clock for the `time` field. Default: Date.now. */
  now?: () => number;
  /** Component name. Default "kube-audit-rest". */
  component?: string;
};

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Serialises an Error (and its cause chain) into plain fields, since JSON.stringify drops them. */
function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Fields = { name: value.name, message: value.message };
    const code = (value as NodeJS.ErrnoException).code;
    if (code) out.code = code;
    if (value.cause !== undefined) out.cause = plain(value.cause);
    return out;
  }
  return value;
}

/** Creates a logger that writes one entry per line. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const verbose = options.verbose ?? false;
  const write = options.write ?? ((text: string) => process.stderr.write(text));
  const now = options.now ?? Date.now;
  const min = verbose ? ORDER.debug : ORDER.info;

  function make(component: string): Logger {
    function emit(level: Level, msg: string, fields?: Fields): void {
      if (ORDER[level] < min) return;
      const time = new Date(now()).toISOString();
      if (verbose) {
        let text = `${time} ${level.toUpperCase().padEnd(5)} ${component} ${msg}`;
        if (fields) for (const [k, v] of Object.entries(fields)) text += ` ${k}=${JSON.stringify(plain(v))}`;
        write(`${text}\n`);
        return;
      }
      const entry: Fields = { time, level, component, msg };
      if (fields) for (const [k, v] of Object.entries(fields)) entry[k] = plain(v);
      write(`${JSON.stringify(entry)}\n`);
    }
    return {
      debug: (msg, fields) => emit('debug', msg, fields),
      info: (msg, fields) => emit('info', msg, fields),
      warn: (msg, fields) => emit('warn', msg, fields),
      error: (msg, fields) => emit('error', msg, fields),
      debugEnabled: verbose,
      child: (name) => make(name),
    };
  }
  return make(options.component ?? 'kube-audit-rest');
}

/** A logger that drops everything; for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ write: () => {} });
