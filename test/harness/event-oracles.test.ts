/**
 * @module Proves the audit Event oracles judge: the hand-written fixtures pass, and each kind of mistake an
 * encoder could make is refused by event-check or shows in what Falco's k8saudit plugin extracts.
 */
import { beforeAll, describe, expect, it } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkEvents, ensureEventOracles, falcoFields } from '../../testing/harness/event-oracles.ts';

/** A cold build of both oracles takes about 40 s on 2 shared cores. */
const BUILD_TIMEOUT_MS = 300_000;
/** Falco's k8saudit plugin default maxEventSize: sdk.DefaultEvtSize, 256 KiB. */
const FALCO_MAX_EVENT_BYTES = 256 * 1024;

type Json = Record<string, unknown>;

const FIXTURES = join(import.meta.dir, '..', 'fixtures', 'events');
const fixtures: Record<string, Json> = Object.fromEntries(
  readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Json]),
);

/** A deep copy of a fixture, to mutate. */
function fixture(name: string): Json {
  const f = fixtures[name];
  if (f === undefined) throw new Error(`no fixture ${name} in ${FIXTURES}`);
  return structuredClone(f);
}

/** One compact Event line. */
const line = (event: unknown): string => JSON.stringify(event);

/** The fixture's line with `key` renamed to `renamed`, in the same place (key order kept). */
function renameKey(event: Json, key: string, renamed: string): string {
  return line(Object.fromEntries(Object.entries(event).map(([k, v]) => [k === key ? renamed : k, v])));
}

async function checkOne(l: string) {
  const [verdict] = await checkEvents([l]);
  if (verdict === undefined) throw new Error('no verdict');
  return verdict;
}

async function falcoOne(l: string, argFields?: string[]) {
  const results = await falcoFields([l], argFields ? { argFields } : {});
  expect(results).toHaveLength(1);
  return results[0] as NonNullable<(typeof results)[0]>;
}

beforeAll(async () => {
  await ensureEventOracles();
}, BUILD_TIMEOUT_MS);

describe('ensureEventOracles', () => {
  it('throws with the build output when the oracles cannot be built', async () => {
    // /proc refuses new directories, so build.sh fails before Go runs; the caller must see why.
    const failed = ensureEventOracles({ binDir: '/proc/kube-audit-rest-no-such-dir' });
    await expect(failed).rejects.toThrow(/build\.sh failed \(exit 1\):\n.*mkdir/s);
  });
});

