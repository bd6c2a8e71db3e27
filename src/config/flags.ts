/**
 * @module Flag tables: each flag declared once (name, kind, default, range, help line), and from the
 * table the parser, the validation, the defaults and the `--help` text.
 *
 * A command (the server, `convert`, `forward`, ...) is a table of flags keyed by the name its options
 * use; {@link parseFlags} turns argv into those options or an error naming the flag, and
 * {@link renderHelp} prints the table, so help, defaults and parsing cannot disagree.
 */
import mri from 'mri';

/** A flag value that failed validation; the message names the flag. */
export class FlagError extends Error {
  override readonly name = 'FlagError';
}

/** One flag: how it is spelled, parsed and described. `T` is the parsed value's type. */
export type Flag<T> = {
  /** Long name without dashes, e.g. `logger-filename`. */
  readonly name: string;
  /** One-letter short form without the dash, if any. */
  readonly short?: string;
  /** Takes no value (`--flag`, or `--flag=true|false`). */
  readonly boolean: boolean;
  /** What the value looks like in help, e.g. `PATH`; empty for booleans. */
  readonly placeholder: string;
  /** Help text: one sentence or two, wrapped by the help renderer. */
  readonly help: string;
  /** Heading the flag is listed under in help. */
  readonly section: string;
  /** Value when the flag is absent. */
  readonly default: T;
  /** How help shows the default (`off`, `8s`, ...); undefined prints no default. */
  readonly shownDefault: string | undefined;
  /** Parses the flag's text (already known to be present and non-empty); throws FlagError. */
  parse(text: string): T;
};

type Common = {
  name: string;
  help: string;
  section: string;
  short?: string;
};

/** A flag whose value is any non-empty text (a path, an address, a name). */
export function textFlag(o: Common & { placeholder: string; default: string }): Flag<string>;
export function textFlag(o: Common & { placeholder: string; default?: undefined }): Flag<string | undefined>;
export function textFlag(o: Common & { placeholder: string; default?: string }): Flag<string | undefined> {
  return {
    ...o,
    boolean: false,
    default: o.default,
    shownDefault: o.default,
    parse: (text) => text,
  };
}

/**
 * A flag that is on when given (`--flag`, `--flag=true`), off by default. With `default: true` it is
 * on unless given as `--flag=false`.
 */
export function booleanFlag(o: Common & { default?: boolean }): Flag<boolean> {
  const on = o.default ?? false;
  return {
    ...o,
    boolean: true,
    placeholder: '',
    default: on,
    shownDefault: on ? `on; --${o.name}=false turns it off` : 'off',
    parse: parseBoolean(o.name),
  };
}

function parseBoolean(name: string): (text: string) => boolean {
  return (text) => {
    if (text === 'true') return true;
    if (text === 'false') return false;
    throw new FlagError(`--${name} takes no value (or true/false), got "${text}"`);
  };
}

/**
 * A whole-number flag in `[min, max]`; the value is multiplied by `scale` (e.g. MB to bytes), so the
 * options hold base units while the flag keeps the unit its users know.
 */
export function integerFlag(
  o: Common & { placeholder: string; default: number; min: number; max: number; scale?: number },
): Flag<number> {
  const scale = o.scale ?? 1;
  return {
    ...o,
    boolean: false,
    default: o.default * scale,
    shownDefault: String(o.default),
    parse(text) {
      if (!/^\d+$/.test(text)) throw new FlagError(`--${o.name} must be a whole number, got "${text}"`);
      const n = Number(text);
      if (n < o.min || n > o.max) {
        throw new FlagError(`--${o.name} must be between ${o.min} and ${o.max}, got ${text}`);
      }
      return n * scale;
    },
  };
}

/** A decimal-number flag (`10`, `2.5`, `.5`) in `[min, max]`, for rates that need not be whole. */
export function numberFlag(
  o: Common & { placeholder: string; default: number; min: number; max: number },
): Flag<number> {
  return {
    ...o,
    boolean: false,
    shownDefault: String(o.default),
    parse(text) {
      if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text))
        throw new FlagError(`--${o.name} must be a number, got "${text}"`);
      const n = Number(text);
      if (n < o.min || n > o.max) {
        throw new FlagError(`--${o.name} must be between ${o.min} and ${o.max}, got ${text}`);
      }
      return n;
    },
  };
}

/** A flag that takes one of a fixed set of words. */
export function choiceFlag<const V extends string>(
  o: Common & { values: readonly V[]; default: V },
): Flag<V> {
  return {
    ...o,
    boolean: false,
    placeholder: o.values.join('|'),
    shownDefault: o.default,
    parse(text) {
      if ((o.values as readonly string[]).includes(text)) return text as V;
      throw new FlagError(`--${o.name} must be one of ${o.values.join(', ')}, got "${text}"`);
    },
  };
}

