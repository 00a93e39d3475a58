{{/*
Names, labels and shared snippets. Every object name and label comes from here.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "raas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: fullnameOverride, the release name when it holds the chart name, else <release>-<chart>. */}}
{{- define "raas.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := include "raas.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's objects: (dict "root" $ "component" "api"). */}}
{{- define "raas.componentName" -}}
{{- printf "%s-%s" (include "raas.fullname" .root) .component }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "raas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "raas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: raas
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "api"). Never change: selectors are immutable. */}}
{{- define "raas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raas.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects: (dict "root" $ "component" "api"). */}}
{{- define "raas.componentLabels" -}}
{{ include "raas.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A RaaS image reference: (dict "root" $ "image" "raas-api"). */}}
{{- define "raas.image" -}}
{{- $registry := required "images.registry is required: the registry your lab pushed the RaaS images to (images/build.py --push REGISTRY), or localhost for images imported into each node (images/build.py --archive; images/README.md)" .root.Values.images.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image (default .root.Chart.AppVersion .root.Values.images.tag) }}
{{- end }}

{{/* Image pull Secrets of a pod spec. */}}
{{- define "raas.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the Secret with the session key, admin token and built-in MinIO credentials. */}}
{{- define "raas.secretName" -}}
{{- default (include "raas.fullname" .) .Values.secrets.name }}
{{- end }}

{{/* host:port of S3: the built-in MinIO's Service, or the external endpoint. */}}
{{- define "raas.s3Endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "%s.%s.svc.%s:9000" (include "raas.componentName" (dict "root" . "component" "minio")) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- required "minio.external.endpoint is required when minio.enabled is false" .Values.minio.external.endpoint }}
{{- end }}
{{- end }}

{{/* Whether S3 is reached over TLS ("true"/"false"). */}}
{{- define "raas.s3Secure" -}}
{{- if .Values.minio.enabled }}false{{ else }}{{ .Values.minio.external.secure }}{{ end }}
{{- end }}

{{/* The S3 credentials as env entries: (dict "root" $ "prefix" "RAAS_"). */}}
{{- define "raas.s3CredentialsEnv" -}}
{{- $root := .root }}
{{- if $root.Values.minio.enabled -}}
- name: {{ .prefix }}S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "raas.secretName" $root }}
      key: s3-access-key
- name: {{ .prefix }}S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "raas.secretName" $root }}
      key: s3-secret-key
{{- else -}}
- name: {{ .prefix }}S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "minio.external.existingSecret is required when minio.enabled is false" $root.Values.minio.external.existingSecret }}
      key: {{ $root.Values.minio.external.accessKeyKey }}
- name: {{ .prefix }}S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.minio.external.existingSecret }}
      key: {{ $root.Values.minio.external.secretKeyKey }}
{{- end }}
{{- end }}

{{/* Whether a Prometheus Operator object is wanted: (dict "root" $ "setting" <auto|true|false>) → "true" or "". */}}
{{- define "raas.prometheusOperatorWanted" -}}
{{- if eq (toString .setting) "auto" }}
{{- if .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- else if eq (toString .setting) "true" }}true
{{- end }}
{{- end }}

{{/* Pod-level security context of the non-root components (API, operator, MinIO). */}}
{{- define "raas.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context of every container the chart runs. */}}
{{- define "raas.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* prometheus.io scrape annotations: (dict "root" $ "port" 9105 "path" "/metrics"). */}}
{{- define "raas.scrapeAnnotations" -}}
{{- if .root.Values.monitoring.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | quote }}
{{- end }}
{{- end }}

{{/* Checksum of a rendered template, for pod annotations that restart pods when it changes. */}}
{{- define "raas.checksum" -}}
{{- include (print .root.Template.BasePath "/" .file) .root | sha256sum }}
{{- end }}
