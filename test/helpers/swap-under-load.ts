/**
 * @module A certificate-swap scenario for tests: clients post continuously while a Secret volume is updated, the
 * kubelet's way, several times; returns how many requests failed.
 *
 * Callable in-process, or as a script (`bun test/helpers/swap-under-load.ts '{"swaps":4}'`, printing the result
 * as JSON) so that a test can run it inside its own network namespace, e.g. with `net.ipv4.tcp_migrate_req=1`.
 */

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/support/log.ts';
import { startTlsServer } from '../../src/tls/server.ts';
import { makeCa, makeServerCert } from './certs.ts';
import type { LoadSummary } from './https-load.ts';
import { startLoad } from './https-load.ts';
import { writeSecretVolume } from './secret-volume.ts';

/** Options for {@link swapUnderLoad}. */
export type SwapUnderLoadOptions = {
  /** Certificate swaps to make. Default 4. */
  swaps?: number;
  /** Concurrent clients. Default 8. */
  clients?: number;
  /** Clients open a new connection per request instead of keeping one alive. Default false. */
  newConnectionPerRequest?: boolean;
  /** The server's drain window; default: the server's own default. */
  drainMs?: number;
  /** Successful requests to wait for before the first swap and after each one. Default 200. */
  requestsBetweenSwaps?: number;
};

/** What {@link swapUnderLoad} saw. */
export type SwapUnderLoadResult = {
  /** The clients' totals: `failed` is the number that matters. */
  load: LoadSummary;
  /** Fingerprints of the certificates published, first the initial one. */
  published: string[];
  /** Swaps the server made. */
  reloads: number;
  /** Reloads the server refused. */
  reloadErrors: number;
  /** The value of net.ipv4.tcp_migrate_req where the scenario ran, or `n/a`. */
  tcpMigrateReq: string;
};

/** Deadline for each step: a swap is picked up within the debounce plus a drain, well under this. */
const STEP_TIMEOUT_MS = 15_000;

/** Runs the scenario on 127.0.0.1 with certificates made in a temp directory, which it removes. */
export async function swapUnderLoad(options: SwapUnderLoadOptions = {}): Promise<SwapUnderLoadResult> {
  const swaps = options.swaps ?? 4;
  const between = options.requestsBetweenSwaps ?? 200;
  const dir = await mkdtemp(join(tmpdir(), 'kar-swap-load-'));
  try {
    const ca = await makeCa(dir);
    await mkdir(join(dir, 'certs'));
    const certs = await Promise.all(
      Array.from({ length: swaps + 1 }, (_, i) =>
        makeServerCert(join(dir, 'certs'), ca, { name: `server-${i}` }),
      ),
    );
    const volume = join(dir, 'tls');
    const publish = (i: number) => {
      const cert = certs[i];
      if (!cert) throw new Error(`no certificate ${i}`);
      return writeSecretVolume(volume, { 'tls.crt': cert.cert, 'tls.key': cert.key });
    };
    await publish(0);

    let reloads = 0;
    let reloadErrors = 0;
    const server = await startTlsServer({
      certFile: join(volume, 'tls.crt'),
      keyFile: join(volume, 'tls.key'),
      hostname: '127.0.0.1',
      port: 0,
      logger: silentLogger,
      ...(options.drainMs === undefined ? {} : { drainMs: options.drainMs }),
      onReload: () => reloads++,
      onReloadError: () => reloadErrors++,
      async fetch(req) {
        await req.arrayBuffer();
        return Response.json({ allowed: true });
      },
    });
    const load = startLoad({
      port: server.port,
      caFile: ca.certFile,
      clients: options.clients ?? 8,
      newConnectionPerRequest: options.newConnectionPerRequest ?? false,
    });
    let summary: LoadSummary;
    try {
      await load.waitFor((c) => c.ok >= between, STEP_TIMEOUT_MS);
      for (let i = 1; i <= swaps; i++) {
        await publish(i);
        const want = certs[i]?.fingerprint256;
        const deadline = Date.now() + STEP_TIMEOUT_MS;
        while (server.material.fingerprint256 !== want) {
          if (Date.now() > deadline) throw new Error(`swap ${i} not picked up in ${STEP_TIMEOUT_MS} ms`);
          await Bun.sleep(10);
        }
        const base = load.counts().ok;
        await load.waitFor((c) => c.ok >= base + between, STEP_TIMEOUT_MS);
      }
      // Reloads run one at a time, so this one resolves only after the last swap's drain has ended.
      await server.reloadNow();
      const base = load.counts().ok;
      await load.waitFor((c) => c.ok >= base + between, STEP_TIMEOUT_MS);
    } finally {
      summary = await load.stop();
      await server.stop();
    }
    return {
      load: summary,
      published: certs.map((c) => c.fingerprint256),
      reloads,
      reloadErrors,
      tcpMigrateReq: readMigrateReq(),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function readMigrateReq(): string {
  const file = '/proc/sys/net/ipv4/tcp_migrate_req';
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : 'n/a';
}

if (import.meta.main) {
  const result = await swapUnderLoad(JSON.parse(process.argv[2] ?? '{}') as SwapUnderLoadOptions);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
