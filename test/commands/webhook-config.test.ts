import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadPolicy } from '../../src/audit/policy/load.ts';
import {
  POLICY_DIGEST_ANNOTATION,
  WEBHOOK_CONFIG_EXIT,
  WEBHOOK_CONFIG_HELP,
  webhookConfig,
} from '../../src/commands/webhook-config.ts';
import { policyDigest } from '../../src/webhook-config/policy-document.ts';
import { runToExit } from '../helpers/server-process.ts';

const GOLDEN_HELP = join(import.meta.dir, '..', 'golden', 'help-webhook-config.txt');
const POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources: [{ group: coordination.k8s.io, resources: [leases] }]
  - level: Metadata
    resources: [{ group: "", resources: [secrets] }]
    # A string YAML 1.1 reads as a boolean unless quoted.
    namespaces: ["on", shop]
  - level: RequestResponse
    users: ["system:admin<&>"]
`;

let dir: string;
let policyFile: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kar-webhook-config-'));
  policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]) {
  let out = '';
  const err: string[] = [];
  const status = await webhookConfig(argv, {
    write: (text) => (out += text),
    report: (text) => err.push(text),
  });
  return { status, out, err: err.join('\n') };
}

function loaded() {
  const result = loadPolicy(POLICY, 'p');
  if (!result.ok) throw new Error(result.errors.join());
  return result.policy;
}

describe('webhook-config', () => {
  it('prints help matching the golden file', async () => {
    const { status, out } = await run(['--help']);
    expect(status).toBe(WEBHOOK_CONFIG_EXIT.ok);
    expect(out).toBe(WEBHOOK_CONFIG_HELP);
    expect(out).toBe(readFileSync(GOLDEN_HELP, 'utf8'));
  });

  it('prints the configuration for a Service as YAML, with the policy digest and a header', async () => {
    const { status, out, err } = await run([
      `--policy-file=${policyFile}`,
      '--service-name=kar',
      '--service-namespace=audit',
      '--failure-policy=Fail',
      '--timeout=3',
    ]);
    expect({ status, err }).toEqual({ status: 0, err: '' });
    expect(out).toStartWith(`# Made by kube-audit-rest webhook-config from ${policyFile}`);
    expect(out).toContain('# The API server calls kube-audit-rest for exactly the requests');
    const config = parse(out, { version: '1.1' });
    expect(config.metadata.annotations[POLICY_DIGEST_ANNOTATION]).toBe(policyDigest(loaded()));
    expect(config.webhooks[0]).toMatchObject({
      name: 'kar.audit.svc',
      clientConfig: { service: { name: 'kar', namespace: 'audit', path: '/log-request', port: 443 } },
      failurePolicy: 'Fail',
      timeoutSeconds: 3,
    });
    expect(config.webhooks[0].clientConfig.caBundle).toBeUndefined();
    // The expression reads back whole (a literal block), with the strings YAML 1.1 would misread intact.
    const expressions = config.webhooks[0].matchConditions.map((c: { expression: string }) => c.expression);
    expect(expressions.join('\n')).toContain("request.namespace in ['on', 'shop']");
    expect(expressions.join('\n')).toContain("'system:admin<&>'");
  });

  it('prints JSON for a URL, with the CA bundle base64-encoded', async () => {
    const ca = join(dir, 'ca.crt');
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    writeFileSync(ca, pem);
    const { status, out } = await run([
      `--policy-file=${policyFile}`,
      '--url=https://audit.example.com:9443/log-request',
      `--ca-bundle-file=${ca}`,
      '--output=json',
    ]);
    expect(status).toBe(0);
    const config = JSON.parse(out);
    expect(config.webhooks[0].name).toBe('kube-audit-rest.external.webhook');
    expect(config.webhooks[0].clientConfig).toEqual({
      url: 'https://audit.example.com:9443/log-request',
      caBundle: Buffer.from(pem).toString('base64'),
    });
  });

  it('prints chart values holding the policy, its digest and the compiled match', async () => {
    const { status, out } = await run([`--policy-file=${policyFile}`, '--output=helm-values']);
    expect(status).toBe(0);
    const values = parse(out, { version: '1.1' });
    expect(loadPolicy(JSON.stringify(values.auditPolicy), 'values')).toEqual({ ok: true, policy: loaded() });
    expect(values.webhook.compiled.policySha256).toBe(policyDigest(loaded()));
    expect(values.webhook.compiled.rules).toHaveLength(1);
    expect(values.webhook.compiled.matchConditions.map((c: { name: string }) => c.name)).toEqual([
      'not-rule-0',
      'rules-1-on-record',
    ]);
  });

  it('warns on stderr and still prints when the policy is too large for match conditions', async () => {
    const rules = Array.from(
      { length: 120 },
      (_, i) => `  - level: Metadata\n    namespaces: [ns-${i}]\n  - level: None\n    userGroups: [devs]`,
    );
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules.join('\n')}\n`);
    const { status, out, err } = await run([`--policy-file=${big}`, '--service-name=kar']);
    expect(status).toBe(0);
    expect(err).toMatch(/warning: match conditions left out.*nests \d+ deep/);
    expect(out).toContain('# Match conditions left out');
    expect(parse(out, { version: '1.1' }).webhooks[0].matchConditions).toBeUndefined();
  });

  it('refuses bad flags and unusable policies with status 2, a message, and nothing on stdout', async () => {
    const badPolicy = join(dir, 'bad.yaml');
    writeFileSync(badPolicy, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n');
    const silent = join(dir, 'silent.yaml');
    writeFileSync(silent, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n');
    const cases: [string[], RegExp][] = [
      [['--service-name=kar'], /--policy-file is required/],
      [[`--policy-file=${policyFile}`], /give --service-name \(in the cluster\) or --url/],
      [[`--policy-file=${policyFile}`, '--service-name=kar', '--url=https://x.example/'], /not both/],
      [[`--policy-file=${policyFile}`, '--url=http://x.example/'], /--url must use https/],
      [[`--policy-file=${policyFile}`, '--url=https://x.example/?a=b'], /must not carry a query/],
      [[`--policy-file=${policyFile}`, '--url=x.example'], /--url must be an absolute URL/],
      [
        [`--policy-file=${policyFile}`, '--service-name=kar', '--service-path=log'],
        /--service-path must start/,
      ],
      [
        [`--policy-file=${policyFile}`, '--service-name=kar', '--timeout=31'],
        /--timeout must be between 1 and 30/,
      ],
      [
        [`--policy-file=${policyFile}`, '--service-name=kar', '--failure-policy=Maybe'],
        /--failure-policy must be one of/,
      ],
      [
        [`--policy-file=${policyFile}`, '--output=helm-values', '--url=https://x.example/'],
        /--url: not with --output=helm-values/,
      ],
      [
        [`--policy-file=${policyFile}`, '--service-name=kar', `--ca-bundle-file=${policyFile}`],
        /holds no PEM certificate/,
      ],
      [[`--policy-file=${policyFile}`, '--service-name=kar', `--ca-bundle-file=${dir}/none`], /cannot read/],
      [
        [`--policy-file=${badPolicy}`, '--service-name=kar'],
        /not a usable audit Policy:\n.*"Loud" is not a level/,
      ],
      [[`--policy-file=${dir}/none.yaml`, '--service-name=kar'], /cannot read the policy file/],
      [[`--policy-file=${silent}`, '--service-name=kar'], /records no request a webhook can see/],
      [['--policy-file'], /--policy-file needs a value/],
      [['--bogus'], /unknown flag --bogus/],
    ];
    for (const [argv, message] of cases) {
      const { status, out, err } = await run(argv);
      expect({ argv, status, out }).toEqual({ argv, status: WEBHOOK_CONFIG_EXIT.unusable, out: '' });
      expect(err).toMatch(message);
    }
  });

  it('runs as a subcommand of the compiled executable', async () => {
    const { code, stdout, stderr } = await runToExit([
      'webhook-config',
      `--policy-file=${policyFile}`,
      '--service-name=kar',
    ]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(parse(stdout, { version: '1.1' }).kind).toBe('ValidatingWebhookConfiguration');
  });
});
