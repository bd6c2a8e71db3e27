{{/* Chart name, or nameOverride. */}}
{{- define "kube-audit-rest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of every object: fullnameOverride, else the release name (plus the chart name unless it holds it). */}}
{{- define "kube-audit-rest.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: stable for the release's lifetime (Deployment selectors are immutable). */}}
{{- define "kube-audit-rest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-audit-rest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "kube-audit-rest.labels" -}}
{{ include "kube-audit-rest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "kube-audit-rest.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "kube-audit-rest.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "kube-audit-rest.fullname" .) -}}
{{- end -}}

{{/* The TLS Secret the pods mount. */}}
{{- define "kube-audit-rest.tlsSecretName" -}}
{{- if .Values.tls.secretName -}}
{{- .Values.tls.secretName -}}
{{- else if eq .Values.tls.source "existingSecret" -}}
{{- fail "tls.source existingSecret needs tls.secretName: the Secret holding tls.crt and tls.key" -}}
{{- else -}}
{{- printf "%s-tls" (include "kube-audit-rest.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret that self-managed TLS keeps its CA and serving certificate in. */}}
{{- define "kube-audit-rest.selfManagedSecretName" -}}
{{- .Values.tls.selfManaged.secretName | default (printf "%s-self-managed-tls" (include "kube-audit-rest.fullname" .)) -}}
{{- end -}}

{{/* Whether the pods keep their own TLS (and so call the Kubernetes API). */}}
{{- define "kube-audit-rest.selfManaged" -}}
{{- if eq .Values.tls.source "selfManaged" -}}true{{- end -}}
{{- end -}}

{{/* The Service's DNS names, which the serving certificate must carry (and the central host, in central mode). */}}
{{- define "kube-audit-rest.dnsNames" -}}
{{- $svc := printf "%s.%s.svc" (include "kube-audit-rest.fullname" .) .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc .Values.clusterDomain) -}}
{{- if .Values.central.enabled -}}
{{- $names = append $names (required "central.enabled needs central.host: the name member API servers call" .Values.central.host) -}}
{{- end -}}
{{- $names | toJson -}}
{{- end -}}

{{/* The Secret of central mode's path tokens. */}}
{{- define "kube-audit-rest.pathTokensSecretName" -}}
{{- .Values.central.pathTokens.secretName | default (printf "%s-path-tokens" (include "kube-audit-rest.fullname" .)) -}}
{{- end -}}

{{/*
The pod's grace period: with the forwarder, long enough for every step of a stop to take its whole
budget -- the preStop sleep, the webhook's shutdown (15 s), the forwarder's drain, 10 s for the kubelet.
*/}}
{{- define "kube-audit-rest.terminationGracePeriodSeconds" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- if .Values.forwarder.enabled -}}
{{- $grace = max $grace (add (int .Values.preStopSleepSeconds) 15 (int .Values.forwarder.drainTimeoutSeconds) 10) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* The forwarder's destination flags, one per line, checked. */}}
{{- define "kube-audit-rest.forwarderArgs" -}}
{{- $f := .Values.forwarder -}}
{{- if eq $f.destination "kafka" -}}
{{- if not $f.kafka.brokers }}{{ fail "forwarder.destination kafka needs forwarder.kafka.brokers (host:port, ...)" }}{{ end -}}
- --kafka-brokers={{ join "," $f.kafka.brokers }}
- --kafka-topic={{ required "forwarder.destination kafka needs forwarder.kafka.topic" $f.kafka.topic }}
{{- if ne $f.kafka.key "cluster" }}
- --kafka-key={{ $f.kafka.key }}
{{- end }}
{{- if ne $f.kafka.compression "gzip" }}
- --kafka-compression={{ $f.kafka.compression }}
{{- end }}
{{- if $f.kafka.tls }}
- --kafka-tls
{{- end }}
{{- if $f.kafka.tlsSecret.name }}
- --kafka-tls-ca-file=/etc/kube-audit-rest/kafka-tls/ca.crt
{{- if $f.kafka.tlsSecret.clientCertificate }}
- --kafka-tls-cert-file=/etc/kube-audit-rest/kafka-tls/tls.crt
- --kafka-tls-key-file=/etc/kube-audit-rest/kafka-tls/tls.key
{{- end }}
{{- end }}
{{- if $f.kafka.sasl.mechanism }}
- --kafka-sasl-mechanism={{ $f.kafka.sasl.mechanism }}
- --kafka-sasl-username={{ required "forwarder.kafka.sasl.mechanism needs forwarder.kafka.sasl.username" $f.kafka.sasl.username }}
- --kafka-sasl-password-file=/etc/kube-audit-rest/kafka-sasl/password
{{- end }}
{{- else if eq $f.destination "auditWebhook" -}}
- --audit-webhook-config-file=/etc/kube-audit-rest/audit-webhook/kubeconfig
{{- else -}}
{{- fail (printf "forwarder.destination must be kafka or auditWebhook, not %q" $f.destination) -}}
{{- end -}}
{{- end -}}

{{/*
The log volume's sizeLimit: log.sizeLimit, else maxSize x (maxBackups + 2) Mi -- the live file, the
backups, and one more file of headroom.
*/}}
{{- define "kube-audit-rest.logSizeLimit" -}}
{{- if .Values.log.sizeLimit -}}
{{- .Values.log.sizeLimit -}}
{{- else if eq (int .Values.log.maxBackups) 0 -}}
{{- fail "log.maxBackups 0 keeps every rotated file, so the log has no bound: set log.sizeLimit" -}}
{{- else -}}
{{- printf "%dMi" (mul (int .Values.log.maxSize) (add (int .Values.log.maxBackups) 2)) -}}
{{- end -}}
{{- end -}}

{{/* Where the pods read the audit Policy: the ConfigMap of templates/policy.yaml, mounted as a directory. */}}
{{- define "kube-audit-rest.policyDir" -}}
/etc/kube-audit-rest/policy
{{- end -}}