describe('checkEvents', () => {
  it('accepts every hand-written fixture when decoded strictly into audit/v1 Event', async () => {
    const names = Object.keys(fixtures).sort();
    expect(names).toEqual([
      'clusterrolebinding-cluster-admin',
      'pod-create',
      'pod-exec',
      'pod-privileged',
      'secret-redacted',
    ]);
    const verdicts = await checkEvents(names.map((n) => line(fixture(n))));
    expect(verdicts).toEqual(names.map((_, i) => ({ line: i + 1, ok: true, errors: [] })));
  });

  it('refuses an unknown field at the top level and inside a nested object', async () => {
    const top = fixture('pod-create');
    top.clusterName = 'prod-eu-1';
    expect(await checkOne(line(top))).toEqual({
      line: 1,
      ok: false,
      errors: ['strict: unknown field "clusterName"'],
    });
    const nested = fixture('pod-create');
    (nested.objectRef as Json).kind = 'Pod';
    expect((await checkOne(line(nested))).errors).toEqual(['strict: unknown field "objectRef.kind"']);
  });

  it('refuses a key whose case differs from the Go tag', async () => {
    expect((await checkOne(renameKey(fixture('pod-create'), 'auditID', 'auditId'))).errors).toEqual([
      'strict: unknown field "auditId"',
      'auditID: required, is empty or missing',
    ]);
    expect((await checkOne(renameKey(fixture('pod-exec'), 'requestURI', 'requestUri'))).errors).toEqual([
      'strict: unknown field "requestUri"',
      'requestURI: required, is empty or missing',
    ]);
    const user = fixture('pod-create');
    user.user = { Username: 'alice@example.com' };
    expect((await checkOne(line(user))).errors).toEqual([
      'strict: unknown field "user.Username"',
      'user.username: required, is empty or missing',
    ]);
  });

  it('refuses a duplicated key', async () => {
    const l = line(fixture('pod-create')).replace(/}$/, ',"verb":"get"}');
    expect((await checkOne(l)).errors).toEqual(['strict: duplicate field "verb"']);
  });

  it('accepts a MicroTime only with exactly six fractional digits and a Z or ±hh:mm zone', async () => {
    const forms: [string, boolean][] = [
      ['2026-03-14T09:26:53.589793Z', true],
      ['2026-03-14T09:26:53.589793+02:00', true],
      ['2026-03-14T09:26:53.589793-00:00', true],
      // Go's time.Parse takes a comma as the fraction separator too.
      ['2026-03-14T09:26:53,589793Z', true],
      ['2026-03-14T09:26:53.589Z', false],
      ['2026-03-14T09:26:53Z', false],
      ['2026-03-14T09:26:53.589793238Z', false],
      ['2026-03-14T09:26:53.5897930Z', false],
      ['2026-03-14T09:26:53.589793', false],
      ['2026-03-14T09:26:53.589793z', false],
      ['2026-03-14T09:26:53.589793+0200', false],
      ['2026-03-14 09:26:53.589793Z', false],
      ['2026-03-14t09:26:53.589793Z', false],
    ];
    const lines = forms.map(([ts]) => {
      const e = fixture('pod-create');
      e.requestReceivedTimestamp = ts;
      e.stageTimestamp = '2026-03-14T23:59:59.999999Z';
      return line(e);
    });
    const verdicts = await checkEvents(lines);
    expect(verdicts.map((v) => v.ok)).toEqual(forms.map(([, ok]) => ok));
    for (const v of verdicts.filter((x) => !x.ok)) {
      expect(v.errors).toHaveLength(1);
      expect(v.errors[0]).toStartWith('decode: parsing time "2026-03-14');
      expect(v.errors[0]).toContain('2006-01-02T15:04:05.000000Z07:00');
    }
  });

  it('refuses three, zero and nine fractional digits in stageTimestamp too', async () => {
    const lines = ['.602Z', 'Z', '.602113000Z'].map((frac) => {
      const e = fixture('secret-redacted');
      e.stageTimestamp = `2026-03-14T12:00:01${frac}`;
      return line(e);
    });
    for (const v of await checkEvents(lines)) {
      expect(v.ok).toBe(false);
      expect(v.errors[0]).toStartWith('decode: parsing time');
    }
  });

  it('refuses a timestamp that is a number, null or missing', async () => {
    const number = fixture('pod-create');
    number.requestReceivedTimestamp = 1773480413;
    expect((await checkOne(line(number))).errors[0]).toStartWith('decode: json: cannot unmarshal number');
    const nul = fixture('pod-create');
    nul.stageTimestamp = null;
    expect((await checkOne(line(nul))).errors).toEqual(['stageTimestamp: required, is null or missing']);
    const missing = fixture('pod-create');
    delete missing.requestReceivedTimestamp;
    expect((await checkOne(line(missing))).errors).toEqual([
      'requestReceivedTimestamp: required, is null or missing',
    ]);
  });

  it('refuses each missing or empty required field with its name', async () => {
    const cases: [string, (e: Json) => void, string][] = [
      ['auditID', (e) => delete e.auditID, 'auditID: required, is empty or missing'],
      ['auditID', (e) => (e.auditID = ''), 'auditID: required, is empty or missing'],
      ['verb', (e) => delete e.verb, 'verb: required, is empty or missing'],
      ['requestURI', (e) => delete e.requestURI, 'requestURI: required, is empty or missing'],
      ['user', (e) => delete e.user, 'user.username: required, is empty or missing'],
      ['kind', (e) => delete e.kind, 'kind: must be "Event", got ""'],
      [
        'apiVersion',
        (e) => (e.apiVersion = 'audit.k8s.io/v1beta1'),
        'apiVersion: must be "audit.k8s.io/v1", got "audit.k8s.io/v1beta1"',
      ],
      [
        'level',
        (e) => (e.level = 'Full'),
        'level: must be None, Metadata, Request or RequestResponse, got "Full"',
      ],
      [
        'stage',
        (e) => (e.stage = 'Complete'),
        'stage: must be RequestReceived, ResponseStarted, ResponseComplete or Panic, got "Complete"',
      ],
    ];
    const verdicts = await checkEvents(
      cases.map(([, mutate]) => {
        const e = fixture('pod-create');
        mutate(e);
        return line(e);
      }),
    );
    expect(verdicts.map((v) => v.errors)).toEqual(cases.map(([, , error]) => [error]));
  });

  it('refuses bodies the level does not record and a stage time before the receive time', async () => {
    const metadata = fixture('pod-create');
    metadata.level = 'Metadata';
    const request = fixture('pod-create');
    request.responseObject = { kind: 'Pod', apiVersion: 'v1' };
    const backwards = fixture('pod-create');
    backwards.stageTimestamp = '2026-03-14T09:26:53.589792Z';
    expect(
      (await checkEvents([line(metadata), line(request), line(backwards)])).map((v) => v.errors),
    ).toEqual([
      ['requestObject: level Metadata records no request body'],
      ['responseObject: level Request records no response body'],
      ['stageTimestamp: is before requestReceivedTimestamp'],
    ]);
  });

  it('gives a broken line its own verdict and goes on with the next', async () => {
    const verdicts = await checkEvents(['{"kind":', '', line(fixture('pod-exec'))]);
    expect(verdicts.map((v) => [v.line, v.ok])).toEqual([
      [1, false],
      [2, false],
      [3, true],
    ]);
    expect(verdicts[0]?.errors).toEqual(['decode: unexpected end of JSON input']);
  });

  it('accepts an EventList body whose items carry no kind, as the audit webhook backend sends it', async () => {
    const items = ['pod-create', 'pod-exec'].map((n) => {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = fixture(n);
      return rest;
    });
    const list = { kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items };
    const bad = structuredClone(list);
    (bad.items[1] as Json).extra = true;
    delete (bad.items[0] as Json).auditID;
    expect(await checkEvents([line(list), line(bad), line(fixture('pod-create'))], { list: true })).toEqual([
      { line: 1, ok: true, errors: [] },
      {
        line: 2,
        ok: false,
        errors: ['strict: unknown field "items[1].extra"', 'items[0].auditID: required, is empty or missing'],
      },
      expect.objectContaining({ line: 3, ok: false }),
    ]);
  });
});

