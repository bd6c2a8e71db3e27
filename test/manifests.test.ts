/**
 * @module test/manifests — every Kubernetes object we ship, sent to a real kube-apiserver: k8s/base (self-managed
 * TLS), k8s/cert-manager, k8s/without-cert-manager, k8s/external, k8s/monitoring and the Helm chart in each TLS mode go through server-side dry-run
 * applies with strict field validation (a schema error or a Pod Security warning fails the test), and their
 * wiring (Secret names, ports, flags, caBundle) is checked between objects. Also `helm lint`, the chart's
 * `lookup` of a generated certificate, k8s/scripts/make-certs.sh, and what the self-managed RBAC allows (and refuses)
 * against the same API server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type ControlPlane,
  defaultBinDir,
  missingControlPlaneBinaries,
  startControlPlane,
} from '../testing/control-plane.ts';

const REPO = resolve(import.meta.dir, '..');
const HELM = join(defaultBinDir, 'helm');
const CHART = join(REPO, 'k8s', 'chart', 'kube-audit-rest');
const CRDS = join(REPO, 'test', 'fixtures', 'crds');
const NAMESPACE = 'kube-audit-rest';
const RELEASE = 'kube-audit-rest';
const TLS_SOURCES = ['selfManaged', 'certManager', 'existingSecret', 'generate'] as const;
const FIELD_MANAGER = 'manifests-test';
/** No single kubectl or helm call here takes more than a second or two; this only stops a hang. */
const COMMAND_TIMEOUT_MS = 60_000;
/** The chart's annotation holding the generated certificate's expiry (Unix seconds). */
const NOT_AFTER_ANNOTATION = 'kube-audit-rest/not-after';

