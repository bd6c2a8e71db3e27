import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPipeline } from '../../src/audit/pipeline.ts';
import {
  loadPathTokens,
  MAX_TOKEN_LENGTH,
  type PathTokens,
  parseTokenFile,
  TokenFileError,
  tokenDigest,
} from '../../src/http/caller-auth.ts';
import { bunRoutes, honoApp, webhookRoutes } from '../../src/http/routes.ts';
import { createWebhook } from '../../src/http/webhook.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import type { LineSink } from '../../src/sink/sink.ts';
import { createLogger, silentLogger } from '../../src/support/log.ts';
import { createMetrics, type Metrics } from '../../src/support/metrics.ts';
import { writeSecretVolume } from '../helpers/secret-volume.ts';

const ARRIVAL_NS = 1_700_000_000_123_456_780n;
/** Tokens as `openssl rand -hex 16` makes them. */
const TOKEN_A = '3f1c9a7e5b2d4c6f8a0b1c2d3e4f5a6b';
const TOKEN_B = 'b7e4d2c1a0f9e8d7c6b5a4f3e2d1c0b9';
const TOKEN_C = 'c0ffee00c0ffee00c0ffee00c0ffee00';
const JSON_HEADERS = { 'content-type': 'application/json' };
/** Deadline for anything a test waits on. */
const DEADLINE_MS = 10_000;

let dir: string;
let sink: LineSink;
let metrics: Metrics;
const opened: PathTokens[] = [];

function review(uid: string): string {
  return `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"${uid}","operation":"CREATE"}}`;
}

/** The audit lines written so far, parsed. */
function lines(): Array<Record<string, unknown>> {
  const file = join(dir, 'audit.log');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function metricValue(name: string, labels = ''): Promise<number | undefined> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(10);
  }
}

/** Writes a token file and follows it, polling every 20 ms; closed after each test. */
async function tokensFrom(text: string, extra: Partial<Parameters<typeof loadPathTokens>[0]> = {}) {
  const file = join(dir, 'tokens');
  await writeFile(file, text);
  const tokens = await loadPathTokens({ file, logger: silentLogger, reloadIntervalMs: 20, ...extra });
  opened.push(tokens);
  return { file, tokens };
}

