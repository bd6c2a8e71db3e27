import { describe, expect, it } from 'bun:test';
import {
  booleanFlag,
  choiceFlag,
  durationFlag,
  formatDuration,
  integerFlag,
  MAX_DURATION_MS,
  numberFlag,
  parseDuration,
  parseFlags,
  renderHelp,
  textFlag,
} from '../../src/config/flags.ts';

const TABLE = {
  path: textFlag({ name: 'path', placeholder: 'PATH', default: '/x', section: 'A', help: 'Where' }),
  name: textFlag({ name: 'name', placeholder: 'NAME', section: 'A', help: 'Who' }),
  quiet: booleanFlag({ name: 'quiet', short: 'q', section: 'B', help: 'Say less' }),
  size: integerFlag({
    name: 'size',
    placeholder: 'MB',
    default: 2,
    min: 1,
    max: 9,
    scale: 1024,
    section: 'B',
    help: 'How big',
  }),
  mode: choiceFlag({
    name: 'mode',
    values: ['fast', 'safe'] as const,
    default: 'safe',
    section: 'B',
    help: 'How',
  }),
  wait: durationFlag({ name: 'wait', default: 1500, section: 'B', help: 'How long' }),
  grace: durationFlag({ name: 'grace', default: 0, allowZero: true, section: 'B', help: 'Grace' }),
};

describe('parseDuration', () => {
  it('reads every unit Go reads, alone and in sequence', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('1500us')).toBe(1.5);
    expect(parseDuration('1500µs')).toBe(1.5);
    expect(parseDuration('2000000ns')).toBe(2);
    expect(parseDuration('.5s')).toBe(500);
    expect(parseDuration('0')).toBe(0);
  });

  it('refuses what Go refuses, and signs', () => {
    for (const text of ['', 's', '8', '1d', '1h 30m', '-1s', '+1s', '1.s.5', 'ms', '1hh']) {
      expect(parseDuration(text)).toBeUndefined();
    }
  });
});

describe('formatDuration', () => {
  it('prints the shortest form that reads back the same', () => {
    for (const ms of [0, 1, 999, 1000, 8000, 90_000, 3_600_000, 5_400_500, MAX_DURATION_MS]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(90_000)).toBe('1m30s');
  });
});

describe('parseFlags', () => {
  it('fills every option with its default when no flag is given', () => {
    const parsed = parseFlags(TABLE, []);
    expect(parsed).toEqual({
      kind: 'values',
      values: { path: '/x', name: undefined, quiet: false, size: 2048, mode: 'safe', wait: 1500, grace: 0 },
      positionals: [],
    });
  });

  it('scales integers and parses each kind', () => {
    const parsed = parseFlags(TABLE, [
      '--size=3',
      '-q',
      '--mode',
      'fast',
      '--wait=2s',
      '--grace=0s',
      '--name=n',
    ]);
    if (parsed.kind !== 'values') throw new Error(JSON.stringify(parsed));
    expect(parsed.values).toEqual({
      path: '/x',
      name: 'n',
      quiet: true,
      size: 3072,
      mode: 'fast',
      wait: 2000,
      grace: 0,
    });
  });

  it('keeps positional arguments only when the command takes them', () => {
    expect(parseFlags(TABLE, ['a.log'])).toEqual({ kind: 'error', message: 'unexpected argument "a.log"' });
    const parsed = parseFlags(TABLE, ['a.log', '--quiet', 'b.log'], { positionals: true });
    expect(parsed.kind === 'values' && parsed.positionals).toEqual(['a.log', 'b.log']);
  });

  it('refuses a short form of a flag that needs a value, naming the long form', () => {
    const table = {
      n: integerFlag({
        name: 'count',
        short: 'n',
        placeholder: 'N',
        default: 1,
        min: 0,
        max: 9,
        section: 'A',
        help: 'How many',
      }),
    };
    expect(parseFlags(table, ['-n'])).toEqual({
      kind: 'error',
      message: '-n needs a value: use --count=VALUE',
    });
  });

  it('keeps a default-on boolean on unless it is given as =false', () => {
    const table = { eager: booleanFlag({ name: 'eager', default: true, section: 'A', help: 'Hurry' }) };
    const values = (argv: string[]) => {
      const parsed = parseFlags(table, argv);
      if (parsed.kind !== 'values') throw new Error(JSON.stringify(parsed));
      return parsed.values.eager;
    };
    expect([values([]), values(['--eager']), values(['--eager=true']), values(['--eager=false'])]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(values(['--eager=false', '--eager'])).toBe(true);
    expect(parseFlags(table, ['--eager=no'])).toEqual({
      kind: 'error',
      message: '--eager takes no value (or true/false), got "no"',
    });
    expect(renderHelp({ usage: ['t'], about: 'x', table })).toContain(
      'Hurry (default: on; --eager=false turns it off)',
    );
  });

  it('reads decimal numbers within their range and refuses anything else, naming the flag', () => {
    const table = {
      rate: numberFlag({
        name: 'rate',
        placeholder: 'QPS',
        default: 10,
        min: 0.01,
        max: 100,
        section: 'A',
        help: 'R',
      }),
    };
    const read = (argv: string[]) => {
      const parsed = parseFlags(table, argv);
      return parsed.kind === 'values' ? parsed.values.rate : parsed;
    };
    expect([read([]), read(['--rate=2.5']), read(['--rate=.5']), read(['--rate', '7'])]).toEqual([
      10, 2.5, 0.5, 7,
    ]);
    expect(read(['--rate=1e3'])).toEqual({ kind: 'error', message: '--rate must be a number, got "1e3"' });
    expect(read(['--rate=0'])).toEqual({
      kind: 'error',
      message: '--rate must be between 0.01 and 100, got 0',
    });
    expect(read(['--rate=-1'])).toEqual({ kind: 'error', message: '--rate must be a number, got "-1"' });
  });

  it('rounds sub-millisecond durations up to the 1 ms a timer can wait', () => {
    const parsed = parseFlags(TABLE, ['--wait=100us']);
    expect(parsed.kind === 'values' && parsed.values.wait).toBe(1);
  });
});

describe('renderHelp', () => {
  it('lists flags by section with defaults, wraps long text and ends with help', () => {
    const text = renderHelp({ usage: ['tool [OPTIONS]'], about: 'Does a thing.', table: TABLE });
    expect(text).toContain('Usage:\n  tool [OPTIONS]\n\nDoes a thing.\n\nA:\n');
    expect(text).toContain('      --path=PATH                  Where (default: /x)\n');
    expect(text).toContain('      --name=NAME                  Who\n');
    expect(text).toContain('  -q, --quiet                      Say less (default: off)\n');
    expect(text).toContain('      --mode=fast|safe             How (default: safe)\n');
    expect(text).toContain('      --wait=DURATION              How long (default: 1s500ms)\n');
    expect(text.endsWith('Help:\n  -h, --help                       Show this help and exit\n')).toBe(true);
    for (const line of text.split('\n')) expect(line.length).toBeLessThanOrEqual(100);
  });
});
