{{/*
Names, labels and small computed values shared by the templates.
*/}}

{{- define "ramp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: "<release>-ramp", or the release name alone when it already
contains the chart name.
*/}}
{{- define "ramp.fullname" -}}
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

{{- define "ramp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ramp.instanceLabels" -}}
app.kubernetes.io/name: {{ include "ramp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ramp.selectorLabels" -}}
{{ include "ramp.instanceLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "ramp.commonLabels" -}}
helm.sh/chart: {{ include "ramp.chart" . }}
{{ include "ramp.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ramp
{{- end }}

{{- define "ramp.labels" -}}
{{ include "ramp.commonLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
Labels of the metrics Service, which a ServiceMonitor selects.
*/}}
{{- define "ramp.metricsLabels" -}}
{{ include "ramp.commonLabels" . }}
app.kubernetes.io/component: metrics
{{- end }}

{{- define "ramp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ramp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ramp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespace whose Rollouts Ramp manages with `scope: Namespace`.
*/}}
{{- define "ramp.watchNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{- define "ramp.namespaced" -}}
{{- if eq .Values.scope "Namespace" }}true{{- end }}
{{- end }}

{{/*
Names of cluster-wide objects carry the release namespace too, so two releases of the same
name in different namespaces do not collide.
*/}}
{{- define "ramp.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ramp.fullname" .) }}
{{- end }}
