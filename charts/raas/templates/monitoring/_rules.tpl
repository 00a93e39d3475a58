{{/* The alert rules file (a plain Prometheus rules file with `groups:`), failing clearly when it is
missing; its runbook links (docs/runbooks.md#<alert>) point at monitoring.runbookUrl when set. */}}
{{- define "raas.rulesFile" -}}
{{- $rules := .Files.Get "files/alerts/raas-rules.yaml" }}
{{- if not $rules }}
{{- fail "files/alerts/raas-rules.yaml is missing from the chart (or disable monitoring.prometheusRule and monitoring.rulesConfigMap)" }}
{{- end }}
{{- with .Values.monitoring.runbookUrl }}
{{- $rules = replace "\"docs/runbooks.md#" (printf "\"%s#" .) $rules }}
{{- end }}
{{- $rules }}
{{- end }}
