{{/* Names and labels. */}}
{{- define "connector-fleet.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "connector-fleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "connector-fleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "connector-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pods of this release: what the Service selects. */}}
{{- define "connector-fleet.podSelector" -}}
app.kubernetes.io/name: {{ include "connector-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "connector-fleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "connector-fleet.secretName" -}}
{{- .Values.secrets.name | default (printf "%s-secrets" (include "connector-fleet.fullname" .)) -}}
{{- end -}}

{{/* The connectors as a JSON list: connectorsJson (the whole file) wins over connectors. */}}
{{- define "connector-fleet.connectorList" -}}
{{- if .Values.connectorsJson -}}
{{- (fromJson .Values.connectorsJson).connectors | default list | toJson -}}
{{- else -}}
{{- .Values.connectors | default list | toJson -}}
{{- end -}}
{{- end -}}

{{/* connectors.json as mounted in the pods. */}}
{{- define "connector-fleet.configJson" -}}
{{- if .Values.connectorsJson -}}
{{- .Values.connectorsJson -}}
{{- else -}}
{{- dict "connectors" (.Values.connectors | default list) | toPrettyJson -}}
{{- end -}}
{{- end -}}

{{/* A connector name as a DNS-1123 label part. */}}
{{- define "connector-fleet.dnsName" -}}
{{- regexReplaceAll "[^a-z0-9-]" (lower .) "-" | trunc 40 | trimAll "-" -}}
{{- end -}}

{{/*
Env of every process: Redis, config path, ops port, drain, logs.
Argument: the root context.
*/}}
{{- define "connector-fleet.commonEnv" -}}
{{ include "connector-fleet.redisEnv" . }}
- name: CONNECTORS_CONFIG_PATH
  value: /etc/connectors/connectors.json
{{ include "connector-fleet.processEnv" . }}
{{- end -}}

{{- define "connector-fleet.redisEnv" -}}
- name: REDIS_URL
  valueFrom:
    {{- if .Values.redis.existingSecret }}
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
    {{- else }}
    configMapKeyRef:
      name: {{ include "connector-fleet.fullname" . }}-redis
      key: url
    {{- end }}
{{- end -}}

{{/* Ops port, drain and logs: what every process reads. Argument: the root context. */}}
{{- define "connector-fleet.processEnv" -}}
- name: METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
- name: METRICS_HOST
  value: "0.0.0.0"
- name: FLEET_DRAIN_TIMEOUT_S
  value: {{ .Values.drainTimeoutSeconds | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FLEET_API_READ_AUTH
  value: {{ .Values.api.readAuth | default false | quote }}
{{- if .Values.api.adminTokenSecret }}
- name: FLEET_API_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.api.adminTokenSecret }}
      key: {{ .Values.api.adminTokenSecretKey | default "admin-token" }}
{{- end }}
{{- end -}}

{{/*
One env var per ${VAR} of the providerConfigs given, from the Secret (key VAR):
required for a ${VAR} of an enabled entry, optional for ${VAR:-default} and for
disabled entries (the process leaves their ${VAR}s as written); $${ is a literal and
is skipped. Every pod gets the variables of every entry: each process substitutes
every enabled entry and exits 78 if a required variable of one of them is unset.
Argument: dict "root" $ "connectors" (list of connector entries).
*/}}
{{- define "connector-fleet.secretEnv" -}}
{{- $required := dict -}}
{{- range $connector := .connectors -}}
{{- $enabled := ne (toString $connector.enabled) "false" -}}
{{- range $ref := regexFindAll "\\$?\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}" (toJson ($connector.providerConfig | default dict)) -1 -}}
{{- if not (hasPrefix "$$" $ref) -}}
{{- $variable := regexReplaceAll "^\\$\\{([A-Za-z0-9_]+).*$" $ref "${1}" -}}
{{- $isRequired := and $enabled (not (contains ":-" $ref)) -}}
{{- $_ := set $required $variable (or $isRequired (get $required $variable | default false)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $variable := keys $required | sortAlpha }}
- name: {{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ include "connector-fleet.secretName" $.root }}
      key: {{ $variable }}
      {{- if not (get $required $variable) }}
      optional: true
      {{- end }}
{{- end -}}
{{- end -}}

{{- define "connector-fleet.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* Pod-level settings shared by both modes. Argument: the root context. */}}
{{- define "connector-fleet.podSpec" -}}
{{ include "connector-fleet.podSettings" . }}
volumes:
  - name: config
    configMap:
      name: {{ include "connector-fleet.fullname" . }}-config
  - name: tmp
    emptyDir: {}
{{- end -}}

{{/* Pod-level settings of every pod, volumes excepted. Argument: the root context. */}}
{{- define "connector-fleet.podSettings" -}}
terminationGracePeriodSeconds: {{ add .Values.drainTimeoutSeconds 15 }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "connector-fleet.volumeMounts" -}}
volumeMounts:
  - name: config
    mountPath: /etc/connectors
    readOnly: true
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* The rules file of the stream consumers, as mounted: rulesJson (verbatim) wins. */}}
{{- define "connector-fleet.rulesJson" -}}
{{- if .Values.consumers.rulesJson -}}
{{- .Values.consumers.rulesJson -}}
{{- else -}}
{{- .Values.consumers.rules | toPrettyJson -}}
{{- end -}}
{{- end -}}

{{/*
The Secret keys the rules need, from the Secret `secrets.name` (key VAR): every ${VAR}
(required without a :-default, as the rules loader wants) and every secretEnv
(required: the capability reads it at each call). Argument: the root context.
*/}}
{{- define "connector-fleet.rulesSecretEnv" -}}
{{- $text := include "connector-fleet.rulesJson" . -}}
{{- $required := dict -}}
{{- range $ref := regexFindAll "\\$?\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}" $text -1 -}}
{{- if not (hasPrefix "$$" $ref) -}}
{{- $variable := regexReplaceAll "^\\$\\{([A-Za-z0-9_]+).*$" $ref "${1}" -}}
{{- $_ := set $required $variable (or (not (contains ":-" $ref)) (get $required $variable | default false)) -}}
{{- end -}}
{{- end -}}
{{- range $ref := regexFindAll "\"secretEnv\"\\s*:\\s*\"[A-Za-z_][A-Za-z0-9_]*\"" $text -1 -}}
{{- $_ := set $required (regexReplaceAll "^.*\"([A-Za-z0-9_]+)\"$" $ref "${1}") true -}}
{{- end -}}
{{- range $variable := keys $required | sortAlpha }}
- name: {{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ include "connector-fleet.secretName" $ }}
      key: {{ $variable }}
      {{- if not (get $required $variable) }}
      optional: true
      {{- end }}
{{- end -}}
{{- end -}}

{{/*
The port an http-webhook connector serves on (providerConfig.port, a number in the
values: the Service and the container port are rendered from it).
Argument: the connector entry.
*/}}
{{- define "connector-fleet.receiverPort" -}}
{{- $port := (.providerConfig | default dict).port -}}
{{- if not (kindIs "float64" $port) -}}
{{- if not (kindIs "int64" $port) -}}
{{- fail (printf "connector %s: providerConfig.port must be a port number to render its Service" .name) -}}
{{- end -}}
{{- end -}}
{{- int64 $port -}}
{{- end -}}
