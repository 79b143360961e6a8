{{/*
Names and labels.
*/}}
{{- define "identity-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identity-mesh.fullname" -}}
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

{{- define "identity-mesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "identity-mesh.labels" -}}
helm.sh/chart: {{ include "identity-mesh.chart" . }}
{{ include "identity-mesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: identity-mesh
{{- end }}

{{- define "identity-mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "identity-mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "identity-mesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "identity-mesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "identity-mesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The workloads to deploy, as a list of dicts:
  name       component name and Deployment suffix (`mesh` for the monolith, else the service)
  args       meshd arguments
  spec       the values entry (monolith or services.<name>)
  scim       true when the pod runs the connector agent's SCIM listener
  grpc       the gRPC services the pod runs (of identity-mesh.grpcServices), each on its own
             port: the monolith runs them all, a service's Deployment at most its own
Rendered as YAML and read back with fromYaml by the templates that range over it.
*/}}
{{- define "identity-mesh.workloads" -}}
{{- $grpc := include "identity-mesh.grpcServices" . | fromYaml }}
workloads:
{{- if eq .Values.mode "monolith" }}
  - name: mesh
    args: ["run", "all"]
    spec: {{ toJson .Values.monolith }}
    scim: true
    grpc: {{ keys $grpc | sortAlpha | toJson }}
{{- else }}
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
  - name: {{ $name }}
    args: ["run", {{ $name | quote }}]
    spec: {{ toJson $svc }}
    scim: {{ eq $name "connector-agent" }}
    grpc: {{ ternary (list $name) (list) (hasKey $grpc $name) | toJson }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The services that serve gRPC (plaintext HTTP/2, with grpc.health.v1 and reflection), each on
its own port, set by services.<name>.port and rendered into <name>.listen:
  portName   the container and Service port name; `grpc` stays the risk service's, as it was
             before the query service had a port (policies and clients refer to it), and
             every name starts with `grpc` so that meshes that go by port names (Istio) see gRPC
  port       the default of services.<name>.port: the default of meshd's <name>.listen
  serves     what it serves, for comments and NOTES
*/}}
{{- define "identity-mesh.grpcServices" -}}
risk:
  portName: grpc
  port: 50052
  serves: AccessDecision
query:
  portName: grpc-query
  port: 50051
  serves: MeshQuery, RuleAdmin
{{- end }}

{{/* The connector agent's port (SCIM and HR uploads). */}}
{{- define "identity-mesh.scimPort" -}}
{{- $ca := index .Values.services "connector-agent" | default dict }}
{{- $ca.port | default 8080 | int }}
{{- end }}

{{/*
A gRPC service's port (services.<name>.port, else its default listen port).
Call with (dict "root" $ "service" "risk"|"query").
*/}}
{{- define "identity-mesh.grpcPort" -}}
{{- $def := get (include "identity-mesh.grpcServices" .root | fromYaml) .service }}
{{- $svc := index .root.Values.services .service | default dict }}
{{- $svc.port | default $def.port | int }}
{{- end }}

{{/* A gRPC service's port name. Call with the service's name. */}}
{{- define "identity-mesh.grpcPortName" -}}
{{- (get (include "identity-mesh.grpcServices" . | fromYaml) .).portName }}
{{- end }}

{{/*
meshd's configuration: .Values.config plus what the chart owns (listen addresses: admin,
connector_agent, and each gRPC service's: risk, query; the NATS credentials file path),
rendered as TOML.
*/}}
{{- define "identity-mesh.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- $admin := get $config "admin" | default dict }}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.adminPort)) }}
{{- $_ := set $config "admin" $admin }}
{{- $ca := get $config "connector_agent" | default dict }}
{{- $_ := set $ca "listen" (printf "0.0.0.0:%s" (include "identity-mesh.scimPort" .)) }}
{{- $_ := set $config "connector_agent" $ca }}
{{- $root := . }}
{{- range $name := include "identity-mesh.grpcServices" . | fromYaml | keys | sortAlpha }}
{{- $section := get $config $name | default dict }}
{{- $_ := set $section "listen" (printf "0.0.0.0:%s" (include "identity-mesh.grpcPort" (dict "root" $root "service" $name))) }}
{{- $_ := set $config $name $section }}
{{- end }}
{{- if .Values.secrets.natsCredentials.name }}
{{- $nats := get $config "nats" | default dict }}
{{- $_ := set $nats "credentials_file" (printf "/etc/identity-mesh/nats/%s" .Values.secrets.natsCredentials.key) }}
{{- $_ := set $config "nats" $nats }}
{{- end }}
# meshd configuration rendered by the identity-mesh chart from .Values.config.
{{- range $section, $keys := $config }}
{{- if $keys }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "identity-mesh.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One TOML value. Helm reads every number in values.yaml as a float64, which toToml would write
as `256.0` and meshd would refuse for an integer key, so whole numbers are written as integers
(meshd's float keys accept them). Strings go through toJson: a JSON string is a valid TOML
basic string. Maps become inline tables, lists arrays; null keys are left out (the default
applies). services/meshd/tests/deploy_configs.rs renders values the same way.
*/}}
{{- define "identity-mesh.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true }}{{ range $k, $v := . }}{{ if not (kindIs "invalid" $v) }}{{ if not $first }}, {{ end }}{{ $first = false }}{{ toJson $k }} = {{ include "identity-mesh.tomlValue" $v }}{{ end }}{{ end -}} }
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "identity-mesh.tomlValue" $v }}{{ end }}]
{{- else if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{ . }}
{{- end -}}
{{- end }}

{{/*
Environment shared by every meshd container: MESH_CONFIG_FILE, credentials from Secrets,
OTEL_*. Call with (dict "root" $ "service" "<name>" "scim" bool).
*/}}
{{- define "identity-mesh.env" -}}
{{- $root := .root }}
{{- $s := $root.Values.secrets }}
- name: MESH_CONFIG_FILE
  value: /etc/identity-mesh/meshd.toml
{{- include "identity-mesh.secretEnv" $root }}
{{- if and .scim $s.scimEndpoints.name }}
- name: MESH_CONNECTOR_AGENT__SCIM
  valueFrom:
    secretKeyRef:
      name: {{ $s.scimEndpoints.name }}
      key: {{ $s.scimEndpoints.key }}
{{- end }}
{{- include "identity-mesh.otelEnv" (dict "root" $root "service" .service) }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Connection credentials from existing Secrets (also used by the migration Job). */}}
{{- define "identity-mesh.secretEnv" -}}
{{- $s := .Values.secrets }}
{{- if $s.postgresUrl.name }}
- name: MESH_POSTGRES__URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.postgresUrl.name }}
      key: {{ $s.postgresUrl.key }}
{{- end }}
{{- if $s.natsUrl.name }}
- name: MESH_NATS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.natsUrl.name }}
      key: {{ $s.natsUrl.key }}
{{- end }}
{{- if $s.natsToken.name }}
- name: MESH_NATS__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $s.natsToken.name }}
      key: {{ $s.natsToken.key }}
{{- end }}
{{- if $s.redisUrl.name }}
- name: MESH_REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $s.redisUrl.name }}
      key: {{ $s.redisUrl.key }}
{{- end }}
{{- end }}

