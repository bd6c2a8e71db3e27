import { afterEach, beforeEach, describe, expect, it } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { createPipeline, type PipelineOptions } from '../../src/audit/pipeline.ts';
import { isJsonContentType } from '../../src/http/body.ts';
import { createOpsApp } from '../../src/http/ops.ts';
import { honoApp, webhookRoutes } from '../../src/http/routes.ts';
import { createWebhook, type WebhookDeps } from '../../src/http/webhook.ts';
import { createFileSink } from '../../src/sink/file-sink.ts';
import { type LineSink, SinkWriteError } from '../../src/sink/sink.ts';
import { createLogger, type Logger, silentLogger } from '../../src/support/log.ts';
import { createMetrics, type Metrics } from '../../src/support/metrics.ts';

/** 2023-11-14T22:13:20.12345678Z: a fixed arrival time, so lines are exact. */
const ARRIVAL_NS = 1_700_000_000_123_456_780n;
const STAMP = '2023-11-14T22:13:20.12345678Z';

const V1_BODY =
  '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"namespace":"default","name":"cfg","operation":"CREATE","userInfo":{"username":"alice","groups":["system:authenticated"]},"object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","namespace":"default"},"data":{"2":"b","1":"a","n":"1.50e+3","esc":"\\u00e9\\/"}},"oldObject":null,"dryRun":false}}';

type Body = RequestInit['body'];

let dir: string;
let logPath: string;
let sink: LineSink;
let metrics: Metrics;
let app: Hono;

type Extra = Partial<Pick<WebhookDeps, 'maxRequestBytes' | 'requestTimeoutMs' | 'onWriteError'>> & {
  log?: Logger;
  pipeline?: Partial<PipelineOptions>;
};

/** The webhook app as production builds it: the route table, through the Hono router. */
function makeApp(s: LineSink, extra: Extra = {}): Hono {
  const log = extra.log ?? silentLogger;
  const webhook = createWebhook({
    pipeline: createPipeline({ clock: () => ARRIVAL_NS, ...extra.pipeline }),
    sink: s,
    metrics,
    clock: () => ARRIVAL_NS,
    log,
    maxRequestBytes: extra.maxRequestBytes ?? 64 * 1024,
    requestTimeoutMs: extra.requestTimeoutMs ?? 5_000,
    ...(extra.onWriteError === undefined ? {} : { onWriteError: extra.onWriteError }),
  });
  return honoApp(webhookRoutes(webhook), webhook, log);
}

function post(body: Body | null, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  return app.request('/log-request', { method: 'POST', body, headers });
}

function logText(): string {
  return readFileSync(logPath, 'utf8');
}

async function metricValue(name: string, labels = ''): Promise<number> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-app-'));
  logPath = join(dir, 'audit.log');
  metrics = createMetrics();
  sink = createFileSink({ path: logPath, observer: metrics.sinkObserver });
  app = makeApp(sink);
});

afterEach(async () => {
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('POST /log-request', () => {
  it('answers allowed with the uid and writes the exact line when the review is valid v1', async () => {
    const res = await post(V1_BODY);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.text()).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true,"auditAnnotations":{"request-uid":"705ab4f5-6393-11e8-b7cc-42010a800002"}}}',
    );
    expect(logText()).toBe(`${V1_BODY.slice(0, -1)},"requestReceivedTimestamp":"${STAMP}"}\n`);
  });

  it('answers in v1beta1 when the review is v1beta1', async () => {
    const body = '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"b1"}}';
    const res = await post(body);
    expect(await res.text()).toBe(
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","response":{"uid":"b1","allowed":true,"auditAnnotations":{"request-uid":"b1"}}}',
    );
    expect(logText()).toBe(
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"b1"},"requestReceivedTimestamp":"${STAMP}"}\n`,
    );
  });

  it('echoes a uid holding quotes, backslashes and unicode as valid JSON', async () => {
    const uidToken = '"a\\"b\\\\c\\u2028é😀"';
    const body = `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":${uidToken}}}`;
    const text = await (await post(body)).text();
    expect(text).toBe(
      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":${uidToken},"allowed":true,"auditAnnotations":{"request-uid":${uidToken}}}}`,
    );
    expect((JSON.parse(text) as { response: { uid: string } }).response.uid).toBe(
      JSON.parse(uidToken) as string,
    );
  });

  it('compacts whitespace and replaces an existing requestReceivedTimestamp in place', async () => {
    const body =
      '{ "kind" : "AdmissionReview",\n "requestReceivedTimestamp": "old",\t"apiVersion": "admission.k8s.io/v1", "request": { "uid": "x 1" } }\n';
    expect((await post(body)).status).toBe(200);
    expect(logText()).toBe(
      `{"kind":"AdmissionReview","requestReceivedTimestamp":"${STAMP}","apiVersion":"admission.k8s.io/v1","request":{"uid":"x 1"}}\n`,
    );
  });

  it('takes a charset parameter on the Content-Type and a declared Content-Length', async () => {
    const res = await post(V1_BODY, {
      'content-type': 'Application/JSON; charset=utf-8',
      'content-length': String(Buffer.byteLength(V1_BODY)),
    });
    expect(res.status).toBe(200);
    expect(logText().split('\n')).toHaveLength(2);
  });

  it('counts requests and processed requests under the 1.x metric names', async () => {
    await post(V1_BODY);
    await post(V1_BODY);
    await post('{}');
    expect(await metricValue('kube_audit_rest_http_requests_total')).toBe(3);
    expect(await metricValue('kube_audit_rest_valid_requests_processed_total')).toBe(2);
    expect(await metricValue('kube_audit_rest_invalid_requests_total', '{reason="wrong_kind"}')).toBe(1);
    expect(await metricValue('kube_audit_rest_written_bytes_total')).toBe(Buffer.byteLength(logText()));
    expect(await metricValue('kube_audit_rest_request_duration_seconds_count')).toBe(2);
  });
});

