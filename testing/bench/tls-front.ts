/**
 * @module `bun run testing/bench/tls-front.ts`: what counting failed TLS handshakes would cost.
 *
 * Bun.serve has no hook for a failed handshake; Bun.listen has (`handshake(socket, success)`, and a
 * connection that closes before its handshake completed). So the only way to count them inside the
 * process is a TLS front: Bun.listen terminates TLS and counts, and pipes the plaintext to Bun.serve
 * on a Unix socket. This measures that design against Bun.serve terminating TLS itself, both serving
 * the same small handler (read the body, answer a short JSON), each loaded by its own wrk over the
 * same seconds, each's CPU per request read from /proc; then it checks that the front counts a plain
 * HTTP request, a client that distrusts the certificate, and a TCP connect-and-close.
 *
 *   bun run testing/bench/tls-front.ts [--seconds=5] [--rounds=3] [--connections=16] [--body=3000]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { makeCa, makeServerCert } from '../../test/helpers/certs.ts';
import { freePort, waitUntil } from '../../test/helpers/server-process.ts';
import { cpuSeconds } from './proc-stats.ts';
import { fixed, int, table } from './report.ts';

/** The handler both variants serve: read the body, answer a short JSON (the size of an allowed answer). */
async function handle(req: Request): Promise<Response> {
  await req.arrayBuffer();
  return new Response(
    '{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"allowed":true}}',
    {
      headers: { 'content-type': 'application/json' },
    },
  );
}

/** Child mode: serve one variant on `port` until killed. */
function serveVariant(variant: string, port: number, certFile: string, keyFile: string, dir: string): void {
  const tls = { cert: Bun.file(certFile), key: Bun.file(keyFile) };
  if (variant === 'direct') {
    Bun.serve({ hostname: '127.0.0.1', port, tls, fetch: handle, development: false });
    return;
  }
  const unix = join(dir, `front-${port}.sock`);
  Bun.serve({ unix, fetch: handle, development: false });
  let failures = 0;
  type Pipe = { upstream?: Bun.Socket<undefined>; pending: Uint8Array[]; handshaken: boolean };
  Bun.listen<Pipe>({
    hostname: '127.0.0.1',
    port,
    tls,
    socket: {
      open(socket) {
        socket.data = { pending: [], handshaken: false };
      },
      handshake(socket, success) {
        if (!success) return; // counted in close, with every other way a handshake can end unfinished
        socket.data.handshaken = true;
        void Bun.connect({
          unix,
          socket: {
            data(_up, chunk) {
              socket.write(chunk);
            },
            close() {
              socket.end();
            },
            error() {
              socket.end();
            },
          },
        }).then((up) => {
          socket.data.upstream = up;
          for (const chunk of socket.data.pending) up.write(chunk);
          socket.data.pending = [];
        });
      },
      data(socket, chunk) {
        const up = socket.data.upstream;
        if (up) up.write(chunk);
        else socket.data.pending.push(new Uint8Array(chunk));
      },
      close(socket) {
        if (!socket.data.handshaken) failures++;
        socket.data.upstream?.end();
      },
      error() {},
    },
  });
  // The failure count, for the check below: a second port answers it in plain text.
  Bun.serve({ hostname: '127.0.0.1', port: port + 1, fetch: () => new Response(String(failures)) });
}

