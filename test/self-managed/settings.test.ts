/**
 * @module Tests of the self-managed flags through the server's parser: the settings they resolve to, and an
 * error naming the flag for each combination that cannot work.
 */
import { describe, expect, it } from 'bun:test';
import { type Config, parseArgs } from '../../src/config/serve.ts';
import { selfManagedSettings } from '../../src/self-managed/settings.ts';

const BASE = [
  '--tls-mode=self-managed',
  '--self-managed-secret=kube-audit-rest/kube-audit-rest-self-managed-tls',
  '--service-name=kube-audit-rest',
  '--service-namespace=kube-audit-rest',
];

function config(argv: string[]): Config {
  const result = parseArgs(argv);
  if (result.kind !== 'config') throw new Error(`expected a config, got ${JSON.stringify(result)}`);
  return result.config;
}

function error(argv: string[]): string {
  const result = parseArgs(argv);
  if (result.kind !== 'error') throw new Error(`expected an error, got ${JSON.stringify(result)}`);
  return result.message;
}

describe('self-managed flags', () => {
  it('resolve to the Secret, the Service’s four DNS names plus extra names and addresses, and the validities', () => {
    const settings = selfManagedSettings(
      config([
        ...BASE,
        '--webhook-configuration-name=kube-audit-rest',
        '--cluster-domain=corp.internal',
        '--self-managed-extra-dns=audit.example.com, kube-audit-rest',
        '--self-managed-extra-ip=127.0.0.1,::1',
        '--self-managed-ca-validity=60s',
        '--self-managed-cert-validity=20s',
        '--kubeconfig=/k',
        '--cert-filename=/run/tls/tls.crt',
        '--cert-key-filename=/run/tls/tls.key',
      ]),
    );
    expect(settings).toEqual({
      secretNamespace: 'kube-audit-rest',
      secretName: 'kube-audit-rest-self-managed-tls',
      webhookConfigurationName: 'kube-audit-rest',
      dnsNames: [
        'kube-audit-rest',
        'kube-audit-rest.kube-audit-rest',
        'kube-audit-rest.kube-audit-rest.svc',
        'kube-audit-rest.kube-audit-rest.svc.corp.internal',
        'audit.example.com',
      ],
      ipAddresses: ['127.0.0.1', '::1'],
      caValidityMs: 60_000,
      certValidityMs: 20_000,
      kubeconfig: '/k',
      certFile: '/run/tls/tls.crt',
      keyFile: '/run/tls/tls.key',
    });
  });

  it('default to a 5-year CA, a 90-day serving certificate, in-cluster access and no webhook configuration', () => {
    const settings = selfManagedSettings(config(BASE));
    expect(settings.caValidityMs).toBe(5 * 8760 * 3_600_000);
    expect(settings.certValidityMs).toBe(90 * 24 * 3_600_000);
    expect(settings.kubeconfig).toBeUndefined();
    expect(settings.webhookConfigurationName).toBeUndefined();
  });

  it('accept a URL-only set-up with no Service, named by extra DNS names or addresses alone', () => {
    const settings = selfManagedSettings(
      config(['--tls-mode=self-managed', '--self-managed-secret=ns/s', '--self-managed-extra-ip=10.1.2.3']),
    );
    expect([settings.dnsNames, settings.ipAddresses]).toEqual([[], ['10.1.2.3']]);
  });

  it('refuse each combination that cannot work, naming the flag', () => {
    const cases: [string[], string][] = [
      [
        ['--tls-mode=self-managed', '--service-name=a', '--service-namespace=b'],
        'needs --self-managed-secret',
      ],
      [[...BASE, '--self-managed-secret=just-a-name'], '--self-managed-secret must be NAMESPACE/NAME'],
      [[...BASE, '--self-managed-secret=Ns/name'], '--self-managed-secret must be NAMESPACE/NAME'],
      [['--tls-mode=self-managed', '--self-managed-secret=a/b', '--service-name=x'], 'go together'],
      [['--tls-mode=self-managed', '--self-managed-secret=a/b'], 'needs names for the serving certificate'],
      [
        [...BASE, '--self-managed-extra-ip=10.0.0.300'],
        '--self-managed-extra-ip: "10.0.0.300" is not an IP address',
      ],
      [[...BASE, '--self-managed-extra-dns=a b'], '--self-managed-extra-dns: "a b" is not a DNS name'],
      [[...BASE, '--webhook-configuration-name=Bad_Name'], '--webhook-configuration-name must be'],
      [
        [...BASE, '--self-managed-cert-validity=60s', '--self-managed-ca-validity=60s'],
        'must be shorter than',
      ],
      [[...BASE, '--self-managed-cert-validity=5s'], '--self-managed-cert-validity must be at least 10s'],
      [
        [...BASE, '--cert-filename=/a/tls.crt', '--cert-key-filename=/b/tls.key'],
        'two files in one directory',
      ],
      [['--kubeconfig=/k'], '--kubeconfig needs --tls-mode=self-managed'],
      [['--self-managed-cert-validity=1h'], '--self-managed-cert-validity needs --tls-mode=self-managed'],
      [['--tls-mode=automatic'], '--tls-mode must be one of files, self-managed'],
    ];
    for (const [argv, message] of cases) expect(error(argv)).toContain(message);
  });
});