describe('refusals', () => {
  const refusals: [string, Body, number, string][] = [
    ['not JSON', 'hello', 400, 'syntax'],
    ['empty', '', 400, 'empty'],
    ['trailing data', `${V1_BODY} {}`, 400, 'trailing_data'],
    ['not an object', '["AdmissionReview"]', 400, 'not_object'],
    [
      'wrong kind',
      '{"kind":"Pod","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}',
      400,
      'wrong_kind',
    ],
    [
      'wrong apiVersion',
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{"uid":"u"}}',
      400,
      'wrong_api_version',
    ],
    ['no request', '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}', 400, 'missing_request'],
    [
      'no uid',
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}',
      400,
      'missing_uid',
    ],
    [
      'empty uid',
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":""}}',
      400,
      'invalid_uid',
    ],
    [
      'numeric uid',
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":7}}',
      400,
      'invalid_uid',
    ],
    [
      'invalid UTF-8',
      new Uint8Array([
        ...new TextEncoder().encode(
          '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"',
        ),
        0xc3,
        0x28,
        ...new TextEncoder().encode('"}}'),
      ]),
      400,
      'invalid_utf8',
    ],
    ['too deep', `${'['.repeat(10_001)}${']'.repeat(10_001)}`, 400, 'too_deep'],
    [
      'duplicate uid',
      '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"a","uid":"b"}}',
      400,
      'duplicate_key',
    ],
  ];

  for (const [what, body, status, reason] of refusals) {
    it(`answers ${status} ${reason} and writes nothing when the body is ${what}`, async () => {
      const res = await post(body);
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toBe('application/json');
      const answer = (await res.json()) as { code: number; reason: string; message: string };
      expect(answer.code).toBe(status);
      expect(answer.reason).toBe(reason);
      expect(answer.message.length).toBeGreaterThan(5);
      expect(logText()).toBe('');
      expect(await metricValue('kube_audit_rest_invalid_requests_total', `{reason="${reason}"}`)).toBe(1);
      expect(await metricValue('kube_audit_rest_valid_requests_processed_total')).toBe(0);
    });
  }

  it('answers 405 with Allow: POST when the method is not POST', async () => {
    const res = await app.request('/log-request', { method: 'GET' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(((await res.json()) as { message: string }).message).toBe('method GET not allowed; use POST');
    expect((await app.request('/log-request', { method: 'PUT', body: V1_BODY })).status).toBe(405);
    expect(logText()).toBe('');
  });

  it('answers 404 when the path is unknown', async () => {
    const res = await app.request('/validate', { method: 'POST', body: V1_BODY });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { message: string }).message).toBe('no route for POST /validate');
    expect(logText()).toBe('');
  });

  it('answers 415 when the Content-Type is missing or not JSON', async () => {
    const headerSets: Record<string, string>[] = [
      {},
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/jsonx' },
    ];
    for (const headers of headerSets) {
      const res = await post(V1_BODY, headers);
      expect(res.status).toBe(415);
      expect(((await res.json()) as { reason: string }).reason).toBe('unsupported_media_type');
    }
    expect(logText()).toBe('');
  });

  it('answers 413 without reading when the declared length passes the cap', async () => {
    app = makeApp(sink, { maxRequestBytes: 100 });
    const res = await post(V1_BODY, { 'content-type': 'application/json', 'content-length': '5000' });
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
    expect(logText()).toBe('');
  });

  it('answers 413 when a body of unknown length passes the cap while streaming', async () => {
    app = makeApp(sink, { maxRequestBytes: 100 });
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        if (pulled > 1000)
          controller.close(); // never reached: the reader stops at the cap
        else controller.enqueue(new Uint8Array(64).fill(0x20));
      },
    });
    const res = await post(stream);
    expect(res.status).toBe(413);
    expect(pulled).toBeLessThan(10);
    expect(logText()).toBe('');
  });

  it('answers 408 when the body does not arrive before the deadline', async () => {
    app = makeApp(sink, { requestTimeoutMs: 50 });
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"kind":'));
        // and nothing more: a client that stalls
      },
    });
    const res = await post(stream);
    expect(res.status).toBe(408);
    expect(((await res.json()) as { reason: string }).reason).toBe('timeout');
    expect(logText()).toBe('');
  });
});

