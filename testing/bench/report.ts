/**
 * @module The bench's output: markdown tables, number formats, the machine description, and the verdict
 * of the audit log check.
 */
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { LogCheck } from './log-check.ts';

/** Renders a markdown table with padded columns; numeric-looking columns are right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const numeric = headers.map(
    (_, c) => rows.length > 0 && rows.every((r) => /^([-+~]?[\d,.]+( ?%| ?[a-zA-Z/]+)?)?$/.test(r[c] ?? '')),
  );
  const width = headers.map((h, c) => Math.max(3, h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const cell = (text: string, c: number) => {
    const w = width[c] ?? 0;
    return numeric[c] ? text.padStart(w) : text.padEnd(w);
  };
  const rule = width.map((w, c) => (numeric[c] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)));
  return [
    `| ${headers.map(cell).join(' | ')} |`,
    `| ${rule.join(' | ')} |`,
    ...rows.map((r) => `| ${headers.map((_, c) => cell(r[c] ?? '', c)).join(' | ')} |`),
  ].join('\n');
}

/** An integer with thousands separators. */
export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

/** Microseconds as milliseconds with two decimals. */
export function ms(us: number): string {
  return Number.isFinite(us) ? (us / 1000).toFixed(2) : 'n/a';
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / 1024 / 1024).toFixed(1) : 'n/a';
}

/** A byte count in the largest unit that keeps it at least 1 (B, KiB, MiB). */
export function size(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${+(bytes / 1024 / 1024).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** A number with `digits` decimals. */
export function fixed(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

/** A ratio as a percentage with one decimal. */
export function percent(ratio: number): string {
  return Number.isFinite(ratio) ? `${(ratio * 100).toFixed(1)}%` : 'n/a';
}

/** Whether the log check passed, and what the table cell says. */
export type Verdict = { ok: boolean; text: string };

/**
 * Judges a log check against what the generators saw: `acknowledged` requests answered 200 and
 * `unknown` requests whose fate they could not see (cut off in flight or lost with a connection; each may
 * or may not have a line). Exact when `unknown` is 0.
 */
export function verdict(check: LogCheck, acknowledged: number, unknown: number): Verdict {
  const problems: string[] = [];
  if (check.badLines > 0) problems.push(`${check.badLines} bad lines`);
  if (check.foreignLines > 0) problems.push(`${check.foreignLines} foreign`);
  if (check.duplicateUids > 0) problems.push(`${check.duplicateUids} repeated uids`);
  if (check.trailingBytes > 0) problems.push(`cut line of ${check.trailingBytes} B`);
  const n = check.benchLines;
  if (n < acknowledged || n > acknowledged + unknown)
    problems.push(
      `${int(n)} lines for ${int(acknowledged)} acknowledged${unknown > 0 ? ` + ≤${int(unknown)} unknown` : ''}`,
    );
  if (problems.length > 0) return { ok: false, text: `FAIL: ${problems.join(', ')}` };
  if (unknown > 0)
    return { ok: true, text: `ok: ${int(n)} lines, ${int(acknowledged)} acked + ≤${int(unknown)} in flight` };
  return { ok: true, text: `ok: ${int(n)} = ${int(n)}` };
}

/** The machine and software the numbers come from, as markdown list items. */
export function machine(): string[] {
  const cpuModel =
    /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ??
    cpus()[0]?.model ??
    '?';
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  const git = (args: string[]) =>
    Bun.spawnSync(['git', ...args], {
      cwd: join(import.meta.dir, '..', '..'),
      stdout: 'pipe',
      stderr: 'ignore',
    })
      .stdout.toString()
      .trim();
  const commit = git(['rev-parse', '--short', 'HEAD']) || '?';
  const dirty = git(['status', '--porcelain', '--', 'src']) === '' ? '' : ' (src/ has uncommitted changes)';
  return [
    `- CPUs: ${cpus().length} × ${cpuModel} (nproc ${navigatorCpus()})`,
    `- memory: ${mib(totalmem())} MiB; kernel ${kernel}; Bun ${Bun.version}`,
    `- commit ${commit}${dirty}; ${new Date().toISOString()}`,
  ];
}

/** What `nproc` prints: the CPUs this process may run on. */
function navigatorCpus(): string {
  return Bun.spawnSync(['nproc'], { stdout: 'pipe', stderr: 'ignore' }).stdout.toString().trim() || '?';
}
