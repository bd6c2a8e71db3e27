/**
 * @module `kube-audit-rest webhook-config`: prints the ValidatingWebhookConfiguration compiled from an
 * audit Policy, for those who manage the configuration themselves (kustomize, GitOps), or the chart
 * values that carry the policy and the compiled match together.
 *
 * The API server then calls kube-audit-rest only for the requests the policy records above None. When the
 * policy is too large for match conditions, the configuration keeps only the rules (more calls, never
 * fewer) and the command says so on stderr; the exit status is still 0, since what it printed is correct.
 */
import { readFileSync } from 'node:fs';
import { Document, visit } from 'yaml';
import { loadPolicyFile } from '../audit/policy/load.ts';
import type { Policy } from '../audit/policy/types.ts';
import { choiceFlag, integerFlag, parseFlags, renderHelp, textFlag, type ValuesOf } from '../config/flags.ts';
import {
  type ClientTarget,
  type CompiledMatch,
  compileMatch,
  compileWebhookConfiguration,
} from '../webhook-config/compile.ts';
import { policyDigest, policyDocument } from '../webhook-config/policy-document.ts';

const INPUT = 'Input';
const TARGET = 'Where the API server calls kube-audit-rest (one of --service-name, --url)';
const WEBHOOK = 'Webhook';
const OUTPUT = 'Output';

/** The annotation that carries the digest of the policy a configuration was compiled from. */
export const POLICY_DIGEST_ANNOTATION = 'kube-audit-rest/policy-sha256';

/** The longest timeout the API server accepts for a webhook. */
const MAX_TIMEOUT_SECONDS = 30;

/** The flags of `webhook-config`. */
export const WEBHOOK_CONFIG_FLAGS = {
  policyFile: textFlag({
    name: 'policy-file',
    placeholder: 'PATH',
    section: INPUT,
    help: "audit.k8s.io/v1 Policy (YAML or JSON): the same file as the server's --policy-file. Required",
  }),
  serviceName: textFlag({
    name: 'service-name',
    placeholder: 'NAME',
    section: TARGET,
    help: 'The Service in front of kube-audit-rest, in the cluster',
  }),
  serviceNamespace: textFlag({
    name: 'service-namespace',
    placeholder: 'NAMESPACE',
    section: TARGET,
    default: 'kube-audit-rest',
    help: "The Service's namespace",
  }),
  servicePath: textFlag({
    name: 'service-path',
    placeholder: 'PATH',
    section: TARGET,
    default: '/log-request',
    help: 'The path the API server posts to',
  }),
  servicePort: integerFlag({
    name: 'service-port',
    placeholder: 'PORT',
    section: TARGET,
    default: 443,
    min: 1,
    max: 65535,
    help: "The Service's port",
  }),
  url: textFlag({
    name: 'url',
    placeholder: 'URL',
    section: TARGET,
    help: 'https://HOST[:PORT]/PATH of a kube-audit-rest outside the cluster (no query, no fragment)',
  }),
  caBundleFile: textFlag({
    name: 'ca-bundle-file',
    placeholder: 'PATH',
    section: WEBHOOK,
    help:
      "PEM CA certificate(s) that signed kube-audit-rest's serving certificate, written into caBundle. " +
      "Without it caBundle is left out (for cert-manager's cainjector, or a public CA)",
  }),
  name: textFlag({
    name: 'name',
    placeholder: 'NAME',
    section: WEBHOOK,
    default: 'kube-audit-rest',
    help: "The configuration's metadata.name",
  }),
  webhookName: textFlag({
    name: 'webhook-name',
    placeholder: 'NAME',
    section: WEBHOOK,
    help:
      "The webhook's name, three or more dot-separated parts. Default: SERVICE.NAMESPACE.svc, or " +
      'kube-audit-rest.external.webhook with --url',
  }),
  failurePolicy: choiceFlag({
    name: 'failure-policy',
    values: ['Ignore', 'Fail'],
    default: 'Ignore',
    section: WEBHOOK,
    help: 'Ignore: API calls go ahead unrecorded while kube-audit-rest is away; Fail: they are refused',
  }),
  timeout: integerFlag({
    name: 'timeout',
    placeholder: 'SECONDS',
    section: WEBHOOK,
    default: 5,
    min: 1,
    max: MAX_TIMEOUT_SECONDS,
    help: 'How long the API server waits for kube-audit-rest on each call',
  }),
  matchPolicy: choiceFlag({
    name: 'match-policy',
    values: ['Equivalent', 'Exact'],
    default: 'Equivalent',
    section: WEBHOOK,
    help: "Either is exact: the match conditions test the resource the caller's URL named",
  }),
  output: choiceFlag({
    name: 'output',
    values: ['yaml', 'json', 'helm-values'],
    default: 'yaml',
    section: OUTPUT,
    help:
      'yaml or json: the ValidatingWebhookConfiguration; helm-values: values for the chart in ' +
      'k8s/chart, the policy as auditPolicy and the compiled rules and match conditions as ' +
      'webhook.compiled (the chart sets the rest from its own values, so --service-name, --url, ' +
      '--ca-bundle-file and --webhook-name are refused there)',
  }),
};

