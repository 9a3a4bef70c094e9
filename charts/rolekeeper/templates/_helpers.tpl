{{- define "rolekeeper.labels" -}}
app.kubernetes.io/name: rolekeeper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "rolekeeper.selector" -}}
app.kubernetes.io/name: rolekeeper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