describe('write failures', () => {
  it('still answers allowed, logs the loss without the body, and does not count the request', async () => {
    // A sink that refuses stands in for the real one only to reach the handler's failure branch;
    // real disk-full and deleted-file cases are in test/sink/ and test/process/server.test.ts.
    const failing: LineSink = {
      write: () => Promise.reject(new SinkWriteError('disk full')),
      ready: () => false,
      flushSync: () => {},
      close: async () => {},
    };
    const logged: string[] = [];
    app = makeApp(failing, { log: createLogger({ write: (t) => logged.push(t) }) });
    const res = await post(V1_BODY);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { response: { allowed: boolean } }).response.allowed).toBe(true);
    expect(await metricValue('kube_audit_rest_valid_requests_processed_total')).toBe(0);
    expect(await metricValue('kube_audit_rest_unrecorded_requests_total')).toBe(1);
    expect(await metricValue('kube_audit_rest_denied_requests_total')).toBe(0);
    expect(logged).toHaveLength(1);
    const entry = JSON.parse(logged[0] as string) as { level: string; error: { message: string } };
    expect(entry.level).toBe('error');
    expect(entry.error.message).toBe('disk full');
    expect(logged[0]).not.toContain('ConfigMap');
  });
});

describe('--on-write-error=deny', () => {
  it('answers allowed: false with the reason when the line could not be written, and counts it', async () => {
    const failing: LineSink = {
      write: () => Promise.reject(new SinkWriteError('disk full')),
      ready: () => false,
      flushSync: () => {},
      close: async () => {},
    };
    app = makeApp(failing, { onWriteError: 'deny' });
    const res = await post(V1_BODY);
    expect(res.status).toBe(200);
    const answer = (await res.json()) as {
      response: { allowed: boolean; status: { code: number; message: string } };
    };
    expect(answer.response.allowed).toBe(false);
    expect(answer.response.status.code).toBe(500);
    expect(answer.response.status.message).toContain('could not write the audit record');
    expect(await metricValue('kube_audit_rest_denied_requests_total')).toBe(1);
    expect(await metricValue('kube_audit_rest_unrecorded_requests_total')).toBe(0);
  });

  it('answers allowed when the line was written', async () => {
    app = makeApp(sink, { onWriteError: 'deny' });
    const answer = (await (await post(V1_BODY)).json()) as { response: { allowed: boolean } };
    expect(answer.response.allowed).toBe(true);
    expect(logText().split('\n')).toHaveLength(2);
  });
});

describe('isJsonContentType', () => {
  it('accepts application/json with parameters and any case, and nothing else', () => {
    expect(isJsonContentType('application/json')).toBe(true);
    expect(isJsonContentType(' application/json ; charset=UTF-8')).toBe(true);
    expect(isJsonContentType('APPLICATION/JSON')).toBe(true);
    expect(isJsonContentType(null)).toBe(false);
    expect(isJsonContentType('application/json-patch+json')).toBe(false);
    expect(isJsonContentType('text/json')).toBe(false);
  });
});

describe('operations app', () => {
  it('serves metrics with the 1.x names and the default process metrics', async () => {
    const ops = createOpsApp({ metrics, readiness: {} });
    const res = await ops.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const name of [
      'kube_audit_rest_http_requests_total',
      'kube_audit_rest_valid_requests_processed_total',
      'kube_audit_rest_write_failures_total',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('reports alive on /healthz and names failing checks on /readyz', async () => {
    let sinkOk = true;
    const ops = createOpsApp({ metrics, readiness: { certificate: () => true, sink: () => sinkOk } });
    expect((await ops.request('/healthz')).status).toBe(200);
    expect((await ops.request('/readyz')).status).toBe(200);
    sinkOk = false;
    const res = await ops.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.text()).toBe('not ready: sink\n');
  });
});

describe('debug logging', () => {
  it('logs uid, operation, kind, namespace, name and user at debug, and never the object', async () => {
    const logged: string[] = [];
    app = makeApp(sink, { log: createLogger({ verbose: true, write: (t) => logged.push(t) }) });
    expect((await post(V1_BODY)).status).toBe(200);
    expect(logged).toHaveLength(1);
    const entry = logged[0] as string;
    for (const part of [
      'request handled',
      'level="RequestResponse"',
      'uid="705ab4f5-6393-11e8-b7cc-42010a800002"',
      'operation="CREATE"',
      'kind="ConfigMap"',
      'namespace="default"',
      'name="cfg"',
      'user="alice"',
    ]) {
      expect(entry).toContain(part);
    }
    expect(entry).not.toContain('1.50e+3');
  });

  it('logs nothing per request at the default level', async () => {
    const logged: string[] = [];
    app = makeApp(sink, { log: createLogger({ write: (t) => logged.push(t) }) });
    await post(V1_BODY);
    await post('not json');
    expect(logged).toEqual([]);
  });
});