/**
 * Longest duration a flag may hold: JavaScript timers take at most 2^31 - 1 ms (about 24.8 days) and
 * fire at once, after 1 ms, when given more, so a longer duration could never be honoured.
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parses a Go duration (`time.ParseDuration`'s form: a sequence of decimal numbers with units ns,
 * us, µs, ms, s, m, h, such as `500ms`, `8s`, `1.5m`, `1h30m`) into milliseconds. Signs are not
 * accepted (no duration here can be negative). Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  let ms = 0;
  let at = 0;
  DURATION_PART.lastIndex = 0;
  while (at < text.length) {
    DURATION_PART.lastIndex = at;
    const m = DURATION_PART.exec(text);
    if (m === null) return undefined;
    ms += Number(m[1]) * (DURATION_UNIT_MS[m[2] as string] as number);
    at = DURATION_PART.lastIndex;
  }
  return at === 0 ? undefined : ms;
}

/** Formats milliseconds as the shortest Go-style duration that reads back the same (`8s`, `1m30s`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (rest >= size) {
      const whole = Math.floor(rest / size);
      parts.push(`${whole}${unit}`);
      rest -= whole * size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}

/** A duration flag (Go form, see {@link parseDuration}), held in milliseconds, in `(0, max]` or `[0, max]`. */
export function durationFlag(
  o: Common & { default: number; allowZero?: boolean; maxMs?: number; placeholder?: string },
): Flag<number> {
  const max = o.maxMs ?? MAX_DURATION_MS;
  return {
    ...o,
    boolean: false,
    placeholder: o.placeholder ?? 'DURATION',
    shownDefault: formatDuration(o.default),
    parse(text) {
      const ms = parseDuration(text);
      if (ms === undefined || (ms === 0 && !o.allowZero)) {
        const what = o.allowZero ? 'a duration' : 'a positive duration';
        throw new FlagError(`--${o.name} must be ${what} such as 500ms, 8s, 1m30s or 1h, got "${text}"`);
      }
      if (ms > max) throw new FlagError(`--${o.name} must be at most ${formatDuration(max)}, got "${text}"`);
      // Timers count whole milliseconds; anything shorter than 1 ms but above 0 waits 1 ms.
      return ms === 0 ? 0 : Math.max(1, Math.round(ms));
    },
  };
}

/** A command's flags, keyed by the option each one fills. */
export type FlagTable = Readonly<Record<string, Flag<unknown>>>;

/** The options a table parses into: each key holds its flag's value type. */
export type ValuesOf<T extends FlagTable> = {
  readonly [K in keyof T]: T[K] extends Flag<infer V> ? V : never;
};

/** The outcome of {@link parseFlags}. */
export type FlagParse<T extends FlagTable> =
  | { kind: 'values'; values: ValuesOf<T>; positionals: readonly string[] }
  | { kind: 'help' }
  | { kind: 'error'; message: string };

/** The flag every table has: `-h`, `--help`. */
export const HELP_FLAG: Flag<boolean> = {
  ...booleanFlag({ name: 'help', short: 'h', section: 'Help', help: 'Show this help and exit' }),
  shownDefault: undefined,
};

/**
 * Parses argv (flags only, after any subcommand) against `table`. Unknown flags, missing values,
 * malformed or out-of-range values and, unless `positionals` is set, positional arguments give an
 * error that names the flag. The last of a repeated flag wins, as in 1.x. `-h`/`--help` anywhere
 * asks for help.
 */
export function parseFlags<T extends FlagTable>(
  table: T,
  argv: readonly string[],
  options: { positionals?: boolean } = {},
): FlagParse<T> {
  const byName = new Map<string, Flag<unknown>>();
  const shorts = new Map<string, Flag<unknown>>();
  for (const flag of [...Object.values(table), HELP_FLAG]) {
    byName.set(flag.name, flag);
    if (flag.short !== undefined) shorts.set(flag.short, flag);
  }
  const problem = checkFlagShapes(argv, byName, shorts);
  if (problem !== undefined) return { kind: 'error', message: problem };

  // Positional arguments are picked out here, not by mri, which would read a lone `-` (stdin, by
  // convention) as a flag and swallow the argument after it.
  const flagArgs: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    flagArgs.push(arg);
    const takesNext =
      arg.startsWith('--') && !arg.includes('=') && byName.get(arg.slice(2))?.boolean === false;
    if (takesNext && i + 1 < argv.length) flagArgs.push(argv[++i] as string);
  }
  if (positionals.length > 0 && !options.positionals) {
    return { kind: 'error', message: `unexpected argument "${positionals[0]}"` };
  }
  const strings = [...byName.values()].filter((f) => !f.boolean).map((f) => f.name);
  const booleans = [...byName.values()].filter((f) => f.boolean).map((f) => f.name);
  const alias: Record<string, string> = {};
  for (const [letter, flag] of shorts) alias[letter] = flag.name;
  const args = mri(flagArgs, { string: strings, boolean: booleans, alias });
  try {
    if (readBoolean(args, HELP_FLAG)) return { kind: 'help' };
    const values: Record<string, unknown> = {};
    for (const [key, flag] of Object.entries(table)) values[key] = read(args, flag);
    return { kind: 'values', values: values as ValuesOf<T>, positionals };
  } catch (err) {
    if (err instanceof FlagError) return { kind: 'error', message: err.message };
    throw err;
  }
}