type Values = ValuesOf<typeof WEBHOOK_CONFIG_FLAGS>;

/** `webhook-config --help`; kept as a golden file in test/golden/help-webhook-config.txt. */
export const WEBHOOK_CONFIG_HELP = renderHelp({
  usage: [
    'kube-audit-rest webhook-config --policy-file=PATH --service-name=NAME [OPTIONS]',
    'kube-audit-rest webhook-config --policy-file=PATH --url=URL [OPTIONS]',
    'kube-audit-rest webhook-config --policy-file=PATH --output=helm-values',
  ],
  about:
    'Prints the ValidatingWebhookConfiguration that makes the API server call kube-audit-rest for ' +
    'exactly the requests the audit Policy records above None: rules for the resources and operations ' +
    'of its rules, and CEL match conditions (Kubernetes 1.30+) for the rest (users, groups, namespaces, ' +
    'names, and the order of its rules). A policy too large for match conditions gets the rules alone, ' +
    'which call for more than it records, and a warning on stderr. Exit status: 0 printed, 2 nothing ' +
    'printed (bad flags, unusable policy, or a policy that records no request a webhook can see).',
  table: WEBHOOK_CONFIG_FLAGS,
});

/** Exit statuses of `webhook-config`. */
export const WEBHOOK_CONFIG_EXIT = { ok: 0, unusable: 2 } as const;

/** Where `webhook-config` writes; the process' streams by default, replaceable in tests. */
export type WebhookConfigIo = {
  /** Writes the output. */
  write(text: string): void;
  /** Writes a diagnostic line. */
  report(text: string): void;
};

/** A problem with the flags, as a message naming them. */
class UsageError extends Error {}

/** The client target the flags name, or undefined for helm-values (the chart sets it). */
function targetOf(values: Values): ClientTarget | undefined {
  const targetFlags = [
    values.serviceName === undefined ? undefined : '--service-name',
    values.url === undefined ? undefined : '--url',
    values.caBundleFile === undefined ? undefined : '--ca-bundle-file',
    values.webhookName === undefined ? undefined : '--webhook-name',
  ].filter((f) => f !== undefined);
  if (values.output === 'helm-values') {
    if (targetFlags.length > 0)
      throw new UsageError(`${targetFlags.join(', ')}: not with --output=helm-values (the chart sets them)`);
    return undefined;
  }
  if (values.serviceName !== undefined && values.url !== undefined)
    throw new UsageError('give --service-name or --url, not both');
  if (values.serviceName !== undefined) {
    if (!values.servicePath.startsWith('/')) throw new UsageError('--service-path must start with "/"');
    return {
      service: {
        name: values.serviceName,
        namespace: values.serviceNamespace,
        path: values.servicePath,
        port: values.servicePort,
      },
    };
  }
  if (values.url === undefined) throw new UsageError('give --service-name (in the cluster) or --url');
  let url: URL;
  try {
    url = new URL(values.url);
  } catch {
    throw new UsageError(`--url must be an absolute URL, got "${values.url}"`);
  }
  // The API server's own validation of clientConfig.url.
  if (url.protocol !== 'https:') throw new UsageError('--url must use https');
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '')
    throw new UsageError('--url must not carry a query, a fragment or user information');
  return { url: values.url };
}

function readCaBundle(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--ca-bundle-file: cannot read ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new UsageError(`--ca-bundle-file: ${path} holds no PEM certificate`);
  return Buffer.from(pem).toString('base64');
}

/**
 * Writes `value` as YAML that the API server, kubectl and Helm (YAML 1.1 readers) read back unchanged:
 * strings YAML 1.1 would read as something else quoted, expressions as literal blocks.
 */
export function toYaml(value: unknown, header: readonly string[]): string {
  const doc = new Document(value, { version: '1.1' });
  visit(doc, {
    Scalar(_, node) {
      if (typeof node.value === 'string' && node.value.includes('\n')) node.type = 'BLOCK_LITERAL';
    },
  });
  doc.commentBefore = header.map((line) => ` ${line}`).join('\n');
  return doc.toString({ lineWidth: 0 });
}

