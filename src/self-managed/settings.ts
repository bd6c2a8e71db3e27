/**
 * @module The self-managed mode's settings, resolved from its flags: the Secret, the webhook configuration,
 * the serving certificate's names, the validity periods and the files. Errors name the flag at fault.
 */
import { dirname } from 'node:path';
import { ipAddressBytes } from './x509.ts';

/** The flags this mode reads, as the flag table gives them. */
export type SelfManagedFlags = {
  readonly selfManagedSecret: string | undefined;
  readonly webhookConfigurationName: string | undefined;
  readonly serviceName: string | undefined;
  readonly serviceNamespace: string | undefined;
  readonly clusterDomain: string;
  readonly selfManagedExtraDns: string | undefined;
  readonly selfManagedExtraIp: string | undefined;
  readonly kubeconfig: string | undefined;
  readonly selfManagedCaValidityMs: number;
  readonly selfManagedCertValidityMs: number;
  readonly certFilename: string;
  readonly certKeyFilename: string;
};

/** What the self-managed mode runs with. */
export type SelfManagedSettings = {
  readonly secretNamespace: string;
  readonly secretName: string;
  /** Undefined: no webhook configuration is changed. */
  readonly webhookConfigurationName: string | undefined;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly caValidityMs: number;
  readonly certValidityMs: number;
  /** Undefined: in-cluster (the pod's ServiceAccount). */
  readonly kubeconfig: string | undefined;
  readonly certFile: string;
  readonly keyFile: string;
};

/** A Kubernetes namespace name: an RFC 1123 label. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** An object name such as a Secret's: an RFC 1123 subdomain, at most 253 characters. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A DNS name for a certificate: subdomain rules, any case, a leading `*.` allowed (RFC 6125 §6.4.3). */
const CERT_DNS_NAME =
  /^(\*\.)?(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$/;

/** Splits a comma-separated flag value into its non-empty, trimmed items. */
export function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * The DNS names a Service answers to inside the cluster, shortest first: `svc`, `svc.ns`, `svc.ns.svc`
 * (the name the API server calls) and `svc.ns.svc.<cluster domain>`.
 */
export function serviceDnsNames(service: string, namespace: string, clusterDomain: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.${clusterDomain}`,
  ];
}

/** Resolves and checks the settings; throws an Error whose message names the flag. */
export function selfManagedSettings(flags: SelfManagedFlags): SelfManagedSettings {
  const secret = flags.selfManagedSecret;
  if (secret === undefined)
    throw new Error('--tls-mode=self-managed needs --self-managed-secret=NAMESPACE/NAME');
  const [secretNamespace = '', secretName = '', ...extra] = secret.split('/');
  if (extra.length > 0 || !DNS_LABEL.test(secretNamespace) || !DNS_SUBDOMAIN.test(secretName))
    throw new Error(`--self-managed-secret must be NAMESPACE/NAME (lower-case DNS names), got "${secret}"`);
  const webhook = flags.webhookConfigurationName;
  if (webhook !== undefined && !DNS_SUBDOMAIN.test(webhook))
    throw new Error(`--webhook-configuration-name must be a lower-case DNS name, got "${webhook}"`);

  if ((flags.serviceName === undefined) !== (flags.serviceNamespace === undefined))
    throw new Error('--service-name and --service-namespace go together');
  const dnsNames: string[] = [];
  if (flags.serviceName !== undefined && flags.serviceNamespace !== undefined) {
    if (!DNS_LABEL.test(flags.serviceName))
      throw new Error(`--service-name must be a lower-case DNS label, got "${flags.serviceName}"`);
    if (!DNS_LABEL.test(flags.serviceNamespace))
      throw new Error(`--service-namespace must be a lower-case DNS label, got "${flags.serviceNamespace}"`);
    if (!DNS_SUBDOMAIN.test(flags.clusterDomain))
      throw new Error(`--cluster-domain must be a DNS name, got "${flags.clusterDomain}"`);
    dnsNames.push(...serviceDnsNames(flags.serviceName, flags.serviceNamespace, flags.clusterDomain));
  }
  for (const name of splitList(flags.selfManagedExtraDns)) {
    if (!CERT_DNS_NAME.test(name)) throw new Error(`--self-managed-extra-dns: "${name}" is not a DNS name`);
    if (!dnsNames.includes(name)) dnsNames.push(name);
  }
  const ipAddresses = splitList(flags.selfManagedExtraIp);
  for (const ip of ipAddresses)
    if (ipAddressBytes(ip) === undefined)
      throw new Error(`--self-managed-extra-ip: "${ip}" is not an IP address`);
  if (dnsNames.length === 0 && ipAddresses.length === 0)
    throw new Error(
      '--tls-mode=self-managed needs names for the serving certificate: --service-name and --service-namespace, ' +
        'or --self-managed-extra-dns / --self-managed-extra-ip',
    );

  if (flags.selfManagedCertValidityMs >= flags.selfManagedCaValidityMs)
    throw new Error('--self-managed-cert-validity must be shorter than --self-managed-ca-validity');
  if (
    dirname(flags.certFilename) !== dirname(flags.certKeyFilename) ||
    flags.certFilename === flags.certKeyFilename
  )
    throw new Error(
      'in self-managed mode --cert-filename and --cert-key-filename must be two files in one directory ' +
        '(kube-audit-rest writes both there and swaps them together)',
    );
  return {
    secretNamespace,
    secretName,
    webhookConfigurationName: webhook,
    dnsNames,
    ipAddresses,
    caValidityMs: flags.selfManagedCaValidityMs,
    certValidityMs: flags.selfManagedCertValidityMs,
    kubeconfig: flags.kubeconfig,
    certFile: flags.certFilename,
    keyFile: flags.certKeyFilename,
  };
}
