/**
 * Process-level: what a client gets for requests the webhook refuses, including those Bun refuses
 * before any of our code runs, over real TLS with a raw client (so odd bytes reach the server as sent).
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { join } from 'node:path';
import { type RawResponse, rawConnect, rawRequest } from '../helpers/raw-http.ts';
import { reviewBody, type ServerProcess, startServer } from '../helpers/server-process.ts';
import { logEntries, loggedUids, makeProcessFixture, metric, type ProcessFixture } from './fixture.ts';

let fx: ProcessFixture;
let server: ServerProcess;
let logFile: string;

beforeAll(async () => {
  fx = await makeProcessFixture('kar-refusals-');
  logFile = join(fx.dir, 'audit.log');
  server = await startServer([...fx.tlsArgs, `--logger-filename=${logFile}`, '--max-request-bytes=65536']);
});

afterAll(async () => {
  if (server.proc.exitCode === null) expect(await server.terminate()).toBe(0);
  fx.cleanup();
});

const JSON_TYPE = { 'content-type': 'application/json' };

/** Sends `bytes` on a new connection; resolves with the responses once `n` arrived, or once the server closed. */
async function exchange(bytes: string, n = 1): Promise<{ responses: RawResponse[]; closed: boolean }> {
  const conn = await rawConnect(server.port);
  try {
    conn.send(bytes);
    await Promise.race([conn.waitForResponses(n), conn.waitForClose()]);
    if (conn.responses().length >= n && conn.responses().at(-1)?.headers.connection === 'close') {
      await conn.waitForClose();
    }
    return { responses: conn.responses(), closed: conn.closed() };
  } finally {
    conn.destroy();
  }
}

function reason(r: RawResponse | undefined): string | undefined {
  return r === undefined ? undefined : (JSON.parse(r.body) as { reason: string }).reason;
}

describe('refusals our handler makes', () => {
  it('answers CONNECT and Host headers Bun cannot make a URL from with a JSON 4xx, counted, never 500 or an error log', async () => {
    const before = await metric(
      server,
      'kube_audit_rest_invalid_requests_total{reason="method_not_allowed"}',
    );
    const cases: [string, string, number, string][] = [
      [
        'CONNECT to an authority',
        rawRequest('CONNECT example.com:443 HTTP/1.1', { host: 'example.com:443' }),
        405,
        'method_not_allowed',
      ],
      ['CONNECT to the webhook path', rawRequest('CONNECT /log-request HTTP/1.1'), 405, 'method_not_allowed'],
      [
        'a Host with a slash, elsewhere',
        rawRequest('GET /elsewhere HTTP/1.1', { host: 'a/b' }),
        404,
        'not_found',
      ],
      [
        'a Host with a slash, on the path',
        rawRequest('GET /log-request HTTP/1.1', { host: 'a/b' }),
        405,
        'method_not_allowed',
      ],
      ['an empty Host', rawRequest('GET /elsewhere HTTP/1.1', { host: '' }), 404, 'not_found'],
      [
        'a Host with a bad port',
        rawRequest('DELETE /log-request HTTP/1.1', { host: 'h:99999' }),
        405,
        'method_not_allowed',
      ],
      [
        'TRACE with a bad Host',
        rawRequest('TRACE /elsewhere HTTP/1.1', { host: 'a b' }),
        405,
        'method_not_allowed',
      ],
      ['a percent-sign Host', rawRequest('GET /elsewhere HTTP/1.1', { host: '%zz' }), 404, 'not_found'],
    ];
    for (const [what, bytes, status, why] of cases) {
      const { responses } = await exchange(bytes);
      expect([what, responses[0]?.status]).toEqual([what, status]);
      expect([what, responses[0]?.headers['content-type']]).toEqual([what, 'application/json']);
      expect([what, reason(responses[0])]).toEqual([what, why]);
    }
    expect(await metric(server, 'kube_audit_rest_invalid_requests_total{reason="method_not_allowed"}')).toBe(
      (Number.isNaN(before) ? 0 : before) + 5,
    );
    expect(logEntries(server, 'error')).toEqual([]);
  });

  it('serves a review whatever its Host header says: the path alone routes', async () => {
    const body = reviewBody('odd-host');
    const { responses } = await exchange(
      rawRequest(
        'POST /log-request HTTP/1.1',
        { ...JSON_TYPE, host: 'a/b', 'content-length': String(body.length) },
        body,
      ),
    );
    expect(responses[0]?.status).toBe(200);
    expect(loggedUids(logFile)).toContain('odd-host');
  });

  it('answers a body far over the cap with its own JSON 413, unread, and closes', async () => {
    for (const length of [65_537, 100_000_000, 10_000_000_000]) {
      const { responses, closed } = await exchange(
        rawRequest('POST /log-request HTTP/1.1', { ...JSON_TYPE, 'content-length': String(length) }),
      );
      expect([length, responses[0]?.status, reason(responses[0]), closed]).toEqual([
        length,
        413,
        'too_large',
        true,
      ]);
    }
  });

  it('sends 100 Continue before its own answer when the client expects one (Bun sends it)', async () => {
    const { responses } = await exchange(
      rawRequest('POST /log-request HTTP/1.1', {
        'content-type': 'text/plain',
        expect: '100-continue',
        'content-length': '10',
      }),
      2,
    );
    expect(responses.map((r) => r.status)).toEqual([100, 415]);
    expect(reason(responses[1])).toBe('unsupported_media_type');
  });
});