/** The header lines saying where the output came from and how exact it is. */
function headerOf(file: string, digest: string, match: CompiledMatch): string[] {
  const lines = [`Made by kube-audit-rest webhook-config from ${file} (policy sha256 ${digest}).`];
  if (match.fallback.length === 0) {
    lines.push(
      'The API server calls kube-audit-rest for exactly the requests the policy records above None.',
    );
  } else {
    lines.push(
      'Match conditions left out, so the API server calls kube-audit-rest for every request the rules',
      'select (kube-audit-rest still writes only what the policy records):',
      ...match.fallback.map((reason) => `- ${reason}`),
    );
  }
  return lines;
}

function warnFallback(io: WebhookConfigIo, match: CompiledMatch): void {
  if (match.fallback.length === 0) return;
  io.report(
    'kube-audit-rest webhook-config: warning: match conditions left out; the API server will call ' +
      `kube-audit-rest for every request the rules select: ${match.fallback.join('; ')}`,
  );
}

function render(
  values: Values,
  policy: Policy,
  target: ClientTarget | undefined,
  io: WebhookConfigIo,
): string {
  const file = values.policyFile as string;
  const digest = policyDigest(policy);
  if (target === undefined) {
    const compiled = compileMatch(policy);
    if (compiled.kind === 'nothing') throw new UsageError(nothingMessage(file));
    warnFallback(io, compiled.match);
    const { rules, matchConditions } = compiled.match;
    const values = {
      auditPolicy: policyDocument(policy),
      webhook: { compiled: { policySha256: digest, rules, matchConditions } },
    };
    return toYaml(values, [
      ...headerOf(file, digest, compiled.match),
      'Pass to helm with -f. Run webhook-config again after every change to auditPolicy: the chart',
      'refuses a policy whose digest differs from webhook.compiled.policySha256.',
    ]);
  }
  const result = compileWebhookConfiguration(policy, {
    target,
    name: values.name,
    ...(values.webhookName === undefined ? {} : { webhookName: values.webhookName }),
    ...(values.caBundleFile === undefined ? {} : { caBundle: readCaBundle(values.caBundleFile) }),
    failurePolicy: values.failurePolicy,
    timeoutSeconds: values.timeout,
    matchPolicy: values.matchPolicy,
    annotations: { [POLICY_DIGEST_ANNOTATION]: digest },
  });
  if (result.kind === 'nothing') throw new UsageError(nothingMessage(file));
  warnFallback(io, result.match);
  if (values.output === 'json') return `${JSON.stringify(result.configuration, null, 2)}\n`;
  return toYaml(result.configuration, headerOf(file, digest, result.match));
}

function nothingMessage(file: string): string {
  return (
    `${file} records no request a webhook can see at a level above None ` +
    '(admission sees creates, updates, deletes and connects of resources): no webhook is needed'
  );
}

/** Runs `webhook-config` with its argv (after the word `webhook-config`) and resolves with the exit status. */
export async function webhookConfig(argv: readonly string[], io: WebhookConfigIo): Promise<number> {
  const parsed = parseFlags(WEBHOOK_CONFIG_FLAGS, argv);
  if (parsed.kind === 'help') {
    io.write(WEBHOOK_CONFIG_HELP);
    return WEBHOOK_CONFIG_EXIT.ok;
  }
  const fail = (message: string) => {
    io.report(`kube-audit-rest webhook-config: ${message}`);
    return WEBHOOK_CONFIG_EXIT.unusable;
  };
  if (parsed.kind === 'error')
    return fail(`${parsed.message}\nRun kube-audit-rest webhook-config --help for the flags.`);
  const values = parsed.values;
  try {
    if (values.policyFile === undefined) throw new UsageError('--policy-file is required');
    const target = targetOf(values);
    const loaded = await loadPolicyFile(values.policyFile);
    if (!loaded.ok) {
      return fail(
        `--policy-file: ${values.policyFile} is not a usable audit Policy:\n  ${loaded.errors.join('\n  ')}`,
      );
    }
    io.write(render(values, loaded.policy, target, io));
    return WEBHOOK_CONFIG_EXIT.ok;
  } catch (err) {
    if (err instanceof UsageError) return fail(err.message);
    throw err;
  }
}

/** The process' own streams for {@link webhookConfig}. */
export function processIo(): WebhookConfigIo {
  return {
    write: (text) => {
      process.stdout.write(text);
    },
    report: (text) => {
      process.stderr.write(`${text}\n`);
    },
  };
}
