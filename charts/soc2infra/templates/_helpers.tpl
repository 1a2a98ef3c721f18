{{/* Names, labels and the image reference. */}}
{{- define "soc2infra.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "soc2infra.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "soc2infra.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "soc2infra.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "soc2infra.selectorLabels" -}}
app.kubernetes.io/name: {{ include "soc2infra.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "soc2infra.labels" -}}
{{ include "soc2infra.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "soc2infra.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{- define "soc2infra.tlsSecret" -}}
{{- if eq .Values.webhook.certificates.mode "existingSecret" -}}
{{ required "webhook.certificates.existingSecret is required in mode existingSecret" .Values.webhook.certificates.existingSecret }}
{{- else -}}
{{ include "soc2infra.fullname" . }}-webhook-tls
{{- end -}}
{{- end -}}

{{/* Excluded namespaces: the configured list plus the release namespace. */}}
{{- define "soc2infra.excludedNamespaces" -}}
{{- $all := append (.Values.admission.excludedNamespaces | default list) .Release.Namespace | uniq | sortAlpha -}}
{{- toJson $all -}}
{{- end -}}

{{/* API group, version and plural of each kind a webhook can check (built-in kinds). */}}
{{- define "soc2infra.kindTable" -}}
ClusterRole: {group: rbac.authorization.k8s.io, version: v1, plural: clusterroles}
ClusterRoleBinding: {group: rbac.authorization.k8s.io, version: v1, plural: clusterrolebindings}
ConfigMap: {group: "", version: v1, plural: configmaps}
CronJob: {group: batch, version: v1, plural: cronjobs}
DaemonSet: {group: apps, version: v1, plural: daemonsets}
Deployment: {group: apps, version: v1, plural: deployments}
Ingress: {group: networking.k8s.io, version: v1, plural: ingresses}
Job: {group: batch, version: v1, plural: jobs}
Namespace: {group: "", version: v1, plural: namespaces}
NetworkPolicy: {group: networking.k8s.io, version: v1, plural: networkpolicies}
PersistentVolumeClaim: {group: "", version: v1, plural: persistentvolumeclaims}
Pod: {group: "", version: v1, plural: pods}
PodDisruptionBudget: {group: policy, version: v1, plural: poddisruptionbudgets}
ReplicaSet: {group: apps, version: v1, plural: replicasets}
ReplicationController: {group: "", version: v1, plural: replicationcontrollers}
Role: {group: rbac.authorization.k8s.io, version: v1, plural: roles}
RoleBinding: {group: rbac.authorization.k8s.io, version: v1, plural: rolebindings}
Secret: {group: "", version: v1, plural: secrets}
Service: {group: "", version: v1, plural: services}
ServiceAccount: {group: "", version: v1, plural: serviceaccounts}
StatefulSet: {group: apps, version: v1, plural: statefulsets}
StorageClass: {group: storage.k8s.io, version: v1, plural: storageclasses}
{{- end -}}

{{/* Production evidence: a signing key and an anchor target, unless explicitly disabled. */}}
{{- define "soc2infra.requireEvidenceTrust" -}}
{{- $e := .Values.evidence -}}
{{- $missing := list -}}
{{- if and $e.signingKey.required (not $e.signingKey.existingSecret) -}}
{{- $missing = append $missing "evidence.signingKey.existingSecret (a Secret holding the Ed25519 key from `soc2infra evidence keygen`), or evidence.signingKey.required=false to record unsigned evidence" -}}
{{- end -}}
{{- if and $e.anchor.enabled (not $e.anchor.target) -}}
{{- $missing = append $missing "evidence.anchor.target=s3://BUCKET/PREFIX (a bucket created with Object Lock), or evidence.anchor.enabled=false to run without scheduled anchoring" -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "soc2infra: the evidence ledger is not tamper-evident with these values; set %s" (join "; and set " $missing)) -}}
{{- end -}}
{{- end -}}
