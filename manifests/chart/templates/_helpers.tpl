{{- define "gateway.labels" -}}
app: higress-gateway
higress: {{ .Release.Namespace }}-higress-gateway
{{- end -}}
