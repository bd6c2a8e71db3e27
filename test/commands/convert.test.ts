import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CONVERT_EXIT,
  CONVERT_HELP,
  type ConvertIo,
  convert,
  openInput,
} from '../../src/commands/convert.ts';
import { parseRfc3339 } from '../../src/commands/convert-line.ts';
import { checkEvents } from '../../testing/harness/event-oracles.ts';
import { runToExit } from '../helpers/server-process.ts';

const REPO = join(import.meta.dir, '..', '..');
const ONE_X_EXAMPLE = join(REPO, 'test', 'fixtures', 'convert', 'kube-audit-rest-1.x-example.jsonl');
const LOCAL_DATA = join(REPO, 'testing', 'locally', 'data');

/** The captured reviews as kube-audit-rest writes them: compact, with a requestReceivedTimestamp. */
function capturedLog(): string {
  return readdirSync(LOCAL_DATA)
    .sort()
    .map((f) => {
      const review = JSON.parse(readFileSync(join(LOCAL_DATA, f), 'utf8')) as Record<string, unknown>;
      return JSON.stringify({ ...review, requestReceivedTimestamp: '2026-11-28T01:48:38.123456789Z' });
    })
    .join('\n');
}
const ORACLE_BUILD_MS = 600_000;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-convert-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs convert in process over named inputs; returns its status, stdout lines and stderr lines. */
async function run(argv: string[], inputs: Record<string, string> = {}) {
  const out: Uint8Array[] = [];
  const err: string[] = [];
  const io: ConvertIo = {
    open: (name) => {
      const text = inputs[name];
      if (text !== undefined) return new Response(text).body as ReadableStream<Uint8Array>;
      return openInput(name);
    },
    write: (bytes) => {
      out.push(bytes.slice());
    },
    report: (text) => err.push(text),
  };
  const status = await convert(argv, io);
  const text = Buffer.concat(out).toString('utf8');
  return { status, lines: text === '' ? [] : text.split('\n').slice(0, -1), stderr: err };
}

describe('parseRfc3339', () => {
  it('reads Go RFC3339Nano times with any number of digits, and offsets', () => {
    expect(parseRfc3339('2023-02-04T21:56:41.610688981Z')).toBe(1_675_547_801_610_688_981n);
    expect(parseRfc3339('2023-02-04T21:56:41Z')).toBe(1_675_547_801_000_000_000n);
    expect(parseRfc3339('2023-02-04T22:56:41.5+01:00')).toBe(1_675_547_801_500_000_000n);
    for (const bad of ['2023-02-04 21:56:41Z', '2023-02-04T21:56:41.1234567890Z', 'now', '']) {
      expect(parseRfc3339(bad)).toBeUndefined();
    }
  });
});

describe('kube-audit-rest convert', () => {
  it(
    "reads 1.x's own example log unchanged and writes Events the upstream type decodes",
    async () => {
      const r = await run([ONE_X_EXAMPLE]);
      expect(r.status).toBe(CONVERT_EXIT.ok);
      expect(r.stderr).toEqual([]);
      expect(r.lines).toHaveLength(2);
      const first = JSON.parse(r.lines[0] as string) as Record<string, unknown>;
      expect(first).toMatchObject({
        kind: 'Event',
        auditID: 'f452d444-9782-45ce-8eea-85e7c5a2801b',
        verb: 'create',
        requestURI: '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
        requestReceivedTimestamp: '2023-02-04T21:56:41.610688Z',
        stageTimestamp: '2023-02-04T21:56:41.610688Z',
      });
      const verdicts = await checkEvents(r.lines);
      expect(verdicts.filter((v) => !v.ok)).toEqual([]);
    },
    ORACLE_BUILD_MS,
  );

  it('applies the policy, redaction and cluster name, as the server does', async () => {
    const policy = join(dir, 'policy.yaml');
    writeFileSync(
      policy,
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources: [{group: "", resources: [configmaps]}]\n- level: Request\n',
    );
    const r = await run([`--policy-file=${policy}`, '--cluster-name=prod', '-'], { '-': capturedLog() });
    expect(r.stderr).toEqual([]);
    expect(r.status).toBe(CONVERT_EXIT.ok);
    const events = r.lines.map(
      (l) =>
        JSON.parse(l) as {
          objectRef: { resource: string };
          level: string;
          annotations: Record<string, string>;
          requestObject?: { data?: Record<string, string> };
        },
    );
    expect(events.some((e) => e.objectRef.resource === 'configmaps')).toBe(false);
    expect(events.every((e) => e.level === 'Request' && e.annotations.cluster_name === 'prod')).toBe(true);
    const secret = events.find((e) => e.objectRef.resource === 'secrets');
    for (const v of Object.values(secret?.requestObject?.data ?? { none: '' }))
      expect(v).toMatch(/^redacted:hmac-sha256:/);
  });

  it('reports a bad line with its file and number, skips it, goes on, and says so in the exit status', async () => {
    const good = readFileSync(ONE_X_EXAMPLE, 'utf8').split('\n')[0] as string;
    const r = await run(['-', 'missing.log'], {
      '-': `${good}\nnot json\n{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}\n\n${good}`,
    });
    expect(r.status).toBe(CONVERT_EXIT.skipped);
    expect(r.lines).toHaveLength(2);
    expect(r.stderr[0]).toMatch(/^stdin:2: skipped: /);
    expect(r.stderr[1]).toBe(
      'stdin:3: skipped: no requestReceivedTimestamp in RFC 3339 form: not a line kube-audit-rest wrote',
    );
    expect(r.stderr[2]).toMatch(/^missing.log: cannot read/);
    expect(r.stderr[3]).toBe('kube-audit-rest convert: 3 line(s) skipped, 2 converted');
  });

  it('passes Event lines through unchanged', async () => {
    const event = readFileSync(join(REPO, 'test', 'golden', 'formats', 'audit-event.jsonl'), 'utf8').split(
      '\n',
    )[0] as string;
    const r = await run(['-'], { '-': `${event}\n` });
    expect(r.lines).toEqual([event]);
  });

  it('refuses an unusable policy before reading anything, with exit status 2', async () => {
    const policy = join(dir, 'bad.yaml');
    writeFileSync(policy, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Sometimes\n');
    const r = await run([`--policy-file=${policy}`]);
    expect(r.status).toBe(CONVERT_EXIT.unusable);
    expect(r.stderr.join('\n')).toContain('rules[0].level');
  });

  it('matches its --help golden file', async () => {
    expect(CONVERT_HELP).toBe(readFileSync(join(REPO, 'test', 'golden', 'help-convert.txt'), 'utf8'));
    expect((await run(['--help'])).lines.join('\n')).toBe(CONVERT_HELP.trimEnd());
  });

  it('runs as a subcommand of the executable, on stdin', async () => {
    const r = await runToExit(['convert', ONE_X_EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toHaveLength(3);
  });
});