type Args = mri.Argv<Record<string, unknown>>;

/** The last value given for a flag: mri collects repeats into an array. */
function last(args: Args, name: string): unknown {
  const v: unknown = args[name];
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function readBoolean(args: Args, flag: Flag<unknown>): boolean {
  const v = last(args, flag.name);
  if (v === undefined) return flag.default === true;
  if (v === false) return false;
  if (v === true) return true;
  return parseBoolean(flag.name)(String(v));
}

function read(args: Args, flag: Flag<unknown>): unknown {
  if (flag.boolean) return readBoolean(args, flag);
  const v = last(args, flag.name);
  if (v === undefined) return flag.default;
  if (typeof v !== 'string' || v === '') throw new FlagError(`--${flag.name} needs a value`);
  return flag.parse(v);
}

/**
 * Checks flag names and shapes before mri sees them: mri reads `--no-x` as `x=false`, takes `-1` for a
 * flag, and moves a boolean's `=value` into the positional arguments, all of which would hide the
 * flag the user actually got wrong.
 */
function checkFlagShapes(
  argv: readonly string[],
  byName: ReadonlyMap<string, Flag<unknown>>,
  shorts: ReadonlyMap<string, Flag<unknown>>,
): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return undefined;
    if (!arg.startsWith('-') || arg === '-') continue;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const flag = byName.get(name);
      if (flag === undefined) return `unknown flag --${name}`;
      if (flag.boolean) {
        const value = eq < 0 ? 'true' : arg.slice(eq + 1);
        if (value !== 'true' && value !== 'false') {
          return `--${name} takes no value (or true/false), got "${value}"`;
        }
        continue;
      }
      const next = argv[i + 1];
      if (eq < 0 && (next === undefined || (next.startsWith('-') && next !== '-'))) {
        return next !== undefined && /^-\d/.test(next)
          ? `--${name} must be a whole number, got "${next}"`
          : `--${name} needs a value`;
      }
      if (eq < 0) i++; // the next argument is the value
      continue;
    }
    if (/^-\d/.test(arg)) return `negative numbers are not accepted (${arg})`;
    for (const letter of arg.slice(1)) {
      const flag = shorts.get(letter);
      if (flag === undefined) return `unknown flag -${letter}`;
      if (!flag.boolean) return `-${letter} needs a value: use --${flag.name}=VALUE`;
    }
  }
  return undefined;
}

/** Column where help text starts; long flag spellings move their text to the next line. */
const HELP_COLUMN = 35;
/** Widest help line, to read well in an 100-column terminal. */
const HELP_WIDTH = 100;

/** Wraps `text` into lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/**
 * Renders help for a command: its usage lines, a paragraph saying what it does, then each section's
 * flags in table order with their defaults, and `-h, --help` last.
 */
export function renderHelp(command: { usage: readonly string[]; about: string; table: FlagTable }): string {
  const out: string[] = ['Usage:', ...command.usage.map((u) => `  ${u}`), ''];
  out.push(...wrap(command.about, HELP_WIDTH - 4), '');
  const sections = new Map<string, Flag<unknown>[]>();
  for (const flag of [...Object.values(command.table), HELP_FLAG]) {
    const list = sections.get(flag.section) ?? [];
    list.push(flag);
    sections.set(flag.section, list);
  }
  for (const [section, flags] of sections) {
    out.push(`${section}:`);
    for (const flag of flags) {
      const short = flag.short !== undefined ? `-${flag.short}, ` : '    ';
      const spelling = `  ${short}--${flag.name}${flag.boolean ? '' : `=${flag.placeholder}`}`;
      const shown = flag.shownDefault === undefined ? '' : ` (default: ${flag.shownDefault})`;
      const text = wrap(`${flag.help}${shown}`, HELP_WIDTH - HELP_COLUMN);
      if (spelling.length + 1 < HELP_COLUMN) {
        out.push(spelling.padEnd(HELP_COLUMN) + (text[0] ?? ''));
        text.shift();
      } else {
        out.push(spelling);
      }
      for (const rest of text) out.push(' '.repeat(HELP_COLUMN) + rest);
    }
    out.push('');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