{{- define "identity-mesh.otelEnv" -}}
{{- $root := .root }}
{{- if $root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.otel.endpoint | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,k8s.pod.name=$(K8S_POD_NAME)%s" $root.Release.Namespace (ternary (printf ",%s" $root.Values.otel.resourceAttributes) "" (ne $root.Values.otel.resourceAttributes "")) | quote }}
{{- end }}

{{/* Fails the render when the configuration cannot work. */}}
{{- define "identity-mesh.validate" -}}
{{- $s := .Values.secrets }}
{{- $pg := get (.Values.config.postgres | default dict) "url" }}
{{- if not (or $s.postgresUrl.name $pg) }}
{{- fail "set secrets.postgresUrl.name (a Secret holding the PostgreSQL URL) or config.postgres.url: meshd's default points at 127.0.0.1" }}
{{- end }}
{{- if and $s.natsCredentials.name $s.natsToken.name }}
{{- fail "set at most one of secrets.natsCredentials and secrets.natsToken (meshd accepts one NATS auth method)" }}
{{- end }}
{{- if and $s.natsCredentials.name (or (get (.Values.config.nats | default dict) "nkey_seed_file") (get (.Values.config.nats | default dict) "token")) }}
{{- fail "secrets.natsCredentials conflicts with config.nats.nkey_seed_file/token" }}
{{- end }}
{{- if eq .Values.mode "microservices" }}
{{- $any := false }}
{{- range $name, $svc := .Values.services }}{{ if $svc.enabled }}{{ $any = true }}{{ end }}{{ end }}
{{- if not $any }}
{{- fail "mode is microservices but no entry of services is enabled" }}
{{- end }}
{{- end }}
{{- end }}
