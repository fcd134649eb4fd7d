{{/* Names and labels shared by every template. */}}

{{- define "kami.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; each service's objects are "<fullname>-<service>". */}}
{{- define "kami.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "kami.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kami.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kami.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kami.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kami.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kami.labels" -}}
helm.sh/chart: {{ include "kami.chart" . }}
{{ include "kami.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kami
{{- end -}}

{{/* Selector labels of one service: call with (dict "root" $ "service" $name). */}}
{{- define "kami.serviceSelectorLabels" -}}
{{ include "kami.selectorLabels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "kami.serviceLabels" -}}
{{ include "kami.labels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "kami.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kami.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kami.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the KAMI_* keys. */}}
{{- define "kami.secretName" -}}
{{- default (printf "%s-secrets" (include "kami.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret and key holding the MongoDB connection string. */}}
{{- define "kami.mongodbSecretName" -}}
{{- default (printf "%s-mongodb" (include "kami.fullname" .)) .Values.mongodb.existingSecret -}}
{{- end -}}

{{- define "kami.mongodbSecretKey" -}}
{{- if .Values.mongodb.existingSecret -}}
{{- .Values.mongodb.existingSecretKey -}}
{{- else -}}
uri
{{- end -}}
{{- end -}}

{{/* A deep merge where `over` wins key by key, false and 0 included (sprig's
mergeOverwrite skips them). Call with (dict "base" $a "over" $b); returns YAML. */}}
{{- define "kami.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- $current := index $out $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $out $key (fromYaml (include "kami.deepMerge" (dict "base" $current "over" $value))) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* One service's settings: `defaults` overlaid with services.<name>.
Call with (dict "root" $ "service" $name); returns YAML. */}}
{{- define "kami.serviceValues" -}}
{{- include "kami.deepMerge" (dict "base" .root.Values.defaults "over" (index .root.Values.services .service)) -}}
{{- end -}}

{{/* The enabled services' names, sorted; returns JSON. */}}
{{- define "kami.enabledServices" -}}
{{- $names := list -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}