type Meta = {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};
/** The fields every Kubernetes object has; the specific types below add what the tests read. */
type K8sObject = { apiVersion: string; kind: string; metadata: Meta };
type Webhook = {
  name: string;
  clientConfig: {
    url?: string;
    caBundle?: string;
    service?: { name: string; namespace: string; port?: number; path?: string };
  };
  rules: unknown[];
  failurePolicy: string;
  matchPolicy: string;
  sideEffects: string;
  timeoutSeconds: number;
  admissionReviewVersions: string[];
};
type WebhookConfiguration = K8sObject & { webhooks: Webhook[] };
type Probe = { httpGet: { path: string; port: string | number } };
type Container = {
  image: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  readinessProbe: Probe;
  livenessProbe: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: {
    runAsNonRoot?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
};
type Volume = {
  name: string;
  secret?: { secretName: string };
  emptyDir?: { sizeLimit?: string; medium?: string };
};
/** An init container; with restartPolicy Always, a native sidecar. */
type InitContainer = Omit<Container, 'readinessProbe'> & {
  name: string;
  restartPolicy?: string;
  readinessProbe?: Probe;
};
type PodSpec = {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  containers: Container[];
  initContainers?: InitContainer[];
  volumes: Volume[];
};
type NetworkPolicy = K8sObject & {
  spec: {
    policyTypes: string[];
    ingress?: { ports: { port: number }[] }[];
    egress?: { ports: { port: number; protocol: string }[] }[];
  };
};
type Hpa = K8sObject & {
  spec: {
    scaleTargetRef: { apiVersion: string; kind: string; name: string };
    minReplicas: number;
    maxReplicas: number;
    metrics: { type: string; resource: { name: string; target: { type: string } } }[];
    behavior?: { scaleDown?: { policies?: { type: string; value: number }[] } };
  };
};
type Deployment = K8sObject & { spec: { replicas: number; template: { spec: PodSpec } } };
type Service = K8sObject & {
  spec: { ports: { name: string; port: number; targetPort: string | number }[] };
};
type Certificate = K8sObject & {
  spec: { secretName: string; dnsNames: string[]; isCA?: boolean; issuerRef: { name: string; kind: string } };
};
type Issuer = K8sObject & { spec: { selfSigned?: object; ca?: { secretName: string } } };
type Secret = K8sObject & { type: string; data: Record<string, string> };
type ServiceMonitor = K8sObject & { spec: { endpoints: { port: string; path: string }[] } };
type PolicyRule = { apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[] };
type Role = K8sObject & { rules: PolicyRule[] };
type Binding = K8sObject & {
  roleRef: { kind: string; name: string };
  subjects: { kind: string; name: string; namespace?: string }[];
};

/** Where the pods' certificate comes from: their own (self-managed) or a mounted Secret of that name. */
type TlsWiring = { selfManaged: true } | { secretName: string };

/** How a command ended and what it printed. */
type Result = { code: number; stdout: string; stderr: string };

/** Runs a command in the repository; `stdin` is fed to it. Never throws on a non-zero exit. */
async function run(cmd: string[], stdin?: string, env?: Record<string, string>): Promise<Result> {
  const proc = Bun.spawn(cmd, {
    cwd: REPO,
    stdin: stdin === undefined ? 'ignore' : Buffer.from(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
    env: { ...process.env, ...env },
    timeout: COMMAND_TIMEOUT_MS,
  });
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  return { code, stdout, stderr };
}

/** Runs a command and resolves its stdout; throws with its stderr when it fails. */
async function must(cmd: string[], stdin?: string, env?: Record<string, string>): Promise<string> {
  const result = await run(cmd, stdin, env);
  if (result.code !== 0) throw new Error(`${cmd.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result.stdout;
}

/** Whether `value` is a non-null object (not an array). */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses a YAML stream into Kubernetes objects; throws on a document that is not one. */
function parseObjects(yaml: string): K8sObject[] {
  const parsed = Bun.YAML.parse(yaml);
  const docs = Array.isArray(parsed) ? parsed : [parsed];
  return docs
    .filter((doc) => doc !== null && doc !== undefined)
    .map((doc) => {
      const meta = isRecord(doc) ? doc.metadata : undefined;
      if (
        !isRecord(doc) ||
        typeof doc.apiVersion !== 'string' ||
        typeof doc.kind !== 'string' ||
        !isRecord(meta) ||
        typeof meta.name !== 'string'
      ) {
        throw new Error(`not a Kubernetes object: ${JSON.stringify(doc).slice(0, 200)}`);
      }
      return doc as K8sObject;
    });
}

/** The one object of `kind` (and `name`, when given); throws when there is none or more than one. */
function only<T extends K8sObject>(objects: readonly K8sObject[], kind: string, name?: string): T {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  const [first, ...rest] = found;
  if (first === undefined || rest.length > 0) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  }
  return first as T;
}

/** How `kubectl -o name` prints an object: `<kind>[.<group>]/<name>`, kind in lower case. */
function kubectlName(o: K8sObject): string {
  const slash = o.apiVersion.indexOf('/');
  const group = slash === -1 ? '' : `.${o.apiVersion.slice(0, slash)}`;
  return `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
}

/** The value of `--name=value` in `args`; throws when the flag is absent. */
function flag(args: readonly string[], name: string): string {
  const prefix = `--${name}=`;
  const arg = args.find((a) => a.startsWith(prefix));
  if (arg === undefined) throw new Error(`no ${prefix} in ${args.join(' ')}`);
  return arg.slice(prefix.length);
}

/** The first container of the Deployment's pod template; throws when there is none. */
function mainContainer(deployment: Deployment): Container {
  const container = deployment.spec.template.spec.containers[0];
  if (container === undefined) throw new Error('the Deployment has no container');
  return container;
}

/**
 * Checks the forward sidecar of a pod: a native sidecar running `forward` on the webhook's own log,
 * mounted read-write from the same volume (the checkpoint goes beside it), its metrics port matching
 * the Service and the NetworkPolicy, no readiness probe (a destination outage must not take the pod
 * out of the Service), restricted like the webhook, and a grace period that covers the webhook's
 * stop and the drain. Returns the sidecar.
 */
function expectForwardSidecar(objects: readonly K8sObject[]): InitContainer {
  const deployment = only<Deployment>(objects, 'Deployment');
  const pod = deployment.spec.template.spec;
  const webhook = mainContainer(deployment);
  const sidecar = pod.initContainers?.find((c) => c.name === 'forward');
  if (sidecar === undefined) throw new Error('no forward init container');
  expect(sidecar.restartPolicy).toBe('Always');
  expect(sidecar.image).toBe(webhook.image);
  expect(sidecar.args[0]).toBe('forward');
  const logFile = flag(webhook.args, 'logger-filename');
  expect(flag(sidecar.args, 'logger-filename')).toBe(logFile);
  const logDir = logFile.slice(0, logFile.lastIndexOf('/'));
  const logVolume = webhook.volumeMounts.find((m) => m.mountPath === logDir)?.name;
  const sidecarMount = sidecar.volumeMounts.find((m) => m.mountPath === logDir);
  expect(sidecarMount?.name).toBe(logVolume as string);
  expect(sidecarMount?.readOnly).toBeUndefined();
  const metricsPort = Number(flag(sidecar.args, 'metrics-port'));
  expect(sidecar.ports).toEqual([
    expect.objectContaining({ name: 'forward-metrics', containerPort: metricsPort }),
  ]);
  expect(metricsPort).not.toBe(Number(flag(webhook.args, 'metrics-port')));
  expect(sidecar.readinessProbe).toBeUndefined();
  expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'forward-metrics' });
  expect(sidecar.securityContext).toEqual(webhook.securityContext);
  const service = objects.find(
    (o): o is Service => o.kind === 'Service' && o.metadata.name === 'kube-audit-rest',
  );
  expect(service?.spec.ports).toContainEqual(
    expect.objectContaining({ name: 'forward-metrics', port: metricsPort, targetPort: 'forward-metrics' }),
  );
  const ingress = only<NetworkPolicy>(objects, 'NetworkPolicy', 'kube-audit-rest').spec.ingress ?? [];
  expect(ingress.flatMap((rule) => rule.ports.map((p) => p.port))).toContain(metricsPort);
  // Egress: DNS, and the destination's port (the brokers', for Kafka).
  const egress = egressPorts(objects);
  expect(egress).toContain(53);
  const brokers = sidecar.args.find((a) => a.startsWith('--kafka-brokers='));
  if (brokers !== undefined) {
    for (const b of brokers.slice('--kafka-brokers='.length).split(','))
      expect(egress).toContain(Number(b.slice(b.lastIndexOf(':') + 1)));
  }
  // The grace period: preStop sleep + the webhook's default --shutdown-timeout (15 s) + the drain.
  const drain = parseDurationSeconds(flag(sidecar.args, 'drain-timeout'));
  const preStop = webhook.lifecycle?.preStop?.sleep?.seconds ?? 0;
  expect(drain).toBeGreaterThan(0);
  expect(pod.terminationGracePeriodSeconds ?? 30).toBeGreaterThanOrEqual(preStop + 15 + drain);
  return sidecar;
}

/** The egress ports the pod's NetworkPolicy allows, every rule's, in order. */
function egressPorts(objects: readonly K8sObject[]): number[] {
  const policy = only<NetworkPolicy>(objects, 'NetworkPolicy', 'kube-audit-rest');
  return (policy.spec.egress ?? []).flatMap((rule) => rule.ports.map((p) => p.port));
}

/** Seconds in a duration flag written as `<n>s`. */
function parseDurationSeconds(text: string): number {
  const m = /^(\d+)s$/.exec(text);
  if (m === null) throw new Error(`not a whole number of seconds: ${text}`);
  return Number(m[1]);
}

/** The first webhook of a configuration; throws when there is none. */
function firstWebhook(config: WebhookConfiguration): Webhook {
  const webhook = config.webhooks[0];
  if (webhook === undefined) throw new Error(`${config.metadata.name} has no webhooks`);
  return webhook;
}

/** The webhook fields that must not drift between our variants. */
function webhookPolicy(webhook: Webhook): Record<string, unknown> {
  const { rules, failurePolicy, matchPolicy, sideEffects, timeoutSeconds, admissionReviewVersions } = webhook;
  return { rules, failurePolicy, matchPolicy, sideEffects, timeoutSeconds, admissionReviewVersions };
}

/**
 * Checks what ties the in-cluster objects together: the Deployment's /etc/tls is the mounted Secret (read-only,
 * no token) or, self-managed, a writable memory volume; it passes the flags the Service and probes rely on;
 * the log volume fits the rotation flags; the webhook calls the Service on 443 at /log-request with the
 * policies we promise.
 */
function expectWired(objects: readonly K8sObject[], tls: TlsWiring): void {
  const deployment = only<Deployment>(objects, 'Deployment');
  const pod = deployment.spec.template.spec;
  const container = mainContainer(deployment);
  const volume = (name: string): Volume => {
    const v = pod.volumes.find((x) => x.name === name);
    if (v === undefined) throw new Error(`no volume ${name}`);
    return v;
  };
  const mountOf = (path: string) => container.volumeMounts.find((m) => m.mountPath === path);

  expect(deployment.spec.replicas).toBe(2);
  expect(pod.automountServiceAccountToken).toBe('selfManaged' in tls);
  expect(pod.securityContext).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 65532,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(container.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  });

  // TLS: the flags point into /etc/tls: the Secret's mount, read-only and not a subPath; or, self-managed,
  // a memory volume kube-audit-rest writes.
  expect(flag(container.args, 'cert-filename')).toBe('/etc/tls/tls.crt');
  expect(flag(container.args, 'cert-key-filename')).toBe('/etc/tls/tls.key');
  const tlsMount = mountOf('/etc/tls');
  if ('selfManaged' in tls) {
    expect(tlsMount?.readOnly).toBeUndefined();
    expect(volume(tlsMount?.name ?? '')).toEqual({
      name: 'tls',
      emptyDir: { medium: 'Memory', sizeLimit: '1Mi' },
    });
    expect(flag(container.args, 'tls-mode')).toBe('self-managed');
  } else {
    expect(tlsMount?.readOnly).toBe(true);
    expect(volume(tlsMount?.name ?? '').secret?.secretName).toBe(tls.secretName);
    expect(container.args.some((a) => a.startsWith('--tls-mode') || a.startsWith('--self-managed'))).toBe(
      false,
    );
  }

  // The log: its directory is the emptyDir, sized maxSize x (maxBackups + 2) MiB.
  const logFile = flag(container.args, 'logger-filename');
  const logMount = mountOf(logFile.slice(0, logFile.lastIndexOf('/')));
  const maxSize = Number(flag(container.args, 'logger-max-size'));
  const maxBackups = Number(flag(container.args, 'logger-max-backups'));
  expect(logFile).toBe('/var/log/kube-audit-rest/audit.log');
  expect([maxSize, maxBackups]).toEqual([100, 1]);
  expect(volume(logMount?.name ?? '').emptyDir?.sizeLimit).toBe(`${maxSize * (maxBackups + 2)}Mi`);

  // Ports: flags, container ports, probes and the Service agree.
  const port = (name: string) => container.ports.find((p) => p.name === name)?.containerPort;
  expect(port('https')).toBe(Number(flag(container.args, 'server-port')));
  expect(port('metrics')).toBe(Number(flag(container.args, 'metrics-port')));
  expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
  expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
  expect(container.lifecycle?.preStop?.sleep?.seconds).toBeGreaterThan(0);
  const service = only<Service>(objects, 'Service');
  expect(service.spec.ports).toContainEqual(expect.objectContaining({ port: 443, targetPort: 'https' }));
  expect(service.spec.ports).toContainEqual(
    expect.objectContaining({ name: 'metrics', targetPort: 'metrics' }),
  );

  // The webhook calls that Service.
  const webhook = firstWebhook(only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration'));
  expect(webhook.clientConfig.service).toEqual({
    name: service.metadata.name,
    namespace: service.metadata.namespace ?? '',
    port: 443,
    path: '/log-request',
  });
  expect(webhookPolicy(webhook)).toMatchObject({
    failurePolicy: 'Ignore',
    matchPolicy: 'Equivalent',
    sideEffects: 'None',
    timeoutSeconds: 5,
  });
  expect(
    only<K8sObject & { spec: { minAvailable: number } }>(objects, 'PodDisruptionBudget').spec.minAvailable,
  ).toBe(1);
}

/**
 * Checks the cert-manager chain: the webhook's inject-ca-from names the serving Certificate, which writes
 * the Secret the pods mount, carries the Service's DNS names and is issued by a CA Issuer backed by an
 * `isCA` Certificate from a self-signed Issuer.
 */
function expectCertManagerChain(objects: readonly K8sObject[]): void {
  const webhookConfig = only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration');
  const inject = webhookConfig.metadata.annotations?.['cert-manager.io/inject-ca-from'] ?? '';
  const [certNamespace, certName] = inject.split('/');
  const serving = only<Certificate>(objects, 'Certificate', certName);
  expect(serving.metadata.namespace).toBe(certNamespace);
  const service = only<Service>(objects, 'Service');
  const host = `${service.metadata.name}.${service.metadata.namespace}.svc`;
  expect(serving.spec.dnsNames).toEqual([host, `${host}.cluster.local`]);
  expectWired(objects, { secretName: serving.spec.secretName });
  expect(objects.some((o) => o.apiVersion.startsWith('rbac.'))).toBe(false);
  const caIssuer = only<Issuer>(objects, 'Issuer', serving.spec.issuerRef.name);
  const caCert = objects
    .filter((o): o is Certificate => o.kind === 'Certificate')
    .find((c) => c.spec.secretName === caIssuer.spec.ca?.secretName);
  expect(caCert?.spec.isCA).toBe(true);
  expect(only<Issuer>(objects, 'Issuer', caCert?.spec.issuerRef.name).spec.selfSigned).toEqual({});
}

/**
 * Checks the self-managed wiring: the flags name the Secret and webhook configuration that the RBAC grants,
 * by name, to the ServiceAccount the pods run as, and the Service whose names the certificate needs; the
 * webhook carries no caBundle (kube-audit-rest writes it) and no cert-manager annotation.
 */
function expectSelfManaged(objects: readonly K8sObject[]): void {
  expectWired(objects, { selfManaged: true });
  const deployment = only<Deployment>(objects, 'Deployment');
  const args = mainContainer(deployment).args;
  const service = only<Service>(objects, 'Service');
  const webhookConfig = only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration');
  const namespace = deployment.metadata.namespace ?? '';
  const [secretNamespace, secretName] = flag(args, 'self-managed-secret').split('/');
  expect(secretNamespace).toBe(namespace);
  expect(flag(args, 'webhook-configuration-name')).toBe(webhookConfig.metadata.name);
  expect(flag(args, 'service-name')).toBe(service.metadata.name);
  expect(flag(args, 'service-namespace')).toBe(service.metadata.namespace ?? '');
  expect(webhookConfig.webhooks.every((w) => w.clientConfig.caBundle === undefined)).toBe(true);
  expect(webhookConfig.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBeUndefined();

  const role = only<Role>(objects, 'Role');
  expect(role.metadata.namespace).toBe(namespace);
  expect(role.rules).toEqual([
    {
      apiGroups: [''],
      resources: ['secrets'],
      resourceNames: [secretName ?? ''],
      verbs: ['get', 'update', 'watch'],
    },
    { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
  ]);
  const clusterRole = only<Role>(objects, 'ClusterRole');
  expect(clusterRole.rules).toEqual([
    {
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['validatingwebhookconfigurations'],
      resourceNames: [webhookConfig.metadata.name],
      verbs: ['get', 'patch', 'watch'],
    },
  ]);
  const subject = {
    kind: 'ServiceAccount',
    name: deployment.spec.template.spec.serviceAccountName ?? '',
    namespace,
  };
  for (const [kind, roleKind, roleName] of [
    ['RoleBinding', 'Role', role.metadata.name],
    ['ClusterRoleBinding', 'ClusterRole', clusterRole.metadata.name],
  ] as const) {
    const binding = only<Binding>(objects, kind);
    expect(binding.roleRef).toMatchObject({ kind: roleKind, name: roleName });
    expect(binding.subjects).toEqual([subject]);
  }
  expect(only(objects, 'ServiceAccount').metadata.name).toBe(subject.name);
}

/** Decodes base64 to text. */
function unbase64(b64: string): string {
  return Buffer.from(b64, 'base64').toString('utf8');
}

const missing = [
  ...missingControlPlaneBinaries(),
  ...(Bun.which(HELM) === null ? ['helm'] : []),
  ...(Bun.which('kubectl') === null ? ['kubectl (on PATH)'] : []),
];

describe('Kubernetes manifests (real kube-apiserver)', () => {
  if (missing.length > 0) {
    // Fail, never skip: CI must not go green without the API server having seen the manifests.
    it('has kube-apiserver, etcd, helm and kubectl', () => {
      throw new Error(
        `${missing.join(', ')} missing (binaries dir ${defaultBinDir}): run \`bash testing/k8s-tools/build.sh\`` +
          ' and install kubectl',
      );
    });
    return;
  }

  let cp: ControlPlane;
  let helmHome: string;
  let base: K8sObject[];

  /** kubectl against the control plane, with a discovery cache of its own. */
  const kubectl = (args: string[], stdin?: string): Promise<Result> =>
    run(
      [
        'kubectl',
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--cache-dir=${join(cp.dir, 'kubectl-cache')}`,
        ...args,
      ],
      stdin,
    );

  /** helm with its config, cache and data kept out of $HOME. */
  const helm = (args: string[]): Promise<Result> =>
    run([HELM, ...args], undefined, {
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    });

  /** `helm template` of the chart as release kube-audit-rest; throws when rendering fails. */
  const helmTemplate = async (...args: string[]): Promise<string> => {
    const result = await helm(['template', RELEASE, CHART, `--namespace=${NAMESPACE}`, ...args]);
    if (result.code !== 0) throw new Error(`helm template ${args.join(' ')}:\n${result.stderr}`);
    return result.stdout;
  };

  /** Server-side apply as a dry run, with strict field validation; resolves what kubectl reported. */
  const dryRun = (yaml: string): Promise<Result> =>
    kubectl(
      [
        'apply',
        '--server-side',
        '--dry-run=server',
        '--validate=strict',
        `--field-manager=${FIELD_MANAGER}`,
        '-o',
        'name',
        '-f',
        '-',
      ],
      yaml,
    );

  /** Expects the API server to accept every object in `yaml` without warnings; resolves the objects. */
  const expectAccepted = async (yaml: string): Promise<K8sObject[]> => {
    const objects = parseObjects(yaml);
    const result = await dryRun(yaml);
    // A refused object makes kubectl exit non-zero; warnings (Pod Security, deprecations) fail too.
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    const accepted = result.stdout.trim().split('\n').sort();
    expect(accepted).toEqual(objects.map(kubectlName).sort());
    return objects;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    helmHome = await mkdtemp(join(tmpdir(), 'kar-helm-'));
    // The bare API server lacks cert-manager's and the Prometheus Operator's kinds.
    const crds = await kubectl(['apply', '--server-side', '-f', CRDS]);
    if (crds.code !== 0) throw new Error(`installing ${CRDS}: ${crds.stderr}`);
    const established = await kubectl([
      'wait',
      '--for=condition=Established',
      'crd',
      '--all',
      '--timeout=30s',
    ]);
    if (established.code !== 0) throw new Error(`CRDs not established: ${established.stderr}`);
    // The namespace exists for real, with its Pod Security labels, so namespaced dry runs are admitted
    // (and warned about) as they would be in a cluster.
    base = parseObjects(await must(['kubectl', 'kustomize', 'k8s/base']));
    const namespace = await kubectl(
      ['apply', '--server-side', '-f', '-'],
      JSON.stringify(only(base, 'Namespace')),
    );
    if (namespace.code !== 0) throw new Error(`creating the namespace: ${namespace.stderr}`);
  }, 90_000);

  afterAll(async () => {
    await cp?.stop();
    if (helmHome) await rm(helmHome, { recursive: true, force: true });
  });

  it('accepts every object of k8s/base, self-managed TLS with its RBAC, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/base']));
    expect(objects.map((o) => o.kind).sort()).toEqual(
      [
        'ClusterRole',
        'ClusterRoleBinding',
        'Deployment',
        'Namespace',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'Role',
        'RoleBinding',
        'Service',
        'ServiceAccount',
        'ValidatingWebhookConfiguration',
      ].sort(),
    );
    expect(only(objects, 'Namespace').metadata.labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'restricted',
      'pod-security.kubernetes.io/audit': 'restricted',
      'pod-security.kubernetes.io/warn': 'restricted',
    });
    // Only pods that ask for the token (the Deployment's) get it.
    expect(
      only<K8sObject & { automountServiceAccountToken: boolean }>(objects, 'ServiceAccount'),
    ).toMatchObject({
      automountServiceAccountToken: false,
    });
    expectSelfManaged(objects);
  });

  it('accepts k8s/cert-manager, wired to its cert-manager Certificate, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/cert-manager']));
    expect(
      objects
        .filter((o) => o.apiVersion.startsWith('cert-manager.io/'))
        .map((o) => o.kind)
        .sort(),
    ).toEqual(['Certificate', 'Certificate', 'Issuer', 'Issuer']);
    expectCertManagerChain(objects);
    const webhook = only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration');
    expect(webhook.webhooks).toEqual(
      only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration').webhooks,
    );
  });

  it('accepts k8s/without-cert-manager, which mounts the Secret make-certs.sh writes, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/without-cert-manager']));
    expect(objects.some((o) => o.apiVersion.startsWith('cert-manager.io/'))).toBe(false);
    expect(objects.some((o) => o.apiVersion.startsWith('rbac.'))).toBe(false);
    const webhook = only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration');
    expect(webhook.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBeUndefined();
    expect(webhook.webhooks).toEqual(
      only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration').webhooks,
    );
    expectWired(objects, { secretName: 'kube-audit-rest-tls' });
    // The rest of the pod is base's: only the TLS parts differ.
    const files = mainContainer(only<Deployment>(objects, 'Deployment'));
    const own = mainContainer(only<Deployment>(base, 'Deployment'));
    expect(files.args).toEqual(
      own.args.filter((a) => !/^--(tls-mode|self-managed|webhook-configuration|service-)/.test(a)),
    );
    expect({ ...files, args: [], volumeMounts: [] }).toEqual({ ...own, args: [], volumeMounts: [] });
  });

  it('accepts the external webhook, with the same rules and policies as the in-cluster one, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/external']));
    expect(objects.map((o) => o.kind)).toEqual(['ValidatingWebhookConfiguration']);
    const external = firstWebhook(only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration'));
    const inCluster = firstWebhook(only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration'));
    expect(external.clientConfig.service).toBeUndefined();
    expect(external.clientConfig.url).toMatch(/^https:\/\/[^/]+\/log-request$/);
    expect(webhookPolicy(external)).toEqual(webhookPolicy(inCluster));
  });

  it('accepts k8s/monitoring, whose ServiceMonitor selects the Service of k8s/base, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/monitoring']));
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PrometheusRule', 'ServiceMonitor']);
    const service = only<Service>(base, 'Service');
    const monitor = only<
      ServiceMonitor & {
        spec: {
          selector: { matchLabels: Record<string, string> };
          namespaceSelector: { matchNames: string[] };
        };
      }
    >(objects, 'ServiceMonitor');
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.namespaceSelector.matchNames).toEqual([service.metadata.namespace ?? '']);
    expect(service.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]?.port ?? '');
    // The alerts select the targets by job, which a ServiceMonitor sets to the Service's name, and call
    // the webhook by its name in k8s/base.
    const rules = JSON.stringify(only(objects, 'PrometheusRule'));
    expect(rules).toContain(
      `job=\\"${service.metadata.name}\\", namespace=\\"${service.metadata.namespace}\\"`,
    );
    const webhook = firstWebhook(only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration'));
    expect(rules).toContain(`name=\\"${webhook.name}\\"`);
    const dashboard = only<K8sObject & { data: Record<string, string> }>(objects, 'ConfigMap');
    expect(dashboard.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(dashboard.data['kube-audit-rest.json'] ?? '{}').uid).toBe('kube-audit-rest');
  });

  for (const source of TLS_SOURCES) {
    it(`accepts the chart's objects, monitoring included, when tls.source is ${source}`, async () => {
      const existingSecret = source === 'existingSecret';
      const caBundle = Buffer.from(cp.caPem).toString('base64');
      const objects = await expectAccepted(
        await helmTemplate(
          `--set=tls.source=${source}`,
          '--set=serviceMonitor.enabled=true',
          '--set=prometheusRule.enabled=true',
          '--set=grafanaDashboard.enabled=true',
          ...(existingSecret ? ['--set=tls.secretName=my-tls', `--set=tls.caBundle=${caBundle}`] : []),
        ),
      );
      only(objects, 'PrometheusRule');
      expect(only(objects, 'ConfigMap', 'kube-audit-rest-dashboard').metadata.labels?.grafana_dashboard).toBe(
        '1',
      );
      const monitor = only<ServiceMonitor>(objects, 'ServiceMonitor');
      expect(monitor.spec.endpoints).toEqual([
        expect.objectContaining({ port: 'metrics', path: '/metrics' }),
      ]);
      const webhook = firstWebhook(only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration'));

      if (source === 'selfManaged') {
        expectSelfManaged(objects);
        expect(objects.some((o) => o.kind === 'Secret' || o.kind === 'Certificate')).toBe(false);
      } else if (source === 'certManager') {
        expectCertManagerChain(objects);
        expect(webhook.clientConfig.caBundle).toBeUndefined();
      } else if (source === 'existingSecret') {
        expectWired(objects, { secretName: 'my-tls' });
        expect(objects.some((o) => o.kind === 'Secret' || o.kind === 'Certificate')).toBe(false);
        expect(webhook.clientConfig.caBundle).toBe(caBundle);
      } else {
        const secret = only<Secret>(objects, 'Secret');
        expectWired(objects, { secretName: secret.metadata.name });
        expect(secret.type).toBe('kubernetes.io/tls');
        // caBundle is the CA that signed the Secret's certificate, which names the Service.
        expect(webhook.clientConfig.caBundle).toBe(secret.data['ca.crt']);
        const ca = new X509Certificate(unbase64(secret.data['ca.crt'] ?? ''));
        const leaf = new X509Certificate(unbase64(secret.data['tls.crt'] ?? ''));
        expect(leaf.verify(ca.publicKey)).toBe(true);
        expect(leaf.subjectAltName).toBe(
          'DNS:kube-audit-rest.kube-audit-rest.svc, DNS:kube-audit-rest.kube-audit-rest.svc.cluster.local',
        );
      }
    });
  }

  it('renders the same container, pod security, RBAC and webhook as k8s/base when the chart has its defaults', async () => {
    const chart = parseObjects(await helmTemplate());
    const chartPod = only<Deployment>(chart, 'Deployment').spec.template.spec;
    const basePod = only<Deployment>(base, 'Deployment').spec.template.spec;
    expect(chartPod.containers).toEqual(basePod.containers);
    expect(chartPod.securityContext).toEqual(basePod.securityContext);
    expect(chartPod.volumes).toEqual(basePod.volumes);
    expect(chartPod.automountServiceAccountToken).toBe(basePod.automountServiceAccountToken ?? false);
    expect(chartPod.terminationGracePeriodSeconds).toBe(basePod.terminationGracePeriodSeconds ?? -1);
    const rules = (objects: K8sObject[], kind: string) => only<Role>(objects, kind).rules;
    expect(rules(chart, 'Role')).toEqual(rules(base, 'Role'));
    expect(rules(chart, 'ClusterRole')).toEqual(rules(base, 'ClusterRole'));
    const chartWebhook = firstWebhook(only<WebhookConfiguration>(chart, 'ValidatingWebhookConfiguration'));
    const baseWebhook = firstWebhook(only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration'));
    expect(chartWebhook).toEqual(baseWebhook);
  });

  it('limits the pods to the webhook and metrics ports and to the API server’s ports out (none without self-managed TLS), in k8s/base and the chart alike', async () => {
    type Rule = { from?: unknown[]; to?: unknown[]; ports: { port: number; protocol: string }[] };
    type Policy = K8sObject & { spec: { policyTypes: string[]; ingress: Rule[]; egress?: Rule[] } };
    const apiServer = {
      ports: [
        { port: 443, protocol: 'TCP' },
        { port: 6443, protocol: 'TCP' },
      ],
    };
    const basePolicy = only<Policy>(base, 'NetworkPolicy').spec;
    expect(basePolicy.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(basePolicy.egress).toEqual([apiServer]);
    expect(basePolicy.ingress.flatMap((r) => r.ports.map((p) => p.port))).toEqual([9090, 55555]);
    const metricsRule = basePolicy.ingress.find((r) => r.ports.some((p) => p.port === 55555));
    expect(metricsRule?.from).toEqual([
      { namespaceSelector: { matchLabels: { 'kube-audit-rest/scrape-metrics': 'true' } } },
    ]);

    const chartPolicy = only<Policy>(parseObjects(await helmTemplate()), 'NetworkPolicy').spec;
    expect({ ...chartPolicy, podSelector: undefined }).toEqual({ ...basePolicy, podSelector: undefined });

    // Files mode opens no connection: no egress at all, in the variants and the chart.
    for (const variant of ['k8s/cert-manager', 'k8s/without-cert-manager']) {
      const policy = only<Policy>(
        parseObjects(await must(['kubectl', 'kustomize', variant])),
        'NetworkPolicy',
      );
      expect(policy.spec.egress).toEqual([]);
      expect(policy.spec.ingress).toEqual(basePolicy.ingress);
    }
    const certManager = parseObjects(await helmTemplate('--set=tls.source=certManager'));
    expect(only<Policy>(certManager, 'NetworkPolicy').spec.egress).toEqual([]);

    const dns = { to: [{ namespaceSelector: {} }], ports: [{ port: 53, protocol: 'UDP' }] };
    const apiServerTo = [{ ipBlock: { cidr: '203.0.113.10/32' } }];
    const withEgress = await helmTemplate(
      `--set-json=networkPolicy.egress=${JSON.stringify([dns])}`,
      `--set-json=networkPolicy.apiServerTo=${JSON.stringify(apiServerTo)}`,
    );
    const objects = await expectAccepted(withEgress);
    expect(only<Policy>(objects, 'NetworkPolicy').spec.egress).toEqual([
      { ...apiServer, to: apiServerTo },
      dns,
    ]);
    const filesWithEgress = parseObjects(
      await helmTemplate(
        '--set=tls.source=certManager',
        `--set-json=networkPolicy.egress=${JSON.stringify([dns])}`,
      ),
    );
    expect(only<Policy>(filesWithEgress, 'NetworkPolicy').spec.egress).toEqual([dns]);
  });

  it('sizes the log volume from log.maxSize and log.maxBackups, and refuses an unbounded log', async () => {
    const sized = parseObjects(await helmTemplate('--set=log.maxSize=50', '--set=log.maxBackups=3'));
    const deployment = only<Deployment>(sized, 'Deployment');
    const logVolume = deployment.spec.template.spec.volumes.find((v) => v.name === 'audit-log');
    expect(logVolume?.emptyDir?.sizeLimit).toBe('250Mi');
    expect(mainContainer(deployment).resources.requests?.['ephemeral-storage']).toBe('250Mi');
    const unbounded = await helm(['template', RELEASE, CHART, '--set=log.maxBackups=0']);
    expect(unbounded.code).not.toBe(0);
    expect(unbounded.stderr).toContain('set log.sizeLimit');
    const noSecret = await helm(['template', RELEASE, CHART, '--set=tls.source=existingSecret']);
    expect(noSecret.code).not.toBe(0);
    expect(noSecret.stderr).toContain('tls.secretName');
  });

  it('accepts k8s/forward-kafka, k8s/base with the forward sidecar, when dry-run applied', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/forward-kafka']));
    expect(objects.map(kubectlName).sort()).toEqual(base.map(kubectlName).sort());
    expectSelfManaged(objects);
    const sidecar = expectForwardSidecar(objects);
    expect(flag(sidecar.args, 'kafka-topic')).not.toBe('');
    expect(flag(sidecar.args, 'kafka-brokers').split(',').length).toBeGreaterThan(0);
    // The API server's ports stay open for self-managed TLS.
    const allowed = egressPorts(objects);
    for (const port of [443, 6443]) expect(allowed).toContain(port);
  });

  it('accepts k8s/central (autoscaled, path tokens from a Secret, egress limited) and the member webhook', async () => {
    const objects = await expectAccepted(await must(['kubectl', 'kustomize', 'k8s/central']));
    expect(objects.some((o) => o.kind === 'ValidatingWebhookConfiguration')).toBe(false);
    const deployment = only<Deployment & { spec: { replicas?: number } }>(objects, 'Deployment');
    expect(deployment.spec.replicas).toBeUndefined();
    const hpa = only<Hpa>(objects, 'HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect(hpa.spec.metrics).toEqual([
      {
        type: 'Resource',
        resource: { name: 'cpu', target: expect.objectContaining({ type: 'Utilization' }) },
      },
    ]);
    const pdb = only<K8sObject & { spec: { minAvailable: number } }>(objects, 'PodDisruptionBudget');
    expect(hpa.spec.minReplicas).toBeGreaterThan(pdb.spec.minAvailable);
    expect(hpa.spec.behavior?.scaleDown?.policies).toEqual([
      expect.objectContaining({ type: 'Pods', value: 1 }),
    ]);
    // The token file comes from a Secret mounted where the flag points.
    const pod = deployment.spec.template.spec;
    const webhook = mainContainer(deployment);
    const tokenFile = flag(webhook.args, 'path-token-file');
    const tokenMount = webhook.volumeMounts.find((m) => tokenFile.startsWith(`${m.mountPath}/`));
    expect(tokenMount?.readOnly).toBe(true);
    expect(pod.volumes.find((v) => v.name === tokenMount?.name)?.secret?.secretName).toBe(
      'kube-audit-rest-path-tokens',
    );
    // Each replica writes its own emptyDir, shipped by its sidecar, which drains it on the way out.
    expect(pod.volumes.find((v) => v.name === 'audit-log')?.emptyDir).toBeDefined();
    expectForwardSidecar(objects);
    // Members reach the HTTPS port only; the certificate names the central host.
    const central = only<Service & { spec: { type: string } }>(objects, 'Service', 'kube-audit-rest-central');
    expect(central.spec.type).toBe('LoadBalancer');
    expect(central.spec.ports).toEqual([expect.objectContaining({ port: 443, targetPort: 'https' })]);
    const serving = only<Certificate>(objects, 'Certificate', 'kube-audit-rest');
    const host = serving.spec.dnsNames.find((n) => !n.includes('.svc'));
    expect(host).toBeDefined();
    // Egress: DNS and the brokers' port only (files TLS: no API server).
    expect(egressPorts(objects).sort((a, b) => a - b)).toEqual([53, 53, 9093]);
    expect(objects.some((o) => o.apiVersion.startsWith('rbac.'))).toBe(false);

    // The member clusters' webhook: the central host, a token path, the same rules as in-cluster.
    const members = await expectAccepted(
      await Bun.file(join(REPO, 'k8s', 'central', 'member-webhook.yaml')).text(),
    );
    const member = firstWebhook(only<WebhookConfiguration>(members, 'ValidatingWebhookConfiguration'));
    const url = new URL(member.clientConfig.url ?? '');
    expect(url.protocol).toBe('https:');
    expect(url.hostname).toBe(host as string);
    expect(url.pathname).toMatch(/^\/log-request\/[^/]+$/);
    expect(member.clientConfig.caBundle).toBeDefined();
    const inCluster = firstWebhook(only<WebhookConfiguration>(base, 'ValidatingWebhookConfiguration'));
    expect(webhookPolicy(member)).toEqual(webhookPolicy(inCluster));
  });

  it("renders the component's sidecar with forwarder values, and central mode, both accepted when dry-run applied", async () => {
    const component = parseObjects(await must(['kubectl', 'kustomize', 'k8s/forward-kafka']));
    const componentSidecar = expectForwardSidecar(component);
    const kafka = [
      '--set=forwarder.enabled=true',
      `--set=forwarder.kafka.brokers={${flag(componentSidecar.args, 'kafka-brokers')}}`,
      `--set=forwarder.kafka.topic=${flag(componentSidecar.args, 'kafka-topic')}`,
      '--set=forwarder.kafka.tls=true',
    ];
    const withForwarder = await expectAccepted(
      await helmTemplate(...kafka, '--set=serviceMonitor.enabled=true'),
    );
    const chartSidecar = expectForwardSidecar(withForwarder);
    expect(chartSidecar).toEqual(componentSidecar);
    expect(
      only<Deployment>(withForwarder, 'Deployment').spec.template.spec.terminationGracePeriodSeconds,
    ).toBe(only<Deployment>(component, 'Deployment').spec.template.spec.terminationGracePeriodSeconds ?? -1);
    const monitor = only<ServiceMonitor>(withForwarder, 'ServiceMonitor');
    expect(monitor.spec.endpoints.map((e) => e.port)).toEqual(['metrics', 'forward-metrics']);

    // Kafka over mutual TLS with SASL, and the audit webhook destination: secrets mounted where the flags point.
    const secured = await expectAccepted(
      await helmTemplate(
        ...kafka,
        '--set=forwarder.kafka.tlsSecret.name=kafka-client',
        '--set=forwarder.kafka.tlsSecret.clientCertificate=true',
        '--set=forwarder.kafka.sasl.mechanism=SCRAM-SHA-512',
        '--set=forwarder.kafka.sasl.username=audit',
        '--set=forwarder.kafka.sasl.passwordSecretName=kafka-password',
      ),
    );
    const webhookDestination = await expectAccepted(
      await helmTemplate(
        '--set=forwarder.enabled=true',
        '--set=forwarder.destination=auditWebhook',
        '--set=forwarder.auditWebhook.configSecretName=receiver-kubeconfig',
      ),
    );
    for (const [objects, files] of [
      [
        secured,
        ['kafka-tls-ca-file', 'kafka-tls-cert-file', 'kafka-tls-key-file', 'kafka-sasl-password-file'],
      ],
      [webhookDestination, ['audit-webhook-config-file']],
    ] as const) {
      const sidecar = expectForwardSidecar(objects);
      const volumes = only<Deployment>(objects, 'Deployment').spec.template.spec.volumes;
      for (const name of files) {
        const path = flag(sidecar.args, name);
        const mount = sidecar.volumeMounts.find((m) => path.startsWith(`${m.mountPath}/`));
        expect(mount?.readOnly).toBe(true);
        expect(volumes.find((v) => v.name === mount?.name)?.secret).toBeDefined();
      }
    }

    const central = await expectAccepted(
      await helmTemplate(
        ...kafka,
        '--set=tls.source=certManager',
        '--set=central.enabled=true',
        '--set=central.host=audit.example.com',
      ),
    );
    expect(central.some((o) => o.kind === 'ValidatingWebhookConfiguration')).toBe(false);
    expect(only<Hpa>(central, 'HorizontalPodAutoscaler').spec.scaleTargetRef.name).toBe('kube-audit-rest');
    expect(
      only<Deployment & { spec: { replicas?: number } }>(central, 'Deployment').spec.replicas,
    ).toBeUndefined();
    expect(flag(mainContainer(only<Deployment>(central, 'Deployment')).args, 'path-token-file')).toBe(
      '/etc/kube-audit-rest/path-tokens/tokens',
    );
    expect(only<Certificate>(central, 'Certificate', 'kube-audit-rest').spec.dnsNames).toContain(
      'audit.example.com',
    );
    only(central, 'Service', 'kube-audit-rest-central');
    expect(egressPorts(central).sort((a, b) => a - b)).toEqual([53, 53, 9093]);
    only(central, 'PodDisruptionBudget');

    // Refusals name what is missing.
    for (const [args, message] of [
      [['--set=forwarder.enabled=true'], 'forwarder.kafka.brokers'],
      [['--set=forwarder.enabled=true', '--set=forwarder.kafka.brokers={k:9093}'], 'forwarder.kafka.topic'],
      [['--set=forwarder.enabled=true', '--set=forwarder.destination=auditWebhook'], 'configSecretName'],
      [['--set=central.enabled=true'], 'central.enabled needs forwarder.enabled'],
      [[...kafka, '--set=central.enabled=true'], 'central.enabled needs tls.source'],
      [[...kafka, '--set=tls.source=generate', '--set=central.enabled=true'], 'central.host'],
    ] as const) {
      const refused = await helm(['template', RELEASE, CHART, ...args]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain(message);
    }
  });

  it('grants the ServiceAccount the self-managed Secret and webhook configuration by name, and nothing else', async () => {
    const rbac = base.filter((o) => o.kind === 'ServiceAccount' || o.apiVersion.startsWith('rbac.'));
    expect(rbac).toHaveLength(5);
    const applied = await kubectl(
      ['apply', '--server-side', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
    );
    expect(applied.stderr).toBe('');
    const as = `--as=system:serviceaccount:${NAMESPACE}:kube-audit-rest`;
    const canI = async (...args: string[]) => {
      const result = await kubectl(['auth', 'can-i', as, `--namespace=${NAMESPACE}`, ...args]);
      return result.stdout.trim();
    };
    try {
      const secret = 'secrets/kube-audit-rest-self-managed-tls';
      const webhook = 'validatingwebhookconfigurations.admissionregistration.k8s.io/kube-audit-rest';
      const answers = {
        getSecret: await canI('get', secret),
        updateSecret: await canI('update', secret),
        watchSecret: await canI('watch', secret),
        createSecrets: await canI('create', 'secrets'),
        getOtherSecret: await canI('get', 'secrets/kube-audit-rest-tls'),
        listSecrets: await canI('list', 'secrets'),
        deleteSecret: await canI('delete', secret),
        createElsewhere: await canI('create', 'secrets', '--namespace=default'),
        getWebhook: await canI('get', webhook),
        patchWebhook: await canI('patch', webhook),
        watchWebhook: await canI('watch', webhook),
        patchOtherWebhook: await canI(
          'patch',
          'validatingwebhookconfigurations.admissionregistration.k8s.io/other',
        ),
        deleteWebhook: await canI('delete', webhook),
        listPods: await canI('list', 'pods'),
      };
      expect(answers).toEqual({
        getSecret: 'yes',
        updateSecret: 'yes',
        watchSecret: 'yes',
        createSecrets: 'yes', // RBAC cannot name what does not exist yet
        getOtherSecret: 'no',
        listSecrets: 'no',
        deleteSecret: 'no',
        createElsewhere: 'no',
        getWebhook: 'yes',
        patchWebhook: 'yes',
        watchWebhook: 'yes',
        patchOtherWebhook: 'no',
        deleteWebhook: 'no',
        listPods: 'no',
      });
    } finally {
      await kubectl(
        ['delete', '--ignore-not-found', '-f', '-'],
        JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }),
      );
    }
  });

  it('passes helm lint --strict', async () => {
    const lint = await helm(['lint', '--strict', CHART]);
    expect(lint.stderr).toBe('');
    expect(lint.code).toBe(0);
  });

  it('refuses a field the schema lacks and warns about a Pod Security breach when they are dry-run applied', async () => {
    // The checks above are only as good as the API server's refusals: show that they happen.
    const deployment = only<Deployment>(base, 'Deployment');
    const unknownField = await dryRun(
      JSON.stringify({ ...deployment, spec: { ...deployment.spec, replica: 2 } }),
    );
    expect(unknownField.code).not.toBe(0);
    expect(unknownField.stderr).toContain('.spec.replica: field not declared in schema');

    const container = mainContainer(deployment);
    const privileged = structuredClone(deployment);
    privileged.spec.template.spec.containers = [
      { ...container, securityContext: { ...container.securityContext, allowPrivilegeEscalation: true } },
    ];
    const breach = await dryRun(JSON.stringify(privileged));
    expect(breach.stderr).toContain('would violate PodSecurity "restricted:latest"');
  });

  it('keeps the generated certificate across upgrades via lookup, and renews it near expiry', async () => {
    const first = parseObjects(await helmTemplate('--set=tls.source=generate'));
    const secret = only<Secret>(first, 'Secret');
    // Store it as a Helm install would have (Helm refuses to adopt objects without its ownership marks).
    const installed = structuredClone(secret);
    installed.metadata.annotations = {
      ...installed.metadata.annotations,
      'meta.helm.sh/release-name': RELEASE,
      'meta.helm.sh/release-namespace': NAMESPACE,
    };
    installed.metadata.labels = { ...installed.metadata.labels, 'app.kubernetes.io/managed-by': 'Helm' };
    const created = await kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(installed));
    expect(created.stderr).toBe('');

    const lookupRender = async () => {
      const objects = parseObjects(
        await helmTemplate(
          '--set=tls.source=generate',
          `--kubeconfig=${cp.kubeconfigPath}`,
          '--dry-run=server',
        ),
      );
      return {
        secret: only<Secret>(objects, 'Secret'),
        caBundle: firstWebhook(only<WebhookConfiguration>(objects, 'ValidatingWebhookConfiguration'))
          .clientConfig.caBundle,
      };
    };
    const upgrade = await lookupRender();
    expect(upgrade.secret.data).toEqual(secret.data);
    expect(upgrade.caBundle).toBe(secret.data['ca.crt']);

    // One day left, fewer than renewBeforeDays (30): the next upgrade makes a new CA and certificate,
    // and trusts the old CA too until the pods have reloaded.
    const soon = String(Math.floor(Date.now() / 1000) + 86_400);
    const annotated = await kubectl([
      'annotate',
      '--overwrite',
      `--namespace=${NAMESPACE}`,
      `secret/${secret.metadata.name}`,
      `${NOT_AFTER_ANNOTATION}=${soon}`,
    ]);
    expect(annotated.code).toBe(0);
    const renewal = await lookupRender();
    expect(renewal.secret.data['ca.crt']).not.toBe(secret.data['ca.crt']);
    expect(renewal.secret.data['tls.crt']).not.toBe(secret.data['tls.crt']);
    expect(unbase64(renewal.caBundle ?? '')).toBe(
      unbase64(renewal.secret.data['ca.crt'] ?? '') + unbase64(secret.data['ca.crt'] ?? ''),
    );
    expect(Number(renewal.secret.metadata.annotations?.[NOT_AFTER_ANNOTATION])).toBeGreaterThan(Number(soon));

    await kubectl(['delete', `--namespace=${NAMESPACE}`, `secret/${secret.metadata.name}`]);
  });

  it('makes the TLS Secret and caBundle when make-certs.sh runs on a cluster without cert-manager', async () => {
    // The webhook for real (no Service exists, so the API server's calls to it fail at once and are ignored).
    const objects = parseObjects(await must(['kubectl', 'kustomize', 'k8s/without-cert-manager']));
    const webhookYaml = JSON.stringify(only(objects, 'ValidatingWebhookConfiguration'));
    expect((await kubectl(['apply', '--server-side', '-f', '-'], webhookYaml)).code).toBe(0);
    const env = { KUBECONFIG: cp.kubeconfigPath, KUBECACHEDIR: join(cp.dir, 'kubectl-cache') };
    const readBack = async () => {
      const secret = JSON.parse(
        await must(
          ['kubectl', `--namespace=${NAMESPACE}`, 'get', 'secret/kube-audit-rest-tls', '-o', 'json'],
          undefined,
          env,
        ),
      ) as Secret;
      const webhook = JSON.parse(
        await must(
          ['kubectl', 'get', 'validatingwebhookconfiguration/kube-audit-rest', '-o', 'json'],
          undefined,
          env,
        ),
      ) as WebhookConfiguration;
      return { secret, caBundle: unbase64(firstWebhook(webhook).clientConfig.caBundle ?? '') };
    };
    try {
      await must(['bash', 'k8s/scripts/make-certs.sh'], undefined, env);
      const first = await readBack();
      expect(first.secret.type).toBe('kubernetes.io/tls');
      expect(Object.keys(first.secret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
      const ca = unbase64(first.secret.data['ca.crt'] ?? '');
      const leaf = new X509Certificate(unbase64(first.secret.data['tls.crt'] ?? ''));
      expect(leaf.verify(new X509Certificate(ca).publicKey)).toBe(true);
      expect(leaf.subjectAltName).toBe(
        'DNS:kube-audit-rest.kube-audit-rest.svc, DNS:kube-audit-rest.kube-audit-rest.svc.cluster.local',
      );
      expect(first.caBundle).toBe(ca);

      // Again, as before expiry: a new pair, and the bundle trusts the new CA and the previous one.
      await must(['bash', 'k8s/scripts/make-certs.sh'], undefined, env);
      const second = await readBack();
      const newCa = unbase64(second.secret.data['ca.crt'] ?? '');
      expect(newCa).not.toBe(ca);
      expect(second.caBundle).toBe(newCa + ca);
    } finally {
      await kubectl(['delete', 'validatingwebhookconfiguration/kube-audit-rest']);
    }
  });
});
