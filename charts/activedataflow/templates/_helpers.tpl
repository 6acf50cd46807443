{{/* Chart name, truncated to a DNS label. */}}
{{- define "adf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects; short enough for the "-operator-discovery" suffix. */}}
{{- define "adf.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "adf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "adf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "adf.labels" -}}
helm.sh/chart: {{ include "adf.chart" . }}
{{ include "adf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: activedataflow
{{- end }}

{{- define "adf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "adf.operatorServiceAccount" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "adf.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The runner pods' ServiceAccount (created in every namespace that holds DataFlows). */}}
{{- define "adf.runnerServiceAccount" -}}
{{- printf "%s-runner" (include "adf.fullname" .) }}
{{- end }}

{{/* Namespaces where runner pods run: the watched ones, else the release namespace and runner.namespaces. */}}
{{- define "adf.runnerNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}
{{- prepend .Values.runner.namespaces .Release.Namespace | uniq | toJson }}
{{- end }}
{{- end }}

{{/* True when the chart runs its own Redis as the store. */}}
{{- define "adf.bundledRedis" -}}
{{- if and (not .Values.storage.url) (not .Values.storage.existingSecret) }}true{{ end }}
{{- end }}

{{- define "adf.redisName" -}}
{{- printf "%s-redis" (include "adf.fullname" .) }}
{{- end }}

{{/* The Secret holding the store URL, and its key. */}}
{{- define "adf.storeSecretName" -}}
{{- default (printf "%s-store" (include "adf.fullname" .)) .Values.storage.existingSecret }}
{{- end }}

{{- define "adf.storeSecretKey" -}}
{{- if .Values.storage.existingSecret }}{{ .Values.storage.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{/* The Secret of each flow namespace holding the store URL for runner pods: the operator's STORE_SECRET
(core/kube/names.py; tests/k8s/test_chart.py checks they agree). */}}
{{- define "adf.runnerStoreSecret" -}}
adf-store-url
{{- end }}