/** The webhook's route table as production builds it, with path tokens. */
function table(tokens: PathTokens | undefined, clusterName?: string) {
  const webhook = createWebhook({
    pipeline: createPipeline({ clock: () => ARRIVAL_NS, clusterName }),
    sink,
    metrics,
    clock: () => ARRIVAL_NS,
    log: silentLogger,
    maxRequestBytes: 64 * 1024,
    requestTimeoutMs: 5_000,
  });
  const routes = webhookRoutes(webhook, { pathTokens: tokens });
  return { routes, app: honoApp(routes, webhook, silentLogger) };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-caller-auth-'));
  metrics = createMetrics();
  sink = createFileSink({ path: join(dir, 'audit.log'), observer: metrics.sinkObserver });
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.close()));
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('parseTokenFile', () => {
  it('reads tokens with and without a cluster name, skipping blank lines and comments', () => {
    const set = parseTokenFile('f', `# central\n${TOKEN_A} prod-eu\n\n  ${TOKEN_B}\tstaging \n${TOKEN_C}\n`);
    expect(set.size).toBe(3);
    expect(set.get(tokenDigest(TOKEN_A))).toEqual({ clusterName: 'prod-eu' });
    expect(set.get(tokenDigest(TOKEN_B))).toEqual({ clusterName: 'staging' });
    expect(set.get(tokenDigest(TOKEN_C))).toEqual({});
  });

  it('refuses a malformed line, naming the line and never quoting a token', () => {
    const cases: Array<[string, string]> = [
      ['', 'path token file f: holds no token'],
      ['# only a comment\n\n', 'holds no token'],
      [`${TOKEN_A}\nshort-token\n`, 'line 2: a token must be 16 to 512 characters long, not 11'],
      [`${'x'.repeat(MAX_TOKEN_LENGTH + 1)}`, 'line 1: a token must be 16 to 512 characters long, not 513'],
      [`${TOKEN_A}/slash`, 'line 1: a token may hold only letters, digits and . _ ~ -'],
      [`${TOKEN_A}%41`, 'a token may hold only'],
      [`${TOKEN_A} prod extra`, 'line 1: expected a token and at most one cluster name'],
      [`${TOKEN_A} ${'c'.repeat(254)}`, 'line 1: the cluster name is longer than 253 characters'],
      [`${TOKEN_A} a\n${TOKEN_B} b\n${TOKEN_A} c\n`, 'line 3: repeats the token of line 1'],
    ];
    for (const [text, message] of cases) {
      let caught: unknown;
      try {
        parseTokenFile('f', text);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(TokenFileError);
      expect((caught as Error).message).toContain(message);
      expect((caught as Error).message).not.toContain(TOKEN_A);
      expect((caught as Error).message).not.toContain(TOKEN_B);
    }
  });
});

describe('POST /log-request/:token', () => {
  it("answers a known token and stamps the line with that token's cluster, overriding --cluster-name", async () => {
    const { tokens } = await tokensFrom(`${TOKEN_A} prod-eu\n${TOKEN_B} staging\n${TOKEN_C}\n`);
    const { app } = table(tokens, 'configured');
    for (const [token, uid] of [
      [TOKEN_A, 'a'],
      [TOKEN_B, 'b'],
      [TOKEN_C, 'c'],
    ] as const) {
      const res = await app.request(`/log-request/${token}`, {
        method: 'POST',
        body: review(uid),
        headers: JSON_HEADERS,
      });
      expect(res.status).toBe(200);
    }
    expect(lines().map((l) => [(l.request as { uid: string }).uid, l.clusterName])).toEqual([
      ['a', 'prod-eu'],
      ['b', 'staging'],
      ['c', 'configured'], // no name on its line: --cluster-name applies
    ]);
  });

  it('answers 404 as for any unknown path, counts it and writes nothing when the token is wrong or missing', async () => {
    const { tokens } = await tokensFrom(`${TOKEN_A} prod\n`);
    const { app } = table(tokens);
    const post = (path: string) =>
      app.request(path, { method: 'POST', body: review('x'), headers: JSON_HEADERS });
    const unknownPath = await post('/nothing-here');
    const unknownBody = (await unknownPath.json()) as { reason: string; message: string };

    const wrong = `${TOKEN_A.slice(0, -1)}0`;
    for (const path of [
      '/log-request',
      `/log-request/${wrong}`,
      `/log-request/${TOKEN_A.toUpperCase()}`,
      `/log-request/${TOKEN_A}x`,
      `/log-request/${'a'.repeat(MAX_TOKEN_LENGTH + 1)}`,
      `/log-request/${TOKEN_A}/more`,
    ]) {
      const res = await post(path);
      expect(res.status).toBe(404);
      const body = (await res.json()) as { reason: string; message: string };
      expect(body.reason).toBe(unknownBody.reason);
      expect(body.message).toBe(`no route for POST ${path}`);
    }
    expect(await metricValue('kube_audit_rest_invalid_requests_total', '{reason="not_found"}')).toBe(7);
    expect(await metricValue('kube_audit_rest_http_requests_total')).toBe(0);
    expect(lines()).toEqual([]);
  });

  it('answers 405 to another method on the token path whatever the token, telling only that tokens are in use', async () => {
    const { tokens } = await tokensFrom(`${TOKEN_A}\n`);
    const { app } = table(tokens);
    for (const token of [TOKEN_A, TOKEN_B]) {
      const res = await app.request(`/log-request/${token}`, { method: 'GET' });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
    }
    expect(lines()).toEqual([]);
  });

  it("runs the same guard in Bun's router as in the Hono app", async () => {
    const { tokens } = await tokensFrom(`${TOKEN_A} prod\n`);
    const { routes, app } = table(tokens);
    const server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      routes: bunRoutes(routes),
      fetch: (req) => app.fetch(req),
    });
    try {
      const post = (path: string) =>
        fetch(`http://127.0.0.1:${server.port}${path}`, {
          method: 'POST',
          body: review(path.length > 20 ? 'good' : 'bad'),
          headers: JSON_HEADERS,
        });
      expect((await post(`/log-request/${TOKEN_B}`)).status).toBe(404);
      expect((await post('/log-request')).status).toBe(404);
      expect((await post(`/log-request/${TOKEN_A}`)).status).toBe(200);
    } finally {
      await server.stop(true);
    }
    expect(lines().map((l) => l.clusterName)).toEqual(['prod']);
  });

  it('serves plain /log-request and no token path when no token file is given', async () => {
    const { app } = table(undefined);
    const post = (path: string) =>
      app.request(path, { method: 'POST', body: review('x'), headers: JSON_HEADERS });
    expect((await post('/log-request')).status).toBe(200);
    expect((await post(`/log-request/${TOKEN_A}`)).status).toBe(404);
  });
});