/** Runs wrk for `seconds` against `port` with a POST of `body` bytes; returns requests completed. */
async function wrk(port: number, seconds: number, connections: number, bodyFile: string): Promise<number> {
  const script = join(bodyFile, '..', 'post.lua');
  writeFileSync(
    script,
    `local f = io.open("${bodyFile}", "rb"); wrk.body = f:read("*a"); f:close()\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  const proc = Bun.spawn(
    [
      'wrk',
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '-s',
      script,
      `https://127.0.0.1:${port}/log-request`,
    ],
    { stdout: 'pipe', stderr: 'pipe' },
  );
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const m = /(\d+) requests in/.exec(out);
  if (!m) throw new Error(`wrk: ${out}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const arg = (name: string, fallback: number) =>
    Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
  const child = process.argv.find((a) => a.startsWith('--serve='));
  if (child) {
    const [, variant = '', port = '', certFile = '', keyFile = '', dir = ''] = child.split(/[=,]/);
    serveVariant(variant, Number(port), certFile, keyFile, dir);
    return;
  }
  const seconds = arg('seconds', 5);
  const rounds = arg('rounds', 3);
  const connections = arg('connections', 16);
  const bodyBytes = arg('body', 3000);
  const dir = mkdtempSync(join(tmpdir(), 'kar-tls-front-'));
  const ca = await makeCa(dir);
  const cert = await makeServerCert(dir, ca);
  const bodyFile = join(dir, 'body.json');
  writeFileSync(bodyFile, `{"x":"${'a'.repeat(bodyBytes - 8)}"}`);
  const variants = ['direct', 'front'];
  const cpu: number[][] = variants.map(() => []);
  const rps: number[][] = variants.map(() => []);
  let failureCheck = '';
  try {
    for (let r = 0; r < rounds; r++) {
      const procs = variants.map((v) => {
        let port = freePort();
        while (port === 65535) port = freePort();
        const proc = Bun.spawn(
          [
            process.execPath,
            import.meta.path,
            `--serve=${v},${port},${cert.certFile},${cert.keyFile},${dir}`,
          ],
          { stdout: 'inherit', stderr: 'inherit' },
        );
        return { v, port, proc };
      });
      try {
        for (const p of procs) {
          await waitUntil(
            () =>
              fetch(`https://127.0.0.1:${p.port}/`, {
                method: 'POST',
                body: '{}',
                tls: { ca: ca.cert },
              }).then(
                (res) => res.ok,
                () => false,
              ),
            10_000,
            `${p.v} answers`,
          );
        }
        await Promise.all(procs.map((p) => wrk(p.port, 1, connections, bodyFile))); // warm-up
        const before = procs.map((p) => cpuSeconds(p.proc.pid));
        const done = await Promise.all(procs.map((p) => wrk(p.port, seconds, connections, bodyFile)));
        procs.forEach((p, i) => {
          const n = done[i] as number;
          cpu[i]?.push(((cpuSeconds(p.proc.pid) - (before[i] as number)) / n) * 1e6);
          rps[i]?.push(n / seconds);
        });
        if (r === 0) failureCheck = await checkFailures((procs[1] as { port: number }).port);
      } finally {
        for (const p of procs) {
          p.proc.kill();
          await p.proc.exited;
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  process.stdout.write(
    `${table(
      ['variant', 'CPU µs per request, each round', 'median', 'req/s (median)'],
      variants.map((v, i) => [
        v,
        (cpu[i] ?? []).map((x) => fixed(x, 1)).join(' / '),
        fixed(median(cpu[i] ?? []), 1),
        int(median(rps[i] ?? [])),
      ]),
    )}\n\n${rounds} rounds of ${seconds} s, ${connections} kept-alive connections per variant, ${bodyBytes}-byte POST bodies, both variants loaded at once.\nThe front counted ${failureCheck}.\n`,
  );
}

/** Makes three failed handshakes against the front and returns what its counter says. */
async function checkFailures(port: number): Promise<string> {
  const count = async () => Number(await (await fetch(`http://127.0.0.1:${port + 1}/`)).text());
  const start = await count();
  // Plain HTTP to the TLS port.
  await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
  // A client that does not trust the certificate (a stale caBundle): it aborts the handshake.
  await new Promise<void>((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost' }); // trusts only the system CAs
    s.on('error', () => resolve());
    s.on('secureConnect', () => {
      s.destroy();
      resolve();
    });
  });
  // A TCP connection that closes without a ClientHello.
  await new Promise<void>((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port }, () => s.end());
    s.on('close', () => resolve());
  });
  await waitUntil(async () => (await count()) - start >= 3, 5_000, 'three failures counted');
  return `${(await count()) - start} failed handshakes of the 3 made (plain HTTP, an untrusting client, connect-and-close)`;
}

if (import.meta.main) await main();
