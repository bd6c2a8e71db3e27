import { describe, expect, it } from 'bun:test';
import {
  type Config,
  DEFAULT_MAX_REQUEST_BYTES,
  HELP,
  MEGABYTE,
  type ParseResult,
  parseArgs,
  SERVE_FLAGS,
} from '../../src/config/serve.ts';

function config(result: ParseResult): Config {
  if (result.kind !== 'config') throw new Error(`expected a config, got ${JSON.stringify(result)}`);
  return result.config;
}

function error(result: ParseResult): string {
  if (result.kind !== 'error') throw new Error(`expected an error, got ${JSON.stringify(result)}`);
  return result.message;
}

describe('parseArgs', () => {
  it('applies the 1.x defaults when no flag is given', () => {
    expect(config(parseArgs([]))).toEqual({
      loggerFilename: '/tmp/kube-audit-rest.log',
      auditToStdLog: false,
      loggerMaxSizeBytes: 500 * MEGABYTE,
      loggerMaxBackups: 1,
      certFilename: '/etc/tls/tls.crt',
      certKeyFilename: '/etc/tls/tls.key',
      serverPort: 9090,
      metricsPort: 55555,
      bindAddress: '0.0.0.0',
      maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
      requestTimeoutMs: 8000,
      shutdownTimeoutMs: 15000,
      tlsReloadIntervalMs: 10000,
      verbose: false,
      policyFile: undefined,
      outputFormat: 'admissionreview',
      clusterName: undefined,
      redactionKeyFile: undefined,
      disableSecretRedaction: false,
      syntheticResponseStatus: false,
      loggerMaxAgeDays: 0,
      loggerCompress: false,
      fsync: 'never',
      onWriteError: 'allow',
      maxConnections: 0,
      metricsMaxConnections: 64,
      pathTokenFile: undefined,
      clientCaFile: undefined,
      tlsMode: 'files',
      selfManagedSecret: undefined,
      webhookConfigurationName: undefined,
      serviceName: undefined,
      serviceNamespace: undefined,
      clusterDomain: 'cluster.local',
      selfManagedExtraDns: undefined,
      selfManagedExtraIp: undefined,
      kubeconfig: undefined,
      selfManagedCaValidityMs: 43_800 * 3_600_000,
      selfManagedCertValidityMs: 2_160 * 3_600_000,
    });
  });

  it('takes every flag both as --flag=value and as --flag value', () => {
    const pairs: [string, string, keyof Config, unknown][] = [
      ['logger-filename', '/var/log/a.log', 'loggerFilename', '/var/log/a.log'],
      ['logger-max-size', '7', 'loggerMaxSizeBytes', 7 * MEGABYTE],
      ['logger-max-backups', '0', 'loggerMaxBackups', 0],
      ['cert-filename', '/c.pem', 'certFilename', '/c.pem'],
      ['cert-key-filename', '/k.pem', 'certKeyFilename', '/k.pem'],
      ['server-port', '8443', 'serverPort', 8443],
      ['metrics-port', '9100', 'metricsPort', 9100],
      ['max-connections', '500', 'maxConnections', 500],
      ['metrics-max-connections', '8', 'metricsMaxConnections', 8],
      ['bind-address', '127.0.0.1', 'bindAddress', '127.0.0.1'],
      ['max-request-bytes', '2048', 'maxRequestBytes', 2048],
      ['request-timeout', '500ms', 'requestTimeoutMs', 500],
      ['shutdown-timeout', '2s', 'shutdownTimeoutMs', 2000],
      ['tls-reload-interval', '1m', 'tlsReloadIntervalMs', 60000],
      ['policy-file', '/p.yaml', 'policyFile', '/p.yaml'],
      ['output-format', 'audit-event', 'outputFormat', 'audit-event'],
      ['cluster-name', 'prod-eu', 'clusterName', 'prod-eu'],
      ['redaction-key-file', '/k', 'redactionKeyFile', '/k'],
      ['logger-max-age', '30', 'loggerMaxAgeDays', 30],
      ['fsync', 'always', 'fsync', 'always'],
      ['on-write-error', 'deny', 'onWriteError', 'deny'],
    ];
    for (const [flag, value, key, expected] of pairs) {
      expect(config(parseArgs([`--${flag}=${value}`]))[key] as unknown).toEqual(expected);
      expect(config(parseArgs([`--${flag}`, value]))[key] as unknown).toEqual(expected);
    }
  });

  it('reads the boolean flags with and without their short forms', () => {
    expect(config(parseArgs(['--audit-to-std-log'])).auditToStdLog).toBe(true);
    expect(config(parseArgs(['--audit-to-std-log=false'])).auditToStdLog).toBe(false);
    expect(config(parseArgs(['-v'])).verbose).toBe(true);
    expect(config(parseArgs(['--verbosity'])).verbose).toBe(true);
  });

  it('asks for help with -h or --help, whatever else is given', () => {
    expect(parseArgs(['-h'])).toEqual({ kind: 'help' });
    expect(parseArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseArgs(['--server-port=1', '--help'])).toEqual({ kind: 'help' });
  });

  it('lets the last of a repeated flag win, as 1.x does', () => {
    expect(config(parseArgs(['--server-port=1', '--server-port=2'])).serverPort).toBe(2);
  });

  it('names the flag when it is unknown', () => {
    expect(error(parseArgs(['-vx']))).toBe('unknown flag -x');
    expect(error(parseArgs(['--logger-file=x']))).toBe('unknown flag --logger-file');
    expect(error(parseArgs(['-x']))).toBe('unknown flag -x');
    expect(error(parseArgs(['--no-such']))).toBe('unknown flag --no-such');
  });

  it('names the flag when its value is bad or missing', () => {
    expect(error(parseArgs(['--server-port']))).toBe('--server-port needs a value');
    expect(error(parseArgs(['--server-port=http']))).toBe('--server-port must be a whole number, got "http"');
    expect(error(parseArgs(['--server-port=70000']))).toBe(
      '--server-port must be between 0 and 65535, got 70000',
    );
    expect(error(parseArgs(['--logger-max-size=0']))).toBe(
      '--logger-max-size must be between 1 and 1048576, got 0',
    );
    expect(error(parseArgs(['--logger-max-size=1.5']))).toBe(
      '--logger-max-size must be a whole number, got "1.5"',
    );
    expect(error(parseArgs(['--logger-filename=']))).toBe('--logger-filename needs a value');
    expect(error(parseArgs(['--request-timeout=8']))).toBe(
      '--request-timeout must be a positive duration such as 500ms, 8s, 1m30s or 1h, got "8"',
    );
    expect(error(parseArgs(['--shutdown-timeout=0s']))).toBe(
      '--shutdown-timeout must be a positive duration such as 500ms, 8s, 1m30s or 1h, got "0s"',
    );
    expect(error(parseArgs(['--output-format=json']))).toBe(
      '--output-format must be one of admissionreview, audit-event, got "json"',
    );
    expect(error(parseArgs(['--audit-to-std-log=maybe']))).toBe(
      '--audit-to-std-log takes no value (or true/false), got "maybe"',
    );
    expect(error(parseArgs(['--logger-max-backups', '-1']))).toBe(
      '--logger-max-backups must be a whole number, got "-1"',
    );
  });

  it('takes Go durations with hours and mixed units', () => {
    expect(config(parseArgs(['--tls-reload-interval=1h'])).tlsReloadIntervalMs).toBe(3_600_000);
    expect(config(parseArgs(['--request-timeout=1m30s'])).requestTimeoutMs).toBe(90_000);
  });

  it('refuses a duration longer than a timer can wait, instead of firing at once', () => {
    // 2^31 ms is one more than setTimeout takes; 596h31m23s647ms is exactly 2^31 - 1.
    expect(config(parseArgs(['--shutdown-timeout=596h31m23s647ms'])).shutdownTimeoutMs).toBe(2 ** 31 - 1);
    expect(error(parseArgs(['--shutdown-timeout=596h31m23s648ms']))).toBe(
      '--shutdown-timeout must be at most 596h31m23s647ms, got "596h31m23s648ms"',
    );
    expect(error(parseArgs(['--tls-reload-interval=10000h']))).toContain('must be at most');
  });

  it('refuses file-only flags with --audit-to-std-log', () => {
    for (const flag of ['--logger-max-age=3', '--logger-compress', '--fsync=always']) {
      expect(error(parseArgs(['--audit-to-std-log', flag]))).toContain('has no use with --audit-to-std-log');
    }
  });

  it('refuses flag combinations that cannot work', () => {
    expect(error(parseArgs(['--synthetic-response-status']))).toBe(
      '--synthetic-response-status needs --output-format=audit-event',
    );
    expect(error(parseArgs(['--disable-secret-redaction', '--redaction-key-file=/k']))).toBe(
      '--redaction-key-file has no use with --disable-secret-redaction',
    );
  });

  it('refuses positional arguments and equal ports', () => {
    expect(error(parseArgs(['serve']))).toBe('unexpected argument "serve"');
    expect(error(parseArgs(['--server-port=9000', '--metrics-port=9000']))).toBe(
      '--server-port and --metrics-port must differ (both 9000)',
    );
  });

  it('returns a frozen config', () => {
    expect(Object.isFrozen(config(parseArgs([])))).toBe(true);
  });
});

describe('HELP', () => {
  it('matches the golden file test/golden/help.txt', async () => {
    expect(HELP).toBe(await Bun.file(new URL('../golden/help.txt', import.meta.url)).text());
  });

  it('is what the README shows under Flags', async () => {
    const readme = await Bun.file(new URL('../../README.md', import.meta.url)).text();
    const start = readme.indexOf('### Flags\n\n```text\n') + '### Flags\n\n```text\n'.length;
    expect(readme.slice(start, readme.indexOf('```', start))).toBe(HELP);
  });

  it('documents every flag the parser knows', () => {
    for (const flag of Object.values(SERVE_FLAGS)) expect(HELP).toContain(`--${flag.name}`);
    expect(HELP).toContain('-h, --help');
  });
});
