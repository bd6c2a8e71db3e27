/**
 * @module Tests of the certificate files writer: the kubelet's layout of a Secret volume, one generation
 * kept, and the TLS server picking every new pair up from it without a failed reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { lstat, mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { certificateFiles } from '../../src/self-managed/files.ts';
import { makeCa, makeServing, type RotationPolicy } from '../../src/self-managed/rotation.ts';
import { silentLogger } from '../../src/support/log.ts';
import { startTlsServer } from '../../src/tls/server.ts';
import { waitUntil } from '../helpers/server-process.ts';

const POLICY: RotationPolicy = {
  caValidityMs: 3_600_000,
  servingValidityMs: 600_000,
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kar-files-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const ca = makeCa(Date.now(), POLICY.caValidityMs);
const pair = () => makeServing(ca, Date.now(), POLICY);

/** The fingerprint of the certificate a TLS handshake with 127.0.0.1:`port` presents, trusting `ca` only. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.pem, servername: 'localhost' }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
}

describe('certificateFiles', () => {
  it('writes a Secret volume’s layout: stable links into ..data, which one rename swaps', async () => {
    const tls = join(dir, 'layout', 'tls');
    const files = certificateFiles({ certFile: join(tls, 'tls.crt'), keyFile: join(tls, 'tls.key') });
    const first = pair();
    await files.write(first.pem, first.keyPem);
    expect(await readlink(join(tls, 'tls.crt'))).toBe('..data/tls.crt');
    expect(await readlink(join(tls, 'tls.key'))).toBe('..data/tls.key');
    const generation = await readlink(join(tls, '..data'));
    expect(generation).toMatch(/^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{3}_[0-9a-f]{6}$/);
    expect(await files.holds(first.pem, first.keyPem)).toBe(true);
    expect(((await lstat(join(tls, generation, 'tls.key'))).mode & 0o777).toString(8)).toBe('600');

    await files.write(first.pem, first.keyPem); // the same pair: nothing happens
    expect(await readlink(join(tls, '..data'))).toBe(generation);

    const second = pair();
    await files.write(second.pem, second.keyPem);
    const next = await readlink(join(tls, '..data'));
    expect(next).not.toBe(generation);
    expect((await readdir(tls)).sort()).toEqual([next, '..data', 'tls.crt', 'tls.key'].sort());
    expect(await files.holds(second.pem, second.keyPem)).toBe(true);
    expect(await files.holds(first.pem, first.keyPem)).toBe(false);
  });

  it('refuses two files in different directories, or one file for both', () => {
    expect(() => certificateFiles({ certFile: '/a/tls.crt', keyFile: '/b/tls.key' })).toThrow(
      'in one directory',
    );
    expect(() => certificateFiles({ certFile: '/a/tls.pem', keyFile: '/a/tls.pem' })).toThrow('must differ');
  });

  it('is picked up by the TLS server at every swap, without one failed reload', async () => {
    const tls = join(dir, 'served');
    const files = certificateFiles({ certFile: join(tls, 'tls.crt'), keyFile: join(tls, 'tls.key') });
    let current = pair();
    await files.write(current.pem, current.keyPem);
    let reloads = 0;
    let failures = 0;
    const server = await startTlsServer({
      certFile: join(tls, 'tls.crt'),
      keyFile: join(tls, 'tls.key'),
      fetch: () => new Response('ok'),
      logger: silentLogger,
      port: 0,
      hostname: '127.0.0.1',
      reloadIntervalMs: 0, // the watch alone
      drainMs: 0,
      onReload: () => {
        reloads++;
      },
      onReloadError: () => {
        failures++;
      },
    });
    try {
      for (let i = 1; i <= 5; i++) {
        current = pair();
        await files.write(current.pem, current.keyPem);
        const want = new X509Certificate(current.pem).fingerprint256;
        await waitUntil(
          async () => (await servedFingerprint(server.port)) === want,
          5_000,
          `swap ${i} served`,
        );
        expect(reloads).toBe(i);
      }
      expect(failures).toBe(0);
    } finally {
      await server.stop(true);
    }
  });
});