describe('loadPathTokens', () => {
  it('takes a changed file at once and drops the tokens it no longer holds', async () => {
    const reloads: number[] = [];
    const { file, tokens } = await tokensFrom(`${TOKEN_A} one\n`, { onReload: (n) => reloads.push(n) });
    expect(tokens.find(TOKEN_A)).toEqual({ clusterName: 'one' });
    expect(tokens.find(TOKEN_B)).toBeUndefined();
    await writeFile(file, `${TOKEN_B} two\n${TOKEN_C}\n`);
    await until('the new tokens are in force', () => tokens.find(TOKEN_B) !== undefined);
    expect(tokens.find(TOKEN_A)).toBeUndefined();
    expect(tokens.find(TOKEN_C)).toEqual({});
    expect(tokens.size).toBe(2);
    expect(reloads).toEqual([2]);
  });

  it('follows a kubelet-style Secret update through the directory watch alone', async () => {
    const volume = join(dir, 'secret');
    await writeSecretVolume(volume, { tokens: `${TOKEN_A}\n` });
    const tokens = await loadPathTokens({
      file: join(volume, 'tokens'),
      logger: silentLogger,
      reloadIntervalMs: 0,
      debounceMs: 20,
    });
    opened.push(tokens);
    await writeSecretVolume(volume, { tokens: `${TOKEN_B}\n` });
    await until('the swap is seen', () => tokens.find(TOKEN_B) !== undefined);
    expect(tokens.find(TOKEN_A)).toBeUndefined();
  });

  it('keeps the previous tokens, reports once and logs no token when the new file is invalid', async () => {
    const logged: string[] = [];
    const errors: Error[] = [];
    const { file, tokens } = await tokensFrom(`${TOKEN_A} one\n`, {
      logger: createLogger({ write: (t) => logged.push(t) }),
      onReloadError: (err) => errors.push(err),
    });
    await writeFile(file, `${TOKEN_B} two\nshort\n`);
    await until('the bad file is reported', () => errors.length > 0);
    await Bun.sleep(200); // ten more polls: an absence cannot be polled for
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toContain('line 2: a token must be 16 to 512 characters long');
    expect(tokens.find(TOKEN_A)).toEqual({ clusterName: 'one' });
    expect(tokens.find(TOKEN_B)).toBeUndefined();

    await Bun.write(file, ''); // emptied: refused too
    await until('the empty file is reported', () => errors.length > 1);
    expect(errors[1]?.message).toContain('holds no token');
    expect(tokens.find(TOKEN_A)).toEqual({ clusterName: 'one' });

    rmSync(file); // gone: refused, and the tokens stay
    await until('the missing file is reported', () => errors.length > 2);
    expect(errors[2]?.message).toContain('cannot read (ENOENT)');
    expect(tokens.find(TOKEN_A)).toEqual({ clusterName: 'one' });

    const text = logged.join('');
    expect(text).toContain('path tokens not reloaded');
    for (const token of [TOKEN_A, TOKEN_B]) expect(text).not.toContain(token);
  });

  it('rejects at start, naming the file, when it is missing, empty or malformed', async () => {
    const missing = join(dir, 'absent');
    await expect(loadPathTokens({ file: missing, logger: silentLogger })).rejects.toThrow(
      `path token file ${missing}: cannot read (ENOENT)`,
    );
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n');
    await expect(loadPathTokens({ file: empty, logger: silentLogger })).rejects.toThrow(
      `path token file ${empty}: holds no token`,
    );
  });
});
