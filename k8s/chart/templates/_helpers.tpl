{{/* The chart's name, or nameOverride. */}}
{{- define "tfs-traffic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object names: fullnameOverride, or <release>-<name> (the release name alone when it contains the
name); at most 63 characters, as a Service name allows.
*/}}
{{- define "tfs-traffic.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tfs-traffic.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that pick this release's pods: stable across upgrades (a selector is immutable). */}}
{{- define "tfs-traffic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfs-traffic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tfs-traffic.labels" -}}
helm.sh/chart: {{ include "tfs-traffic.chart" . }}
{{ include "tfs-traffic.selectorLabels" . }}
app.kubernetes.io/component: model-server
app.kubernetes.io/version: {{ include "tfs-traffic.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tfs-traffic.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "tfs-traffic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tfs-traffic.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* patched (no sidecar), proxy or status-only. */}}
{{/* patched (the patched image, with or without the sidecar's status poller), proxy or status-only. */}}
{{- define "tfs-traffic.mode" -}}
{{- if or .Values.image.patched (not .Values.sidecar.enabled) }}patched{{ else }}{{ .Values.sidecar.mode }}{{ end }}
{{- end }}

{{/* "true" when the pods carry prometheus.io/* annotations: by default exactly when the PodMonitor is off. */}}
{{- define "tfs-traffic.scrapeAnnotations" -}}
{{- $on := .Values.monitoring.scrapeAnnotations }}
{{- if kindIs "invalid" $on }}{{ $on = not .Values.monitoring.podMonitor.enabled }}{{ end }}
{{- ternary "true" "" $on }}
{{- end }}

{{/* models.config with its comments (# to end of line) removed, for the checks below. */}}
{{- define "tfs-traffic.modelsConfigCode" -}}
{{- regexReplaceAll "#[^\n]*" .Values.modelsConfig "" }}
{{- end }}

{{/* "true" when TF Serving must get --allow_version_labels_for_unavailable_models. */}}
{{- define "tfs-traffic.allowUnavailableLabels" -}}
{{- $setting := .Values.tfserving.allowVersionLabelsForUnavailableModels }}
{{- if eq (toString $setting) "auto" }}
{{- ternary "true" "" (regexMatch "\\bversion_labels\\s*[:{]" (include "tfs-traffic.modelsConfigCode" .)) }}
{{- else }}
{{- ternary "true" "" $setting }}
{{- end }}
{{- end }}

{{/*
The model names in modelsConfig (`name: "..."` of each config entry) as one RE2 alternation, each
name escaped: the KEDA query counts this release's models only.
*/}}
{{- define "tfs-traffic.modelNamesRegex" -}}
{{- $names := list }}
{{- range regexFindAll "(^|[\\s{;])name\\s*:\\s*\"([^\"\\\\]|\\\\.)*\"" (include "tfs-traffic.modelsConfigCode" .) -1 }}
{{- $quoted := regexReplaceAll "^[^\"]*\"" . "" | trimSuffix "\"" }}
{{- $names = append $names (regexQuoteMeta $quoted) }}
{{- end }}
{{- if not $names }}
{{- fail "modelsConfig: configures no model (model_config_list { config { name: \"...\" } })" }}
{{- end }}
{{- join "|" $names }}
{{- end }}

{{/* A PromQL double-quoted string literal. */}}
{{- define "tfs-traffic.promqlString" -}}
"{{ . | replace "\\" "\\\\" | replace "\"" "\\\"" }}"
{{- end }}

{{/*
Checks that span sections, failing with one line naming the field: ports of one pod, which
containers share, and the Service's two ports.
*/}}
{{- define "tfs-traffic.checks" -}}
{{- $ports := dict }}
{{- $fields := list (list "tfserving.grpcPort" .Values.tfserving.grpcPort) (list "tfserving.restPort" .Values.tfserving.restPort) }}
{{- if .Values.sidecar.enabled }}
{{- $fields = append $fields (list "sidecar.metricsPort" .Values.sidecar.metricsPort) }}
{{- if eq .Values.sidecar.mode "proxy" }}
{{- $fields = append $fields (list "sidecar.grpcPort" .Values.sidecar.grpcPort) }}
{{- $fields = append $fields (list "sidecar.restPort" .Values.sidecar.restPort) }}
{{- end }}
{{- end }}
{{- range $fields }}
{{- $port := toString (index . 1) }}
{{- if hasKey $ports $port }}
{{- fail (printf "%s: port %s is already used by %s (containers of one pod share ports)" (index . 0) $port (get $ports $port)) }}
{{- end }}
{{- $_ := set $ports $port (index . 0) }}
{{- end }}
{{- if eq (toString .Values.service.grpcPort) (toString .Values.service.restPort) }}
{{- fail (printf "service.restPort: port %v is already used by service.grpcPort" .Values.service.restPort) }}
{{- end }}
{{- if not (or (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set at most one of minAvailable and maxUnavailable" }}
{{- end }}
{{- end }}

{{/* TF Serving's MonitoringConfig (text proto) that turns on its Prometheus exporter. */}}
{{- define "tfs-traffic.monitoringConfig" -}}
prometheus_config {
  enable: true
  path: {{ .Values.tfserving.monitoringPath | quote }}
}
{{- end }}

{{/* A TF Serving probe: (list .Values.tfserving periodSeconds failureThreshold). */}}
{{- define "tfs-traffic.probe" -}}
{{- $t := index . 0 -}}
{{- if eq $t.probe "grpc" -}}
grpc:
  port: {{ $t.grpcPort }}
  service: PredictionService
{{- else -}}
tcpSocket:
  port: {{ $t.grpcPort }}
{{- end }}
periodSeconds: {{ index . 1 }}
failureThreshold: {{ index . 2 }}
{{- end }}
