{{/* NetworkPolicy egress rule to the cluster DNS. */}}
{{- define "raas.egressToDNS" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/* NetworkPolicy egress rule to S3: the built-in MinIO's pod, or the external endpoint's address ranges. */}}
{{- define "raas.egressToS3" -}}
{{- if .Values.minio.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Release.Namespace }}
      podSelector:
        matchLabels:
          {{- include "raas.selectorLabels" (dict "root" . "component" "minio") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 9000
{{- else }}
- to:
    {{- range required "minio.external.egressCIDRs is required with an external S3 and networkPolicy.enabled" .Values.minio.external.egressCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ .Values.minio.external.port }}
{{- end }}
{{- end }}
