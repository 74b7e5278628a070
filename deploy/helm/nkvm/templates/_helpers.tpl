{{/* Labels of every object: the same as deploy/base's, plus Helm's own two. */}}
{{- define "nkvm.labels" -}}
app.kubernetes.io/name: nkvm
app.kubernetes.io/part-of: nkvm
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The pod's selector labels. */}}
{{- define "nkvm.selector" -}}
app.kubernetes.io/name: nkvm
app.kubernetes.io/component: server
{{- end -}}

{{/* The image reference: repository@digest, else repository:tag (default: appVersion). */}}
{{- define "nkvm.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}
