{{/* The name of every object of the release. */}}
{{- define "setpoint.fullname" -}}
{{- default .Release.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "setpoint.selectorLabels" -}}
app.kubernetes.io/name: setpoint
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{- define "setpoint.labels" -}}
{{ include "setpoint.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
