/**
 * @module `kube-audit-rest convert`: admissionreview lines (ours or 1.x's) to audit.k8s.io/v1 Event
 * lines, through the same pipeline the server runs: the policy, redaction and cluster name apply.
 *
 * Reads the files given (or stdin, or `-`) line by line and writes Events to stdout in order. A line
 * that is not an AdmissionReview is reported on stderr with its file and line number and skipped;
 * the run goes on, and the exit status says whether anything was skipped. Lines that already are
 * Events pass through unchanged, so a file mixing both formats (after `--output-format` changed)
 * converts whole.
 */
import { openSync } from 'node:fs';
import { CompositionError } from '../compose.ts';
import { parseFlags, renderHelp } from '../config/flags.ts';
import { RECORD_FLAGS } from '../config/serve.ts';
import { composeLineConverter, type LineConverter } from './convert-line.ts';

/** The flags of `convert`: those that shape a record, but the format, which is always audit-event. */
export const CONVERT_FLAGS = (({ outputFormat: _, ...rest }) => rest)(RECORD_FLAGS);

/** `convert --help`; kept as a golden file in test/golden/help-convert.txt. */
export const CONVERT_HELP = renderHelp({
  usage: ['kube-audit-rest convert [OPTIONS] [FILE...]'],
  about:
    'Converts admissionreview audit lines (written by kube-audit-rest 1.x or 2.x) to audit.k8s.io/v1 ' +
    'Event lines on stdout, applying the policy, Secret redaction and cluster name as the server would. ' +
    "Reads stdin when no FILE (or -) is given. Each Event keeps the line's requestReceivedTimestamp, " +
    "which is also its stageTimestamp, and the line's own clusterName wins over --cluster-name. A " +
    'line written at level Metadata stays Metadata whatever the policy says, and markers of Secret ' +
    'values redacted already are kept; without --redaction-key-file new markers differ from the ' +
    "server's. Exit status: 0 all lines converted, 1 some lines skipped (each reported on stderr), " +
    '2 nothing could be done (bad flags, unusable policy).',
  table: CONVERT_FLAGS,
});

/** Exit statuses of `convert`. */
export const CONVERT_EXIT = { ok: 0, skipped: 1, unusable: 2 } as const;

/** Longest input line read: larger than any review the server accepts by default (5 MiB). */
const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** Output bytes gathered before a flush to stdout. */
const FLUSH_BYTES = 1024 * 1024;

/** Where `convert` reads and writes; the process' streams by default, replaceable in tests. */
export type ConvertIo = {
  /** Opens an input by name (`-` is stdin). */
  open(name: string): ReadableStream<Uint8Array>;
  /** Writes converted bytes. */
  write(bytes: Uint8Array): void | Promise<void>;
  /** Writes a diagnostic line. */
  report(text: string): void;
};

/** Yields the lines of a stream without their `\n`; a last line without one is yielded too. */
async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array | 'too long'> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let skipping = false;
  for await (const chunk of stream) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
      const piece = chunk.subarray(from, nl);
      from = nl + 1;
      if (skipping || pendingBytes + piece.length > MAX_LINE_BYTES) {
        skipping = false;
        pending = [];
        pendingBytes = 0;
        yield 'too long';
        continue;
      }
      if (pending.length === 0) yield piece;
      else {
        pending.push(piece);
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
    const rest = chunk.subarray(from);
    if (rest.length > 0 && !skipping) {
      pending.push(rest.slice());
      pendingBytes += rest.length;
      if (pendingBytes > MAX_LINE_BYTES) {
        skipping = true;
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (skipping) yield 'too long';
  else if (pendingBytes > 0) yield Buffer.concat(pending);
}

/** Runs `convert` with its argv (after the word `convert`) and resolves with the exit status. */
export async function convert(argv: readonly string[], io: ConvertIo): Promise<number> {
  const parsed = parseFlags(CONVERT_FLAGS, argv, { positionals: true });
  if (parsed.kind === 'help') {
    await io.write(new TextEncoder().encode(CONVERT_HELP));
    return CONVERT_EXIT.ok;
  }
  if (parsed.kind === 'error') {
    io.report(
      `kube-audit-rest convert: ${parsed.message}\nRun kube-audit-rest convert --help for the flags.`,
    );
    return CONVERT_EXIT.unusable;
  }
  let convertLine: LineConverter;
  try {
    convertLine = await composeLineConverter(parsed.values);
  } catch (err) {
    if (!(err instanceof CompositionError)) throw err;
    io.report(`kube-audit-rest convert: ${err.message}`);
    return CONVERT_EXIT.unusable;
  }

  const inputs = parsed.positionals.length === 0 ? ['-'] : parsed.positionals;
  let skipped = 0;
  let converted = 0;
  let buffered: Uint8Array[] = [];
  let bufferedBytes = 0;
  const flush = async () => {
    if (bufferedBytes === 0) return;
    await io.write(Buffer.concat(buffered));
    buffered = [];
    bufferedBytes = 0;
  };
  const emit = (bytes: Uint8Array) => {
    buffered.push(bytes);
    bufferedBytes += bytes.length;
  };

  for (const name of inputs) {
    const label = name === '-' ? 'stdin' : name;
    let number = 0;
    const skip = (why: string) => {
      skipped++;
      io.report(`${label}:${number}: skipped: ${why}`);
    };
    try {
      for await (const line of linesOf(io.open(name))) {
        number++;
        if (line === 'too long') {
          skip(`longer than ${MAX_LINE_BYTES} bytes`);
          continue;
        }
        if (line.length === 0) continue;
        const result = convertLine(line);
        if (result.kind === 'skipped') {
          skip(result.reason);
          continue;
        }
        if (result.kind === 'event-line') {
          emit(line);
          emit(NEWLINE);
        } else if (result.kind === 'events') {
          for (const event of result.events) {
            emit(event);
            emit(NEWLINE);
          }
        }
        converted++;
        if (bufferedBytes >= FLUSH_BYTES) await flush();
      }
    } catch (err) {
      skipped++;
      io.report(`${label}: cannot read: ${(err as Error).message}`);
    }
  }
  await flush();
  if (skipped > 0) io.report(`kube-audit-rest convert: ${skipped} line(s) skipped, ${converted} converted`);
  return skipped > 0 ? CONVERT_EXIT.skipped : CONVERT_EXIT.ok;
}

const NEWLINE = new Uint8Array([0x0a]);

/**
 * Opens an input file for reading, throwing at once (with the system's reason) when it cannot be
 * opened, where a lazily opened stream would read as empty.
 */
export function openInput(name: string): ReadableStream<Uint8Array> {
  if (name === '-') return Bun.stdin.stream();
  return Bun.file(openSync(name, 'r')).stream();
}

/** The process' own streams for {@link convert}. */
export function processIo(): ConvertIo {
  const out = Bun.stdout.writer();
  return {
    open: openInput,
    async write(bytes) {
      out.write(bytes);
      await out.flush();
    },
    report: (text) => {
      process.stderr.write(`${text}\n`);
    },
  };
}