describe('refusals Bun makes before our handler (as the README describes them)', () => {
  const body = reviewBody('never');
  const withBody = { ...JSON_TYPE, 'content-length': String(body.length) };
  const cases: [string, string, number | 'closed'][] = [
    ['a lower-case method', rawRequest('post /log-request HTTP/1.1', withBody, body), 'closed'],
    ['a method Bun does not know', rawRequest('FOO /log-request HTTP/1.1', withBody, body), 'closed'],
    [
      'no Host header in HTTP/1.1',
      rawRequest('POST /log-request HTTP/1.1', { ...withBody, host: null }, body),
      400,
    ],
    [
      'a Content-Length that is no number',
      rawRequest('POST /log-request HTTP/1.1', { ...JSON_TYPE, 'content-length': 'ten' }, body),
      400,
    ],
    [
      'both Content-Length and chunked',
      rawRequest('POST /log-request HTTP/1.1', { ...withBody, 'transfer-encoding': 'chunked' }, '0\r\n\r\n'),
      400,
    ],
    [
      'a Content-Length past 2^64',
      rawRequest('POST /log-request HTTP/1.1', { ...JSON_TYPE, 'content-length': '1'.padEnd(25, '0') }),
      400,
    ],
    [
      'a request head over Bun’s limit',
      rawRequest('POST /log-request HTTP/1.1', { ...withBody, 'x-pad': 'p'.repeat(20_000) }, body),
      431,
    ],
    ['a request line that is not HTTP', 'hello\r\n\r\n', 400],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400],
  ];
  for (const [what, bytes, expected] of cases) {
    it(`gives ${expected === 'closed' ? 'a closed connection and no answer' : `an empty ${expected} and a close`} for ${what}`, async () => {
      const { responses, closed } = await exchange(bytes);
      expect(closed).toBe(true);
      if (expected === 'closed') {
        expect(responses).toEqual([]);
      } else {
        expect(responses.map((r) => [r.status, r.body])).toEqual([[expected, '']]);
      }
      expect(loggedUids(logFile)).not.toContain('never');
    });
  }
});

describe('pipelining', () => {
  it('answers pipelined requests in order when each is answered without waiting for a write', async () => {
    const { responses } = await exchange(
      rawRequest('GET /a HTTP/1.1') + rawRequest('GET /log-request HTTP/1.1') + rawRequest('GET /b HTTP/1.1'),
      3,
    );
    expect(responses.map((r) => [r.status, reason(r)])).toEqual([
      [404, 'not_found'],
      [405, 'method_not_allowed'],
      [404, 'not_found'],
    ]);
  });

  it('closes the connection without a partial answer when a review is pipelined behind one being written, and serves on', async () => {
    const first = reviewBody('piped-1');
    const second = reviewBody('piped-2');
    const { responses, closed } = await exchange(
      rawRequest(
        'POST /log-request HTTP/1.1',
        { ...JSON_TYPE, 'content-length': String(first.length) },
        first,
      ) +
        rawRequest(
          'POST /log-request HTTP/1.1',
          { ...JSON_TYPE, 'content-length': String(second.length) },
          second,
        ),
      2,
    );
    // Bun 1.4.4 closes a connection whose next request head arrives while an answer is pending
    // (oven-sh/bun#33664): no answer is sent, and the second review never reaches the handler.
    expect(closed).toBe(true);
    expect(responses).toEqual([]);
    expect(loggedUids(logFile)).not.toContain('piped-2');
    // Known limitation (README, Pipelining): the first review's line is written though its answer is
    // lost. When this fails, Bun answers pipelined requests: update the README.
    expect(loggedUids(logFile)).toContain('piped-1');

    const again = reviewBody('after-pipelining');
    const next = await exchange(
      rawRequest(
        'POST /log-request HTTP/1.1',
        { ...JSON_TYPE, 'content-length': String(again.length) },
        again,
      ),
    );
    expect(next.responses[0]?.status).toBe(200);
  });
});