describe('falcoFields', () => {
  it('extracts the fields the default Falco rules read from each fixture', async () => {
    const names = [
      'pod-create',
      'pod-privileged',
      'pod-exec',
      'clusterrolebinding-cluster-admin',
      'secret-redacted',
    ];
    const results = await falcoFields(names.map((n) => line(fixture(n))));
    expect(results.map((r) => [r.line, r.event, r.error, r.errors])).toEqual(
      names.map((_, i) => [i + 1, 0, undefined, {}]),
    );
    const [create, privileged, exec, binding, secret] = results.map((r) => r.fields);
    const common = { 'ka.auth.decision': 'allow', 'ka.cluster.name': 'prod-eu-1', 'ka.verb': 'create' };

    expect(create).toMatchObject({
      ...common,
      'ka.auditid': '0f6c2b8e-5d0a-4c57-9a8e-1f3b6a7d2c41',
      'ka.stage': 'ResponseComplete',
      'ka.user.name': 'alice@example.com',
      'ka.user.groups': ['developers', 'system:authenticated'],
      'ka.uri': '/api/v1/namespaces/shop/pods',
      'ka.target.resource': 'pods',
      'ka.target.namespace': 'shop',
      'ka.target.name': 'web-0',
      'ka.response.code': '201',
      'ka.req.pod.containers.image': ['nginx:1.27.3'],
      'ka.req.pod.containers.image.repository': ['nginx'],
      // No securityContext: the plugin skips the container, so the list is empty and `intersects (true)` fails.
      'ka.req.pod.containers.privileged': [],
      'ka.req.container.privileged': 'false',
    });
    // The `pod` macro is `ka.target.subresource` not existing; no responseObject, so no ka.resp.name.
    for (const absent of [
      'ka.target.subresource',
      'ka.uri.param[command]',
      'ka.resp.name',
      'ka.target.pod.name',
    ]) {
      expect(create).not.toHaveProperty([absent]);
    }

    expect(privileged).toMatchObject({
      ...common,
      'ka.user.name': 'system:serviceaccount:ops:node-debugger',
      'ka.target.namespace': 'ops',
      'ka.target.name': 'node-debugger-x7k2p',
      'ka.req.pod.containers.image': [
        'busybox:1.36.1',
        'registry.example.com/mesh/proxy@sha256:9b2c4e6a8d0f1b3c5e7a9c1e3f5a7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e',
      ],
      'ka.req.pod.containers.image.repository': ['busybox', 'registry.example.com/mesh/proxy'],
      'ka.req.pod.containers.privileged': ['true', 'false'],
      'ka.req.container.privileged': 'true',
      'ka.req.pod.initContainers.image': ['alpine:3.20'],
      'ka.req.pod.host_pid': 'true',
    });
    expect(privileged).not.toHaveProperty(['ka.target.subresource']);

    expect(exec).toMatchObject({
      ...common,
      'ka.stage': 'ResponseStarted',
      'ka.user.name': 'bob@example.com',
      'ka.target.resource': 'pods',
      'ka.target.subresource': 'exec',
      'ka.target.name': 'web-0',
      'ka.uri': fixture('pod-exec').requestURI as string,
      // Only the first `command=` of the query: the rule's output shows "sh", not the whole command line.
      'ka.uri.param[command]': 'sh',
      'ka.uri.param[container]': 'web',
      'ka.response.code': '101',
    });
    expect(exec).not.toHaveProperty(['ka.req.pod.containers.image']);

    expect(binding).toMatchObject({
      ...common,
      'ka.user.name': 'carol@example.com',
      'ka.target.resource': 'clusterrolebindings',
      'ka.target.name': 'contractors-admin',
      'ka.req.binding.role': 'cluster-admin',
      'ka.req.binding.subjects.user_names': ['dave@contractor.example'],
      'ka.req.binding.subjects.serviceaccount_names': ['deployer'],
      'ka.req.binding.subjects.serviceaccount_ns_names': ['ci:deployer'],
      'ka.req.binding.subjects.group_names': ['contractors'],
    });
    expect(binding).not.toHaveProperty(['ka.target.namespace']);

    expect(secret).toMatchObject({
      ...common,
      'ka.target.resource': 'secrets',
      'ka.target.namespace': 'payments',
      'ka.target.name': 'db-credentials',
      'ka.response.code': '201',
      // ka.req.configmap.obj reads requestObject.data whatever the resource: the redacted values are what it sees.
      'ka.req.configmap.obj': '{"password":"REDACTED","username":"REDACTED"}',
    });
  });

  it('takes an index argument for a container list field', async () => {
    const r = await falcoOne(line(fixture('pod-privileged')), [
      'ka.req.pod.containers.image[1]',
      'ka.req.pod.containers.privileged[0]',
    ]);
    expect(r.fields['ka.req.pod.containers.image[1]']).toEqual([
      'registry.example.com/mesh/proxy@sha256:9b2c4e6a8d0f1b3c5e7a9c1e3f5a7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e',
    ]);
    expect(r.fields['ka.req.pod.containers.privileged[0]']).toEqual(['true']);
  });

  it('extracts no field at all when auditID is missing, without an error', async () => {
    const e = fixture('pod-create');
    delete e.auditID;
    const r = await falcoOne(line(e));
    expect(r.error).toBeUndefined();
    expect(r.fields).toEqual({});
    expect(r.errors).toEqual({});
  });

  it('reports an empty subresource as present, so the pod macro no longer matches', async () => {
    const e = fixture('pod-create');
    (e.objectRef as Json).subresource = '';
    expect((await falcoOne(line(e))).fields['ka.target.subresource']).toBe('');
  });

  it('reads ka.response.code from responseStatus.code only', async () => {
    const e = fixture('secret-redacted');
    delete e.responseStatus;
    const withReason = fixture('secret-redacted');
    withReason.responseStatus = { metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403 };
    const [without, forbidden] = await falcoFields([line(e), line(withReason)]);
    expect(without?.fields).not.toHaveProperty(['ka.response.code']);
    expect(forbidden?.fields).toMatchObject({ 'ka.response.code': '403', 'ka.response.reason': 'Forbidden' });
  });

  it('parses stageTimestamp as RFC 3339 with any fraction, and refuses it without a zone', async () => {
    const millis = fixture('pod-create');
    millis.stageTimestamp = '2026-03-14T09:26:53.602Z';
    const noZone = fixture('pod-create');
    noZone.stageTimestamp = '2026-03-14T09:26:53.602113';
    const missing = fixture('pod-create');
    delete missing.stageTimestamp;
    const [a, b, c] = await falcoFields([line(millis), line(noZone), line(missing)]);
    expect(a?.error).toBeUndefined();
    expect(a?.fields['ka.verb']).toBe('create');
    expect(b?.error).toStartWith('parsing time "2026-03-14T09:26:53.602113"');
    expect(b?.fields).toEqual({});
    expect(c?.error).toBe("can't read stageTimestamp");
    // event-check is the stricter judge: three digits are a decode error for the API server's Go type.
    expect((await checkOne(line(millis))).ok).toBe(false);
  });

  it('refuses a line that is neither an Event nor an EventList', async () => {
    const e = fixture('pod-create');
    delete e.kind;
    const r = await falcoOne(line(e));
    expect(r).toEqual({
      line: 1,
      event: -1,
      error: 'data not recognized as a k8s audit event',
      fields: {},
      errors: {},
    });
  });

  it('takes an event of exactly 256 KiB and refuses one byte more', async () => {
    const sized = (bytes: number) => {
      const e = fixture('pod-create');
      const annotations = e.annotations as Record<string, string>;
      annotations.padding = '';
      annotations.padding = 'x'.repeat(bytes - line(e).length);
      const l = line(e);
      expect(l.length).toBe(bytes);
      return l;
    };
    const [atLimit, over] = await falcoFields([
      sized(FALCO_MAX_EVENT_BYTES),
      sized(FALCO_MAX_EVENT_BYTES + 1),
    ]);
    expect(atLimit?.error).toBeUndefined();
    expect(atLimit?.fields['ka.verb']).toBe('create');
    expect(over?.error).toBe(`event larger than maxEventSize: size=${FALCO_MAX_EVENT_BYTES + 1}`);
  });

  it('extracts each event of an EventList line', async () => {
    const list = {
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      metadata: {},
      items: [fixture('pod-exec'), fixture('secret-redacted')],
    };
    const results = await falcoFields([line(list)]);
    expect(results.map((r) => [r.line, r.event, r.fields['ka.target.resource']])).toEqual([
      [1, 0, 'pods'],
      [1, 1, 'secrets'],
    ]);
  });
});
