{{/*
Name of the application, for the app.kubernetes.io/name label.
*/}}
{{- define "cls.name" -}}
{{- default .Chart.Name .Values.app.NameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object of the release. Kubernetes names are DNS labels, hence
63 characters; a release whose name already contains the chart's is not
repeated (release "configurable-ls-backend" gives "configurable-ls-backend").
*/}}
{{- define "cls.fullname" -}}
{{- if .Values.app.FullnameOverride }}
{{- .Values.app.FullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.app.NameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cls.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that pick the release's pods. A Deployment's selector is immutable, so
these never change with the chart or app version.
*/}}
{{- define "cls.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cls.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cls.labels" -}}
helm.sh/chart: {{ include "cls.chart" . }}
{{ include "cls.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ml-backend
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.app.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cls.serviceAccountName" -}}
{{- if .Values.app.serviceAccount.create }}
{{- default (include "cls.fullname" .) .Values.app.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.app.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cls.image" -}}
{{- $image := .Values.global.image }}
{{- $reference := printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion | toString) }}
{{- if $image.registry }}
{{- printf "%s/%s" (trimSuffix "/" $image.registry) $reference }}
{{- else }}
{{- $reference }}
{{- end }}
{{- end }}

{{/*
The Secret a reference points at: its own existingSecret, else the one Secret
named like the release. Call with (dict "ref" .Values.store "context" $).
*/}}
{{- define "cls.secretName" -}}
{{- .ref.existingSecret | default (include "cls.fullname" .context) }}
{{- end }}

{{/*
Variables the chart sets itself. Extra variables may not repeat them: a pod
spec with one name twice is applied unpredictably (server-side apply refuses
it), so the clash is reported at render time instead.
*/}}
{{- define "cls.chartEnvNames" -}}
{{- list "CLS_HOST" "CLS_PORT" "CLS_LOG_FORMAT" "CLS_STATE_DIR" "CLS_REPLICA_ID" "CLS_STORE" "ADMIN_TOKEN" "LABEL_STUDIO_URL" "LABEL_STUDIO_API_KEY" "CLS_EXECUTION_PROVIDER" | toJson }}
{{- end }}

{{/*
The container's environment: the server's settings, then the extra
variables (app.* over global.* for the same name).
*/}}
{{- define "cls.env" -}}
{{- $reserved := include "cls.chartEnvNames" . | fromJsonArray }}
{{- $vars := merge (deepCopy (.Values.app.extraEnvironmentVars | default dict)) (.Values.global.extraEnvironmentVars | default dict) }}
{{- $secrets := merge (deepCopy (.Values.app.extraEnvironmentSecrets | default dict)) (.Values.global.extraEnvironmentSecrets | default dict) }}
{{- range $name := concat (keys $vars) (keys $secrets) | uniq }}
{{- if has $name $reserved }}
{{- fail (printf "extra environment variable %s is set by the chart itself; change it through the chart's own value (see values.yaml)" $name) }}
{{- end }}
{{- if and (hasKey $vars $name) (hasKey $secrets $name) }}
{{- fail (printf "environment variable %s is in both extraEnvironmentVars and extraEnvironmentSecrets; keep one" $name) }}
{{- end }}
{{- end -}}
- name: CLS_HOST
  value: "0.0.0.0"
- name: CLS_PORT
  value: "9090"
- name: CLS_LOG_FORMAT
  value: json
- name: CLS_STATE_DIR
  value: /var/lib/configurable-ls-backend
# Each replica reports under its own name, which the pod name gives for free.
- name: CLS_REPLICA_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: CLS_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "cls.secretName" (dict "ref" .Values.store "context" $) }}
      key: {{ required "store.existingSecretKey is required" .Values.store.existingSecretKey }}
- name: ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "cls.secretName" (dict "ref" .Values.adminToken "context" $) }}
      key: {{ required "adminToken.existingSecretKey is required" .Values.adminToken.existingSecretKey }}
{{- with .Values.labelStudio.url }}
- name: LABEL_STUDIO_URL
  value: {{ . | quote }}
{{- end }}
- name: LABEL_STUDIO_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "cls.secretName" (dict "ref" .Values.labelStudio.apiKey "context" $) }}
      key: {{ required "labelStudio.apiKey.existingSecretKey is required" .Values.labelStudio.apiKey.existingSecretKey }}
      optional: true
{{- with .Values.app.executionProvider }}
- name: CLS_EXECUTION_PROVIDER
  value: {{ . | quote }}
{{- end }}
{{- range $name := keys $vars | sortAlpha }}
- name: {{ $name | quote }}
  value: {{ get $vars $name | toString | quote }}
{{- end }}
{{- range $name := keys $secrets | sortAlpha }}
{{- $ref := get $secrets $name }}
- name: {{ $name | quote }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "extraEnvironmentSecrets.%s.secretName is required" $name) $ref.secretName | quote }}
      key: {{ required (printf "extraEnvironmentSecrets.%s.secretKey is required" $name) $ref.secretKey | quote }}
{{- end }}
{{- end }}
